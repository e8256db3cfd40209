//! Private pushes per second from web to one comet over loopback RPC, by the most pushes one call
//! may carry (`[rpc] push_batch`; 1 = every push its own call), with 256 pushes in flight and 4 call
//! slots, and without a coalescer (every push its own call, all at once). The comet is the shared double, which answers at once, so this measures the RPC path.
//! Run: `cargo bench -p gopush-cluster --bench coalesce`.

use cluster::coalesce::PushCoalescer;
use cluster::pool::{RemoteComet, RpcConfig};
use cluster::rpc::{Push, SharedComet, serve_comet};
use cluster::testing::FakeComet;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Pushes in flight per iteration, as many concurrent publishers.
const CONCURRENT: usize = 256;

fn coalesce(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let stop = CancellationToken::new();
    let comet: SharedComet = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let fake = FakeComet::new("node1");
        fake.forget.store(true, Ordering::Relaxed);
        tokio::spawn(serve_comet(listener, fake, RpcConfig::default(), stop.clone()));
        Arc::new(RemoteComet::new(addr, RpcConfig::default()))
    });
    let mut group = c.benchmark_group("web to comet pushes");
    group.throughput(Throughput::Elements(CONCURRENT as u64));
    // Without a coalescer: every push its own call, all 256 at once (what web did before).
    group.bench_function("direct push_private", |b| {
        b.iter(|| {
            rt.block_on(async {
                let all = (0..CONCURRENT).map(|i| {
                    let comet = comet.clone();
                    tokio::spawn(async move {
                        comet.push_private(format!("k{i}"), "{\"n\":1}".into(), 0, None).await.expect("push")
                    })
                });
                futures::future::join_all(all).await
            })
        })
    });
    for batch in [1usize, 8, 64] {
        let pushes = rt.block_on(async { Arc::new(PushCoalescer::new(comet.clone(), batch, 4)) });
        group.bench_function(format!("push_batch = {batch}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let all = (0..CONCURRENT).map(|i| {
                        let p = pushes.clone();
                        tokio::spawn(async move {
                            let push = Push { key: format!("k{i}"), msg: "{\"n\":1}".into(), expire: 0, id: None };
                            p.push(push).await.expect("push")
                        })
                    });
                    futures::future::join_all(all).await
                })
            })
        });
    }
    group.finish();
    stop.cancel();
}

criterion_group!(benches, coalesce);
criterion_main!(benches);
