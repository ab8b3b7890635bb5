//! One partition's log: append, read, offsets, retention, flushing.
//!
//! ```text
//! append(batch) -> header + CRC check, limits (no lock) -> [lock] producer rules -> roll?
//!               -> assign offsets (rewrite baseOffset) -> pwrite to the active segment
//!               -> indexes, producer state, log end -> [unlock] -> watchers, flush policy
//! read(offset)  -> [lock] segment + index position + size -> [unlock] pread whole batches
//! sync_to(off)  -> group commit (one fsync on a blocking thread for all waiters)
//! ```
//! One mutex guards the segment list and the producer state; it is never held across an
//! `.await`, and the slow parts (CRC, reads, fsync) run outside it.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use bytes::{Bytes, BytesMut};
use spool_protocol::batch::{
    set_base_offset, set_log_append_time, set_partition_leader_epoch, BatchHeader,
};
use spool_protocol::compression::Compression;
use spool_protocol::records;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::config::LogConfig;
use crate::error::{io_err, LogError};
use crate::fsutil::{
    now_ms, remove_if_exists, segment_file, sync_data, sync_dir, write_atomic, LOG_EXT,
};
use crate::producer_state::{ProducerStates, Verdict, PRODUCER_ID_EXPIRATION_MS};
use crate::recovery::{self, CLEAN_SHUTDOWN_FILE, SNAPSHOT_EXT};
use crate::scan;
use crate::segment::{Segment, RUNWAY_BYTES};
use crate::sync::{Durable, GroupCommit, SyncFile, SyncJob};

/// Result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record.
    pub base_offset: i64,
    /// Offset assigned to the last record.
    pub last_offset: i64,
    /// Broker time stamped on the batch with `LogAppendTime`, else -1.
    pub log_append_time: i64,
    /// Log start offset after the append.
    pub log_start_offset: i64,
    /// The batch was a retry of one already in the log; the offsets are the original ones.
    pub duplicate: bool,
}

/// The offsets that bound a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOffsets {
    /// First offset still stored.
    pub log_start_offset: i64,
    /// Offset the next record will get.
    pub log_end_offset: i64,
    /// Last offset visible to consumers plus one; the log end on a single node.
    pub high_watermark: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    Open,
    Closed,
    Deleted,
}

struct Inner {
    lifecycle: Lifecycle,
    /// Ascending by base offset, contiguous, never empty; the last one is active.
    segments: VecDeque<Segment>,
    log_start_offset: i64,
    next_offset: i64,
    producers: ProducerStates,
    /// Records appended since the last flush-policy fsync.
    unflushed_messages: u64,
    last_flush_ms: i64,
    /// Segments created so far; compared with what the group commit has made durable.
    segments_created: u64,
}

/// One partition's segmented, append-only log of record batches, kept exactly as received.
///
/// Share it as `Arc<PartitionLog>`; every method takes `&self`.
pub struct PartitionLog {
    dir: PathBuf,
    config: RwLock<LogConfig>,
    /// Shared with the group commit, which captures what each fsync round must cover.
    inner: Arc<Mutex<Inner>>,
    commit: Arc<GroupCommit>,
    log_end: watch::Sender<i64>,
    leader_epoch: AtomicI32,
    /// Until when (ms since the epoch) appends keep the active segment's zeroed runway topped
    /// up, so that fsyncs write data, not file growth: [`RUNWAY_KEEP_MS`] past the latest
    /// fsync asked for (acks=all, flush policy); 0 before any. Set from the wall clock and
    /// compared with `append`'s `now_ms`, which the broker reads from the same clock (a caller
    /// on another clock only gets the runway for longer or shorter: no correctness depends
    /// on it).
    runway_until_ms: AtomicI64,
}

/// How long appends keep topping up the runway after the latest fsync asked for. Zeros ahead
/// of the data cost a second write of every byte; a partition whose producers stopped asking
/// for fsyncs goes back to growing its file (keeping the zeros it has until its next roll).
const RUNWAY_KEEP_MS: i64 = 10_000;

/// What a roll leaves for the caller to finish once the partition lock is released.
#[derive(Default)]
struct Rolled {
    /// The producer state as of the new segment's base, to write as a snapshot.
    snapshot: Option<(i64, Vec<u8>)>,
    /// The sealed segment (file, data size, base offset) when it has a runway to cut off, and
    /// that cut to fsync, so that no power loss brings the zeros back under a segment a clean
    /// shutdown will trust. Done outside the lock: `ftruncate` may wait for write-back.
    trim: Option<(Arc<File>, u64, i64)>,
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLog")
            .field("dir", &self.dir)
            .field("offsets", &self.offsets())
            .finish()
    }
}

