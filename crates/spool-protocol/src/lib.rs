//! Spool's Kafka wire protocol layer. No I/O, no async.
//!
//! ```text
//! frame bytes -> frame::split (bounded length prefix) -> guard::check_request (bounded counts)
//!             -> codec::decode_request (kafka-protocol schemas) -> handler
//! handler -> codec::encode_response -> frame bytes
//! record batches stay bytes: batch::BatchHeader reads/rewrites the 61-byte v2 header only
//! ```

pub mod batch;
pub mod codec;
pub mod compression;
pub mod embedded;
pub mod error;
mod fetch_frame;
pub mod frame;
pub mod guard;
pub mod outbox;
pub mod records;

pub use kafka_protocol;
