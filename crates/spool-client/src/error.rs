//! The client's one error type: transport failures kept apart from Kafka error codes.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;
use spool_protocol::records::RecordError;

/// `Result` with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the client.
///
/// Cloneable because one failure (a lost connection, a rejected batch) is reported to every
/// request or record it affects.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A TCP connection could not be opened.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port` tried.
        addr: String,
        /// What the OS said.
        #[source]
        source: Arc<io::Error>,
    },
    /// An established connection died (or was closed after a timeout); every request waiting
    /// on it fails with this.
    #[error("connection to {addr} lost: {reason}")]
    Disconnected {
        /// `host:port` of the broker.
        addr: String,
        /// Why it died.
        reason: String,
    },
    /// Something did not complete in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        after: Duration,
    },
    /// The broker answered with a Kafka error code.
    #[error("{context}: {} ({}){}", kafka_name(.error), .error.code(), fmt_message(.message))]
    Kafka {
        /// The error code, named as in kafka-protocol (`ResponseError::code()` gives the number).
        error: ResponseError,
        /// The broker's error message, when it sent one.
        message: Option<String>,
        /// What the client was doing (e.g. `"produce to orders-3"`).
        context: String,
    },
    /// The broker's bytes could not be decoded, or a request could not be encoded.
    #[error("protocol error ({context}): {detail}")]
    Protocol {
        /// Where it happened.
        context: String,
        /// What the codec said.
        detail: String,
    },
    /// No version of an API is supported by both the broker and this client.
    #[error("{addr} does not support {api:?} in any version this client implements{}", fmt_range(.broker))]
    UnsupportedVersion {
        /// The API.
        api: ApiKey,
        /// The broker.
        addr: String,
        /// The broker's advertised range, if it advertised the API at all.
        broker: Option<(i16, i16)>,
    },
    /// Fetched record batches are corrupt.
    #[error("corrupt records in {topic}-{partition}: {source}")]
    CorruptRecords {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// What was wrong.
        #[source]
        source: Arc<RecordError>,
    },
    /// A record is larger than the producer may send (`max.request.size`/`buffer.memory`).
    #[error("record of {size} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// Encoded size of the record.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The consumer has no position for a partition and `auto.offset.reset` is `none`.
    #[error("no offset for {topic}-{partition} and auto.offset.reset is none")]
    NoOffset {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// The operation needs a partition that is not assigned to the consumer.
    #[error("{topic}-{partition} is not assigned to this consumer")]
    NotAssigned {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// None of the bootstrap servers could be reached.
    #[error("no bootstrap server answered ({servers}); last error: {last}")]
    Bootstrap {
        /// The configured servers.
        servers: String,
        /// The last failure.
        last: Box<Error>,
    },
    /// The producer (or another component) is closed.
    #[error("{0} is closed")]
    Closed(&'static str),
}

impl Error {
    /// A Kafka error from an error code; `None` for code 0.
    pub fn from_code(
        code: i16,
        message: Option<String>,
        context: impl Into<String>,
    ) -> Option<Self> {
        ResponseError::try_from_code(code).map(|error| Error::Kafka {
            error,
            message,
            context: context.into(),
        })
    }

    /// The Kafka error code, when the broker sent one.
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            Error::Kafka { error, .. } => Some(error.code()),
            _ => None,
        }
    }

    /// True when this is the given Kafka error.
    pub fn is(&self, kafka: ResponseError) -> bool {
        self.kafka_code() == Some(kafka.code())
    }

    /// True when retrying the same operation may succeed: transport failures, timeouts and the
    /// Kafka error codes Kafka marks retriable.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Disconnected { .. } | Error::Timeout { .. } => true,
            Error::Kafka { error, .. } => error.is_retriable(),
            _ => false,
        }
    }

    /// True when the error means the client's view of partition leadership is out of date.
    pub(crate) fn invalidates_metadata(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Disconnected { .. } | Error::Timeout { .. } => true,
            Error::Kafka { error, .. } => metadata_error(error.code()),
            _ => false,
        }
    }

    pub(crate) fn protocol(context: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Error::Protocol {
            context: context.into(),
            detail: detail.to_string(),
        }
    }
}

/// Error codes after which Kafka's clients refresh metadata before retrying.
pub(crate) fn metadata_error(code: i16) -> bool {
    matches!(
        ResponseError::try_from_code(code),
        Some(
            ResponseError::NotLeaderOrFollower
                | ResponseError::UnknownTopicOrPartition
                | ResponseError::LeaderNotAvailable
                | ResponseError::FencedLeaderEpoch
                | ResponseError::UnknownLeaderEpoch
                | ResponseError::UnknownTopicId
                | ResponseError::InconsistentTopicId
                | ResponseError::KafkaStorageError
                | ResponseError::ReplicaNotAvailable
                | ResponseError::NotController
        )
    )
}

/// Kafka's own spelling of an error name: `NotLeaderOrFollower` -> `NOT_LEADER_OR_FOLLOWER`.
fn kafka_name(error: &ResponseError) -> String {
    let camel = error.to_string();
    if let ResponseError::Unknown(code) = error {
        return format!("UNKNOWN_ERROR_CODE_{code}");
    }
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn fmt_message(message: &Option<String>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!(": {m}"),
        _ => String::new(),
    }
}

fn fmt_range(range: &Option<(i16, i16)>) -> String {
    match range {
        Some((min, max)) => format!(" (broker supports v{min}-v{max})"),
        None => " (not advertised by the broker)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_errors_read_like_kafka() {
        let e = Error::from_code(6, Some("moved".into()), "produce to t-0").unwrap();
        assert_eq!(
            e.to_string(),
            "produce to t-0: NOT_LEADER_OR_FOLLOWER (6): moved"
        );
        assert!(e.is_retriable());
        assert!(e.is(ResponseError::NotLeaderOrFollower));
        let e = Error::from_code(36, None, "create topic t").unwrap();
        assert_eq!(e.to_string(), "create topic t: TOPIC_ALREADY_EXISTS (36)");
        assert!(!e.is_retriable());
        let e = Error::from_code(999, None, "x").unwrap();
        assert_eq!(e.to_string(), "x: UNKNOWN_ERROR_CODE_999 (999)");
        assert!(Error::from_code(0, None, "x").is_none());
    }

    #[test]
    fn transport_errors_are_retriable() {
        let e = Error::Disconnected {
            addr: "h:1".into(),
            reason: "eof".into(),
        };
        assert!(e.is_retriable());
        assert_eq!(e.to_string(), "connection to h:1 lost: eof");
    }
}
