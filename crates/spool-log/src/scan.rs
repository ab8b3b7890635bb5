//! Walking the batches of a segment file: for recovery (with CRC checks), for reads and for
//! timestamp searches (headers only).
//!
//! The file is read in large chunks and batches are parsed in place with
//! [`BatchHeader::parse`]; a batch that does not fit in the current chunk triggers a read of a
//! chunk large enough for it. Reads use positioned I/O (`pread`) on a shared file handle, so
//! they need no lock: bytes below a segment's recorded size never change.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use spool_protocol::batch::{BatchError, BatchHeader, Batches};

use crate::error::{io_err, LogError};

/// Chunk size for recovery scans: large sequential reads.
pub(crate) const RECOVERY_CHUNK: usize = 1 << 20;
/// Chunk size for timestamp searches, which start near their target thanks to the indexes.
pub(crate) const SEARCH_CHUNK: usize = 64 << 10;
/// Smallest chunk a read uses, so that tiny `max_bytes` values do not mean tiny reads.
const MIN_READ_CHUNK: usize = 16 << 10;

/// One step of a walk.
#[derive(Debug)]
pub(crate) enum Walk {
    /// A whole batch at byte `pos`.
    Batch {
        /// Its header.
        header: BatchHeader,
        /// Byte position in the file.
        pos: u64,
    },
    /// No bytes left.
    End,
    /// The bytes at `pos` are not a whole valid batch (torn tail or corruption).
    Invalid {
        /// Byte position in the file.
        pos: u64,
        /// What is wrong.
        error: BatchError,
    },
}

/// Walks batches from `start` up to `end` (exclusive) in a file.
pub(crate) struct BatchWalker<'f> {
    file: &'f File,
    end: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
    chunk: usize,
    check_crc: bool,
}

impl<'f> BatchWalker<'f> {
    /// A walker over `file[start..end]`, reading `chunk` bytes at a time.
    pub(crate) fn new(file: &'f File, start: u64, end: u64, chunk: usize, check_crc: bool) -> Self {
        BatchWalker {
            file,
            end,
            pos: start,
            buf: Vec::new(),
            buf_start: start,
            chunk: chunk.max(1),
            check_crc,
        }
    }

    /// The next batch, the end, or the first invalid position. After `Invalid` the walk is over.
    pub(crate) fn next_batch(&mut self) -> io::Result<Walk> {
        loop {
            if self.pos >= self.end {
                return Ok(Walk::End);
            }
            let at = (self.pos - self.buf_start) as usize;
            let avail = &self.buf[at.min(self.buf.len())..];
            let parsed = if self.check_crc {
                BatchHeader::parse_checked(avail)
            } else {
                BatchHeader::parse(avail)
            };
            match parsed {
                Ok(header) => {
                    let pos = self.pos;
                    self.pos += header.total_len() as u64;
                    return Ok(Walk::Batch { header, pos });
                }
                Err(BatchError::Truncated { needed, .. }) => {
                    let remaining = self.end - self.pos;
                    if avail.len() as u64 >= remaining || needed as u64 > remaining {
                        // The file itself ends inside this batch.
                        let pos = self.pos;
                        self.pos = self.end;
                        let error = BatchError::Truncated {
                            needed,
                            available: remaining as usize,
                        };
                        return Ok(Walk::Invalid { pos, error });
                    }
                    let want = (needed.max(self.chunk) as u64).min(remaining) as usize;
                    self.fill(want)?;
                }
                Err(error) => {
                    let pos = self.pos;
                    self.pos = self.end;
                    return Ok(Walk::Invalid { pos, error });
                }
            }
        }
    }

    /// Reads `len` bytes at the current position into the buffer.
    fn fill(&mut self, len: usize) -> io::Result<()> {
        self.buf = read_exact_at(self.file, len, self.pos)?;
        self.buf_start = self.pos;
        Ok(())
    }

    /// `file[start..end]`, taken from the buffer when it holds them, else read.
    pub(crate) fn into_bytes(self, start: u64, end: u64) -> io::Result<Bytes> {
        let buf_end = self.buf_start + self.buf.len() as u64;
        if start >= self.buf_start && end <= buf_end {
            let from = (start - self.buf_start) as usize;
            let to = (end - self.buf_start) as usize;
            return Ok(Bytes::from(self.buf).slice(from..to));
        }
        let out = read_exact_at(self.file, (end - start) as usize, start)?;
        Ok(Bytes::from(out))
    }
}

/// `len` bytes of `file` at `pos`. On Linux the buffer is not zeroed before the read: at 1 MiB
/// per fetch, zeroing cost ~3% of the broker's CPU while consumers read.
#[cfg(target_os = "linux")]
fn read_exact_at(file: &File, len: usize, pos: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let at = pos + buf.len() as u64;
        // Reads at most the spare capacity; should `with_capacity` have given more than `len`,
        // the extra is cut off below.
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "failed to fill whole buffer",
                ))
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

#[cfg(not(target_os = "linux"))]
fn read_exact_at(file: &File, len: usize, pos: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, pos)?;
    Ok(buf)
}

