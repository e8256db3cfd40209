//! The room routes of the admin port (docs/http-api.md#rooms-and-broadcast): keys join and leave
//! rooms (the store first, then the owning comets, so live connections change at once), a key's
//! rooms are read back, and a message goes to a room or to everyone, with one mid this web node
//! assigns, to every comet in parallel (docs/decisions.md#d51-rooms-are-names-membership-lives-in-the-store,
//! docs/decisions.md#d54-room-and-broadcast-pushes-go-to-every-comet).

use crate::admin::json_message;
use crate::error::WebError;
use crate::reply::{Reply, Style};
use crate::state::State;
use bytes::Bytes;
use cluster::gojson;
use cluster::query::Query as Params;
use cluster::rpc::{CometError, SharedComet};
use futures::future::join_all;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use tracing::warn;

/// Most keys one join or leave may name.
pub const MAX_BATCH: usize = 10_000;

/// Body bytes a batch join or leave may always send, whatever `max_body` says: room for
/// [`MAX_BATCH`] keys of about 100 bytes each.
pub const MAX_BATCH_BODY: usize = 1024 * 1024;

/// The body limit of `route`: batches get at least [`MAX_BATCH_BODY`].
pub(crate) fn max_body(route: RoomRoute, max_body: usize) -> usize {
    match route {
        RoomRoute::Join | RoomRoute::Leave => max_body.max(MAX_BATCH_BODY),
        _ => max_body,
    }
}

/// The room routes (their paths are in the admin port's route table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoomRoute {
    /// `/1/admin/room/join`.
    Join,
    /// `/1/admin/room/leave`.
    Leave,
    /// `/1/admin/room/get`.
    Get,
    /// `/1/admin/push/room`.
    PushRoom,
    /// `/1/admin/push/all`.
    PushAll,
}

/// Answers one room request; `logged` gets the key(s) or room for the failure log line.
pub(crate) async fn handle(
    state: &State,
    route: RoomRoute,
    query: &Params,
    body: Result<Bytes, WebError>,
    logged: &mut String,
) -> Result<Reply, WebError> {
    match route {
        RoomRoute::Join => change(state, query, body?, logged, true).await,
        RoomRoute::Leave => change(state, query, body?, logged, false).await,
        RoomRoute::Get => get(state, query, logged).await,
        RoomRoute::PushRoom => {
            let room = room(query.get("room"))?;
            logged.push_str(room);
            push(state, Some(room.to_string()), query, body?).await
        }
        RoomRoute::PushAll => push(state, None, query, body?).await,
    }
}

/// The batch body of join and leave: keys comma-joined and the room.
#[derive(Deserialize)]
struct Batch {
    // Go's decoder matches field names case-insensitively.
    #[serde(default, alias = "K")]
    k: Option<String>,
    #[serde(default, alias = "R")]
    r: Option<String>,
}

fn room(name: Option<&str>) -> Result<&str, WebError> {
    name.filter(|r| cluster::room::valid(r)).ok_or(WebError::Param("room must be 1 to 64 bytes"))
}

/// `?key=K&room=R`, or a body `{"k":"k1,k2","r":"R"}` of at most [`MAX_BATCH`] keys.
fn members(query: &Params, body: &[u8]) -> Result<(Vec<String>, String), WebError> {
    if let Some(key) = query.non_empty("key") {
        return Ok((vec![key.to_string()], room(query.get("room"))?.to_string()));
    }
    let batch: Batch = serde_json::from_slice(body)
        .map_err(|_| WebError::Param("give key and room, or a body {\"k\":\"k1,k2\",\"r\":\"room\"}"))?;
    let room = room(batch.r.as_deref().or(query.get("room")))?.to_string();
    let list = batch.k.unwrap_or_default();
    let mut seen = HashSet::new();
    let keys: Vec<String> = list.split(',').filter(|k| !k.is_empty() && seen.insert(*k)).map(str::to_string).collect();
    if keys.is_empty() {
        return Err(WebError::Param("empty k"));
    }
    if keys.len() > MAX_BATCH {
        return Err(WebError::Param("at most 10000 keys per call"));
    }
    Ok((keys, room))
}

/// Join (`join`) or leave: the store first, which is the membership; then the comets owning the
/// keys that were saved, so their live connections follow at once. A comet that cannot be told is
/// logged: its clients get the store's rooms when they subscribe again.
async fn change(
    state: &State,
    query: &Params,
    body: Bytes,
    logged: &mut String,
    join: bool,
) -> Result<Reply, WebError> {
    let (keys, room) = members(query, &body)?;
    logged.push_str(&keys.join(","));
    let failed = if join {
        state.messages.join_rooms(keys.clone(), room.clone()).await?
    } else {
        state.messages.leave_rooms(keys.clone(), room.clone()).await?
    };
    let unsaved: HashSet<&str> = failed.iter().map(String::as_str).collect();
    let routes = state.routes();
    let mut groups: HashMap<&str, (SharedComet, Vec<String>)> = HashMap::new();
    for key in keys.iter().filter(|k| !unsaved.contains(k.as_str())) {
        // No owner (an empty ring) means no live connection to tell.
        if let Ok((node, target)) = routes.owner(key) {
            groups.entry(node).or_insert_with(|| (target.comet.clone(), Vec::new())).1.push(key.clone());
        }
    }
    let calls = groups.into_iter().map(|(node, (comet, keys))| {
        let room = room.clone();
        async move {
            let n = keys.len();
            let told = if join { comet.join_rooms(keys, room).await } else { comet.leave_rooms(keys, room).await };
            if let Err(e) = told {
                warn!(%node, error = %e, keys = n, join, "a comet was not told of a room change; its live connections keep their rooms until they subscribe again");
            }
        }
    });
    join_all(calls).await;
    if failed.is_empty() {
        return Ok(Reply::ok(Style::Versioned));
    }
    Ok(Reply::failed_keys(Style::Versioned, &failed))
}

