//! A segment's sparse indexes, held in memory and saved in Kafka's file layout.
//!
//! Offset index entries are (relative offset u32, file position u32); time index entries are
//! (timestamp i64, relative offset u32); both big-endian. Entries are kept in memory and the files
//! are rewritten whole when a segment is sealed or the log is closed: an unclean shutdown rebuilds
//! every index from the log anyway, so writing entries one by one would buy nothing.

/// Bytes per offset index entry.
const OFFSET_ENTRY: usize = 8;
/// Bytes per time index entry.
const TIME_ENTRY: usize = 12;

/// Maps the base offset of some batches to their byte position in the segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    /// Adds the batch starting at `relative_offset` found at `position`; both grow monotonically.
    pub(crate) fn push(&mut self, relative_offset: u32, position: u32) {
        debug_assert!(self
            .entries
            .last()
            .is_none_or(|&(o, p)| o < relative_offset && p < position));
        self.entries.push((relative_offset, position));
    }

    /// Position of the last indexed batch starting at or before `relative_offset`; 0 (the
    /// segment start) when none is.
    pub(crate) fn lookup(&self, relative_offset: u32) -> u32 {
        let n = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        if n == 0 {
            0
        } else {
            self.entries[n - 1].1
        }
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The file content.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY);
        for &(o, p) in &self.entries {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        out
    }

    /// Reads a file's content; `None` when it cannot describe a segment of `offsets` offsets
    /// and `log_size` bytes (torn, out of order, or pointing past the end).
    pub(crate) fn decode(bytes: &[u8], offsets: u64, log_size: u64) -> Option<Self> {
        let entries = bytes.chunks_exact(OFFSET_ENTRY);
        if !entries.remainder().is_empty() {
            return None;
        }
        let mut index = OffsetIndex::default();
        for e in entries {
            let o = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            let p = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
            let ordered = index
                .entries
                .last()
                .is_none_or(|&(lo, lp)| lo < o && lp < p);
            if !ordered || u64::from(o) >= offsets || u64::from(p) >= log_size {
                return None;
            }
            index.entries.push((o, p));
        }
        Some(index)
    }
}

/// Maps growing maximum timestamps to the batch that first reached them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Records that the batch at `relative_offset` brought the segment's maximum timestamp to
    /// `timestamp`; ignored unless the timestamp grew (and is a real one, not -1).
    pub(crate) fn maybe_push(&mut self, timestamp: i64, relative_offset: u32) {
        let last = self.entries.last().map_or(-1, |&(t, _)| t);
        if timestamp > last {
            self.entries.push((timestamp, relative_offset));
        }
    }

    /// Relative offset of the last entry whose timestamp is below `timestamp`: every batch
    /// before that one has a smaller maximum timestamp, so a search may start there.
    pub(crate) fn lookup_below(&self, timestamp: i64) -> Option<u32> {
        let n = self.entries.partition_point(|&(t, _)| t < timestamp);
        (n > 0).then(|| self.entries[n - 1].1)
    }

    /// The newest entry: the segment's maximum timestamp once the segment is sealed.
    pub(crate) fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    /// The file content.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY);
        for &(t, o) in &self.entries {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&o.to_be_bytes());
        }
        out
    }

    /// Reads a file's content; `None` when it cannot describe a segment of `offsets` offsets.
    pub(crate) fn decode(bytes: &[u8], offsets: u64) -> Option<Self> {
        let entries = bytes.chunks_exact(TIME_ENTRY);
        if !entries.remainder().is_empty() {
            return None;
        }
        let mut index = TimeIndex::default();
        for e in entries {
            let mut t = [0u8; 8];
            t.copy_from_slice(&e[..8]);
            let t = i64::from_be_bytes(t);
            let o = u32::from_be_bytes([e[8], e[9], e[10], e[11]]);
            let ordered = index
                .entries
                .last()
                .map_or(t >= 0, |&(lt, lo)| lt < t && lo <= o);
            if !ordered || u64::from(o) >= offsets {
                return None;
            }
            index.entries.push((t, o));
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_is_a_floor() {
        let mut idx = OffsetIndex::default();
        assert_eq!(idx.lookup(5), 0);
        idx.push(10, 400);
        idx.push(20, 900);
        assert_eq!(idx.lookup(9), 0);
        assert_eq!(idx.lookup(10), 400);
        assert_eq!(idx.lookup(19), 400);
        assert_eq!(idx.lookup(25), 900);
    }

    #[test]
    fn offset_index_round_trips_and_rejects_bad_files() {
        let mut idx = OffsetIndex::default();
        idx.push(3, 100);
        idx.push(7, 200);
        let bytes = idx.encode();
        assert_eq!(OffsetIndex::decode(&bytes, 10, 300), Some(idx.clone()));
        assert_eq!(
            OffsetIndex::decode(&bytes[..12], 10, 300),
            None,
            "torn entry"
        );
        assert_eq!(
            OffsetIndex::decode(&bytes, 7, 300),
            None,
            "offset past segment"
        );
        assert_eq!(
            OffsetIndex::decode(&bytes, 10, 200),
            None,
            "position past log"
        );
        let mut swapped = bytes[8..].to_vec();
        swapped.extend_from_slice(&bytes[..8]);
        assert_eq!(OffsetIndex::decode(&swapped, 10, 300), None, "out of order");
    }

    #[test]
    fn time_index_keeps_growing_maxima_only() {
        let mut idx = TimeIndex::default();
        idx.maybe_push(-1, 0);
        idx.maybe_push(100, 0);
        idx.maybe_push(90, 1);
        idx.maybe_push(100, 2);
        idx.maybe_push(150, 3);
        assert_eq!(idx.last(), Some((150, 3)));
        assert_eq!(idx.lookup_below(100), None);
        assert_eq!(idx.lookup_below(101), Some(0));
        assert_eq!(idx.lookup_below(1000), Some(3));
        let bytes = idx.encode();
        assert_eq!(TimeIndex::decode(&bytes, 4), Some(idx));
        assert_eq!(TimeIndex::decode(&bytes, 3), None);
        assert_eq!(TimeIndex::decode(&bytes[..20], 4), None);
    }
}
