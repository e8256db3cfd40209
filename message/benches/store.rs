//! Store throughput against real Redis: `save_privates` of 1,000 keys over 2 shards (one pipeline
//! per shard) and `get_private` of a full key (20 messages), beside the memory store for scale.
//! Redis comes from `GOPUSH_TEST_REDIS` (two `host:port`, comma-separated) or two private servers.
//! Run: `CARGO_TARGET_DIR=/work/target-message cargo bench -p gopush-message --bench store`

use cluster::rpc::MessageApi;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use message::config::{RedisConfig, RedisSource};
use message::store::{MemoryStore, RedisStore};
use std::time::Duration;
use tokio::runtime::Runtime;

const KEYS: usize = 1_000;
const STORE: usize = 20;
const MID: i64 = 17_999_999_999_999_999;

fn redis_store(rt: &Runtime) -> Option<RedisStore> {
    let addrs = testkit::redis_addrs()?;
    let config = RedisConfig {
        store: STORE,
        key_prefix: format!("{}:", testkit::unique_name("bench")),
        source: addrs
            .iter()
            .take(2)
            .enumerate()
            .map(|(i, a)| RedisSource {
                name: format!("node{}", i + 1),
                weight: 1,
                addr: format!("redis://{a}"),
                password: String::new(),
                ..RedisSource::default()
            })
            .collect(),
        ..RedisConfig::default()
    };
    let _guard = rt.enter();
    RedisStore::new(&config).ok()
}

fn bench_store<S: MessageApi>(c: &mut Criterion, rt: &Runtime, name: &str, store: &S) {
    let keys: Vec<String> = (0..KEYS).map(|i| format!("user_{i}")).collect();
    let msg = r#"{"title":"hello","body":"a message of a typical size for a push notification"}"#;
    // A full key to read back: `STORE` messages.
    for i in 0..STORE as i64 {
        rt.block_on(store.save_private("reader".into(), msg.into(), MID + i, 600)).unwrap();
    }

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(KEYS as u64));
    let mut mid = MID;
    group.bench_function("save_privates_1000_keys", |b| {
        b.iter_batched(
            || {
                mid += 1;
                (keys.clone(), mid)
            },
            |(keys, mid)| {
                let failed = rt.block_on(store.save_privates(keys, msg.into(), mid, 60)).unwrap();
                assert!(failed.is_empty());
            },
            BatchSize::SmallInput,
        )
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("get_private_20_messages", |b| {
        b.iter(|| {
            let got = rt.block_on(store.get_private("reader".into(), 0)).unwrap();
            assert_eq!(got.len(), STORE);
        })
    });
    group.bench_function("get_private_after_last", |b| {
        b.iter(|| {
            let got = rt.block_on(store.get_private("reader".into(), MID + STORE as i64 - 1)).unwrap();
            assert!(got.is_empty());
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    match redis_store(&rt) {
        Some(store) => bench_store(c, &rt, "redis_2_shards", &store),
        None => eprintln!("no Redis: skipping the Redis benchmarks"),
    }
    bench_store(c, &rt, "memory", &MemoryStore::new(STORE));
}

criterion_group! {
    name = store;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = benches
}
criterion_main!(store);
