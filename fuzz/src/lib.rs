//! What each fuzz target drives, as plain functions so the corpus generator and a debugger can
//! call them too. Each one feeds untrusted bytes through the same calls, with the same limits,
//! as the broker (or, for fetched batches and group metadata, the client) does.

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::Decodable;
use spool_broker::BrokerConfig;
use spool_protocol::batch::{self, BatchHeader, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};
use spool_protocol::embedded::{self, Embedded};
use spool_protocol::records::{self, DecodedBatches};
use spool_protocol::{codec, frame};

/// The broker's default configuration: its request size cap and guard limits.
fn broker_config() -> &'static BrokerConfig {
    static CONFIG: OnceLock<BrokerConfig> = OnceLock::new();
    CONFIG.get_or_init(|| BrokerConfig::new("/nonexistent"))
}

/// The broker's cap on one decompressed batch with the default `max.message.bytes`
/// (spool-log's partition.rs and the broker's produce.rs compute it the same way).
pub fn broker_decompression_cap() -> usize {
    (spool_log::LogConfig::default().max_message_bytes as usize)
        .saturating_mul(64)
        .max(1 << 20)
}

/// A smaller cap, chosen by the input, so that small corpus entries can still be bombs that
/// cross it (a 64 MiB lz4 bomb is 256 KiB; a 4 MiB one is 16 KiB).
const SMALL_CAP: usize = 1 << 20;

/// `connection.rs` admits an API at a version when the broker implements it
/// (`router::decodable`, which is private); the table is public.
fn decodable(key: ApiKey, version: i16) -> bool {
    if key == ApiKey::Produce && version < 3 {
        return false;
    }
    spool_broker::supported_versions()
        .iter()
        .any(|&(k, min, max)| k == key && (min..=max).contains(&version))
}

/// Target `request`: bytes as read from a socket. Frames are split with the broker's
/// `socket.request.max.bytes`, and each whole one goes through `codec::peek_header` and
/// `codec::decode_request` (the guard, then kafka-protocol) with the broker's default limits.
pub fn request(data: &[u8]) {
    let config = broker_config();
    let mut inbox = BytesMut::from(data);
    while let Ok(Some(f)) = frame::split_frame(&mut inbox, config.max_request_bytes) {
        let f = f.freeze();
        if codec::peek_header(&f).is_err() {
            // The broker closes the connection here.
            return;
        }
        if codec::decode_request(f, &config.guard, decodable).is_err() {
            return;
        }
    }
}

/// Target `record_batch`. The first byte picks the mode:
/// - bit 0: decompression cap (0 = the broker's, 1 = 1 MiB);
/// - bit 1: 0 = the rest is batch bytes as a producer or a fetch response carries them;
///   1 = the rest is `[attributes i16][record count i32][records section]`, wrapped in a
///   header with a correct length and CRC so mutations reach the decompressors and the record
///   parser instead of dying at the CRC check.
pub fn record_batch(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let cap = if mode & 1 == 0 {
        broker_decompression_cap()
    } else {
        SMALL_CAP
    };
    let bytes = if mode & 2 == 0 {
        Bytes::copy_from_slice(rest)
    } else {
        match wrap_in_header(rest) {
            Some(b) => b,
            None => return,
        }
    };
    broker_path(&bytes, cap);
    client_path(bytes, cap);
}

/// Builds one v2 batch around `[attributes i16][record count i32][records section]`.
pub fn wrap_in_header(data: &[u8]) -> Option<Bytes> {
    if data.len() < 6 {
        return None;
    }
    let attributes = &data[0..2];
    let count = i32::from_be_bytes([data[2], data[3], data[4], data[5]]);
    let section = &data[6..];
    let mut buf = vec![0u8; HEADER_LEN];
    let batch_length = i32::try_from(HEADER_LEN - LOG_OVERHEAD + section.len()).ok()?;
    buf[8..12].copy_from_slice(&batch_length.to_be_bytes());
    buf[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    buf[16] = MAGIC_V2 as u8;
    buf[21..23].copy_from_slice(attributes);
    buf[23..27].copy_from_slice(&count.saturating_sub(1).max(0).to_be_bytes());
    buf[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    buf[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    buf[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    buf[57..61].copy_from_slice(&count.to_be_bytes());
    buf.extend_from_slice(section);
    batch::seal_crc(&mut buf);
    Some(Bytes::from(buf))
}

/// What the broker does with a produced batch: header checks, then, on compacted topics and for
/// ListOffsets by timestamp, `decode_batch` with a capped decompression.
fn broker_path(bytes: &Bytes, cap: usize) {
    let Ok(header) = BatchHeader::parse(bytes) else {
        return;
    };
    let _ = (
        header.total_len(),
        header.last_offset(),
        header.last_sequence(),
        header.compression(),
    );
    if let Ok(iter) = records::decode_batch(&header, bytes, cap) {
        for record in iter {
            if record.is_err() {
                break;
            }
        }
    }
}

/// What a consumer does with fetched bytes: CRC-checked batches, decompressed lazily.
fn client_path(bytes: Bytes, cap: usize) {
    for batch in DecodedBatches::new(bytes, cap) {
        let Ok(batch) = batch else {
            break;
        };
        let _ = (batch.header.last_offset(), batch.header.last_sequence());
        for record in batch.records {
            if record.is_err() {
                break;
            }
        }
    }
}

/// Target `embedded`: the consumer protocol's embedded messages, as a group member's metadata
/// (JoinGroup) or a leader's assignment (SyncGroup) carries them. The first byte picks which;
/// then comes the i16 version and the body. Like the broker and the client, the body is decoded
/// only when `embedded::check` accepts it.
pub fn embedded(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if rest.len() < 2 {
        return;
    }
    let version = i16::from_be_bytes([rest[0], rest[1]]).clamp(0, 3);
    let mut body = Bytes::copy_from_slice(&rest[2..]);
    if which & 1 == 0 {
        if embedded::check(Embedded::Subscription, version, &body) {
            let _ = ConsumerProtocolSubscription::decode(&mut body, version);
        }
    } else if embedded::check(Embedded::Assignment, version, &body) {
        let _ = ConsumerProtocolAssignment::decode(&mut body, version);
    }
}
