//! Records inside v2 record batches: encoding for producers, decoding for consumers. No I/O.
//!
//! ```text
//! BatchBuilder::try_append (records written straight into one buffer, after 61 reserved header bytes)
//!   -> BatchBuilder::build (compress the records section if asked, fill the header, seal the CRC) -> Bytes
//! fetched bytes -> DecodedBatches (header + CRC check, skip control batches, decompress with a cap)
//!   -> RecordIter (every length checked against the bytes present) -> Record, or RecordSpan
//!      (the same checks; positions in the batch's bytes, for reading records in place)
//! ```
//!
//! Record layout (v2), after the batch header:
//! ```text
//! length varint | attributes i8 | timestampDelta varlong | offsetDelta varint
//! keyLength varint | key | valueLength varint | value
//! headerCount varint | (headerKeyLength varint | headerKey | headerValueLength varint | value)*
//! ```
//! Lengths of -1 mean null. Varints are zigzag-encoded (protobuf style).
//!
//! Why a hand-written writer instead of `kafka_protocol::records`: its encoder takes records as
//! owned structs whose headers are an `IndexMap` per record, so producing a batch costs several
//! allocations per record plus a copy of every key and value. Here a record is encoded directly
//! from borrowed slices into the batch's single buffer, and its length prefix is computed up front
//! (every field's size is known), so no per-record scratch buffer is needed either.

use bytes::{BufMut, Bytes};

use crate::batch::{self, BatchError, BatchHeader, Batches, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};
use crate::compression::{self, Compression, CompressionError};

/// Attribute bit marking a transactional batch.
const TRANSACTIONAL_BIT: i16 = 0x10;

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Absolute offset in the partition.
    pub offset: i64,
    /// Create time (or the log-append time when the batch says so), in ms since the epoch.
    pub timestamp: i64,
    /// Key, `None` when null.
    pub key: Option<Bytes>,
    /// Value, `None` when null (a tombstone on compacted topics).
    pub value: Option<Bytes>,
    /// Headers in order; keys are UTF-8 strings in Kafka (invalid bytes are replaced).
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Why record bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The batch header or CRC is bad.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The records section could not be decompressed (or compressed).
    #[error(transparent)]
    Compression(#[from] CompressionError),
    /// A record inside the batch is malformed.
    #[error("malformed record {index} in batch at offset {base_offset}: {reason}")]
    Malformed {
        /// Base offset of the batch.
        base_offset: i64,
        /// Position of the record in the batch.
        index: i32,
        /// What was wrong.
        reason: &'static str,
    },
}

// ---------------------------------------------------------------------------------------------
// varints

/// Bytes an unsigned varint takes.
fn uvarint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag64(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Bytes a zigzag varint/varlong takes.
fn varint_len(v: i64) -> usize {
    uvarint_len(zigzag64(v))
}

/// An unsigned varint (protobuf style), as Kafka writes lengths.
pub(crate) fn put_uvarint(out: &mut impl BufMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag64(v));
}

/// Length (or -1 for null) of an optional byte field plus its varint prefix.
fn nullable_len(b: Option<&[u8]>) -> usize {
    match b {
        None => 1,
        Some(b) => varint_len(b.len() as i64) + b.len(),
    }
}

fn put_nullable(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// A cursor over untrusted bytes: every read checks what is present.
#[derive(Debug, Clone)]
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// Zigzag varlong of at most 10 bytes.
    #[inline]
    fn varlong(&mut self) -> Option<i64> {
        // Most varints in a record (its lengths and deltas) take one or two bytes.
        let b0 = *self.buf.get(self.pos)?;
        if b0 & 0x80 == 0 {
            self.pos += 1;
            return Some(unzigzag64(u64::from(b0)));
        }
        let b1 = *self.buf.get(self.pos + 1)?;
        if b1 & 0x80 == 0 {
            self.pos += 2;
            return Some(unzigzag64(u64::from(b0 & 0x7f) | u64::from(b1) << 7));
        }
        self.long_varlong()
    }

    #[inline(never)]
    fn long_varlong(&mut self) -> Option<i64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(unzigzag64(v));
            }
        }
        None
    }

    /// Zigzag varint of at most 5 bytes that fits an i32.
    #[inline]
    fn varint(&mut self) -> Option<i32> {
        let start = self.pos;
        let v = self.varlong()?;
        if self.pos - start > 5 {
            return None;
        }
        i32::try_from(v).ok()
    }

    /// A length-prefixed field: `Ok(None)` for -1, the byte range otherwise.
    #[inline]
    fn nullable(&mut self) -> Result<Option<std::ops::Range<usize>>, &'static str> {
        let len = self.varint().ok_or("bad length varint")?;
        if len == -1 {
            return Ok(None);
        }
        if len < 0 {
            return Err("negative length");
        }
        let len = len as usize;
        if len > self.remaining() {
            return Err("length exceeds record");
        }
        let range = self.pos..self.pos + len;
        self.pos += len;
        Ok(Some(range))
    }
}

// ---------------------------------------------------------------------------------------------
// encoding

