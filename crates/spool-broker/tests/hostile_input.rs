//! Hostile input against an in-process broker, one named test per attack.
//!
//! Each test opens a bystander connection first, then attacks over a connection of its own and
//! checks:
//! (a) the outcome: the Kafka error code in the response, or the connection closed unanswered;
//! (b) the bystander still gets answers afterwards;
//! (c) the peak of live heap bytes during the attack, counted by this binary's global
//!     allocator, stays under a cap derived from the broker's limits (the bytes the attacker
//!     actually sent, `socket.request.max.bytes`, or the decompression cap), never from the
//!     counts the attacker declared;
//! (d) when the broker closes the connection, its log line names the attacker's address.
//!
//! The allocator and the log capture are process-wide, so the tests run one at a time
//! (`serial`). Each prints its measured peak: `cargo test -p spool-broker --test hostile_input
//! -- --nocapture`.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreateTopicsRequest, ListOffsetsRequest, MetadataRequest,
    ProduceRequest, ProduceResponse, RequestHeader, RequestKind, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use peak_alloc::PeakAlloc;
use spool_broker::{BrokerConfig, EmbeddedBroker};
use spool_protocol::batch::{self, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};
use spool_protocol::codec;
use spool_protocol::compression::{self, Compression};
use spool_protocol::records::BatchBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// Room for what a healthy broker allocates anyway while serving an attack: read buffers,
/// log lines, response frames, the runtime's own bookkeeping.
const SLACK: usize = 1 << 20;

/// How long any single read or exchange may take before the test fails instead of hanging.
const DEADLINE: Duration = Duration::from_secs(60);

/// `max.message.bytes` of the topics bombs are sent to. The broker caps one decompressed batch
/// at 64 times this, and at least 1 MiB (produce.rs, spool-log's partition.rs).
const TOPIC_MAX_MESSAGE_BYTES: usize = 16 * 1024;

fn decompression_cap() -> usize {
    TOPIC_MAX_MESSAGE_BYTES.saturating_mul(64).max(1 << 20)
}

fn max_request_bytes() -> usize {
    BrokerConfig::new("unused").max_request_bytes
}

// ---------------------------------------------------------------------------------------------
// serialisation, logs, memory

/// Held for the whole of each test: one attack at a time, so peaks and log lines are its own.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// Everything the broker logs at INFO and above, for the whole process.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .with_writer(move || LogWriter(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log lines that mention `peer`.
fn log_lines_naming(peer: SocketAddr) -> Vec<String> {
    let text = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    let needle = format!("peer={peer}");
    text.lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_owned)
        .collect()
}

/// Asserts the broker logged a warning naming `peer` that contains `reason`.
fn assert_logged(peer: SocketAddr, reason: &str) {
    let lines = log_lines_naming(peer);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains(reason)),
        "no WARN line naming {peer} with {reason:?}; lines naming it: {lines:#?}"
    );
}

/// Peak live heap bytes from `start()` on, above what was live at `start()`.
struct Peak {
    baseline: usize,
}

impl Peak {
    fn start() -> Self {
        ALLOC.reset_peak_usage();
        Peak {
            baseline: ALLOC.current_usage(),
        }
    }

    fn bytes(&self) -> usize {
        ALLOC.peak_usage().saturating_sub(self.baseline)
    }

    /// Asserts the peak stayed under `cap` and prints it for RELIABILITY.md.
    fn assert_under(&self, what: &str, cap: usize) -> usize {
        let peak = self.bytes();
        println!(
            "{what}: peak {:.2} MiB above baseline (cap {:.2} MiB)",
            mib(peak),
            mib(cap)
        );
        assert!(
            peak < cap,
            "{what}: peak {peak} bytes is not under the cap of {cap} bytes"
        );
        peak
    }
}

fn mib(n: usize) -> f64 {
    n as f64 / (1024.0 * 1024.0)
}

// ---------------------------------------------------------------------------------------------
// a broker with a bystander

