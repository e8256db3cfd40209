//! Metrics around any store: counts of saves, save failures, reads, deletes and token operations,
//! errors by kind, and a latency histogram per operation (`/metrics` on the stat port renders them).
//! Wrapping the `MessageApi` trait keeps the stores free of bookkeeping and counts both alike.
//! [`describe_and_zero`] gives every series HELP text and a 0 sample when the node starts.

use cluster::rpc::{BoxFuture, MessageApi, Mid, StoreError, StoreHealth, StoredMessage};
use metrics::{counter, describe_counter, describe_histogram, histogram};
use std::time::Instant;

/// Messages stored, one per key.
pub const SAVES: &str = "gopush_message_saves_total";
/// Keys whose save failed (a whole failed call counts each of its keys).
pub const SAVE_FAILURES: &str = "gopush_message_save_failures_total";
/// `get_private` calls.
pub const GETS: &str = "gopush_message_gets_total";
/// `del_private` calls.
pub const DELETES: &str = "gopush_message_deletes_total";
/// `add_token` calls.
pub const TOKEN_ADDS: &str = "gopush_message_token_adds_total";
/// `check_token` calls, labelled `result` = `valid`, `invalid` or `error`.
pub const TOKEN_CHECKS: &str = "gopush_message_token_checks_total";
/// Failed calls, labelled `op` and `error`.
pub const ERRORS: &str = "gopush_message_store_errors_total";
/// Latency of store calls in seconds, labelled `op`.
pub const LATENCY: &str = "gopush_message_store_seconds";

/// Every metric name above, for tests and dashboards that check what a message node exports.
pub const NAMES: &[&str] = &[SAVES, SAVE_FAILURES, GETS, DELETES, TOKEN_ADDS, TOKEN_CHECKS, ERRORS, LATENCY];

/// The `op` labels of [`ERRORS`] and [`LATENCY`]: one per `MessageApi` call.
pub const OPS: &[&str] = &["save_private", "save_privates", "get_private", "del_private", "add_token", "check_token"];

/// Gives every message-store series its HELP text and a 0 sample; call once the node starts
/// (again is harmless: zeroing adds 0).
pub fn describe_and_zero() {
    // Descriptions go to the recorder installed at the time, so install it first.
    let _ = cluster::stat::metrics_handle();
    describe_counter!(SAVES, "Offline messages stored, one per key.");
    describe_counter!(SAVE_FAILURES, "Keys whose offline message could not be stored.");
    describe_counter!(GETS, "Offline message reads (get_private calls).");
    describe_counter!(DELETES, "Offline message deletions (del_private calls).");
    describe_counter!(TOKEN_ADDS, "Tokens added (add_token calls).");
    describe_counter!(TOKEN_CHECKS, "Token checks, by result (valid, invalid, error).");
    describe_counter!(ERRORS, "Failed store calls, by op and error (backend and timeout are Redis failures).");
    describe_histogram!(LATENCY, "Store call latency in seconds (Redis round trips included), by op.");

    for name in [SAVES, SAVE_FAILURES, GETS, DELETES, TOKEN_ADDS] {
        counter!(name).increment(0);
    }
    for result in ["valid", "invalid", "error"] {
        counter!(TOKEN_CHECKS, "result" => result).increment(0);
    }
    for &op in OPS {
        // One zero per op (a Redis failure) is enough for error rates by op to start at 0.
        counter!(ERRORS, "op" => op, "error" => "backend").increment(0);
        // Registering is enough: the exporter renders an empty histogram with zero counts.
        let _ = histogram!(LATENCY, "op" => op);
    }
}

/// A store whose calls are counted and timed.
pub struct Metered<S> {
    inner: S,
}

impl<S: MessageApi> Metered<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Metered<S> {
        Metered { inner }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

/// The metric label of an error.
fn error_label(e: &StoreError) -> &'static str {
    match e {
        StoreError::BadKey => "bad_key",
        StoreError::BadMessage => "bad_message",
        StoreError::BadMid => "bad_mid",
        StoreError::BadToken => "bad_token",
        StoreError::Backend => "backend",
        StoreError::NoNode => "no_node",
        StoreError::Unreachable => "unreachable",
        StoreError::Timeout => "timeout",
    }
}

/// Times `call` and counts its error, if any.
async fn timed<T>(op: &'static str, call: BoxFuture<'_, Result<T, StoreError>>) -> Result<T, StoreError> {
    let start = Instant::now();
    let out = call.await;
    histogram!(LATENCY, "op" => op).record(start.elapsed().as_secs_f64());
    if let Err(e) = &out {
        counter!(ERRORS, "op" => op, "error" => error_label(e)).increment(1);
    }
    out
}

impl<S: MessageApi> MessageApi for Metered<S> {
    fn save_private(&self, key: String, msg: String, mid: Mid, expire: u32) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let out = timed("save_private", self.inner.save_private(key, msg, mid, expire)).await;
            match out {
                Ok(()) => counter!(SAVES).increment(1),
                Err(_) => counter!(SAVE_FAILURES).increment(1),
            }
            out
        })
    }

    fn save_privates(
        &self,
        keys: Vec<String>,
        msg: String,
        mid: Mid,
        expire: u32,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let n = keys.len() as u64;
            let out = timed("save_privates", self.inner.save_privates(keys, msg, mid, expire)).await;
            let failed = out.as_ref().map_or(n, |f| f.len() as u64);
            counter!(SAVES).increment(n.saturating_sub(failed));
            counter!(SAVE_FAILURES).increment(failed);
            out
        })
    }

    fn get_private(&self, key: String, after: Mid) -> BoxFuture<'_, Result<Vec<StoredMessage>, StoreError>> {
        counter!(GETS).increment(1);
        Box::pin(timed("get_private", self.inner.get_private(key, after)))
    }

    fn del_private(&self, key: String) -> BoxFuture<'_, Result<(), StoreError>> {
        counter!(DELETES).increment(1);
        Box::pin(timed("del_private", self.inner.del_private(key)))
    }

    fn add_token(&self, key: String, token: String, expire_secs: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        counter!(TOKEN_ADDS).increment(1);
        Box::pin(timed("add_token", self.inner.add_token(key, token, expire_secs)))
    }

    fn check_token(&self, key: String, token: String) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let out = timed("check_token", self.inner.check_token(key, token)).await;
            let result = match out {
                Ok(true) => "valid",
                Ok(false) => "invalid",
                Err(_) => "error",
            };
            counter!(TOKEN_CHECKS, "result" => result).increment(1);
            out
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<StoreHealth, StoreError>> {
        self.inner.ping()
    }
}
