//! Record-batch compression codecs, as Kafka frames them, with bounded decompression.
//!
//! Kafka-specific framing is the reason these wrappers exist: snappy comes either raw or in the
//! xerial stream framing the Java client writes; lz4 uses the LZ4 frame format; gzip and zstd are
//! plain streams. Decompression stops at a caller-given output cap so a small compressed payload
//! cannot expand into gigabytes.

use std::io::{Read, Write};

/// Compression codec stored in the low three bits of a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// No compression.
    None,
    /// gzip (deflate with gzip header).
    Gzip,
    /// snappy (raw or xerial-framed).
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// zstd.
    Zstd,
    /// Attribute values 5..7: not a codec Kafka defines.
    Unknown(u8),
}

/// Why (de)compression failed.
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    /// The codec id is not one Kafka defines.
    #[error("unknown compression codec {0}")]
    UnknownCodec(u8),
    /// Output would exceed the configured cap.
    #[error("decompressed size exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Cap in bytes.
        limit: usize,
    },
    /// The compressed bytes are malformed.
    #[error("{codec} data is corrupt: {detail}")]
    Corrupt {
        /// Codec name.
        codec: &'static str,
        /// What the decoder said.
        detail: String,
    },
}

const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;
// The Java client's SnappyOutputStream uses 32 KiB blocks; matching it keeps our output familiar.
const XERIAL_BLOCK: usize = 32 * 1024;

impl Compression {
    /// Codec from batch attributes.
    pub fn from_attributes(attributes: i16) -> Self {
        match (attributes & 0x07) as u8 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => Compression::Unknown(other),
        }
    }

    /// Attribute bits for this codec.
    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
            Compression::Unknown(x) => x as i16,
        }
    }

    /// Kafka's config name (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
            Compression::Unknown(_) => "unknown",
        }
    }

    /// Parses a `compression.type` value.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            _ => return None,
        })
    }
}

fn corrupt(codec: &'static str, e: impl std::fmt::Display) -> CompressionError {
    CompressionError::Corrupt {
        codec,
        detail: e.to_string(),
    }
}

/// Compresses `input` with `codec`, appending to `out`.
pub fn compress(
    codec: Compression,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    match codec {
        Compression::None => out.extend_from_slice(input),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            enc.write_all(input).map_err(|e| corrupt("gzip", e))?;
            enc.finish().map_err(|e| corrupt("gzip", e))?;
        }
        Compression::Snappy => {
            out.extend_from_slice(&XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes()); // version
            out.extend_from_slice(&1i32.to_be_bytes()); // minimum compatible version
            let mut enc = snap::raw::Encoder::new();
            for block in input.chunks(XERIAL_BLOCK) {
                let compressed = enc.compress_vec(block).map_err(|e| corrupt("snappy", e))?;
                out.extend_from_slice(&(compressed.len() as i32).to_be_bytes());
                out.extend_from_slice(&compressed);
            }
        }
        Compression::Lz4 => {
            let mut enc = lz4_flex::frame::FrameEncoder::new(out);
            enc.write_all(input).map_err(|e| corrupt("lz4", e))?;
            enc.finish().map_err(|e| corrupt("lz4", e))?;
        }
        Compression::Zstd => {
            let compressed = zstd::bulk::compress(input, 3).map_err(|e| corrupt("zstd", e))?;
            out.extend_from_slice(&compressed);
        }
        Compression::Unknown(x) => return Err(CompressionError::UnknownCodec(x)),
    }
    Ok(())
}

