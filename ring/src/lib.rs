//! The ketama consistent-hash ring that decides which comet node owns a key and which Redis shard
//! stores it. Pure and I/O-free. The default `sha1` hash is gopush-cluster 1.0.5's ring bit for bit
//! (255 × weight spots labelled `name:i`, last four digest bytes big-endian, lower bound with wrap);
//! `md5` is classic libketama. Ties between equal points are broken by label, so every process that
//! builds a ring from the same members gets the same ring, whatever order it saw them in.

use md5::Md5;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// Spots per unit of weight in the `sha1` ring (upstream's `ketama.Base`).
pub const SHA1_BASE: u32 = 255;
/// MD5 digests per unit of weight in the `md5` ring; each digest yields four points.
pub const MD5_DIGESTS_PER_WEIGHT: u32 = 40;

/// Which point scheme a ring uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashKind {
    /// gopush-cluster 1.0.5: SHA-1, last four bytes big-endian, labels `name:i` for i in 1..=255×w.
    #[default]
    Sha1,
    /// libketama: MD5 of `name-i` for i in 0..40×w, four little-endian points per digest.
    Md5,
}

impl HashKind {
    /// The ring point of a key under this scheme.
    pub fn key_point(self, key: &[u8]) -> u32 {
        match self {
            HashKind::Sha1 => {
                let d = Sha1::digest(key);
                u32::from_be_bytes([d[16], d[17], d[18], d[19]])
            }
            HashKind::Md5 => {
                let d = Md5::digest(key);
                u32::from_le_bytes([d[0], d[1], d[2], d[3]])
            }
        }
    }
}

impl std::str::FromStr for HashKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sha1" => Ok(HashKind::Sha1),
            "md5" => Ok(HashKind::Md5),
            other => Err(format!("unknown ring hash {other:?}: expected \"sha1\" or \"md5\"")),
        }
    }
}

/// An immutable ketama ring over named, weighted nodes.
///
/// Points and owners are kept in two parallel vectors so a lookup's binary search touches only the
/// packed `u32` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    hash: HashKind,
    points: Vec<u32>,
    owners: Vec<u32>,
    nodes: Vec<(String, u32)>,
    // index[b] = first spot whose point's top `bits` bits are >= b: a lookup searches only the
    // handful of spots in one bucket instead of binary-searching a megabyte of points.
    index: Vec<u32>,
    shift: u32,
}

impl Ring {
    /// Builds a ring with the given scheme; nodes of weight 0 get no spots, duplicate names are
    /// merged (the last weight wins), and member order does not matter.
    pub fn new<I, S>(hash: HashKind, members: I) -> Ring
    where
        I: IntoIterator<Item = (S, u32)>,
        S: Into<String>,
    {
        let mut nodes: Vec<(String, u32)> = Vec::new();
        for (name, weight) in members {
            let name = name.into();
            match nodes.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = weight,
                None => nodes.push((name, weight)),
            }
        }
        nodes.sort();

