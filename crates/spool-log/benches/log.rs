//! Micro-benchmarks of the storage hot paths: append, index lookups, fetch reads.
//!
//! Run with `cargo bench -p spool-log --bench log` (a filter such as `-- append` narrows it).
//! Logs live in a temporary directory under `SPOOL_BENCH_DIR` (default: the system temp dir),
//! so that the fsync benchmark measures a real disk rather than a tmpfs. Before the timings the
//! binary prints how many heap allocations each hot path makes, counted by a wrapping global
//! allocator.

use std::alloc::System;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput};
use spool_log::{LogConfig, PartitionLog};
use spool_protocol::compression::Compression;
use spool_protocol::records::BatchBuilder;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tempfile::TempDir;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Value size of every record: a typical small event.
const VALUE_LEN: usize = 100;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn bench_dir() -> TempDir {
    let root = std::env::var_os("SPOOL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    tempfile::Builder::new()
        .prefix("spool-log-bench")
        .tempdir_in(root)
        .expect("create a bench directory")
}

/// One v2 batch as a producer would send it: `VALUE_LEN`-byte values, keyless, until the batch
/// reaches `max_size`. Timestamps start at `timestamp`, one millisecond apart.
fn produce_batch(max_size: usize, timestamp: i64) -> Bytes {
    let value = [b'v'; VALUE_LEN];
    let mut builder = BatchBuilder::new(max_size);
    let mut ts = timestamp;
    while builder.try_append(ts, None, Some(&value), &[]) {
        ts += 1;
    }
    builder
        .build(-1, -1, -1, Compression::None)
        .expect("an uncompressed batch builds")
}

fn records_in(batch: &Bytes) -> i64 {
    i64::from(i32::from_be_bytes(
        batch[57..61].try_into().expect("4 bytes"),
    ))
}

/// A log filled with about `bytes` of batches of up to `max_size` bytes, each a fresh batch
/// whose timestamps continue the previous one's, so that record `o` has timestamp `now + o`.
/// Returns the records per batch too.
fn filled_log(
    config: LogConfig,
    max_size: usize,
    bytes: usize,
    now: i64,
) -> (TempDir, PartitionLog, i64) {
    let dir = bench_dir();
    let log = PartitionLog::open(dir.path(), config).expect("open log");
    let per_batch = records_in(&produce_batch(max_size, now));
    let mut written = 0;
    while written < bytes {
        let next = log.offsets().log_end_offset;
        let batch = produce_batch(max_size, now + next);
        written += batch.len();
        log.append(BytesMut::from(&batch[..]), now).expect("append");
    }
    (dir, log, per_batch)
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

/// Prints allocations per operation on each hot path; the issue asks for no per-record work.
fn report_allocations() {
    let now = now_ms();
    let batch16 = produce_batch(16 << 10, now);
    let batch1m = produce_batch(1 << 20, now);
    let mut rows = Vec::new();

    for (name, batch) in [("16 KiB", &batch16), ("1 MiB", &batch1m)] {
        let dir = bench_dir();
        let log = PartitionLog::open(dir.path(), LogConfig::default()).expect("open log");
        // Warm up: the first append may grow the index vectors.
        log.append(BytesMut::from(&batch[..]), now).expect("append");
        let copies: Vec<BytesMut> = (0..64).map(|_| BytesMut::from(&batch[..])).collect();
        let mut copies = copies.into_iter();
        let n = allocations_per_op(64, || {
            log.append(copies.next().expect("enough copies"), now)
                .expect("append");
        });
        rows.push((
            format!(
                "log append, {name} batch of {} records (excl. handler copy)",
                records_in(batch)
            ),
            n,
        ));
        log.close().expect("close");
    }

    {
        let dir = bench_dir();
        let log = PartitionLog::open(dir.path(), LogConfig::default()).expect("open log");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let n = allocations_per_op(16, || {
            let info = log
                .append(BytesMut::from(&batch16[..]), now)
                .expect("append");
            rt.block_on(log.sync_to(info.last_offset)).expect("sync");
        });
        rows.push((
            "log append + sync_to (acks=all), 16 KiB batch, incl. copy".to_string(),
            n,
        ));
        log.close().expect("close");
    }

    let (_dir, log, _) = filled_log(LogConfig::default(), 16 << 10, 16 << 20, now);
    let end = log.offsets().log_end_offset;
    for (name, offset) in [("start", 0), ("middle", end / 2)] {
        let n = allocations_per_op(16, || {
            black_box(log.read(offset, 1 << 20).expect("read"));
        });
        rows.push((format!("log read, 1 MiB from the {name}"), n));
    }
    log.close().expect("close");

    let (_dir, log, _) = filled_log(small_segments(), 1 << 10, 16 << 20, now);
    let end = log.offsets().log_end_offset;
    let n = allocations_per_op(16, || {
        black_box(log.read(end / 3, 1).expect("read"));
    });
    rows.push(("offset lookup (read, max_bytes 1)".to_string(), n));
    let n = allocations_per_op(16, || {
        black_box(log.offset_for_timestamp(now + end / 3).expect("lookup"));
    });
    rows.push(("timestamp lookup (offset_for_timestamp)".to_string(), n));
    log.close().expect("close");

    println!("allocations per operation (heap allocations + reallocations):");
    for (name, n) in rows {
        println!("  {name:<66} {n:>8.2}");
    }
    println!();
}

/// Many small segments: 2 MiB each, so index lookups first pick a segment among dozens.
fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 2 << 20,
        ..LogConfig::default()
    }
}

