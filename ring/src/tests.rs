//! Golden vectors from upstream (docs/architecture.md#ring-golden-vectors) and properties every ring must keep.

use super::*;
use proptest::prelude::*;

fn golden() -> Ring {
    Ring::sha1(golden::MEMBERS)
}

#[test]
fn golden_ring_shape() {
    let r = golden();
    assert_eq!(r.spots(), 1020);
    let mut dedup = r.points().to_vec();
    dedup.dedup();
    assert_eq!(dedup.len(), 1020, "the golden ring has no duplicate points");
    assert_eq!(r.points()[0], 0x001735d8);
    assert_eq!(*r.points().last().unwrap(), 0xfe7ea600);
    assert_eq!(HashKind::Sha1.key_point(b"node1:1"), 0x3efe7213);
    assert_eq!(HashKind::Sha1.key_point(b"node2:510"), 0x44b44e8c);
    assert_eq!(HashKind::Sha1.key_point(b"node2:119"), 0x001735d8);
    assert_eq!(HashKind::Sha1.key_point(b"node2:358"), 0xfe7ea600);
    assert_eq!(HashKind::Sha1.key_point(b"Terry-Mao"), 0xbd62f355);
}

#[test]
fn golden_lookups() {
    let r = golden();
    let cases: &[(&str, u32, usize, u32, &str)] = &[
        ("Terry-Mao", 0xbd62f355, 754, 0xbd949e3d, "node1"),
        ("t1", 0xb8319d6f, 736, 0xb8c2417c, "node2"),
        ("t2", 0xfbd5e70d, 1009, 0xfc4715d4, "node3"),
        ("t3", 0x22bbbc34, 147, 0x22be2bf4, "node2"),
        ("user_1", 0x71c25bc7, 445, 0x721d88a0, "node3"),
        ("user_2", 0x22cbafa4, 148, 0x236fabae, "node2"),
        ("1", 0x395428ab, 223, 0x3966a400, "node2"),
        ("hello", 0xaea9434d, 688, 0xaebc3d9a, "node2"),
        ("", 0xafd80709, 696, 0xb06212bb, "node3"),
        ("bar", 0xd1f01f4d, 837, 0xd1f8742e, "node2"),
        ("wrap211", 0xfeb04b87, 1020, 0x001735d8, "node2"),
    ];
    for &(key, v, idx, spot, node) in cases {
        assert_eq!(HashKind::Sha1.key_point(key.as_bytes()), v, "point of {key:?}");
        let lb = r.points().partition_point(|&p| p < v);
        assert_eq!(lb, idx, "lower bound of {key:?}");
        assert_eq!(r.points()[lb % r.spots()], spot, "spot of {key:?}");
        assert_eq!(r.get(key.as_bytes()), Some(node), "owner of {key:?}");
    }
    for (key, node) in golden::OWNERS {
        assert_eq!(r.get(key.as_bytes()), Some(node), "owner of {key:?}");
    }
}

#[test]
fn golden_distribution() {
    let r = golden();
    let mut counts = [0usize; 3];
    for k in 0..100_000 {
        counts[r.owner_index(k.to_string().as_bytes()).unwrap()] += 1;
    }
    assert_eq!(counts, [24_443, 50_134, 25_423]);
}

#[test]
fn empty_and_zero_weight_rings_place_nothing() {
    assert_eq!(Ring::sha1(Vec::<(String, u32)>::new()).get(b"k"), None);
    let r = Ring::sha1([("a", 0), ("b", 0)]);
    assert!(r.is_empty());
    assert_eq!(r.get(b"k"), None);
    assert_eq!(r.nodes().len(), 2);
    let r = Ring::sha1([("a", 0), ("b", 1)]);
    assert_eq!(r.get(b"anything"), Some("b"));
}

#[test]
fn member_order_and_duplicates_do_not_matter() {
    let a = Ring::sha1([("node3", 1), ("node1", 1), ("node2", 2)]);
    assert_eq!(a, golden());
    let b = Ring::sha1([("node1", 5), ("node2", 2), ("node3", 1), ("node1", 1)]);
    assert_eq!(b, golden());
}

