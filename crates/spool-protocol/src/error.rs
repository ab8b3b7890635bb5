//! Errors of the protocol layer, kept apart from Kafka error codes (which travel in responses).

use crate::guard::GuardError;

/// Why a frame could not be turned into a request (or a response into a frame).
///
/// Any of these closes the connection: Kafka does the same for requests it cannot parse.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Declared frame length above the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// Declared length.
        len: usize,
        /// Configured cap.
        max: usize,
    },
    /// Declared frame length below zero.
    #[error("negative frame length {0}")]
    NegativeFrameLength(i32),
    /// Frame shorter than a request header.
    #[error("frame of {0} bytes is too short for a request header")]
    ShortFrame(usize),
    /// API key this broker does not know.
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// Known API at a version this broker does not implement.
    #[error("{api} v{version} is not supported")]
    UnsupportedVersion {
        /// API name.
        api: &'static str,
        /// Requested version.
        version: i16,
    },
    /// The pre-decode bounds check refused the frame.
    #[error("malformed request: {0}")]
    Guard(#[from] GuardError),
    /// kafka-protocol could not decode (or encode) the message.
    #[error("cannot {action} {api} v{version}: {detail}")]
    Codec {
        /// "decode" or "encode".
        action: &'static str,
        /// API name.
        api: &'static str,
        /// Version.
        version: i16,
        /// What the codec said.
        detail: String,
    },
}
