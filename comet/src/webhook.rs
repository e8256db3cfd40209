//! Presence webhooks (docs/decisions.md#d62-webhooks-from-each-comet): the comet reports `online`
//! and `offline` (and, when asked, `connect` and `disconnect`) to one HTTP endpoint. Events go into
//! a bounded queue that drops its oldest event when full, so the connection path only takes a short
//! lock; one task per comet posts them as JSON-array batches signed with HMAC-SHA256, retrying
//! timeouts, failed connections and 5xx answers with exponential back-off and jitter.

use crate::conn::CloseReason;
use crate::error::Error;
use bytes::Bytes;
use cluster::Proto;
use cluster::config::de_duration;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use sha2::Sha256;
use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Events posted per request at most, whatever `batch` says: bounds one body.
const MAX_BATCH: usize = 10_000;

/// Longest back-off between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Bytes of a receiver's answer read before giving up on reusing its connection.
const MAX_ANSWER: usize = 64 * 1024;

/// The `[webhook]` section: where and how presence events are posted. An empty `url` turns
/// webhooks off.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// The receiver, `http://host:port/path`; empty disables webhooks.
    pub url: String,
    /// Key of the `X-Gopush-Signature` HMAC-SHA256 over each body; empty sends no signature.
    pub secret: String,
    /// Events per request at most.
    pub batch: usize,
    /// How long an event may wait for others to fill its batch.
    #[serde(deserialize_with = "de_duration")]
    pub flush: Duration,
    /// Events queued at most; when full the oldest is dropped and counted.
    pub queue: usize,
    /// Deadline of one request, connecting included.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Attempts after the first for a batch that timed out or got a 5xx; then it is dropped.
    pub retries: u32,
    /// Pause before the first retry; it doubles per retry (at most 30 s), with jitter.
    #[serde(deserialize_with = "de_duration")]
    pub backoff: Duration,
    /// Also report every connection: `connect` and `disconnect` events.
    pub connections: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            secret: String::new(),
            batch: 100,
            flush: Duration::from_millis(200),
            queue: 100_000,
            timeout: Duration::from_secs(5),
            retries: 8,
            backoff: Duration::from_millis(200),
            connections: false,
        }
    }
}

impl WebhookConfig {
    /// Whether webhooks are on.
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// Checks the values serde cannot.
    pub fn validate(&self) -> Result<(), Error> {
        if !self.enabled() {
            return Ok(());
        }
        Target::parse(&self.url).map_err(|e| Error::Config(format!("webhook.url: {e}")))?;
        if self.batch == 0 || self.batch > MAX_BATCH || self.queue == 0 {
            return Err(Error::Config(format!("webhook.batch must be 1 to {MAX_BATCH} and webhook.queue at least 1")));
        }
        if self.flush.is_zero() || self.timeout.is_zero() {
            return Err(Error::Config("webhook.flush and webhook.timeout must be positive".into()));
        }
        Ok(())
    }
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Its first connection subscribed.
    Online,
    /// Its last connection ended.
    Offline,
    /// A connection subscribed.
    Connect,
    /// A connection ended.
    Disconnect,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Online => "online",
            Kind::Offline => "offline",
            Kind::Connect => "connect",
            Kind::Disconnect => "disconnect",
        }
    }
}

/// One presence event, as queued.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// What happened.
    pub kind: Kind,
    /// To which key.
    pub key: Box<str>,
    /// The protocol of the connection that caused it.
    pub proto: Proto,
    /// Unix time in milliseconds.
    pub time: u64,
    /// The key's connections on this comet after the event.
    pub conns: u32,
    /// Why the connection ended, for `offline` and `disconnect`.
    pub reason: Option<CloseReason>,
}

/// The bounded queue between the connection path and the sender.
pub(crate) struct Queue {
    events: Mutex<VecDeque<Event>>,
    bound: usize,
    batch: usize,
    /// Whether `connect` and `disconnect` are reported.
    pub connections: bool,
    wake: Notify,
}

impl Queue {
    /// An empty queue for `config`.
    pub fn new(config: &WebhookConfig) -> Queue {
        Queue {
            events: Mutex::new(VecDeque::new()),
            bound: config.queue.max(1),
            batch: config.batch.clamp(1, MAX_BATCH),
            connections: config.connections,
            wake: Notify::new(),
        }
    }

    /// Queues `event` without waiting; a full queue drops its oldest event and counts it.
    pub fn push(&self, event: Event) {
        let Ok(mut q) = self.events.lock() else { return };
        if q.len() >= self.bound {
            q.pop_front();
            metrics::counter!(crate::metrics::WEBHOOK_DROPPED, "reason" => "overflow").increment(1);
            // The sender updates the gauge between batches; a stuck sender must not hide a full queue.
            metrics::gauge!(crate::metrics::WEBHOOK_QUEUE).set(self.bound as f64);
        }
        q.push_back(event);
        if q.len() == self.batch {
            self.wake.notify_one();
        }
    }

