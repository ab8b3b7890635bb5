//! Spool's storage: per-partition segmented logs of Kafka v2 record batches, and the data
//! directory of topics. No network; the broker wraps it.
//!
//! ```text
//! LogManager (data dir, topics.json)
//!   └─ PartitionLog per <topic>-<partition>/           one mutex; reads, fsyncs outside it
//!        ├─ segments: 00000000000000000000.log        batches exactly as received
//!        │            .index / .timeindex             sparse offset and time indexes
//!        ├─ producer state (idempotence)              snapshots at roll/close + replay of the tail
//!        └─ group commit                              one fdatasync serves all acks=all waiters
//!
//! append(BytesMut) -> header/CRC check -> producer rules -> offsets -> pwrite -> indexes
//! read(offset)     -> index -> pread whole batches (first one always whole, KIP-74)
//! open             -> recovery: CRC walk, cut torn tails, rebuild indexes and producer state
//! ```
//!
//! Batches are never decoded: only their 61-byte header is read and `baseOffset` (and, for
//! `LogAppendTime` topics, the timestamp type and max timestamp) rewritten.
//!
//! Non-goals for now: compaction, transactions (markers are stored but no last stable offset is
//! tracked), replication, tiered storage.

mod config;
#[cfg(test)]
mod durability;
mod error;
mod fsutil;
mod index;
mod manager;
mod partition;
mod producer_state;
mod recovery;
mod scan;
mod segment;
mod sync;
pub mod topic_config;

#[cfg(test)]
mod power_loss;
#[cfg(test)]
mod testutil;

pub use config::LogConfig;
pub use error::LogError;
pub use manager::{LogManager, TopicMeta};
pub use partition::{AppendInfo, LogOffsets, PartitionLog};
pub use producer_state::PRODUCER_ID_EXPIRATION_MS;
