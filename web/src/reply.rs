//! The one place that turns outcomes into bytes on the wire: errors into `ret` codes (and one WARN
//! line with the reason), replies into upstream's JSON envelope (`{"data":{..},"ret":0}`, legacy
//! routes adding `"msg":"ok"`), validated JSONP, and Go's plain-text 404/405/401/429 answers. Every
//! response has a Content-Length (CocoaGoPush needs it; docs/decisions.md#d25-typed-errors-mapped-once).

use crate::error::WebError;
use bytes::Bytes;
use cluster::rpc::{CometError, StoreError};
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use tracing::warn;

/// The header that says why an API call failed, when `base.error_header` is on.
pub(crate) const ERROR_HEADER: HeaderName = HeaderName::from_static("x-gopush-error");

/// Longest key written into a log line; keys are client input and may be huge.
const LOGGED_KEY: usize = 128;

/// The response type of every handler.
pub(crate) type HttpResponse = Response<Full<Bytes>>;

/// `ret` of a success.
pub(crate) const OK: u32 = 0;
/// `ret` when no comet node (or no address of the protocol) serves the key.
pub(crate) const NO_NODE: u32 = 1001;
/// `ret` of a parameter error.
pub(crate) const PARAM_ERROR: u32 = 65534;
/// `ret` of an internal error: RPC, storage, not-owner, bad message.
pub(crate) const INTERNAL_ERROR: u32 = 65535;

const JSON: &str = "application/json;charset=utf-8";
const JAVASCRIPT: &str = "application/javascript;charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Which envelope a route answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// `/1/*` and `/2/*` routes: `{"data":..,"ret":N}`.
    Versioned,
    /// Unversioned routes: `{"data":..,"msg":"ok","ret":N}`; the `msg` never changes, even on errors.
    Legacy,
}

/// A JSON reply: the `ret` code and, on success, the `data` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    style: Style,
    ret: u32,
    data: Option<String>,
}

impl Reply {
    /// Success without data: `{"ret":0}`.
    pub(crate) fn ok(style: Style) -> Reply {
        Reply { style, ret: OK, data: None }
    }

    /// Success with `data`, which must be a JSON object already encoded Go's way.
    pub(crate) fn data(style: Style, data: String) -> Reply {
        Reply { style, ret: OK, data: Some(data) }
    }

    /// Success naming the keys that failed: `{"data":{"fk":["k1",…]},"ret":0}`, as upstream's
    /// multi-key push answers.
    pub(crate) fn failed_keys(style: Style, failed: &[String]) -> Reply {
        let mut data = String::from("{\"fk\":");
        cluster::gojson::push_strings(&mut data, failed);
        data.push('}');
        Reply::data(style, data)
    }

    /// The JSON bytes, keys in Go's sorted order.
    pub(crate) fn body(&self) -> String {
        let data_len = self.data.as_ref().map_or(0, String::len);
        let mut out = String::with_capacity(data_len + 32);
        out.push('{');
        if let Some(data) = &self.data {
            out.push_str("\"data\":");
            out.push_str(data);
            out.push(',');
        }
        if self.style == Style::Legacy {
            out.push_str("\"msg\":\"ok\",");
        }
        out.push_str("\"ret\":");
        out.push_str(&self.ret.to_string());
        out.push('}');
        out
    }

    /// The HTTP response: JSON, or JSONP `callback(json)` when a callback was given. The callback
    /// must have passed [`valid_callback`].
    pub(crate) fn into_response(self, callback: Option<&str>) -> HttpResponse {
        let json = self.body();
        match callback {
            Some(cb) => {
                let mut body = String::with_capacity(cb.len() + json.len() + 2);
                body.push_str(cb);
                body.push('(');
                body.push_str(&json);
                body.push(')');
                respond(StatusCode::OK, JAVASCRIPT, body.into())
            }
            None => respond(StatusCode::OK, JSON, json.into()),
        }
    }
}

