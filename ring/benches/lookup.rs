//! Lookup cost on a 1,000-node ring (255,000 spots), SHA-1 of the key included.
//! Run: `cargo bench -p gopush-ring --bench lookup`.

use criterion::{Criterion, criterion_group, criterion_main};
use ring::{HashKind, Ring};
use std::hint::black_box;

fn lookup(c: &mut Criterion) {
    for hash in [HashKind::Sha1, HashKind::Md5] {
        let ring = Ring::new(hash, (0..1000).map(|i| (format!("node{i}"), 1)));
        let keys: Vec<String> = (0..4096).map(|i| format!("user_{i}")).collect();
        let mut i = 0;
        c.bench_function(&format!("{hash:?} lookup, 1000 nodes"), |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(ring.owner_index(black_box(keys[i].as_bytes())))
            })
        });
    }
    c.bench_function("Sha1 build, 1000 nodes", |b| b.iter(|| Ring::sha1((0..1000).map(|i| (format!("node{i}"), 1)))));
}

criterion_group!(benches, lookup);
criterion_main!(benches);