impl PartitionLog {
    /// Opens the log in `dir`, creating the directory for a new log or recovering an existing
    /// one (see the `recovery` module: torn or corrupt tails are cut, indexes rebuilt).
    pub fn open(dir: &Path, config: LogConfig) -> Result<Self, LogError> {
        let now = now_ms();
        let loaded = recovery::load(dir, config.index_interval_bytes, now)?;
        let segments = loaded.segments;
        // Producers whose batches retention deleted are kept, as Kafka keeps them; expiry waits
        // for `enforce_retention`: it runs on the caller's clock, like appends.
        let producers = loaded.producers;
        let log_start_offset = segments.front().map_or(0, |s| s.base_offset);
        let next_offset = segments.back().map_or(0, |s| s.next_offset);
        let durable = Durable {
            end: next_offset,
            dir_generation: 0,
        };
        let inner = Arc::new(Mutex::new(Inner {
            lifecycle: Lifecycle::Open,
            segments,
            log_start_offset,
            next_offset,
            producers,
            unflushed_messages: 0,
            last_flush_ms: now,
            segments_created: 0,
        }));
        let make_job = {
            let (inner, dir) = (Arc::clone(&inner), dir.to_path_buf());
            Box::new(move |durable| sync_job(&inner, &dir, durable))
        };
        Ok(PartitionLog {
            dir: dir.to_path_buf(),
            config: RwLock::new(config),
            inner,
            commit: Arc::new(GroupCommit::new(dir.to_path_buf(), durable, make_job)),
            log_end: watch::Sender::new(next_offset),
            leader_epoch: AtomicI32::new(0),
            runway_until_ms: AtomicI64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Current settings.
    pub fn config(&self) -> LogConfig {
        *self.config.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the settings; they apply from the next operation on.
    pub fn set_config(&self, config: LogConfig) {
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = config;
    }

    /// Leader epoch stamped into appended batches (`partitionLeaderEpoch`); 0 until set.
    pub fn set_leader_epoch(&self, epoch: i32) {
        self.leader_epoch.store(epoch, Ordering::Relaxed);
    }

    fn check_open(&self, inner: &Inner) -> Result<(), LogError> {
        match inner.lifecycle {
            Lifecycle::Open => Ok(()),
            Lifecycle::Closed => Err(LogError::Closed {
                path: self.dir.clone(),
            }),
            Lifecycle::Deleted => Err(LogError::Deleted {
                path: self.dir.clone(),
            }),
        }
    }

    /// Appends exactly one v2 record batch.
    ///
    /// Checks the header and CRC, the size limits and Kafka's produce rules, then the
    /// idempotent-producer rules; assigns offsets by rewriting `baseOffset` (and stamps
    /// `LogAppendTime` if configured); writes it to the active segment (the `write` is done when
    /// this returns, not the fsync: see [`sync_to`](Self::sync_to)); rolls segments as needed.
    /// A retried batch of an idempotent producer is not written again: the original offsets
    /// come back with `duplicate: true`.
    pub fn append(&self, mut batch: BytesMut, now_ms: i64) -> Result<AppendInfo, LogError> {
        let config = self.config();
        let mut header = validate(&batch, &config)?;
        let mut log_append_time = -1;
        if config.log_append_time {
            let len = batch.len();
            set_log_append_time(&mut batch, len, now_ms);
            header = BatchHeader::parse(&batch)?;
            log_append_time = now_ms;
        }
        set_partition_leader_epoch(&mut batch, self.leader_epoch.load(Ordering::Relaxed));

        let mut rolled = Rolled::default();
        let (info, flush_due) = {
            self.commit.check_online()?;
            let mut inner = self.lock();
            self.check_open(&inner)?;
            if let Verdict::Duplicate {
                base_offset,
                last_offset,
            } = inner.producers.check(&header)?
            {
                return Ok(AppendInfo {
                    base_offset,
                    last_offset,
                    log_append_time: -1,
                    log_start_offset: inner.log_start_offset,
                    duplicate: true,
                });
            }
            let base_offset = inner.next_offset;
            if self.should_roll(&inner, &config, &header, batch.len(), now_ms) {
                rolled = self.roll(&mut inner, now_ms)?;
            }
            set_base_offset(&mut batch, base_offset);
            header.base_offset = base_offset;
            let active = inner.segments.back_mut().expect("a log has a segment");
            if let Err(e) = active.append(&batch, &header, config.index_interval_bytes, now_ms) {
                let path = segment_file(&self.dir, active.base_offset, LOG_EXT);
                drop(inner);
                self.finish_roll(rolled);
                return Err(io_err("write", path)(e));
            }
            // Batches as large as the runway would each grow it: their fsyncs gain little from
            // it and the zeros would double what reaches the disk.
            if now_ms < self.runway_until_ms.load(Ordering::Relaxed)
                && batch.len() as u64 <= RUNWAY_BYTES / 8
            {
                if let Err(e) = active.extend_runway(config.effective_segment_bytes()) {
                    // Only a lost speed-up: appends grow the file instead.
                    debug!(dir = %self.dir.display(), "extending the segment's runway failed: {e}");
                }
            }
            inner.producers.record(&header, now_ms);
            inner.next_offset = header.last_offset() + 1;
            inner.unflushed_messages += header.record_count as u64;
            self.log_end.send_replace(inner.next_offset);
            let flush_due = flush_due(&mut inner, &config, now_ms);
            let info = AppendInfo {
                base_offset,
                last_offset: header.last_offset(),
                log_append_time,
                log_start_offset: inner.log_start_offset,
                duplicate: false,
            };
            (info, flush_due)
        };
        self.finish_roll(rolled);
        if flush_due {
            self.flush()?;
        }
        Ok(info)
    }

    fn should_roll(
        &self,
        inner: &Inner,
        config: &LogConfig,
        header: &BatchHeader,
        len: usize,
        now_ms: i64,
    ) -> bool {
        let active = inner.segments.back().expect("a log has a segment");
        if active.is_empty() {
            return false;
        }
        let full = active.size + len as u64 > config.effective_segment_bytes();
        let old = active.time_waited_for_roll(now_ms, header.max_timestamp) > config.segment_ms;
        // Index entries hold offsets relative to the base as 32 bits (Kafka: as an int).
        let last = inner.next_offset + i64::from(header.last_offset_delta);
        let offsets_overflow = last - active.base_offset > i64::from(i32::MAX);
        full || old || offsets_overflow
    }

    /// Seals the active segment and starts a new one at the log end. Returns what the caller
    /// finishes with [`finish_roll`](Self::finish_roll) once the lock is released.
    fn roll(&self, inner: &mut Inner, now_ms: i64) -> Result<Rolled, LogError> {
        let next = inner.next_offset;
        let active = inner.segments.back_mut().expect("a log has a segment");
        let base = active.base_offset;
        active.seal(&self.dir).map_err(io_err(
            "write index",
            segment_file(&self.dir, base, LOG_EXT),
        ))?;
        let trim = active
            .has_runway()
            .then(|| (Arc::clone(&active.file), active.size, base));
        let seg = Segment::create(&self.dir, next, now_ms).map_err(io_err(
            "create segment",
            segment_file(&self.dir, next, LOG_EXT),
        ))?;
        inner.segments.push_back(seg);
        inner.segments_created += 1;
        // As Kafka does at a roll: recovery then replays only from here, and the state outlives
        // the segments retention deletes. Nothing to keep while no producer is known.
        let snapshot =
            (inner.producers.len() > 0).then(|| (next, inner.producers.to_snapshot(next)));
        Ok(Rolled { snapshot, trim })
    }

    /// The part of a roll done without the partition lock: the snapshot, and cutting the
    /// sealed segment's runway off durably. Failures are logged, not returned: the batch that
    /// caused the roll is already written. A failed fsync takes the log offline, as always; a
    /// cut left undone is redone by `close`, and recovery takes the zeros for the data's end.
    fn finish_roll(&self, rolled: Rolled) {
        if let Some((offset, bytes)) = rolled.snapshot {
            self.write_snapshot(offset, &bytes);
        }
        let Some((file, size, base)) = rolled.trim else {
            return;
        };
        if let Err(e) = file.set_len(size) {
            let path = segment_file(&self.dir, base, LOG_EXT);
            warn!(segment = %path.display(), "cutting the runway off a sealed segment failed: {e}");
            return;
        }
        // `end: 0` and generation 0: durability moves by no offset, only this file's length.
        let job = SyncJob {
            files: vec![SyncFile {
                file,
                data_end: size,
            }],
            dir: None,
            end: 0,
            dir_generation: 0,
        };
        if self.commit.sync_now(job).is_ok() {
            let mut inner = self.lock();
            if let Some(seg) = inner.segments.iter_mut().find(|s| s.base_offset == base) {
                seg.runway_trimmed();
            }
        }
    }

    /// Writes a roll-time snapshot. A failure only costs a longer replay at the next recovery
    /// (or, after retention, the state of producers idle since), so it is logged, not returned:
    /// the batch that caused the roll is already written.
    fn write_snapshot(&self, offset: i64, bytes: &[u8]) {
        let path = segment_file(&self.dir, offset, SNAPSHOT_EXT);
        if let Err(e) = write_atomic(&path, bytes) {
            warn!(snapshot = %path.display(), "writing producer-state snapshot failed: {e}");
        }
    }

    /// Whole batches starting with the one that contains `offset`, as stored.
    ///
    /// At most `max_bytes`, except that the first batch is always whole even if larger
    /// (KIP-74). Reads within one segment; the caller asks again from the next offset. Empty at
    /// the log end; [`LogError::OffsetOutOfRange`] below the log start or past the end.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes, LogError> {
        let interval = self.config().index_interval_bytes;
        let (file, start, end, base) = {
            let inner = self.lock();
            if inner.lifecycle == Lifecycle::Deleted {
                self.check_open(&inner)?;
            }
            if offset < inner.log_start_offset || offset > inner.next_offset {
                return Err(LogError::OffsetOutOfRange {
                    requested: offset,
                    log_start: inner.log_start_offset,
                    log_end: inner.next_offset,
                });
            }
            if offset == inner.next_offset {
                return Ok(Bytes::new());
            }
            let seg = segment_for(&inner.segments, offset);
            let start = seg.index.lookup((offset - seg.base_offset) as u32);
            (
                Arc::clone(&seg.file),
                u64::from(start),
                seg.size,
                seg.base_offset,
            )
        };
        let path = || segment_file(&self.dir, base, LOG_EXT);
        scan::read_batches(&file, path, start, end, offset, max_bytes, interval)
    }

    /// Log start, log end and high watermark.
    pub fn offsets(&self) -> LogOffsets {
        let inner = self.lock();
        LogOffsets {
            log_start_offset: inner.log_start_offset,
            log_end_offset: inner.next_offset,
            high_watermark: inner.next_offset,
        }
    }

    /// ListOffsets by timestamp: the offset and timestamp of the first record whose timestamp
    /// is at least `timestamp`; `None` if there is none.
    ///
    /// Indexes find the first batch whose max timestamp qualifies; that one batch is then
    /// decoded to find the record, as Kafka does (off the produce/fetch hot path).
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, LogError> {
        let (file, start, end, base) = {
            let inner = self.lock();
            let Some(seg) = inner.segments.iter().find(|s| s.max_timestamp >= timestamp) else {
                return Ok(None);
            };
            let start = seg
                .time_index
                .lookup_below(timestamp)
                .map_or(0, |rel| seg.index.lookup(rel));
            (
                Arc::clone(&seg.file),
                u64::from(start),
                seg.size,
                seg.base_offset,
            )
        };
        let path = segment_file(&self.dir, base, LOG_EXT);
        let Some(header) = scan::find_timestamp(&file, &path, start, end, timestamp)? else {
            return Ok(None);
        };
        Ok(Some(self.first_record_at_or_after(&header, timestamp)?))
    }

    /// Within the batch `header` describes, the first record with a timestamp >= `timestamp`.
    fn first_record_at_or_after(
        &self,
        header: &BatchHeader,
        timestamp: i64,
    ) -> Result<(i64, i64), LogError> {
        let batch_level = (header.base_offset, header.max_timestamp);
        if header.is_log_append_time() || header.is_control() {
            return Ok(batch_level);
        }
        let bytes = self.read(header.base_offset, 1)?;
        let cap = (self.config().max_message_bytes as usize)
            .saturating_mul(64)
            .max(1 << 20);
        let Ok(records) = records::decode_batch(header, &bytes, cap) else {
            // An undecodable batch still qualifies by its header.
            return Ok(batch_level);
        };
        for record in records.flatten() {
            if record.timestamp >= timestamp {
                return Ok((record.offset, record.timestamp));
            }
        }
        Ok(batch_level)
    }

    /// ListOffsets MAX_TIMESTAMP: offset and timestamp of the first record holding the largest
    /// timestamp in the log; `None` for an empty log.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, LogError> {
        let best = {
            let inner = self.lock();
            let mut best: Option<(i64, i64)> = None;
            for s in &inner.segments {
                if s.offset_of_max_timestamp >= 0 && best.is_none_or(|(_, t)| s.max_timestamp > t) {
                    best = Some((s.offset_of_max_timestamp, s.max_timestamp));
                }
            }
            best
        };
        let Some((offset, max)) = best else {
            return Ok(None);
        };
        // Narrow the batch down to its record carrying the maximum (KIP-734 asks for the record).
        let bytes = self.read(offset, 1)?;
        match BatchHeader::parse(&bytes) {
            Ok(header) => Ok(Some(self.first_record_at_or_after(&header, max)?)),
            Err(_) => Ok(Some((offset, max))),
        }
    }

    /// Resolves once every record up to `offset` (inclusive) is fsynced.
    ///
    /// Concurrent callers share one `fdatasync`, run on a blocking thread; a caller arriving
    /// while one runs waits for the next, which covers everyone waiting. Offsets past the log
    /// end mean "everything appended so far". Must be polled inside a Tokio runtime. After a
    /// failed fsync the log is offline: this and appends fail with [`LogError::Offline`].
    pub async fn sync_to(&self, offset: i64) -> Result<(), LogError> {
        self.fsync_asked();
        let offset = offset.min(*self.log_end.borrow() - 1);
        self.commit.sync_to(offset).await
    }

    /// Starts making every record up to `offset` durable, without waiting: the fsync rounds
    /// go on whether or not anyone polls [`sync_to`](Self::sync_to) meanwhile, which then only
    /// waits. Lets the broker start an acks=all request's fsync as it appends, and await it
    /// only when the answer's turn comes. Must be called inside a Tokio runtime.
    pub fn start_sync(&self, offset: i64) {
        self.fsync_asked();
        let offset = offset.min(*self.log_end.borrow() - 1);
        self.commit.kick(offset);
    }

    /// Notes that an fsync was asked for now: appends keep a runway for a while.
    fn fsync_asked(&self) {
        self.runway_until_ms
            .store(now_ms().saturating_add(RUNWAY_KEEP_MS), Ordering::Relaxed);
    }

    /// What an fsync must cover to make the current log end durable.
    fn sync_job(&self, durable: Durable) -> SyncJob {
        sync_job(&self.inner, &self.dir, durable)
    }

    /// Fsyncs everything appended so far, on the calling thread (shutdown, flush policy).
    pub fn flush(&self) -> Result<(), LogError> {
        self.fsync_asked();
        let durable = self.commit.durable()?;
        let job = self.sync_job(durable);
        self.commit.sync_now(job)
    }

    /// Flushes if `flush.ms` is set and has elapsed with data unflushed; for a periodic task.
    /// Returns whether it flushed.
    pub fn flush_if_due(&self, now_ms: i64) -> Result<bool, LogError> {
        let Some(flush_ms) = self.config().flush_ms else {
            return Ok(false);
        };
        let due = {
            let mut inner = self.lock();
            let due = inner.unflushed_messages > 0
                && now_ms.saturating_sub(inner.last_flush_ms) >= flush_ms as i64;
            if due {
                inner.unflushed_messages = 0;
                inner.last_flush_ms = now_ms;
            }
            due
        };
        if due {
            self.flush()?;
        }
        Ok(due)
    }

    /// fsync rounds run so far (group commits and flushes); for tests and metrics.
    pub fn fsync_count(&self) -> u64 {
        self.commit.rounds()
    }

    /// Watches the log end offset, for long-poll fetches.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.log_end.subscribe()
    }

    /// Applies retention and time-based rolling: rolls the active segment once it is older than
    /// `segment.ms`, then deletes the oldest sealed segments whose newest timestamp is older
    /// than `retention.ms` or that take the log over `retention.bytes`. The active segment is
    /// never deleted. Returns the number of segments deleted.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let config = self.config();
        let mut rolled = Rolled::default();
        let removed: Vec<i64> = {
            let mut inner = self.lock();
            if inner.lifecycle != Lifecycle::Open {
                return Ok(0);
            }
            let active = inner.segments.back().expect("a log has a segment");
            if !active.is_empty() && active.time_waited_for_roll(now_ms, now_ms) > config.segment_ms
            {
                rolled = self.roll(&mut inner, now_ms)?;
            }
            let sealed = inner.segments.len() - 1;
            let mut count = 0;
            if config.retention_ms >= 0 {
                while count < sealed
                    && now_ms.saturating_sub(inner.segments[count].largest_timestamp())
                        > config.retention_ms
                {
                    count += 1;
                }
            }
            if config.retention_bytes >= 0 {
                let total: u64 = inner.segments.iter().skip(count).map(|s| s.size).sum();
                let mut excess = total as i64 - config.retention_bytes;
                while count < sealed && excess >= inner.segments[count].size as i64 {
                    excess -= inner.segments[count].size as i64;
                    count += 1;
                }
            }
            let removed: Vec<i64> = inner
                .segments
                .drain(..count)
                .map(|s| s.base_offset)
                .collect();
            inner.log_start_offset = inner.segments.front().expect("active kept").base_offset;
            // Producer state outlives the deleted batches (Kafka's behaviour since KIP-360):
            // only idleness expires it.
            inner.producers.expire(now_ms, PRODUCER_ID_EXPIRATION_MS);
            removed
        };
        self.finish_roll(rolled);
        if removed.is_empty() {
            return Ok(0);
        }
        // Oldest first, so an interruption leaves a contiguous log.
        for &base in &removed {
            Segment::delete_files(&self.dir, base).map_err(io_err(
                "delete segment",
                segment_file(&self.dir, base, LOG_EXT),
            ))?;
            // Its snapshot is superseded by the one at the new log start (or by a later one).
            let path = segment_file(&self.dir, base, SNAPSHOT_EXT);
            remove_if_exists(&path).map_err(io_err("remove", &path))?;
        }
        // Deletions not made durable could come back after a power loss, in any order: an old
        // segment without its successor would look like a gap in the log.
        sync_dir(&self.dir).map_err(io_err("sync directory", &self.dir))?;
        Ok(removed.len())
    }