struct Scene {
    broker: EmbeddedBroker,
    bystander: TcpStream,
    correlation: i32,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Scene {
    async fn new() -> Self {
        let serial = serial().await;
        logs().lock().unwrap().clear();
        let broker = EmbeddedBroker::start().await.unwrap();
        let bystander = TcpStream::connect(broker.addr()).await.unwrap();
        let mut scene = Scene {
            broker,
            bystander,
            correlation: 0,
            _serial: serial,
        };
        // One exchange first, so the bystander's connection task exists before the attack.
        scene.bystander_is_served("before the attack").await;
        scene
    }

    fn addr(&self) -> SocketAddr {
        self.broker.addr()
    }

    /// Asserts the bystander connection still gets a Metadata answer.
    async fn bystander_is_served(&mut self, when: &str) {
        self.correlation += 1;
        let corr = self.correlation;
        let frame = request_frame(
            ApiKey::Metadata,
            12,
            corr,
            RequestKind::Metadata(MetadataRequest::default()),
        );
        let exchange = async {
            self.bystander.write_all(&frame).await.ok()?;
            recv(&mut self.bystander).await
        };
        let mut resp = timeout(DEADLINE, exchange)
            .await
            .unwrap_or_else(|_| panic!("{when}: bystander got no answer in time"))
            .unwrap_or_else(|| panic!("{when}: bystander connection was closed"));
        let header = ResponseHeader::decode(&mut resp, 1).unwrap();
        assert_eq!(header.correlation_id, corr, "{when}");
    }

    async fn finish(mut self) {
        self.bystander_is_served("after the attack").await;
        self.broker.shutdown().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// wire helpers

fn request_frame(key: ApiKey, version: i16, corr: i32, body: RequestKind) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("hostile-test")));
    let mut out = BytesMut::new();
    codec::encode_request(&mut out, &header, &body).unwrap();
    out.to_vec()
}

/// Reads one response frame; `None` when the connection closed (or was reset) first.
async fn recv(stream: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.ok()?;
    Some(Bytes::from(body))
}

/// Connects, sends `bytes` and asserts the broker closes the connection without answering.
/// Returns the attacker's address, which the broker's log line must name.
async fn attack_expecting_close(addr: SocketAddr, bytes: &[u8], what: &str) -> SocketAddr {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let me = s.local_addr().unwrap();
    // The broker may close before reading everything; a failed write is then expected.
    let _ = s.write_all(bytes).await;
    let mut buf = [0u8; 64];
    let n = timeout(DEADLINE, s.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("{what}: the broker neither answered nor closed"))
        .unwrap_or(0);
    assert_eq!(n, 0, "{what}: expected the connection closed unanswered");
    me
}

/// Frames `body` with its length prefix.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// Request header for a classic (non-flexible) request with a null client id.
fn classic_header(key: ApiKey, version: i16) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(key as i16).to_be_bytes());
    b.extend_from_slice(&version.to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b
}

/// A Produce v3 body up to (not including) the records length, for topic "t" partition 0.
fn produce_v3_prefix() -> Vec<u8> {
    let mut b = classic_header(ApiKey::Produce, 3);
    b.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id
    b.extend_from_slice(&1i16.to_be_bytes()); // acks
    b.extend_from_slice(&1000i32.to_be_bytes()); // timeout
    b.extend_from_slice(&1i32.to_be_bytes()); // one topic
    b.extend_from_slice(&1i16.to_be_bytes());
    b.push(b't');
    b.extend_from_slice(&1i32.to_be_bytes()); // one partition
    b.extend_from_slice(&0i32.to_be_bytes());
    b
}

fn uvarint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Creates `name` with one partition, `max.message.bytes` = TOPIC_MAX_MESSAGE_BYTES, and
/// `cleanup.policy` = `policy`.
async fn create_topic(s: &mut TcpStream, name: &'static str, policy: &'static str) {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(name)))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("cleanup.policy"))
                    .with_value(Some(StrBytes::from_static_str(policy))),
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("max.message.bytes"))
                    .with_value(Some(StrBytes::from(TOPIC_MAX_MESSAGE_BYTES.to_string()))),
            ])]);
    s.write_all(&request_frame(
        ApiKey::CreateTopics,
        7,
        1,
        RequestKind::CreateTopics(req),
    ))
    .await
    .unwrap();
    let mut resp = timeout(DEADLINE, recv(s)).await.unwrap().unwrap();
    ResponseHeader::decode(&mut resp, 1).unwrap();
    let resp =
        kafka_protocol::messages::CreateTopicsResponse::decode(&mut resp, 7).expect("response");
    assert_eq!(resp.topics[0].error_code, 0, "creating {name}");
}

