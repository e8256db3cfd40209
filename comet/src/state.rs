//! What every task of one comet shares: the config, the channels, the ring ownership, the mid
//! generator, the message store client, the connection count and the start/stop flags. The rules
//! applied to this state live elsewhere (admission, the push service, the ring follower).

use crate::bucket::Buckets;
use crate::config::CometConfig;
use crate::handshake::Limits;
use crate::order::Sequencer;
use crate::ownership::Ownership;
use crate::presence::Presence;
use crate::replay::Replays;
use crate::rooms::Fanouts;
use crate::webhook::Queue;
use cluster::coalesce::SaveCoalescer;
use cluster::mid::Mids;
use cluster::rpc::{CometStatus, Mid, PushPrivatesReply, Save, SharedMessages, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// The state shared by the listeners, the connections, the push service and the ring follower.
pub(crate) struct Shared {
    /// The configuration the comet started with.
    pub config: CometConfig,
    /// The key → channel map.
    pub buckets: Buckets,
    /// The ring and this comet's node on it.
    pub ownership: Ownership,
    /// Each key's subscribed connections, and the source of presence events.
    pub presence: Presence,
    /// Presence events waiting for the webhook sender; `None` when webhooks are off.
    pub webhook: Option<Arc<Queue>>,
    /// The mid generator.
    pub mids: Mids,
    /// Each key's pushes in mid order while saves run.
    pub order: Sequencer,
    /// Publisher idempotency ids of `push_private`, scoped by key, with the mids they got.
    pub replayed_pushes: Replays<Mid>,
    /// Publisher idempotency ids of `push_privates`, with the replies they got.
    pub replayed_multi_pushes: Replays<PushPrivatesReply>,
    /// Where messages and tokens are stored.
    pub messages: SharedMessages,
    /// Saves of private messages coalesced into batch calls; `None` when `rpc.save_batch` is 1.
    saves: Option<SaveCoalescer>,
    /// The queue of room and broadcast pushes.
    pub fanouts: Fanouts,
    /// Open client connections, handshakes included; changed only through `admission::Slot`.
    pub connections: AtomicUsize,
    /// Registered and seen in the membership: listeners accept.
    pub ready: AtomicBool,
    /// Shutting down: no new subscriptions.
    pub stopping: AtomicBool,
    /// Cut off from ZooKeeper past the session timeout, or our znode is gone: other comets may own
    /// our keys by now, so no subscriptions until we are registered and seen again.
    pub cut_off: AtomicBool,
}

impl Shared {
    /// Fresh state: no ring, no channels.
    pub fn new(config: CometConfig, messages: SharedMessages) -> Shared {
        let webhook = config.webhook.enabled().then(|| Arc::new(Queue::new(&config.webhook)));
        Shared {
            presence: Presence::new(config.channel.bucket, &config.node.name, webhook.clone()),
            webhook,
            buckets: Buckets::new(config.channel.bucket),
            ownership: Ownership::new(config.node.name.clone(), config.ring_hash),
            mids: Mids::new(),
            order: Sequencer::new(),
            replayed_pushes: Replays::new(),
            replayed_multi_pushes: Replays::new(),
            saves: (config.rpc.save_batch > 1).then(|| {
                SaveCoalescer::saves(messages.clone(), config.rpc.save_batch, config.rpc.save_batch_in_flight)
            }),
            messages,
            fanouts: Fanouts::default(),
            connections: AtomicUsize::new(0),
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            cut_off: AtomicBool::new(false),
            config,
        }
    }

    /// Saves one private message, in a batch with those saved at the same moment when coalescing.
    pub async fn save_private(&self, key: String, msg: String, mid: Mid, expire: u32) -> Result<(), StoreError> {
        match &self.saves {
            Some(saves) => saves.save(Save { key, msg, mid, expire }).await,
            None => self.messages.save_private(key, msg, mid, expire).await,
        }
    }

    /// The checks a subscribe command must pass.
    pub fn limits(&self) -> Limits {
        Limits { max_key: self.config.channel.max_key, min_heartbeat: self.config.channel.min_heartbeat }
    }

    /// The read deadline of a subscribed client.
    pub fn idle_timeout(&self, heartbeat: u32) -> Duration {
        Duration::from_secs(u64::from(heartbeat)) + self.config.channel.heartbeat_slack
    }

    /// Open client connections.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Whether a subscription for `key` may be taken now: on this comet's ring and not cut off from
    /// ZooKeeper. Pushes only need the ring: storing a push is right on any comet, and delivery
    /// reaches only clients subscribed here.
    pub fn owns(&self, key: &str) -> bool {
        !self.cut_off.load(Ordering::Relaxed) && self.ownership.owns(key)
    }

    /// Whether subscriptions are served: ready, not stopping, not cut off, and on the ring.
    pub fn serving(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
            && !self.stopping.load(Ordering::Relaxed)
            && !self.cut_off.load(Ordering::Relaxed)
            && self.ownership.on_ring()
    }

    /// Health and load, for `CometRpc.ping` and `/health`.
    pub fn status(&self) -> CometStatus {
        CometStatus {
            node: self.ownership.node().to_string(),
            connections: self.connections() as u64,
            channels: self.buckets.channels() as u64,
            serving: self.serving(),
        }
    }
}
