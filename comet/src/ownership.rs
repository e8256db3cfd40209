//! Which keys this comet owns: its node name looked up on the ring built from the comet membership
//! (docs/decisions.md#d4-every-process-builds-its-own-ring). No ring yet, or a ring without this
//! node, owns nothing, so subscribers get `-n` and pushes `NotOwner` until the comet sees itself.

use ring::{HashKind, Ring};
use std::sync::{Arc, RwLock};

/// The current ring and this comet's node name on it.
#[derive(Debug)]
pub struct Ownership {
    node: String,
    hash: HashKind,
    ring: RwLock<Option<Arc<Ring>>>,
}

impl Ownership {
    /// No ring yet: owns nothing.
    pub fn new(node: impl Into<String>, hash: HashKind) -> Ownership {
        Ownership { node: node.into(), hash, ring: RwLock::new(None) }
    }

    /// This comet's ring node name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The point scheme rings are built with.
    pub fn hash(&self) -> HashKind {
        self.hash
    }

    fn current(&self) -> Option<Arc<Ring>> {
        self.ring.read().ok().and_then(|r| r.clone())
    }

    /// True when the current ring maps `key` to this node.
    pub fn owns(&self, key: &str) -> bool {
        self.current().is_some_and(|r| r.get(key.as_bytes()) == Some(self.node.as_str()))
    }

    /// True when this node has spots on the current ring.
    pub fn on_ring(&self) -> bool {
        self.current().is_some_and(|r| r.nodes().iter().any(|(n, w)| *n == self.node && *w > 0) && !r.is_empty())
    }

    /// Installs `ring`; returns false when it has the same members and weights as the current one.
    pub fn set(&self, ring: Ring) -> bool {
        let Ok(mut slot) = self.ring.write() else { return false };
        if slot.as_ref().is_some_and(|r| r.nodes() == ring.nodes() && r.hash_kind() == ring.hash_kind()) {
            return false;
        }
        *slot = Some(Arc::new(ring));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_follows_the_golden_ring() {
        let o = Ownership::new("node1", HashKind::Sha1);
        assert!(!o.owns("Terry-Mao"), "no ring, no keys");
        assert!(!o.on_ring());
        let members = [("node1", 1), ("node2", 2), ("node3", 1)];
        assert!(o.set(Ring::new(HashKind::Sha1, members)));
        assert!(!o.set(Ring::new(HashKind::Sha1, members)), "same members: no change");
        assert!(o.on_ring());
        // docs/architecture.md#ring-golden-vectors
        assert!(o.owns("Terry-Mao"));
        assert!(!o.owns("t1") && !o.owns("t2") && !o.owns("hello"));
        assert!(o.set(Ring::new(HashKind::Sha1, [("node2", 1)])));
        assert!(!o.owns("Terry-Mao"));
        assert!(!o.on_ring());
    }
}