    /// Takes the oldest events, at most one batch.
    pub(crate) fn take(&self) -> Vec<Event> {
        let Ok(mut q) = self.events.lock() else { return Vec::new() };
        let n = q.len().min(self.batch);
        let batch = q.drain(..n).collect();
        metrics::gauge!(crate::metrics::WEBHOOK_QUEUE).set(q.len() as f64);
        batch
    }

    fn len(&self) -> usize {
        self.events.lock().map_or(0, |q| q.len())
    }
}

/// Unix time now, in milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Where batches go: `http://authority/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, &'static str> {
        let rest = url.strip_prefix("http://").ok_or("only http:// URLs are supported")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err("needs a host and no user info");
        }
        let authority =
            if authority.rsplit_once(':').is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                && !authority.ends_with(']')
            {
                authority.to_string()
            } else {
                format!("{authority}:80")
            };
        if path.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err("the path has spaces or control characters");
        }
        Ok(Target { authority, path: path.to_string() })
    }
}

/// The sender: one per comet, posting the queue's events in order.
pub(crate) struct Sender {
    config: WebhookConfig,
    target: Target,
    node: String,
    queue: std::sync::Arc<Queue>,
    conn: Option<SendRequest<Full<Bytes>>>,
    // Delivery ids: this process's start in ms, then a counter.
    boot: u64,
    seq: AtomicU64,
    jitter: RandomState,
}

impl Sender {
    /// A sender of `queue`'s events for comet node `node`; `None` when webhooks are off.
    pub fn new(config: &WebhookConfig, node: &str, queue: std::sync::Arc<Queue>) -> Option<Sender> {
        let target = Target::parse(&config.url).ok()?;
        Some(Sender {
            config: config.clone(),
            target,
            node: node.to_string(),
            queue,
            conn: None,
            boot: now_ms(),
            seq: AtomicU64::new(0),
            jitter: RandomState::new(),
        })
    }

