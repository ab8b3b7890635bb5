//! Micro-benchmarks of the protocol hot paths: what the broker does per produce batch (header
//! parse, CRC-32C, base-offset rewrite), what a connection does per Produce request (guard and
//! decode), what a consumer does per fetched batch (decode, decompress), and what a producer
//! does per batch (`BatchBuilder`: append records, build with each codec).
//!
//! Run with `cargo bench -p spool-protocol --bench protocol` (a filter such as `-- build`
//! narrows it). Before the timings the binary prints how many heap allocations each path makes,
//! counted by a wrapping global allocator.

use std::alloc::System;
use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, RequestKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use spool_protocol::batch::{set_base_offset, BatchHeader};
use spool_protocol::codec;
use spool_protocol::compression::Compression;
use spool_protocol::guard::GuardLimits;
use spool_protocol::records::{self, BatchBuilder};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Value size of every record: a typical small event.
const VALUE_LEN: usize = 100;
/// `batch.size`: Kafka's producer default.
const BATCH_SIZE: usize = 16 << 10;
/// The Produce version the client uses when topic ids are unknown (v13 addresses topics by id).
const PRODUCE_VERSION: i16 = 12;

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Lz4,
    Compression::Zstd,
    Compression::Snappy,
    Compression::Gzip,
];

/// `n` JSON-ish event values of `VALUE_LEN` bytes with varying fields, so that codecs see
/// data about as compressible as real events rather than one repeated byte.
fn values(n: usize) -> Vec<Vec<u8>> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut v = format!(
                r#"{{"id":{i},"user":"u{:05}","amount":{}.{:02},"kind":"{}","ts":{}}}"#,
                x % 100_000,
                (x >> 20) % 10_000,
                (x >> 40) % 100,
                ["click", "view", "purchase", "refund"][(x >> 50) as usize % 4],
                1_700_000_000_000u64 + i as u64,
            )
            .into_bytes();
            v.resize(VALUE_LEN, b' ');
            v
        })
        .collect()
}

/// Appends `values` (cycling) until the builder refuses one; returns the record count.
fn fill(builder: &mut BatchBuilder, values: &[Vec<u8>]) -> usize {
    let mut n = 0;
    while builder.try_append(
        1_700_000_000_000 + n as i64,
        None,
        Some(&values[n % values.len()]),
        &[],
    ) {
        n += 1;
    }
    n
}

fn batch(max_size: usize, compression: Compression, values: &[Vec<u8>]) -> Bytes {
    let mut builder = BatchBuilder::new(max_size);
    fill(&mut builder, values);
    builder
        .build(-1, -1, -1, compression)
        .expect("the codec compresses")
}

/// A Produce request frame (without its length prefix) carrying `batch` for one partition.
fn produce_frame(batch: Bytes) -> Bytes {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench-topic")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(PRODUCE_VERSION)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("bench-client")));
    let mut out = BytesMut::new();
    codec::encode_request(&mut out, &header, &RequestKind::Produce(req)).expect("encode");
    out.freeze().slice(4..)
}

/// The broker's per-batch work on produce: header, CRC-32C over the batch, baseOffset rewrite.
fn check_and_rewrite(buf: &mut [u8], base_offset: i64) -> BatchHeader {
    let header = BatchHeader::parse_checked(buf).expect("a valid batch");
    set_base_offset(buf, base_offset);
    header
}

/// The consumer's per-batch work: decode (and decompress) then walk every record. Returns the
/// value bytes seen, so that nothing is optimised away.
fn decode_all(batch: &Bytes) -> usize {
    let header = BatchHeader::parse_checked(batch).expect("a valid batch");
    records::decode_batch(&header, batch, 64 << 20)
        .expect("decodes")
        .map(|r| r.expect("a valid record").value.map_or(0, |v| v.len()))
        .sum()
}

/// [`decode_all`] as a consumer reading records in place does it (`poll_records`): positions
/// of each record's fields, no reference-counted slices.
fn decode_spans(batch: &Bytes) -> usize {
    let header = BatchHeader::parse_checked(batch).expect("a valid batch");
    let mut records = records::decode_batch(&header, batch, 64 << 20).expect("decodes");
    let mut total = 0;
    while let Some(span) = records.next_span() {
        let span = span.expect("a valid record");
        total += span.value.map_or(0, |v| v.range().len());
    }
    total
}

/// The producer's per-batch work: a fresh builder filled to `batch.size`, then built.
fn build(values: &[Vec<u8>], compression: Compression) -> Bytes {
    let mut builder = BatchBuilder::new(BATCH_SIZE);
    fill(&mut builder, values);
    builder
        .build(-1, -1, -1, compression)
        .expect("the codec compresses")
}

/// Heap allocations (fresh ones plus reallocations) made by `f`, averaged over `n` runs.
fn allocations_per_op(n: u32, mut f: impl FnMut()) -> f64 {
    let region = Region::new(GLOBAL);
    for _ in 0..n {
        f();
    }
    let stats = region.change();
    (stats.allocations + stats.reallocations) as f64 / f64::from(n)
}

