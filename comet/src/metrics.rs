//! The comet's Prometheus metrics (docs/decisions.md#d12-observability), named here once. They are recorded through
//! the `metrics` facade; `cluster::stat` installs the exporter and serves `/metrics`.

/// Open client connections (gauge).
pub const CONNECTIONS: &str = "gopush_comet_connections";
/// Channels held (gauge).
pub const CHANNELS: &str = "gopush_comet_channels";
/// Accepted subscriptions, by protocol (counter).
pub const SUBSCRIPTIONS: &str = "gopush_comet_subscriptions_total";
/// Refused subscriptions, by reason (counter).
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
/// Time to handle a push call, store included (histogram, seconds).
pub const PUSH_SECONDS: &str = "gopush_comet_push_seconds";