/// Reads a whole stream into `out`, failing once more than `limit` bytes come out.
///
/// `out` grows by doubling, as `read_to_end` would, but never beyond `limit` bytes of output:
/// uncapped doubling would let a bomb stopped at `limit + 1` bytes hold a buffer of `2 * limit`.
fn read_capped(
    reader: impl Read,
    codec: &'static str,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let start = out.len();
    // One byte past the cap is enough to tell a bomb; stop the decoder there.
    let mut taken = reader.take((limit as u64).saturating_add(1));
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match taken.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                out.truncate(start);
                return Err(corrupt(codec, e));
            }
        };
        if out.len() - start + n > limit {
            out.truncate(start);
            return Err(CompressionError::TooLarge { limit });
        }
        if out.capacity() - out.len() < n {
            let target = (out.capacity().max(chunk.len()) * 2)
                .max(out.len() + n)
                .min(start + limit);
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

fn snappy_raw(input: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), CompressionError> {
    // The raw format states its decompressed length up front: check it before allocating.
    let len = snap::raw::decompress_len(input).map_err(|e| corrupt("snappy", e))?;
    if len > limit {
        return Err(CompressionError::TooLarge { limit });
    }
    let start = out.len();
    out.resize(start + len, 0);
    let n = snap::raw::Decoder::new()
        .decompress(input, &mut out[start..])
        .map_err(|e| corrupt("snappy", e))?;
    out.truncate(start + n);
    Ok(())
}

/// Decompresses `input` into `out`, producing at most `limit` bytes.
pub fn decompress(
    codec: Compression,
    input: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    match codec {
        Compression::None => {
            if input.len() > limit {
                return Err(CompressionError::TooLarge { limit });
            }
            out.extend_from_slice(input);
            Ok(())
        }
        Compression::Gzip => read_capped(flate2::read::GzDecoder::new(input), "gzip", limit, out),
        Compression::Lz4 => {
            read_capped(lz4_flex::frame::FrameDecoder::new(input), "lz4", limit, out)
        }
        Compression::Zstd => {
            // A frame stating its size up front is refused before decoding, as raw snappy is.
            if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(input) {
                if size > limit as u64 {
                    return Err(CompressionError::TooLarge { limit });
                }
            }
            // The window a streamed frame declares is left at zstd's default ceiling (128 MiB,
            // as Kafka's zstd-jni has it): producers at high levels declare large windows
            // whatever they compress, and refusing those would refuse real clients.
            let dec =
                zstd::stream::read::Decoder::with_buffer(input).map_err(|e| corrupt("zstd", e))?;
            read_capped(dec, "zstd", limit, out)
        }
        Compression::Snappy => {
            if input.len() >= XERIAL_HEADER_LEN && input[..8] == XERIAL_MAGIC {
                let start = out.len();
                let mut rest = &input[XERIAL_HEADER_LEN..];
                while !rest.is_empty() {
                    if rest.len() < 4 {
                        return Err(corrupt("snappy", "truncated xerial block length"));
                    }
                    let n = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                    if n < 0 || n as usize > rest.len() - 4 {
                        return Err(corrupt("snappy", "xerial block length exceeds input"));
                    }
                    let block = &rest[4..4 + n as usize];
                    let room = limit - (out.len() - start);
                    snappy_raw(block, room, out).map_err(|e| match e {
                        CompressionError::TooLarge { .. } => CompressionError::TooLarge { limit },
                        other => other,
                    })?;
                    rest = &rest[4 + n as usize..];
                }
                Ok(())
            } else {
                snappy_raw(input, limit, out)
            }
        }
        Compression::Unknown(x) => Err(CompressionError::UnknownCodec(x)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn round_trips_every_codec() {
        let input: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for codec in ALL {
            let mut c = Vec::new();
            compress(codec, &input, &mut c).unwrap();
            let mut d = Vec::new();
            decompress(codec, &c, input.len(), &mut d).unwrap();
            assert_eq!(d, input, "{codec:?}");
        }
    }

    #[test]
    fn decompression_bombs_stop_at_the_limit() {
        let input = vec![0u8; 10 << 20];
        for codec in ALL {
            let mut c = Vec::new();
            compress(codec, &input, &mut c).unwrap();
            let mut d = Vec::new();
            let err = decompress(codec, &c, 1 << 20, &mut d).unwrap_err();
            assert!(
                matches!(err, CompressionError::TooLarge { .. }),
                "{codec:?}: {err}"
            );
            assert!(d.len() <= (1 << 20) + 1, "{codec:?} buffered {}", d.len());
        }
    }

    /// A bomb stopped at the cap leaves no buffer larger than the cap behind (plain
    /// `read_to_end` doubling would have grown it to twice the cap).
    #[test]
    fn stopped_bombs_never_grow_the_buffer_past_the_cap() {
        let input = vec![0u8; 8 << 20];
        let limit = (1 << 20) + 12345;
        for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
            let mut c = Vec::new();
            compress(codec, &input, &mut c).unwrap();
            let mut d = Vec::new();
            assert!(decompress(codec, &c, limit, &mut d).is_err());
            assert!(
                d.capacity() <= limit,
                "{codec:?}: capacity {}",
                d.capacity()
            );
            // Output exactly at the cap is accepted, in a buffer of exactly the cap.
            let mut d = Vec::new();
            decompress(codec, &c[..], 8 << 20, &mut d).unwrap();
            assert_eq!(d.len(), 8 << 20, "{codec:?}");
            assert!(
                d.capacity() <= 8 << 20,
                "{codec:?}: capacity {}",
                d.capacity()
            );
        }
    }

    /// A zstd bomb in a second frame, behind an honest first one, is stopped by the streaming
    /// cap (the up-front check reads only the first frame's size).
    #[test]
    fn zstd_bomb_behind_an_honest_frame_stops_at_the_cap() {
        let mut c = Vec::new();
        compress(Compression::Zstd, b"x", &mut c).unwrap();
        compress(Compression::Zstd, &vec![0u8; 8 << 20], &mut c).unwrap();
        let mut d = Vec::new();
        let err = decompress(Compression::Zstd, &c, 1 << 20, &mut d).unwrap_err();
        assert!(matches!(err, CompressionError::TooLarge { .. }), "{err}");
        assert!(d.capacity() <= 1 << 20, "capacity {}", d.capacity());
    }

    /// A zstd frame stating a content size above the cap is refused before decoding.
    #[test]
    fn zstd_frame_declaring_more_than_the_cap_is_refused_up_front() {
        let c = zstd::bulk::compress(&vec![0u8; 4 << 20], 3).unwrap();
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&c).unwrap(),
            Some(4 << 20)
        );
        let mut d = Vec::new();
        let err = decompress(Compression::Zstd, &c, 1 << 20, &mut d).unwrap_err();
        assert!(matches!(err, CompressionError::TooLarge { .. }), "{err}");
        assert_eq!(d.capacity(), 0, "refused before any output");
    }

    #[test]
    fn raw_snappy_is_accepted() {
        let raw = snap::raw::Encoder::new()
            .compress_vec(b"hello hello hello")
            .unwrap();
        let mut d = Vec::new();
        decompress(Compression::Snappy, &raw, 100, &mut d).unwrap();
        assert_eq!(d, b"hello hello hello");
    }

    #[test]
    fn garbage_is_an_error_for_every_codec() {
        for codec in ALL.into_iter().skip(1) {
            let mut d = Vec::new();
            assert!(
                decompress(codec, &[1, 2, 3, 4, 5, 6, 7], 1000, &mut d).is_err(),
                "{codec:?}"
            );
        }
    }
}