/// Whole batches from the one containing `offset`: the first always whole, the following ones
/// while the total stays within `max_bytes`. Starts walking at `start` (from the offset index).
pub(crate) fn read_batches(
    file: &File,
    path: impl Fn() -> PathBuf,
    start: u64,
    end: u64,
    offset: i64,
    max_bytes: usize,
    index_interval: u32,
) -> Result<Bytes, LogError> {
    // One read usually covers both the way from the indexed position and the answer.
    let chunk = max_bytes
        .saturating_add(index_interval as usize)
        .max(MIN_READ_CHUNK);
    let mut walker = BatchWalker::new(file, start, end, chunk, false);
    loop {
        match walker.next_batch().map_err(|e| io_err("read", path())(e))? {
            Walk::Batch { header, pos } if header.last_offset() >= offset => {
                let want = max_bytes.max(header.total_len()) as u64;
                let stop = end.min(pos.saturating_add(want));
                let bytes = walker
                    .into_bytes(pos, stop)
                    .map_err(|e| io_err("read", path())(e))?;
                return Ok(whole_batches(bytes));
            }
            Walk::Batch { .. } => {}
            Walk::End => return Ok(Bytes::new()),
            Walk::Invalid { pos, error } => {
                return Err(LogError::CorruptSegment {
                    path: path(),
                    position: pos,
                    error,
                })
            }
        }
    }
}

/// The first batch from `start` whose maximum timestamp is at least `timestamp`.
pub(crate) fn find_timestamp(
    file: &File,
    path: &Path,
    start: u64,
    end: u64,
    timestamp: i64,
) -> Result<Option<BatchHeader>, LogError> {
    let mut walker = BatchWalker::new(file, start, end, SEARCH_CHUNK, false);
    loop {
        match walker.next_batch().map_err(io_err("read", path))? {
            Walk::Batch { header, .. } if header.max_timestamp >= timestamp => {
                return Ok(Some(header))
            }
            Walk::Batch { .. } => {}
            Walk::End => return Ok(None),
            Walk::Invalid { pos, error } => {
                return Err(LogError::CorruptSegment {
                    path: path.to_path_buf(),
                    position: pos,
                    error,
                })
            }
        }
    }
}

/// The longest prefix of `bytes` made of whole batches.
fn whole_batches(bytes: Bytes) -> Bytes {
    let mut end = 0;
    for item in Batches::new(&bytes) {
        match item {
            Ok((_, range)) => end = range.end,
            Err(_) => break,
        }
    }
    bytes.slice(..end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spool_protocol::batch::set_base_offset;
    use std::io::Write;

    #[test]
    fn reads_exactly_the_bytes_asked_for_or_fails_at_the_end() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let file = f.as_file();
        assert_eq!(read_exact_at(file, 100_000, 7).unwrap(), &data[7..100_007]);
        assert_eq!(read_exact_at(file, 0, 5).unwrap(), b"");
        let err = read_exact_at(file, 10, 199_995).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// A file of `n` batches of `records` records each, offsets contiguous from 0.
    fn file_of(n: usize, records: i32, value_len: usize) -> (tempfile::NamedTempFile, Vec<u64>) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut positions = Vec::new();
        let mut pos = 0u64;
        for i in 0..n {
            let mut b = crate::testutil::BatchSpec {
                records,
                value_len,
                ..Default::default()
            }
            .build();
            set_base_offset(&mut b, i as i64 * records as i64);
            positions.push(pos);
            pos += b.len() as u64;
            f.write_all(&b).unwrap();
        }
        (f, positions)
    }

    #[test]
    fn walker_refills_across_small_chunks_and_big_batches() {
        let (f, positions) = file_of(5, 3, 300);
        let len = f.as_file().metadata().unwrap().len();
        for chunk in [1, 61, 100, 1000, 1 << 20] {
            let mut w = BatchWalker::new(f.as_file(), 0, len, chunk, true);
            let mut seen = Vec::new();
            while let Walk::Batch { pos, .. } = w.next_batch().unwrap() {
                seen.push(pos);
            }
            assert_eq!(seen, positions, "chunk {chunk}");
        }
    }

    #[test]
    fn walker_reports_torn_tail() {
        let (f, positions) = file_of(2, 1, 10);
        let len = f.as_file().metadata().unwrap().len();
        let mut w = BatchWalker::new(f.as_file(), 0, len - 1, 64, true);
        assert!(matches!(
            w.next_batch().unwrap(),
            Walk::Batch { pos: 0, .. }
        ));
        match w.next_batch().unwrap() {
            Walk::Invalid { pos, error } => {
                assert_eq!(pos, positions[1]);
                assert!(matches!(error, BatchError::Truncated { .. }));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(w.next_batch().unwrap(), Walk::End));
    }

    #[test]
    fn read_returns_first_batch_whole_and_respects_max_bytes() {
        let (f, positions) = file_of(4, 2, 100);
        let len = f.as_file().metadata().unwrap().len();
        let one = positions[1] as usize;
        let p = Path::new("x");
        let got = read_batches(f.as_file(), || p.to_path_buf(), 0, len, 3, 1, 0).unwrap();
        assert_eq!(
            got.len(),
            one,
            "first batch whole even when larger than max_bytes"
        );
        assert_eq!(BatchHeader::parse(&got).unwrap().base_offset, 2);
        let got = read_batches(
            f.as_file(),
            || p.to_path_buf(),
            0,
            len,
            2,
            2 * one + one / 2,
            0,
        )
        .unwrap();
        assert_eq!(got.len(), 2 * one);
        let got = read_batches(
            f.as_file(),
            || p.to_path_buf(),
            positions[2],
            len,
            7,
            1 << 20,
            0,
        )
        .unwrap();
        assert_eq!(BatchHeader::parse(&got).unwrap().base_offset, 6);
    }
}
