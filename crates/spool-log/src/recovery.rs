//! Opening a partition directory: finding its segments, validating them and rebuilding what
//! cannot be trusted.
//!
//! After a clean shutdown (a marker written last by `close`) only the active segment is walked
//! with CRC checks; sealed segments take their indexes from their files (rebuilt when missing or
//! inconsistent) and the producer state comes from the snapshot written at close. Otherwise, or
//! if any of that does not add up, every segment is walked with CRC checks, which rebuilds the
//! indexes and the producer state in the same pass. A walk stops at the first torn, corrupt or
//! non-contiguous batch; the file is cut there and later segments are deleted, so the log is
//! always the longest valid prefix.

use std::collections::VecDeque;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};

use crate::error::{io_err, LogError};
use crate::fsutil::{
    parse_segment_name, remove_if_exists, segment_file, sync_dir, INDEX_EXT, LOG_EXT,
    TIME_INDEX_EXT,
};
use crate::producer_state::ProducerStates;
use crate::scan::{BatchWalker, Walk, RECOVERY_CHUNK};
use crate::segment::Segment;

/// Written by `close` after everything else is durable.
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
/// Producer state as of the log end at close.
pub(crate) const PRODUCER_SNAPSHOT_FILE: &str = "producer-state.json";

/// A recovered log.
pub(crate) struct Loaded {
    /// Never empty; the last one is active.
    pub segments: VecDeque<Segment>,
    pub producers: ProducerStates,
}

/// Opens (creating if needed) the log in `dir` and brings it to a consistent state.
pub(crate) fn load(dir: &Path, index_interval: u32, now_ms: i64) -> Result<Loaded, LogError> {
    fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    let bases = list_segments(dir)?;
    let marker = dir.join(CLEAN_SHUTDOWN_FILE);
    let clean = marker.exists();
    let snapshot_path = dir.join(PRODUCER_SNAPSHOT_FILE);
    let snapshot = match fs::read(&snapshot_path) {
        Ok(bytes) => ProducerStates::from_snapshot(&bytes),
        Err(_) => None,
    };
    // Both are single-use: from here on, a crash must lead to a full recovery.
    remove_if_exists(&marker).map_err(io_err("remove", &marker))?;
    remove_if_exists(&snapshot_path).map_err(io_err("remove", &snapshot_path))?;
    sync_dir(dir).map_err(io_err("sync directory", dir))?;

    let fast = match (clean, snapshot) {
        (true, Some((end, producers))) => {
            load_after_clean_shutdown(dir, &bases, index_interval, now_ms)?.and_then(|segments| {
                let leo = segments.back().map_or(0, |s| s.next_offset);
                (leo == end).then_some(Loaded {
                    segments,
                    producers,
                })
            })
        }
        _ => None,
    };
    let mut loaded = match fast {
        Some(loaded) => loaded,
        None => {
            if clean {
                info!(dir = %dir.display(), "clean-shutdown state incomplete, recovering all segments");
            }
            load_full(dir, &bases, index_interval, now_ms)?
        }
    };
    if loaded.segments.is_empty() {
        let seg = Segment::create(dir, 0, now_ms).map_err(io_err("create segment", dir))?;
        loaded.segments.push_back(seg);
    }
    Ok(loaded)
}

/// Base offsets of the `.log` files, ascending. Removes leftovers: temporary files and index
/// files without a log.
fn list_segments(dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = parse_segment_name(name, LOG_EXT) {
            logs.push(base);
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
    for (base, path) in indexes {
        if logs.binary_search(&base).is_err() {
            remove_if_exists(&path).map_err(io_err("remove", &path))?;
        }
    }
    Ok(logs)
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
                if !seg
                    .load_indexes(dir, next)
                    .map_err(io_err("read index", &path))?
                {
                    info!(segment = %path.display(), "rebuilding missing or invalid index");
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
    bases: &[i64],
    index_interval: u32,
    now_ms: i64,
) -> Result<Loaded, LogError> {
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
        seg.file.sync_data().map_err(io_err("sync", &path))?;
    }
    sync_dir(dir).map_err(io_err("sync directory", dir))?;
    Ok(Loaded {
        segments,
        producers,
    })
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
            Walk::Invalid { pos, error } => break Some(format!("{error} at byte {pos}")),
        }
    };
    if let Some(reason) = &stop {
        warn!(
            segment = %path.display(),
            kept_bytes = seg.size,
            dropped_bytes = file_len - seg.size,
            "truncating log: {reason}"
        );
        file.set_len(seg.size).map_err(io_err("truncate", path))?;
        file.sync_data().map_err(io_err("sync", path))?;
    }
    Ok(stop.is_none())
}

fn delete_segments(dir: &Path, bases: &[i64]) -> Result<(), LogError> {
    for &base in bases {
        Segment::delete_files(dir, base).map_err(io_err("delete segment", dir))?;
    }
    Ok(())
}
