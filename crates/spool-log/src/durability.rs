//! Test-only observer of durability, for power-loss tests.
//!
//! Every successful `fdatasync`/`fsync` made through `fsutil` records the file's length taken
//! just before the call (all bytes written by then are covered), and every directory sync records
//! the entries listed just before it (their names are then durable). From that record,
//! [`power_loss_copy`] builds the tree a power cut at this instant may leave behind: only entries
//! whose directory was synced after they appeared, each file holding only its synced prefix, plus
//! whatever the caller says the disk happened to write beyond it. A segment synced with a zeroed
//! runway past its data keeps that length: zeros, except where later writes reached the disk.
//!
//! The record is process-wide and keyed by canonical path; tests use distinct temporary
//! directories, so they do not see each other's entries.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Per file: (when its length was taken, (the length, how much of it held data)).
static FILES: Mutex<BTreeMap<PathBuf, (u64, Synced)>> = Mutex::new(BTreeMap::new());
/// Per directory: (when it was listed, the entries).
static DIRS: Mutex<BTreeMap<PathBuf, (u64, BTreeSet<OsString>)>> = Mutex::new(BTreeMap::new());
/// Orders observations: two syncs of one file or directory may overlap and end in either
/// order, and the record must keep the one observed last (a later listing has the newer
/// entries, a later length the newer bytes or a truncation).
static CLOCK: AtomicU64 = AtomicU64::new(0);

/// What a sync made durable: `len` bytes, of which the first `data` held what the file holds
/// now there; the rest were zeros (a segment's runway), since overwritten or not.
#[derive(Debug, Clone, Copy)]
struct Synced {
    len: u64,
    data: u64,
}

/// A point in the observation order, taken just before a sync.
pub(crate) fn tick() -> u64 {
    CLOCK.fetch_add(1, Ordering::SeqCst)
}

/// Inserts `value` observed at `at` unless something observed later is already there.
fn keep_latest<V>(map: &mut BTreeMap<PathBuf, (u64, V)>, key: PathBuf, at: u64, value: V) {
    match map.get(&key) {
        Some((seen, _)) if *seen > at => {}
        _ => {
            map.insert(key, (at, value));
        }
    }
}

fn canonical(path: &Path) -> PathBuf {
    if let Ok(p) = fs::canonicalize(path) {
        return p;
    }
    // Gone already (the source of a rename): resolve its directory instead.
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or_else(|_| path.to_path_buf()),
        _ => path.to_path_buf(),
    }
}

/// Records that `f` is durable up to `len` bytes, its length at `at`, and that its bytes past
/// `data` were zeros then.
pub(crate) fn file_synced(f: &File, at: u64, len: u64, data: u64) {
    let Ok(path) = fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())) else {
        return;
    };
    if path.to_string_lossy().ends_with(" (deleted)") {
        return;
    }
    let mut files = FILES.lock().unwrap_or_else(PoisonError::into_inner);
    keep_latest(&mut files, path, at, Synced { len, data });
}

/// Moves what is known of `from` to `to` (a rename; durable once the directory is synced).
pub(crate) fn renamed(from: &Path, to: &Path) {
    let mut files = FILES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(seen) = files.remove(&canonical(from)) {
        files.insert(canonical(to), seen);
    }
}

/// The entries of `dir` now and when they were listed, for [`dir_synced`] after the sync.
pub(crate) fn list(dir: &Path) -> Option<(u64, BTreeSet<OsString>)> {
    let at = tick();
    let entries = fs::read_dir(dir).ok()?;
    let names = entries.filter_map(|e| e.ok().map(|e| e.file_name()));
    Some((at, names.collect()))
}

/// Records that the entries of `dir` listed before its sync are durable.
pub(crate) fn dir_synced(dir: &Path, listed: Option<(u64, BTreeSet<OsString>)>) {
    if let Some((at, names)) = listed {
        let mut dirs = DIRS.lock().unwrap_or_else(PoisonError::into_inner);
        keep_latest(&mut dirs, canonical(dir), at, names);
    }
}

