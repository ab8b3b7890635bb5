//! An in-process broker for the demo and for tests: one call to start, one to stop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::server::{self, Server};

/// A broker running on this process's tokio runtime.
///
/// ```no_run
/// # async fn demo() -> Result<(), spool_broker::BrokerError> {
/// let broker = spool_broker::EmbeddedBroker::start().await?;
/// println!("bootstrap: {}", broker.bootstrap());
/// broker.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    data_dir: PathBuf,
    temp: Option<TempDir>,
    stop: Option<oneshot::Sender<()>>,
    released: Option<oneshot::Receiver<()>>,
    task: JoinHandle<Result<(), BrokerError>>,
}

impl EmbeddedBroker {
    /// Starts on 127.0.0.1 with a free port and a fresh temporary data directory, removed when
    /// the broker is dropped or shut down.
    pub async fn start() -> Result<Self, BrokerError> {
        let temp = tempfile::Builder::new()
            .prefix("spool-")
            .tempdir()
            .map_err(|source| BrokerError::Io {
                context: "creating a temporary data directory".into(),
                source,
            })?;
        let config = BrokerConfig::new(temp.path());
        let mut broker = Self::start_with(config, "127.0.0.1:0".parse().expect("valid")).await?;
        broker.temp = Some(temp);
        Ok(broker)
    }

    /// Starts with `config` on `listen` (port 0 picks a free port). The data directory is the
    /// caller's and is kept.
    pub async fn start_with(config: BrokerConfig, listen: SocketAddr) -> Result<Self, BrokerError> {
        let listener = server::bind(listen).await?;
        let data_dir = config.data_dir.clone();
        // Opening here, not in the task, makes start-up errors the caller's result.
        let mut server = Server::open(listener, config)?;
        let addr = server.local_addr()?;
        let released = server.released();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        Ok(EmbeddedBroker {
            addr,
            data_dir,
            temp: None,
            stop: Some(stop),
            released,
            task,
        })
    }

    /// The address clients bootstrap from, `host:port`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the logs live.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops gracefully (connections drained, logs flushed). Returns the temporary directory,
    /// if the broker owned one, so a test can restart on the same data.
    pub async fn shutdown(mut self) -> Result<Option<TempDir>, BrokerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result?,
            Err(e) => {
                return Err(BrokerError::Io {
                    context: "joining the broker task".into(),
                    source: std::io::Error::other(e.to_string()),
                })
            }
        }
        self.wait_released().await;
        Ok(self.temp.take())
    }

    /// Stops abruptly, as a crash would: no flush, no clean-shutdown marker. Returns the
    /// temporary directory, if any, so recovery can be tested on it.
    pub async fn abort(mut self) -> Option<TempDir> {
        self.task.abort();
        let _ = (&mut self.task).await;
        self.wait_released().await;
        self.temp.take()
    }
}

impl EmbeddedBroker {
    /// Waits until tasks still finishing their cancellation have dropped the broker's state, so
    /// the data directory can be reopened at once.
    async fn wait_released(&mut self) {
        if let Some(released) = self.released.take() {
            let _ = released.await;
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