    /// Makes everything durable and leaves the state a later open can trust without scanning:
    /// index files, the producer-state snapshot, then the clean-shutdown marker. Appends fail
    /// afterwards with [`LogError::Closed`]. Closing twice is harmless.
    pub fn close(&self) -> Result<(), LogError> {
        let durable = self.commit.durable()?;
        let job = self.sync_job(durable);
        self.commit.sync_now(job)?;
        let mut inner = self.lock();
        if inner.lifecycle != Lifecycle::Open {
            return Ok(());
        }
        // Appends racing with the flush above get in before the lock; flush them too.
        let durable = self.commit.durable()?;
        if durable.end < inner.next_offset {
            for seg in &inner.segments {
                sync_data(&seg.file).map_err(io_err(
                    "sync",
                    segment_file(&self.dir, seg.base_offset, LOG_EXT),
                ))?;
            }
        }
        inner.lifecycle = Lifecycle::Closed;
        // After a clean shutdown the next open takes a sealed segment's length for its data's:
        // every runway (the active one, and any a roll has not cut durably yet) goes, durably,
        // before the marker says so.
        for seg in inner.segments.iter_mut().filter(|s| s.has_runway()) {
            let path = segment_file(&self.dir, seg.base_offset, LOG_EXT);
            seg.trim_runway().map_err(io_err("truncate", &path))?;
            sync_data(&seg.file).map_err(io_err("sync", &path))?;
        }
        let active = inner.segments.back_mut().expect("a log has a segment");
        let path = segment_file(&self.dir, active.base_offset, LOG_EXT);
        active
            .seal(&self.dir)
            .map_err(io_err("write index", &path))?;
        for seg in inner.segments.iter_mut() {
            let path = segment_file(&self.dir, seg.base_offset, LOG_EXT);
            seg.sync_indexes(&self.dir)
                .map_err(io_err("sync index", &path))?;
        }
        let snapshot = segment_file(&self.dir, inner.next_offset, SNAPSHOT_EXT);
        write_atomic(&snapshot, &inner.producers.to_snapshot(inner.next_offset))
            .map_err(io_err("write", &snapshot))?;
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        write_atomic(&marker, b"").map_err(io_err("write", &marker))?;
        Ok(())
    }

