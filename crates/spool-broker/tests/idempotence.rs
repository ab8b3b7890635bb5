//! Idempotent produce across broker restarts, on the wire: the very same batch bytes (same
//! producer id, epoch and sequence) sent again after a crash or a clean restart get the original
//! offsets and no error, and nothing new is written; Kafka's answers for sequence gaps, old
//! duplicates and fenced epochs hold after a restart too.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, InitProducerIdRequest, ListOffsetsRequest, ProduceRequest,
    ProducerId, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use spool_broker::{BrokerConfig, EmbeddedBroker};
use spool_protocol::compression::Compression;
use spool_protocol::records::BatchBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOPIC: &str = "idem";
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;

async fn call<R: Request>(stream: &mut TcpStream, req: R, version: i16) -> R::Response {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(1);
    let key = ApiKey::try_from(R::KEY).unwrap();
    let mut body = BytesMut::new();
    header
        .encode(&mut body, key.request_header_version(version))
        .unwrap();
    req.encode(&mut body, version).unwrap();
    stream
        .write_all(&(body.len() as i32).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&body).await.unwrap();
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.unwrap();
    let mut frame = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut frame).await.unwrap();
    let mut frame = Bytes::from(frame);
    ResponseHeader::decode(&mut frame, key.response_header_version(version)).unwrap();
    R::Response::decode(&mut frame, version).unwrap()
}

/// A broker on `dir`; retention runs every 20 ms (the retention case then takes well under a
/// second; the others keep their data, stamped with the current time).
async fn start(dir: &std::path::Path) -> (EmbeddedBroker, TcpStream) {
    let config = BrokerConfig {
        retention_check_interval_ms: 20,
        ..BrokerConfig::new(dir)
    };
    let broker = EmbeddedBroker::start_with(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let stream = TcpStream::connect(broker.addr()).await.unwrap();
    (broker, stream)
}

async fn create_topic(s: &mut TcpStream, configs: &[(&str, &str)]) {
    let topic = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        );
    let resp = call(
        s,
        CreateTopicsRequest::default().with_topics(vec![topic]),
        7,
    )
    .await;
    assert_eq!(resp.topics[0].error_code, 0);
}

async fn init_producer_id(s: &mut TcpStream) -> (i64, i16) {
    let resp = call(
        s,
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
        4,
    )
    .await;
    assert_eq!(resp.error_code, 0);
    (resp.producer_id.0, resp.producer_epoch)
}

/// An idempotent batch of `records` records stamped now, as a Kafka producer sends it.
fn batch(pid: i64, epoch: i16, sequence: i32, records: usize) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut b = BatchBuilder::new(1 << 20);
    for i in 0..records {
        let value = format!("seq {}", sequence as usize + i);
        assert!(b.try_append(now, None, Some(value.as_bytes()), &[]));
    }
    b.build(pid, epoch, sequence, Compression::None).unwrap()
}

/// Produces with acks=all: (error code, base offset).
async fn produce(s: &mut TcpStream, batch: &Bytes) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.clone()))])]);
    let resp = call(s, req, 9).await;
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// ListOffsets for -1 (latest) or -2 (earliest).
async fn offset(s: &mut TcpStream, timestamp: i64) -> i64 {
    let req = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
        .with_partitions(vec![
            ListOffsetsPartition::default().with_timestamp(timestamp)
        ])]);
    let resp = call(s, req, 7).await;
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

#[derive(Debug, Clone, Copy)]
enum Restart {
    /// The broker task aborted: no flush, no clean-shutdown marker, no close-time snapshot.
    Crash,
    Clean,
}

async fn restart(broker: EmbeddedBroker, how: Restart) -> (EmbeddedBroker, TcpStream) {
    let dir = broker.data_dir().to_path_buf();
    match how {
        Restart::Crash => {
            broker.abort().await;
        }
        Restart::Clean => {
            broker.shutdown().await.unwrap();
        }
    }
    let partition = dir.join(format!("{TOPIC}-0"));
    assert_eq!(
        partition.join(".clean-shutdown").exists(),
        matches!(how, Restart::Clean),
        "{how:?}"
    );
    start(&dir).await
}