#[test]
fn ties_are_broken_by_label() {
    // 153,000 spots make equal 32-bit points between the two nodes likely (about n²/2³³); whichever
    // order the members arrive in, equal points must sort the same way so every process agrees.
    let x = Ring::sha1([("a", 300), ("b", 300)]);
    let y = Ring::sha1([("b", 300), ("a", 300)]);
    assert_eq!(x.owners, y.owners);
    let ties =
        x.points().windows(2).enumerate().filter(|(i, w)| w[0] == w[1] && x.owners[*i] != x.owners[i + 1]).count();
    assert!(ties > 0, "the fixture should contain a tie between nodes");
    // Within a tie the smaller label ("a:…" < "b:…") comes first.
    for (i, w) in x.points().windows(2).enumerate() {
        if w[0] == w[1] && x.owners[i] != x.owners[i + 1] {
            assert_eq!(x.nodes()[x.owners[i] as usize].0, "a");
        }
    }
}

#[test]
fn md5_is_classic_libketama() {
    // libketama: MD5("name-i"), points are the digest's four little-endian words.
    let d = Md5::digest(b"server1-0");
    let want = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
    let r = Ring::new(HashKind::Md5, [("server1", 1)]);
    assert_eq!(r.spots(), 160);
    assert!(r.points().contains(&want));
    assert_eq!(HashKind::Md5.key_point(b"server1-0"), want);
    let r = Ring::new(HashKind::Md5, [("a", 1), ("b", 2), ("c", 0)]);
    assert_eq!(r.spots(), 480);
    let mut counts = [0usize; 3];
    for k in 0..30_000 {
        counts[r.owner_index(k.to_string().as_bytes()).unwrap()] += 1;
    }
    assert_eq!(counts[2], 0);
    assert!(counts[1] > counts[0], "weight 2 owns more keys: {counts:?}");
}

#[test]
fn hash_kind_parses() {
    assert_eq!("sha1".parse::<HashKind>(), Ok(HashKind::Sha1));
    assert_eq!("md5".parse::<HashKind>(), Ok(HashKind::Md5));
    assert!("crc32".parse::<HashKind>().is_err());
}

#[test]
fn bucket_index_agrees_with_a_plain_binary_search() {
    for n in [1u32, 2, 3, 7, 100] {
        let r = Ring::sha1((0..n).map(|i| (format!("n{i}"), 1 + i % 3)));
        for k in 0..5_000 {
            let key = format!("key{k}");
            let v = HashKind::Sha1.key_point(key.as_bytes());
            let mut i = r.points().partition_point(|&p| p < v);
            if i == r.spots() {
                i = 0;
            }
            assert_eq!(r.owner_index(key.as_bytes()), Some(r.owners[i] as usize), "{key} on {n} nodes");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Adding a node only moves keys *to* that node: consistency, the reason for a ring at all.
    #[test]
    fn adding_a_node_only_moves_keys_to_it(
        weights in proptest::collection::vec(1u32..4, 1..6),
        new_weight in 1u32..4,
        md5 in any::<bool>(),
        keys in proptest::collection::vec("[a-z0-9_]{0,12}", 200),
    ) {
        let hash = if md5 { HashKind::Md5 } else { HashKind::Sha1 };
        let before: Vec<(String, u32)> =
            weights.iter().enumerate().map(|(i, w)| (format!("node{i}"), *w)).collect();
        let mut after = before.clone();
        after.push(("newcomer".to_string(), new_weight));
        let r1 = Ring::new(hash, before);
        let r2 = Ring::new(hash, after);
        for k in &keys {
            let (o1, o2) = (r1.get(k.as_bytes()).unwrap(), r2.get(k.as_bytes()).unwrap());
            prop_assert!(o1 == o2 || o2 == "newcomer", "{k:?} moved from {o1} to {o2}");
        }
    }

    /// Removing a node only moves the keys it owned.
    #[test]
    fn removing_a_node_only_moves_its_keys(
        weights in proptest::collection::vec(1u32..4, 2..6),
        keys in proptest::collection::vec("[a-z0-9_]{0,12}", 200),
    ) {
        let all: Vec<(String, u32)> =
            weights.iter().enumerate().map(|(i, w)| (format!("node{i}"), *w)).collect();
        let r1 = Ring::sha1(all.clone());
        let r2 = Ring::sha1(all[1..].to_vec());
        for k in &keys {
            let (o1, o2) = (r1.get(k.as_bytes()).unwrap(), r2.get(k.as_bytes()).unwrap());
            prop_assert!(o1 == o2 || o1 == "node0", "{k:?} moved from {o1} to {o2}");
        }
    }
}