/// One v2 batch around a records section, with a correct length and CRC: what a producer
/// that lies about the section (a bomb, a record count) sends.
fn batch_with_section(codec: Compression, record_count: i32, section: &[u8]) -> Bytes {
    let mut buf = vec![0u8; HEADER_LEN];
    let batch_length = (HEADER_LEN - LOG_OVERHEAD + section.len()) as i32;
    buf[8..12].copy_from_slice(&batch_length.to_be_bytes());
    buf[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    buf[16] = MAGIC_V2 as u8;
    buf[21..23].copy_from_slice(&codec.attribute_bits().to_be_bytes());
    buf[23..27].copy_from_slice(&(record_count - 1).max(0).to_be_bytes());
    buf[27..35].copy_from_slice(&1_700_000_000_000i64.to_be_bytes());
    buf[35..43].copy_from_slice(&1_700_000_000_000i64.to_be_bytes());
    buf[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    buf[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    buf[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    buf[57..61].copy_from_slice(&record_count.to_be_bytes());
    buf.extend_from_slice(section);
    batch::seal_crc(&mut buf);
    Bytes::from(buf)
}

/// A decompression bomb: `size` zero bytes compressed with `codec`, declared as one record.
///
/// Snappy's format states its output size up front, so its bomb is a raw block declaring
/// `size` bytes and carrying almost nothing. A zstd frame states its size too and is refused
/// on it, so `hidden` puts the bomb in a second frame behind an honest one-byte first frame:
/// only the streaming cap can stop that one.
fn bomb(codec: Compression, size: usize, hidden: bool) -> Bytes {
    let mut section = Vec::new();
    if codec == Compression::Snappy {
        uvarint(size as u64, &mut section);
        section.extend_from_slice(&[0x00, 0x00]); // a one-byte literal
    } else {
        if hidden {
            compression::compress(codec, &[0], &mut section).unwrap();
        }
        compression::compress(codec, &vec![0u8; size], &mut section).unwrap();
    }
    batch_with_section(codec, 1, &section)
}

/// Produce v9 of one batch to partition 0 of `topic`; returns the partition's error code.
async fn produce(s: &mut TcpStream, topic: &'static str, records: Bytes) -> i16 {
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let frame = request_frame(ApiKey::Produce, 9, 3, RequestKind::Produce(req));
    s.write_all(&frame).await.unwrap();
    let mut resp = timeout(DEADLINE, recv(s))
        .await
        .expect("produce answered in time")
        .expect("produce answered, not closed");
    ResponseHeader::decode(&mut resp, 1).unwrap();
    let resp = ProduceResponse::decode(&mut resp, 9).unwrap();
    resp.responses[0].partition_responses[0].error_code
}

/// ListOffsets v1 by timestamp 0 on partition 0 of `topic`: the first record at or after it,
/// which makes the broker decode the batch found. Returns (error code, offset).
async fn list_offset_by_timestamp(s: &mut TcpStream, topic: &'static str) -> (i16, i64) {
    let req = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(TopicName(StrBytes::from_static_str(topic)))
        .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(0)])]);
    let frame = request_frame(ApiKey::ListOffsets, 1, 4, RequestKind::ListOffsets(req));
    s.write_all(&frame).await.unwrap();
    let mut resp = timeout(DEADLINE, recv(s)).await.unwrap().unwrap();
    ResponseHeader::decode(&mut resp, 0).unwrap();
    let resp = kafka_protocol::messages::ListOffsetsResponse::decode(&mut resp, 1).unwrap();
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.offset)
}

const CORRUPT_MESSAGE: i16 = 2;
const INVALID_RECORD: i16 = 87;

// ---------------------------------------------------------------------------------------------
// request-level attacks

#[tokio::test]
async fn metadata_v0_declaring_54_million_topics_is_refused_without_allocating_for_them() {
    let mut scene = Scene::new().await;
    let mut body = classic_header(ApiKey::Metadata, 0);
    body.extend_from_slice(&54_000_000i32.to_be_bytes());
    let frame = framed(&body);
    let peak = Peak::start();
    let attacker = attack_expecting_close(scene.addr(), &frame, "54M topics").await;
    // Decoded, 54 million topic entries would be gigabytes.
    peak.assert_under("metadata v0 with 54,000,000 topics", SLACK);
    assert_logged(attacker, "Topics: declares 54000000");
    scene.bystander_is_served("after 54M topics").await;
    scene.finish().await;
}

