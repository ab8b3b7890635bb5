//! Fetch: whole batches straight from the log's bytes, with long polling.
//!
//! Fetch sessions (KIP-227) are declined by answering session id 0, which every client
//! handles by sending full fetch requests.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::select_all;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;
use spool_log::{LogError, PartitionLog};
use spool_protocol::batch::Batches;
use spool_protocol::compression::Compression;
use tokio::sync::watch;
use tokio::time::Instant;

use super::log_error_code;
use crate::state::BrokerState;

/// Kafka's `fetch.max.bytes` default: the most one fetch response carries (55 MiB).
const FETCH_MAX_BYTES: usize = 55 * 1024 * 1024;

struct Slot {
    topic: usize,
    partition: i32,
    log: Result<Arc<PartitionLog>, ResponseError>,
    offset: i64,
    max_bytes: usize,
}

pub(crate) async fn handle(
    state: &Arc<BrokerState>,
    req: FetchRequest,
    version: i16,
) -> FetchResponse {
    // We never create sessions. A full fetch (epoch 0 or -1) is served whatever id it names,
    // which closes that session in Kafka's terms; an incremental one names a session we lack.
    if req.session_epoch > 0 {
        return FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code());
    }
    let by_id = version >= 13;
    let mut topics = Vec::with_capacity(req.topics.len());
    let mut slots = Vec::new();
    // Kafka keys a fetch by partition, so a partition named twice is read once.
    let mut seen = HashSet::new();
    for (t, topic) in req.topics.into_iter().enumerate() {
        let meta = if by_id {
            state
                .logs
                .topic_by_id(*topic.topic_id.as_bytes())
                .ok_or(ResponseError::UnknownTopicId)
        } else {
            state
                .logs
                .topic(&topic.topic.0)
                .ok_or(ResponseError::UnknownTopicOrPartition)
        };
        let key = if by_id {
            topic.topic_id.to_string()
        } else {
            topic.topic.0.to_string()
        };
        for p in &topic.partitions {
            if !seen.insert((key.clone(), p.partition)) {
                continue;
            }
            let log = meta.clone().and_then(|m| {
                state
                    .logs
                    .partition(&m.name, p.partition)
                    .ok_or(ResponseError::UnknownTopicOrPartition)
            });
            slots.push(Slot {
                topic: t,
                partition: p.partition,
                log,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
            });
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic)
                .with_topic_id(topic.topic_id),
        );
    }
    // Kafka caps a response at min(request max_bytes, fetch.max.bytes) and min_bytes at that.
    let max_bytes = (req.max_bytes.max(0) as usize).min(FETCH_MAX_BYTES);
    let min_bytes = (req.min_bytes.max(0) as usize).min(max_bytes);
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    // Subscribe before the first read so an append between read and wait still wakes us.
    let mut watches: Vec<watch::Receiver<i64>> = slots
        .iter()
        .filter_map(|s| s.log.as_ref().ok().map(|l| l.subscribe()))
        .collect();
    loop {
        for w in &mut watches {
            w.borrow_and_update();
        }
        let (partitions, bytes, errors) = read_all(&slots, max_bytes, version);
        let done = bytes >= min_bytes
            || errors
            || Instant::now() >= deadline
            || watches.is_empty()
            || state.shutdown.is_cancelled();
        if done {
            let mut topics = topics;
            for (slot, data) in slots.iter().zip(partitions) {
                topics[slot.topic].partitions.push(data);
            }
            return FetchResponse::default().with_responses(topics);
        }
        let changed = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = state.shutdown.cancelled() => {}
        }
    }
}

/// Reads every slot; returns the partition answers, the record bytes and whether any errored.
fn read_all(slots: &[Slot], max_bytes: usize, version: i16) -> (Vec<PartitionData>, usize, bool) {
    let mut total = 0usize;
    let mut errors = false;
    let answers = slots
        .iter()
        .map(|slot| {
            let data = PartitionData::default()
                .with_partition_index(slot.partition)
                .with_aborted_transactions(Some(Vec::new()))
                .with_preferred_read_replica(BrokerId(-1));
            let log = match &slot.log {
                Ok(log) => log,
                // An unknown partition is answered but, as in Kafka, does not end a long poll:
                // only the readable partitions decide when to answer.
                Err(code) => {
                    return data
                        .with_error_code(code.code())
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_log_start_offset(-1);
                }
            };
            let offsets = log.offsets();
            let data = data
                .with_high_watermark(offsets.high_watermark)
                .with_last_stable_offset(offsets.high_watermark)
                .with_log_start_offset(offsets.log_start_offset);
            let room = max_bytes.saturating_sub(total).min(slot.max_bytes);
            // Until some partition has returned data, the first batch is returned whatever the
            // limits (KIP-74), so a consumer can always make progress.
            if room == 0 && total > 0 {
                return data.with_records(Some(Default::default()));
            }
            match log.read(slot.offset, room.max(1)) {
                // Only the first batch of the whole response may exceed the limits (KIP-74).
                Ok(bytes) if bytes.len() > room && total > 0 => {
                    data.with_records(Some(Default::default()))
                }
                // Clients that fetch below v10 cannot read zstd (Kafka refuses them the same way).
                Ok(bytes) if version < 10 && has_zstd(&bytes) => {
                    errors = true;
                    data.with_error_code(ResponseError::UnsupportedCompressionType.code())
                        .with_records(Some(Default::default()))
                }
                Ok(bytes) => {
                    total += bytes.len();
                    data.with_records(Some(bytes))
                }
                Err(e) => {
                    errors = true;
                    let code = match e {
                        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
                        ref other => log_error_code(other),
                    };
                    // Kafka reports unknown offsets (-1) alongside a read error.
                    data.with_error_code(code.code())
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_log_start_offset(-1)
                        .with_records(Some(Default::default()))
                }
            }
        })
        .collect();
    (answers, total, errors)
}

/// True when any whole batch in `bytes` is zstd-compressed (headers only).
fn has_zstd(bytes: &[u8]) -> bool {
    Batches::new(bytes)
        .filter_map(Result::ok)
        .any(|(h, _)| h.compression() == Compression::Zstd)
}