/// Accumulates records into one v2 batch, encoding each straight into a single buffer.
///
/// The first record is always accepted, even when it alone exceeds the size limit (like Kafka's
/// producer, which then sends an oversized batch that the size checks elsewhere may reject).
#[derive(Debug)]
pub struct BatchBuilder {
    /// `HEADER_LEN` reserved bytes, then the encoded records.
    buf: Vec<u8>,
    max_size: usize,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    transactional: bool,
}

impl BatchBuilder {
    /// A builder for a batch of at most `max_size` bytes (uncompressed, header included).
    ///
    /// Allocates once: `max_size` bytes of capacity, or less for very large limits (the buffer
    /// then grows as records arrive).
    pub fn new(max_size: usize) -> Self {
        // Cap the up-front reservation so a huge batch.size does not reserve memory before
        // records exist; batches that really get that large grow by doubling.
        let capacity = max_size.clamp(HEADER_LEN, 1 << 20);
        let mut buf = Vec::with_capacity(capacity);
        buf.resize(HEADER_LEN, 0);
        BatchBuilder {
            buf,
            max_size,
            count: 0,
            base_timestamp: 0,
            max_timestamp: i64::MIN,
            transactional: false,
        }
    }

    /// Marks the batch transactional (attribute bit 4).
    pub fn set_transactional(&mut self, transactional: bool) {
        self.transactional = transactional;
    }

