//! The presence and control routes of the admin port (docs/http-api.md#presence-and-control): is a
//! key online (one call to its owning comet; a batch makes one call per owning comet, in parallel),
//! the online totals of every comet, and closing a key's connections
//! (docs/decisions.md#d61-presence-routes-at-web). A room's online keys are counted and listed
//! by asking every comet in parallel, since a room's members can be on any of them
//! (docs/decisions.md#d56-room-presence-asks-every-comet).

use crate::error::WebError;
use crate::reply::{Reply, Style};
use crate::state::State;
use bytes::Bytes;
use cluster::gojson;
use cluster::query::Query as Params;
use cluster::rpc::{CometError, KeyPresence, SharedComet};
use futures::future::join_all;
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write;
use tracing::warn;

/// Keys one batch may ask about.
pub(crate) const MAX_BATCH: usize = 10_000;

/// Longest key accepted, in bytes: no comet accepts longer ones (its `max_key` is at most this).
const MAX_KEY: usize = 1024;

/// The body of a batch: the keys comma-joined, as `/1/admin/push/mprivate` takes them.
#[derive(Deserialize)]
struct Batch {
    #[serde(default, alias = "K")]
    k: Option<String>,
}

fn check_key(key: &str) -> Result<(), WebError> {
    if key.is_empty() {
        return Err(WebError::Param("empty key"));
    }
    if key.len() > MAX_KEY {
        return Err(WebError::Param("key longer than 1024 bytes"));
    }
    Ok(())
}

/// A comet's answer as a web error; a key the comet finds bad is the caller's mistake (65534).
fn at(node: &str, error: CometError) -> WebError {
    match error {
        CometError::BadKey => WebError::Param("bad key"),
        error => WebError::CometAt { node: node.to_string(), error },
    }
}

/// `/1/admin/online?key=K`, or a batch: body `{"k":"k1,k2"}` with no `key` parameter.
pub(crate) async fn online(
    state: &State,
    query: &Params,
    body: Result<Bytes, WebError>,
    logged: &mut String,
) -> Result<Reply, WebError> {
    if let Some(key) = query.get("key") {
        logged.push_str(key);
        return online_one(state, key).await;
    }
    let body = body?;
    if body.is_empty() {
        return Err(WebError::Param("missing key"));
    }
    let batch: Batch = serde_json::from_slice(&body).map_err(|_| WebError::Param("body must be {\"k\":..}"))?;
    let keys = batch.k.unwrap_or_default();
    logged.push_str(&keys);
    online_many(state, &keys).await
}

async fn online_one(state: &State, key: &str) -> Result<Reply, WebError> {
    check_key(key)?;
    let (node, comet) = {
        let routes = state.routes();
        let (node, target) = routes.owner(key)?;
        (node.to_string(), target.comet.clone())
    };
    let answer = comet.online(vec![key.to_string()]).await.map_err(|e| at(&node, e))?;
    let p = answer.first().copied().unwrap_or_default();
    let mut data = String::with_capacity(96);
    let _ = write!(
        data,
        "{{\"online\":{},\"conns\":{},\"tcp\":{},\"ws\":{},\"node\":",
        p.conns() > 0,
        p.conns(),
        p.tcp,
        p.ws
    );
    gojson::push_string(&mut data, &node);
    data.push('}');
    Ok(Reply::data(Style::Versioned, data))
}

async fn online_many(state: &State, joined: &str) -> Result<Reply, WebError> {
    let mut seen = HashSet::new();
    let mut keys = Vec::new();
    // Bounded: past MAX_BATCH distinct keys the request is refused without reading further.
    for key in joined.split(',').filter(|k| !k.is_empty()) {
        check_key(key)?;
        if seen.insert(key) {
            keys.push(key);
            if keys.len() > MAX_BATCH {
                return Err(WebError::Param("more than 10000 keys"));
            }
        }
    }
    if keys.is_empty() {
        return Err(WebError::Param("empty k"));
    }
    let mut groups: HashMap<String, (SharedComet, Vec<String>)> = HashMap::new();
    {
        let routes = state.routes();
        for key in &keys {
            let (node, target) = routes.owner(key)?;
            groups
                .entry(node.to_string())
                .or_insert_with(|| (target.comet.clone(), Vec::new()))
                .1
                .push((*key).to_string());
        }
    }
    let calls = groups.into_iter().map(|(node, (comet, keys))| async move {
        let answer = comet.online(keys.clone()).await.map_err(|e| at(&node, e))?;
        if answer.len() != keys.len() {
            return Err(WebError::CometAt { node, error: CometError::Unreachable });
        }
        Ok::<_, WebError>(keys.into_iter().zip(answer).collect::<Vec<(String, KeyPresence)>>())
    });
    let mut online = HashSet::new();
    for answer in join_all(calls).await {
        for (key, p) in answer? {
            if p.conns() > 0 {
                online.insert(key);
            }
        }
    }
    // Both lists keep the request's order.
    let (mut on, mut off) = (String::from("["), String::from("["));
    for key in keys {
        let list = if online.contains(key) { &mut on } else { &mut off };
        if list.len() > 1 {
            list.push(',');
        }
        gojson::push_string(list, key);
    }
    Ok(Reply::data(Style::Versioned, format!("{{\"online\":{on}],\"offline\":{off}]}}")))
}

