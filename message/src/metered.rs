//! Metrics around any store: counts of saves, save failures, reads, deletes and token operations,
//! errors by kind, and a latency histogram per operation (`/metrics` on the stat port renders them).
//! Observing the `MessageApi` trait keeps the stores free of bookkeeping and counts both alike.
//! [`describe_and_zero`] gives every series HELP text and a 0 sample when the node starts.

use cluster::rpc::{MessageApi, Observed, Observer, StoreError};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, histogram};
use std::any::Any;
use std::time::Duration;

/// Successful save calls (one message, to one key or to a batch of keys; each save of a
/// `save_batch` counts as a call).
pub const SAVES: &str = "gopush_message_saves_total";
/// Save calls that failed as a whole (each save of a batch counts as a call).
pub const SAVE_FAILURES: &str = "gopush_message_save_failures_total";
/// Keys of successful batch saves whose own save failed (their shard was down).
pub const SAVE_FAILED_KEYS: &str = "gopush_message_save_failed_keys_total";
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
/// 1 when a Redis shard answered its last call, 0 when it could not be reached or has not answered
/// yet; labelled `shard` (a source name, or a Redis Cluster master's `host:port` as of the last
/// health check, beside `cluster` for the store's calls as a whole).
pub const SHARD_UP: &str = "gopush_message_shard_up";

/// Every metric name above, for tests and dashboards that check what a message node exports.
pub const NAMES: &[&str] =
    &[SAVES, SAVE_FAILURES, SAVE_FAILED_KEYS, GETS, DELETES, TOKEN_ADDS, TOKEN_CHECKS, ERRORS, LATENCY, SHARD_UP];

/// The `op` labels of [`ERRORS`] and [`LATENCY`]: one per `MessageApi` call.
pub const OPS: &[&str] =
    &["save_private", "save_privates", "save_batch", "get_private", "del_private", "add_token", "check_token"];

/// Gives every message-store series its HELP text and a 0 sample; call once the node starts
/// (again is harmless: zeroing adds 0).
pub fn describe_and_zero() {
    // Descriptions go to the recorder installed at the time, so install it first.
    let _ = cluster::stat::metrics_handle();
    describe_counter!(SAVES, "Successful save calls (one message to one key or to a batch of keys).");
    describe_counter!(SAVE_FAILURES, "Save calls that failed as a whole.");
    describe_counter!(SAVE_FAILED_KEYS, "Keys of successful batch saves whose own shard failed.");
    describe_counter!(GETS, "Offline message reads (get_private calls).");
    describe_counter!(DELETES, "Offline message deletions (del_private calls).");
    describe_counter!(TOKEN_ADDS, "Tokens added (add_token calls).");
    describe_counter!(TOKEN_CHECKS, "Token checks, by result (valid, invalid, error).");
    describe_counter!(ERRORS, "Failed store calls, by op and error (backend and timeout are Redis failures).");
    describe_histogram!(LATENCY, "Store call latency in seconds (Redis round trips included), by op.");
    describe_gauge!(SHARD_UP, "1 when the Redis shard answered its last call or health check, else 0, by shard.");

    for name in [SAVES, SAVE_FAILURES, SAVE_FAILED_KEYS, GETS, DELETES, TOKEN_ADDS] {
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

/// Every store call is counted and timed through this observer.
pub struct StoreMetrics;

/// A store whose calls are counted and timed.
pub type Metered<S> = Observed<S, StoreMetrics>;

/// Wraps `inner` so its calls are counted and timed.
pub fn metered<S: MessageApi>(inner: S) -> Metered<S> {
    Observed { inner, observer: StoreMetrics }
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

impl Observer<StoreError> for StoreMetrics {
    fn observe(&self, op: &'static str, took: Duration, outcome: Result<&dyn Any, &StoreError>) {
        histogram!(LATENCY, "op" => op).record(took.as_secs_f64());
        match outcome {
            Err(e) => {
                counter!(ERRORS, "op" => op, "error" => error_label(e)).increment(1);
                match op {
                    "save_private" | "save_privates" | "save_batch" => counter!(SAVE_FAILURES).increment(1),
                    "check_token" => counter!(TOKEN_CHECKS, "result" => "error").increment(1),
                    _ => {}
                }
            }
            Ok(answer) => match op {
                "save_private" => counter!(SAVES).increment(1),
                // A batch answers with the keys whose save failed; the rest were stored.
                "save_privates" => {
                    let failed = answer.downcast_ref::<Vec<String>>().map_or(0, Vec::len) as u64;
                    counter!(SAVES).increment(1);
                    counter!(SAVE_FAILED_KEYS).increment(failed);
                }
                // A batch of saves counts as the saves it holds, each saved or failed on its own.
                "save_batch" => {
                    let answers = answer.downcast_ref::<Vec<Result<(), StoreError>>>().map_or(&[][..], Vec::as_slice);
                    let failed = answers.iter().filter(|a| a.is_err()).count() as u64;
                    counter!(SAVES).increment(answers.len() as u64 - failed);
                    counter!(SAVE_FAILURES).increment(failed);
                }
                "get_private" => counter!(GETS).increment(1),
                "del_private" => counter!(DELETES).increment(1),
                "add_token" => counter!(TOKEN_ADDS).increment(1),
                "check_token" => {
                    let valid = answer.downcast_ref::<bool>().copied().unwrap_or(false);
                    counter!(TOKEN_CHECKS, "result" => if valid { "valid" } else { "invalid" }).increment(1);
                }
                _ => {}
            },
        }
    }
}