/// `?key=K`: `{"data":{"rooms":["R",…]},"ret":0}`.
async fn get(state: &State, query: &Params, logged: &mut String) -> Result<Reply, WebError> {
    let key = query.non_empty("key").ok_or(WebError::Param("missing key"))?;
    logged.push_str(key);
    let rooms = state.messages.get_rooms(key.to_string()).await?;
    let mut data = String::from("{\"rooms\":");
    gojson::push_strings(&mut data, &rooms);
    data.push('}');
    Ok(Reply::data(Style::Versioned, data))
}

/// An unsigned 32-bit parameter, 0 when absent.
fn number(query: &Params, name: &str, bad: &'static str) -> Result<u32, WebError> {
    match query.get(name) {
        None | Some("") => Ok(0),
        Some(v) if v.bytes().all(|b| b.is_ascii_digit()) => v.parse().map_err(|_| WebError::Param(bad)),
        Some(_) => Err(WebError::Param(bad)),
    }
}

/// A room push (`room` set) or a broadcast: one mid, then one call to every comet node in
/// parallel. `{"data":{"comets":N,"failed":["node",…]},"ret":0}`: N comets took it, the named ones
/// did not.
async fn push(state: &State, room: Option<String>, query: &Params, body: Bytes) -> Result<Reply, WebError> {
    let expire = number(query, "expire", "expire must be an unsigned 32-bit number of seconds")?;
    if expire != 0 {
        return Err(WebError::Param("room and broadcast pushes are online only: expire must be 0"));
    }
    let rate = number(query, "rate", "rate must be an unsigned 32-bit number of deliveries a second")?;
    let msg = json_message(&body)?;
    let routes = state.routes();
    let comets: Vec<_> = routes.active().map(|(node, target)| (node.to_string(), target.comet.clone())).collect();
    if comets.is_empty() {
        return Err(WebError::NoComet);
    }
    let mid = state.mids.next();
    let calls = comets.into_iter().map(|(node, comet)| {
        let (room, msg) = (room.clone(), msg.clone());
        async move {
            let sent: Result<(), CometError> = match room {
                Some(room) => comet.push_room(room, msg, mid).await,
                None => comet.push_all(msg, mid, rate).await,
            };
            sent.map_err(|e| {
                warn!(%node, error = %e, "a comet did not take a room or broadcast push; its members miss it");
                node
            })
        }
    });
    let answers = join_all(calls).await;
    let took = answers.iter().filter(|a| a.is_ok()).count();
    let mut failed: Vec<String> = answers.into_iter().filter_map(Result::err).collect();
    failed.sort_unstable();
    let mut data = format!("{{\"comets\":{took},\"failed\":");
    gojson::push_strings(&mut data, &failed);
    data.push('}');
    Ok(Reply::data(Style::Versioned, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_come_from_the_query_or_a_bounded_batch() {
        let q = |s: &str| Params::parse(s.as_bytes());
        let (keys, room) = members(&q("key=a&room=r"), b"").unwrap();
        assert_eq!((keys, room.as_str()), (vec!["a".to_string()], "r"));
        let (keys, room) = members(&q(""), br#"{"k":"a,,b,a","r":"r"}"#).unwrap();
        assert_eq!((keys, room.as_str()), (vec!["a".to_string(), "b".to_string()], "r"));
        assert!(members(&q("key=a"), b"").is_err(), "no room");
        assert!(members(&q(&format!("key=a&room={}", "r".repeat(65))), b"").is_err(), "room too long");
        assert!(members(&q(""), br#"{"k":"","r":"r"}"#).is_err(), "no keys");
        let many = (0..=MAX_BATCH).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        let body = format!(r#"{{"k":"{many}","r":"r"}}"#);
        assert!(members(&q(""), body.as_bytes()).is_err(), "over the batch limit");
    }

    #[test]
    fn numbers_are_optional_u32() {
        let n = |s: &str| number(&Params::parse(s.as_bytes()), "rate", "bad");
        assert_eq!(n("").unwrap(), 0);
        assert_eq!(n("rate=500").unwrap(), 500);
        assert!(n("rate=-1").is_err());
        assert!(n("rate=4294967296").is_err());
    }
}