/// `/1/admin/online/count`: totals over every comet node, then each node's figures.
pub(crate) async fn count(state: &State) -> Result<Reply, WebError> {
    let targets = comets(state);
    let answers = join_all(targets.iter().map(|(_, comet)| comet.online_count())).await;
    let (mut keys, mut tcp, mut ws) = (0u64, 0u64, 0u64);
    let comets = per_comet(&targets, answers, |out, c| {
        keys += c.keys;
        tcp += c.tcp;
        ws += c.ws;
        let _ = write!(out, ",\"conns\":{},\"keys\":{},\"tcp\":{},\"ws\":{}", c.tcp + c.ws, c.keys, c.tcp, c.ws);
    });
    let data = format!("{{\"conns\":{},\"keys\":{keys},\"tcp\":{tcp},\"ws\":{ws},\"comets\":{comets}}}", tcp + ws);
    Ok(Reply::data(Style::Versioned, data))
}

/// The `comets` array of a count: per comet `{"node":..` then what `figures` writes for its
/// answer, or its `"error"` when it failed (such a comet is left out of the totals).
fn per_comet<T>(
    targets: &[(String, SharedComet)],
    answers: Vec<Result<T, CometError>>,
    mut figures: impl FnMut(&mut String, T),
) -> String {
    let mut list = String::from("[");
    for ((node, _), answer) in targets.iter().zip(answers) {
        if list.len() > 1 {
            list.push(',');
        }
        list.push_str("{\"node\":");
        gojson::push_string(&mut list, node);
        match answer {
            Ok(c) => figures(&mut list, c),
            Err(e) => {
                list.push_str(",\"error\":");
                gojson::push_string(&mut list, &e.to_string());
            }
        }
        list.push('}');
    }
    list.push(']');
    list
}

/// A room name from the query: 65534 when missing or not 1 to 64 bytes.
fn room(name: Option<&str>) -> Result<&str, WebError> {
    name.filter(|r| cluster::room::valid(r)).ok_or(WebError::Param("room must be 1 to 64 bytes"))
}

/// Keys one page lists when the caller gives no `limit`.
const DEFAULT_PAGE: u32 = 100;

/// The `limit` of a page: absent is [`DEFAULT_PAGE`]; otherwise 1 to `room::MAX_PAGE` in decimal.
fn page_limit(query: &Params) -> Result<u32, WebError> {
    const BAD: &str = "limit must be 1 to 1000";
    match query.get("limit") {
        None => Ok(DEFAULT_PAGE),
        Some(v) if !v.is_empty() && v.len() <= 4 && v.bytes().all(|b| b.is_ascii_digit()) => {
            let n: u32 = v.parse().map_err(|_| WebError::Param(BAD))?;
            if (1..=cluster::room::MAX_PAGE).contains(&n) { Ok(n) } else { Err(WebError::Param(BAD)) }
        }
        Some(_) => Err(WebError::Param(BAD)),
    }
}

