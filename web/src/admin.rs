//! The admin port (docs/http-api.md#admin-port-post-only-no-jsonp): pushes to one key or many
//! (grouped per owning comet, one batched call each, in parallel), deleting a key's offline messages,
//! registering client tokens, and `/metrics` and `/health`. API routes are POST only and, when
//! `admin_token` is set, need `Authorization: Bearer <token>` (docs/decisions.md#d10-tokens-over-http,
//! docs/decisions.md#d11-admin-port-closed-by-default, docs/decisions.md#d12-observability).

use crate::error::WebError;
use crate::limits::{AUTH_BLOCK, Strike};
use crate::presence;
use crate::reply::{self, Call, HttpResponse, Reply, Style, finish};
use crate::rooms::{self, RoomRoute};
use crate::state::State;
use bytes::{Bytes, BytesMut};
use cluster::gojson;
use cluster::query::Query as Params;
use cluster::rpc::SharedComet;
use futures::future::join_all;
use http_body_util::BodyExt;
use hyper::body::Body;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH};
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tracing::warn;

/// Token lifetime when `/1/token/add` gives no `e`: 30 days, upstream's hard-coded token expiry.
pub const DEFAULT_TOKEN_SECS: u64 = 30 * 24 * 3600;

/// Longest client token, in bytes: the comet and the message store refuse longer ones, so web
/// answers that as the parameter error it is instead of an internal one from the comet.
const MAX_TOKEN_LEN: usize = 1024;

/// Bytes past `max_body` that are read and thrown away before answering an oversized request, so
/// the client sees the answer instead of a connection reset.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// What an admin path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    PushPrivate,
    PushPrivates,
    DeleteMessages,
    AddToken,
    Online,
    OnlineCount,
    RoomOnline,
    CloseConns,
    Metrics,
    Health,
    Room(RoomRoute),
}

/// Every admin path, as matched and as its metric label.
const ROUTES: &[(&str, Route)] = &[
    ("/1/admin/push/private", Route::PushPrivate),
    ("/admin/push", Route::PushPrivate),
    ("/1/admin/push/mprivate", Route::PushPrivates),
    ("/1/admin/msg/del", Route::DeleteMessages),
    ("/admin/msg/clean", Route::DeleteMessages),
    ("/1/token/add", Route::AddToken),
    ("/1/admin/online", Route::Online),
    ("/1/admin/online/count", Route::OnlineCount),
    ("/1/admin/room/online", Route::RoomOnline),
    ("/1/admin/conn/close", Route::CloseConns),
    ("/1/admin/room/join", Route::Room(RoomRoute::Join)),
    ("/1/admin/room/leave", Route::Room(RoomRoute::Leave)),
    ("/1/admin/room/get", Route::Room(RoomRoute::Get)),
    ("/1/admin/push/room", Route::Room(RoomRoute::PushRoom)),
    ("/1/admin/push/all", Route::Room(RoomRoute::PushAll)),
    ("/metrics", Route::Metrics),
    ("/health", Route::Health),
];

fn lookup(path: &str) -> Option<(Route, &'static str)> {
    ROUTES.iter().find(|(name, _)| *name == path).map(|&(name, route)| (route, name))
}

/// The label of every admin route counted in `gopush_web_requests_total` (all but `/metrics` and
/// `/health`, which answer outside the API), and whether its latency is recorded as a push.
pub(crate) fn labels() -> impl Iterator<Item = (&'static str, bool)> {
    ROUTES
        .iter()
        .filter(|(_, route)| !matches!(route, Route::Metrics | Route::Health))
        .map(|&(name, route)| (name, is_push(route)))
}

/// Routes whose latency `gopush_web_push_seconds` records.
fn is_push(route: Route) -> bool {
    matches!(route, Route::PushPrivate | Route::PushPrivates | Route::Room(RoomRoute::PushRoom | RoomRoute::PushAll))
}

