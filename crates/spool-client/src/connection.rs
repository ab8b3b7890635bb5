//! One connection to one broker: pipelined requests matched to responses by correlation id.
//!
//! ```text
//! request() --encode--> frame --mpsc--> writer task --> socket
//!     ^                                                   |
//!     '--oneshot <-- pending[correlation id] <-- reader task (bounded frames)
//! ```
//!
//! - Requests are pipelined: many may be outstanding; Kafka answers them in order, and the
//!   reader matches each answer to its waiter by correlation id.
//! - Writes go through one writer task so a caller that gives up (drops its future) mid-write
//!   can never leave half a frame on the socket.
//! - When the socket dies (or a request times out, after which the stream's state is unknown)
//!   the connection is *poisoned*: every waiting request and every later one fails with the
//!   same error, and the pool in [`crate::cluster`] opens a new connection.
//! - Generic over `AsyncRead + AsyncWrite`, so tests run it over `tokio::io::duplex`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::versions::{self, BrokerVersions};

/// What a connection needs to know from the client configuration.
#[derive(Debug, Clone)]
pub struct ConnectionOptions {
    /// Sent as `client_id` in every request header.
    pub client_id: String,
    /// Default wait for each response.
    pub request_timeout: Duration,
    /// Largest response frame accepted.
    pub max_response_size: usize,
}

impl From<&ClientConfig> for ConnectionOptions {
    fn from(c: &ClientConfig) -> Self {
        ConnectionOptions {
            client_id: c.client_id.clone(),
            request_timeout: c.request_timeout,
            max_response_size: c.max_response_size,
        }
    }
}

type Waiter = oneshot::Sender<Result<Bytes>>;

struct Pending {
    api: ApiKey,
    response_header_version: i16,
    tx: Waiter,
}

#[derive(Default)]
struct State {
    pending: HashMap<i32, Pending>,
    /// Set once, when the connection dies; the error every request then gets.
    poisoned: Option<Error>,
}

struct Shared {
    addr: String,
    state: Mutex<State>,
}

impl Shared {
    /// Why the connection is dead (or that it closed).
    fn poison_error(&self) -> Error {
        self.state
            .lock()
            .unwrap()
            .poisoned
            .clone()
            .unwrap_or_else(|| Error::Disconnected {
                addr: self.addr.clone(),
                reason: "connection closed".into(),
            })
    }

    /// Marks the connection dead and fails everything waiting. Idempotent: the first reason wins.
    fn poison(&self, reason: impl Into<String>) {
        let (err, pending) = {
            let mut st = self.state.lock().unwrap();
            if st.poisoned.is_some() {
                return;
            }
            let err = Error::Disconnected {
                addr: self.addr.clone(),
                reason: reason.into(),
            };
            st.poisoned = Some(err.clone());
            (err, std::mem::take(&mut st.pending))
        };
        tracing::debug!(addr = %self.addr, error = %err, waiting = pending.len(), "connection poisoned");
        for (_, p) in pending {
            let _ = p.tx.send(Err(err.clone()));
        }
    }
}

struct Outbound {
    frame: Bytes,
    /// Told once the frame is on the socket (used for requests that get no response).
    written: Option<oneshot::Sender<()>>,
}

/// A connection to one broker.
///
/// Cheap to share behind an `Arc`; every method takes `&self`. Dropping the last handle closes
/// the socket.
pub struct Connection {
    shared: Arc<Shared>,
    outbound: mpsc::Sender<Outbound>,
    next_correlation_id: AtomicI32,
    options: ConnectionOptions,
    client_id: StrBytes,
    versions: OnceLock<BrokerVersions>,
    reader: JoinHandle<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.shared.addr)
            .field("poisoned", &self.is_poisoned())
            .finish()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The writer task ends when `outbound` closes (and shuts the socket down); the reader
        // would otherwise wait for the broker to hang up.
        self.reader.abort();
    }
}

