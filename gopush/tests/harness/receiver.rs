//! A real HTTP webhook receiver on a loopback port: it keeps every POST it gets (headers and
//! body) and answers 200. It can be stopped (port closed, its connections dropped) and started
//! again on the same port, to play a receiver that is down for a while.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Largest body kept; a larger one is answered 413.
const MAX_BODY: usize = 4 << 20;

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `X-Gopush-Delivery`.
    pub id: String,
    /// `X-Gopush-Signature`.
    pub signature: String,
    /// The raw body.
    pub body: Vec<u8>,
}

impl Delivery {
    /// The body's events.
    pub fn events(&self) -> Vec<Value> {
        match serde_json::from_slice(&self.body) {
            Ok(Value::Array(events)) => events,
            _ => panic!("a webhook body that is not a JSON array: {}", String::from_utf8_lossy(&self.body)),
        }
    }
}

/// The receiver.
pub struct Receiver {
    /// `127.0.0.1:port`.
    pub addr: String,
    got: Arc<Mutex<Vec<Delivery>>>,
    stop: Option<CancellationToken>,
}

impl Receiver {
    /// Listens on a free loopback port.
    pub async fn start() -> Receiver {
        let port = testkit::free_port();
        let mut r = Receiver { addr: format!("127.0.0.1:{port}"), got: Arc::default(), stop: None };
        r.start_again().await;
        r
    }

    /// The URL a comet posts to.
    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    /// Every delivery so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every event so far, in arrival order.
    pub fn events(&self) -> Vec<Value> {
        self.deliveries().iter().flat_map(Delivery::events).collect()
    }

    /// Closes the port and every open connection.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.cancel();
        }
    }

    /// Listens again on the same port.
    pub async fn start_again(&mut self) {
        self.stop();
        let listener = TcpListener::bind(&self.addr).await.unwrap_or_else(|e| panic!("bind {}: {e}", self.addr));
        let stop = CancellationToken::new();
        self.stop = Some(stop.clone());
        let got = self.got.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(_) => continue,
                    },
                    _ = stop.cancelled() => return,
                };
                let (got, stop) = (got.clone(), stop.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let got = got.clone();
                        async move { Ok::<_, std::convert::Infallible>(take(req, &got).await) }
                    });
                    let conn =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.cancelled() => {}
                    }
                });
            }
        });
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn take(req: Request<hyper::body::Incoming>, got: &Mutex<Vec<Delivery>>) -> Response<Full<Bytes>> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (id, signature) = (header("x-gopush-delivery"), header("x-gopush-signature"));
    let Ok(body) = Limited::new(req.into_body(), MAX_BODY).collect().await else {
        return Response::builder().status(413).body(Full::default()).unwrap_or_default();
    };
    let body = body.to_bytes().to_vec();
    got.lock().unwrap_or_else(|e| e.into_inner()).push(Delivery { id, signature, body });
    Response::new(Full::default())
}
