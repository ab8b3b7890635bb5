//! Opening a partition directory: finding its segments, validating them and rebuilding what
//! cannot be trusted.
//!
//! After a clean shutdown (a marker written last by `close`) only the active segment is walked
//! with CRC checks; sealed segments take their indexes from their files (rebuilt when missing or
//! inconsistent) and the producer state comes from the snapshot written at close. Otherwise, or
//! if any of that does not add up, every segment is walked with CRC checks, which rebuilds the
//! indexes and the producer state in the same pass. A walk stops at the first torn, corrupt or
//! non-contiguous batch; the file is cut there and later segments are deleted, so the log is
//! always the longest valid prefix. Producer state then comes from the newest snapshot within the
//! recovered log plus the batches after it (see [`load`]).

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use tracing::{debug, info, warn};

use crate::error::{io_err, LogError};
use crate::fsutil::{
    parse_segment_name, remove_if_exists, segment_file, sync_data, sync_dir, INDEX_EXT, LOG_EXT,
    TIME_INDEX_EXT,
};
use crate::producer_state::ProducerStates;
use crate::scan::{BatchWalker, Walk, RECOVERY_CHUNK, SEARCH_CHUNK};
use crate::segment::Segment;

/// Written by `close` after everything else is durable.
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
/// Extension of producer-state snapshots, `<offset, 20 digits>.snapshot` as in Kafka: the state
/// of every batch below that offset.
pub(crate) const SNAPSHOT_EXT: &str = "snapshot";
/// The single close-time snapshot of earlier versions; read once after a clean shutdown.
const LEGACY_SNAPSHOT_FILE: &str = "producer-state.json";

/// A recovered log.
pub(crate) struct Loaded {
    /// Never empty; the last one is active.
    pub segments: VecDeque<Segment>,
    pub producers: ProducerStates,
}

/// What a partition directory holds.
struct Listing {
    /// Base offsets of the `.log` files, ascending.
    segments: Vec<i64>,
    /// Offsets of the producer-state snapshots, ascending.
    snapshots: Vec<i64>,
}

/// Opens (creating if needed) the log in `dir` and brings it to a consistent state.
///
/// Producer state comes from the newest snapshot inside the recovered log plus the batches after
/// it, so it keeps producers whose batches retention deleted; without a usable snapshot it is
/// rebuilt from the whole log.
pub(crate) fn load(dir: &Path, index_interval: u32, now_ms: i64) -> Result<Loaded, LogError> {
    create_dir_durably(dir)?;
    let listing = list_dir(dir)?;
    let marker = dir.join(CLEAN_SHUTDOWN_FILE);
    let clean = marker.exists();
    let legacy_path = dir.join(LEGACY_SNAPSHOT_FILE);
    let legacy = fs::read(&legacy_path)
        .ok()
        .and_then(|b| ProducerStates::from_snapshot(&b));
    // The marker is single-use: from here on, a crash must lead to a full recovery.
    remove_if_exists(&marker).map_err(io_err("remove", &marker))?;
    remove_if_exists(&legacy_path).map_err(io_err("remove", &legacy_path))?;
    sync_dir(dir).map_err(io_err("sync directory", dir))?;

    let fast = if clean {
        load_after_clean_shutdown(dir, &listing.segments, index_interval, now_ms)?.and_then(
            |segments| {
                let leo = segments.back().map_or(0, |s| s.next_offset);
                let producers = if listing.snapshots.last() == Some(&leo) {
                    read_snapshot(dir, leo)
                } else {
                    legacy.and_then(|(end, p)| (end == leo).then_some(p))
                };
                producers.map(|producers| Loaded {
                    segments,
                    producers,
                })
            },
        )
    } else {
        None
    };
    let mut loaded = match fast {
        Some(loaded) => loaded,
        None => {
            if clean {
                info!(dir = %dir.display(), "clean-shutdown state incomplete, recovering all segments");
            }
            load_full(dir, &listing, index_interval, now_ms)?
        }
    };
    if loaded.segments.is_empty() {
        let seg = Segment::create(dir, 0, now_ms).map_err(io_err("create segment", dir))?;
        loaded.segments.push_back(seg);
        // The first segment's name must be durable before anything is acknowledged from it; the
        // group commit only syncs the directory for segments created later.
        sync_dir(dir).map_err(io_err("sync directory", dir))?;
    }
    let log_start = loaded.segments.front().map_or(0, |s| s.base_offset);
    let leo = loaded.segments.back().map_or(0, |s| s.next_offset);
    prune_snapshots(dir, &listing.snapshots, log_start, leo)?;
    Ok(loaded)
}

