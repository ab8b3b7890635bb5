//! Spool's single-node Kafka-compatible broker.
//!
//! ```text
//! TcpListener -> server::run (connection cap, shutdown) -> connection task per socket
//!   connection: read frame (bounded) -> spool_protocol::codec::decode_request (guarded)
//!            -> router::dispatch -> handlers::* -> spool_log (partition logs, topics)
//!            <- encode response, written in request order
//! ```
//! The standalone `spool broker` and [`EmbeddedBroker`] run the same code.

pub mod config;
mod connection;
pub mod embedded;
pub mod error;
pub mod group;
mod handlers;
mod producer_ids;
mod router;
pub mod server;
mod state;

pub use config::BrokerConfig;
pub use embedded::EmbeddedBroker;
pub use error::BrokerError;
pub use router::supported_versions;
pub use server::run;
