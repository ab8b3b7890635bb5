//! Produce: validate one batch per partition by its header, append it as bytes, and for
//! acks=all wait until it is fsynced (group commit in the log).
//!
//! The work is split in two so a connection can pipeline: [`begin`] appends (in request order,
//! before the connection reads its next request) and [`Appended::finish`] waits for durability.
//! While one request's fsync runs, the same producer's next requests are appended and share the
//! next fsync round instead of each waiting for its own.

use std::sync::Arc;

use bytes::BytesMut;
use futures::future::join_all;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use spool_log::{PartitionLog, TopicMeta};
use spool_protocol::batch::{BatchError, BatchHeader};
use spool_protocol::compression::Compression;
use spool_protocol::records;
use tracing::debug;

use super::{find_or_create, log_error_code, text};
use crate::server::now_ms;
use crate::state::BrokerState;

/// What the connection does with a produce request's result.
pub(crate) enum Outcome {
    /// Send the response.
    Respond(ProduceResponse),
    /// acks=0 and all went well: send nothing.
    Silent,
    /// acks=0 and a partition failed: close the connection, as Kafka does.
    Close,
}

/// A produce request whose batches are in the log files, not yet answered.
pub(crate) struct Appended {
    acks: i16,
    responses: Vec<TopicProduceResponse>,
    /// acks=all: (log, last offset appended, topic index, partition index) to wait for.
    to_sync: Vec<(Arc<PartitionLog>, i64, usize, usize)>,
}

/// Validates and appends every partition's batch, and starts acks=all fsyncs; nothing here
/// waits. Must run inside a Tokio runtime.
pub(crate) fn begin(state: &Arc<BrokerState>, req: ProduceRequest, version: i16) -> Appended {
    let acks = req.acks;
    let acks_valid = matches!(acks, -1..=1);
    let mut to_sync: Vec<(Arc<PartitionLog>, i64, usize, usize)> = Vec::new();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for (t, topic_data) in req.topic_data.into_iter().enumerate() {
        let by_id = version >= 13;
        let meta: Result<TopicMeta, ResponseError> = if by_id {
            state
                .logs
                .topic_by_id(*topic_data.topic_id.as_bytes())
                .ok_or(ResponseError::UnknownTopicId)
        } else {
            find_or_create(state, &topic_data.name.0, true)
        };
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            let outcome = if !acks_valid {
                Err((ResponseError::InvalidRequiredAcks, None))
            } else {
                match &meta {
                    Err(code) => Err((*code, None)),
                    Ok(meta) => append(state, meta, data.index, data.records, version),
                }
            };
            let resp = PartitionProduceResponse::default().with_index(data.index);
            partitions.push(match outcome {
                Ok((log, info)) => {
                    if acks == -1 {
                        to_sync.push((log, info.last_offset, t, partitions.len()));
                    }
                    resp.with_base_offset(info.base_offset)
                        .with_log_append_time_ms(info.log_append_time)
                        .with_log_start_offset(info.log_start_offset)
                }
                Err((code, message)) => resp
                    .with_error_code(code.code())
                    .with_base_offset(-1)
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(-1)
                    .with_error_message(message.map(text)),
            });
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_topic_id(topic_data.topic_id)
                .with_partition_responses(partitions),
        );
    }
    // The fsyncs start now: they go on while the connection reads on and while earlier
    // answers are written, and `finish` only waits for them.
    for (log, last_offset, _, _) in &to_sync {
        log.start_sync(*last_offset);
    }
    Appended {
        acks,
        responses,
        to_sync,
    }
}

impl Appended {
    /// Waits until an acks=all request's appends are durable, then says what to answer.
    pub(crate) async fn finish(self) -> Outcome {
        let Appended {
            acks,
            mut responses,
            to_sync,
        } = self;
        // The appends are in the files; each log batches concurrent waiters into one fsync,
        // and the partitions of one request sync at the same time.
        let synced = join_all(
            to_sync
                .iter()
                .map(|(log, last_offset, _, _)| log.sync_to(*last_offset)),
        )
        .await;
        for ((_, _, t, p), result) in to_sync.iter().zip(synced) {
            if let Err(e) = result {
                let resp = &mut responses[*t].partition_responses[*p];
                resp.error_code = ResponseError::KafkaStorageError.code();
                resp.error_message = Some(text(e.to_string()));
            }
        }
        outcome(acks, responses)
    }
}