/// Creates `dir` if missing, and makes its name durable in its parent: the group commit syncs
/// the partition directory, never the data directory above it.
fn create_dir_durably(dir: &Path) -> Result<(), LogError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent).map_err(io_err("sync directory", parent))?;
    }
    Ok(())
}

/// Removes snapshots outside `[log_start, leo]`: below, they describe deleted data (a newer one
/// at or above the log start covers it); above, a cut tail, and a later append reaching their
/// offset again would make them describe batches that are not in the log.
fn prune_snapshots(
    dir: &Path,
    snapshots: &[i64],
    log_start: i64,
    leo: i64,
) -> Result<(), LogError> {
    let mut removed = false;
    for &offset in snapshots {
        if offset < log_start || offset > leo {
            let path = segment_file(dir, offset, SNAPSHOT_EXT);
            remove_if_exists(&path).map_err(io_err("remove", &path))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir).map_err(io_err("sync directory", dir))?;
    }
    Ok(())
}

/// The snapshot at `offset`, `None` if missing or unreadable (or not for that offset).
fn read_snapshot(dir: &Path, offset: i64) -> Option<ProducerStates> {
    let path = segment_file(dir, offset, SNAPSHOT_EXT);
    let bytes = fs::read(&path).ok()?;
    match ProducerStates::from_snapshot(&bytes) {
        Some((end, state)) if end == offset => Some(state),
        _ => {
            warn!(snapshot = %path.display(), "ignoring unreadable producer-state snapshot");
            None
        }
    }
}

/// Segment and snapshot files. Removes leftovers: temporary files and index files without a log.
fn list_dir(dir: &Path) -> Result<Listing, LogError> {
    let mut logs = Vec::new();
    let mut snapshots = Vec::new();
    let mut indexes = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = parse_segment_name(name, LOG_EXT) {
            logs.push(base);
        } else if let Some(offset) = parse_segment_name(name, SNAPSHOT_EXT) {
            snapshots.push(offset);
        } else if let Some(base) =
            parse_segment_name(name, INDEX_EXT).or_else(|| parse_segment_name(name, TIME_INDEX_EXT))
        {
            indexes.push((base, entry.path()));
        } else if name.ends_with(".tmp") {
            let path = entry.path();
            remove_if_exists(&path).map_err(io_err("remove", &path))?;
        }
    }
    logs.sort_unstable();
    snapshots.sort_unstable();
    for (base, path) in indexes {
        if logs.binary_search(&base).is_err() {
            remove_if_exists(&path).map_err(io_err("remove", &path))?;
        }
    }
    Ok(Listing {
        segments: logs,
        snapshots,
    })
}