#[tokio::test]
async fn twenty_million_tagged_fields_are_refused_declared_or_sent() {
    let mut scene = Scene::new().await;
    const FIELDS: u64 = 20_000_000;

    // Declared in the request header (Metadata v12, header v2), with no bytes behind them.
    let mut body = classic_header(ApiKey::Metadata, 12);
    uvarint(FIELDS, &mut body);
    let frame = framed(&body);
    let peak = Peak::start();
    let attacker = attack_expecting_close(scene.addr(), &frame, "20M tagged fields declared").await;
    peak.assert_under("20,000,000 tagged fields declared in the header", SLACK);
    assert_logged(attacker, "20000000 tagged fields");
    scene
        .bystander_is_served("after 20M declared tagged fields")
        .await;

    // Really sent in the body: 20 million (tag 0, size 0) pairs, a 40 MB frame. The broker
    // buffers the frame it was sent (bounded by socket.request.max.bytes) and nothing more.
    let mut body = classic_header(ApiKey::Metadata, 12);
    body.push(0); // header tagged fields
    body.push(0); // topics: null
    body.push(1); // allow auto topic creation
    body.push(0); // include topic authorized operations
    uvarint(FIELDS, &mut body);
    body.resize(body.len() + 2 * FIELDS as usize, 0);
    let frame = framed(&body);
    assert!(frame.len() < max_request_bytes());
    let peak = Peak::start();
    let attacker = attack_expecting_close(scene.addr(), &frame, "20M tagged fields sent").await;
    peak.assert_under(
        "20,000,000 tagged fields sent (40 MB frame)",
        frame.len() + SLACK,
    );
    assert_logged(attacker, "20000000 tagged fields");
    drop(frame);
    scene.finish().await;
}

#[tokio::test]
async fn negative_lengths_close_the_connection() {
    let mut scene = Scene::new().await;
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![(
        "frame",
        (-5i32).to_be_bytes().to_vec(),
        "negative frame length -5",
    )];
    // Metadata v1: one topic whose name length is -2.
    let mut b = classic_header(ApiKey::Metadata, 1);
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&(-2i16).to_be_bytes());
    cases.push(("string", framed(&b), "negative length -2"));
    // Metadata v1: a topic array of -3 entries (-1 would mean null: all topics).
    let mut b = classic_header(ApiKey::Metadata, 1);
    b.extend_from_slice(&(-3i32).to_be_bytes());
    cases.push(("array", framed(&b), "negative length -3"));
    // Produce v3: a records field of -7 bytes.
    let mut b = produce_v3_prefix();
    b.extend_from_slice(&(-7i32).to_be_bytes());
    cases.push(("bytes", framed(&b), "negative length -7"));
    for (what, frame, reason) in cases {
        let peak = Peak::start();
        let attacker = attack_expecting_close(scene.addr(), &frame, what).await;
        peak.assert_under(&format!("negative {what} length"), SLACK);
        assert_logged(attacker, reason);
        scene.bystander_is_served(what).await;
    }
    scene.finish().await;
}

#[tokio::test]
async fn oversized_lengths_close_the_connection_before_buffering() {
    let mut scene = Scene::new().await;
    let max = max_request_bytes();
    let mut cases: Vec<(&str, Vec<u8>, String)> = vec![(
        "frame",
        ((max + 1) as i32).to_be_bytes().to_vec(),
        format!(
            "frame of {} bytes exceeds the maximum of {max} bytes",
            max + 1
        ),
    )];
    // Metadata v1: one topic whose name claims 32767 bytes, with one present.
    let mut b = classic_header(ApiKey::Metadata, 1);
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&i16::MAX.to_be_bytes());
    b.push(b't');
    cases.push(("string", framed(&b), "declares 32767".into()));
    // Metadata v1: 2^31-1 topics.
    let mut b = classic_header(ApiKey::Metadata, 1);
    b.extend_from_slice(&i32::MAX.to_be_bytes());
    cases.push(("array", framed(&b), "declares 2147483647".into()));
    // Produce v3: records claiming 2^31-1 bytes.
    let mut b = produce_v3_prefix();
    b.extend_from_slice(&i32::MAX.to_be_bytes());
    b.extend_from_slice(&[0; 16]);
    cases.push(("bytes", framed(&b), "declares 2147483647".into()));
    for (what, frame, reason) in cases {
        let peak = Peak::start();
        let attacker = attack_expecting_close(scene.addr(), &frame, what).await;
        peak.assert_under(&format!("oversized {what} length"), SLACK);
        assert_logged(attacker, &reason);
        scene.bystander_is_served(what).await;
    }

    // A frame of exactly the maximum whose body never comes: the broker may hold room for it
    // (as Kafka does), never more, and keeps serving others meanwhile.
    let peak = Peak::start();
    let mut s = TcpStream::connect(scene.addr()).await.unwrap();
    s.write_all(&(max as i32).to_be_bytes()).await.unwrap();
    s.write_all(&[0, 3, 0, 1]).await.unwrap();
    scene
        .bystander_is_served("while a maximum-size frame is pending")
        .await;
    drop(s);
    peak.assert_under("pending frame of socket.request.max.bytes", max + SLACK);
    scene.finish().await;
}

