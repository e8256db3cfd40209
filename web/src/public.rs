//! The public port (docs/http-api.md#public-port-get-only): which comet address serves a key, offline messages after a mid, and the
//! web clock, each in the versioned form (`/1/...`, `/2/server/get`, JSONP via `cb`) and the legacy
//! form the SDKs use (`/server/get`, `/msg/get`, `/time/get`, `"msg":"ok"`, JSONP via `callback`).
//! GET only.

use crate::error::WebError;
use crate::reply::{self, Call, HttpResponse, Reply, Style, finish, valid_callback};
use crate::state::State;
use crate::{client_files, cors};
use cluster::Proto;
use cluster::gojson;
use cluster::query::Query as Params;
use cluster::rpc::{Mid, StoreError, StoredMessage};
use hyper::{Method, Request};
use std::time::{SystemTime, UNIX_EPOCH};

/// What a public path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `/1/server/get` (`all` false: one address) and `/2/server/get` (`all` true: every address).
    Server { all: bool },
    /// `/1/msg/get`.
    Messages,
    /// `/1/time/get`.
    Time,
}

/// Parameter names of one style: versioned routes use short names, legacy ones long names.
struct Names {
    key: &'static str,
    protocol: &'static str,
    mid: &'static str,
    callback: &'static str,
}

const VERSIONED: Names = Names { key: "k", protocol: "p", mid: "m", callback: "cb" };
const LEGACY: Names = Names { key: "key", protocol: "proto", mid: "mid", callback: "callback" };

/// Every public path, as matched and as its metric label, with what it asks for.
const ROUTES: &[(&str, Route, Style)] = &[
    ("/1/server/get", Route::Server { all: false }, Style::Versioned),
    ("/2/server/get", Route::Server { all: true }, Style::Versioned),
    ("/1/msg/get", Route::Messages, Style::Versioned),
    ("/1/time/get", Route::Time, Style::Versioned),
    ("/server/get", Route::Server { all: false }, Style::Legacy),
    ("/msg/get", Route::Messages, Style::Legacy),
    ("/time/get", Route::Time, Style::Legacy),
];

/// Every public route label.
pub(crate) fn labels() -> impl Iterator<Item = &'static str> {
    ROUTES.iter().map(|&(name, ..)| name)
}

fn lookup(path: &str) -> Option<(Route, Style, &'static str)> {
    ROUTES.iter().find(|(name, ..)| *name == path).map(|&(name, route, style)| (route, style, name))
}

/// Answers one request on the public port, with CORS headers for an allowed origin.
pub(crate) async fn handle<B>(state: &State, req: Request<B>) -> HttpResponse {
    let cors_origins = &state.config.base.cors_origins;
    let origin = cors::allowed(cors_origins, &req);
    if let Some(preflight) = cors::preflight(origin.as_ref(), &req) {
        return preflight;
    }
    let mut resp = answer(state, req).await;
    cors::decorate(!cors_origins.is_empty(), origin, &mut resp);
    resp
}

async fn answer<B>(state: &State, req: Request<B>) -> HttpResponse {
    let Some((route, style, name)) = lookup(req.uri().path()) else {
        if req.method() == Method::GET {
            if let Some(file) = client_files::serve(req.uri().path(), &state.config.base.admin_bind) {
                return file;
            }
        }
        return reply::not_found();
    };
    if req.method() != Method::GET {
        return reply::method_not_allowed();
    }
    let params = Params::parse(req.uri().query().unwrap_or("").as_bytes());
    let names = if style == Style::Legacy { &LEGACY } else { &VERSIONED };
    let callback = params.non_empty(names.callback);
    let key = params.get(names.key).unwrap_or("").to_string();
    let call = Call { route: name, style, key, error_header: state.config.base.error_header };
    if callback.is_some_and(|cb| !valid_callback(cb)) {
        return finish(&call, Err(WebError::Param("invalid JSONP callback")), None);
    }
    let outcome = match route {
        Route::Server { all } => server_get(state, &params, names, style, all),
        Route::Messages => messages_get(state, &params, names, style).await,
        Route::Time => Ok(Reply::data(style, format!("{{\"timeid\":{}}}", now_mid()))),
    };
    finish(&call, outcome, callback)
}

