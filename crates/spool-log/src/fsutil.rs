//! File-system helpers shared by the partition log and the log manager: Kafka's file names,
//! crash-safe replacement of small files, and the wall clock.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Extension of segment data files.
pub(crate) const LOG_EXT: &str = "log";
/// Extension of offset index files.
pub(crate) const INDEX_EXT: &str = "index";
/// Extension of time index files.
pub(crate) const TIME_INDEX_EXT: &str = "timeindex";

/// `<dir>/<base offset, 20 digits>.<ext>`, Kafka's segment file naming.
pub(crate) fn segment_file(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

/// Base offset from a segment file name (`00000000000000000042.log` -> 42).
pub(crate) fn parse_segment_name(name: &str, ext: &str) -> Option<i64> {
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new content:
/// write a temporary file, fsync it, rename it over, fsync the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        sync_all(&f)?;
    }
    fs::rename(&tmp, path)?;
    #[cfg(test)]
    crate::durability::renamed(&tmp, path);
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes creations, renames and deletions inside `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    // Listed before the sync: every entry seen then is covered by it.
    #[cfg(test)]
    let names = crate::durability::list(dir);
    File::open(dir)?.sync_all()?;
    #[cfg(test)]
    crate::durability::dir_synced(dir, names);
    Ok(())
}

/// `fdatasync`: the file's data (and its size) are durable once this returns. For the
/// power-loss observer every byte of the file is data: a segment with a runway is synced with
/// [`sync_segment_data`] instead.
pub(crate) fn sync_data(f: &File) -> io::Result<()> {
    sync_segment_data(f, u64::MAX)
}

/// `fdatasync` of a segment file whose data ended at `data_end` when the caller decided to
/// sync it: bytes past that are a zeroed runway or later appends. The same system call; the
/// distinction only tells the power-loss observer which bytes hold data as of the sync.
pub(crate) fn sync_segment_data(f: &File, data_end: u64) -> io::Result<()> {
    // Length taken before the sync: everything written by then is covered by it.
    #[cfg(test)]
    let (at, len) = (crate::durability::tick(), f.metadata()?.len());
    f.sync_data()?;
    #[cfg(test)]
    crate::durability::file_synced(f, at, len, data_end.min(len));
    #[cfg(not(test))]
    let _ = data_end;
    Ok(())
}

/// `fsync`: data and metadata.
pub(crate) fn sync_all(f: &File) -> io::Result<()> {
    #[cfg(test)]
    let (at, len) = (crate::durability::tick(), f.metadata()?.len());
    f.sync_all()?;
    #[cfg(test)]
    crate::durability::file_synced(f, at, len, len);
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    system_time_ms(SystemTime::now())
}

/// A file time in milliseconds since the Unix epoch (0 before the epoch).
pub(crate) fn system_time_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Deletes a file that may already be gone.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        let p = segment_file(Path::new("/d"), 42, LOG_EXT);
        assert_eq!(p, Path::new("/d/00000000000000000042.log"));
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_segment_name(name, LOG_EXT), Some(42));
        assert_eq!(parse_segment_name(name, INDEX_EXT), None);
        assert_eq!(parse_segment_name("42.log", LOG_EXT), None);
        assert_eq!(
            parse_segment_name("0000000000000000004x.log", LOG_EXT),
            None
        );
    }

    #[test]
    fn atomic_write_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("meta.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!dir.path().join("meta.json.tmp").exists());
    }
}