/// Every active comet node, sorted by name.
fn comets(state: &State) -> Vec<(String, SharedComet)> {
    let routes = state.routes();
    let mut t: Vec<_> = routes.active().map(|(node, target)| (node.to_string(), target.comet.clone())).collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

/// `/1/admin/online/count?room=R`: the room's online keys and connections over every comet, then
/// each comet's figures (an unreachable one with its `error`, left out of the totals).
pub(crate) async fn room_count(state: &State, name: &str) -> Result<Reply, WebError> {
    let name = room(Some(name))?;
    let targets = comets(state);
    let answers = join_all(targets.iter().map(|(_, comet)| comet.room_online_count(name.to_string()))).await;
    let (mut keys, mut conns) = (0u64, 0u64);
    let list = per_comet(&targets, answers, |out, c| {
        keys += c.keys;
        conns += c.conns;
        let _ = write!(out, ",\"conns\":{},\"keys\":{}", c.conns, c.keys);
    });
    let mut data = String::from("{\"room\":");
    gojson::push_string(&mut data, name);
    let _ = write!(data, ",\"conns\":{conns},\"keys\":{keys},\"comets\":{list}}}");
    Ok(Reply::data(Style::Versioned, data))
}

/// `/1/admin/room/online?room=R&limit=N&cursor=C`: one page of the room's online keys, ascending.
/// Every comet answers its first `limit` keys after the cursor; the page is the first `limit` of
/// their union, and `next` is its last key while some comet may hold more (empty when done). No
/// state is kept between pages, so a cursor stays valid whatever the comets do meanwhile.
pub(crate) async fn room_online(state: &State, query: &Params, logged: &mut String) -> Result<Reply, WebError> {
    let name = room(query.get("room"))?;
    logged.push_str(name);
    let limit = page_limit(query)?;
    let cursor = query.get("cursor").unwrap_or("");
    if cursor.len() > MAX_KEY {
        return Err(WebError::Param("cursor longer than 1024 bytes"));
    }
    let targets = comets(state);
    if targets.is_empty() {
        return Err(WebError::NoComet);
    }
    let calls = targets.iter().map(|(_, comet)| comet.room_online(name.to_string(), cursor.to_string(), limit));
    let answers = join_all(calls).await;
    let mut merged = BTreeSet::new();
    let mut failed = Vec::new();
    let mut more = false;
    for ((node, _), answer) in targets.iter().zip(answers) {
        match answer {
            Ok(keys) => {
                // A comet that filled its page may hold more after it.
                more |= keys.len() >= limit as usize;
                merged.extend(keys.into_iter().filter(|k| k.as_str() > cursor));
            }
            Err(CometError::BadKey) => return Err(WebError::Param("bad room or limit")),
            Err(e) => {
                warn!(%node, error = %e, "a comet did not list a room's online keys; the page leaves its keys out");
                failed.push(node.clone());
            }
        }
    }
    more |= merged.len() > limit as usize;
    let page: Vec<String> = merged.into_iter().take(limit as usize).collect();
    let next = if more { page.last().map_or("", String::as_str) } else { "" };
    let mut data = String::from("{\"keys\":");
    gojson::push_strings(&mut data, &page);
    data.push_str(",\"next\":");
    gojson::push_string(&mut data, next);
    data.push_str(",\"failed\":");
    gojson::push_strings(&mut data, &failed);
    data.push('}');
    Ok(Reply::data(Style::Versioned, data))
}

/// `/1/admin/conn/close?key=K`: closes every connection of K on its comet.
pub(crate) async fn close(state: &State, query: &Params, logged: &mut String) -> Result<Reply, WebError> {
    let key = query.get("key").unwrap_or("");
    logged.push_str(key);
    check_key(key)?;
    let (node, comet) = {
        let routes = state.routes();
        let (node, target) = routes.owner(key)?;
        (node.to_string(), target.comet.clone())
    };
    let closed = comet.close_key(key.to_string()).await.map_err(|e| at(&node, e))?;
    Ok(Reply::data(Style::Versioned, format!("{{\"closed\":{closed}}}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert!(check_key("k").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key(&"x".repeat(MAX_KEY + 1)).is_err());
        assert!(matches!(at("n", CometError::BadKey), WebError::Param(_)));
        assert!(matches!(at("n", CometError::Timeout), WebError::CometAt { .. }));
    }

    #[test]
    fn page_limits_are_1_to_1000_and_default_to_100() {
        let l = |s: &str| page_limit(&Params::parse(s.as_bytes())).ok();
        assert_eq!(l(""), Some(100));
        assert_eq!(l("limit=1"), Some(1));
        assert_eq!(l("limit=1000"), Some(1000));
        for bad in ["limit=", "limit=0", "limit=1001", "limit=-1", "limit=+5", "limit=x", "limit=99999999999"] {
            assert_eq!(l(bad), None, "{bad}");
        }
    }
}