/// What an API request is about, for the log line of a failure.
pub(crate) struct Call {
    /// The route's metric label, e.g. `/1/admin/push/private`.
    pub(crate) route: &'static str,
    /// Its envelope.
    pub(crate) style: Style,
    /// The key it names (empty when none, comma-joined for several).
    pub(crate) key: String,
    /// Whether to add [`ERROR_HEADER`] to a failure.
    pub(crate) error_header: bool,
}

/// Ends an API request: counts it, logs a failure once with route, key and reason, and writes
/// the reply. The one place where errors become replies, so every route says why the same way.
pub(crate) fn finish(call: &Call, outcome: Result<Reply, WebError>, callback: Option<&str>) -> HttpResponse {
    let (reply, why) = match outcome {
        Ok(reply) => (reply, None),
        Err(e) => {
            let why = reason(&e);
            let key: String = call.key.chars().take(LOGGED_KEY).collect();
            warn!(route = call.route, key = ?key, reason = %why, ret = ret_code(&e), "api call failed");
            (Reply { style: call.style, ret: ret_code(&e), data: None }, Some(why))
        }
    };
    count(call.route, reply.ret);
    let mut response = reply.into_response(callback);
    if let Some(why) = why.filter(|_| call.error_header) {
        if let Ok(value) = HeaderValue::from_str(&why) {
            response.headers_mut().insert(ERROR_HEADER, value);
        }
    }
    response
}

/// A short, header-safe reason for a failure, naming the comet node when one is known.
pub(crate) fn reason(e: &WebError) -> String {
    match e {
        WebError::Param(p) => (*p).to_string(),
        WebError::NoComet => "no comet node for the key".into(),
        WebError::BadMessage => "message is not JSON".into(),
        WebError::Comet(c) => comet_reason("comet", c),
        WebError::CometAt { node, error } => comet_reason(&format!("comet {node}"), error),
        WebError::Store(s) => format!("store: {}", store_reason(s)),
        WebError::Config(_) | WebError::Bind(_) => "internal error".into(),
    }
}

fn comet_reason(who: &str, e: &CometError) -> String {
    match e {
        CometError::Unreachable => format!("{who} unreachable"),
        CometError::Timeout => format!("{who} timed out"),
        CometError::NotOwner => "key not owned".into(),
        CometError::BadKey => "bad key".into(),
        CometError::BadMessage => "message is not JSON".into(),
        CometError::BadToken => "bad token".into(),
        CometError::Store(s) => format!("store: {}", store_reason(s)),
    }
}

fn store_reason(e: &StoreError) -> &'static str {
    match e {
        StoreError::Backend => "backend unavailable",
        StoreError::NoNode => "no message node",
        StoreError::Unreachable => "message node unreachable",
        StoreError::Timeout => "timed out",
        StoreError::BadKey => "bad key",
        StoreError::BadMessage => "message is not JSON",
        StoreError::BadMid => "bad mid",
        StoreError::BadToken => "bad token",
    }
}

/// Counts one answered API request by route and `ret`.
pub(crate) fn count(route: &'static str, ret: u32) {
    let ret = match ret {
        0 => "0",
        1001 => "1001",
        65534 => "65534",
        _ => "65535",
    };
    metrics::counter!("gopush_web_requests_total", "route" => route, "ret" => ret).increment(1);
}

/// The `ret` code of an error, as upstream answers it (docs/http-api.md#ret-codes).
pub(crate) fn ret_code(e: &WebError) -> u32 {
    match e {
        WebError::Param(_) => PARAM_ERROR,
        WebError::NoComet => NO_NODE,
        // A comet that does not own the key is an RPC error upstream too: 65535.
        WebError::BadMessage
        | WebError::Comet(_)
        | WebError::CometAt { .. }
        | WebError::Store(_)
        | WebError::Config(_)
        | WebError::Bind(_) => INTERNAL_ERROR,
    }
}

