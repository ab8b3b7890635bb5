//! Request decoding and response encoding over the kafka-protocol crate's message schemas.
//!
//! Every request frame passes [`crate::guard::check_request`] before kafka-protocol sees it,
//! because the crate sizes vectors from declared counts without checking them.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::error::ProtocolError;
use crate::fetch_frame;
use crate::frame;
use crate::guard::{self, GuardLimits};
use crate::outbox::Outbox;

/// The fixed-position fields at the start of every request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderPrefix {
    /// API key as sent (may be unknown).
    pub api_key: i16,
    /// API version as sent.
    pub api_version: i16,
    /// Correlation id to echo.
    pub correlation_id: i32,
}

/// Reads api key, version and correlation id without decoding anything else, so even a request
/// we cannot decode can be answered or logged by name.
pub fn peek_header(frame: &[u8]) -> Result<HeaderPrefix, ProtocolError> {
    if frame.len() < 8 {
        return Err(ProtocolError::ShortFrame(frame.len()));
    }
    Ok(HeaderPrefix {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        api_version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    /// The API.
    pub api_key: ApiKey,
    /// The version the client used.
    pub version: i16,
    /// Decoded header (correlation id, client id).
    pub header: RequestHeader,
    /// Decoded body.
    pub body: RequestKind,
}

/// Human-readable API name for logs and errors.
pub fn api_name(key: ApiKey) -> &'static str {
    // Debug of a fieldless enum is its variant name, which is Kafka's API name.
    api_names::name(key)
}

mod api_names {
    use kafka_protocol::messages::ApiKey;
    use std::collections::HashMap;
    use std::sync::OnceLock;

    pub(super) fn name(key: ApiKey) -> &'static str {
        static NAMES: OnceLock<HashMap<i16, &'static str>> = OnceLock::new();
        let names = NAMES.get_or_init(|| {
            ApiKey::iter()
                .map(|k| (k as i16, &*Box::leak(format!("{k:?}").into_boxed_str())))
                .collect()
        });
        names.get(&(key as i16)).copied().unwrap_or("Unknown")
    }
}

/// Checks and decodes a request frame (header and body, without the length prefix).
///
/// `supported` says whether this side implements `(api, version)`; anything else is refused
/// before decoding.
pub fn decode_request(
    frame: Bytes,
    limits: &GuardLimits,
    supported: impl Fn(ApiKey, i16) -> bool,
) -> Result<Request, ProtocolError> {
    let prefix = peek_header(&frame)?;
    let api_key = ApiKey::try_from(prefix.api_key)
        .map_err(|_| ProtocolError::UnknownApiKey(prefix.api_key))?;
    let version = prefix.api_version;
    if !supported(api_key, version) {
        return Err(ProtocolError::UnsupportedVersion {
            api: api_name(api_key),
            version,
        });
    }
    guard::check_request(&frame, limits)?;
    let codec_err = |detail: String| ProtocolError::Codec {
        action: "decode",
        api: api_name(api_key),
        version,
        detail,
    };
    let mut buf = frame;
    let header = RequestHeader::decode(&mut buf, api_key.request_header_version(version))
        .map_err(|e| codec_err(e.to_string()))?;
    let body =
        RequestKind::decode(api_key, &mut buf, version).map_err(|e| codec_err(e.to_string()))?;
    Ok(Request {
        api_key,
        version,
        header,
        body,
    })
}

/// Appends a whole response frame (length prefix, header, body) to `out`.
pub fn encode_response(
    out: &mut BytesMut,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<(), ProtocolError> {
    let err = |e: String| ProtocolError::Codec {
        action: "encode",
        api: api_name(api_key),
        version,
        detail: e,
    };
    let at = frame::begin_frame(out);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let encoded = header
        .encode(out, api_key.response_header_version(version))
        .and_then(|()| body.encode(out, version));
    if let Err(e) = encoded {
        // No half frame is left behind for the answers before it to carry out.
        out.truncate(at);
        return Err(err(e.to_string()));
    }
    frame::end_frame(out, at);
    Ok(())
}

/// Appends a whole response frame to `out`, like [`encode_response`], except that a Fetch
/// answer's record batches (those of 4 KiB or more, in answers without tagged fields) are
/// queued as the bytes they were read as, not copied.
pub fn encode_response_to(
    out: &mut Outbox,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<(), ProtocolError> {
    if let ResponseKind::Fetch(fetch) = body {
        if let Some(done) = fetch_frame::encode(out, version, correlation_id, fetch) {
            return done;
        }
    }
    encode_response(out.encoded(), api_key, version, correlation_id, body)
}

/// Appends a whole request frame to `out` (used by clients).
pub fn encode_request(
    out: &mut BytesMut,
    header: &RequestHeader,
    body: &RequestKind,
) -> Result<(), ProtocolError> {
    let version = header.request_api_version;
    let api_key = ApiKey::try_from(header.request_api_key)
        .map_err(|_| ProtocolError::UnknownApiKey(header.request_api_key))?;
    let err = |e: String| ProtocolError::Codec {
        action: "encode",
        api: api_name(api_key),
        version,
        detail: e,
    };
    let at = frame::begin_frame(out);
    let encoded = header
        .encode(out, api_key.request_header_version(version))
        .and_then(|()| body.encode(out, version));
    if let Err(e) = encoded {
        out.truncate(at);
        return Err(err(e.to_string()));
    }
    frame::end_frame(out, at);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn request_round_trip_through_frame() {
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Metadata as i16)
            .with_request_api_version(12)
            .with_correlation_id(42)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        let mut out = BytesMut::new();
        encode_request(
            &mut out,
            &header,
            &RequestKind::Metadata(MetadataRequest::default()),
        )
        .unwrap();
        let frame = frame::split_frame(&mut out, 1 << 20).unwrap().unwrap();
        let req = decode_request(frame.freeze(), &GuardLimits::default(), |_, _| true).unwrap();
        assert_eq!(req.api_key, ApiKey::Metadata);
        assert_eq!(req.header.correlation_id, 42);
        assert_eq!(api_name(req.api_key), "Metadata");
    }

    #[test]
    fn unsupported_version_is_refused_before_decoding() {
        let frame = Bytes::from_static(&[0, 3, 0, 99, 0, 0, 0, 1]);
        let err = decode_request(frame, &GuardLimits::default(), |_, v| v < 13).unwrap_err();
        assert!(matches!(
            err,
            ProtocolError::UnsupportedVersion { version: 99, .. }
        ));
    }

    #[test]
    fn response_frame_has_length_and_correlation_id() {
        let mut out = BytesMut::new();
        encode_response(
            &mut out,
            ApiKey::Metadata,
            12,
            7,
            &ResponseKind::Metadata(MetadataResponse::default()),
        )
        .unwrap();
        let len = i32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert_eq!(len + 4, out.len());
        assert_eq!(&out[4..8], &7i32.to_be_bytes());
    }

    #[test]
    fn a_response_that_cannot_be_encoded_leaves_no_half_frame() {
        let mut out = BytesMut::from(&b"earlier answers"[..]);
        // The cluster's authorized operations exist in v8-v10 only: v0 cannot carry them.
        let body = MetadataResponse::default().with_cluster_authorized_operations(0);
        let result = encode_response(
            &mut out,
            ApiKey::Metadata,
            0,
            7,
            &ResponseKind::Metadata(body),
        );
        assert!(
            matches!(result, Err(ProtocolError::Codec { .. })),
            "{result:?}"
        );
        assert_eq!(&out[..], b"earlier answers");
    }
}
