//! Model check of a partition log through its public API only: a deterministic random sequence
//! of appends (all codecs, built by the producer's own `BatchBuilder`), reads, timestamp
//! lookups, retention and clean or unclean reopens, compared with a plain in-memory model.
//! Reads are decoded back to records, so the whole path producer bytes -> disk -> fetch bytes
//! is checked.

use std::path::Path;

use bytes::BytesMut;
use spool_log::{LogConfig, LogError, PartitionLog};
use spool_protocol::batch::BatchHeader;
use spool_protocol::compression::Compression;
use spool_protocol::records::{BatchBuilder, DecodedBatches};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One appended batch as the model sees it.
struct Appended {
    base: i64,
    last: i64,
    max_timestamp: i64,
    /// Each record's timestamp, in offset order.
    timestamps: Vec<i64>,
    values: Vec<Vec<u8>>,
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        retention_bytes: 16 * 1024,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> PartitionLog {
    PartitionLog::open(dir, config()).unwrap()
}

fn value(rng: &mut Rng, n: u64) -> Vec<u8> {
    let len = rng.below(300) as usize;
    let mut v = format!("record-{n}-").into_bytes();
    v.resize(v.len() + len, b'a' + (n % 26) as u8);
    v
}

#[test]
fn random_operations_match_the_model() {
    for seed in 1..=4u64 {
        run(seed, 600);
    }
}

fn run(seed: u64, steps: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut log = open(dir.path());
    let mut model: Vec<Appended> = Vec::new();
    let mut log_start = 0i64;
    let mut next_value = 0u64;
    let mut ts = 1_000i64;

    for step in 0..steps {
        let leo = model.last().map_or(0, |b| b.last + 1);
        match rng.below(100) {
            0..=49 => {
                let count = 1 + rng.below(4);
                let codec = CODECS[rng.below(5) as usize];
                let mut builder = BatchBuilder::new(1 << 20);
                let mut values = Vec::new();
                let mut timestamps = Vec::new();
                for _ in 0..count {
                    let v = value(&mut rng, next_value);
                    next_value += 1;
                    ts += rng.below(20) as i64;
                    assert!(builder.try_append(ts, None, Some(&v), &[]));
                    values.push(v);
                    timestamps.push(ts);
                }
                let bytes = builder.build(-1, -1, -1, codec).unwrap();
                let info = log.append(BytesMut::from(&bytes[..]), ts).unwrap();
                assert_eq!(info.base_offset, leo, "seed {seed} step {step}");
                assert_eq!(info.last_offset, leo + count as i64 - 1);
                model.push(Appended {
                    base: info.base_offset,
                    last: info.last_offset,
                    max_timestamp: ts,
                    timestamps,
                    values,
                });
            }
            50..=79 => {
                let offset = log_start + rng.below((leo - log_start + 1) as u64) as i64;
                let max_bytes = [0, 100, 1_000, 10_000, 1 << 20][rng.below(5) as usize];
                let bytes = log.read(offset, max_bytes).unwrap();
                if offset == leo {
                    assert!(bytes.is_empty());
                    continue;
                }
                assert!(
                    !bytes.is_empty(),
                    "seed {seed} step {step}: nothing at {offset}"
                );
                let mut first = true;
                let mut expected_base = None;
                for decoded in DecodedBatches::new(bytes.clone(), 1 << 24) {
                    let decoded = decoded.unwrap();
                    let h = decoded.header;
                    let m = model.iter().find(|b| b.base == h.base_offset).unwrap();
                    if first {
                        assert!(h.base_offset <= offset && offset <= h.last_offset());
                    } else {
                        assert_eq!(Some(h.base_offset), expected_base);
                    }
                    assert_eq!(h.last_offset(), m.last);
                    let records: Vec<_> = decoded.records.map(|r| r.unwrap()).collect();
                    let got: Vec<_> = records.iter().map(|r| r.value.clone().unwrap()).collect();
                    assert_eq!(got, m.values);
                    assert_eq!(records[0].offset, m.base);
                    expected_base = Some(h.last_offset() + 1);
                    first = false;
                }
                let first_len = BatchHeader::parse(&bytes).unwrap().total_len();
                assert!(bytes.len() <= max_bytes.max(first_len));
            }
            80..=89 => {
                let target = 900 + rng.below((ts - 900) as u64 + 50) as i64;
                let want = model
                    .iter()
                    .filter(|b| b.base >= log_start)
                    .find(|b| b.max_timestamp >= target)
                    .and_then(|b| {
                        let i = b.timestamps.iter().position(|&t| t >= target)?;
                        Some((b.base + i as i64, b.timestamps[i]))
                    });
                assert_eq!(log.offset_for_timestamp(target).unwrap(), want);
            }
            90..=94 => {
                log.enforce_retention(ts).unwrap();
                let start = log.offsets().log_start_offset;
                assert!(start >= log_start);
                assert!(start == leo || model.iter().any(|b| b.base == start));
                log_start = start;
                if log_start > 0 {
                    assert!(matches!(
                        log.read(log_start - 1, 100),
                        Err(LogError::OffsetOutOfRange { .. })
                    ));
                }
            }
            _ => {
                if rng.below(2) == 0 {
                    log.close().unwrap();
                }
                drop(log);
                log = open(dir.path());
                let offsets = log.offsets();
                assert_eq!(offsets.log_end_offset, leo, "seed {seed} step {step}");
                assert_eq!(offsets.log_start_offset, log_start);
            }
        }
    }
}
