//! Test helper: valid v2 record batches written byte by byte (header, records, CRC), so the
//! storage tests depend on nothing but the batch layout.

use bytes::{BufMut, BytesMut};
use spool_protocol::batch::{seal_crc, HEADER_LEN, LOG_OVERHEAD};

/// What to put in a test batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchSpec {
    pub records: i32,
    /// Timestamp of the first record; record `i` gets `timestamp + i`.
    pub timestamp: i64,
    pub producer_id: i64,
    pub epoch: i16,
    pub sequence: i32,
    /// Bytes of value per record.
    pub value_len: usize,
}

impl Default for BatchSpec {
    fn default() -> Self {
        BatchSpec {
            records: 1,
            timestamp: 1_000,
            producer_id: -1,
            epoch: -1,
            sequence: -1,
            value_len: 10,
        }
    }
}

fn put_varint(out: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

impl BatchSpec {
    /// The batch bytes, base offset 0, CRC sealed.
    pub(crate) fn build(&self) -> BytesMut {
        let mut b =
            BytesMut::with_capacity(HEADER_LEN + self.records as usize * (self.value_len + 16));
        b.put_i64(0); // baseOffset
        b.put_i32(0); // batchLength, below
        b.put_i32(-1); // partitionLeaderEpoch
        b.put_i8(2); // magic
        b.put_u32(0); // crc, below
        b.put_i16(0); // attributes
        b.put_i32(self.records - 1); // lastOffsetDelta
        b.put_i64(self.timestamp);
        b.put_i64(self.timestamp + i64::from(self.records - 1));
        b.put_i64(self.producer_id);
        b.put_i16(self.epoch);
        b.put_i32(self.sequence);
        b.put_i32(self.records);
        assert_eq!(b.len(), HEADER_LEN);
        for i in 0..self.records {
            let mut rec = BytesMut::new();
            rec.put_i8(0); // attributes
            put_varint(&mut rec, i64::from(i)); // timestampDelta
            put_varint(&mut rec, i64::from(i)); // offsetDelta
            put_varint(&mut rec, -1); // key: null
            put_varint(&mut rec, self.value_len as i64);
            rec.put_bytes(b'v', self.value_len);
            put_varint(&mut rec, 0); // headers
            put_varint(&mut b, rec.len() as i64);
            b.put_slice(&rec);
        }
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        seal_crc(&mut b);
        b
    }
}

/// A plain batch of `records` records with timestamps from `timestamp`.
pub(crate) fn batch(records: i32, timestamp: i64) -> BytesMut {
    BatchSpec {
        records,
        timestamp,
        ..Default::default()
    }
    .build()
}

/// An idempotent producer's batch.
pub(crate) fn idempotent(producer_id: i64, epoch: i16, sequence: i32, records: i32) -> BytesMut {
    BatchSpec {
        records,
        producer_id,
        epoch,
        sequence,
        ..Default::default()
    }
    .build()
}

#[test]
fn built_batches_parse_with_crc() {
    use spool_protocol::batch::BatchHeader;
    let b = idempotent(7, 1, 5, 3);
    let h = BatchHeader::parse_checked(&b).unwrap();
    assert_eq!((h.record_count, h.producer_id, h.base_sequence), (3, 7, 5));
    assert_eq!(h.last_sequence(), 7);
    assert_eq!(h.total_len(), b.len());
    assert_eq!(h.max_timestamp, 1_002);
}