/// Answers one request on the admin port from `peer`.
pub(crate) async fn handle<B>(state: &State, peer: IpAddr, req: Request<B>) -> HttpResponse
where
    B: Body<Data = Bytes> + Unpin,
{
    let Some((route, name)) = lookup(req.uri().path()) else {
        return reply::not_found();
    };
    match route {
        Route::Metrics | Route::Health if req.method() != Method::GET => return reply::method_not_allowed(),
        Route::Metrics => return metrics(state),
        Route::Health => return health(state),
        // Presence is read-only: GET as well as POST.
        Route::Online | Route::OnlineCount | Route::RoomOnline if req.method() == Method::GET => {}
        _ if req.method() != Method::POST => return reply::method_not_allowed(),
        _ => {}
    }
    let token = &state.config.base.admin_token;
    if !token.is_empty() {
        let now = Instant::now();
        if state.throttle.blocked(peer, now) {
            return reply::too_many_requests(AUTH_BLOCK.as_secs());
        }
        if !authorized(token, &req) {
            if state.throttle.fail(peer, now) == Strike::Blocked {
                warn!(%peer, "too many wrong admin tokens; refusing this source's admin requests for {AUTH_BLOCK:?}");
            }
            return reply::unauthorized();
        }
    }
    let started = Instant::now();
    let query = Params::parse(req.uri().query().unwrap_or("").as_bytes());
    let declared_len = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let max_body = match route {
        Route::Room(r) => rooms::max_body(r, state.config.base.max_body),
        _ => state.config.base.max_body,
    };
    let body = read_body(req.into_body(), declared_len, max_body, state.config.base.http_timeout);
    let mut call =
        Call { route: name, style: Style::Versioned, key: String::new(), error_header: state.config.base.error_header };
    let outcome = match route {
        Route::PushPrivate => push_private(state, &query, body.await, &mut call.key).await,
        Route::PushPrivates => push_privates(state, &query, body.await, &mut call.key).await,
        Route::DeleteMessages => delete_messages(state, body.await, &mut call.key).await,
        Route::AddToken => add_token(state, &query, body.await, &mut call.key).await,
        Route::Room(r) => rooms::handle(state, r, &query, body.await, &mut call.key).await,
        Route::Online => presence::online(state, &query, body.await, &mut call.key).await,
        Route::OnlineCount => match query.get("room") {
            Some(room) => {
                call.key.push_str(room);
                presence::room_count(state, room).await
            }
            None => presence::count(state).await,
        },
        Route::RoomOnline => presence::room_online(state, &query, &mut call.key).await,
        Route::CloseConns => presence::close(state, &query, &mut call.key).await,
        Route::Metrics | Route::Health => Ok(Reply::ok(Style::Versioned)),
    };
    let response = finish(&call, outcome, None);
    if is_push(route) {
        metrics::histogram!("gopush_web_push_seconds", "route" => name).record(started.elapsed().as_secs_f64());
    }
    response
}

/// Longest publisher idempotency id, in bytes.
const MAX_ID: usize = 128;

/// The optional `id` parameter: a publisher's idempotency id, so a retry is not applied twice
/// (docs/decisions.md#d21-safe-retries). Absent or empty means none.
fn idempotency_id(query: &Params) -> Result<Option<String>, WebError> {
    match query.get("id") {
        None | Some("") => Ok(None),
        Some(id) if id.len() <= MAX_ID => Ok(Some(id.to_string())),
        Some(_) => Err(WebError::Param("id longer than 128 bytes")),
    }
}

/// `/1/admin/push/private?key=K&expire=E[&id=ID]` (alias `/admin/push`), body = the message.
async fn push_private(
    state: &State,
    query: &Params,
    body: Result<Bytes, WebError>,
    logged: &mut String,
) -> Result<Reply, WebError> {
    // Upstream does not check the key at web: an empty one reaches the comet, which refuses it.
    let key = query.get("key").unwrap_or("");
    logged.push_str(key);
    let expire = expire(query)?;
    let id = idempotency_id(query)?;
    let body = body?;
    let routes = state.routes();
    let (node, target) = routes.owner(key)?;
    let msg = json_message(&body)?;
    target
        .push_private(key.to_string(), msg, expire, id)
        .await
        .map_err(|error| WebError::CometAt { node: node.to_string(), error })?;
    Ok(Reply::ok(Style::Versioned))
}

/// The body of `/1/admin/push/mprivate`: the message as a JSON string and the keys comma-joined.
#[derive(Deserialize)]
struct Multi {
    // Go's decoder matches field names case-insensitively.
    #[serde(default, alias = "M")]
    m: Option<String>,
    #[serde(default, alias = "K")]
    k: Option<String>,
}