#[tokio::test]
async fn a_tls_client_hello_on_the_plaintext_port_is_named_in_the_log() {
    let scene = Scene::new().await;
    // The start of a TLS 1.2 ClientHello record: content type 22, version 3.1, length 512.
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    hello.extend_from_slice(&[0x5a; 32]); // client random
    hello.push(0); // session id
    hello.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher suite
    let peak = Peak::start();
    let attacker = attack_expecting_close(scene.addr(), &hello, "TLS ClientHello").await;
    peak.assert_under("TLS ClientHello", SLACK);
    assert_logged(attacker, "looks like a TLS handshake");
    scene.finish().await;
}

#[tokio::test]
async fn a_slow_client_sending_one_byte_at_a_time_is_served_and_blocks_no_one() {
    let mut scene = Scene::new().await;
    let frame = request_frame(
        ApiKey::ApiVersions,
        3,
        4,
        RequestKind::ApiVersions(ApiVersionsRequest::default()),
    );
    let peak = Peak::start();
    let mut s = TcpStream::connect(scene.addr()).await.unwrap();
    s.set_nodelay(true).unwrap();
    for (i, b) in frame.iter().enumerate() {
        s.write_all(&[*b]).await.unwrap();
        s.flush().await.unwrap();
        if i == frame.len() / 2 {
            scene
                .bystander_is_served("while the slow client is halfway")
                .await;
        }
        tokio::task::yield_now().await;
    }
    let mut resp = timeout(DEADLINE, recv(&mut s)).await.unwrap().unwrap();
    assert_eq!(
        ResponseHeader::decode(&mut resp, 0).unwrap().correlation_id,
        4
    );
    peak.assert_under("slow client, one byte at a time", SLACK);
    scene.finish().await;
}

// ---------------------------------------------------------------------------------------------
// record-batch attacks

/// Each codec, and zstd again with its bomb behind an honest first frame.
const BOMBS: [(Compression, bool, &str); 5] = [
    (Compression::Gzip, false, "gzip"),
    (Compression::Snappy, false, "snappy"),
    (Compression::Lz4, false, "lz4"),
    (Compression::Zstd, false, "zstd"),
    (Compression::Zstd, true, "zstd (second frame)"),
];

#[tokio::test]
async fn an_oversized_batch_on_a_compacted_topic_is_refused_before_it_is_decompressed() {
    let mut scene = Scene::new().await;
    let mut s = TcpStream::connect(scene.addr()).await.unwrap();
    create_topic(&mut s, "compacted", "compact").await;
    // A gzip bomb whose compressed size alone is over max.message.bytes: Kafka refuses it by
    // size (MESSAGE_TOO_LARGE) without inflating it, and so must we.
    let mut size = 64 * decompression_cap();
    let records = loop {
        let b = bomb(Compression::Gzip, size, false);
        if b.len() > TOPIC_MAX_MESSAGE_BYTES {
            break b;
        }
        size *= 2;
    };
    let peak = Peak::start();
    assert_eq!(
        produce(&mut s, "compacted", records).await,
        10,
        "MESSAGE_TOO_LARGE"
    );
    // Nothing near the decompression cap was ever allocated: only the request itself.
    peak.assert_under(
        "oversized compressed batch",
        2 * TOPIC_MAX_MESSAGE_BYTES + SLACK,
    );
    scene.bystander_is_served("oversized batch").await;
}

