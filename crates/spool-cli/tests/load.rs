//! Load on a real `spool broker` process: thousands of idle connections and hundreds of
//! producers at once, and a flood of large produce requests from clients that never read their
//! answers. The broker must serve everyone, and its memory must stay bounded (back-pressure,
//! not queues that grow with the load).
//!
//! Counts are configurable for longer runs: SPOOL_LOAD_IDLE (default 10000), SPOOL_LOAD_PRODUCERS
//! (default 200).

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use spool_client::{
    Acks, Client, ClientConfig, OffsetSpec, Producer, ProducerConfig, ProducerRecord,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;
use support::BrokerProcess;

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `spool broker` child process over its own temp dir.
struct Broker {
    process: BrokerProcess,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start(extra: &[&str]) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let process = BrokerProcess::start(dir.path(), extra);
        Broker {
            addr: process.addr.clone(),
            process,
            _dir: dir,
        }
    }

    /// (VmRSS, VmHWM) of the broker process in KiB.
    fn memory_kb(&self) -> (u64, u64) {
        self.process.memory_kb()
    }
}

/// An ApiVersions v0 request frame.
fn api_versions_frame(correlation_id: i32) -> BytesMut {
    let mut f = BytesMut::new();
    f.put_i32(2 + 2 + 4 + 2);
    f.put_i16(18);
    f.put_i16(0);
    f.put_i32(correlation_id);
    f.put_i16(-1);
    f
}

/// Sends ApiVersions on `s` and checks the answer carries our correlation id.
async fn still_served(s: &mut TcpStream, correlation_id: i32) {
    s.write_all(&api_versions_frame(correlation_id))
        .await
        .unwrap();
    let len = s.read_i32().await.unwrap();
    let mut body = vec![0u8; len as usize];
    s.read_exact(&mut body).await.unwrap();
    assert_eq!(
        i32::from_be_bytes(body[..4].try_into().unwrap()),
        correlation_id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_and_two_hundred_producers() {
    let idle_count = env_count("SPOOL_LOAD_IDLE", 10_000);
    let producers = env_count("SPOOL_LOAD_PRODUCERS", 200);
    let max = (idle_count + producers * 4 + 100).to_string();
    let broker = Broker::start(&["--max-connections", &max, "--default-partitions", "4"]);
    let (rss_before, _) = broker.memory_kb();

    let mut idle = Vec::with_capacity(idle_count);
    for _ in 0..idle_count {
        idle.push(TcpStream::connect(&broker.addr).await.unwrap());
    }
    // Every one of them is accepted and answered (not just queued in the listen backlog).
    for (i, s) in idle.iter_mut().enumerate().step_by(97) {
        still_served(s, i as i32).await;
    }
    let (rss_idle, _) = broker.memory_kb();

    let per_producer = 100;
    let mut tasks = Vec::new();
    for p in 0..producers {
        let addr = broker.addr.clone();
        tasks.push(tokio::spawn(async move {
            let client = Client::connect(ClientConfig::new(&addr)).await.unwrap();
            let config = ProducerConfig {
                acks: Acks::All,
                ..Default::default()
            };
            let producer = Producer::new(client, config).unwrap();
            let mut deliveries = Vec::new();
            for i in 0..per_producer {
                let record = ProducerRecord::new("load", format!("p{p}-{i}")).key(format!("{p}"));
                deliveries.push(producer.send(record).await.unwrap());
            }
            for d in deliveries {
                d.await.unwrap();
            }
            producer.close().await.unwrap();
        }));
    }
    tokio::time::timeout(Duration::from_secs(300), async {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
    .expect("producers did not finish");
    // The idle connections survived the load.
    for (i, s) in idle.iter_mut().enumerate().step_by(101) {
        still_served(s, i as i32).await;
    }
    let (rss_after, hwm) = broker.memory_kb();
    eprintln!(
        "load: {idle_count} idle connections + {producers} producers x {per_producer} acks=all records; \
         broker RSS {} MiB at start, {} MiB with the idle connections, {} MiB after, peak {} MiB",
        rss_before / 1024,
        rss_idle / 1024,
        rss_after / 1024,
        hwm / 1024
    );
    // Idle connections hold no buffers: a few KiB each at most.
    assert!(
        rss_idle.saturating_sub(rss_before) < idle_count as u64 * 16,
        "idle connections cost {} KiB",
        rss_idle - rss_before
    );
    let admin = Client::connect(ClientConfig::new(&broker.addr))
        .await
        .unwrap()
        .admin();
    let specs: Vec<_> = (0..4).map(|p| ("load", p, OffsetSpec::Latest)).collect();
    let ends = admin.list_offsets(&specs).await.unwrap();
    assert_eq!(
        ends.values().map(|o| o.offset).sum::<i64>(),
        (producers * per_producer) as i64,
        "every acknowledged record is in the log, none twice"
    );
}

/// 32 connections each send one 8 MiB produce request at the same moment (256 MiB in all) and
/// wait for the answer. Returns the broker's peak RSS in KiB.
async fn flood(budget: usize) -> u64 {
    const FLOODERS: usize = 32;
    const REQUEST: usize = 8 << 20;
    let broker = Broker::start(&["--queued-max-request-bytes", &budget.to_string()]);
    let frame = produce_frame(REQUEST).freeze();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(FLOODERS));
    let mut flooders = Vec::new();
    for _ in 0..FLOODERS {
        let addr = broker.addr.clone();
        let frame = frame.clone();
        let start = start.clone();
        flooders.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            start.wait().await;
            s.write_all(&frame).await.unwrap();
            let len = s.read_i32().await.unwrap();
            let mut body = vec![0u8; len as usize];
            s.read_exact(&mut body).await.unwrap();
        }));
    }
    // Everyone is answered: requests beyond the budget waited, none was refused or lost.
    tokio::time::timeout(Duration::from_secs(120), async {
        for f in flooders {
            f.await.unwrap();
        }
    })
    .await
    .expect("flood requests were not all answered");
    let mut probe = TcpStream::connect(&broker.addr).await.unwrap();
    still_served(&mut probe, 7).await;
    broker.memory_kb().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_large_produce_requests_is_held_to_the_request_budget() {
    let bounded = flood(16 << 20).await;
    // The same flood with a budget too large to matter, for comparison in the log.
    let unbounded = flood(4 << 30).await;
    eprintln!(
        "flood: 32 x 8 MiB produce requests at once: broker peak RSS {} MiB with a 16 MiB request \
         budget, {} MiB with a 4 GiB one",
        bounded / 1024,
        unbounded / 1024
    );
    // The budget, a copy of the batch being appended, and the process itself; without the
    // budget every connection buffers its 8 MiB at once.
    assert!(
        bounded < 96 * 1024,
        "broker peak RSS {} MiB",
        bounded / 1024
    );
}

/// A Produce v9 frame (acks=1) for topic "flood" partition 0 carrying one uncompressed batch of
/// about `size` bytes.
fn produce_frame(size: usize) -> BytesMut {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, RequestHeader, RequestKind, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use spool_protocol::compression::Compression;
    use spool_protocol::records::BatchBuilder;

    let mut builder = BatchBuilder::new(size + 1024);
    let value = vec![b'x'; size - 200];
    assert!(builder.try_append(1, None, Some(&value), &[]));
    let batch = builder.build(-1, -1, -1, Compression::None).unwrap();
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("flood")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let header = RequestHeader::default()
        .with_request_api_key(0)
        .with_request_api_version(9)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("flood")));
    let mut out = BytesMut::new();
    spool_protocol::codec::encode_request(&mut out, &header, &RequestKind::Produce(req)).unwrap();
    out
}