/// The fast path. `None` when the files contradict each other (the caller then recovers
/// everything).
fn load_after_clean_shutdown(
    dir: &Path,
    bases: &[i64],
    index_interval: u32,
    now_ms: i64,
) -> Result<Option<VecDeque<Segment>>, LogError> {
    let mut segments = VecDeque::with_capacity(bases.len());
    for (i, &base) in bases.iter().enumerate() {
        let path = segment_file(dir, base, LOG_EXT);
        let mut seg = Segment::open(dir, base, now_ms).map_err(io_err("open", &path))?;
        match bases.get(i + 1) {
            Some(&next) => {
                let loaded = seg
                    .load_indexes(dir, next)
                    .map_err(io_err("read index", &path))?
                    && tail_is_whole(&seg).map_err(io_err("read", &path))?;
                if !loaded {
                    info!(segment = %path.display(), "rebuilding missing or invalid index");
                    seg = Segment::open(dir, base, now_ms).map_err(io_err("open", &path))?;
                    if !walk_segment(&mut seg, &path, index_interval, None, now_ms)?
                        || seg.next_offset != next
                    {
                        return Ok(None);
                    }
                    seg.seal(dir).map_err(io_err("write index", &path))?;
                }
            }
            None => {
                let expected = segments.back().map_or(base, |s: &Segment| s.next_offset);
                if base != expected {
                    return Ok(None);
                }
                walk_segment(&mut seg, &path, index_interval, None, now_ms)?;
            }
        }
        segments.push_back(seg);
    }
    Ok(Some(segments))
}

/// The full recovery: every segment walked with CRC checks.
fn load_full(
    dir: &Path,
    listing: &Listing,
    index_interval: u32,
    now_ms: i64,
) -> Result<Loaded, LogError> {
    let bases = &listing.segments[..];
    let mut segments: VecDeque<Segment> = VecDeque::with_capacity(bases.len());
    let mut producers = ProducerStates::default();
    for (i, &base) in bases.iter().enumerate() {
        let path = segment_file(dir, base, LOG_EXT);
        if let Some(prev) = segments.back() {
            if prev.next_offset != base {
                warn!(
                    segment = %path.display(),
                    expected = prev.next_offset,
                    "segment does not continue the log; deleting it and later segments"
                );
                delete_segments(dir, &bases[i..])?;
                break;
            }
        }
        let mut seg = Segment::open(dir, base, now_ms).map_err(io_err("open", &path))?;
        let complete = walk_segment(
            &mut seg,
            &path,
            index_interval,
            Some(&mut producers),
            now_ms,
        )?;
        let last = i + 1 == bases.len();
        if !last {
            seg.seal(dir).map_err(io_err("write index", &path))?;
        }
        segments.push_back(seg);
        if !complete && !last {
            warn!(segment = %path.display(), "log ends inside this segment; deleting later segments");
            delete_segments(dir, &bases[i + 1..])?;
            break;
        }
    }
    // Durability of what was recovered, whatever the page cache held before.
    for seg in &segments {
        let path = segment_file(dir, seg.base_offset, LOG_EXT);
        sync_data(&seg.file).map_err(io_err("sync", &path))?;
    }
    sync_dir(dir).map_err(io_err("sync directory", dir))?;
    let log_start = segments.front().map_or(0, |s| s.base_offset);
    let leo = segments.back().map_or(0, |s| s.next_offset);
    for &offset in listing.snapshots.iter().rev() {
        if offset < log_start || offset > leo {
            continue;
        }
        if let Some(mut from_snapshot) = read_snapshot(dir, offset) {
            replay(dir, &segments, offset, &mut from_snapshot, now_ms)?;
            info!(dir = %dir.display(), snapshot = offset, "producer state loaded from snapshot");
            producers = from_snapshot;
            break;
        }
    }
    Ok(Loaded {
        segments,
        producers,
    })
}

/// Applies to `producers` the batches of the (already validated) log from offset `from` on.
fn replay(
    dir: &Path,
    segments: &VecDeque<Segment>,
    from: i64,
    producers: &mut ProducerStates,
    now_ms: i64,
) -> Result<(), LogError> {
    for seg in segments.iter().filter(|s| s.next_offset > from) {
        let start = if seg.base_offset >= from {
            0
        } else {
            u64::from(seg.index.lookup((from - seg.base_offset) as u32))
        };
        let path = segment_file(dir, seg.base_offset, LOG_EXT);
        let mut walker = BatchWalker::new(&seg.file, start, seg.size, RECOVERY_CHUNK, false);
        loop {
            match walker.next_batch().map_err(io_err("read", &path))? {
                Walk::Batch { header, .. } => {
                    if header.base_offset >= from {
                        producers.record(&header, now_ms);
                    }
                }
                Walk::End => break,
                Walk::Invalid { pos, error } => {
                    return Err(LogError::CorruptSegment {
                        path,
                        position: pos,
                        error,
                    })
                }
            }
        }
    }
    Ok(())
}