/// Durable length of `path`, if it was ever synced.
pub(crate) fn synced_len(path: &Path) -> Option<u64> {
    FILES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&canonical(path))
        .map(|&(_, s)| s.len)
}

/// One file of a power-loss copy.
#[derive(Debug, Clone)]
pub(crate) struct CopiedFile {
    /// Path in the copy.
    pub path: PathBuf,
    /// Bytes known durable (a prefix of the original).
    pub synced: u64,
    /// Bytes appended after them by the `tail` callback.
    pub tail: Vec<u8>,
    /// Zeros after those: the part of a durable runway that no later write overwrote.
    pub zeros: u64,
}

/// Copies `src` (a directory assumed to survive) to `dst` as a power cut now could leave it.
/// `tail(path, unsynced)` gets each file's bytes past its synced length and returns what to
/// append in the copy (nothing, a prefix of them as partial write-back would, or garbage).
pub(crate) fn power_loss_copy(
    src: &Path,
    dst: &Path,
    tail: &mut dyn FnMut(&Path, &[u8]) -> Vec<u8>,
) -> Vec<CopiedFile> {
    // Read both records first, as of one instant.
    let files = FILES.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let dirs = DIRS.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut out = Vec::new();
    copy_dir(&canonical(src), dst, &files, &dirs, tail, &mut out);
    out
}

fn copy_dir(
    src: &Path,
    dst: &Path,
    files: &BTreeMap<PathBuf, (u64, Synced)>,
    dirs: &BTreeMap<PathBuf, (u64, BTreeSet<OsString>)>,
    tail: &mut dyn FnMut(&Path, &[u8]) -> Vec<u8>,
    out: &mut Vec<CopiedFile>,
) {
    fs::create_dir_all(dst).unwrap();
    let mut created = BTreeSet::new();
    let names = dirs.get(src).map(|(_, n)| n.clone()).unwrap_or_default();
    for name in &names {
        let from = src.join(name);
        let to = dst.join(name);
        let Ok(meta) = fs::metadata(&from) else {
            // Deleted since; its old content is not known. The tests avoid this case.
            continue;
        };
        created.insert(name.clone());
        if meta.is_dir() {
            copy_dir(&from, &to, files, dirs, tail, out);
            continue;
        }
        let content = fs::read(&from).unwrap();
        let seen = files.get(&from).map(|&(_, s)| s);
        let synced = seen.map_or(0, |s| s.data).min(content.len() as u64);
        let mut unsynced = &content[synced as usize..];
        let runway = seen.filter(|s| s.len > s.data).map_or(0, |s| s.len);
        if runway > synced {
            // Zeros still at the end of the runway were there at the sync: not pending writes.
            // (This also drops a last batch's own trailing zero bytes, so such a batch never
            // survives whole: pessimistic, and only for bytes no sync covered.)
            let zeros = unsynced.iter().rev().take_while(|&&b| b == 0).count();
            unsynced = &unsynced[..unsynced.len() - zeros];
        }
        let extra = tail(&from, unsynced);
        let mut bytes = content[..synced as usize].to_vec();
        bytes.extend_from_slice(&extra);
        let before_zeros = bytes.len() as u64;
        // The runway's zeros were durable: the file keeps that length, zeros where nothing
        // written since reached the disk.
        if (bytes.len() as u64) < runway {
            bytes.resize(runway as usize, 0);
        }
        fs::write(&to, &bytes).unwrap();
        // What the disk holds after the cut is durable as it is, for a later cut of the copy.
        FILES.lock().unwrap_or_else(PoisonError::into_inner).insert(
            canonical(&to),
            (
                tick(),
                Synced {
                    len: bytes.len() as u64,
                    data: bytes.len() as u64,
                },
            ),
        );
        out.push(CopiedFile {
            path: to,
            synced,
            tail: extra,
            zeros: bytes.len() as u64 - before_zeros,
        });
    }
    DIRS.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(canonical(dst), (tick(), created));
}
