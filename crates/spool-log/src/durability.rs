//! Test-only observer of durability, for power-loss tests.
//!
//! Every successful `fdatasync`/`fsync` made through `fsutil` records the file's length taken
//! just before the call (all bytes written by then are covered), and every directory sync records
//! the entries listed just before it (their names are then durable). From that record,
//! [`power_loss_copy`] builds the tree a power cut at this instant may leave behind: only entries
//! whose directory was synced after they appeared, each file holding only its synced prefix, plus
//! whatever the caller says the disk happened to write beyond it.
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

/// Per file: (when its length was taken, the length).
static FILES: Mutex<BTreeMap<PathBuf, (u64, u64)>> = Mutex::new(BTreeMap::new());
/// Per directory: (when it was listed, the entries).
static DIRS: Mutex<BTreeMap<PathBuf, (u64, BTreeSet<OsString>)>> = Mutex::new(BTreeMap::new());
/// Orders observations: two syncs of one file or directory may overlap and end in either
/// order, and the record must keep the one observed last (a later listing has the newer
/// entries, a later length the newer bytes or a truncation).
static CLOCK: AtomicU64 = AtomicU64::new(0);

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

/// Records that `f` is durable up to `len` bytes, its length at `at`.
pub(crate) fn file_synced(f: &File, at: u64, len: u64) {
    let Ok(path) = fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())) else {
        return;
    };
    if path.to_string_lossy().ends_with(" (deleted)") {
        return;
    }
    let mut files = FILES.lock().unwrap_or_else(PoisonError::into_inner);
    keep_latest(&mut files, path, at, len);
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
        .map(|&(_, len)| len)
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
    files: &BTreeMap<PathBuf, (u64, u64)>,
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
        let synced = files
            .get(&from)
            .map_or(0, |&(_, len)| len)
            .min(content.len() as u64);
        let extra = tail(&from, &content[synced as usize..]);
        let mut bytes = content[..synced as usize].to_vec();
        bytes.extend_from_slice(&extra);
        fs::write(&to, &bytes).unwrap();
        // What the disk holds after the cut is durable as it is, for a later cut of the copy.
        FILES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(canonical(&to), (tick(), bytes.len() as u64));
        out.push(CopiedFile {
            path: to,
            synced,
            tail: extra,
        });
    }
    DIRS.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(canonical(dst), (tick(), created));
}
