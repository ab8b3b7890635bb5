//! The accept loop: a task per connection, a cap on connections, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::BrokerConfig;
use crate::connection;
use crate::error::BrokerError;
use crate::state::BrokerState;

/// Runs a broker on an already bound listener until `shutdown` resolves.
///
/// Taking the listener (rather than an address) lets tests bind 127.0.0.1:0 and learn the port
/// first. On shutdown, connections finish the request in hand, long polls return at once, and
/// every log is flushed before this returns.
pub async fn run(
    listener: TcpListener,
    config: BrokerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BrokerError> {
    Server::open(listener, config)?.serve(shutdown).await
}

/// A broker whose data directory is open and whose listener is bound, not yet serving.
///
/// Opening is separate from serving so start-up errors (a locked or unreadable data
/// directory) reach the caller before anything runs in the background.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    state: Arc<BrokerState>,
    token: CancellationToken,
    released: Option<oneshot::Receiver<()>>,
}

impl Server {
    /// Opens (and if needed recovers) the data directory.
    pub fn open(listener: TcpListener, config: BrokerConfig) -> Result<Self, BrokerError> {
        let bound = local_addr(&listener)?;
        if bound.ip().is_unspecified() && config.advertised.is_none() {
            // Clients cannot connect to 0.0.0.0; Kafka refuses this configuration too.
            return Err(BrokerError::Config(format!(
                "listening on {bound} needs an advertised address (--advertised HOST:PORT) \
                 that clients can reach"
            )));
        }
        config.group.validate().map_err(BrokerError::Config)?;
        let advertised = config.advertised_for(bound);
        let token = CancellationToken::new();
        let (on_drop, released) = oneshot::channel();
        let state = BrokerState::open(config, advertised, token.clone(), on_drop)?;
        info!(
            "listening on {bound} (advertised as {}:{}), data in {}",
            state.advertised.0,
            state.advertised.1,
            state.config.data_dir.display()
        );
        Ok(Server {
            listener,
            state,
            token,
            released: Some(released),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, BrokerError> {
        local_addr(&self.listener)
    }

    /// Resolves once the broker's state is gone (data directory unlocked, files closed), after
    /// `serve` returned or was dropped. Can be taken once.
    pub fn released(&mut self) -> Option<oneshot::Receiver<()>> {
        self.released.take()
    }

    /// Accepts connections until `shutdown` resolves, then drains them and flushes the logs.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), BrokerError> {
        let Server {
            listener,
            state,
            token,
            ..
        } = self;
        // Owned by this future: if it is dropped (an aborted embedded broker), so are they.
        let mut background = JoinSet::new();
        background.spawn(retention_loop(state.clone()));
        background.spawn(group_timers(state.clone()));
        let limit = Arc::new(Semaphore::new(state.config.max_connections));
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                permit = limit.clone().acquire_owned() => permit.expect("semaphore is never closed"),
            };
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((socket, peer)) => {
                    let state = state.clone();
                    connections.spawn(async move {
                        connection::serve(state, socket, peer).await;
                        drop(permit);
                    });
                }
                // Accept errors (e.g. EMFILE) concern this one attempt; back off, keep serving.
                Err(e) => {
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            // Reap finished connection tasks so the set does not grow with history.
            while connections.try_join_next().is_some() {}
        }
        info!("shutting down: draining {} connections", connections.len());
        token.cancel();
        drop(listener);
        while connections.join_next().await.is_some() {}
        background.shutdown().await;
        state.logs.shutdown()?;
        info!("shut down cleanly");
        Ok(())
    }
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, BrokerError> {
    listener.local_addr().map_err(|source| BrokerError::Io {
        context: "reading the listener address".into(),
        source,
    })
}

/// Session and rebalance timeouts of consumer groups.
async fn group_timers(state: Arc<BrokerState>) {
    let mut tick = tokio::time::interval(crate::group::manager::TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.groups.tick(now_ms());
    }
}

/// Retention every `retention_check_interval_ms`, and the time-based flush policy (`flush.ms`)
/// every second.
async fn retention_loop(state: Arc<BrokerState>) {
    let mut flush_tick = tokio::time::interval(Duration::from_secs(1));
    let mut retention_tick = tokio::time::interval(Duration::from_millis(
        state.config.retention_check_interval_ms,
    ));
    retention_tick.tick().await;
    loop {
        let retention = tokio::select! {
            _ = flush_tick.tick() => false,
            _ = retention_tick.tick() => true,
        };
        let state = state.clone();
        // Deleting segments and fsyncing touch the file system; keep them off the async workers.
        let _ = tokio::task::spawn_blocking(move || {
            if retention {
                state.logs.enforce_retention(now_ms());
                state
                    .groups
                    .expire_offsets(now_ms(), state.config.offsets_retention_ms);
            } else {
                state.logs.flush_due(now_ms());
            }
        })
        .await;
    }
}

/// Wall-clock milliseconds since the epoch, as Kafka timestamps are.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Binds `addr`, for callers that have an address rather than a listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BrokerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BrokerError::Io {
            context: format!("binding {addr}"),
            source,
        })
}
