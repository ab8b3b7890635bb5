//! Length-prefixed Kafka frames, parsed in steps: check, split, advance.
//!
//! An incomplete frame is a normal answer (`Ok(None)`), not an error; a declared length outside
//! `0..=max` is an error before any byte of the body is buffered, so a peer cannot make the
//! reader reserve memory it never sends.

use bytes::{Buf, BytesMut};

use crate::error::ProtocolError;

/// Size of the length prefix.
pub const PREFIX_LEN: usize = 4;

/// Default cap on one request, like Kafka's `socket.request.max.bytes` (100 MiB).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;

/// Splits one whole frame (without its prefix) off the front of `buf`.
///
/// Returns `Ok(None)` until the whole frame has arrived. Reserves room for the rest of the frame
/// only after the length has been checked against `max_len`.
pub fn split_frame(buf: &mut BytesMut, max_len: usize) -> Result<Option<BytesMut>, ProtocolError> {
    if buf.len() < PREFIX_LEN {
        return Ok(None);
    }
    let declared = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if declared < 0 {
        return Err(ProtocolError::NegativeFrameLength(declared));
    }
    let len = declared as usize;
    if len > max_len {
        return Err(ProtocolError::FrameTooLarge { len, max: max_len });
    }
    if buf.len() < PREFIX_LEN + len {
        buf.reserve(PREFIX_LEN + len - buf.len());
        return Ok(None);
    }
    buf.advance(PREFIX_LEN);
    Ok(Some(buf.split_to(len)))
}

/// Starts a frame in `out`: writes a placeholder length and returns where it is.
pub fn begin_frame(out: &mut BytesMut) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; PREFIX_LEN]);
    at
}

/// Completes a frame started by [`begin_frame`] by writing its length.
pub fn end_frame(out: &mut BytesMut, at: usize) {
    let len = (out.len() - at - PREFIX_LEN) as i32;
    out[at..at + PREFIX_LEN].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_whole_frame_then_splits() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&5i32.to_be_bytes());
        buf.extend_from_slice(b"hel");
        assert!(split_frame(&mut buf, 100).unwrap().is_none());
        buf.extend_from_slice(b"lo!");
        let frame = split_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!(&frame[..], b"hello");
        assert_eq!(&buf[..], b"!");
    }

    #[test]
    fn rejects_oversized_and_negative_lengths_before_buffering() {
        let mut buf = BytesMut::from(&(1i32 << 30).to_be_bytes()[..]);
        assert!(matches!(
            split_frame(&mut buf, 1024),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        assert!(buf.capacity() < 1024);
        let mut buf = BytesMut::from(&(-7i32).to_be_bytes()[..]);
        assert!(matches!(
            split_frame(&mut buf, 1024),
            Err(ProtocolError::NegativeFrameLength(-7))
        ));
    }

    #[test]
    fn frame_writer_sets_length() {
        let mut out = BytesMut::new();
        let at = begin_frame(&mut out);
        out.extend_from_slice(b"abc");
        end_frame(&mut out, at);
        assert_eq!(&out[..], &[0, 0, 0, 3, b'a', b'b', b'c']);
    }
}
