//! One segment: a `.log` file of batches named by its base offset, plus its in-memory indexes
//! and the statistics that rolling and retention decide on.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use spool_protocol::batch::BatchHeader;

use crate::fsutil::{
    remove_if_exists, segment_file, sync_all, system_time_ms, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT,
};
use crate::index::{OffsetIndex, TimeIndex};

/// Kafka's "no timestamp".
pub(crate) const NO_TIMESTAMP: i64 = -1;

/// Zeroed bytes kept ahead of the data of a segment that is fsynced often (see
/// [`Segment::extend_runway`]).
pub(crate) const RUNWAY_BYTES: u64 = 1 << 20;
/// Most zeros one append writes, so the partition lock is never held for long. Not smaller:
/// the fsync that first covers new zeros past the file's old end pays for the growth once, and
/// with 64 KiB top-ups (one such fsync per four 16 KiB batches) most of the gain was gone.
const RUNWAY_TOP_UP: u64 = 256 << 10;
/// `runway_end` when a failed write left the file's length unknown: cut it back to the data.
const UNKNOWN_LENGTH: u64 = u64::MAX;
/// Zeros written per call; a static buffer, so extending allocates nothing.
const ZERO_CHUNK: usize = 64 << 10;
static ZEROS: [u8; ZERO_CHUNK] = [0; ZERO_CHUNK];

/// A segment of a partition log. Only the last segment of a log is appended to.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset of the first batch, and the file name.
    pub base_offset: i64,
    /// The `.log` file. Shared so reads and fsyncs run without the partition lock.
    pub file: Arc<File>,
    /// Bytes of whole, valid batches. The file holds nothing else but, past them, zeros up to
    /// `runway_end` (in the active segment only).
    pub size: u64,
    /// One past the last offset stored; `base_offset` while empty.
    pub next_offset: i64,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    bytes_since_index: u64,
    /// Largest batch max timestamp, or -1.
    pub max_timestamp: i64,
    /// Base offset of the first batch that reached `max_timestamp`, or -1.
    pub offset_of_max_timestamp: i64,
    /// Max timestamp of the first batch: what `segment.ms` is measured from (as in Kafka).
    first_batch_timestamp: i64,
    /// When this segment was created or loaded; the age fallback when batches carry no timestamp.
    created_ms: i64,
    /// Last append (or file modification when loaded); the retention fallback without timestamps.
    last_modified_ms: i64,
    /// Index files were written since they were last fsynced.
    indexes_unsynced: bool,
    /// How long the file may be: past `size`, zeros up to here (a runway) when it is greater;
    /// [`UNKNOWN_LENGTH`] after a failed write. At most `size` when the file holds data only.
    runway_end: u64,
}

impl Segment {
    fn with_file(base_offset: i64, file: File, now_ms: i64) -> Self {
        Segment {
            base_offset,
            file: Arc::new(file),
            size: 0,
            next_offset: base_offset,
            index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index: 0,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: -1,
            first_batch_timestamp: NO_TIMESTAMP,
            created_ms: now_ms,
            last_modified_ms: now_ms,
            indexes_unsynced: false,
            runway_end: 0,
        }
    }

