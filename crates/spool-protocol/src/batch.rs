//! A view over record batches (magic v2) that reads and rewrites only the 61-byte header.
//!
//! The broker never decodes records: it checks the header and the CRC, assigns offsets by rewriting
//! `baseOffset` (outside the CRC's span, so the CRC stays valid) and stores the batch as received.
//!
//! Layout (big-endian):
//! ```text
//! 0  baseOffset i64 | 8 batchLength i32 | 12 partitionLeaderEpoch i32 | 16 magic i8 | 17 crc u32
//! 21 attributes i16 | 23 lastOffsetDelta i32 | 27 baseTimestamp i64 | 35 maxTimestamp i64
//! 43 producerId i64 | 51 producerEpoch i16 | 53 baseSequence i32 | 57 recordCount i32 | 61 records...
//! ```
//! The CRC-32C covers everything from `attributes` to the end of the batch.

use crate::compression::Compression;

/// Size of the v2 batch header, up to the first record.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength` counts: baseOffset and batchLength itself.
pub const LOG_OVERHEAD: usize = 12;
/// The only record-batch format Spool stores (Kafka 4 dropped v0/v1 message sets).
pub const MAGIC_V2: i8 = 2;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORD_COUNT: usize = 57;

const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Why bytes are not a usable record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than the header or the declared length needs. At the tail of a log this is a
    /// torn write; in a request it is a malformed batch.
    #[error("record batch truncated: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the batch declares (or the header needs).
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// `batchLength` is smaller than a header can be.
    #[error("record batch length {0} is invalid")]
    InvalidLength(i32),
    /// Magic byte other than 2.
    #[error("record batch magic {0} is not supported (only v2)")]
    UnsupportedMagic(i8),
    /// Stored and computed CRC-32C differ.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC carried by the batch.
        stored: u32,
        /// CRC of the bytes present.
        computed: u32,
    },
    /// Header fields contradict each other (e.g. a negative record count).
    #[error("record batch header is inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// The decoded header of one v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Length of the batch after the `batchLength` field.
    pub batch_length: i32,
    /// Leader epoch stamped by the broker.
    pub partition_leader_epoch: i32,
    /// Format version; always 2 once parsed.
    pub magic: i8,
    /// CRC-32C of attributes..end.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control bits.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch (or the log-append time).
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, -1 when none.
    pub producer_id: i64,
    /// Producer epoch, -1 when none.
    pub producer_epoch: i16,
    /// Sequence of the first record, -1 when none.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(x)
}

impl BatchHeader {
    /// Parses the header at the start of `buf`. Checks lengths and magic, not the CRC.
    ///
    /// `buf` may hold more than one batch; only the first is looked at. The whole batch
    /// (`total_len()` bytes) must be present.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_LEN {
            // Report the declared length when we can read it, so a torn tail says how much is missing.
            let needed = if buf.len() >= LOG_OVERHEAD {
                (i32_at(buf, BATCH_LENGTH).max(0) as usize + LOG_OVERHEAD).max(HEADER_LEN)
            } else {
                HEADER_LEN
            };
            return Err(BatchError::Truncated {
                needed,
                available: buf.len(),
            });
        }
        let batch_length = i32_at(buf, BATCH_LENGTH);
        if batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::InvalidLength(batch_length));
        }
        let magic = buf[MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        let total = batch_length as usize + LOG_OVERHEAD;
        if buf.len() < total {
            return Err(BatchError::Truncated {
                needed: total,
                available: buf.len(),
            });
        }
        let header = BatchHeader {
            base_offset: i64_at(buf, BASE_OFFSET),
            batch_length,
            partition_leader_epoch: i32_at(buf, LEADER_EPOCH),
            magic,
            crc: i32_at(buf, CRC) as u32,
            attributes: i16_at(buf, ATTRIBUTES),
            last_offset_delta: i32_at(buf, LAST_OFFSET_DELTA),
            base_timestamp: i64_at(buf, BASE_TIMESTAMP),
            max_timestamp: i64_at(buf, MAX_TIMESTAMP),
            producer_id: i64_at(buf, PRODUCER_ID),
            producer_epoch: i16_at(buf, PRODUCER_EPOCH),
            base_sequence: i32_at(buf, BASE_SEQUENCE),
            record_count: i32_at(buf, RECORD_COUNT),
        };
        if header.record_count < 0 {
            return Err(BatchError::Inconsistent("negative record count"));
        }
        if header.last_offset_delta < 0 {
            return Err(BatchError::Inconsistent("negative last offset delta"));
        }
        // Each record takes at least 7 bytes (length, attributes, timestamp delta, offset delta,
        // key length, value length, header count), so a count larger than that allows is a lie.
        // Compressed batches are checked when (and if) someone decompresses them.
        if header.compression() == Compression::None
            && (header.record_count as usize).saturating_mul(7) > total - HEADER_LEN
        {
            return Err(BatchError::Inconsistent("record count exceeds batch size"));
        }
        Ok(header)
    }

    /// Parses the header and verifies the CRC of the whole batch at the start of `buf`.
    pub fn parse_checked(buf: &[u8]) -> Result<Self, BatchError> {
        let header = Self::parse(buf)?;
        let computed = crc32c::crc32c(&buf[ATTRIBUTES..header.total_len()]);
        if computed != header.crc {
            return Err(BatchError::CrcMismatch {
                stored: header.crc,
                computed,
            });
        }
        Ok(header)
    }

    /// Bytes the whole batch occupies, including baseOffset and batchLength.
    pub fn total_len(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        // Wrapping, so a hostile base offset cannot panic a debug build.
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// Codec of the records section.
    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes)
    }

    /// True when timestamps are the broker's append time rather than the producer's create time.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// True for batches written inside a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// True for control batches (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// True when the producer set a producer id (idempotent or transactional).
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence of the last record, wrapping like Kafka's.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        (last % (i32::MAX as i64 + 1)) as i32
    }
}

