//! The web node's Prometheus metrics: their names, HELP texts and start-up zeroes. The handlers
//! record them through the `metrics` facade; [`describe_and_zero`] runs when a web node starts so
//! every series has HELP text and a 0 sample before the first request, and dashboards and alerts
//! see 0 instead of "no data".

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

/// Answered API requests, labelled `route` and `ret` (counter).
pub const REQUESTS: &str = "gopush_web_requests_total";
/// Admin push latency in seconds, labelled `route` (histogram).
pub const PUSH_SECONDS: &str = "gopush_web_push_seconds";
/// Ring nodes this web node routes to (gauge).
pub const COMET_NODES: &str = "gopush_web_comet_nodes";
/// Comet instances this web node knows, standbys included (gauge).
pub const COMET_INSTANCES: &str = "gopush_web_comet_instances";
/// Failed pings to comet instances (counter).
pub const PING_FAILURES: &str = "gopush_web_comet_ping_failures_total";
/// Comet instances whose znode this web node deleted (counter).
pub const PRUNED: &str = "gopush_web_comet_pruned_total";

/// HTTP connections closed at once because their source IP had `max_connections_per_ip` open,
/// labelled `port` (public or admin).
pub const CONNECTIONS_REFUSED: &str = "gopush_web_connections_refused_total";

/// Every metric name above, for tests and dashboards that check what a web node exports.
pub const NAMES: &[&str] =
    &[REQUESTS, PUSH_SECONDS, COMET_NODES, COMET_INSTANCES, PING_FAILURES, PRUNED, CONNECTIONS_REFUSED];

/// Publishes what the web node routes to; the first membership counts too, or a membership that
/// never changes (standalone) would show 0 comets forever.
pub(crate) fn routing(nodes: usize, instances: usize) {
    gauge!(COMET_NODES).set(nodes as f64);
    gauge!(COMET_INSTANCES).set(instances as f64);
}

/// Gives every web series its HELP text and a 0 sample; call once a web node starts (again is
/// harmless: zeroing adds 0).
pub fn describe_and_zero() {
    // Descriptions go to the recorder installed at the time, so install it first.
    let _ = cluster::stat::metrics_handle();
    describe_counter!(
        REQUESTS,
        "Answered public and admin API requests, by route and ret (0 ok, 1001 no comet for the key, \
         65534 bad request, 65535 internal, RPC or store failure)."
    );
    describe_histogram!(PUSH_SECONDS, "Admin push latency in seconds (routing, comet RPC and store), by route.");
    describe_gauge!(COMET_NODES, "Comet ring nodes this web node routes to.");
    describe_gauge!(COMET_INSTANCES, "Comet instances this web node knows, hot standbys included.");
    describe_counter!(PING_FAILURES, "Pings to comet instances that failed or timed out.");
    describe_counter!(PRUNED, "Comet instances this web node removed from ZooKeeper after repeated ping failures.");

    // ret 0 and 65535 per route: enough for success and failure rates to start at 0; the rarer
    // codes appear with their first request.
    let public = crate::public::labels().map(|name| (name, false));
    for (route, push) in public.chain(crate::admin::labels()) {
        for ret in ["0", "65535"] {
            counter!(REQUESTS, "route" => route, "ret" => ret).increment(0);
        }
        if push {
            // Registering is enough: the exporter renders an empty histogram with zero counts.
            let _ = histogram!(PUSH_SECONDS, "route" => route);
        }
    }
    gauge!(COMET_NODES).increment(0.0);
    gauge!(COMET_INSTANCES).increment(0.0);
    counter!(PING_FAILURES).increment(0);
    counter!(PRUNED).increment(0);
    describe_counter!(
        CONNECTIONS_REFUSED,
        "HTTP connections closed at once: their source IP had too many open, by port."
    );
    for port in ["public http", "admin http"] {
        counter!(CONNECTIONS_REFUSED, "port" => port).increment(0);
    }
}
