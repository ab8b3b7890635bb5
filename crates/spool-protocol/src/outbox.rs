//! What a connection has to write: encoded frames, with fetched record batches kept as the
//! buffers they were read into rather than copied in. No I/O: the connection writes it as a
//! [`Buf`], vectored.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// Bytes queued for one connection, in order.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Sealed pieces: encoded bytes and shared record batches.
    parts: VecDeque<Bytes>,
    /// Encoded bytes after the last sealed piece.
    tail: BytesMut,
    /// Bytes in `parts`.
    parts_len: usize,
    /// Encoded bytes sealed into `parts` since the outbox was last empty.
    sealed_encoded: usize,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Where encoders append; these bytes follow everything queued so far.
    pub fn encoded(&mut self) -> &mut BytesMut {
        &mut self.tail
    }

    /// Queues `bytes` after everything queued so far, without copying them.
    pub fn push_shared(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.seal();
        self.parts_len += bytes.len();
        self.parts.push_back(bytes);
    }

    /// Queues everything `other` holds after everything queued so far.
    pub fn append(&mut self, mut other: Outbox) {
        other.seal();
        for part in other.parts {
            self.push_shared(part);
        }
    }

    fn seal(&mut self) {
        if !self.tail.is_empty() {
            let encoded = self.tail.split().freeze();
            self.parts_len += encoded.len();
            self.sealed_encoded += encoded.len();
            self.parts.push_back(encoded);
        }
    }

    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.parts_len + self.tail.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Encoded bytes queued, not counting shared buffers: about what the encoding buffer grew
    /// to, for callers that drop a grown one once it is written (it is reused otherwise).
    pub fn encoded_len(&self) -> usize {
        self.sealed_encoded + self.tail.len()
    }
}

impl Buf for Outbox {
    fn remaining(&self) -> usize {
        self.len()
    }

    fn chunk(&self) -> &[u8] {
        match self.parts.front() {
            Some(part) => part,
            None => &self.tail,
        }
    }

    fn advance(&mut self, mut cnt: usize) {
        while cnt > 0 {
            let Some(front) = self.parts.front_mut() else {
                // `Buf::advance` panics past the end for every implementation; so does this.
                self.tail.advance(cnt);
                break;
            };
            let n = cnt.min(front.len());
            front.advance(n);
            self.parts_len -= n;
            cnt -= n;
            if front.is_empty() {
                self.parts.pop_front();
            }
        }
        if self.parts.is_empty() && self.tail.is_empty() {
            self.sealed_encoded = 0;
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let pieces = self
            .parts
            .iter()
            .map(|p| &p[..])
            .chain(std::iter::once(&self.tail[..]))
            .filter(|p| !p.is_empty());
        let mut n = 0;
        for (slot, piece) in dst.iter_mut().zip(pieces) {
            *slot = IoSlice::new(piece);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(mut out: Outbox, step: usize) -> Vec<u8> {
        let mut seen = Vec::new();
        while out.has_remaining() {
            let n = step.min(out.chunk().len());
            seen.extend_from_slice(&out.chunk()[..n]);
            out.advance(n);
        }
        seen
    }

    fn sample() -> Outbox {
        let mut out = Outbox::new();
        out.encoded().extend_from_slice(b"ab");
        out.push_shared(Bytes::from_static(b"cde"));
        out.push_shared(Bytes::new());
        out.encoded().extend_from_slice(b"f");
        out.push_shared(Bytes::from_static(b"gh"));
        out
    }

    #[test]
    fn pieces_come_out_in_the_order_they_went_in() {
        let out = sample();
        assert_eq!(out.len(), 8);
        assert_eq!(out.encoded_len(), 3, "ab, f");
        let mut slices = [IoSlice::new(&[]); 8];
        let n = out.chunks_vectored(&mut slices);
        let joined: Vec<u8> = slices[..n].iter().flat_map(|s| s.to_vec()).collect();
        assert_eq!(joined, b"abcdefgh");
        assert_eq!(n, 4, "no empty slices");
        for step in [1, 2, 3, 100] {
            assert_eq!(drain(sample(), step), b"abcdefgh", "step {step}");
        }
    }

    #[test]
    fn a_partial_write_resumes_inside_a_piece() {
        let mut out = sample();
        out.advance(3);
        assert_eq!(out.chunk(), b"de");
        let mut slices = [IoSlice::new(&[]); 2];
        assert_eq!(
            out.chunks_vectored(&mut slices),
            2,
            "bounded by the slots given"
        );
        out.advance(5);
        assert!(out.is_empty());
        assert_eq!(out.encoded_len(), 0, "counted afresh once written");
        out.encoded().extend_from_slice(b"x");
        assert_eq!(drain(out, 1), b"x");
    }
}
