//! Fetch answers encoded around their record batches, so that the batches read from the log go
//! to the socket as they are (a vectored write) instead of being copied into the frame.
//!
//! kafka-protocol encodes a message into one contiguous buffer, and its buffer trait can only be
//! implemented with `unsafe`, which this workspace forbids. So the frame is put together here,
//! field by field in the schema's order, with kafka-protocol's own type encoders; each
//! partition is encoded by kafka-protocol without its records, whose place is then taken by
//! their length and the shared bytes. kafka-protocol's primitive encoders are private, so the
//! few fields around the partitions (integers, lengths, a topic name or id) are written here. A test checks the result byte for byte against
//! kafka-protocol's encoding of the whole answer, for every version.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;

use crate::error::ProtocolError;
use crate::outbox::Outbox;
use crate::records::put_uvarint;

/// Record bytes below this size are copied into the frame: a piece of their own would cost more
/// than the copy.
const SHARE_FROM: usize = 4096;

/// Appends the frame of `body` to `out` with its record batches of [`SHARE_FROM`] bytes or more
/// shared, not copied. `None` when the answer has a shape this does not handle (a version
/// outside 4-18, tagged fields beyond the plain answer, no batch worth sharing): the caller
/// encodes it whole.
pub(crate) fn encode(
    out: &mut Outbox,
    version: i16,
    correlation_id: i32,
    body: &FetchResponse,
) -> Option<Result<(), ProtocolError>> {
    let plain = (4..=18).contains(&version)
        && body.unknown_tagged_fields.is_empty()
        && (version < 16 || body.node_endpoints.is_empty())
        && body
            .responses
            .iter()
            .all(|t| t.unknown_tagged_fields.is_empty());
    let worth_it = body
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .any(|p| shareable(p, version));
    (plain && worth_it).then(|| {
        // Built apart and appended whole, so that a failure leaves no half frame behind.
        let mut frame = Outbox::new();
        encode_frame(&mut frame, version, correlation_id, body)?;
        out.append(frame);
        Ok(())
    })
}

/// Whether this partition's records go out as shared bytes: large enough, and no tagged field
/// is written after them.
fn shareable(p: &PartitionData, version: i16) -> bool {
    p.records.as_ref().is_some_and(|r| r.len() >= SHARE_FROM)
        && (version < 12
            || (p.unknown_tagged_fields.is_empty()
                && p.diverging_epoch == Default::default()
                && p.current_leader == Default::default()
                && p.snapshot_id == Default::default()))
}

/// Turns a kafka-protocol encoder's error (its message is all that is kept) into ours.
fn fail<E: std::fmt::Display>(version: i16) -> impl Fn(E) -> ProtocolError {
    move |e| codec_err(version, e)
}

fn codec_err(version: i16, detail: impl ToString) -> ProtocolError {
    ProtocolError::Codec {
        action: "encode",
        api: "Fetch",
        version,
        detail: detail.to_string(),
    }
}

fn encode_frame(
    frame: &mut Outbox,
    version: i16,
    correlation_id: i32,
    body: &FetchResponse,
) -> Result<(), ProtocolError> {
    let flexible = version >= 12;
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = ApiKey::Fetch.response_header_version(version);
    // Sizing first also runs every check the encoders would fail on, before anything is written.
    let size = header.compute_size(header_version).map_err(fail(version))?
        + body.compute_size(version).map_err(fail(version))?;
    let size = i32::try_from(size).map_err(|_| codec_err(version, "answer over 2 GiB"))?;

    let buf = frame.encoded();
    buf.put_i32(size);
    header.encode(buf, header_version).map_err(fail(version))?;
    buf.put_i32(body.throttle_time_ms);
    if version >= 7 {
        buf.put_i16(body.error_code);
        buf.put_i32(body.session_id);
    }
    put_len(frame.encoded(), flexible, body.responses.len(), version)?;
    for topic in &body.responses {
        let buf = frame.encoded();
        if version <= 12 {
            put_string(buf, flexible, &topic.topic, version)?;
        }
        if version >= 13 {
            buf.put_slice(topic.topic_id.as_bytes());
        }
        put_len(buf, flexible, topic.partitions.len(), version)?;
        for p in &topic.partitions {
            encode_partition(frame, version, p)?;
        }
        if flexible {
            // No tagged fields (checked by the caller).
            frame.encoded().put_u8(0);
        }
    }
    if flexible {
        frame.encoded().put_u8(0);
    }
    if frame.len() != 4 + size as usize {
        return Err(codec_err(
            version,
            "Fetch answer size does not match its encoding",
        ));
    }
    Ok(())
}

/// An array's length: i32, or the count plus one as an unsigned varint in flexible versions
/// (bytes are prefixed the same way).
fn put_len(
    buf: &mut BytesMut,
    flexible: bool,
    n: usize,
    version: i16,
) -> Result<(), ProtocolError> {
    let too_long = || codec_err(version, "length too large for its field");
    if flexible {
        let n = u32::try_from(n)
            .ok()
            .and_then(|n| n.checked_add(1))
            .ok_or_else(too_long)?;
        put_uvarint(buf, u64::from(n));
    } else {
        buf.put_i32(i32::try_from(n).map_err(|_| too_long())?);
    }
    Ok(())
}

/// A non-null string: i16 length, or compact (varint length plus one) in flexible versions.
fn put_string(
    buf: &mut BytesMut,
    flexible: bool,
    s: &str,
    version: i16,
) -> Result<(), ProtocolError> {
    if flexible {
        put_len(buf, true, s.len(), version)?;
    } else {
        let n =
            i16::try_from(s.len()).map_err(|_| codec_err(version, "string over 32767 bytes"))?;
        buf.put_i16(n);
    }
    buf.put_slice(s.as_bytes());
    Ok(())
}

