//! One client connection: frames in, responses out, in request order.
//!
//! Two halves share the connection's task. The reader decodes each request and runs it, so
//! requests take effect in the order they arrive; the writer sends the answers in that same
//! order (clients rely on it). An answer may still be waiting, e.g. an acks=all produce for its
//! fsync: the reader then goes on with the next requests, up to [`MAX_QUEUED_ANSWERS`] ahead, so
//! a producer's pipelined requests share fsync rounds instead of queueing behind each one.
//!
//! Anything malformed closes this connection with a log line naming the peer; no other
//! connection is affected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use spool_protocol::codec::{self, HeaderPrefix};
use spool_protocol::error::ProtocolError;
use spool_protocol::frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, SemaphorePermit};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::handlers;
use crate::router::{self, Reply};
use crate::state::BrokerState;

const READ_CHUNK: usize = 64 * 1024;

/// Answers the reader may run ahead of the writer. Clients pipeline up to 5 requests by default
/// (`max.in.flight.requests.per.connection`); a little more lets a fetch or metadata request
/// follow them without stalling the reader.
const MAX_QUEUED_ANSWERS: usize = 8;

/// How long answers already owed may take to go out once the broker is shutting down.
const SHUTDOWN_WRITE_GRACE: Duration = Duration::from_secs(5);

pub(crate) async fn serve(state: Arc<BrokerState>, socket: TcpStream, peer: SocketAddr) {
    let _ = socket.set_nodelay(true);
    let (reader, writer) = socket.into_split();
    let (tx, rx) = mpsc::channel(MAX_QUEUED_ANSWERS);
    // Whichever half fails first stops the other.
    let stop = state.shutdown.child_token();
    debug!(%peer, "connection opened");
    tokio::join!(
        read_requests(&state, reader, tx, &stop, peer),
        write_answers(&state, writer, rx, &stop, peer),
    );
}

/// An answer on its way to the writer.
enum Answer {
    /// Already encoded (the ApiVersions fallback).
    Encoded(BytesMut),
    /// A handler's reply, encoded by the writer in the request's version.
    Reply {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        reply: Reply,
    },
}

impl Answer {
    fn must_wait(&self) -> bool {
        matches!(
            self,
            Answer::Reply {
                reply: Reply::Later(_),
                ..
            }
        )
    }
}

