//! End to end through Spool's own client: every codec, restart, crash recovery, long polls,
//! admin errors. Each test runs an in-process broker on 127.0.0.1:0 with a temporary directory.

use std::collections::BTreeMap;
use std::time::Duration;

use spool_broker::{BrokerConfig, EmbeddedBroker};
use spool_client::{
    Acks, Client, ClientConfig, Compression, ConsumerConfig, ConsumerRecord, NewTopic, Offset,
    ProducerConfig, ProducerRecord, ResponseError,
};

/// A broker on an existing data directory, as after a restart.
async fn restart(dir: &std::path::Path) -> EmbeddedBroker {
    EmbeddedBroker::start_with(BrokerConfig::new(dir), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

async fn client(broker: &EmbeddedBroker) -> Client {
    Client::connect(ClientConfig::new(&broker.bootstrap()))
        .await
        .unwrap()
}

/// Reads `count` records from the start of every partition, failing after a generous deadline
/// (a correct broker answers in milliseconds; the deadline only turns a hang into a failure).
async fn read_all(
    client: &Client,
    topic: &str,
    partitions: i32,
    count: usize,
) -> Vec<ConsumerRecord> {
    let mut consumer = client.consumer(ConsumerConfig::default());
    consumer.assign((0..partitions).map(|p| (topic.to_string(), p)).collect());
    for p in 0..partitions {
        consumer.seek(topic, p, Offset::Earliest).unwrap();
    }
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while out.len() < count {
            out.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("read only {} of {count} records from {topic}", out.len()));
    out
}

#[tokio::test]
async fn every_codec_round_trips_with_keys_headers_and_nulls() {
    let broker = EmbeddedBroker::start().await.unwrap();
    let client = client(&broker).await;
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let topic = format!("codec-{}", codec.name());
        client
            .admin()
            .create_topics(vec![NewTopic::new(&topic, 3, 1)])
            .await
            .unwrap();
        let producer = client
            .producer(ProducerConfig {
                compression: codec,
                ..ProducerConfig::default()
            })
            .unwrap();
        let mut deliveries = Vec::new();
        for i in 0..200usize {
            let mut record = ProducerRecord::new(&topic, format!("value-{i}").repeat(5))
                .key(format!("key-{}", i % 17))
                .header("i", i.to_string());
            if i.is_multiple_of(50) {
                record.value = None;
            }
            deliveries.push(producer.send(record).await.unwrap());
        }
        producer.flush().await.unwrap();
        let mut acked = BTreeMap::new();
        for d in deliveries {
            let meta = d.await.unwrap();
            acked.insert((meta.partition, meta.offset), ());
        }
        assert_eq!(
            acked.len(),
            200,
            "{codec:?}: every record got its own offset"
        );
        let records = read_all(&client, &topic, 3, 200).await;
        assert_eq!(records.len(), 200);
        for r in &records {
            let i: usize = std::str::from_utf8(r.headers[0].1.as_deref().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(r.key.as_deref(), Some(format!("key-{}", i % 17).as_bytes()));
            if i.is_multiple_of(50) {
                assert_eq!(r.value, None);
            } else {
                assert_eq!(
                    r.value.as_deref(),
                    Some(format!("value-{i}").repeat(5).as_bytes())
                );
            }
            assert!(acked.contains_key(&(r.partition, r.offset)));
        }
        // Same key, same partition (the Java partitioner is deterministic).
        let mut by_key: BTreeMap<Vec<u8>, i32> = BTreeMap::new();
        for r in &records {
            let p = *by_key
                .entry(r.key.clone().unwrap().to_vec())
                .or_insert(r.partition);
            assert_eq!(p, r.partition);
        }
        producer.close().await.unwrap();
    }
    broker.shutdown().await.unwrap();
}

async fn produce_n(client: &Client, topic: &str, n: usize, acks: Acks) -> Vec<(i32, i64)> {
    let producer = client
        .producer(ProducerConfig {
            acks,
            enable_idempotence: Some(acks == Acks::All),
            ..ProducerConfig::default()
        })
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..n {
        deliveries.push(
            producer
                .send(ProducerRecord::new(topic, format!("{i}")))
                .await
                .unwrap(),
        );
    }
    let mut acked = Vec::new();
    for d in deliveries {
        let meta = d.await.unwrap();
        acked.push((meta.partition, meta.offset));
    }
    producer.close().await.unwrap();
    acked
}

#[tokio::test]
async fn restart_keeps_topics_configs_and_data() {
    let broker = EmbeddedBroker::start().await.unwrap();
    let c = client(&broker).await;
    c.admin()
        .create_topics(vec![
            NewTopic::new("kept", 2, 1).config("retention.ms", "123456789")
        ])
        .await
        .unwrap();
    let before = produce_n(&c, "kept", 100, Acks::Leader).await;
    let dir = broker.shutdown().await.unwrap().expect("temp dir");

    let broker = restart(dir.path()).await;
    let c = client(&broker).await;
    let topics = c.admin().describe_topics(&["kept"]).await.unwrap();
    assert_eq!(topics[0].partitions.len(), 2);
    let configs = c
        .admin()
        .describe_configs(spool_client::ConfigResource::Topic("kept".into()))
        .await
        .unwrap();
    let retention = configs.iter().find(|e| e.name == "retention.ms").unwrap();
    assert_eq!(retention.value.as_deref(), Some("123456789"));
    assert!(!retention.is_default());
    assert_eq!(read_all(&c, "kept", 2, 100).await.len(), 100);
    // Offsets continue where they were in each partition.
    let more = produce_n(&c, "kept", 10, Acks::Leader).await;
    for (p, o) in more {
        let last_before = before
            .iter()
            .filter(|(bp, _)| *bp == p)
            .map(|(_, o)| *o)
            .max();
        assert!(
            last_before.is_none_or(|last| o > last),
            "partition {p} reused offset {o}"
        );
    }
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_broker_dropped_without_shutdown_keeps_every_acknowledged_record() {
    let broker = EmbeddedBroker::start().await.unwrap();
    let c = client(&broker).await;
    c.admin()
        .create_topics(vec![NewTopic::new("crash", 3, 1)])
        .await
        .unwrap();
    let acked = produce_n(&c, "crash", 300, Acks::All).await;
    let dir = broker.abort().await.expect("temp dir");

    let broker = restart(dir.path()).await;
    let c = client(&broker).await;
    let records = read_all(&c, "crash", 3, 300).await;
    let mut got: Vec<(i32, i64)> = records.iter().map(|r| (r.partition, r.offset)).collect();
    got.sort();
    let mut want = acked.clone();
    want.sort();
    assert_eq!(got, want);
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_long_poll_fetch_returns_as_soon_as_data_arrives() {
    let broker = EmbeddedBroker::start().await.unwrap();
    let c = client(&broker).await;
    c.admin()
        .create_topics(vec![NewTopic::new("poll", 1, 1)])
        .await
        .unwrap();
    // The consumer asks the broker to wait up to a minute; only a wake-up on append can answer
    // within the 20 s below.
    let consumer_client = client(&broker).await;
    let mut consumer = consumer_client.consumer(ConsumerConfig {
        fetch_max_wait: Duration::from_secs(60),
        ..ConsumerConfig::default()
    });
    consumer.assign(vec![("poll".into(), 0)]);
    consumer.seek("poll", 0, Offset::Latest).unwrap();
    consumer.position("poll", 0).await.unwrap();
    let reader = tokio::spawn(async move {
        loop {
            let records = consumer.poll(Duration::from_secs(120)).await.unwrap();
            if !records.is_empty() {
                return records;
            }
        }
    });
    produce_n(&c, "poll", 1, Acks::Leader).await;
    let records = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("fetch was not woken by the append")
        .unwrap();
    assert_eq!(records[0].value.as_deref(), Some(&b"0"[..]));
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn admin_errors_carry_kafka_codes() {
    let broker = EmbeddedBroker::start().await.unwrap();
    let admin = client(&broker).await.admin();
    admin
        .create_topics(vec![NewTopic::new("dup", 1, 1)])
        .await
        .unwrap();
    let cases = [
        (
            NewTopic::new("dup", 1, 1),
            ResponseError::TopicAlreadyExists,
        ),
        (
            NewTopic::new("bad/name", 1, 1),
            ResponseError::InvalidTopicException,
        ),
        (
            NewTopic::new("rf", 1, 3),
            ResponseError::InvalidReplicationFactor,
        ),
        (
            NewTopic::new("zero", 0, 1),
            ResponseError::InvalidPartitions,
        ),
        (
            NewTopic::new("cfg", 1, 1).config("retention.ms", "soon"),
            ResponseError::InvalidConfig,
        ),
        (
            NewTopic::new("cfg2", 1, 1).config("no.such.config", "1"),
            ResponseError::InvalidConfig,
        ),
    ];
    for (topic, code) in cases {
        let name = topic.name.clone();
        let err = admin.create_topics(vec![topic]).await.unwrap_err();
        assert!(err.is(code), "{name}: expected {code:?}, got {err}");
    }
    let err = admin.create_partitions("dup", 1).await.unwrap_err();
    assert!(err.is(ResponseError::InvalidPartitions), "{err}");
    let err = admin.delete_topics(&["missing"]).await.unwrap_err();
    assert!(err.is(ResponseError::UnknownTopicOrPartition), "{err}");
    admin.create_partitions("dup", 4).await.unwrap();
    assert_eq!(
        admin.describe_topics(&["dup"]).await.unwrap()[0]
            .partitions
            .len(),
        4
    );
    admin.delete_topics(&["dup"]).await.unwrap();
    assert!(admin
        .list_topics()
        .await
        .unwrap()
        .iter()
        .all(|t| t.name != "dup"));
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn auto_creation_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path());
    config.auto_create_topics = false;
    let broker = EmbeddedBroker::start_with(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let c = client(&broker).await;
    let err = c.topic("nope").await.unwrap_err();
    assert!(err.is(ResponseError::UnknownTopicOrPartition), "{err}");
    assert!(c.admin().list_topics().await.unwrap().is_empty());
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_parked_long_poll_does_not_delay_a_producer_on_the_same_client() {
    let broker = EmbeddedBroker::start().await.unwrap();
    let c = client(&broker).await;
    c.admin()
        .create_topics(vec![NewTopic::new("shared", 1, 1)])
        .await
        .unwrap();
    let mut consumer = c.consumer(ConsumerConfig {
        fetch_max_wait: Duration::from_secs(60),
        ..ConsumerConfig::default()
    });
    consumer.assign(vec![("shared".into(), 0)]);
    consumer.seek("shared", 0, Offset::Latest).unwrap();
    consumer.position("shared", 0).await.unwrap();
    // Park a fetch at the broker for up to a minute.
    let idle = consumer.poll(Duration::from_millis(50)).await.unwrap();
    assert!(idle.is_empty());
    // Had the producer queued behind that fetch on one connection, this would take a minute.
    tokio::time::timeout(
        Duration::from_secs(20),
        produce_n(&c, "shared", 3, Acks::All),
    )
    .await
    .expect("produce was held back by the consumer's long poll");
    drop(consumer);
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn compacted_topics_refuse_keyless_records() {
    let broker = EmbeddedBroker::start().await.unwrap();
    let c = client(&broker).await;
    c.admin()
        .create_topics(vec![
            NewTopic::new("compacted", 1, 1).config("cleanup.policy", "compact")
        ])
        .await
        .unwrap();
    let producer = c.producer(ProducerConfig::default()).unwrap();
    let keyed = producer
        .send_and_wait(ProducerRecord::new("compacted", "v").key("k"))
        .await
        .unwrap();
    assert_eq!(keyed.offset, 0);
    let err = producer
        .send_and_wait(ProducerRecord::new("compacted", "no key"))
        .await
        .unwrap_err();
    assert!(err.is(ResponseError::InvalidRecord), "{err}");
    producer.close().await.ok();
    broker.shutdown().await.unwrap();
}

/// A topic whose `max.message.bytes` is far below `batch.size` refuses the producer's batches
/// with MESSAGE_TOO_LARGE; the producer splits them (as Kafka's Java producer does) until each
/// fits, and every record lands once, in order, idempotent or not, compressed or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_too_large_for_the_topic_are_split_and_every_record_lands_in_order() {
    let broker = EmbeddedBroker::start().await.unwrap();
    let c = client(&broker).await;
    // (topic, acks, idempotent, codec, records): 150 records make a first batch too large for
    // the topic and a second one of two records that fits, which must still land after the
    // first's parts (a broker with no state for a producer takes any first sequence).
    let cases = [
        ("split-idem", Acks::All, true, Compression::None, 500),
        ("split-plain", Acks::Leader, false, Compression::Lz4, 500),
        ("split-tail", Acks::All, true, Compression::None, 150),
    ];
    for (topic, acks, idempotent, compression, n) in cases {
        c.admin()
            .create_topics(vec![
                NewTopic::new(topic, 1, 1).config("max.message.bytes", "1000")
            ])
            .await
            .unwrap();
        let producer = c
            .producer(ProducerConfig {
                acks,
                enable_idempotence: Some(idempotent),
                compression,
                // Long enough that the records below gather into a few 16 KiB batches.
                linger: Duration::from_millis(200),
                ..ProducerConfig::default()
            })
            .unwrap();
        // 100 bytes each, numbered, and not compressible much below that.
        let value = |i: u64| {
            let mut v = format!("{i:06}").into_bytes();
            let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            while v.len() < 100 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.push(x as u8);
            }
            v
        };
        let mut deliveries = Vec::new();
        for i in 0..n {
            deliveries.push(
                producer
                    .send(ProducerRecord::new(topic, value(i as u64)))
                    .await
                    .unwrap(),
            );
        }
        // Everything ready at once: the second batch may go while the first is in flight.
        producer.flush().await.unwrap();
        let mut offsets = Vec::new();
        for d in deliveries {
            offsets.push(d.await.unwrap().offset);
        }
        let misplaced: Vec<(usize, i64)> = offsets
            .iter()
            .enumerate()
            .filter(|(i, o)| **o != *i as i64)
            .map(|(i, o)| (i, *o))
            .take(10)
            .collect();
        assert!(
            misplaced.is_empty(),
            "{topic}: (record, offset) {misplaced:?}"
        );
        producer.close().await.unwrap();
        assert_eq!(offsets.len(), n);
        let read = read_all(&c, topic, 1, n).await;
        let values: Vec<Vec<u8>> = read
            .iter()
            .map(|r| r.value.clone().unwrap().to_vec())
            .collect();
        assert!(
            values == (0..n as u64).map(value).collect::<Vec<_>>(),
            "{topic}: read back out of order"
        );
    }
    broker.shutdown().await.unwrap();
}