    /// Marks the log deleted (its topic is gone): appends and reads fail from now on.
    pub(crate) fn mark_deleted(&self) {
        self.lock().lifecycle = Lifecycle::Deleted;
    }

    /// Number of segments; for tests and metrics.
    pub fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }

    /// Number of producer ids with state; for tests and metrics.
    pub fn producer_count(&self) -> usize {
        self.lock().producers.len()
    }

    #[cfg(test)]
    pub(crate) fn commit(&self) -> &GroupCommit {
        &self.commit
    }
}

/// The partition lock. Every update under it is ordered so that a panic midway leaves a usable
/// log (at worst an index entry short), so a poisoned lock is taken over, not propagated.
fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What an fsync must cover to make the log end as of now durable, given what already is.
fn sync_job(inner: &Mutex<Inner>, dir: &Path, durable: Durable) -> SyncJob {
    let inner = lock(inner);
    // A deleted log's directory is renamed away and being removed: its entries need no
    // durability, and syncing it by its old name would fail and take the log offline with a
    // spurious error (a group-commit chain can still be running rounds after the deletion).
    // The segment files sync through their open handles wherever they are.
    let needs_dir =
        inner.lifecycle != Lifecycle::Deleted && inner.segments_created > durable.dir_generation;
    SyncJob {
        files: inner
            .segments
            .iter()
            .filter(|s| s.next_offset > durable.end && !s.is_empty())
            .map(|s| SyncFile {
                file: Arc::clone(&s.file),
                data_end: s.size,
            })
            .collect(),
        dir: needs_dir.then(|| dir.to_path_buf()),
        end: inner.next_offset,
        dir_generation: inner.segments_created,
    }
}