#[tokio::test]
async fn retried_batch_is_deduplicated_across_crash_and_clean_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, mut s) = start(dir.path()).await;
    create_topic(&mut s, &[]).await;
    let (pid, epoch) = init_producer_id(&mut s).await;
    let first = batch(pid, epoch, 0, 3);
    assert_eq!(produce(&mut s, &first).await, (0, 0));
    // A retry before any restart, for reference.
    assert_eq!(produce(&mut s, &first).await, (0, 0));
    assert_eq!(offset(&mut s, -1).await, 3);

    for how in [Restart::Crash, Restart::Clean, Restart::Crash] {
        (broker, s) = restart(broker, how).await;
        assert_eq!(
            produce(&mut s, &first).await,
            (0, 0),
            "retry after {how:?} restart: original offset, no error"
        );
        assert_eq!(offset(&mut s, -1).await, 3, "nothing appended ({how:?})");
    }

    // The sequence continues where the log left it.
    let second = batch(pid, epoch, 3, 2);
    assert_eq!(produce(&mut s, &second).await, (0, 3));
    (broker, s) = restart(broker, Restart::Crash).await;
    assert_eq!(produce(&mut s, &second).await, (0, 3));
    assert_eq!(produce(&mut s, &first).await, (0, 0));
    // A gap: OUT_OF_ORDER_SEQUENCE_NUMBER, as Kafka answers.
    assert_eq!(
        produce(&mut s, &batch(pid, epoch, 9, 1)).await.0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    // Five more batches push `first` out of the five remembered: retrying it is then out of
    // order (Kafka answers so; DUPLICATE_SEQUENCE_NUMBER is never sent by a broker).
    for i in 0..5 {
        assert_eq!(
            produce(&mut s, &batch(pid, epoch, 5 + i, 1)).await,
            (0, 5 + i64::from(i))
        );
    }
    (broker, s) = restart(broker, Restart::Crash).await;
    assert_eq!(
        produce(&mut s, &first).await.0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    assert_eq!(produce(&mut s, &batch(pid, epoch, 5, 1)).await, (0, 5));
    // A bumped epoch starts at sequence 0; the old epoch is fenced, across restarts too.
    assert_eq!(
        produce(&mut s, &batch(pid, epoch + 1, 1, 1)).await.0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    assert_eq!(produce(&mut s, &batch(pid, epoch + 1, 0, 1)).await, (0, 10));
    (broker, s) = restart(broker, Restart::Crash).await;
    assert_eq!(
        produce(&mut s, &batch(pid, epoch, 10, 1)).await.0,
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(offset(&mut s, -1).await, 11);
    assert_eq!(offset(&mut s, -2).await, 0, "retention played no part here");
    drop(s);
    broker.shutdown().await.unwrap();
}

/// Retention deletes the segment holding a producer's batch; its state survives (as in Kafka,
/// until producer.id.expiration.ms), also across a crash: the retry is still a duplicate.
#[tokio::test]
async fn producer_state_outlives_retention_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut s) = start(dir.path()).await;
    create_topic(&mut s, &[("segment.ms", "1"), ("retention.bytes", "0")]).await;
    let (pid, epoch) = init_producer_id(&mut s).await;
    let first = batch(pid, epoch, 0, 2);
    assert_eq!(produce(&mut s, &first).await, (0, 0));
    let deadline = Instant::now() + Duration::from_secs(30);
    while offset(&mut s, -2).await < 2 {
        assert!(
            Instant::now() < deadline,
            "retention never deleted offset 0"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(produce(&mut s, &first).await, (0, 0));
    let (broker, mut s) = restart(broker, Restart::Crash).await;
    assert_eq!(offset(&mut s, -2).await, 2);
    assert_eq!(
        produce(&mut s, &first).await,
        (0, 0),
        "retry of a deleted batch after a crash"
    );
    assert_eq!(offset(&mut s, -1).await, 2, "nothing appended");
    assert_eq!(produce(&mut s, &batch(pid, epoch, 2, 1)).await, (0, 2));
    drop(s);
    broker.shutdown().await.unwrap();
}
