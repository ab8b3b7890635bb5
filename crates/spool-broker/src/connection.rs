//! One client connection: frames in, responses out, one request at a time in request order
//! (as Kafka does; clients rely on the order).
//!
//! Anything malformed closes this connection with a log line naming the peer; no other
//! connection is affected.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use spool_protocol::codec::{self, HeaderPrefix};
use spool_protocol::error::ProtocolError;
use spool_protocol::frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::handlers;
use crate::router::{self, Reply};
use crate::state::BrokerState;

const READ_CHUNK: usize = 64 * 1024;

pub(crate) async fn serve(state: Arc<BrokerState>, socket: TcpStream, peer: SocketAddr) {
    let _ = socket.set_nodelay(true);
    let (mut reader, mut writer) = socket.into_split();
    let mut inbox = BytesMut::with_capacity(READ_CHUNK);
    let mut outbox = BytesMut::new();
    debug!(%peer, "connection opened");
    loop {
        let frame = match frame::split_frame(&mut inbox, state.config.max_request_bytes) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                if inbox.capacity() - inbox.len() < READ_CHUNK / 4 {
                    inbox.reserve(READ_CHUNK);
                }
                let read = tokio::select! {
                    _ = state.shutdown.cancelled() => return,
                    read = reader.read_buf(&mut inbox) => read,
                };
                match read {
                    Ok(0) => {
                        if !inbox.is_empty() {
                            debug!(%peer, "connection closed mid-request ({} bytes pending)", inbox.len());
                        }
                        return;
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        debug!(%peer, "read failed: {e}");
                        return;
                    }
                }
            }
            Err(e) => {
                warn!(%peer, "closing connection: {e}{}", tls_hint(&inbox));
                return;
            }
        };
        match respond(&state, frame.freeze(), &mut outbox, peer).await {
            Ok(()) => {}
            Err(e) => {
                warn!(%peer, "closing connection: {e}");
                return;
            }
        }
        if !outbox.is_empty() {
            if let Err(e) = writer.write_all(&outbox).await {
                debug!(%peer, "write failed: {e}");
                return;
            }
            outbox.clear();
        }
    }
}

/// A TLS ClientHello starts 0x16 0x03, which reads as a ~370 MB frame: say so in the log.
fn tls_hint(inbox: &[u8]) -> &'static str {
    if inbox.len() >= 2 && inbox[0] == 0x16 && inbox[1] == 0x03 {
        " (looks like a TLS handshake sent to a plaintext listener)"
    } else {
        ""
    }
}

/// Decodes one request, runs it and appends its response frame to `out` (nothing for acks=0).
async fn respond(
    state: &Arc<BrokerState>,
    frame: bytes::Bytes,
    out: &mut BytesMut,
    peer: SocketAddr,
) -> Result<(), Closing> {
    let prefix = codec::peek_header(&frame)?;
    if let Some(reply) = api_versions_fallback(prefix) {
        return Ok(codec::encode_response(
            out,
            ApiKey::ApiVersions,
            0,
            prefix.correlation_id,
            &reply,
        )?);
    }
    let request = codec::decode_request(frame, &state.config.guard, router::decodable)?;
    let (api_key, version) = (request.api_key, request.version);
    let correlation_id = request.header.correlation_id;
    match router::dispatch(state, request, peer).await {
        Reply::Response(body) => Ok(codec::encode_response(
            out,
            api_key,
            version,
            correlation_id,
            &body,
        )?),
        Reply::None => Ok(()),
        Reply::Close(reason) => Err(Closing::Handler {
            api: codec::api_name(api_key),
            reason,
        }),
    }
}

/// Why a connection is being closed.
#[derive(Debug, thiserror::Error)]
enum Closing {
    /// The request could not be read or answered.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A handler asked for the connection to close (as Kafka does for a failed acks=0 produce).
    #[error("{api}: {reason}")]
    Handler {
        api: &'static str,
        reason: &'static str,
    },
}

/// An ApiVersions request newer than we know is answered in v0 with UNSUPPORTED_VERSION and
/// our ranges, so the client can retry with a version we speak (KIP-511).
fn api_versions_fallback(prefix: HeaderPrefix) -> Option<ResponseKind> {
    if prefix.api_key != ApiKey::ApiVersions as i16 {
        return None;
    }
    let (_, max) = router::version_range(ApiKey::ApiVersions)?;
    if prefix.api_version <= max && prefix.api_version >= 0 {
        return None;
    }
    let mut body = handlers::api_versions::handle();
    body.error_code = kafka_protocol::ResponseError::UnsupportedVersion.code();
    Some(ResponseKind::ApiVersions(body))
}
