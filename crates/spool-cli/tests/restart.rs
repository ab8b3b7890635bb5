//! A real `spool broker` process killed with SIGKILL (nothing flushed or written at shutdown)
//! and stopped with SIGTERM, restarted on the same data directory: an idempotent producer's
//! retry of the very same batch bytes gets the original offset back, and nothing is appended.

use std::path::Path;

use bytes::Bytes;
use spool_client::connection::Connection;
use spool_client::ClientConfig;
use spool_protocol::compression::Compression;
use spool_protocol::kafka_protocol::messages::create_topics_request::CreatableTopic;
use spool_protocol::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use spool_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use spool_protocol::kafka_protocol::messages::{
    CreateTopicsRequest, InitProducerIdRequest, ListOffsetsRequest, ProduceRequest, ProducerId,
    TopicName,
};
use spool_protocol::kafka_protocol::protocol::StrBytes;
use spool_protocol::records::BatchBuilder;

mod support;
use support::BrokerProcess;

const TOPIC: &str = "restart";

/// A `spool broker` child over `dir`, with a raw connection helper.
struct Broker(BrokerProcess);

impl Broker {
    fn start(dir: &Path) -> Broker {
        Broker(BrokerProcess::start(dir, &[]))
    }

    /// SIGKILL: the process gets no chance to flush, snapshot or mark a clean shutdown.
    fn kill(self) {
        self.0.kill();
    }

    /// SIGTERM: a graceful stop.
    fn terminate(self) {
        assert!(self.0.terminate().success());
    }

    async fn connect(&self) -> Connection {
        let addr = &self.0.addr;
        let conn = Connection::connect(addr, &ClientConfig::new(addr))
            .await
            .unwrap();
        conn.handshake().await.unwrap();
        conn
    }
}

/// An idempotent batch stamped now (an old timestamp could meet retention).
fn batch(pid: i64, epoch: i16, sequence: i32, records: usize) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut b = BatchBuilder::new(1 << 20);
    for i in 0..records {
        let value = format!("record {i}");
        assert!(b.try_append(now, None, Some(value.as_bytes()), &[]));
    }
    b.build(pid, epoch, sequence, Compression::None).unwrap()
}

/// acks=all: (error code, base offset).
async fn produce(conn: &Connection, batch: &Bytes) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.clone()))])]);
    let resp = conn.send_at(&req, 9).await.unwrap();
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

async fn log_end(conn: &Connection) -> i64 {
    let req = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
        .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)])]);
    let resp = conn.send_at(&req, 7).await.unwrap();
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

#[tokio::test]
async fn idempotent_retry_after_sigkill_and_sigterm_gets_the_original_offset() {
    let dir = tempfile::tempdir().unwrap();
    let partition_dir = dir.path().join(format!("{TOPIC}-0"));
    let broker = Broker::start(dir.path());
    let conn = broker.connect().await;
    let created = conn
        .send_at(
            &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_num_partitions(1)
                .with_replication_factor(1)]),
            7,
        )
        .await
        .unwrap();
    assert_eq!(created.topics[0].error_code, 0);
    let init = conn
        .send_at(
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
            4,
        )
        .await
        .unwrap();
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    let first = batch(pid, epoch, 0, 3);
    assert_eq!(produce(&conn, &first).await, (0, 0));
    drop(conn);

    broker.kill();
    assert!(!partition_dir.join(".clean-shutdown").exists());
    let broker = Broker::start(dir.path());
    let conn = broker.connect().await;
    assert_eq!(
        produce(&conn, &first).await,
        (0, 0),
        "retry after SIGKILL: the original offset, no error"
    );
    assert_eq!(log_end(&conn).await, 3, "nothing appended");
    let second = batch(pid, epoch, 3, 1);
    assert_eq!(produce(&conn, &second).await, (0, 3));
    drop(conn);

    broker.terminate();
    assert!(partition_dir.join(".clean-shutdown").exists());
    let broker = Broker::start(dir.path());
    let conn = broker.connect().await;
    assert_eq!(produce(&conn, &first).await, (0, 0), "after SIGTERM");
    assert_eq!(produce(&conn, &second).await, (0, 3), "after SIGTERM");
    assert_eq!(log_end(&conn).await, 4, "nothing appended");
    // The producer id block is durable too: a new producer gets a fresh id after the restarts.
    let again = conn
        .send_at(
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
            4,
        )
        .await
        .unwrap();
    assert_ne!(again.producer_id.0, pid);
    drop(conn);
    broker.terminate();
}