    /// Encoded size of one record, length prefix included; `timestamp_delta` and `offset_delta`
    /// are relative to the batch.
    pub fn record_size(
        timestamp_delta: i64,
        offset_delta: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> usize {
        let body = Self::body_size(timestamp_delta, offset_delta, key, value, headers);
        varint_len(body as i64) + body
    }

    fn body_size(
        timestamp_delta: i64,
        offset_delta: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> usize {
        let mut n = 1 // attributes
            + varint_len(timestamp_delta)
            + varint_len(offset_delta as i64)
            + nullable_len(key)
            + nullable_len(value)
            + varint_len(headers.len() as i64);
        for (k, v) in headers {
            n += nullable_len(Some(k.as_bytes())) + nullable_len(*v);
        }
        n
    }

    /// Upper bound of the size of one record in a fresh batch, header of the batch included;
    /// useful to reject records larger than any batch may be before appending them.
    pub fn estimate_single(
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> usize {
        HEADER_LEN + Self::record_size(0, 0, key, value, headers)
    }

    /// Appends a record; returns false (and appends nothing) when the batch is not empty and the
    /// record would take it over its size limit.
    pub fn try_append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> bool {
        if self.count == i32::MAX {
            return false;
        }
        if self.count == 0 {
            self.base_timestamp = timestamp;
        }
        let ts_delta = timestamp.wrapping_sub(self.base_timestamp);
        let body = Self::body_size(ts_delta, self.count, key, value, headers);
        let size = varint_len(body as i64) + body;
        if self.count > 0 && self.buf.len() + size > self.max_size {
            return false;
        }
        let out = &mut self.buf;
        put_varint(out, body as i64);
        out.push(0); // attributes: unused in v2 records
        put_varint(out, ts_delta);
        put_varint(out, self.count as i64);
        put_nullable(out, key);
        put_nullable(out, value);
        put_varint(out, headers.len() as i64);
        for (k, v) in headers {
            put_nullable(out, Some(k.as_bytes()));
            put_nullable(out, *v);
        }
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
        true
    }

    /// The size limit records are appended up to.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Raises the size limit to `max_size` (never lowers it); the buffer grows as records
    /// arrive.
    pub fn raise_limit(&mut self, max_size: usize) {
        self.max_size = self.max_size.max(max_size);
    }

    /// Bytes the batch takes uncompressed, header included.
    pub fn estimated_size(&self) -> usize {
        self.buf.len()
    }

    /// Records appended so far.
    pub fn record_count(&self) -> i32 {
        self.count
    }

    /// True when no record was appended.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Timestamp of the first record (0 while empty).
    pub fn base_timestamp(&self) -> i64 {
        self.base_timestamp
    }

    /// Finishes the batch: compresses the records section with `compression`, fills the header
    /// (base offset 0, leader epoch -1) and seals the CRC.
    ///
    /// Pass `producer_id` -1, `epoch` -1, `base_sequence` -1 for a non-idempotent producer.
    pub fn build(
        self,
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
        compression: Compression,
    ) -> Result<Bytes, CompressionError> {
        let mut buf = match compression {
            Compression::None => self.buf,
            codec => {
                let records = &self.buf[HEADER_LEN..];
                let mut out = Vec::with_capacity(HEADER_LEN + records.len() / 2 + 64);
                out.resize(HEADER_LEN, 0);
                compression::compress(codec, records, &mut out)?;
                out
            }
        };
        let mut attributes = compression.attribute_bits();
        if self.transactional {
            attributes |= TRANSACTIONAL_BIT;
        }
        let max_timestamp = if self.count == 0 {
            self.base_timestamp
        } else {
            self.max_timestamp
        };
        let batch_length = (buf.len() - LOG_OVERHEAD) as i32;
        let h = &mut buf[..HEADER_LEN];
        h[0..8].copy_from_slice(&0i64.to_be_bytes());
        h[8..12].copy_from_slice(&batch_length.to_be_bytes());
        h[12..16].copy_from_slice(&(-1i32).to_be_bytes());
        h[16] = MAGIC_V2 as u8;
        // 17..21: CRC, filled by seal_crc below.
        h[21..23].copy_from_slice(&attributes.to_be_bytes());
        h[23..27].copy_from_slice(&(self.count - 1).max(0).to_be_bytes());
        h[27..35].copy_from_slice(&self.base_timestamp.to_be_bytes());
        h[35..43].copy_from_slice(&max_timestamp.to_be_bytes());
        h[43..51].copy_from_slice(&producer_id.to_be_bytes());
        h[51..53].copy_from_slice(&epoch.to_be_bytes());
        h[53..57].copy_from_slice(&base_sequence.to_be_bytes());
        h[57..61].copy_from_slice(&self.count.to_be_bytes());
        batch::seal_crc(&mut buf);
        Ok(Bytes::from(buf))
    }
}

/// Rewrites the producer id, epoch and base sequence of a built batch and reseals its CRC.
///
/// Producers use it when an idempotent batch must be retried under a bumped epoch.
pub fn set_producer_state(batch: &mut [u8], producer_id: i64, epoch: i16, base_sequence: i32) {
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    batch::seal_crc(batch);
}

// ---------------------------------------------------------------------------------------------
// decoding

/// Iterates over the records of one batch.
///
/// Built by [`decode_batch`] or [`DecodedBatches`]; yields an error (and then stops) at the first
/// malformed record.
#[derive(Debug, Clone)]
pub struct RecordIter {
    /// The (decompressed) records section.
    data: Bytes,
    pos: usize,
    index: i32,
    count: i32,
    base_offset: i64,
    base_timestamp: i64,
    log_append_time: Option<i64>,
}

impl RecordIter {
    fn empty(header: &BatchHeader) -> Self {
        RecordIter {
            data: Bytes::new(),
            pos: 0,
            index: 0,
            count: 0,
            base_offset: header.base_offset,
            base_timestamp: header.base_timestamp,
            log_append_time: None,
        }
    }

    fn malformed(&mut self, reason: &'static str) -> RecordError {
        let index = self.index;
        // Fuse: one error ends the iteration.
        self.index = self.count;
        RecordError::Malformed {
            base_offset: self.base_offset,
            index,
            reason,
        }
    }

    /// The records section that the spans of [`RecordIter::next_span`] point into.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The next record as positions in [`RecordIter::data`], every field checked as
    /// [`Iterator::next`] checks it, but nothing copied, allocated or reference-counted: for
    /// consumers that keep a batch's bytes and read its records in place.
    pub fn next_span(&mut self) -> Option<Result<RecordSpan, RecordError>> {
        if self.index >= self.count {
            return None;
        }
        match self.parse_one() {
            // A count lower than the records present is a lie too: Kafka refuses such a batch
            // ("records still remaining"), and a broker that stored it would hand consumers
            // records the header does not account for.
            Ok(_) if self.index + 1 == self.count && self.pos != self.data.len() => Some(Err(
                self.malformed("bytes remain after the declared record count")
            )),
            Ok(span) => {
                self.index += 1;
                Some(Ok(span))
            }
            Err(reason) => Some(Err(self.malformed(reason))),
        }
    }

    /// How many records are left to read.
    pub fn remaining(&self) -> usize {
        usize::try_from(self.count - self.index).unwrap_or(0)
    }

    /// The record `span` (from [`RecordIter::next_span`] of this iterator) describes: see
    /// [`RecordSpan::record`].
    pub fn record(&self, span: &RecordSpan) -> Record {
        span.record(&self.data)
    }

    fn parse_one(&mut self) -> Result<RecordSpan, &'static str> {
        let data = &self.data[..];
        let mut r = Reader {
            buf: data,
            pos: self.pos,
        };
        let len = r.varint().ok_or("bad record length varint")?;
        if len < 0 {
            return Err("negative record length");
        }
        let len = len as usize;
        if len > r.remaining() {
            return Err("record length exceeds batch");
        }
        let end = r.pos + len;
        // Parse inside the record's own bytes so no field can reach into the next record.
        let mut r = Reader {
            buf: &data[..end],
            pos: r.pos,
        };
        r.u8().ok_or("truncated attributes")?;
        let ts_delta = r.varlong().ok_or("bad timestamp delta")?;
        let offset_delta = r.varint().ok_or("bad offset delta")?;
        let key = r.nullable()?;
        let value = r.nullable()?;
        let header_count = r.varint().ok_or("bad header count")?;
        if header_count < 0 {
            return Err("negative header count");
        }
        // Each header takes at least two bytes: a count the bytes cannot hold is a lie.
        if header_count as usize > r.remaining() / 2 {
            return Err("header count exceeds record");
        }
        let headers_start = r.pos;
        for _ in 0..header_count {
            r.nullable()?.ok_or("null header key")?;
            r.nullable()?;
        }
        if r.pos != end {
            return Err("record length does not match its fields");
        }
        self.pos = end;
        Ok(RecordSpan {
            // Wrapping: a hostile base offset must not panic a debug build; the broker
            // assigns its own offsets anyway.
            offset: self.base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp: match self.log_append_time {
                Some(t) => t,
                None => self.base_timestamp.wrapping_add(ts_delta),
            },
            // `decode_batch` refuses sections of 4 GiB or more, so every position fits a u32.
            key: key.map(Span::within_u32),
            value: value.map(Span::within_u32),
            headers: Span::within_u32(headers_start..end),
            header_count: header_count as u32,
        })
    }
}

/// A byte range inside a batch's records section ([`RecordIter::data`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// As a range for indexing.
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }

    /// For positions already known to fit a u32.
    fn within_u32(r: std::ops::Range<usize>) -> Span {
        Span {
            start: r.start as u32,
            end: r.end as u32,
        }
    }
}

/// Where one checked record's fields lie in its batch's records section: what
/// [`RecordIter::next_span`] yields. Small and `Copy`, so a consumer can keep one per record in
/// a single vector beside the batch's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpan {
    /// Absolute offset in the partition.
    pub offset: i64,
    /// Create time (or the log-append time when the batch says so), in ms since the epoch.
    pub timestamp: i64,
    /// The key's bytes; `None` when null.
    pub key: Option<Span>,
    /// The value's bytes; `None` when null.
    pub value: Option<Span>,
    /// The encoded headers (after their count), already checked.
    pub headers: Span,
    /// How many headers there are.
    pub header_count: u32,
}

impl RecordSpan {
    /// The record as owned fields sharing `data`, the records section this span came from
    /// ([`RecordIter::data`]).
    ///
    /// # Panics
    /// If `data` is not that section: the span's positions may then lie outside it.
    pub fn record(&self, data: &Bytes) -> Record {
        let headers = self
            .headers(data)
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    v.map(|v| data.slice_ref(v)),
                )
            })
            .collect();
        Record {
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.map(|k| data.slice(k.range())),
            value: self.value.map(|v| data.slice(v.range())),
            headers,
        }
    }

    /// The headers in order, as (key, value) bytes of `data`, the records section this span
    /// came from. Kafka's header keys are UTF-8 strings; the bytes are given as sent.
    pub fn headers<'a>(&self, data: &'a [u8]) -> HeaderIter<'a> {
        HeaderIter {
            reader: Reader {
                buf: data.get(self.headers.range()).unwrap_or_default(),
                pos: 0,
            },
            left: self.header_count,
        }
    }
}

/// The headers of one record: see [`RecordSpan::headers`].
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    reader: Reader<'a>,
    left: u32,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let buf = self.reader.buf;
        // Checked when the span was made; on bytes that are not those, stop rather than panic.
        let key = self.reader.nullable().ok().flatten()?;
        let value = self.reader.nullable().ok()?;
        Some((&buf[key], value.map(|v| &buf[v])))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

impl Iterator for RecordIter {
    type Item = Result<Record, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_span()?.map(|span| self.record(&span)))
    }
}

/// Decodes the records of the single batch `batch` starts with (its header already parsed into
/// `header`), decompressing into at most `max_uncompressed` bytes.
///
/// Control batches (transaction markers) yield no records.
pub fn decode_batch(
    header: &BatchHeader,
    batch: &Bytes,
    max_uncompressed: usize,
) -> Result<RecordIter, RecordError> {
    if header.is_control() {
        return Ok(RecordIter::empty(header));
    }
    let total = header.total_len();
    if batch.len() < total {
        return Err(BatchError::Truncated {
            needed: total,
            available: batch.len(),
        }
        .into());
    }
    let data = match header.compression() {
        Compression::None => batch.slice(HEADER_LEN..total),
        codec => {
            let mut out = Vec::new();
            compression::decompress(codec, &batch[HEADER_LEN..total], max_uncompressed, &mut out)?;
            Bytes::from(out)
        }
    };
    // Records are located by 32-bit positions ([`Span`]); Kafka's batches are far smaller.
    if u32::try_from(data.len()).is_err() {
        return Err(RecordError::Malformed {
            base_offset: header.base_offset,
            index: 0,
            reason: "records section of 4 GiB or more",
        });
    }
    // A record takes at least 7 bytes; a count the bytes cannot hold is a lie.
    if (header.record_count as usize).saturating_mul(7) > data.len() {
        return Err(RecordError::Malformed {
            base_offset: header.base_offset,
            index: 0,
            reason: "record count exceeds batch size",
        });
    }
    Ok(RecordIter {
        data,
        pos: 0,
        index: 0,
        count: header.record_count,
        base_offset: header.base_offset,
        base_timestamp: header.base_timestamp,
        log_append_time: header.is_log_append_time().then_some(header.max_timestamp),
    })
}

/// One batch from [`DecodedBatches`]: its header and its records (none for control batches).
#[derive(Debug)]
pub struct DecodedBatch {
    /// The batch header (offsets, timestamps, producer state).
    pub header: BatchHeader,
    /// The records; empty for control batches.
    pub records: RecordIter,
}

