//! ListOffsets: earliest, latest, max timestamp, and first offset at or after a timestamp.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::log_error_code;
use crate::state::BrokerState;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub(crate) fn handle(
    state: &BrokerState,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    // The leader epoch field exists from v4; kafka-protocol refuses to encode it earlier.
    let epoch = if version >= 4 { 0 } else { -1 };
    let topics = req
        .topics
        .into_iter()
        .map(|topic| {
            let meta = state.logs.topic(&topic.name.0);
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(epoch);
                    let log = meta
                        .as_ref()
                        .and_then(|m| state.logs.partition(&m.name, p.partition_index));
                    let Some(log) = log else {
                        return resp
                            .with_leader_epoch(-1)
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    // Special timestamps exist from a version on (Kafka's ListOffsets table);
                    // anything else negative is not a lookup Kafka knows.
                    let known = match p.timestamp {
                        LATEST | EARLIEST => true,
                        MAX_TIMESTAMP => version >= 7,
                        EARLIEST_LOCAL => version >= 8,
                        LATEST_TIERED => version >= 9,
                        ts => ts >= 0,
                    };
                    if !known {
                        return resp
                            .with_leader_epoch(-1)
                            .with_error_code(ResponseError::UnsupportedVersion.code());
                    }
                    let offsets = log.offsets();
                    match p.timestamp {
                        LATEST => resp.with_offset(offsets.high_watermark),
                        EARLIEST | EARLIEST_LOCAL => resp.with_offset(offsets.log_start_offset),
                        // No tiered storage: nothing is tiered, and no epoch either.
                        LATEST_TIERED => resp.with_leader_epoch(-1),
                        MAX_TIMESTAMP => match log.max_timestamp() {
                            Ok(Some((offset, ts))) => resp.with_offset(offset).with_timestamp(ts),
                            Ok(None) => resp,
                            Err(e) => resp.with_error_code(log_error_code(&e).code()),
                        },
                        ts if ts >= 0 => match log.offset_for_timestamp(ts) {
                            Ok(Some((offset, found))) => {
                                resp.with_offset(offset).with_timestamp(found)
                            }
                            Ok(None) => resp,
                            Err(e) => resp.with_error_code(log_error_code(&e).code()),
                        },
                        _ => resp,
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
