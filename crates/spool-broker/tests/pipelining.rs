//! Requests pipelined on one connection: each takes effect in arrival order and its answer
//! comes back in that order, even while an earlier acks=all produce still waits for its fsync;
//! and the broker-wide budget for large requests admits them all without deadlock.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, MetadataRequest, ProduceRequest, ProduceResponse, RequestHeader,
    RequestKind, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use spool_broker::{BrokerConfig, EmbeddedBroker};
use spool_protocol::codec;
use spool_protocol::compression::Compression;
use spool_protocol::records::BatchBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PRODUCE_VERSION: i16 = 9;

fn frame(key: ApiKey, version: i16, corr: i32, body: RequestKind) -> BytesMut {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("pipeline-test")));
    let mut out = BytesMut::new();
    codec::encode_request(&mut out, &header, &body).unwrap();
    out
}

async fn recv(stream: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.ok()?;
    Some(Bytes::from(body))
}

fn produce(topic: &str, acks: i16, value: &[u8]) -> RequestKind {
    let mut builder = BatchBuilder::new(value.len() + 1024);
    assert!(builder.try_append(1, None, Some(value), &[]));
    let batch = builder.build(-1, -1, -1, Compression::None).unwrap();
    RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch))])]),
    )
}

async fn create_topic(stream: &mut TcpStream, name: &str) {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    let out = frame(ApiKey::CreateTopics, 7, 0, RequestKind::CreateTopics(req));
    stream.write_all(&out).await.unwrap();
    recv(stream).await.expect("CreateTopics answered");
}

/// (correlation id, base offset, error code) of a produce answer.
/// A broker on 127.0.0.1:0 with `config`, holding a one-partition `topic`.
async fn start_with_topic(config: BrokerConfig, topic: &str) -> EmbeddedBroker {
    let broker = EmbeddedBroker::start_with(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut setup = TcpStream::connect(broker.addr()).await.unwrap();
    create_topic(&mut setup, topic).await;
    broker
}

fn produce_answer(mut frame: Bytes) -> (i32, i64, i16) {
    let header = ResponseHeader::decode(
        &mut frame,
        ApiKey::Produce.response_header_version(PRODUCE_VERSION),
    )
    .unwrap();
    let body = ProduceResponse::decode(&mut frame, PRODUCE_VERSION).unwrap();
    let p = &body.responses[0].partition_responses[0];
    (header.correlation_id, p.base_offset, p.error_code)
}

#[tokio::test]
async fn pipelined_requests_run_and_are_answered_in_arrival_order() {
    let broker = EmbeddedBroker::start().await.unwrap();
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    create_topic(&mut s, "order").await;

    // One write carrying everything: acks=all, a Metadata request, acks=0 (no answer), acks=1,
    // acks=all again.
    let mut burst = BytesMut::new();
    burst.extend_from_slice(&frame(ApiKey::Produce, 9, 1, produce("order", -1, b"a")));
    burst.extend_from_slice(&frame(
        ApiKey::Metadata,
        9,
        2,
        RequestKind::Metadata(MetadataRequest::default().with_topics(None)),
    ));
    burst.extend_from_slice(&frame(ApiKey::Produce, 9, 3, produce("order", 0, b"b")));
    burst.extend_from_slice(&frame(ApiKey::Produce, 9, 4, produce("order", 1, b"c")));
    burst.extend_from_slice(&frame(ApiKey::Produce, 9, 5, produce("order", -1, b"d")));
    s.write_all(&burst).await.unwrap();

    assert_eq!(
        produce_answer(recv(&mut s).await.unwrap()),
        (1, 0, 0),
        "first acks=all produce"
    );
    let mut meta = recv(&mut s).await.unwrap();
    let header = ResponseHeader::decode(&mut meta, 1).unwrap();
    assert_eq!(header.correlation_id, 2, "Metadata answered second");
    // acks=0 took offset 1 without an answer.
    assert_eq!(produce_answer(recv(&mut s).await.unwrap()), (4, 2, 0));
    assert_eq!(produce_answer(recv(&mut s).await.unwrap()), (5, 3, 0));
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_long_pipelined_acks_all_stream_is_acknowledged_in_order_with_contiguous_offsets() {
    let broker = EmbeddedBroker::start().await.unwrap();
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    create_topic(&mut s, "stream").await;
    let (mut rd, mut wr) = s.into_split();
    const N: i32 = 200;
    // More requests than the broker queues answers for: its reader must wait for the writer
    // (back-pressure) rather than fail or reorder.
    let writer = tokio::spawn(async move {
        for corr in 0..N {
            let value = format!("v{corr}");
            let f = frame(
                ApiKey::Produce,
                9,
                corr,
                produce("stream", -1, value.as_bytes()),
            );
            wr.write_all(&f).await.unwrap();
        }
        wr
    });
    for corr in 0..N {
        let mut len = [0u8; 4];
        rd.read_exact(&mut len).await.unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        rd.read_exact(&mut body).await.unwrap();
        assert_eq!(
            produce_answer(Bytes::from(body)),
            (corr, i64::from(corr), 0)
        );
    }
    drop(writer.await.unwrap());
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn large_requests_beyond_the_memory_budget_all_complete() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path());
    // Smaller than any one of the requests below: each must still be admitted, one at a time.
    config.max_queued_request_bytes = 100 * 1024;
    let broker = start_with_topic(config, "big").await;
    let value = vec![7u8; 300 * 1024];
    let mut clients = Vec::new();
    for c in 0..6 {
        let addr = broker.addr();
        let value = value.clone();
        clients.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            for i in 0..3 {
                let f = frame(ApiKey::Produce, 9, c * 10 + i, produce("big", 1, &value));
                s.write_all(&f).await.unwrap();
                let (corr, _, code) = produce_answer(recv(&mut s).await.unwrap());
                assert_eq!((corr, code), (c * 10 + i, 0));
            }
        }));
    }
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        for c in clients {
            c.await.unwrap();
        }
    })
    .await
    .expect("large requests waited for a budget that never came back");
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_sender_stalled_while_holding_request_memory_is_cut_off_and_frees_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path());
    // Room for one large request at a time, and little patience with one that stops midway.
    config.max_queued_request_bytes = 1 << 20;
    config.stalled_request_timeout = std::time::Duration::from_millis(200);
    let broker = start_with_topic(config, "stall").await;
    let value = vec![1u8; 900 * 1024];
    let whole = frame(ApiKey::Produce, 9, 1, produce("stall", 1, &value));
    // The staller sends half of its request, takes the whole budget, and stops.
    let mut staller = TcpStream::connect(broker.addr()).await.unwrap();
    staller.write_all(&whole[..whole.len() / 2]).await.unwrap();
    // Another large request needs the budget: it is answered once the staller is cut off.
    let mut other = TcpStream::connect(broker.addr()).await.unwrap();
    other.write_all(&whole).await.unwrap();
    let answered = tokio::time::timeout(std::time::Duration::from_secs(30), recv(&mut other))
        .await
        .expect("the stalled sender kept the request memory");
    assert_eq!(produce_answer(answered.unwrap()), (1, 0, 0));
    // And the staller's connection was closed.
    let mut rest = [0u8; 1];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(30), staller.read(&mut rest))
        .await
        .expect("the stalled connection stayed open");
    assert!(matches!(closed, Ok(0) | Err(_)));
    broker.shutdown().await.unwrap();
}
