//! Errors that stop the broker (start-up and I/O), apart from the Kafka error codes that
//! requests get back.

/// A broker-level failure.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Binding or accepting failed.
    #[error("{context} failed")]
    Io {
        /// What we were doing.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The data directory could not be opened or recovered.
    #[error("storage error: {0}")]
    Log(#[from] spool_log::LogError),
    /// Another broker holds the data directory's lock.
    #[error("data directory {0} is in use by another broker")]
    DataDirInUse(std::path::PathBuf),
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}