/// Rewrites `baseOffset` of the batch at the start of `batch`. The CRC does not cover it.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrites `partitionLeaderEpoch`. The CRC does not cover it.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks the batch as log-append-time with `now_ms` as its max timestamp and recomputes the CRC,
/// as Kafka does for topics with `message.timestamp.type=LogAppendTime`.
pub fn set_log_append_time(batch: &mut [u8], total_len: usize, now_ms: i64) {
    let attributes = i16_at(batch, ATTRIBUTES) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES..total_len]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Recomputes and stores the CRC of a batch built in place (used by encoders).
pub fn seal_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[ATTRIBUTES..]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Iterates over the whole batches in a byte slice, yielding each header and its byte range.
///
/// Stops with an error at the first batch that does not parse; a trailing partial batch is
/// reported as [`BatchError::Truncated`], which a fetch response may legitimately end with.
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
    check_crc: bool,
}

impl<'a> Batches<'a> {
    /// Iterates without checking CRCs (headers only).
    pub fn new(buf: &'a [u8]) -> Self {
        Batches {
            buf,
            pos: 0,
            check_crc: false,
        }
    }

    /// Iterates and checks each batch's CRC.
    pub fn checked(buf: &'a [u8]) -> Self {
        Batches {
            buf,
            pos: 0,
            check_crc: true,
        }
    }

    /// Byte position of the next batch.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<(BatchHeader, std::ops::Range<usize>), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let parsed = if self.check_crc {
            BatchHeader::parse_checked(rest)
        } else {
            BatchHeader::parse(rest)
        };
        match parsed {
            Ok(h) => {
                let range = self.pos..self.pos + h.total_len();
                self.pos = range.end;
                Some(Ok((h, range)))
            }
            Err(e) => {
                // Fuse: one error ends the iteration.
                self.pos = self.buf.len();
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid batch with `n` empty records (no key, no value), uncompressed.
    pub(crate) fn sample_batch(n: i32) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        for i in 0..n {
            // length=6: attributes(1) ts(1) offsetDelta(1) keyLen(1, -1) valueLen(1, -1) headers(1)
            b.extend_from_slice(&[12, 0, 0, (i as u8) << 1, 1, 1, 0]);
        }
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
        b[MAGIC] = 2;
        b[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4].copy_from_slice(&(n - 1).to_be_bytes());
        b[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&(-1i64).to_be_bytes());
        b[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&n.to_be_bytes());
        seal_crc(&mut b);
        b
    }

    #[test]
    fn parses_and_checks_crc() {
        let b = sample_batch(3);
        let h = BatchHeader::parse_checked(&b).unwrap();
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.total_len(), b.len());
        assert_eq!(h.compression(), Compression::None);
    }

    #[test]
    fn base_offset_rewrite_keeps_crc_valid() {
        let mut b = sample_batch(2);
        set_base_offset(&mut b, 1234);
        set_partition_leader_epoch(&mut b, 7);
        let h = BatchHeader::parse_checked(&b).unwrap();
        assert_eq!(h.base_offset, 1234);
        assert_eq!(h.last_offset(), 1235);
        assert_eq!(h.partition_leader_epoch, 7);
    }

    #[test]
    fn log_append_time_rewrites_crc() {
        let mut b = sample_batch(1);
        let len = b.len();
        set_log_append_time(&mut b, len, 99);
        let h = BatchHeader::parse_checked(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99);
    }

    #[test]
    fn corrupt_byte_is_detected() {
        let mut b = sample_batch(2);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(matches!(
            BatchHeader::parse_checked(&b),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn truncation_at_every_length_is_an_error_not_a_panic() {
        let b = sample_batch(2);
        for cut in 0..b.len() {
            assert!(BatchHeader::parse_checked(&b[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn lying_record_count_is_rejected() {
        let mut b = sample_batch(1);
        b[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&1_000_000i32.to_be_bytes());
        assert!(matches!(
            BatchHeader::parse(&b),
            Err(BatchError::Inconsistent(_))
        ));
    }

    #[test]
    fn iterates_batches_and_reports_torn_tail() {
        let mut buf = sample_batch(1);
        buf.extend(sample_batch(2));
        let whole = buf.len();
        buf.extend(&sample_batch(3)[..20]);
        let items: Vec<_> = Batches::checked(&buf).collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[1].as_ref().unwrap().1.end, whole);
        assert!(matches!(items[2], Err(BatchError::Truncated { .. })));
    }
}