#[tokio::test]
async fn decompression_bombs_in_every_codec_stop_at_the_cap() {
    let mut scene = Scene::new().await;
    let mut s = TcpStream::connect(scene.addr()).await.unwrap();
    create_topic(&mut s, "compacted", "compact").await;
    create_topic(&mut s, "plain", "delete").await;
    let cap = decompression_cap();
    // Twice the cap: well past it, yet under the topic's max.message.bytes compressed.
    let size = 2 * cap;
    for (codec, hidden, name) in BOMBS {
        let records = bomb(codec, size, hidden);
        assert!(
            records.len() <= TOPIC_MAX_MESSAGE_BYTES,
            "{name} bomb too big"
        );

        // A compacted topic checks keys, so the broker decompresses: refused at the cap.
        let peak = Peak::start();
        let code = produce(&mut s, "compacted", records.clone()).await;
        assert_eq!(code, CORRUPT_MESSAGE, "{name} bomb on a compacted topic");
        // Output is capped at `cap`; growing to it may briefly hold half of it twice. An LZ4
        // frame also makes the decoder hold two buffers of the block size it declares (up to
        // 4 MiB each, as Kafka's own LZ4 reader does), whatever the cap.
        let codec_buffers = if codec == Compression::Lz4 {
            8 << 20
        } else {
            0
        };
        peak.assert_under(
            &format!("{name} bomb, compacted topic (decompressed)"),
            2 * cap + codec_buffers + SLACK,
        );
        scene.bystander_is_served(name).await;

        // Elsewhere the broker stores batches as they come, without decompressing.
        let peak = Peak::start();
        assert_eq!(
            produce(&mut s, "plain", records).await,
            0,
            "{name} bomb stored"
        );
        peak.assert_under(&format!("{name} bomb, plain topic (stored)"), SLACK);
    }
    // ListOffsets by timestamp decodes the batch it lands on: the first bomb. Undecodable, it
    // still answers by the batch's header (offset 0), within the same cap.
    let peak = Peak::start();
    assert_eq!(list_offset_by_timestamp(&mut s, "plain").await, (0, 0));
    peak.assert_under("bomb decoded by ListOffsets", 2 * cap + (8 << 20) + SLACK);
    scene.bystander_is_served("after ListOffsets").await;
    drop(s);
    scene.finish().await;
}

/// Three records, with the header's record count rewritten to `count` and its last offset
/// delta to agree with it (CRC resealed): a lie the header alone cannot reveal.
fn lying_count(codec: Compression, count: i32) -> Bytes {
    let mut b = BatchBuilder::new(1 << 16);
    for i in 0..3u8 {
        assert!(b.try_append(
            1_700_000_000_000,
            Some(&[b'k', i]),
            Some(b"value-0123"),
            &[]
        ));
    }
    let mut buf = b.build(-1, -1, -1, codec).unwrap().to_vec();
    buf[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    buf[57..61].copy_from_slice(&count.to_be_bytes());
    batch::seal_crc(&mut buf);
    Bytes::from(buf)
}

#[tokio::test]
async fn record_counts_that_lie_are_invalid_where_the_broker_reads_records() {
    let scene = Scene::new().await;
    let mut s = TcpStream::connect(scene.addr()).await.unwrap();
    create_topic(&mut s, "compacted", "compact").await;
    create_topic(&mut s, "plain", "delete").await;
    for codec in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let name = codec.name();
        for (what, count) in [("more", 4), ("fewer", 2), ("far more", 1_000_000)] {
            let peak = Peak::start();
            let code = produce(&mut s, "compacted", lying_count(codec, count)).await;
            // Kafka's InvalidRecordException: the records do not parse as declared.
            assert_eq!(code, INVALID_RECORD, "{name}: {what} records than present");
            peak.assert_under(&format!("{name} batch declaring {what} records"), SLACK);
        }
        // The honest count is accepted.
        assert_eq!(produce(&mut s, "compacted", lying_count(codec, 3)).await, 0);
    }
    // A topic that is not compacted reads headers only: a count no batch of that size could
    // hold is refused, a plausible lie is stored as sent (Kafka would refuse it too; see
    // RELIABILITY.md).
    let code = produce(&mut s, "plain", lying_count(Compression::None, 1_000_000)).await;
    assert_eq!(code, INVALID_RECORD, "impossible count on a plain topic");
    let code = produce(&mut s, "plain", lying_count(Compression::None, 2)).await;
    assert_eq!(code, 0, "plausible lie on a plain topic is stored as sent");
    // A count that disagrees with the header's own last offset delta is an invalid record.
    let mut inconsistent = lying_count(Compression::None, 3).to_vec();
    inconsistent[57..61].copy_from_slice(&2i32.to_be_bytes());
    batch::seal_crc(&mut inconsistent);
    let code = produce(&mut s, "plain", Bytes::from(inconsistent)).await;
    assert_eq!(code, INVALID_RECORD, "count against last offset delta");
    drop(s);
    scene.finish().await;
}