/// The segment holding `offset` (which the caller checked is in the log).
fn segment_for(segments: &VecDeque<Segment>, offset: i64) -> &Segment {
    let n = segments.partition_point(|s| s.base_offset <= offset);
    &segments[n.saturating_sub(1)]
}

/// Decides whether the flush policy wants an fsync now, and resets its counters if so (so
/// concurrent appenders do not all flush).
fn flush_due(inner: &mut Inner, config: &LogConfig, now_ms: i64) -> bool {
    let by_count = config
        .flush_messages
        .is_some_and(|n| inner.unflushed_messages >= n);
    let by_time = config
        .flush_ms
        .is_some_and(|ms| now_ms.saturating_sub(inner.last_flush_ms) >= ms as i64);
    if by_count || by_time {
        inner.unflushed_messages = 0;
        inner.last_flush_ms = now_ms;
    }
    by_count || by_time
}

/// Kafka's produce-side checks of a batch, header only.
fn validate(batch: &[u8], config: &LogConfig) -> Result<BatchHeader, LogError> {
    let header = BatchHeader::parse_checked(batch)?;
    if header.total_len() != batch.len() {
        return Err(LogError::InvalidRecord(
            "a partition's record set must hold exactly one v2 batch",
        ));
    }
    if batch.len() > config.max_message_bytes as usize {
        return Err(LogError::RecordTooLarge {
            size: batch.len(),
            max: config.max_message_bytes,
        });
    }
    if batch.len() as u64 > config.effective_segment_bytes() {
        return Err(LogError::RecordListTooLarge {
            size: batch.len(),
            segment_bytes: config.segment_bytes,
        });
    }
    if header.record_count <= 0 {
        return Err(LogError::InvalidRecord("record count must be positive"));
    }
    if i64::from(header.last_offset_delta) + 1 != i64::from(header.record_count) {
        return Err(LogError::InvalidRecord(
            "offset range of the batch does not match its record count",
        ));
    }
    if matches!(header.compression(), Compression::Unknown(_)) {
        return Err(LogError::InvalidRecord("unknown compression codec"));
    }
    if header.has_producer_id() && header.base_sequence < 0 {
        return Err(LogError::InvalidRecord(
            "batch with a producer id has no sequence number",
        ));
    }
    Ok(header)
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        if self.lock().lifecycle == Lifecycle::Open {
            // Not an error: the next open recovers. Worth knowing in production logs though.
            warn!(dir = %self.dir.display(), "partition log dropped without close");
        }
    }
}

#[cfg(test)]
mod tests;