/// Iterates over the batches in fetched bytes (a partition's `records` field), checking each
/// batch's CRC and decompressing lazily.
///
/// A partial batch at the end is normal in fetch responses (the broker cuts at a byte limit) and
/// ends the iteration quietly; [`DecodedBatches::truncated_tail`] tells whether that happened.
#[derive(Debug)]
pub struct DecodedBatches {
    buf: Bytes,
    pos: usize,
    max_uncompressed: usize,
    check_crc: bool,
    truncated: bool,
    failed: bool,
}

impl DecodedBatches {
    /// Iterates over `buf`; decompressed sections are capped at `max_uncompressed` bytes each.
    pub fn new(buf: Bytes, max_uncompressed: usize) -> Self {
        DecodedBatches {
            buf,
            pos: 0,
            max_uncompressed,
            check_crc: true,
            truncated: false,
            failed: false,
        }
    }

    /// Like [`DecodedBatches::new`], for bytes whose batch CRCs were already checked (with
    /// [`Batches::checked`]), so that a consumer can check them on one thread and decode the
    /// records on another without checking twice. Everything else is still checked.
    pub fn prechecked(buf: Bytes, max_uncompressed: usize) -> Self {
        DecodedBatches {
            check_crc: false,
            ..DecodedBatches::new(buf, max_uncompressed)
        }
    }

    /// True when the bytes ended with a partial batch.
    pub fn truncated_tail(&self) -> bool {
        self.truncated
    }
}

