//! A shard that is a Sentinel service: commands go to whichever server the Sentinels name master
//! of the shard's `master_name` (docs/storage.md#sentinel-shards). The master's address is asked
//! of the Sentinels when there is no connection yet, and asked again after a call finds the
//! connection broken or the server demoted (`READONLY`), so a failover needs no restart: the calls
//! in flight fail, the next ones reach the new master. One lookup runs at a time per shard; calls
//! arriving meanwhile wait for its outcome instead of starting lookups of their own.

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, Cmd, ConnectionInfo, ErrorKind, Pipeline, RedisError, RedisFuture, Value};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tracing::{debug, info};

/// A lookup of the current master, shared by every call that waits for it.
type Lookup = Shared<BoxFuture<'static, Result<MultiplexedConnection, Arc<str>>>>;

/// Connection to the current master of one Sentinel-watched master/replica set; cheap to clone.
#[derive(Clone)]
pub(crate) struct SentinelConnection {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where to ask, and what to ask for.
    sentinels: Vec<ConnectionInfo>,
    master_name: String,
    /// `AUTH` and database settings for the master itself.
    node: SentinelNodeConnectionInfo,
    db: i64,
    timeout: Duration,
    /// What the shard is connected to now; never held across an await.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Bumped by every new connection, so a late failure of an old one does not drop its successor.
    generation: u64,
    current: Option<MultiplexedConnection>,
    lookup: Option<Lookup>,
}

impl SentinelConnection {
    /// A connection that asks `sentinels` for `master_name` at its first call; `master` carries the
    /// master's password and database (its address is ignored). Does no I/O.
    pub(crate) fn new(
        sentinels: Vec<ConnectionInfo>,
        master_name: String,
        master: &ConnectionInfo,
        timeout: Duration,
    ) -> SentinelConnection {
        let db = master.redis_settings().db();
        let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(master.redis_settings().clone());
        let state = Mutex::new(State::default());
        SentinelConnection { inner: Arc::new(Inner { sentinels, master_name, node, db, timeout, state }) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current master connection, looked up through the Sentinels if there is none.
    async fn connection(&self) -> Result<(u64, MultiplexedConnection), RedisError> {
        let lookup = {
            let mut state = self.state();
            if let Some(conn) = &state.current {
                return Ok((state.generation, conn.clone()));
            }
            state.lookup.get_or_insert_with(|| self.inner.clone().lookup().boxed().shared()).clone()
        };
        let outcome = lookup.clone().await;
        let mut state = self.state();
        // Whoever gets here first installs the outcome; the others find it installed.
        if state.lookup.as_ref().is_some_and(|l| l.ptr_eq(&lookup)) {
            state.lookup = None;
            if let Ok(conn) = &outcome {
                state.generation += 1;
                state.current = Some(conn.clone());
            }
        }
        match outcome {
            Ok(conn) => Ok((state.generation, conn)),
            Err(why) => Err(RedisError::from((ErrorKind::Io, "no master from the sentinels", why.to_string()))),
        }
    }

    /// Drops connection `generation` so the next call asks the Sentinels again.
    fn forget(&self, generation: u64, why: &dyn std::fmt::Display) {
        let mut state = self.state();
        if state.generation == generation && state.current.take().is_some() {
            info!(master = %self.inner.master_name, cause = %why, "asking the sentinels for the master again");
        }
    }
}

impl Inner {
    /// Asks the Sentinels for the master, connects and checks it calls itself master.
    async fn lookup(self: Arc<Self>) -> Result<MultiplexedConnection, Arc<str>> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let found = async {
            let mut client = SentinelClient::build(
                self.sentinels.clone(),
                self.master_name.clone(),
                Some(self.node.clone()),
                SentinelServerType::Master,
            )?;
            client.get_async_connection_with_config(&config).await
        };
        match tokio::time::timeout(self.timeout, found).await {
            Ok(Ok(conn)) => {
                debug!(master = %self.master_name, "connected to the master the sentinels name");
                Ok(conn)
            }
            Ok(Err(e)) => Err(e.to_string().into()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout).into()),
        }
    }
}

/// Whether an error means the connection no longer leads to the master: broken, or the server
/// was demoted to a replica by a failover.
fn lost_master(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() || e.code() == Some("READONLY")
}

/// Whether a pipeline's replies carry a `READONLY` error (pipelines that ignore errors return
/// them as values, not as a failed call).
fn demoted(values: &[Value]) -> bool {
    values.iter().any(|v| matches!(v, Value::ServerError(e) if e.code() == "READONLY"))
}

impl ConnectionLike for SentinelConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut conn) = self.connection().await?;
            let answer = conn.req_packed_command(cmd).await;
            if let Err(e) = &answer
                && lost_master(e)
            {
                self.forget(generation, e);
            }
            answer
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut conn) = self.connection().await?;
            let answer = conn.req_packed_commands(pipeline, offset, count).await;
            match &answer {
                Err(e) if lost_master(e) => self.forget(generation, e),
                Ok(values) if demoted(values) => self.forget(generation, &"READONLY"),
                _ => {}
            }
            answer
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.db
    }
}
