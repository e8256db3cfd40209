//! The small HTTP server every comet and message process runs on its stat port: Prometheus text at
//! `GET /metrics` and a JSON health report at `GET /health` (200 when healthy, 503 otherwise). The
//! process-wide metrics recorder is installed here once, so every crate records through `metrics`.

use crate::rpc::BoxFuture;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Latency buckets in seconds, from 50 µs to 5 s: RPC and push latencies live in this range.
const LATENCY_BUCKETS: &[f64] =
    &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The process-wide Prometheus handle; installs the recorder on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder =
                PrometheusBuilder::new().set_buckets(LATENCY_BUCKETS).unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a test harness); then ours only renders
            // what is recorded through it, which is nothing: acceptable, never fatal.
            if metrics::set_global_recorder(recorder).is_err() {
                warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}

/// A health report.
#[derive(Debug, Clone)]
pub struct Health {
    /// Whether the process can do its job.
    pub ok: bool,
    /// Details shown as the JSON body of `/health`.
    pub detail: serde_json::Value,
}

/// Produces a health report on demand.
pub type HealthFn = Arc<dyn Fn() -> BoxFuture<'static, Health> + Send + Sync>;

/// Keeps the Prometheus histograms' windows rolling until `shutdown`; every process that renders
/// `/metrics` runs one.
pub async fn upkeep(handle: PrometheusHandle, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Serves `/metrics` and `/health` on `listener` until `shutdown` is cancelled.
pub async fn serve_stat(listener: TcpListener, health: HealthFn, shutdown: CancellationToken) {
    let handle = metrics_handle();
    let upkeep = tokio::spawn(upkeep(handle.clone(), shutdown.clone()));
    let conns = shutdown.clone();
    crate::net::accept_loop(listener, "stat http", None, shutdown, |accepted| {
        let (handle, health) = (handle.clone(), health.clone());
        let service = service_fn(move |req: Request<Incoming>| {
            let (handle, health) = (handle.clone(), health.clone());
            async move { Ok::<_, std::convert::Infallible>(route(req, &handle, &health).await) }
        });
        let shutdown = conns.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(accepted.stream), service);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.cancelled() => {}
            }
        });
    })
    .await;
    upkeep.abort();
}

async fn route(req: Request<Incoming>, handle: &PrometheusHandle, health: &HealthFn) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => reply(StatusCode::OK, "text/plain; version=0.0.4", handle.render()),
        (&Method::GET, "/health") => {
            let h = health().await;
            let status = if h.ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            let body = serde_json::json!({ "ok": h.ok, "detail": h.detail }).to_string();
            reply(status, "application/json;charset=utf-8", body)
        }
        (_, "/metrics" | "/health") => {
            reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "Method Not Allowed\n".into())
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "404 page not found\n".into()),
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let len = body.len();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(CONTENT_TYPE, v);
    }
    resp.headers_mut().insert(CONTENT_LENGTH, len.into());
    resp
}
