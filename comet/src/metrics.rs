//! The comet's Prometheus metrics (docs/decisions.md#d12-observability), named here once. They are
//! recorded through the `metrics` facade; `cluster::stat` installs the exporter and serves
//! `/metrics`. [`describe_and_zero`] runs at start-up so every series has HELP text and a 0 sample
//! before the first client arrives: dashboards and alerts then see 0 instead of "no data".

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

/// Open client connections (gauge).
pub const CONNECTIONS: &str = "gopush_comet_connections";
/// Channels held (gauge).
pub const CHANNELS: &str = "gopush_comet_channels";
/// Accepted subscriptions, by protocol (counter).
pub const SUBSCRIPTIONS: &str = "gopush_comet_subscriptions_total";
/// Clients refused or closed for breaking the protocol or a limit, by `reason` (counter).
pub const REFUSALS: &str = "gopush_comet_refused_total";
/// Push calls handled, by kind `private`/`privates` (counter).
pub const PUSHES: &str = "gopush_comet_pushes_total";
/// Messages queued for a connection (counter).
pub const DELIVERIES: &str = "gopush_comet_deliveries_total";
/// Push calls or keys that failed, by reason (counter).
pub const FAILURES: &str = "gopush_comet_push_failures_total";
/// Connections closed because their outbox was full (counter).
pub const SLOW_CONSUMERS: &str = "gopush_comet_slow_consumers_total";
/// Connections closed because their key moved to another comet (counter).
pub const MIGRATED: &str = "gopush_comet_migrated_connections_total";
/// Subscriptions that asked to resume after a mid, by `outcome` `ok`/`failed` (counter).
pub const RESUMES: &str = "gopush_comet_resumes_total";
/// Time to handle a push call, store included (histogram, seconds).
pub const PUSH_SECONDS: &str = "gopush_comet_push_seconds";
/// Presence calls answered, by `op` `online`/`count` (counter).
pub const PRESENCE_CALLS: &str = "gopush_comet_presence_calls_total";
/// Webhook events dropped, by `reason` `overflow`/`failed`/`rejected` (counter).
pub const WEBHOOK_DROPPED: &str = "gopush_comet_webhook_dropped_total";
/// Webhook POST attempts, by `outcome` `ok`/`retry`/`failed`/`rejected` (counter).
pub const WEBHOOK_POSTS: &str = "gopush_comet_webhook_posts_total";
/// Webhook events waiting in the queue (gauge).
pub const WEBHOOK_QUEUE: &str = "gopush_comet_webhook_queue";

/// Every metric name above, for tests and dashboards that check what a comet exports.
pub const NAMES: &[&str] = &[
    CONNECTIONS,
    CHANNELS,
    SUBSCRIPTIONS,
    REFUSALS,
    PUSHES,
    DELIVERIES,
    FAILURES,
    SLOW_CONSUMERS,
    MIGRATED,
    RESUMES,
    PUSH_SECONDS,
    PRESENCE_CALLS,
    WEBHOOK_DROPPED,
    WEBHOOK_POSTS,
    WEBHOOK_QUEUE,
];

/// `reason` of [`REFUSALS`]: the subscribe command was late, malformed or had bad parameters.
pub const HANDSHAKE: &str = "handshake";
/// `reason` of [`REFUSALS`]: a subscribed client missed its heartbeat deadline.
pub const HEARTBEAT: &str = "heartbeat";
/// `reason` of [`REFUSALS`]: auth mode, the token was missing or rejected.
pub const AUTH: &str = "auth";
/// `reason` of [`REFUSALS`]: a WebSocket upgrade whose `Origin` is not in `allowed_origins`.
pub const ORIGIN: &str = "origin";
/// `reason` of [`REFUSALS`]: the connection's outbox (`msgbuf`) was full, so it was closed.
pub const FULL_OUTBOX: &str = "full_outbox";

/// Every `reason` of [`REFUSALS`]; `auth` and the last three are counted at admission (`state.rs`).
pub const REFUSAL_REASONS: &[&str] =
    &[HANDSHAKE, HEARTBEAT, AUTH, ORIGIN, FULL_OUTBOX, "not_owner", "token_store", "channel_full"];

/// Counts one refused or closed client under `reason` (one of [`REFUSAL_REASONS`]).
pub fn refused(reason: &'static str) {
    counter!(REFUSALS, "reason" => reason).increment(1);
}

/// Counts a failed handshake; admission refusals are counted where they are decided, and a client
/// that merely went away (an I/O error) is not a refusal.
pub fn handshake_failed(e: &crate::error::Error) {
    use crate::error::Error;
    if matches!(e, Error::BadParameter | Error::MalformedCommand | Error::HandshakeTimeout) {
        refused(HANDSHAKE);
    }
}