        // (point, node index, spot number): labels are rebuilt only to break the rare ties, so a
        // 1,000-node ring builds without a quarter of a million label allocations.
        let mut spots: Vec<(u32, u32, u32)> = Vec::new();
        let mut label = Vec::with_capacity(64);
        for (idx, (name, weight)) in nodes.iter().enumerate() {
            let idx = idx as u32;
            match hash {
                HashKind::Sha1 => {
                    for i in 1..=SHA1_BASE.saturating_mul(*weight) {
                        sha1_label(&mut label, name, i);
                        spots.push((HashKind::Sha1.key_point(&label), idx, i));
                    }
                }
                HashKind::Md5 => {
                    for i in 0..MD5_DIGESTS_PER_WEIGHT.saturating_mul(*weight) {
                        md5_label(&mut label, name, i);
                        let d = Md5::digest(&label);
                        for (h, chunk) in d.chunks_exact(4).enumerate() {
                            let point = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                            spots.push((point, idx, i * 4 + h as u32));
                        }
                    }
                }
            }
        }
        let tie_label = |idx: u32, n: u32| -> Vec<u8> {
            let name = &nodes[idx as usize].0;
            let mut l = Vec::new();
            match hash {
                HashKind::Sha1 => sha1_label(&mut l, name, n),
                HashKind::Md5 => {
                    md5_label(&mut l, name, n / 4);
                    l.extend_from_slice(&[b'#', b'0' + (n % 4) as u8]);
                }
            }
            l
        };
        spots.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| {
                if a.1 == b.1 && a.2 == b.2 {
                    std::cmp::Ordering::Equal
                } else {
                    tie_label(a.1, a.2).cmp(&tie_label(b.1, b.2))
                }
            })
        });

        let points: Vec<u32> = spots.iter().map(|s| s.0).collect();
        let owners = spots.iter().map(|s| s.1).collect();
        let (index, shift) = bucket_index(&points);
        Ring { hash, points, owners, nodes, index, shift }
    }

    /// Builds the default (`sha1`, upstream-compatible) ring.
    pub fn sha1<I, S>(members: I) -> Ring
    where
        I: IntoIterator<Item = (S, u32)>,
        S: Into<String>,
    {
        Ring::new(HashKind::Sha1, members)
    }

    /// The node owning `key`, or `None` when the ring has no spots.
    pub fn get(&self, key: &[u8]) -> Option<&str> {
        self.owner_index(key).map(|i| self.nodes[i].0.as_str())
    }

    /// The index (into [`Ring::nodes`]) of the node owning `key`, for callers that keep per-node
    /// state in a parallel vector.
    pub fn owner_index(&self, key: &[u8]) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let v = self.hash.key_point(key);
        let b = (v >> self.shift) as usize;
        let (lo, hi) = (self.index[b] as usize, self.index[b + 1] as usize);
        let mut i = lo + self.points[lo..hi].partition_point(|&p| p < v);
        if i == self.points.len() {
            i = 0;
        }
        Some(self.owners[i] as usize)
    }

    /// The members as (name, weight), sorted by name, including weight-0 members.
    pub fn nodes(&self) -> &[(String, u32)] {
        &self.nodes
    }

    /// The point scheme of this ring.
    pub fn hash_kind(&self) -> HashKind {
        self.hash
    }

    /// Number of spots on the ring.
    pub fn spots(&self) -> usize {
        self.points.len()
    }

    /// True when no key can be placed (no members, or all of weight 0).
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The sorted spot points, for tests and diagnostics.
    pub fn points(&self) -> &[u32] {
        &self.points
    }
}

/// Writes `name:i`, upstream's spot label.
fn sha1_label(out: &mut Vec<u8>, name: &str, i: u32) {
    use std::io::Write;
    out.clear();
    let _ = write!(out, "{name}:{i}");
}

/// Writes `name-i`, libketama's digest label.
fn md5_label(out: &mut Vec<u8>, name: &str, i: u32) {
    use std::io::Write;
    out.clear();
    let _ = write!(out, "{name}-{i}");
}

/// Upstream's golden vectors (docs/architecture.md#ring-golden-vectors), shared by every crate
/// whose tests prove it places keys as upstream does: the same comet node for a key, the same Redis
/// shard.
pub mod golden {
    /// The golden ring: `node1` weight 1, `node2` weight 2, `node3` weight 1.
    pub const MEMBERS: [(&str, u32); 3] = [("node1", 1), ("node2", 2), ("node3", 1)];
    /// Keys and the node upstream's ring gives each on [`MEMBERS`], the wrap-around case included.
    pub const OWNERS: [(&str, &str); 15] = [
        ("Terry-Mao", "node1"),
        ("t1", "node2"),
        ("t2", "node3"),
        ("t3", "node2"),
        ("user_1", "node3"),
        ("user_2", "node2"),
        ("1", "node2"),
        ("hello", "node2"),
        ("", "node3"),
        ("bar", "node2"),
        ("wrap211", "node2"),
        ("2", "node2"),
        ("foo", "node2"),
        ("gopush", "node2"),
        ("abc", "node2"),
    ];
}

/// Builds the bucket index over sorted `points`: about one bucket per spot, at most 2^16 buckets.
fn bucket_index(points: &[u32]) -> (Vec<u32>, u32) {
    let bits = (usize::BITS - points.len().leading_zeros()).clamp(1, 16);
    let shift = 32 - bits;
    let buckets = 1usize << bits;
    let mut index = Vec::with_capacity(buckets + 1);
    let mut i = 0usize;
    for b in 0..buckets {
        while i < points.len() && ((points[i] >> shift) as usize) < b {
            i += 1;
        }
        index.push(i as u32);
    }
    index.push(points.len() as u32);
    (index, shift)
}

#[cfg(test)]
mod tests;
