//! The gopush API calls the tests make (server/get, push, msg/get) over testkit's one HTTP test
//! client, which also serves the tests' own requests through [`get`] and [`post`].

use serde_json::Value;

pub use testkit::http::{Response as Reply, get};

/// `POST path` with a body of type `content_type`.
pub async fn post(addr: &str, path: &str, content_type: &str, body: &str) -> std::io::Result<Reply> {
    testkit::http::post(addr, path, &format!("Content-Type: {content_type}\r\n"), body.as_bytes()).await
}

/// The `ret` of a JSON reply.
pub fn ret(v: &Value) -> u64 {
    v["ret"].as_u64().unwrap_or_else(|| panic!("no ret in {v}"))
}

/// `/1/server/get?k=key&p=proto` (1 WebSocket, 2 TCP): the address when `ret` is 0.
pub async fn server_get(public: &str, key: &str, proto: u8) -> Option<String> {
    let r = get(public, &format!("/1/server/get?k={key}&p={proto}")).await.ok()?;
    let v: Value = serde_json::from_slice(r.body_bytes()).ok()?;
    (v["ret"] == 0).then(|| v["data"]["server"].as_str().map(str::to_string)).flatten()
}

/// `POST /1/admin/push/private?key=key&expire=expire` with `msg`: the `ret`, or `None` when the
/// request itself failed (connection refused, timeout).
pub async fn push(admin: &str, key: &str, expire: u32, msg: &str) -> Option<u64> {
    let r =
        post(admin, &format!("/1/admin/push/private?key={key}&expire={expire}"), "application/json", msg).await.ok()?;
    serde_json::from_slice::<Value>(r.body_bytes()).ok().and_then(|v| v["ret"].as_u64())
}

/// `/1/msg/get?k=key&m=mid`: the stored messages `(msg, mid)`, oldest first; panics on `ret` != 0.
pub async fn msg_get(public: &str, key: &str, mid: u64) -> Vec<(Value, u64)> {
    try_msg_get(public, key, mid).await.unwrap_or_else(|e| panic!("/1/msg/get k={key}: {e}"))
}

/// `/1/msg/get`, reporting a failure instead of panicking.
pub async fn try_msg_get(public: &str, key: &str, mid: u64) -> Result<Vec<(Value, u64)>, String> {
    let r = get(public, &format!("/1/msg/get?k={key}&m={mid}")).await.map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(r.body_bytes()).map_err(|e| format!("{e}: {:?}", r.body_bytes()))?;
    if v["ret"] != 0 {
        return Err(format!("ret {}", v["ret"]));
    }
    let Some(msgs) = v["data"]["msgs"].as_array() else { return Ok(Vec::new()) };
    Ok(msgs
        .iter()
        .map(|m| (m["msg"].clone(), m["mid"].as_u64().unwrap_or_else(|| panic!("no integer mid in {m}"))))
        .collect())
}