/// Counts a failed WebSocket upgrade: a 403 answer is an `Origin` refusal, other answers and
/// protocol errors a handshake refusal; a client that went away is not counted.
pub fn upgrade_failed(e: &tokio_tungstenite::tungstenite::Error) {
    use tokio_tungstenite::tungstenite::Error as WsError;
    use tokio_tungstenite::tungstenite::http::StatusCode;
    match e {
        WsError::Http(resp) if resp.status() == StatusCode::FORBIDDEN => refused(ORIGIN),
        WsError::ConnectionClosed | WsError::AlreadyClosed => {}
        // The upgrade-size cap fails reads with InvalidData: an oversized request, not a hang-up.
        WsError::Io(io) if io.kind() != std::io::ErrorKind::InvalidData => {}
        _ => refused(HANDSHAKE),
    }
}

/// Gives every comet series its HELP text and a 0 sample; call once a comet starts (again is
/// harmless: zeroing adds 0, so a second comet in the same process keeps the counts).
pub fn describe_and_zero() {
    // Descriptions go to the recorder installed at the time, so install it first.
    let _ = cluster::stat::metrics_handle();
    describe_gauge!(CONNECTIONS, "Open client connections (TCP and WebSocket), handshakes included.");
    describe_gauge!(CHANNELS, "Keys with at least one subscribed connection on this comet.");
    describe_counter!(SUBSCRIPTIONS, "Subscriptions accepted, by protocol (tcp, websocket).");
    describe_counter!(
        REFUSALS,
        "Clients refused or closed by the comet, by reason: handshake, heartbeat, auth, origin, \
         full_outbox, not_owner, token_store, channel_full."
    );
    describe_counter!(PUSHES, "Push calls handled, by kind (private: one key, privates: many keys).");
    describe_counter!(DELIVERIES, "Messages queued for a subscribed connection.");
    describe_counter!(FAILURES, "Failed push calls by reason; reason=keys counts keys of multi-key pushes.");
    describe_counter!(SLOW_CONSUMERS, "Connections closed because their outbox (msgbuf) was full.");
    describe_counter!(MIGRATED, "Connections closed because a ring change moved their key to another comet.");
    describe_counter!(RESUMES, "Subscriptions that resumed after a mid, by outcome (ok, failed: store unreadable).");
    describe_histogram!(PUSH_SECONDS, "Time to handle a push call in seconds, offline store included, by kind.");
    describe_counter!(PRESENCE_CALLS, "Presence calls answered, by op (online: a list of keys, count: totals).");
    describe_counter!(
        WEBHOOK_DROPPED,
        "Webhook events dropped, by reason: overflow (queue full, oldest dropped), failed (retries \
         exhausted), rejected (the receiver answered 4xx)."
    );
    describe_counter!(WEBHOOK_POSTS, "Webhook POST attempts by outcome: ok, retry, failed, rejected.");
    describe_gauge!(WEBHOOK_QUEUE, "Webhook events queued and not yet posted.");

    gauge!(CONNECTIONS).increment(0.0);
    gauge!(CHANNELS).increment(0.0);
    for proto in ["tcp", "websocket"] {
        counter!(SUBSCRIPTIONS, "proto" => proto).increment(0);
    }
    for &reason in REFUSAL_REASONS {
        counter!(REFUSALS, "reason" => reason).increment(0);
    }
    for kind in ["private", "privates"] {
        counter!(PUSHES, "kind" => kind).increment(0);
        // Registering is enough: the exporter renders an empty histogram with zero counts.
        let _ = histogram!(PUSH_SECONDS, "kind" => kind);
    }
    counter!(DELIVERIES).increment(0);
    for reason in ["keys", "bad_key", "bad_message", "not_owner", "store", "other"] {
        counter!(FAILURES, "reason" => reason).increment(0);
    }
    counter!(SLOW_CONSUMERS).increment(0);
    counter!(MIGRATED).increment(0);
    for outcome in ["ok", "failed"] {
        counter!(RESUMES, "outcome" => outcome).increment(0);
    }
    for op in ["online", "count"] {
        counter!(PRESENCE_CALLS, "op" => op).increment(0);
    }
    for reason in ["overflow", "failed", "rejected"] {
        counter!(WEBHOOK_DROPPED, "reason" => reason).increment(0);
    }
    for outcome in ["ok", "retry", "failed", "rejected"] {
        counter!(WEBHOOK_POSTS, "outcome" => outcome).increment(0);
    }
    gauge!(WEBHOOK_QUEUE).increment(0.0);
}