/// Prints allocations per operation on each hot path; the issue asks for one allocation per
/// client batch rather than one per record, and none per record on the broker.
fn report_allocations() {
    let values = values(256);
    let mut rows = Vec::new();
    let plain = batch(BATCH_SIZE, Compression::None, &values);
    let header = BatchHeader::parse(&plain).expect("a valid batch");
    let records = header.record_count;

    let mut buf = plain.to_vec();
    rows.push((
        "produce batch: parse + CRC-32C + baseOffset rewrite".to_string(),
        allocations_per_op(100, || {
            black_box(check_and_rewrite(&mut buf, 42));
        }),
    ));
    let frame = produce_frame(plain.clone());
    rows.push((
        "Produce request decode (guard + decode_request), 16 KiB batch".to_string(),
        allocations_per_op(100, || {
            black_box(
                codec::decode_request(frame.clone(), &GuardLimits::default(), |_, _| true)
                    .expect("decodes"),
            );
        }),
    ));
    for codec in CODECS {
        let b = batch(BATCH_SIZE, codec, &values);
        rows.push((
            format!("decode_batch + iterate {records} records, {}", codec.name()),
            allocations_per_op(20, || {
                black_box(decode_all(&b));
            }),
        ));
    }
    rows.push((
        format!("decode_batch + read {records} records in place (next_span), none"),
        allocations_per_op(20, || {
            black_box(decode_spans(&plain));
        }),
    ));
    for codec in CODECS {
        rows.push((
            format!("client batch build, {records} records, {}", codec.name()),
            allocations_per_op(20, || {
                black_box(build(&values, codec));
            }),
        ));
    }

    // Context for the codec figures: how well the sample events compress.
    let sizes: Vec<String> = CODECS
        .iter()
        .map(|&codec| {
            format!(
                "{} {}",
                codec.name(),
                batch(BATCH_SIZE, codec, &values).len()
            )
        })
        .collect();
    println!(
        "16 KiB batch of {records} records, bytes per codec: {}",
        sizes.join(", ")
    );
    println!("allocations per operation (heap allocations + reallocations):");
    for (name, n) in rows {
        println!("  {name:<66} {n:>8.2}");
    }
    println!();
}

fn produce_batch_path(c: &mut Criterion) {
    let values = values(256);
    let mut group = c.benchmark_group("broker/produce batch (parse + crc32c + rewrite)");
    for (name, size) in [("16KiB", BATCH_SIZE), ("1MiB", 1 << 20)] {
        let mut buf = batch(size, Compression::None, &values).to_vec();
        group.throughput(Throughput::Bytes(buf.len() as u64));
        group.bench_function(name, |b| {
            let mut offset = 0;
            b.iter(|| {
                offset += 1;
                black_box(check_and_rewrite(black_box(&mut buf), offset))
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("broker/Produce request decode (guard + codec)");
    for (name, size) in [("16KiB batch", BATCH_SIZE), ("1MiB batch", 1 << 20)] {
        let frame = produce_frame(batch(size, Compression::None, &values));
        // Per request, not per byte: the records field stays a slice of the frame, so the
        // cost does not grow with the batch (a byte rate would be meaningless here).
        group.throughput(Throughput::Elements(1));
        let limits = GuardLimits::default();
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(
                    codec::decode_request(black_box(frame.clone()), &limits, |_, _| true)
                        .expect("decodes"),
                )
            })
        });
    }
    group.finish();
}

fn consume_path(c: &mut Criterion) {
    let values = values(256);
    // Throughput is the uncompressed batch size, so that codecs compare on the data they carry.
    let plain_len = batch(BATCH_SIZE, Compression::None, &values).len() as u64;
    let mut group = c.benchmark_group("client/decode_batch 16KiB + iterate records");
    group.throughput(Throughput::Bytes(plain_len));
    for codec in CODECS {
        let b = batch(BATCH_SIZE, codec, &values);
        group.bench_function(codec.name(), |bench| {
            bench.iter(|| black_box(decode_all(black_box(&b))))
        });
    }
    let plain = batch(BATCH_SIZE, Compression::None, &values);
    group.bench_function("none, in place (next_span)", |bench| {
        bench.iter(|| black_box(decode_spans(black_box(&plain))))
    });
    group.finish();
}

fn build_path(c: &mut Criterion) {
    let values = values(256);
    let plain_len = batch(BATCH_SIZE, Compression::None, &values).len() as u64;
    let mut group =
        c.benchmark_group("client/batch build 16KiB (try_append 100 B records + build)");
    group.throughput(Throughput::Bytes(plain_len));
    for codec in CODECS {
        group.bench_function(codec.name(), |b| {
            b.iter(|| black_box(build(black_box(&values), codec)))
        });
    }
    group.finish();
}

/// Short measurements: the whole suite must finish in minutes on a shared 2-core machine.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

fn main() {
    report_allocations();
    let mut c = config().configure_from_args();
    produce_batch_path(&mut c);
    consume_path(&mut c);
    build_path(&mut c);
    c.final_summary();
}