    /// A new, empty segment. A file already carrying that name lies past the log end (left by
    /// an interrupted deletion or recovery), so it is emptied.
    pub(crate) fn create(dir: &Path, base_offset: i64, now_ms: i64) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(segment_file(dir, base_offset, LOG_EXT))?;
        Ok(Self::with_file(base_offset, file, now_ms))
    }

    /// An existing segment file, not yet scanned: statistics empty, size 0.
    pub(crate) fn open(dir: &Path, base_offset: i64, now_ms: i64) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(segment_file(dir, base_offset, LOG_EXT))?;
        let modified = file.metadata()?.modified().map(system_time_ms);
        let mut seg = Self::with_file(base_offset, file, now_ms);
        seg.last_modified_ms = modified.unwrap_or(now_ms);
        Ok(seg)
    }

    /// Offset relative to the base, as the indexes store it. Rolling keeps it within `i32`.
    fn relative(&self, offset: i64) -> u32 {
        (offset - self.base_offset) as u32
    }

    /// Updates indexes and statistics for the batch written at `pos`. Shared by appends and
    /// recovery, so both build identical indexes.
    pub(crate) fn track(&mut self, header: &BatchHeader, pos: u64, index_interval: u32) {
        if pos == 0 {
            self.first_batch_timestamp = header.max_timestamp;
        }
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.base_offset;
        }
        // Kafka's rule: an entry once more than `index.interval.bytes` were written since the
        // previous one. The first batch needs none: position 0 is the index's implicit floor.
        if self.bytes_since_index > u64::from(index_interval) {
            self.index
                .push(self.relative(header.base_offset), pos as u32);
            if self.offset_of_max_timestamp >= 0 {
                self.time_index.maybe_push(
                    self.max_timestamp,
                    self.relative(self.offset_of_max_timestamp),
                );
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += header.total_len() as u64;
        self.size = pos + header.total_len() as u64;
        self.next_offset = header.last_offset() + 1;
    }

    /// Writes `batch` (whose header is `header`, offsets assigned) at the end of the file.
    /// On failure the file is cut back so no partial batch stays behind.
    pub(crate) fn append(
        &mut self,
        batch: &[u8],
        header: &BatchHeader,
        index_interval: u32,
        now_ms: i64,
    ) -> io::Result<()> {
        if let Err(e) = self.file.write_all_at(batch, self.size) {
            self.runway_end = match self.file.set_len(self.size) {
                Ok(()) => 0,
                Err(_) => UNKNOWN_LENGTH,
            };
            return Err(e);
        }
        self.track(header, self.size, index_interval);
        self.last_modified_ms = now_ms;
        Ok(())
    }

    /// Keeps zeros written past the data: tops them up, by at most [`RUNWAY_TOP_UP`] per call,
    /// towards [`RUNWAY_BYTES`] (never past `limit`, the segment's size) whenever fewer than
    /// half of them are left.
    ///
    /// Why: an `fdatasync` after an append that grew the file must also write the inode (the
    /// size changed) and, on ext4, allocate blocks; after an append that overwrote bytes
    /// already in the file it writes the data alone. Measured on this project's VM (ext4):
    /// 16 KiB append + fdatasync 150-170 us growing, 80-90 us overwriting zeros. The zeros
    /// reach the disk with the next fsync. PostgreSQL zero-fills its WAL segments for the same
    /// reason. Readers never see the zeros (they stop at `size`), a roll or a close cuts them
    /// off, and recovery takes a zero tail for the end of the data.
    pub(crate) fn extend_runway(&mut self, limit: u64) -> io::Result<()> {
        if self.runway_end == UNKNOWN_LENGTH || self.runway_end >= self.size + RUNWAY_BYTES / 2 {
            return Ok(());
        }
        let from = self.runway_end.max(self.size);
        let to = (from + RUNWAY_TOP_UP)
            .min(self.size + RUNWAY_BYTES)
            .min(limit);
        let mut pos = from;
        while pos < to {
            let n = (to - pos).min(ZERO_CHUNK as u64) as usize;
            if let Err(e) = self.file.write_all_at(&ZEROS[..n], pos) {
                // A short write may have grown the file: only a cut makes its length known.
                self.runway_end = UNKNOWN_LENGTH;
                return Err(e);
            }
            pos += n as u64;
        }
        self.runway_end = self.runway_end.max(to);
        Ok(())
    }

    /// True when the file may be longer than the data.
    pub(crate) fn has_runway(&self) -> bool {
        self.runway_end > self.size
    }

    /// Cuts the file back to the data's length (durable only after its next fsync).
    pub(crate) fn trim_runway(&mut self) -> io::Result<()> {
        self.file.set_len(self.size)?;
        self.runway_end = 0;
        Ok(())
    }

    /// Records that a cut made without `&mut self` (after a roll, outside the partition lock)
    /// is durable.
    pub(crate) fn runway_trimmed(&mut self) {
        self.runway_end = 0;
    }

    /// Takes indexes and statistics from the segment's index files, for a sealed segment after
    /// a clean shutdown. `next_offset` is the next segment's base. Returns false when the files
    /// are missing or do not fit the segment, so the caller rebuilds from the log.
    pub(crate) fn load_indexes(&mut self, dir: &Path, next_offset: i64) -> io::Result<bool> {
        let size = self.file.metadata()?.len();
        let offsets = (next_offset - self.base_offset).max(0) as u64;
        let read = |ext| match fs::read(segment_file(dir, self.base_offset, ext)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        };
        let (Some(index), Some(time_index)) = (read(INDEX_EXT)?, read(TIME_INDEX_EXT)?) else {
            return Ok(false);
        };
        let (Some(index), Some(time_index)) = (
            OffsetIndex::decode(&index, offsets, size),
            TimeIndex::decode(&time_index, offsets),
        ) else {
            return Ok(false);
        };
        if (size == 0) != (offsets == 0) {
            return Ok(false);
        }
        if let Some((ts, rel)) = time_index.last() {
            self.max_timestamp = ts;
            self.offset_of_max_timestamp = self.base_offset + i64::from(rel);
        }
        self.index = index;
        self.time_index = time_index;
        self.size = size;
        self.next_offset = next_offset;
        Ok(true)
    }

    /// Completes the time index (its last entry is the segment's maximum) and writes both
    /// index files; the segment takes no more appends. A runway stays: the caller cuts it (see
    /// [`has_runway`](Self::has_runway)) and makes the cut durable before a clean shutdown.
    pub(crate) fn seal(&mut self, dir: &Path) -> io::Result<()> {
        if self.offset_of_max_timestamp >= 0 {
            self.time_index.maybe_push(
                self.max_timestamp,
                self.relative(self.offset_of_max_timestamp),
            );
        }
        fs::write(
            segment_file(dir, self.base_offset, INDEX_EXT),
            self.index.encode(),
        )?;
        fs::write(
            segment_file(dir, self.base_offset, TIME_INDEX_EXT),
            self.time_index.encode(),
        )?;
        self.indexes_unsynced = true;
        Ok(())
    }

    /// Fsyncs index files written since the last call.
    pub(crate) fn sync_indexes(&mut self, dir: &Path) -> io::Result<()> {
        if self.indexes_unsynced {
            for ext in [INDEX_EXT, TIME_INDEX_EXT] {
                sync_all(&File::open(segment_file(dir, self.base_offset, ext))?)?;
            }
            self.indexes_unsynced = false;
        }
        Ok(())
    }

    /// What retention compares with `retention.ms`: the newest timestamp, or the last write
    /// when batches carry none (Kafka's `largestTimestamp`).
    pub(crate) fn largest_timestamp(&self) -> i64 {
        if self.max_timestamp >= 0 {
            self.max_timestamp
        } else {
            self.last_modified_ms
        }
    }

    /// How long this segment has been collecting, judged by a new batch's timestamp (Kafka's
    /// `timeWaitedForRoll`): batch time minus the first batch's time, or wall time since
    /// creation when there are no timestamps.
    pub(crate) fn time_waited_for_roll(&self, now_ms: i64, batch_timestamp: i64) -> i64 {
        if self.first_batch_timestamp >= 0 {
            batch_timestamp.saturating_sub(self.first_batch_timestamp)
        } else {
            now_ms.saturating_sub(self.created_ms)
        }
    }

    /// True when nothing has been written.
    pub(crate) fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Removes the segment's files.
    pub(crate) fn delete_files(dir: &Path, base_offset: i64) -> io::Result<()> {
        for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT] {
            remove_if_exists(&segment_file(dir, base_offset, ext))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::batch;
    use spool_protocol::batch::set_base_offset;

    fn append(seg: &mut Segment, records: i32, ts: i64, interval: u32) {
        let mut b = batch(records, ts);
        set_base_offset(&mut b, seg.next_offset);
        let h = BatchHeader::parse_checked(&b).unwrap();
        seg.append(&b, &h, interval, 0).unwrap();
    }

    #[test]
    fn indexes_every_interval_and_tracks_max_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 100, 0).unwrap();
        let one = batch(1, 0).len() as u64;
        for ts in [50, 40, 60, 55] {
            append(&mut seg, 1, ts, 0);
        }
        assert_eq!(seg.next_offset, 104);
        assert_eq!(seg.size, 4 * one);
        assert_eq!(
            seg.index.len(),
            3,
            "every batch but the first with interval 0"
        );
        assert_eq!(seg.index.lookup(2), 2 * one as u32);
        assert_eq!((seg.max_timestamp, seg.offset_of_max_timestamp), (60, 102));
        assert_eq!(seg.time_waited_for_roll(0, 1_050), 1_000);
    }

    #[test]
    fn the_runway_grows_by_bounded_top_ups_within_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let len = |seg: &Segment| seg.file.metadata().unwrap().len();
        let mut seg = Segment::create(dir.path(), 0, 0).unwrap();
        append(&mut seg, 1, 0, 0);
        let size = seg.size;
        assert!(!seg.has_runway());
        seg.extend_runway(u64::MAX).unwrap();
        assert_eq!(len(&seg), size + RUNWAY_TOP_UP);
        seg.extend_runway(u64::MAX).unwrap();
        assert_eq!(len(&seg), size + 2 * RUNWAY_TOP_UP);
        seg.extend_runway(u64::MAX).unwrap();
        assert_eq!(
            len(&seg),
            size + RUNWAY_BYTES / 2,
            "half a runway left: enough"
        );
        append(&mut seg, 1, 0, 0);
        assert_eq!(
            len(&seg),
            size + RUNWAY_BYTES / 2,
            "the batch overwrote zeros"
        );
        let data = fs::read(segment_file(dir.path(), 0, LOG_EXT)).unwrap();
        assert!(data[seg.size as usize..].iter().all(|&b| b == 0));
        seg.trim_runway().unwrap();
        assert_eq!(len(&seg), seg.size);
        assert!(!seg.has_runway());

        let mut small = Segment::create(dir.path(), 100, 0).unwrap();
        append(&mut small, 1, 0, 0);
        small.extend_runway(small.size + 1000).unwrap();
        assert_eq!(
            len(&small),
            small.size + 1000,
            "never past the segment's size"
        );
    }

    #[test]
    fn seal_then_load_gives_the_same_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 0, 0).unwrap();
        for ts in 0..20 {
            append(&mut seg, 2, ts * 10, 100);
        }
        seg.seal(dir.path()).unwrap();
        seg.sync_indexes(dir.path()).unwrap();
        let mut loaded = Segment::open(dir.path(), 0, 0).unwrap();
        assert!(loaded.load_indexes(dir.path(), seg.next_offset).unwrap());
        assert_eq!(loaded.index, seg.index);
        assert_eq!(loaded.time_index, seg.time_index);
        assert_eq!(loaded.max_timestamp, seg.max_timestamp);
        assert_eq!(loaded.size, seg.size);
        let mut wrong = Segment::open(dir.path(), 0, 0).unwrap();
        assert!(
            !wrong.load_indexes(dir.path(), 3).unwrap(),
            "entries past the end"
        );
        fs::remove_file(segment_file(dir.path(), 0, INDEX_EXT)).unwrap();
        assert!(
            !wrong.load_indexes(dir.path(), seg.next_offset).unwrap(),
            "missing file"
        );
    }
}
