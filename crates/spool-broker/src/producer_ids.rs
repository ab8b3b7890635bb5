//! Allocation of idempotent producer ids that stay unique across restarts.
//!
//! A reused id would meet the sequence state a previous producer left in the logs and be
//! refused as out of order, so ids are handed out from blocks whose end is persisted before
//! the first id of the block is used (Kafka allocates blocks from its controller the same way).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const BLOCK: i64 = 1000;
const FILE: &str = "producer-id-block";

/// Hands out producer ids.
#[derive(Debug)]
pub struct ProducerIds {
    path: PathBuf,
    inner: Mutex<Block>,
}

#[derive(Debug)]
struct Block {
    next: i64,
    end: i64,
}

impl ProducerIds {
    /// Opens the allocator; ids continue after the last block reserved by a previous run.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join(FILE);
        let start = match fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<i64>().map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(ProducerIds {
            path,
            inner: Mutex::new(Block {
                next: start,
                end: start,
            }),
        })
    }

    /// Returns a fresh producer id.
    pub fn next(&self) -> std::io::Result<i64> {
        let mut block = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if block.next >= block.end {
            let end = block.end + BLOCK;
            persist(&self.path, end)?;
            block.end = end;
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }
}

fn persist(path: &Path, end: i64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(end.to_string().as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = ProducerIds::open(dir.path()).unwrap();
        let first: Vec<i64> = (0..3).map(|_| a.next().unwrap()).collect();
        assert_eq!(first, vec![0, 1, 2]);
        drop(a);
        let b = ProducerIds::open(dir.path()).unwrap();
        assert_eq!(b.next().unwrap(), BLOCK);
    }
}