/// `/1/server/get`, `/2/server/get`, `/server/get`: the owner's first (or every) address.
fn server_get(state: &State, params: &Params, names: &Names, style: Style, all: bool) -> Result<Reply, WebError> {
    let key = params.non_empty(names.key).ok_or(WebError::Param("missing key"))?;
    let protocol = params
        .get(names.protocol)
        .and_then(Proto::from_param)
        .ok_or(WebError::Param("protocol must be 1 (websocket) or 2 (tcp)"))?;
    let routes = state.routes();
    let addrs = routes.addresses(key, protocol)?;
    let mut data = String::from("{\"server\":");
    if all {
        push_array(&mut data, addrs.iter().map(|a| gojson::string(a)));
    } else {
        // `addresses` never returns an empty list.
        gojson::push_string(&mut data, addrs.first().map_or("", String::as_str));
    }
    data.push('}');
    Ok(Reply::data(style, data))
}

/// `/1/msg/get` and `/msg/get`: stored messages newer than the given mid.
async fn messages_get(state: &State, params: &Params, names: &Names, style: Style) -> Result<Reply, WebError> {
    let key = params.non_empty(names.key).ok_or(WebError::Param("missing key"))?;
    let after: Mid =
        params.get(names.mid).and_then(|m| m.parse().ok()).ok_or(WebError::Param("mid must be an integer"))?;
    if after < 0 {
        // Upstream's message RPC rejects it, which web reports as an internal error.
        return Err(StoreError::BadMid.into());
    }
    let msgs = state.messages.get_private(key.to_string(), after).await?;
    if msgs.is_empty() {
        return Ok(Reply::ok(style));
    }
    let data = match style {
        Style::Versioned => {
            let mut data = String::from("{\"msgs\":");
            push_array(&mut data, msgs.iter().map(|m| encode(m, true)));
            data.push('}');
            data
        }
        Style::Legacy => {
            // Old-format messages, each itself a JSON string; `pmsgs` is always empty but the
            // Java SDK throws without it.
            let mut data = String::from("{\"msgs\":");
            push_array(&mut data, msgs.iter().map(|m| gojson::string(&encode(m, false))));
            data.push_str(",\"pmsgs\":[]}");
            data
        }
    };
    Ok(Reply::data(style, data))
}

/// One stored message as `{"msg":..,"mid":..,"gid":..}`; new format embeds it raw, old as a string.
/// Both use the compacted form: upstream stored messages through Go's encoder, so what it read back
/// (and string-encoded for legacy clients) was already compact and HTML-escaped.
fn encode(m: &StoredMessage, new_format: bool) -> String {
    match gojson::compact(&m.msg) {
        Some(compacted) => gojson::message(&compacted, &compacted, m.mid, m.gid, new_format),
        // Stored data that is not JSON (written by something else) still yields valid output.
        None => gojson::message(&gojson::string(&m.msg), &m.msg, m.mid, m.gid, new_format),
    }
}

fn push_array(out: &mut String, items: impl Iterator<Item = String>) {
    out.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&item);
    }
    out.push(']');
}

/// The web clock in mid units: Unix time in 100 ns ticks.
fn now_mid() -> Mid {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| (d.as_nanos() / 100) as Mid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_messages_encode_in_both_formats() {
        let m = StoredMessage { msg: "{\"test\":1, \"h\":\"<b>\"}".into(), mid: 13996474938346192, gid: 0 };
        assert_eq!(encode(&m, true), r#"{"msg":{"test":1,"h":"\u003cb\u003e"},"mid":13996474938346192,"gid":0}"#);
        assert_eq!(
            encode(&m, false),
            r#"{"msg":"{\"test\":1,\"h\":\"\\u003cb\\u003e\"}","mid":13996474938346192,"gid":0}"#
        );
        let junk = StoredMessage { msg: "not json".into(), mid: 1, gid: 0 };
        assert_eq!(encode(&junk, true), r#"{"msg":"not json","mid":1,"gid":0}"#);
    }

    #[test]
    fn paths_are_exact() {
        assert!(lookup("/1/server/get").is_some());
        assert!(lookup("/1/server/get/").is_none());
        assert!(lookup("/1/msgs/get").is_none(), "upstream has no /1/msgs/get");
        assert_eq!(lookup("/msg/get").map(|r| r.1), Some(Style::Legacy));
    }

    #[test]
    fn the_clock_is_in_100ns_ticks() {
        let t = now_mid();
        assert!(t > 17_000_000_000_000_000 && t < 40_000_000_000_000_000, "{t}");
    }
}
