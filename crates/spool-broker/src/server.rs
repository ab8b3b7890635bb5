//! The accept loop: a task per connection, a cap on connections, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
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
    let bound = listener.local_addr().map_err(|source| BrokerError::Io {
        context: "reading the listener address".into(),
        source,
    })?;
    let advertised = config.advertised_for(bound);
    let token = CancellationToken::new();
    let state = BrokerState::open(config, advertised, token.clone())?;
    info!(
        "listening on {bound} (advertised as {}:{}), data in {}",
        state.advertised.0,
        state.advertised.1,
        state.config.data_dir.display()
    );
    let retention = tokio::spawn(retention_loop(state.clone()));
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
            // Accept errors (e.g. EMFILE) are about this one attempt; back off and keep serving.
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
    retention.abort();
    state.logs.shutdown()?;
    info!("shut down cleanly");
    Ok(())
}

async fn retention_loop(state: Arc<BrokerState>) {
    let mut tick = tokio::time::interval(Duration::from_millis(
        state.config.retention_check_interval_ms,
    ));
    tick.tick().await;
    loop {
        tick.tick().await;
        let state = state.clone();
        // Deleting segments touches the file system; keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || state.logs.enforce_retention(now_ms())).await;
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