impl Iterator for DecodedBatches {
    type Item = Result<DecodedBatch, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = self.buf.slice(self.pos..);
        let mut batches = if self.check_crc {
            Batches::checked(&rest)
        } else {
            Batches::new(&rest)
        };
        let (header, range) = match batches.next()? {
            Ok(x) => x,
            Err(BatchError::Truncated { .. }) => {
                self.truncated = true;
                self.pos = self.buf.len();
                return None;
            }
            Err(e) => {
                self.failed = true;
                return Some(Err(e.into()));
            }
        };
        self.pos += range.end;
        let batch = rest.slice(range);
        match decode_batch(&header, &batch, self.max_uncompressed) {
            Ok(records) => Some(Ok(DecodedBatch { header, records })),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn sample(codec: Compression) -> Bytes {
        let mut b = BatchBuilder::new(1 << 20);
        assert!(b.try_append(1_000, Some(b"k0"), Some(b"v0"), &[]));
        assert!(b.try_append(
            1_005,
            None,
            Some(b"hello world hello world"),
            &[("h1", Some(b"x")), ("h2", None)]
        ));
        assert!(b.try_append(990, Some(b""), None, &[]));
        b.build(42, 3, 7, codec).unwrap()
    }

    fn decode_all(buf: Bytes) -> Vec<Record> {
        DecodedBatches::new(buf, 1 << 20)
            .flat_map(|b| b.unwrap().records)
            .map(|r| r.unwrap())
            .collect()
    }

    #[test]
    fn round_trips_with_every_codec() {
        for codec in CODECS {
            let buf = sample(codec);
            let h = BatchHeader::parse_checked(&buf).unwrap();
            assert_eq!(h.compression(), codec);
            let recs = decode_all(buf);
            assert_eq!(recs.len(), 3, "{codec:?}");
            assert_eq!(recs[0].offset, 0);
            assert_eq!(recs[0].timestamp, 1_000);
            assert_eq!(recs[0].key.as_deref(), Some(&b"k0"[..]));
            assert_eq!(recs[0].value.as_deref(), Some(&b"v0"[..]));
            assert_eq!(recs[1].key, None);
            assert_eq!(recs[1].timestamp, 1_005);
            assert_eq!(
                recs[1].headers,
                vec![
                    ("h1".to_string(), Some(Bytes::from_static(b"x"))),
                    ("h2".to_string(), None)
                ]
            );
            assert_eq!(recs[2].offset, 2);
            assert_eq!(recs[2].timestamp, 990);
            assert_eq!(recs[2].key.as_deref(), Some(&b""[..]));
            assert_eq!(recs[2].value, None);
        }
    }

    /// What `next_span` locates is what `next` returns: fields, headers, errors, in order.
    fn assert_spans_agree(mut records: RecordIter) {
        let mut spans = records.clone();
        loop {
            match (spans.next_span(), records.next()) {
                (None, None) => return,
                (Some(Ok(span)), Some(Ok(r))) => {
                    let data = spans.data();
                    assert_eq!(span.offset, r.offset);
                    assert_eq!(span.timestamp, r.timestamp);
                    assert_eq!(span.key.map(|k| &data[k.range()]), r.key.as_deref());
                    assert_eq!(span.value.map(|v| &data[v.range()]), r.value.as_deref());
                    let headers: Vec<_> = span
                        .headers(data)
                        .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v))
                        .collect();
                    let expected: Vec<_> = r
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_deref()))
                        .collect();
                    assert_eq!(headers, expected);
                    assert_eq!(spans.record(&span), r);
                }
                (Some(Err(a)), Some(Err(b))) => assert_eq!(a.to_string(), b.to_string()),
                (a, b) => panic!("span {a:?} but record {b:?}"),
            }
        }
    }

    #[test]
    fn spans_locate_the_fields_records_hold() {
        for codec in CODECS {
            let mut batches = DecodedBatches::new(sample(codec), 1 << 20);
            let records = batches.next().unwrap().unwrap().records;
            let mut spans = records.clone();
            let first = spans.next_span().unwrap().unwrap();
            assert_eq!(&spans.data()[first.key.unwrap().range()], b"k0");
            let second = spans.next_span().unwrap().unwrap();
            assert_eq!(second.key, None);
            let headers: Vec<_> = second.headers(spans.data()).collect();
            assert_eq!(
                headers,
                vec![(&b"h1"[..], Some(&b"x"[..])), (&b"h2"[..], None)]
            );
            assert_spans_agree(records);
        }
    }

    #[test]
    fn spans_and_records_agree_on_damaged_batches() {
        for codec in [Compression::None, Compression::Lz4] {
            let good = sample(codec);
            for i in HEADER_LEN..good.len() {
                for x in [0x01u8, 0x80, 0xff] {
                    let mut b = good.to_vec();
                    b[i] ^= x;
                    batch::seal_crc(&mut b);
                    for batch in DecodedBatches::new(Bytes::from(b), 1 << 16).flatten() {
                        assert_spans_agree(batch.records);
                    }
                }
            }
        }
    }

    #[test]
    fn golden_header_fields() {
        let buf = sample(Compression::None);
        let h = BatchHeader::parse_checked(&buf).unwrap();
        assert_eq!(h.base_offset, 0);
        assert_eq!(h.total_len(), buf.len());
        assert_eq!(h.partition_leader_epoch, -1);
        assert_eq!(h.magic, 2);
        assert_eq!(h.attributes, 0);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.base_timestamp, 1_000);
        assert_eq!(h.max_timestamp, 1_005);
        assert_eq!(h.producer_id, 42);
        assert_eq!(h.producer_epoch, 3);
        assert_eq!(h.base_sequence, 7);
        assert_eq!(h.record_count, 3);
        let z = BatchHeader::parse_checked(&sample(Compression::Zstd)).unwrap();
        assert_eq!(z.attributes, 4);
    }

    #[test]
    fn golden_record_bytes() {
        // key "k", value "v", no headers: body = attr 0, tsDelta 0, offsetDelta 0,
        // keyLen 1 (zigzag 2), 'k', valueLen 1 (zigzag 2), 'v', headers 0 => 8 bytes (zigzag 16).
        let mut b = BatchBuilder::new(1024);
        assert!(b.try_append(5, Some(b"k"), Some(b"v"), &[]));
        let buf = b.build(-1, -1, -1, Compression::None).unwrap();
        assert_eq!(&buf[HEADER_LEN..], &[0x10, 0, 0, 0, 2, b'k', 2, b'v', 0]);
        assert_eq!(&buf[8..12], &((HEADER_LEN + 9 - 12) as i32).to_be_bytes());
    }

    /// Cross-check against kafka-protocol's independent codec, both directions (uncompressed:
    /// its codecs are not compiled in).
    #[test]
    fn agrees_with_kafka_protocol_codec() {
        use kafka_protocol::protocol::StrBytes;
        use kafka_protocol::records as kp;
        let mut buf = sample(Compression::None);
        let sets = kp::RecordBatchDecoder::decode_all(&mut buf).unwrap();
        let theirs = &sets[0].records;
        let ours = decode_all(sample(Compression::None));
        assert_eq!(theirs.len(), ours.len());
        for (t, o) in theirs.iter().zip(&ours) {
            assert_eq!((t.offset, t.timestamp), (o.offset, o.timestamp));
            assert_eq!((&t.key, &t.value), (&o.key, &o.value));
            assert_eq!((t.producer_id, t.producer_epoch), (42, 3));
            let th: Vec<_> = t
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            assert_eq!(th, o.headers);
        }
        assert_eq!(theirs[0].sequence, 7);

        let mut headers = kafka_protocol::indexmap::IndexMap::new();
        headers.insert(
            StrBytes::from_static_str("h"),
            Some(Bytes::from_static(b"hv")),
        );
        let rec = kp::Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: 5,
            producer_epoch: 1,
            timestamp_type: kp::TimestampType::Creation,
            offset: 0,
            sequence: 0,
            timestamp: 123,
            key: Some(Bytes::from_static(b"key")),
            value: None,
            headers,
        };
        let mut out = bytes::BytesMut::new();
        let opts = kp::RecordEncodeOptions {
            version: 2,
            compression: kp::Compression::None,
        };
        kp::RecordBatchEncoder::encode(&mut out, [&rec], &opts).unwrap();
        let ours = decode_all(out.freeze());
        assert_eq!(ours.len(), 1);
        assert_eq!(ours[0].key.as_deref(), Some(&b"key"[..]));
        assert_eq!(ours[0].value, None);
        assert_eq!(ours[0].timestamp, 123);
        assert_eq!(
            ours[0].headers,
            vec![("h".into(), Some(Bytes::from_static(b"hv")))]
        );
    }

    #[test]
    fn varints_round_trip_at_the_edges() {
        for v in [
            0i64,
            1,
            -1,
            63,
            64,
            -64,
            -65,
            i32::MAX as i64,
            i32::MIN as i64,
            i64::MAX,
            i64::MIN,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            let mut r = Reader { buf: &out, pos: 0 };
            assert_eq!(r.varlong(), Some(v));
        }
        // Five continuation bytes then more: not a valid varint.
        let mut r = Reader {
            buf: &[0xff; 6],
            pos: 0,
        };
        assert_eq!(r.varint(), None);
    }

    #[test]
    fn respects_size_limit_but_accepts_a_first_large_record() {
        let mut b = BatchBuilder::new(100);
        assert!(b.try_append(0, None, Some(&[0u8; 200]), &[]));
        assert!(!b.try_append(0, None, Some(b"x"), &[]));
        let mut b = BatchBuilder::new(100);
        let mut n = 0;
        while b.try_append(0, None, Some(b"0123456789"), &[]) {
            n += 1;
        }
        assert!(n >= 2);
        assert!(b.estimated_size() <= 100);
        assert_eq!(b.record_count(), n);
    }

    #[test]
    fn skips_control_batches() {
        let mut buf = sample(Compression::None).to_vec();
        // Set the control bit (0x20) and reseal.
        buf[22] |= 0x20;
        batch::seal_crc(&mut buf);
        let batches: Vec<_> = DecodedBatches::new(Bytes::from(buf), 1 << 20)
            .map(|b| b.unwrap())
            .collect();
        assert_eq!(batches.len(), 1);
        assert!(batches[0].header.is_control());
        assert_eq!(batches[0].records.clone().count(), 0);
    }

    #[test]
    fn log_append_time_overrides_record_timestamps() {
        let mut buf = sample(Compression::None).to_vec();
        let len = buf.len();
        batch::set_log_append_time(&mut buf, len, 77);
        let recs = decode_all(Bytes::from(buf));
        assert!(recs.iter().all(|r| r.timestamp == 77));
    }

    #[test]
    fn producer_state_rewrite_keeps_batch_valid() {
        let mut buf = sample(Compression::Lz4).to_vec();
        set_producer_state(&mut buf, 9, 1, 100);
        let h = BatchHeader::parse_checked(&buf).unwrap();
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (9, 1, 100)
        );
        assert_eq!(decode_all(Bytes::from(buf)).len(), 3);
    }

    #[test]
    fn partial_tail_ends_iteration_quietly() {
        let mut buf = sample(Compression::None).to_vec();
        let first = buf.len();
        buf.extend_from_slice(&sample(Compression::Gzip)[..30]);
        let mut it = DecodedBatches::new(Bytes::from(buf), 1 << 20);
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().is_none());
        assert!(it.truncated_tail());
        assert!(first > 0);
    }

    /// Corrupts records while keeping the CRC valid, so the record parser itself is exercised.
    #[test]
    fn malformed_and_truncated_input_never_panics() {
        for codec in CODECS {
            let good = sample(codec);
            // Truncation at every length.
            for cut in 0..good.len() {
                let _ = DecodedBatches::new(good.slice(..cut), 1 << 20)
                    .flat_map(|b| b.into_iter().flat_map(|b| b.records))
                    .count();
            }
            // Every byte flipped, CRC resealed.
            for i in 0..good.len() {
                for x in [0x01u8, 0x80, 0xff] {
                    let mut b = good.to_vec();
                    b[i] ^= x;
                    if b.len() > 21 {
                        batch::seal_crc(&mut b);
                    }
                    let _: Vec<_> = DecodedBatches::new(Bytes::from(b), 1 << 16)
                        .flat_map(|b| b.into_iter().flat_map(|b| b.records))
                        .collect();
                }
            }
        }
    }

    #[test]
    fn lying_lengths_are_errors() {
        // A record claiming a 1 GiB value inside a tiny batch.
        let mut b = BatchBuilder::new(1024);
        assert!(b.try_append(0, None, Some(b"abc"), &[]));
        let mut buf = b.build(-1, -1, -1, Compression::None).unwrap().to_vec();
        // record: len, attr, ts, off, keyLen(-1 = 0x01), valueLen at HEADER_LEN + 5
        let at = HEADER_LEN + 5;
        assert_eq!(buf[at], 6);
        buf.splice(at..at + 1, [0x80, 0x80, 0x80, 0x80, 0x08]);
        let n = buf.len() - 12;
        buf[8..12].copy_from_slice(&(n as i32).to_be_bytes());
        batch::seal_crc(&mut buf);
        let results: Vec<_> = DecodedBatches::new(Bytes::from(buf), 1 << 20)
            .flat_map(|b| b.unwrap().records)
            .collect();
        assert!(matches!(results[..], [Err(RecordError::Malformed { .. })]));
    }

    #[test]
    fn prechecked_skips_only_the_crc_check() {
        let good = sample(Compression::None);
        let mut bad = good.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff; // in the records: the CRC no longer matches
        let checked: Vec<_> = DecodedBatches::new(Bytes::from(bad.clone()), 1 << 20).collect();
        assert!(matches!(
            checked[..],
            [Err(RecordError::Batch(BatchError::CrcMismatch { .. }))]
        ));
        let pre: Vec<_> = DecodedBatches::prechecked(Bytes::from(bad), 1 << 20).collect();
        assert!(matches!(pre[..], [Ok(_)]));
        // Malformed records are still found.
        let mut b = BatchBuilder::new(1024);
        assert!(b.try_append(0, None, Some(b"abc"), &[]));
        let mut lying = b.build(-1, -1, -1, Compression::None).unwrap().to_vec();
        lying[HEADER_LEN + 5] = 0x7e; // value length 63 in a 3-byte value
        let results: Vec<_> = DecodedBatches::prechecked(Bytes::from(lying), 1 << 20)
            .flat_map(|b| b.unwrap().records)
            .collect();
        assert!(matches!(results[..], [Err(RecordError::Malformed { .. })]));
    }

    #[test]
    fn decompression_is_capped() {
        let mut b = BatchBuilder::new(1 << 22);
        assert!(b.try_append(0, None, Some(&vec![0u8; 1 << 21]), &[]));
        let buf = b.build(-1, -1, -1, Compression::Zstd).unwrap();
        let err = DecodedBatches::new(buf, 1 << 16)
            .next()
            .unwrap()
            .unwrap_err();
        assert!(matches!(
            err,
            RecordError::Compression(CompressionError::TooLarge { .. })
        ));
    }

    /// Builds three records with `codec`, then rewrites the header's record count to `count`
    /// and reseals the CRC, as a hostile producer would.
    fn lying_count(codec: Compression, count: i32) -> Bytes {
        let mut b = BatchBuilder::new(1 << 20);
        for i in 0..3u8 {
            assert!(b.try_append(i as i64, Some(&[i]), Some(b"value-0123"), &[]));
        }
        let mut buf = b.build(-1, -1, -1, codec).unwrap().to_vec();
        buf[57..61].copy_from_slice(&count.to_be_bytes());
        batch::seal_crc(&mut buf);
        Bytes::from(buf)
    }

    /// Regression (hostile input): a batch declaring fewer records than it holds was decoded
    /// as if the extra bytes were not there, so a compacted topic accepted it.
    #[test]
    fn record_count_lower_than_the_records_present_is_malformed() {
        for codec in CODECS {
            let buf = lying_count(codec, 2);
            let header = BatchHeader::parse(&buf).unwrap();
            let results: Vec<_> = decode_batch(&header, &buf, 1 << 20).unwrap().collect();
            assert_eq!(results.len(), 2, "{codec:?}");
            assert!(results[0].is_ok(), "{codec:?}");
            assert!(
                matches!(
                    results[1],
                    Err(RecordError::Malformed {
                        index: 1,
                        reason: "bytes remain after the declared record count",
                        ..
                    })
                ),
                "{codec:?}: {:?}",
                results[1]
            );
            // The honest count decodes all three.
            let buf = lying_count(codec, 3);
            let header = BatchHeader::parse(&buf).unwrap();
            let n = decode_batch(&header, &buf, 1 << 20)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
                .len();
            assert_eq!(n, 3, "{codec:?}");
        }
    }

    /// A count higher than the records present ends in an error at the first missing record,
    /// never in a read past the section.
    #[test]
    fn record_count_higher_than_the_records_present_is_malformed() {
        for codec in CODECS {
            let buf = lying_count(codec, 4);
            let header = BatchHeader::parse(&buf).unwrap();
            let results: Vec<_> = decode_batch(&header, &buf, 1 << 20).unwrap().collect();
            assert_eq!(results.len(), 4, "{codec:?}");
            assert!(
                matches!(results[3], Err(RecordError::Malformed { index: 3, .. })),
                "{codec:?}"
            );
            // A count the bytes could not hold at all is refused before iterating.
            let buf = lying_count(codec, 1000);
            let refused = BatchHeader::parse(&buf)
                .map_err(RecordError::from)
                .and_then(|header| decode_batch(&header, &buf, 1 << 20).map(|_| ()));
            assert!(refused.is_err(), "{codec:?}");
        }
    }

    /// Regression (fuzzing): base offsets near i64::MAX overflowed (a panic in debug builds)
    /// when record and last offsets were computed.
    #[test]
    fn offsets_near_the_end_of_the_range_do_not_overflow() {
        let mut buf = sample(Compression::None).to_vec();
        batch::set_base_offset(&mut buf, i64::MAX);
        let header = BatchHeader::parse(&buf).unwrap();
        assert_eq!(
            header.last_offset(),
            i64::MAX.wrapping_add(i64::from(header.last_offset_delta))
        );
        let records: Vec<_> = decode_batch(&header, &Bytes::from(buf), 1 << 20)
            .unwrap()
            .collect();
        assert!(records.iter().all(|r| r.is_ok()));
    }
}