/// Walks a segment from its start with CRC checks, rebuilding its indexes and statistics (and
/// the producer state when given), and cuts the file after the last valid batch. Returns false
/// when it had to cut.
pub(crate) fn walk_segment(
    seg: &mut Segment,
    path: &Path,
    index_interval: u32,
    mut producers: Option<&mut ProducerStates>,
    now_ms: i64,
) -> Result<bool, LogError> {
    let file = Arc::clone(&seg.file);
    let file_len = file.metadata().map_err(io_err("stat", path))?.len();
    let mut walker = BatchWalker::new(&file, 0, file_len, RECOVERY_CHUNK, true);
    let stop = loop {
        match walker.next_batch().map_err(io_err("read", path))? {
            Walk::Batch { header, pos } => {
                if header.base_offset != seg.next_offset {
                    break Some(format!(
                        "batch at byte {pos} has base offset {}, expected {}",
                        header.base_offset, seg.next_offset
                    ));
                }
                seg.track(&header, pos, index_interval);
                if let Some(p) = producers.as_deref_mut() {
                    p.record(&header, now_ms);
                }
            }
            Walk::End => break None,
            Walk::Invalid { pos, error } => {
                if zeros_from(&file, pos, file_len).map_err(io_err("read", path))? {
                    // The runway of a segment fsynced often (`Segment::extend_runway`): the end
                    // of the data, not damage.
                    break None;
                }
                break Some(format!("{error} at byte {pos}"));
            }
        }
    };
    if seg.size < file_len {
        match &stop {
            None => debug!(
                segment = %path.display(),
                kept_bytes = seg.size,
                zero_bytes = file_len - seg.size,
                "cutting the zeroed runway off"
            ),
            Some(reason) => warn!(
                segment = %path.display(),
                kept_bytes = seg.size,
                dropped_bytes = file_len - seg.size,
                "truncating log: {reason}"
            ),
        }
        file.set_len(seg.size).map_err(io_err("truncate", path))?;
        sync_data(&file).map_err(io_err("sync", path))?;
    }
    Ok(stop.is_none())
}

/// True when the batches from a loaded sealed segment's last index entry end exactly at its
/// size, the last one just below the next segment's base. A crash can leave a zero runway
/// that a roll had cut but not yet made durable; the clean-shutdown path must not take it for
/// data (close cuts every runway durably, so this is a second line of defence).
fn tail_is_whole(seg: &Segment) -> io::Result<bool> {
    let start = u64::from(seg.index.lookup(u32::MAX));
    let mut walker = BatchWalker::new(&seg.file, start, seg.size, SEARCH_CHUNK, false);
    let mut last = None;
    loop {
        match walker.next_batch()? {
            Walk::Batch { header, .. } => last = Some(header.last_offset()),
            Walk::End => return Ok(last.map_or(seg.size == 0, |l| l + 1 == seg.next_offset)),
            Walk::Invalid { .. } => return Ok(false),
        }
    }
}

/// True when `file[from..len]` holds only zero bytes.
fn zeros_from(file: &File, from: u64, len: u64) -> io::Result<bool> {
    let mut buf = vec![0u8; (len.saturating_sub(from)).min(RECOVERY_CHUNK as u64) as usize];
    let mut pos = from;
    while pos < len {
        let n = (len - pos).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], pos)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

fn delete_segments(dir: &Path, bases: &[i64]) -> Result<(), LogError> {
    for &base in bases {
        Segment::delete_files(dir, base).map_err(io_err("delete segment", dir))?;
    }
    Ok(())
}