impl Connection {
    /// Opens a TCP connection to `addr` (`host:port`) and performs the ApiVersions handshake,
    /// both within `config.connect_timeout`.
    pub async fn connect(addr: &str, config: &ClientConfig) -> Result<Connection> {
        let what = format!("connecting to {addr}");
        let fut = async {
            let stream =
                tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| Error::Connect {
                        addr: addr.to_string(),
                        source: Arc::new(e),
                    })?;
            let _ = stream.set_nodelay(true);
            let conn = Connection::new(stream, addr, config.into());
            conn.handshake().await?;
            Ok(conn)
        };
        match tokio::time::timeout(config.connect_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                what,
                after: config.connect_timeout,
            }),
        }
    }

    /// Wraps an established stream, spawning its reader and writer tasks. No handshake is done:
    /// call [`Connection::handshake`] before relying on [`Connection::version`].
    pub fn new<S>(stream: S, addr: impl Into<String>, options: ConnectionOptions) -> Connection
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let shared = Arc::new(Shared {
            addr: addr.into(),
            state: Mutex::new(State::default()),
        });
        let (read, write) = tokio::io::split(stream);
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(write_loop(write, rx, shared.clone()));
        let reader = tokio::spawn(read_loop(read, shared.clone(), options.max_response_size));
        Connection {
            shared,
            outbound: tx,
            next_correlation_id: AtomicI32::new(0),
            client_id: StrBytes::from_string(options.client_id.clone()),
            options,
            versions: OnceLock::new(),
            reader,
        }
    }

    /// The broker's `host:port`.
    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// The default wait for each response.
    pub fn request_timeout(&self) -> Duration {
        self.options.request_timeout
    }

    /// True once the connection has died; it will never work again.
    pub fn is_poisoned(&self) -> bool {
        self.shared.state.lock().unwrap().poisoned.is_some()
    }

    /// Negotiates API versions (see [`crate::versions`]) and remembers the result.
    pub async fn handshake(&self) -> Result<&BrokerVersions> {
        let v = versions::negotiate(self).await?;
        let _ = self.versions.set(v);
        Ok(self.versions.get().expect("set above"))
    }

    /// Versions negotiated by [`Connection::handshake`] (empty before it).
    pub fn versions(&self) -> &BrokerVersions {
        static EMPTY: OnceLock<BrokerVersions> = OnceLock::new();
        self.versions
            .get()
            .unwrap_or_else(|| EMPTY.get_or_init(BrokerVersions::default))
    }

    /// The highest version of `api` both sides support.
    pub fn version(&self, api: ApiKey) -> Result<i16> {
        self.versions()
            .pick(api)
            .ok_or_else(|| Error::UnsupportedVersion {
                api,
                addr: self.addr().to_string(),
                broker: self.versions().broker_range(api),
            })
    }

    /// Sends `req` at the negotiated version and waits for the response.
    pub async fn send<R>(&self, req: &R) -> Result<(i16, R::Response)>
    where
        R: Request,
    {
        let api = api_key::<R>()?;
        let version = self.version(api)?;
        Ok((version, self.send_at(req, version).await?))
    }

    /// Sends `req` at `version` and waits (up to the request timeout) for the response.
    pub async fn send_at<R: Request>(&self, req: &R, version: i16) -> Result<R::Response> {
        self.send_with_timeout(req, version, self.options.request_timeout)
            .await
    }

    /// Like [`Connection::send_at`] with an explicit timeout (e.g. a long-polling fetch).
    pub async fn send_with_timeout<R: Request>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response> {
        let api = api_key::<R>()?;
        let mut body = self
            .round_trip(api, version, R::header_version(version), timeout, |buf| {
                req.encode(buf, version).map_err(|e| e.to_string())
            })
            .await?;
        R::Response::decode(&mut body, version)
            .map_err(|e| Error::protocol(format!("decoding {api:?} v{version} response"), e))
    }

    /// Writes a request for which the broker sends no response (Produce with `acks=0`) and
    /// returns once it is on the socket.
    pub async fn send_no_response<R: Request>(&self, req: &R, version: i16) -> Result<()> {
        let api = api_key::<R>()?;
        let (frame, _) = self.encode(api, version, R::header_version(version), |buf| {
            req.encode(buf, version).map_err(|e| e.to_string())
        })?;
        self.check_poisoned()?;
        let (tx, rx) = oneshot::channel();
        self.push(frame, Some(tx)).await?;
        match tokio::time::timeout(self.options.request_timeout, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.poison_error()),
            Err(_) => Err(self.timed_out(api)),
        }
    }

    /// Sends one encoded request and returns the response body (after the response header).
    ///
    /// Used by the handshake, which must read the error code before choosing how to decode.
    pub(crate) async fn round_trip(
        &self,
        api: ApiKey,
        version: i16,
        request_header_version: i16,
        timeout: Duration,
        encode: impl FnOnce(&mut BytesMut) -> std::result::Result<(), String>,
    ) -> Result<Bytes> {
        self.start_round_trip(api, version, request_header_version, timeout, encode)
            .await?
            .await
    }

    /// Sends `req` at `version`; once this returns the request is queued on the socket behind
    /// every request sent before it, and the returned future waits (up to the request timeout)
    /// for its response. The producer relies on that order for several batches of one partition
    /// in flight.
    pub async fn start<R: Request>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<Pin<Box<dyn Future<Output = Result<R::Response>> + Send>>>
    where
        R::Response: Send + 'static,
    {
        let api = api_key::<R>()?;
        let response = self
            .start_round_trip(
                api,
                version,
                R::header_version(version),
                self.options.request_timeout,
                |buf| req.encode(buf, version).map_err(|e| e.to_string()),
            )
            .await?;
        Ok(Box::pin(async move {
            let mut body = response.await?;
            R::Response::decode(&mut body, version)
                .map_err(|e| Error::protocol(format!("decoding {api:?} v{version} response"), e))
        }))
    }

    async fn start_round_trip(
        &self,
        api: ApiKey,
        version: i16,
        request_header_version: i16,
        timeout: Duration,
        encode: impl FnOnce(&mut BytesMut) -> std::result::Result<(), String>,
    ) -> Result<Pin<Box<dyn Future<Output = Result<Bytes>> + Send>>> {
        let (frame, correlation_id) = self.encode(api, version, request_header_version, encode)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.state.lock().unwrap();
            if let Some(e) = &st.poisoned {
                return Err(e.clone());
            }
            st.pending.insert(
                correlation_id,
                Pending {
                    api,
                    response_header_version: api.response_header_version(version),
                    tx,
                },
            );
        }
        if let Err(e) = self.push(frame, None).await {
            self.shared
                .state
                .lock()
                .unwrap()
                .pending
                .remove(&correlation_id);
            return Err(e);
        }
        let shared = self.shared.clone();
        Ok(Box::pin(async move {
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(shared.poison_error()),
                Err(_) => {
                    shared.state.lock().unwrap().pending.remove(&correlation_id);
                    // The response may still arrive, or the stream may be stuck; either way this
                    // connection can no longer be trusted (Kafka's client disconnects here too).
                    shared.poison(format!("{api:?} request timed out after {timeout:?}"));
                    Err(Error::Timeout {
                        what: format!("{api:?} request to {}", shared.addr),
                        after: timeout,
                    })
                }
            }
        }))
    }

    fn encode(
        &self,
        api: ApiKey,
        version: i16,
        request_header_version: i16,
        encode: impl FnOnce(&mut BytesMut) -> std::result::Result<(), String>,
    ) -> Result<(Bytes, i32)> {
        // Wraps at i32::MAX back to 0; ids only need to be unique among outstanding requests.
        let correlation_id = self
            .next_correlation_id
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(if c == i32::MAX { 0 } else { c + 1 })
            })
            .unwrap_or(0);
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::with_capacity(64);
        buf.put_i32(0);
        header
            .encode(&mut buf, request_header_version)
            .map_err(|e| Error::protocol(format!("encoding {api:?} request header"), e))?;
        encode(&mut buf)
            .map_err(|e| Error::protocol(format!("encoding {api:?} v{version} request"), e))?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        Ok((buf.freeze(), correlation_id))
    }

    async fn push(&self, frame: Bytes, written: Option<oneshot::Sender<()>>) -> Result<()> {
        self.outbound
            .send(Outbound { frame, written })
            .await
            .map_err(|_| self.poison_error())
    }

    fn check_poisoned(&self) -> Result<()> {
        match &self.shared.state.lock().unwrap().poisoned {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn poison_error(&self) -> Error {
        self.shared.poison_error()
    }

    fn timed_out(&self, api: ApiKey) -> Error {
        Error::Timeout {
            what: format!("{api:?} request to {}", self.addr()),
            after: self.options.request_timeout,
        }
    }
}

fn api_key<R: Request>() -> Result<ApiKey> {
    ApiKey::try_from(R::KEY)
        .map_err(|_| Error::protocol("encoding request", format!("unknown API key {}", R::KEY)))
}

async fn write_loop<W: AsyncWrite>(
    write: W,
    mut rx: mpsc::Receiver<Outbound>,
    shared: Arc<Shared>,
) {
    let w = BufWriter::with_capacity(64 * 1024, write);
    let mut w = std::pin::pin!(w);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        // Coalesce whatever else is queued into one flush.
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
            if batch.len() >= 64 {
                break;
            }
        }
        let mut notify = Vec::new();
        for out in batch {
            if let Err(e) = w.write_all(&out.frame).await {
                shared.poison(format!("write failed: {e}"));
                return;
            }
            notify.extend(out.written);
        }
        if let Err(e) = w.flush().await {
            shared.poison(format!("write failed: {e}"));
            return;
        }
        for n in notify {
            let _ = n.send(());
        }
    }
    // Every handle is gone: close our side.
    let _ = w.shutdown().await;
    shared.poison("connection closed by the client");
}

