//! What every connection shares: configuration, the logs, id allocators.

use std::path::Path;
use std::sync::Arc;

use spool_log::LogManager;
use tokio_util::sync::CancellationToken;

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::group::manager::GroupManager;
use crate::producer_ids::ProducerIds;

/// Shared broker state.
#[derive(Debug)]
pub(crate) struct BrokerState {
    pub config: BrokerConfig,
    pub logs: LogManager,
    pub producer_ids: ProducerIds,
    /// Consumer groups and their committed offsets.
    pub groups: GroupManager,
    pub cluster_id: String,
    /// Host and port clients are told to connect to.
    pub advertised: (String, u16),
    /// Cancelled when the broker shuts down; wakes long polls.
    pub shutdown: CancellationToken,
    /// Bytes of large requests that may be buffered at once (`max_queued_request_bytes`).
    pub request_memory: tokio::sync::Semaphore,
    /// Held for the broker's lifetime: a second broker on the same directory would corrupt it.
    _dir_lock: std::fs::File,
    /// Dropped with the state, telling an embedder that the directory is free again.
    _on_drop: tokio::sync::oneshot::Sender<()>,
}

impl BrokerState {
    pub fn open(
        config: BrokerConfig,
        advertised: (String, u16),
        shutdown: CancellationToken,
        on_drop: tokio::sync::oneshot::Sender<()>,
    ) -> Result<Arc<Self>, BrokerError> {
        let io = |context: &str, source| BrokerError::Io {
            context: format!("{context} in {}", config.data_dir.display()),
            source,
        };
        std::fs::create_dir_all(&config.data_dir).map_err(|e| io("creating data dir", e))?;
        let dir_lock = lock_data_dir(&config.data_dir)?;
        let cluster_id = cluster_id(&config.data_dir).map_err(|e| io("reading cluster id", e))?;
        let producer_ids =
            ProducerIds::open(&config.data_dir).map_err(|e| io("reading producer ids", e))?;
        let logs = LogManager::open(&config.data_dir)?;
        let groups = GroupManager::open(&config.data_dir, config.group.clone(), shutdown.clone())
            .map_err(|e| io("reading committed offsets", e))?;
        let budget = config
            .max_queued_request_bytes
            .clamp(1, u32::MAX as usize)
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        Ok(Arc::new(BrokerState {
            request_memory: tokio::sync::Semaphore::new(budget),
            config,
            logs,
            producer_ids,
            groups,
            cluster_id,
            advertised,
            shutdown,
            _dir_lock: dir_lock,
            _on_drop: on_drop,
        }))
    }
}

/// Takes an exclusive lock on `<data-dir>/.lock`, released when the process exits.
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, BrokerError> {
    let path = data_dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| BrokerError::Io {
            context: format!("opening {}", path.display()),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(BrokerError::DataDirInUse(data_dir.to_path_buf()))
        }
        Err(std::fs::TryLockError::Error(source)) => Err(BrokerError::Io {
            context: format!("locking {}", path.display()),
            source,
        }),
    }
}

/// Reads the cluster id, creating one on first start (Kafka keeps it in meta.properties).
fn cluster_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("cluster-id");
    match std::fs::read_to_string(&path) {
        Ok(id) => Ok(id.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Kafka's cluster ids are a UUID in URL-safe base64 without padding (22 chars).
            let id = base64_url(uuid::Uuid::new_v4().as_bytes());
            std::fs::write(&path, &id)?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_id_is_22_url_safe_chars() {
        let id = super::base64_url(&[0xff; 16]);
        assert_eq!(id.len(), 22);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}