fn outcome(acks: i16, responses: Vec<TopicProduceResponse>) -> Outcome {
    if acks == 0 {
        // acks=0 gets no answer; Kafka closes the connection instead when a partition failed,
        // which is how such producers learn to refresh their metadata.
        let failed = responses
            .iter()
            .any(|t| t.partition_responses.iter().any(|p| p.error_code != 0));
        return if failed {
            Outcome::Close
        } else {
            Outcome::Silent
        };
    }
    Outcome::Respond(ProduceResponse::default().with_responses(responses))
}

type AppendedBatch = (Arc<PartitionLog>, spool_log::AppendInfo);

fn append(
    state: &BrokerState,
    meta: &TopicMeta,
    partition: i32,
    records: Option<bytes::Bytes>,
    version: i16,
) -> Result<AppendedBatch, (ResponseError, Option<String>)> {
    let log = state
        .logs
        .partition(&meta.name, partition)
        .ok_or((ResponseError::UnknownTopicOrPartition, None))?;
    let records = records.unwrap_or_default();
    // Kafka's ProduceRequest.validateRecords: a missing batch or an old format is an invalid
    // request (not retriable); a bad length or CRC is corruption (retriable).
    if records.is_empty() {
        return Err((
            ResponseError::InvalidRecord,
            Some("produce requests must contain exactly one record batch per partition".into()),
        ));
    }
    // Header fields that contradict each other (a record count the bytes cannot hold) are what
    // Kafka's record iteration refuses as InvalidRecordException.
    let header = BatchHeader::parse(&records).map_err(|e| match e {
        BatchError::UnsupportedMagic(_) | BatchError::Inconsistent(_) => {
            (ResponseError::InvalidRecord, Some(e.to_string()))
        }
        _ => (ResponseError::CorruptMessage, Some(e.to_string())),
    })?;
    if header.compression() == Compression::Zstd && version < 7 {
        return Err((
            ResponseError::UnsupportedCompressionType,
            Some("zstd needs Produce v7 or later".into()),
        ));
    }
    if header.total_len() != records.len() {
        return Err((
            ResponseError::InvalidRecord,
            Some("produce requests must contain exactly one record batch per partition".into()),
        ));
    }
    if header.is_transactional() || header.is_control() {
        return Err((
            ResponseError::InvalidTxnState,
            Some("transactions are not supported yet".into()),
        ));
    }
    if is_compacted(meta) {
        // Size first, as Kafka does: an oversized batch is refused before it is decompressed.
        let max = log.config().max_message_bytes;
        if records.len() > max as usize {
            let e = spool_log::LogError::RecordTooLarge {
                size: records.len(),
                max,
            };
            return Err((log_error_code(&e), Some(e.to_string())));
        }
        check_keys(&header, &records, max as usize)?;
    }
    // The only copy of the records on the produce path: the header is rewritten in place.
    let batch = BytesMut::from(&records[..]);
    match log.append(batch, now_ms()) {
        Ok(info) => Ok((log, info)),
        Err(e) => {
            debug!(topic = %meta.name, partition, "append refused: {e}");
            Err((log_error_code(&e), Some(e.to_string())))
        }
    }
}

fn is_compacted(meta: &TopicMeta) -> bool {
    meta.configs
        .get("cleanup.policy")
        .is_some_and(|p| p.split(',').any(|x| x.trim() == "compact"))
}

/// A compacted topic keeps the last record per key, so Kafka refuses keyless records there.
/// This is the one produce path that decodes records, and only on compacted topics.
fn check_keys(
    header: &BatchHeader,
    records: &bytes::Bytes,
    max_message_bytes: usize,
) -> Result<(), (ResponseError, Option<String>)> {
    // Decompressed records may be larger than the batch; bound them all the same.
    let cap = max_message_bytes.saturating_mul(64).max(1 << 20);
    let iter = records::decode_batch(header, records, cap).map_err(record_error)?;
    for record in iter {
        let record = record.map_err(record_error)?;
        if record.key.is_none() {
            return Err((
                ResponseError::InvalidRecord,
                Some("Compacted topic cannot accept message without key.".into()),
            ));
        }
    }
    Ok(())
}

/// Kafka's codes for a batch whose records cannot be read: a record that does not parse (a
/// lying count, a bad length) is INVALID_RECORD; a corrupt or undecompressable batch is
/// CORRUPT_MESSAGE.
fn record_error(e: records::RecordError) -> (ResponseError, Option<String>) {
    let code = match e {
        records::RecordError::Malformed { .. } => ResponseError::InvalidRecord,
        _ => ResponseError::CorruptMessage,
    };
    (code, Some(e.to_string()))
}
