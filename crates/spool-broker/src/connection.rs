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
use spool_protocol::outbox::Outbox;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, SemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
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
    // The writer is a task of its own. Were both halves one task, every answer the reader
    // hands over would wake the running task itself, and tokio reschedules such a task as a
    // yield: to the back of the queue, waking an idle worker to steal it (futex calls and
    // context switches on every request; ~20% of the broker's CPU at 10k requests/s). Waking
    // another task puts it in the worker's next-task slot instead.
    // If this connection's future is dropped (the broker's own future was), so is the writer,
    // even while it waits on an fsync that may never end (a stalled disk).
    let writer = AbortOnDropHandle::new(tokio::spawn({
        let (state, stop) = (state.clone(), stop.clone());
        async move {
            // However the writer ends (a panic too), the reader stops: no request runs that
            // could not be answered.
            let _stop_reader = stop.clone().drop_guard();
            write_answers(&state, writer, rx, &stop, peer).await
        }
    }));
    read_requests(&state, reader, tx, &stop, peer).await;
    // The reader is done and has dropped its sender: the writer delivers what is owed and ends.
    if let Err(e) = writer.await {
        warn!(%peer, "connection writer failed: {e}");
    }
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
                if inbox.capacity() - inbox.len() < top_up_below(&inbox) {
                    inbox.reserve(READ_CHUNK);
                }
                let stalled = async {
                    match budget {
                        Some(_) => tokio::time::sleep(state.config.stalled_request_timeout).await,
                        None => std::future::pending().await,
                    }
                };
                let read = tokio::select! {
                    _ = stop.cancelled() => return,
                    read = reader.read_buf(&mut inbox) => read,
                    _ = stalled => {
                        warn!(%peer, "closing connection: a {} byte request stalled for {:?} \
                            while holding request memory", large_frame_total(&inbox),
                            state.config.stalled_request_timeout);
                        return;
                    }
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
        let large = frame.len() > READ_CHUNK;
        // Only produce requests run ahead of their answers (that is what lets acks=all share
        // fsyncs); anything else waits until every earlier answer is written, as on Kafka, so a
        // client that pipelines fetches and reads nothing cannot make us hold many responses.
        if !is_produce(&frame) {
            let drained = tokio::select! {
                permits = answers.reserve_many(MAX_QUEUED_ANSWERS) => permits.is_ok(),
                _ = stop.cancelled() => false,
            };
            if !drained {
                return;
            }
        }
        let answer = match run(state, frame.freeze(), peer).await {
            Ok(answer) => answer,
            Err(e) => {
                warn!(%peer, "closing connection: {e}");
                return;
            }
        };
        budget = None;
        if large {
            inbox = detach(inbox);
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

/// After a large frame was split off the front of one allocation, `inbox` still shares it and
/// reserving again would take all of it back: keep only the leftover bytes, in a buffer of their
/// own size.
fn detach(inbox: BytesMut) -> BytesMut {
    if inbox.is_empty() {
        BytesMut::new()
    } else {
        BytesMut::from(&inbox[..])
    }
}

/// The API key alone (a frame too short for a whole header is left to `run` to refuse).
fn is_produce(frame: &[u8]) -> bool {
    frame.get(..2) == Some(&(ApiKey::Produce as i16).to_be_bytes()[..])
}

/// The length declared by the frame prefix at the front of `inbox`, once it has arrived.
fn declared_len(inbox: &[u8]) -> Option<i32> {
    let prefix: [u8; frame::PREFIX_LEN] = inbox.get(..frame::PREFIX_LEN)?.try_into().ok()?;
    Some(i32::from_be_bytes(prefix))
}

/// Free bytes under which the reader grows `inbox` by [`READ_CHUNK`] before reading. Once a
/// frame's length is known, `split_frame` has reserved room for all of it: growing again for
/// its last bytes would double the buffer (a `Vec` grows by at least 2x), holding three copies
/// of a large frame while it moves. So the threshold is then at most what is still missing.
fn top_up_below(inbox: &[u8]) -> usize {
    let missing = declared_len(inbox)
        .and_then(|len| usize::try_from(len).ok())
        .map(|len| (frame::PREFIX_LEN + len).saturating_sub(inbox.len()));
    missing.map_or(READ_CHUNK / 4, |m| m.min(READ_CHUNK / 4))
}

/// The declared length of the frame at the front of `inbox`, for a log line.
fn large_frame_total(inbox: &[u8]) -> i64 {
    declared_len(inbox).map_or(0, i64::from)
}

/// The declared length of the frame at the front of `inbox`, when it is larger than one read
/// and within the request cap (anything else is refused by `split_frame` or needs no budget).
fn large_frame_len(inbox: &[u8], max: usize) -> Option<usize> {
    let len = usize::try_from(declared_len(inbox)?).ok()?;
    (len > READ_CHUNK && len <= max && inbox.len() < frame::PREFIX_LEN + len).then_some(len)
}

async fn write_answers(
    state: &Arc<BrokerState>,
    mut writer: OwnedWriteHalf,
    mut answers: mpsc::Receiver<Answer>,
    stop: &CancellationToken,
    peer: SocketAddr,
) {
    // Once the broker shuts down, whatever is still owed gets one grace period in all.
    let grace = async {
        state.shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_WRITE_GRACE).await;
    };
    tokio::pin!(grace);
    // Encoded answers, and fetched record batches as they were read: written vectored.
    let mut out = Outbox::new();
    let mut next = answers.recv().await;
    while let Some(answer) = next.take() {
        // Answers that are ready behind this one go out in the same write; a failure to
        // encode one still lets the answers before it go out first.
        let mut closing = None;
        let mut pending = Some(answer);
        while let Some(answer) = pending.take() {
            let encoded = tokio::select! {
                encoded = encode(answer, &mut out) => encoded,
                _ = &mut grace => {
                    debug!(%peer, "shutting down: an answer was still waiting");
                    stop.cancel();
                    return;
                }
            };
            if let Err(e) = encoded {
                closing = Some(e);
                break;
            }
            if out.len() >= READ_CHUNK {
                break;
            }
            match answers.try_recv() {
                Ok(answer) if !answer.must_wait() => pending = Some(answer),
                Ok(answer) => next = Some(answer),
                Err(_) => {}
            }
        }
        if !out.is_empty() {
            // Do not keep a large answer's buffer for the life of the connection.
            let grown = out.encoded_len() > 2 * READ_CHUNK;
            let written = tokio::select! {
                written = writer.write_all_buf(&mut out) => written,
                _ = &mut grace => {
                    debug!(%peer, "shutting down: dropping answers the client is not reading");
                    break;
                }
            };
            if let Err(e) = written {
                debug!(%peer, "write failed: {e}");
                break;
            }
            if grown {
                out = Outbox::new();
            }
        }
        if let Some(e) = closing {
            warn!(%peer, "closing connection: {e}");
            break;
        }
        if next.is_none() {
            next = answers.recv().await;
        }
    }
    stop.cancel();
}

/// Appends an answer's frame to `out` (nothing for acks=0), first waiting for it if it waits.
async fn encode(answer: Answer, out: &mut Outbox) -> Result<(), Closing> {
    let (api_key, version, correlation_id, mut reply) = match answer {
        Answer::Encoded(bytes) => {
            out.push_shared(bytes.freeze());
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
        Reply::Response(body) => Ok(codec::encode_response_to(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_bytes_of_a_large_frame_do_not_grow_its_buffer() {
        const LEN: usize = 8 << 20;
        let mut inbox = BytesMut::new();
        inbox.extend_from_slice(&(LEN as i32).to_be_bytes());
        assert!(frame::split_frame(&mut inbox, 16 << 20).unwrap().is_none());
        let room = inbox.capacity();
        assert!(room >= frame::PREFIX_LEN + LEN);
        // All but 100 bytes arrived: the reservation holds them, nothing more is reserved.
        inbox.resize(frame::PREFIX_LEN + LEN - 100, 0);
        assert_eq!(top_up_below(&inbox), 100);
        assert!(inbox.capacity() - inbox.len() >= top_up_below(&inbox));
        assert_eq!(inbox.capacity(), room);
        // Before a length is known, the usual threshold.
        assert_eq!(top_up_below(&[0, 0]), READ_CHUNK / 4);
    }

    #[test]
    fn a_large_frame_leaves_no_large_buffer_behind() {
        const LEN: usize = 8 << 20;
        let mut inbox = BytesMut::new();
        inbox.extend_from_slice(&(LEN as i32).to_be_bytes());
        inbox.resize(frame::PREFIX_LEN + LEN + 3, 7);
        let frame = frame::split_frame(&mut inbox, 100 << 20).unwrap().unwrap();
        drop(frame);
        let mut kept = detach(inbox);
        assert_eq!(&kept[..], &[7, 7, 7]);
        kept.reserve(READ_CHUNK);
        assert!(
            kept.capacity() < 2 * READ_CHUNK,
            "the 8 MiB allocation came back: {}",
            kept.capacity()
        );
    }

    #[test]
    fn produce_frames_are_told_apart_by_their_api_key() {
        assert!(is_produce(&[0, 0, 0, 9]));
        assert!(!is_produce(&[0, 1, 0, 12]));
        assert!(!is_produce(&[0]));
        assert_eq!(large_frame_total(&[0, 0, 1, 0]), 256);
        assert_eq!(large_frame_total(&[0]), 0);
    }
}