/// `/1/admin/push/mprivate?expire=E[&id=ID]`, body `{"m":"<message>","k":"k1,k2"}`.
async fn push_privates(
    state: &State,
    query: &Params,
    body: Result<Bytes, WebError>,
    logged: &mut String,
) -> Result<Reply, WebError> {
    let expire = expire(query)?;
    let id = idempotency_id(query)?;
    let body = body?;
    let multi: Multi =
        serde_json::from_slice(&body).map_err(|_| WebError::Param("body must be {\"m\":..,\"k\":..}"))?;
    let msg = multi.m.filter(|m| !m.is_empty()).ok_or(WebError::Param("empty m"))?;
    let keys = multi.k.unwrap_or_default();
    logged.push_str(&keys);
    // Empty entries (`"a,,b"`, `",,,"`) name no key: they are skipped, and a list of nothing but
    // them is the parameter error an empty `k` is.
    let keys: Vec<&str> = keys.split(',').filter(|k| !k.is_empty()).collect();
    if keys.is_empty() {
        return Err(WebError::Param("empty k"));
    }
    if gojson::compact(&msg).is_none() {
        return Err(WebError::BadMessage);
    }

    // Group per owning comet; one key without an owner fails the whole request, as upstream.
    let routes = state.routes();
    let mut groups: HashMap<&str, (SharedComet, Vec<String>)> = HashMap::new();
    for key in &keys {
        let (node, target) = routes.owner(key)?;
        groups.entry(node).or_insert_with(|| (target.comet.clone(), Vec::new())).1.push((*key).to_string());
    }
    let calls = groups.into_iter().map(|(node, (comet, keys))| {
        let (msg, id) = (msg.clone(), id.clone());
        async move {
            match comet.push_privates(keys.clone(), msg, expire, id).await {
                Ok(reply) => reply.failed,
                Err(e) => {
                    warn!(%node, error = %e, keys = keys.len(), "multi-push to a comet failed");
                    keys
                }
            }
        }
    });
    let mut failed: Vec<String> = join_all(calls).await.into_iter().flatten().collect();
    if failed.is_empty() {
        return Ok(Reply::ok(Style::Versioned));
    }
    // Report failed keys in request order, whatever order the comets answered in.
    let position: HashMap<&str, usize> = keys.iter().enumerate().rev().map(|(i, k)| (*k, i)).collect();
    failed.sort_by_key(|k| position.get(k.as_str()).copied().unwrap_or(usize::MAX));
    Ok(Reply::failed_keys(Style::Versioned, &failed))
}

/// `/1/admin/msg/del` (alias `/admin/msg/clean`), form body `key=K`: deletes stored messages.
async fn delete_messages(state: &State, body: Result<Bytes, WebError>, logged: &mut String) -> Result<Reply, WebError> {
    let form = Params::parse(&body?);
    let key = form.non_empty("key").ok_or(WebError::Param("missing key"))?;
    logged.push_str(key);
    state.messages.del_private(key.to_string()).await?;
    Ok(Reply::ok(Style::Versioned))
}

/// `/1/token/add` with `k`, `t` and optional `e` (seconds) in the query or a form body.
async fn add_token(
    state: &State,
    query: &Params,
    body: Result<Bytes, WebError>,
    logged: &mut String,
) -> Result<Reply, WebError> {
    let form = Params::parse(&body?);
    let get = |name: &str| query.non_empty(name).or_else(|| form.non_empty(name));
    let key = get("k").ok_or(WebError::Param("missing k"))?;
    logged.push_str(key);
    let token = get("t").ok_or(WebError::Param("missing t"))?;
    if token.len() > MAX_TOKEN_LEN {
        return Err(WebError::Param("token longer than 1024 bytes"));
    }
    let lifetime = match get("e") {
        None => DEFAULT_TOKEN_SECS,
        Some(e) => digits(e).and_then(|e| e.parse::<u64>().ok()).filter(|&e| e > 0).ok_or(WebError::Param("bad e"))?,
    };
    let (node, comet) = owner(state, key)?;
    comet
        .add_token(key.to_string(), token.to_string(), lifetime)
        .await
        .map_err(|error| WebError::CometAt { node, error })?;
    Ok(Reply::ok(Style::Versioned))
}

/// The owning comet node's name and handle for `key`.
fn owner(state: &State, key: &str) -> Result<(String, SharedComet), WebError> {
    let routes = state.routes();
    let (node, target) = routes.owner(key)?;
    Ok((node.to_string(), target.comet.clone()))
}

/// `expire` as Go's `ParseUint(s, 10, 32)` reads it: required, digits only, fits in 32 bits.
fn expire(query: &Params) -> Result<u32, WebError> {
    query
        .get("expire")
        .and_then(digits)
        .and_then(|e| e.parse().ok())
        .ok_or(WebError::Param("expire must be an unsigned 32-bit number of seconds"))
}

fn digits(s: &str) -> Option<&str> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

/// The body as a message: UTF-8 and one valid JSON value, else the comet would refuse it.
pub(crate) fn json_message(body: &[u8]) -> Result<String, WebError> {
    let text = std::str::from_utf8(body).map_err(|_| WebError::BadMessage)?;
    if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
        return Err(WebError::BadMessage);
    }
    Ok(text.to_string())
}

/// True when no admin token is configured or the request carries it as a bearer token. The scheme
/// name is case-insensitive (RFC 9110), so `bearer x` works as `Bearer x` does.
fn authorized<B>(token: &str, req: &Request<B>) -> bool {
    if token.is_empty() {
        return true;
    }
    let Some(value) = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()) else {
        return false;
    };
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (scheme, rest) = value.split_at(space);
    let given = rest.trim_ascii_start();
    scheme.eq_ignore_ascii_case(b"bearer") && constant_time_eq(given, token.as_bytes())
}