    /// Posts batches until `stop`; then tries once more to post what is queued, within the timeout.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = self.queue.wake.notified() => {}
                _ = tokio::time::sleep(self.config.flush) => {}
                _ = stop.cancelled() => break,
            }
            // Bounded: each round posts at most what the queue holds now, one batch at a time.
            let mut rounds = self.queue.len().div_ceil(self.queue.batch);
            while rounds > 0 && !stop.is_cancelled() {
                rounds -= 1;
                let batch = self.queue.take();
                if batch.is_empty() {
                    break;
                }
                self.deliver(&batch, &stop).await;
            }
        }
        let timeout = self.config.timeout;
        let last = async {
            loop {
                let batch = self.queue.take();
                if batch.is_empty() {
                    return;
                }
                let body = self.body(&batch);
                let id = self.delivery_id();
                let _ = self.post(&body, &id).await;
            }
        };
        let _ = tokio::time::timeout(timeout, last).await;
    }

    fn delivery_id(&self) -> String {
        format!("{}-{:x}-{}", self.node, self.boot, self.seq.fetch_add(1, Ordering::Relaxed))
    }

    fn body(&self, batch: &[Event]) -> Bytes {
        let events: Vec<serde_json::Value> = batch
            .iter()
            .map(|e| {
                let mut v = serde_json::json!({
                    "event": e.kind.as_str(),
                    "key": &*e.key,
                    "node": self.node,
                    "proto": e.proto.name(),
                    "time": e.time,
                    "conns": e.conns,
                });
                if let (Some(reason), Some(map)) = (e.reason, v.as_object_mut()) {
                    map.insert("reason".into(), reason.as_str().into());
                }
                v
            })
            .collect();
        Bytes::from(serde_json::to_vec(&events).unwrap_or_default())
    }

    /// Posts one batch, retrying within the budget; the same delivery id on every attempt, so the
    /// receiver can drop a batch it already has.
    async fn deliver(&mut self, batch: &[Event], stop: &CancellationToken) {
        let body = self.body(batch);
        let id = self.delivery_id();
        let mut pause = self.config.backoff;
        for attempt in 0..=self.config.retries {
            match self.post(&body, &id).await {
                Outcome::Delivered => {
                    metrics::counter!(crate::metrics::WEBHOOK_POSTS, "outcome" => "ok").increment(1);
                    return;
                }
                Outcome::Rejected(status) => {
                    warn!(status, delivery = %id, events = batch.len(), "webhook receiver refused a batch; dropped");
                    metrics::counter!(crate::metrics::WEBHOOK_POSTS, "outcome" => "rejected").increment(1);
                    metrics::counter!(crate::metrics::WEBHOOK_DROPPED, "reason" => "rejected")
                        .increment(batch.len() as u64);
                    return;
                }
                Outcome::Retry(why) => {
                    debug!(delivery = %id, attempt, why, "webhook post failed");
                    metrics::counter!(crate::metrics::WEBHOOK_POSTS, "outcome" => "retry").increment(1);
                }
            }
            if attempt == self.config.retries {
                break;
            }
            // Full jitter over the upper half: spread, but never much shorter than planned.
            let nanos = pause.as_nanos() as u64;
            let wait = Duration::from_nanos(nanos / 2 + self.jitter.hash_one(attempt) % (nanos / 2 + 1));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => break,
            }
            pause = (pause * 2).min(MAX_BACKOFF);
        }
        warn!(delivery = %id, events = batch.len(), "webhook batch dropped after its retries");
        metrics::counter!(crate::metrics::WEBHOOK_POSTS, "outcome" => "failed").increment(1);
        metrics::counter!(crate::metrics::WEBHOOK_DROPPED, "reason" => "failed").increment(batch.len() as u64);
    }

    async fn post(&mut self, body: &Bytes, id: &str) -> Outcome {
        let timeout = self.config.timeout;
        match tokio::time::timeout(timeout, self.exchange(body, id)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                self.conn = None;
                Outcome::Retry("timed out")
            }
        }
    }

    async fn exchange(&mut self, body: &Bytes, id: &str) -> Outcome {
        let kept = match self.conn.take() {
            Some(mut s) => s.ready().await.is_ok().then_some(s),
            None => None,
        };
        let mut sender = match kept {
            Some(s) => s,
            None => match self.connect().await {
                Ok(s) => s,
                Err(why) => return Outcome::Retry(why),
            },
        };
        let mut req = hyper::Request::post(self.target.path.as_str())
            .header(hyper::header::HOST, self.target.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header("X-Gopush-Delivery", id);
        if !self.config.secret.is_empty() {
            req = req.header("X-Gopush-Signature", signature(&self.config.secret, body));
        }
        let Ok(req) = req.body(Full::new(body.clone())) else { return Outcome::Retry("bad request") };
        let resp = match sender.send_request(req).await {
            Ok(resp) => resp,
            Err(_) => return Outcome::Retry("connection failed"),
        };
        let status = resp.status();
        // The answer's body is read (bounded) so the connection can carry the next batch.
        let mut body = resp.into_body();
        let mut read = 0usize;
        let mut reusable = true;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    read += f.data_ref().map_or(0, |d| d.len());
                    if read > MAX_ANSWER {
                        reusable = false;
                        break;
                    }
                }
                Err(_) => {
                    reusable = false;
                    break;
                }
            }
        }
        if reusable {
            self.conn = Some(sender);
        }
        if status.is_success() {
            Outcome::Delivered
        } else if status.is_server_error() || status.as_u16() == 429 {
            Outcome::Retry("server error")
        } else {
            Outcome::Rejected(status.as_u16())
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, &'static str> {
        let stream = TcpStream::connect(&self.target.authority).await.map_err(|_| "cannot connect")?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|_| "handshake failed")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}

enum Outcome {
    Delivered,
    /// A 4xx other than 429: the receiver will not take it, so retrying cannot help.
    Rejected(u16),
    Retry(&'static str),
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return String::new() };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_fail() {
        let t = Target::parse("http://127.0.0.1:21001/hooks?x=1").unwrap();
        assert_eq!((t.authority.as_str(), t.path.as_str()), ("127.0.0.1:21001", "/hooks?x=1"));
        let t = Target::parse("http://example.com").unwrap();
        assert_eq!((t.authority.as_str(), t.path.as_str()), ("example.com:80", "/"));
        assert_eq!(Target::parse("http://[::1]:8080/").unwrap().authority, "[::1]:8080");
        for bad in ["https://x/", "x:80", "http:///p", "http://u@x/", "http://x/a b"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signatures_are_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_full_queue_drops_its_oldest() {
        let config = WebhookConfig { queue: 2, batch: 10, ..WebhookConfig::default() };
        let q = Queue::new(&config);
        let ev =
            |k: &str| Event { kind: Kind::Online, key: k.into(), proto: Proto::Tcp, time: 0, conns: 1, reason: None };
        q.push(ev("a"));
        q.push(ev("b"));
        q.push(ev("c"));
        let keys: Vec<_> = q.take().into_iter().map(|e| e.key).collect();
        assert_eq!(keys, vec!["b".into(), "c".into()] as Vec<Box<str>>);
    }
}
