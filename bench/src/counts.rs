//! Counters by label (failure kinds, `ret` codes) shared by many tasks. Labels are rare events,
//! so a mutex over a small map is plenty; it is never held across an await.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// A thread-safe multiset of labels.
#[derive(Debug, Default)]
pub struct Counts(Mutex<BTreeMap<String, u64>>);

impl Counts {
    /// Counts one occurrence of `label`.
    pub fn add(&self, label: &str) {
        self.add_n(label, 1);
    }

    /// Counts `n` occurrences of `label`.
    pub fn add_n(&self, label: &str, n: u64) {
        if n == 0 {
            return;
        }
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(label.to_string()).or_insert(0) += n;
    }

    /// Total of all labels.
    pub fn total(&self) -> u64 {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).values().sum()
    }

    /// A copy of the map.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Adds `other` into `into`.
pub fn merge_counts(into: &mut BTreeMap<String, u64>, other: &BTreeMap<String, u64>) {
    for (k, v) in other {
        *into.entry(k.clone()).or_insert(0) += v;
    }
}

/// Formats a map as `a=1 b=2`, or `none`.
pub fn format_counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".to_string();
    }
    m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_merges() {
        let c = Counts::default();
        c.add("b");
        c.add_n("a", 2);
        c.add("b");
        c.add_n("z", 0);
        assert_eq!(c.total(), 4);
        let mut m = c.snapshot();
        assert_eq!(format_counts(&m), "a=2 b=2");
        merge_counts(&mut m, &c.snapshot());
        assert_eq!(format_counts(&m), "a=4 b=4");
        assert_eq!(format_counts(&BTreeMap::new()), "none");
    }
}