/// True for a JSONP callback name we echo: `[A-Za-z_$][A-Za-z0-9_$.]{0,63}`
/// (docs/decisions.md#d9-hostile-input). Dots are allowed because the JavaScript SDK names its callbacks `GoPushCli.callback_xxx`.
pub(crate) fn valid_callback(name: &str) -> bool {
    let b = name.as_bytes();
    let head_ok = |c: u8| c.is_ascii_alphabetic() || c == b'_' || c == b'$';
    let tail_ok = |c: u8| head_ok(c) || c.is_ascii_digit() || c == b'.';
    match b.split_first() {
        Some((&first, rest)) => head_ok(first) && rest.len() <= 63 && rest.iter().all(|&c| tail_ok(c)),
        None => false,
    }
}

/// Go's `http.Error(w, "Method Not Allowed", 405)`.
pub(crate) fn method_not_allowed() -> HttpResponse {
    plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n")
}

/// Go's `http.NotFound`: `404 page not found\n`.
pub(crate) fn not_found() -> HttpResponse {
    plain(StatusCode::NOT_FOUND, "404 page not found\n")
}

/// 401 for an admin request without the configured bearer token.
pub(crate) fn unauthorized() -> HttpResponse {
    let mut r = plain(StatusCode::UNAUTHORIZED, "Unauthorized\n");
    r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// 429 for a source that sent too many wrong admin tokens; it may try again after `retry_secs`.
pub(crate) fn too_many_requests(retry_secs: u64) -> HttpResponse {
    let mut r = plain(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n");
    r.headers_mut().insert(hyper::header::RETRY_AFTER, HeaderValue::from(retry_secs));
    r
}

/// A plain-text body the way Go's `http.Error` writes it.
fn plain(status: StatusCode, text: &'static str) -> HttpResponse {
    let mut r = respond(status, TEXT, Bytes::from_static(text.as_bytes()));
    r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}

/// A response with `body` of `content_type`; hyper adds the exact Content-Length of a full body.
pub(crate) fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> HttpResponse {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_match_go_key_order() {
        assert_eq!(Reply::ok(Style::Versioned).body(), r#"{"ret":0}"#);
        assert_eq!(Reply::ok(Style::Legacy).body(), r#"{"msg":"ok","ret":0}"#);
        assert_eq!(
            Reply::data(Style::Versioned, r#"{"server":"a:1"}"#.into()).body(),
            r#"{"data":{"server":"a:1"},"ret":0}"#
        );
        assert_eq!(
            Reply::data(Style::Legacy, r#"{"server":"a:1"}"#.into()).body(),
            r#"{"data":{"server":"a:1"},"msg":"ok","ret":0}"#
        );
        let failed = Reply { style: Style::Legacy, ret: ret_code(&WebError::Param("k")), data: None };
        assert_eq!(failed.body(), r#"{"msg":"ok","ret":65534}"#);
    }

    #[test]
    fn errors_map_to_upstream_codes() {
        assert_eq!(ret_code(&WebError::Param("x")), 65534);
        assert_eq!(ret_code(&WebError::NoComet), 1001);
        assert_eq!(ret_code(&WebError::BadMessage), 65535);
        assert_eq!(ret_code(&WebError::Comet(CometError::NotOwner)), 65535);
        assert_eq!(ret_code(&WebError::Comet(CometError::Timeout)), 65535);
        assert_eq!(ret_code(&WebError::Store(StoreError::NoNode)), 65535);
        assert_eq!(ret_code(&WebError::Store(StoreError::BadMid)), 65535);
    }

    #[test]
    fn callbacks_are_validated() {
        for ok in ["cb", "_", "$", "GoPushCli.callback_123", "jQuery1102_$", &"a".repeat(64)] {
            assert!(valid_callback(ok), "{ok}");
        }
        for bad in ["", "1cb", ".a", "a(b)", "a-b", "alert(1)//", "a b", "é", &"a".repeat(65), "a\n"] {
            assert!(!valid_callback(bad), "{bad:?}");
        }
    }
}