async fn read_loop<R: AsyncRead>(read: R, shared: Arc<Shared>, max_frame: usize) {
    let mut read = std::pin::pin!(read);
    loop {
        let frame = match read_frame(&mut read, max_frame).await {
            Ok(Some(f)) => f,
            Ok(None) => {
                shared.poison("closed by the broker");
                return;
            }
            Err(reason) => {
                shared.poison(reason);
                return;
            }
        };
        if let Err(reason) = dispatch(&shared, frame) {
            shared.poison(reason);
            return;
        }
    }
}

/// How far a frame's buffer may run ahead of the bytes received: a 1 MiB fetch answer is read
/// with one reallocation (after the first 64 KiB) instead of four, each copying what came before.
const GROWTH: usize = 16;

/// More room for a frame of `len` bytes of which `have` arrived. Each growth copies what
/// arrived so far, so it grows in few, large steps.
fn room_to_add(have: usize, len: usize) -> usize {
    len.saturating_sub(have)
        .min(have.max(64 * 1024) * (GROWTH - 1))
}

/// Reads one length-prefixed frame. The body buffer grows as bytes arrive, to at most
/// [`GROWTH`] times what has arrived, so a lying length cannot make us reserve much memory the
/// broker never sends.
async fn read_frame<R: AsyncRead + Unpin>(
    read: &mut R,
    max_frame: usize,
) -> std::result::Result<Option<Bytes>, String> {
    let mut len = [0u8; 4];
    match read.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(format!("read failed: {e}")),
    }
    let len = i32::from_be_bytes(len);
    if len < 4 || len as usize > max_frame {
        return Err(format!(
            "response frame length {len} outside 4..={max_frame}"
        ));
    }
    let len = len as usize;
    let mut buf = BytesMut::with_capacity(len.min(64 * 1024));
    while buf.len() < len {
        if buf.capacity() == buf.len() {
            buf.reserve(room_to_add(buf.len(), len));
        }
        let want = len - buf.len();
        let n = (&mut *read)
            .take(want as u64)
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("read failed: {e}"))?;
        if n == 0 {
            return Err("closed by the broker mid-response".into());
        }
    }
    Ok(Some(buf.freeze()))
}