async fn read_requests(
    state: &Arc<BrokerState>,
    mut reader: OwnedReadHalf,
    answers: mpsc::Sender<Answer>,
    stop: &CancellationToken,
    peer: SocketAddr,
) {
    // Idle connections hold no buffer: it is reserved once bytes are there to read.
    let mut inbox = BytesMut::new();
    let mut budget: Option<SemaphorePermit<'_>> = None;
    loop {
        if budget.is_none() {
            if let Some(len) = large_frame_len(&inbox, state.config.max_request_bytes) {
                // Held until the request has run: the broker-wide cap on request bytes being
                // buffered (`queued.max.request.bytes`) turns a flood into back-pressure.
                let want = u32::try_from(len.min(state.config.max_queued_request_bytes))
                    .unwrap_or(u32::MAX);
                budget = tokio::select! {
                    _ = stop.cancelled() => return,
                    permit = state.request_memory.acquire_many(want) => permit.ok(),
                };
            }
        }
        let frame = match frame::split_frame(&mut inbox, state.config.max_request_bytes) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                if inbox.is_empty() {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        ready = reader.readable() => if ready.is_err() { return },
                    }
                }
                if inbox.capacity() - inbox.len() < READ_CHUNK / 4 {
                    inbox.reserve(READ_CHUNK);
                }
                let read = tokio::select! {
                    _ = stop.cancelled() => return,
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
        let answer = match run(state, frame.freeze(), peer).await {
            Ok(answer) => answer,
            Err(e) => {
                warn!(%peer, "closing connection: {e}");
                return;
            }
        };
        budget = None;
        if inbox.is_empty() && inbox.capacity() > 2 * READ_CHUNK {
            // Give back what one large request needed.
            inbox = BytesMut::new();
        }
        // Biased: an answer produced as the broker shuts down (a parked join told the
        // coordinator is going away) is still delivered when there is room for it.
        tokio::select! {
            biased;
            sent = answers.send(answer) => if sent.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
}

/// The declared length of the frame at the front of `inbox`, when it is larger than one read
/// and within the request cap (anything else is refused by `split_frame` or needs no budget).
fn large_frame_len(inbox: &[u8], max: usize) -> Option<usize> {
    let prefix: [u8; frame::PREFIX_LEN] = inbox.get(..frame::PREFIX_LEN)?.try_into().ok()?;
    let len = usize::try_from(i32::from_be_bytes(prefix)).ok()?;
    (len > READ_CHUNK && len <= max && inbox.len() < frame::PREFIX_LEN + len).then_some(len)
}

async fn write_answers(
    state: &Arc<BrokerState>,
    mut writer: OwnedWriteHalf,
    mut answers: mpsc::Receiver<Answer>,
    stop: &CancellationToken,
    peer: SocketAddr,
) {
    let mut out = BytesMut::new();
    let mut next = answers.recv().await;
    while let Some(answer) = next.take() {
        if let Err(e) = encode(answer, &mut out).await {
            warn!(%peer, "closing connection: {e}");
            break;
        }
        // Answers that are ready behind this one go out in the same write.
        while out.len() < READ_CHUNK {
            match answers.try_recv() {
                Ok(answer) if !answer.must_wait() => {
                    if let Err(e) = encode(answer, &mut out).await {
                        warn!(%peer, "closing connection: {e}");
                        stop.cancel();
                        return;
                    }
                }
                Ok(answer) => {
                    next = Some(answer);
                    break;
                }
                Err(_) => break,
            }
        }
        if !out.is_empty() {
            let written = tokio::select! {
                written = writer.write_all(&out) => written,
                _ = shutdown_grace(state) => {
                    debug!(%peer, "shutting down: dropping answers the client is not reading");
                    break;
                }
            };
            if let Err(e) = written {
                debug!(%peer, "write failed: {e}");
                break;
            }
            out.clear();
        }
        if next.is_none() {
            next = answers.recv().await;
        }
    }
    stop.cancel();
}

async fn shutdown_grace(state: &BrokerState) {
    state.shutdown.cancelled().await;
    tokio::time::sleep(SHUTDOWN_WRITE_GRACE).await;
}

/// Appends an answer's frame to `out` (nothing for acks=0), first waiting for it if it waits.
async fn encode(answer: Answer, out: &mut BytesMut) -> Result<(), Closing> {
    let (api_key, version, correlation_id, mut reply) = match answer {
        Answer::Encoded(bytes) => {
            out.extend_from_slice(&bytes);
            return Ok(());
        }
        Answer::Reply {
            api_key,
            version,
            correlation_id,
            reply,
        } => (api_key, version, correlation_id, reply),
    };
    while let Reply::Later(pending) = reply {
        reply = pending.await;
    }
    match reply {
        Reply::Response(body) => Ok(codec::encode_response(
            out,
            api_key,
            version,
            correlation_id,
            &body,
        )?),
        Reply::None | Reply::Later(_) => Ok(()),
        Reply::Close(reason) => Err(Closing::Handler {
            api: codec::api_name(api_key),
            reason,
        }),
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

/// Decodes one request and runs it; its answer may still have to wait.
async fn run(
    state: &Arc<BrokerState>,
    frame: bytes::Bytes,
    peer: SocketAddr,
) -> Result<Answer, Closing> {
    let prefix = codec::peek_header(&frame)?;
    if let Some(reply) = api_versions_fallback(prefix) {
        let mut out = BytesMut::new();
        codec::encode_response(
            &mut out,
            ApiKey::ApiVersions,
            0,
            prefix.correlation_id,
            &reply,
        )?;
        return Ok(Answer::Encoded(out));
    }
    let request = codec::decode_request(frame, &state.config.guard, router::decodable)?;
    let (api_key, version) = (request.api_key, request.version);
    let correlation_id = request.header.correlation_id;
    let reply = router::dispatch(state, request, peer).await;
    Ok(Answer::Reply {
        api_key,
        version,
        correlation_id,
        reply,
    })
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