fn encode_partition(
    frame: &mut Outbox,
    version: i16,
    p: &PartitionData,
) -> Result<(), ProtocolError> {
    let buf = frame.encoded();
    let records = match &p.records {
        Some(records) if shareable(p, version) => records.clone(),
        _ => return p.encode(buf, version).map_err(fail(version)),
    };
    let flexible = version >= 12;
    // kafka-protocol writes the partition up to its records; those end it, but for tagged
    // fields, which a shareable partition has none of.
    let bare = p.clone().with_records(None);
    bare.encode(buf, version).map_err(fail(version))?;
    // Null records then, in flexible versions, an empty tagged-field section.
    let tail: &[u8] = if flexible { &[0, 0] } else { &[0xff; 4] };
    if !buf.ends_with(tail) {
        return Err(codec_err(
            version,
            "unexpected encoding of a Fetch partition",
        ));
    }
    buf.truncate(buf.len() - tail.len());
    put_len(buf, flexible, records.len(), version)?;
    frame.push_shared(records);
    if flexible {
        frame.encoded().put_u8(0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;

    use bytes::{Buf, Bytes};
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, EpochEndOffset, FetchableTopicResponse, NodeEndpoint,
    };
    use kafka_protocol::messages::{BrokerId, ProducerId, ResponseKind, TopicName};
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::codec::{encode_response, encode_response_to};

    fn records(len: usize, seed: u8) -> Bytes {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    fn partition(version: i16, index: i32, records: Option<Bytes>) -> PartitionData {
        PartitionData::default()
            .with_partition_index(index)
            .with_high_watermark(1_000 + i64::from(index))
            .with_last_stable_offset(900)
            .with_log_start_offset(if version >= 5 { 7 } else { -1 })
            .with_aborted_transactions(Some(Vec::new()))
            .with_preferred_read_replica(BrokerId(if version >= 11 { 3 } else { -1 }))
            .with_records(records)
    }

    /// An answer of every shape Spool sends: large and small batches, an error partition
    /// without records, aborted transactions present and null, two topics.
    fn answer(version: i16) -> FetchResponse {
        let t1 = FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("orders")))
            .with_topic_id(uuid::Uuid::from_u128(
                0x1234_5678_9abc_def0_1122_3344_5566_7788,
            ))
            .with_partitions(vec![
                partition(version, 0, Some(records(20_000, 1))),
                partition(version, 1, Some(records(100, 2))),
                partition(version, 2, None).with_error_code(1),
                partition(version, 3, Some(records(5_000, 3))).with_aborted_transactions(Some(
                    vec![AbortedTransaction::default()
                        .with_producer_id(ProducerId(5))
                        .with_first_offset(6)],
                )),
            ]);
        let t2 = FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("b")))
            .with_partitions(vec![
                partition(version, 9, Some(records(SHARE_FROM, 4))).with_aborted_transactions(None),
                partition(version, 8, Some(Bytes::new())),
            ]);
        FetchResponse::default()
            .with_throttle_time_ms(12)
            .with_session_id(if version >= 7 { 77 } else { 0 })
            .with_responses(vec![t1, t2])
    }

    /// What `encode_response_to` writes, and kafka-protocol's encoding of the same answer.
    fn both(version: i16, body: FetchResponse) -> (Vec<u8>, Vec<u8>, Outbox) {
        let body = ResponseKind::Fetch(body);
        let mut out = Outbox::new();
        out.encoded().extend_from_slice(b"earlier");
        encode_response_to(&mut out, ApiKey::Fetch, version, 42, &body).unwrap();
        let mut expected = BytesMut::from(&b"earlier"[..]);
        encode_response(&mut expected, ApiKey::Fetch, version, 42, &body).unwrap();
        let mut slices = [IoSlice::new(&[]); 64];
        let n = out.chunks_vectored(&mut slices);
        let written: Vec<u8> = slices[..n].iter().flat_map(|s| s.to_vec()).collect();
        assert_eq!(written.len(), out.remaining());
        (written, expected.to_vec(), out)
    }

    #[test]
    fn every_version_is_byte_for_byte_kafka_protocols_encoding() {
        for version in 4..=18 {
            let body = answer(version);
            let shared = body.responses[0].partitions[0].records.clone().unwrap();
            let (written, expected, out) = both(version, body);
            assert_eq!(written, expected, "v{version}");
            // The large batch went out as the very bytes it was read into.
            let mut slices = [IoSlice::new(&[]); 64];
            let n = out.chunks_vectored(&mut slices);
            assert!(
                slices[..n].iter().any(|s| s.as_ptr() == shared.as_ptr()),
                "v{version}: records shared"
            );
        }
    }

    #[test]
    fn answers_with_tagged_fields_are_encoded_whole_and_still_right() {
        for version in 12..=18 {
            let mut body = answer(version);
            body.responses[0].partitions[0].diverging_epoch =
                EpochEndOffset::default().with_epoch(3).with_end_offset(10);
            let (written, expected, _) = both(version, body);
            assert_eq!(written, expected, "partition tags, v{version}");
        }
        for version in 16..=18 {
            let body = answer(version)
                .with_node_endpoints(vec![NodeEndpoint::default().with_node_id(BrokerId(1))]);
            let (written, expected, _) = both(version, body);
            assert_eq!(written, expected, "node endpoints, v{version}");
        }
    }

    #[test]
    fn an_answer_a_version_cannot_carry_is_refused_and_leaves_nothing_behind() {
        // A session id needs v7.
        let body = ResponseKind::Fetch(answer(7).with_session_id(5));
        let mut out = Outbox::new();
        assert!(encode_response_to(&mut out, ApiKey::Fetch, 6, 1, &body).is_err());
        assert!(out.is_empty());
    }
}