/// Hands one response frame to its waiter. An error means the stream is out of sync.
fn dispatch(shared: &Shared, mut frame: Bytes) -> std::result::Result<(), String> {
    let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    let pending = shared.state.lock().unwrap().pending.remove(&correlation_id);
    let Some(pending) = pending else {
        // A request we gave up on (timed out or cancelled): drop its answer.
        tracing::debug!(addr = %shared.addr, correlation_id, "response nobody waits for");
        return Ok(());
    };
    match ResponseHeader::decode(&mut frame, pending.response_header_version) {
        Ok(_) => {
            let _ = pending.tx.send(Ok(frame));
            Ok(())
        }
        Err(e) => {
            let reason = format!("bad {:?} response header: {e}", pending.api);
            let _ = pending
                .tx
                .send(Err(Error::protocol("reading response header", &reason)));
            Err(reason)
        }
    }
}

/// Reads the error code every response body starts with (ApiVersions relies on this).
pub(crate) fn peek_i16(body: &Bytes) -> Option<i16> {
    (body.len() >= 2).then(|| (&body[..2]).get_i16())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse, RequestKind};
    use kafka_protocol::protocol::{decode_request_header_from_buffer, HeaderVersion};
    use tokio::io::DuplexStream;

    #[test]
    fn a_frames_buffer_stays_within_a_multiple_of_what_arrived() {
        let k64 = 64 * 1024;
        // A 1 MiB fetch answer: one growth after the first 64 KiB.
        assert_eq!(room_to_add(k64, 1 << 20), (1 << 20) - k64);
        // A length far beyond what arrives: never more than GROWTH times the bytes received.
        for have in [0, 1, k64, 3 * k64, 5 << 20] {
            let room = room_to_add(have, 1 << 30);
            assert!(have + room <= GROWTH * have.max(k64), "{have}: {room}");
            assert!(room > 0);
        }
        assert_eq!(room_to_add(100, 100), 0);
    }

    #[tokio::test]
    async fn a_frame_that_stops_short_of_its_length_is_an_error() {
        let mut input = Vec::from(100_000i32.to_be_bytes());
        input.extend_from_slice(&[7u8; 70_000]);
        let err = read_frame(&mut &input[..], 1 << 20).await.unwrap_err();
        assert!(err.contains("mid-response"), "{err}");
        let mut whole = Vec::from(70_000i32.to_be_bytes());
        whole.extend_from_slice(&[7u8; 70_000]);
        let frame = read_frame(&mut &whole[..], 1 << 20).await.unwrap().unwrap();
        assert_eq!(frame.len(), 70_000);
    }

    pub(crate) fn options() -> ConnectionOptions {
        ConnectionOptions {
            client_id: "test".into(),
            request_timeout: Duration::from_secs(5),
            max_response_size: 1 << 20,
        }
    }

    /// The broker side of a duplex: reads request frames, writes response frames.
    pub(crate) struct FakeBroker<S = DuplexStream> {
        pub io: S,
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> FakeBroker<S> {
        /// Reads one request: its header and the body bytes.
        pub async fn read_request(&mut self) -> Option<(RequestHeader, Bytes)> {
            let frame = read_frame(&mut self.io, 1 << 20).await.ok()??;
            let mut frame = frame;
            let header = decode_request_header_from_buffer(&mut frame).ok()?;
            Some((header, frame))
        }

        /// Reads one request and decodes its body.
        pub async fn read_kind(&mut self) -> Option<(RequestHeader, RequestKind)> {
            let (h, mut body) = self.read_request().await?;
            let api = ApiKey::try_from(h.request_api_key).ok()?;
            let kind = RequestKind::decode(api, &mut body, h.request_api_version).ok()?;
            Some((h, kind))
        }

        /// Writes a response to `header`'s request.
        pub async fn respond<M: Encodable + HeaderVersion>(
            &mut self,
            header: &RequestHeader,
            msg: &M,
        ) {
            let api = ApiKey::try_from(header.request_api_key).unwrap();
            let v = header.request_api_version;
            let mut buf = BytesMut::new();
            buf.put_i32(0);
            ResponseHeader::default()
                .with_correlation_id(header.correlation_id)
                .encode(&mut buf, api.response_header_version(v))
                .unwrap();
            msg.encode(&mut buf, v).unwrap();
            let len = (buf.len() - 4) as i32;
            buf[..4].copy_from_slice(&len.to_be_bytes());
            self.io.write_all(&buf).await.unwrap();
        }

        /// Writes raw bytes.
        pub async fn write_raw(&mut self, bytes: &[u8]) {
            self.io.write_all(bytes).await.unwrap();
        }
    }

    pub(crate) fn pair() -> (Connection, FakeBroker) {
        let (a, b) = tokio::io::duplex(1 << 20);
        (
            Connection::new(a, "fake:9092", options()),
            FakeBroker { io: b },
        )
    }

    fn metadata_with_cluster(id: &str) -> MetadataResponse {
        MetadataResponse::default().with_cluster_id(Some(StrBytes::from_string(id.to_string())))
    }

    #[tokio::test]
    async fn pipelined_requests_match_out_of_order_answers() {
        let (conn, mut broker) = pair();
        let conn = Arc::new(conn);
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let c = conn.clone();
            tasks.push(tokio::spawn(async move {
                c.send_at(&MetadataRequest::default(), 12).await
            }));
        }
        // All three are on the wire before any answer: pipelining.
        let mut headers = Vec::new();
        for _ in 0..3 {
            let (h, _) = broker.read_request().await.unwrap();
            assert_eq!(h.request_api_key, ApiKey::Metadata as i16);
            assert_eq!(h.client_id.as_deref(), Some("test"));
            headers.push(h);
        }
        let ids: std::collections::HashSet<_> = headers.iter().map(|h| h.correlation_id).collect();
        assert_eq!(ids.len(), 3, "correlation ids are unique");
        // Answer in reverse order, each carrying its correlation id as the cluster id.
        for h in headers.iter().rev() {
            let m = metadata_with_cluster(&h.correlation_id.to_string());
            broker.respond(h, &m).await;
        }
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap().unwrap().cluster_id.unwrap().to_string());
        }
        let mut want: Vec<_> = headers
            .iter()
            .map(|h| h.correlation_id.to_string())
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn disconnect_fails_every_waiter_and_later_requests() {
        let (conn, mut broker) = pair();
        let conn = Arc::new(conn);
        let c1 = conn.clone();
        let c2 = conn.clone();
        let t1 = tokio::spawn(async move { c1.send_at(&MetadataRequest::default(), 12).await });
        let t2 = tokio::spawn(async move { c2.send_at(&MetadataRequest::default(), 12).await });
        broker.read_request().await.unwrap();
        broker.read_request().await.unwrap();
        drop(broker);
        for t in [t1, t2] {
            let err = t.await.unwrap().unwrap_err();
            assert!(matches!(err, Error::Disconnected { .. }), "{err}");
        }
        assert!(conn.is_poisoned());
        let err = conn
            .send_at(&MetadataRequest::default(), 12)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Disconnected { .. }));
    }

    #[tokio::test]
    async fn oversized_frame_poisons() {
        let (conn, mut broker) = pair();
        let conn = Arc::new(conn);
        let c = conn.clone();
        let t = tokio::spawn(async move { c.send_at(&MetadataRequest::default(), 12).await });
        broker.read_request().await.unwrap();
        broker.write_raw(&(1i32 << 30).to_be_bytes()).await;
        let err = t.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
        assert!(conn.is_poisoned());
    }

    #[tokio::test]
    async fn unknown_correlation_ids_are_ignored_and_truncation_poisons() {
        let (conn, mut broker) = pair();
        let conn = Arc::new(conn);
        let c = conn.clone();
        let t = tokio::spawn(async move { c.send_at(&MetadataRequest::default(), 12).await });
        let (h, _) = broker.read_request().await.unwrap();
        // A stray answer for id 999 is skipped.
        let mut stray = h.clone();
        stray.correlation_id = 999;
        broker
            .respond(&stray, &metadata_with_cluster("stray"))
            .await;
        broker.respond(&h, &metadata_with_cluster("real")).await;
        let resp = t.await.unwrap().unwrap();
        assert_eq!(resp.cluster_id.unwrap().as_str(), "real");
        // A frame cut short, then EOF.
        let c = conn.clone();
        let t = tokio::spawn(async move { c.send_at(&MetadataRequest::default(), 12).await });
        broker.read_request().await.unwrap();
        broker.write_raw(&[0, 0, 0, 100, 0, 0]).await;
        drop(broker);
        assert!(matches!(t.await.unwrap(), Err(Error::Disconnected { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_fails_the_request_and_poisons() {
        let (conn, mut broker) = pair();
        let req = MetadataRequest::default();
        let fut = conn.send_with_timeout(&req, 12, Duration::from_millis(50));
        let (res, _) = tokio::join!(fut, broker.read_request());
        assert!(matches!(res, Err(Error::Timeout { .. })));
        assert!(conn.is_poisoned());
    }

    #[tokio::test]
    async fn garbage_response_body_is_a_protocol_error() {
        let (conn, mut broker) = pair();
        let conn = Arc::new(conn);
        let c = conn.clone();
        let t = tokio::spawn(async move { c.send_at(&MetadataRequest::default(), 12).await });
        let (h, _) = broker.read_request().await.unwrap();
        let mut frame = Vec::new();
        frame.extend_from_slice(&9i32.to_be_bytes());
        frame.extend_from_slice(&h.correlation_id.to_be_bytes());
        frame.extend_from_slice(&[0, 0xff, 0xff, 0xff, 0xff]);
        broker.write_raw(&frame).await;
        assert!(matches!(t.await.unwrap(), Err(Error::Protocol { .. })));
    }
}