fn append(c: &mut Criterion) {
    let now = now_ms();
    let mut group = c.benchmark_group("log/append");
    for (name, max_size) in [("16KiB", 16usize << 10), ("1MiB", 1 << 20)] {
        let batch = produce_batch(max_size, now);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        // The copy into a `BytesMut` is the produce handler's, made once per batch; it is
        // included because the broker pays it on every append.
        group.bench_function(format!("{name} batch, no fsync"), |b| {
            b.iter_custom(|iters| {
                // A fresh log per sample keeps the disk footprint at one sample's worth.
                let dir = bench_dir();
                let log = PartitionLog::open(dir.path(), LogConfig::default()).expect("open log");
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(log.append(BytesMut::from(&batch[..]), now).expect("append"));
                }
                let elapsed = start.elapsed();
                log.close().expect("close");
                elapsed
            });
        });
    }
    group.finish();

    // acks=all: every append waits for its fdatasync. Disk-bound; a figure of this machine's
    // disk, not of Spool (concurrent producers share one fsync through the group commit).
    let mut group = c.benchmark_group("log/append+sync (disk-bound)");
    group.sample_size(10);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let batch = produce_batch(16 << 10, now);
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("16KiB batch, sync_to each", |b| {
        b.iter_custom(|iters| {
            let dir = bench_dir();
            let log = PartitionLog::open(dir.path(), LogConfig::default()).expect("open log");
            let start = Instant::now();
            for _ in 0..iters {
                let info = log.append(BytesMut::from(&batch[..]), now).expect("append");
                rt.block_on(log.sync_to(info.last_offset)).expect("sync");
            }
            let elapsed = start.elapsed();
            log.close().expect("close");
            elapsed
        });
    });
    group.finish();
}

fn index_lookup(c: &mut Criterion) {
    let now = now_ms();
    // 1 KiB batches (9 records) in 2 MiB segments: 32 segments of ~2,000 batches, an offset
    // index entry every 4 batches (index.interval.bytes 4096) and a time index entry per entry.
    let (_dir, log, _) = filled_log(small_segments(), 1 << 10, 64 << 20, now);
    let end = log.offsets().log_end_offset;
    let segments = log.segment_count();
    // A fixed pseudo-random walk over the whole log, so that neither the branch predictor nor
    // the cache sees one offset over and over.
    let targets: Vec<i64> = (0..1024u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) % end as u64) as i64)
        .collect();

    let mut group = c.benchmark_group(format!("log/index lookup ({segments} segments)"));
    group.throughput(Throughput::Elements(1));
    // Segment search + offset index search + one 16 KiB pread of whole batches: the index
    // lookup itself is private to the crate, and a fetch always pays the read with it.
    group.bench_function("offset -> batch (read, max_bytes 1)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % targets.len();
            black_box(log.read(targets[i], 1).expect("read"))
        });
    });
    // ListOffsets by timestamp: segment by max timestamp, time index, header walk, then the
    // one batch is decoded to find the record (as Kafka does).
    group.bench_function("timestamp -> offset (offset_for_timestamp)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % targets.len();
            let ts = now + targets[i];
            black_box(log.offset_for_timestamp(ts).expect("lookup"))
        });
    });
    group.finish();
    log.close().expect("close");
}

fn fetch_read(c: &mut Criterion) {
    let now = now_ms();
    let (_dir, log, per_batch) = filled_log(LogConfig::default(), 16 << 10, 64 << 20, now);
    let batch_len = produce_batch(16 << 10, now).len() as i64;
    let end = log.offsets().log_end_offset;
    let mut group = c.benchmark_group("log/fetch read (max_bytes 1 MiB, page cache)");
    for (name, offset) in [
        ("start", 0),
        ("middle", end / 2),
        // The last 1 MiB: where a consumer that keeps up reads.
        ("tail", end - (1 << 20) / batch_len * per_batch),
    ] {
        let len = log.read(offset, 1 << 20).expect("read").len();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(name, |b| {
            b.iter(|| black_box(log.read(offset, 1 << 20).expect("read")))
        });
    }
    group.finish();
    log.close().expect("close");
}

/// Short measurements: the whole suite must finish in minutes on a shared 2-core machine.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

fn main() {
    report_allocations();
    let mut c = config().configure_from_args();
    append(&mut c);
    index_lookup(&mut c);
    fetch_read(&mut c);
    c.final_summary();
}