/// Compares without an early exit, so response timing does not reveal how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads at most `limit` bytes of body within `deadline`. An oversized body is refused; up to
/// [`DRAIN_LIMIT`] more bytes are read and dropped first so the refusal reaches the client.
async fn read_body<B>(mut body: B, declared: Option<u64>, limit: usize, deadline: Duration) -> Result<Bytes, WebError>
where
    B: Body<Data = Bytes> + Unpin,
{
    const TOO_LARGE: WebError = WebError::Param("request body too large");
    if declared.is_some_and(|n| n > (limit + DRAIN_LIMIT) as u64) {
        return Err(TOO_LARGE);
    }
    let read = async {
        let mut buf = BytesMut::new();
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return Err(WebError::Param("unreadable request body"));
            };
            if let Ok(data) = frame.into_data() {
                seen = seen.saturating_add(data.len());
                if seen <= limit {
                    buf.extend_from_slice(&data);
                } else if seen > limit + DRAIN_LIMIT {
                    break;
                }
            }
        }
        if seen > limit { Err(TOO_LARGE) } else { Ok(buf.freeze()) }
    };
    tokio::time::timeout(deadline, read).await.unwrap_or(Err(WebError::Param("request body timed out")))
}

/// `GET /metrics`: Prometheus text.
fn metrics(state: &State) -> HttpResponse {
    reply::respond(StatusCode::OK, "text/plain; version=0.0.4", state.metrics.render().into())
}

/// `GET /health`: 200 while some comet node is routable, 503 otherwise, with details.
fn health(state: &State) -> HttpResponse {
    let routes = state.routes();
    let zookeeper = match &state.session {
        None => "none",
        Some(s) if s.connected() => "connected",
        Some(_) => "disconnected",
    };
    let ok = routes.nodes() > 0;
    let body = serde_json::json!({
        "ok": ok,
        "detail": {
            "comet_nodes": routes.nodes(),
            "comet_instances": routes.instances().len(),
            "zookeeper": zookeeper,
        },
    })
    .to_string();
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    reply::respond(status, "application/json;charset=utf-8", body.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    #[test]
    fn expire_parses_like_go_parseuint() {
        let e = |q: &str| expire(&Params::parse(q.as_bytes())).ok();
        assert_eq!(e("expire=0"), Some(0));
        assert_eq!(e("expire=4294967295"), Some(u32::MAX));
        for bad in ["", "expire=", "expire=4294967296", "expire=-1", "expire=+1", "expire=1e3", "expire=abc"] {
            assert_eq!(e(bad), None, "{bad}");
        }
    }

    #[test]
    fn messages_must_be_json() {
        assert_eq!(json_message(b" {\"a\":1} ").unwrap(), " {\"a\":1} ");
        assert!(json_message(b"hello").is_err());
        assert!(json_message(b"").is_err());
        assert!(json_message(b"\xff").is_err());
    }

    #[test]
    fn bearer_tokens_are_checked() {
        let req = |h: Option<&str>| {
            let mut b = Request::builder();
            if let Some(h) = h {
                b = b.header(AUTHORIZATION, h);
            }
            b.body(()).unwrap()
        };
        assert!(authorized("", &req(None)));
        assert!(authorized("s3cret", &req(Some("Bearer s3cret"))));
        assert!(!authorized("s3cret", &req(Some("Bearer s3cre"))));
        assert!(!authorized("s3cret", &req(Some("Bearer s3cret2"))));
        assert!(authorized("s3cret", &req(Some("bearer s3cret"))), "the scheme is case-insensitive");
        assert!(authorized("s3cret", &req(Some("BEARER  s3cret"))));
        assert!(!authorized("s3cret", &req(Some("Bearer S3CRET"))), "the token is not");
        assert!(!authorized("s3cret", &req(Some("Bearers3cret"))));
        assert!(!authorized("s3cret", &req(Some("Basic s3cret"))));
        assert!(!authorized("s3cret", &req(None)));
    }

    #[tokio::test]
    async fn bodies_are_limited() {
        let t = Duration::from_secs(1);
        let ok = read_body(Full::new(Bytes::from_static(b"12345")), Some(5), 5, t).await.unwrap();
        assert_eq!(&ok[..], b"12345");
        assert!(read_body(Full::new(Bytes::from_static(b"123456")), None, 5, t).await.is_err());
        assert!(read_body(Full::new(Bytes::new()), Some(10 << 20), 5, t).await.is_err(), "declared too large");
    }
}
