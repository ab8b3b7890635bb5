//! End-to-end smoke check against a running broker (Spool, Apache Kafka, Redpanda).
//!
//! ```text
//! cargo run -p spool-client --example smoke -- 127.0.0.1:9092
//! ```
//!
//! Creates a fresh topic, produces keyed records with every codec, reads them back, checks
//! partitions against Kafka's key hashing and offsets against ListOffsets, grows and deletes the
//! topic. Exits non-zero on the first mismatch.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use spool_client::partitioner::partition_for_key;
use spool_client::{
    Acks, AutoOffsetReset, Client, ClientConfig, Compression, ConfigResource, ConsumerConfig,
    NewTopic, Offset, OffsetSpec, ProducerConfig, ProducerRecord, ResponseError,
};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn check(ok: bool, what: &str) -> AnyResult<()> {
    if ok {
        println!("ok   {what}");
        Ok(())
    } else {
        Err(format!("FAILED {what}").into())
    }
}

#[tokio::main]
async fn main() -> AnyResult<()> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    let client = Client::connect(ClientConfig::new(&bootstrap)).await?;
    let admin = client.admin();
    let cluster = admin.describe_cluster().await?;
    println!(
        "cluster {:?}, brokers {:?}",
        cluster.cluster_id, cluster.brokers
    );
    let conn = client.any_broker().await?;
    use kafka_protocol::messages::ApiKey;
    for api in [
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::Metadata,
        ApiKey::ListOffsets,
        ApiKey::InitProducerId,
    ] {
        println!("negotiated {api:?} v{}", conn.version(api)?);
    }
    let keep = std::env::args().any(|a| a == "--keep");

    let topic = format!("smoke-{}", rand_suffix());
    admin
        .create_topics(vec![
            NewTopic::new(&topic, 3, 1).config("retention.ms", "3600000")
        ])
        .await?;
    let again = admin.create_topics(vec![NewTopic::new(&topic, 3, 1)]).await;
    check(
        again.is_err_and(|e| e.is(ResponseError::TopicAlreadyExists)),
        "second create says TOPIC_ALREADY_EXISTS",
    )?;
    let listed = admin.list_topics().await?;
    check(
        listed.iter().any(|t| t.name == topic),
        "list_topics lists it",
    )?;
    let configs = admin
        .describe_configs(ConfigResource::Topic(topic.clone()))
        .await?;
    check(
        configs
            .iter()
            .any(|c| c.name == "retention.ms" && c.value.as_deref() == Some("3600000")),
        "describe_configs shows retention.ms=3600000",
    )?;

    // Wait for leaders (KRaft elects them asynchronously after creation).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = admin.describe_topics(&[topic.as_str()]).await;
        if let Ok(d) = &d {
            if d[0].partitions.len() == 3 && d[0].partitions.iter().all(|p| p.leader >= 0) {
                let leaders: Vec<i32> = d[0].partitions.iter().map(|p| p.leader).collect();
                println!("partition leaders {leaders:?}");
                break;
            }
        }
        if Instant::now() > deadline {
            return Err(format!("no leaders for {topic}: {d:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut expected: HashMap<i32, Vec<String>> = HashMap::new();
    let started = Instant::now();
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    for (ci, codec) in codecs.iter().enumerate() {
        let producer = client.producer(ProducerConfig {
            compression: *codec,
            ..Default::default()
        })?;
        let mut deliveries = Vec::new();
        for i in 0..200 {
            let key = format!("key-{}", i % 17);
            let value = format!("{}-{ci}-{i}", codec.name());
            let record = ProducerRecord::new(&topic, value.clone())
                .key(key.clone())
                .header("codec", codec.name());
            deliveries.push((key, value, producer.send(record).await?));
        }
        for (key, value, d) in deliveries {
            let meta = d.await?;
            if meta.partition != partition_for_key(key.as_bytes(), 3) {
                return Err(format!("{key} went to {}", meta.partition).into());
            }
            expected.entry(meta.partition).or_default().push(value);
        }
        producer.close().await?;
    }
    println!("produced 1000 records in {:?}", started.elapsed());
    check(
        true,
        "keys land on Java-compatible partitions, all codecs acknowledged",
    )?;

    for acks in [Acks::Leader, Acks::None] {
        let p = client.producer(ProducerConfig {
            acks,
            ..Default::default()
        })?;
        let m = p
            .send_and_wait(ProducerRecord::new(&topic, format!("acks-{acks:?}")).partition(0))
            .await?;
        expected
            .entry(0)
            .or_default()
            .push(format!("acks-{acks:?}"));
        check(
            (acks == Acks::None) == (m.offset == -1),
            &format!("acks={acks:?} delivery"),
        )?;
        p.close().await?;
    }

    let offsets = admin
        .list_offsets(&[
            (topic.as_str(), 0, OffsetSpec::Latest),
            (topic.as_str(), 1, OffsetSpec::Latest),
            (topic.as_str(), 2, OffsetSpec::Latest),
        ])
        .await?;
    // acks=0 gives no confirmation: wait for it to be visible.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut latest0 = offsets[&(topic.clone(), 0)].offset;
    while latest0 < expected[&0].len() as i64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        latest0 = admin
            .list_offsets(&[(topic.as_str(), 0, OffsetSpec::Latest)])
            .await?[&(topic.clone(), 0)]
            .offset;
    }
    for p in 0..3 {
        let latest = if p == 0 {
            latest0
        } else {
            offsets[&(topic.clone(), p)].offset
        };
        check(
            latest == expected.get(&p).map_or(0, |v| v.len()) as i64,
            &format!("latest offset of partition {p} = {latest}"),
        )?;
    }

    let mut consumer = client.consumer(ConsumerConfig {
        auto_offset_reset: AutoOffsetReset::Earliest,
        ..Default::default()
    });
    consumer.assign((0..3).map(|p| (topic.clone(), p)).collect());
    let total: usize = expected.values().map(Vec::len).sum();
    let mut got: HashMap<i32, Vec<String>> = HashMap::new();
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while n < total && Instant::now() < deadline {
        for r in consumer.poll(Duration::from_millis(500)).await? {
            let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).to_string();
            got.entry(r.partition).or_default().push(v);
            n += 1;
        }
    }
    check(
        got == expected,
        &format!("consumed {n} records, same order per partition"),
    )?;

    consumer.seek(&topic, 1, Offset::At(5))?;
    let recs = consumer.poll(Duration::from_secs(5)).await?;
    check(
        recs.first()
            .is_some_and(|r| r.partition == 1 && r.offset == 5),
        "seek to offset 5 mid-batch returns offset 5 first",
    )?;
    consumer.seek_to_timestamp(&topic, 2, 0)?;
    check(
        consumer.position(&topic, 2).await? == 0,
        "seek_to_timestamp(0) = 0",
    )?;

    admin.create_partitions(&topic, 4).await?;
    let d = admin.describe_topics(&[topic.as_str()]).await?;
    check(
        d[0].partitions.len() == 4,
        "create_partitions grew the topic to 4",
    )?;
    if keep {
        println!("kept topic {topic}");
    } else {
        admin.delete_topics(&[topic.as_str()]).await?;
    }
    println!("all checks passed against {bootstrap}");
    Ok(())
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{nanos:08x}")
}
