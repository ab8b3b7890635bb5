//! A pure-async Rust Kafka client: producer, consumer and admin. Works against Spool, Apache
//! Kafka (4.x) and Redpanda.
//!
//! ```text
//!                      Client (cluster.rs): bootstrap, metadata cache, one connection per broker
//!                        |
//!   Producer ------------+------------ Consumer ------------- Admin
//!   partitioner.rs        |             consumer/             admin.rs
//!   producer/accumulator  |             Fetch per leader,     CreateTopics, DeleteTopics,
//!   producer/sender  -> Produce         ListOffsets resets    DescribeConfigs, ListOffsets...
//!   producer/idempotence  |
//!                        v
//!   connection.rs: framing, correlation ids, pipelining, poisoning   versions.rs: ApiVersions
//!                        |
//!   spool_protocol::records (batch encode/decode), ::compression, kafka-protocol (schemas)
//! ```
//!
//! Behaves like Kafka's Java client where it matters: the same partition for the same key
//! (murmur2), idempotent producing with `acks=all` by default, request timeouts, retries with
//! backoff bounded by `delivery.timeout.ms`, configuration names and defaults.
//!
//! ```no_run
//! # async fn demo() -> spool_client::Result<()> {
//! use std::time::Duration;
//! use spool_client::{Client, ClientConfig, ConsumerConfig, NewTopic, Offset, ProducerConfig, ProducerRecord};
//!
//! let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
//! client.admin().create_topics(vec![NewTopic::new("orders", 3, 1)]).await?;
//!
//! let producer = client.producer(ProducerConfig::default())?;
//! producer.send_and_wait(ProducerRecord::new("orders", "hello").key("customer-1")).await?;
//!
//! let mut consumer = client.consumer(ConsumerConfig::default());
//! consumer.assign(vec![("orders".into(), 0), ("orders".into(), 1), ("orders".into(), 2)]);
//! for p in 0..3 {
//!     consumer.seek("orders", p, Offset::Earliest)?;
//! }
//! let records = consumer.poll(Duration::from_secs(1)).await?;
//! // Or read them in place, without an owned struct per record:
//! for r in &consumer.poll_records(Duration::from_secs(1)).await? {
//!     println!("{}-{}@{}: {:?}", r.topic, r.partition, r.offset, r.value);
//! }
//! # Ok(()) }
//! ```
//!
//! Consumer groups: [`GroupConsumer`] (classic protocol; `range`, `roundrobin`, `sticky` and
//! `cooperative-sticky` assignors; eager or cooperative rebalancing).
//!
//! Not (yet) here: the KIP-848 group protocol, transactions, SASL/TLS, fetch sessions.

pub mod admin;
pub mod admin_groups;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod group;
pub mod partitioner;
pub mod producer;
pub mod versions;

#[cfg(test)]
mod testing;

pub use admin::{
    Admin, ClusterDescription, ConfigEntry, ConfigResource, ConfigSource, ListedOffset, NewTopic,
    OffsetSpec, TopicDescription, TopicListing,
};
pub use admin_groups::{CommittedOffset, GroupDescription, GroupListing, GroupMemberDescription};
pub use cluster::{BrokerInfo, Client, ConnectionPool, Metadata, PartitionInfo, TopicInfo};
pub use config::{
    Acks, AutoOffsetReset, ClientConfig, Compression, ConsumerConfig, ProducerConfig,
};
pub use consumer::{Consumer, ConsumerRecord, ConsumerRecords, Offset, RecordRef};
pub use error::{Error, Result};
pub use group::{
    Assignor, CooperativeStickyAssignor, GroupConfig, GroupConsumer, GroupHandle, GroupStream,
    OffsetAndMetadata, RangeAssignor, RebalanceEvent, RoundRobinAssignor, StickyAssignor,
};
pub use kafka_protocol::ResponseError;
pub use producer::{DeliveryFuture, Producer, ProducerRecord, RecordMetadata};
