//! The scenarios of interop/SCENARIOS.md, one function each, written with spool-client the way
//! an application would use it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use spool_client::{
    Acks, Assignor, AutoOffsetReset, Client, Compression, ConfigResource, ConsumerRecord,
    CooperativeStickyAssignor, GroupConfig, GroupConsumer, NewTopic, Offset, OffsetAndMetadata,
    OffsetSpec, ProducerConfig, ProducerRecord, RangeAssignor, ResponseError, RoundRobinAssignor,
    StickyAssignor,
};

use crate::support::{b, create_topic, read, show, wait_for_partitions, Ctx, Deadline};

pub async fn produce_codecs(ctx: &Ctx) -> Result<()> {
    let client = ctx.client().await?;
    let topic = ctx.name("codecs");
    create_topic(&client.admin(), NewTopic::new(&topic, 1, -1)).await?;
    let codecs = [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ];
    let mut expected = Vec::new();
    for (name, codec) in codecs {
        let producer = client.producer(ProducerConfig {
            compression: codec,
            ..ProducerConfig::default()
        })?;
        let mut deliveries = Vec::new();
        for i in 0..20 {
            let (k, v) = (format!("k-{name}-{i}"), format!("v-{name}-{i}"));
            let record = ProducerRecord::new(&topic, v.clone()).key(k.clone());
            deliveries.push(producer.send(record).await?);
            expected.push((k, v));
        }
        producer.flush().await?;
        for d in deliveries {
            d.await.with_context(|| format!("delivery with {name}"))?;
        }
        producer.close().await?;
    }
    let got = read(&client, &topic, &[0], Offset::Earliest, 100).await?;
    ensure!(got.len() == 100, "expected 100 records, got {}", got.len());
    for (i, (r, (k, v))) in got.iter().zip(&expected).enumerate() {
        ensure!(
            r.offset == i as i64 && r.key == b(k) && r.value == b(v),
            "record {i}: expected offset {i} key {k} value {v}, got {}",
            show(r)
        );
    }
    Ok(())
}

pub async fn produce_headers_nulls(ctx: &Ctx) -> Result<()> {
    let client = ctx.client().await?;
    let topic = ctx.name("hdr");
    create_topic(&client.admin(), NewTopic::new(&topic, 1, -1)).await?;
    let t = topic.clone();
    let records = vec![
        ProducerRecord::new(&t, "1")
            .key("a")
            .header("h1", "x")
            .header("h2", "y")
            .header("h1", "z"),
        ProducerRecord {
            topic: t.clone(),
            key: b("b"),
            value: None,
            ..Default::default()
        },
        ProducerRecord {
            topic: t.clone(),
            key: None,
            value: b("3"),
            ..Default::default()
        },
        ProducerRecord::new(&t, "").key("d"),
        ProducerRecord {
            topic: t.clone(),
            key: b("e"),
            value: b("5"),
            headers: vec![("e".to_string(), None)],
            ..Default::default()
        },
    ];
    let producer = client.producer(ProducerConfig::default())?;
    for r in &records {
        producer.send_and_wait(r.clone()).await?;
    }
    producer.close().await?;
    let got = read(&client, &topic, &[0], Offset::Earliest, records.len()).await?;
    ensure!(
        got.len() == records.len(),
        "expected {} records, got {}",
        records.len(),
        got.len()
    );
    for (i, (r, want)) in got.iter().zip(&records).enumerate() {
        ensure!(
            r.key == want.key && r.value == want.value && r.headers == want.headers,
            "record {i}: expected key={:?} value={:?} headers={:?}, got {}",
            want.key,
            want.value,
            want.headers,
            show(r)
        );
    }
    Ok(())
}

pub async fn produce_idempotent(ctx: &Ctx) -> Result<()> {
    let client = ctx.client().await?;
    let topic = ctx.name("idem");
    create_topic(&client.admin(), NewTopic::new(&topic, 3, -1)).await?;
    let producer = client.producer(ProducerConfig {
        acks: Acks::All,
        enable_idempotence: Some(true),
        ..ProducerConfig::default()
    })?;
    let mut deliveries = Vec::new();
    for i in 0..1000 {
        let record = ProducerRecord::new(&topic, i.to_string()).key(format!("key-{i}"));
        deliveries.push(producer.send(record).await?);
    }
    producer.flush().await?;
    for d in deliveries {
        d.await?;
    }
    producer.close().await?;
    let got = read(&client, &topic, &[0, 1, 2], Offset::Earliest, 1000).await?;
    let ends = client
        .admin()
        .list_offsets(&[
            (&topic, 0, OffsetSpec::Latest),
            (&topic, 1, OffsetSpec::Latest),
            (&topic, 2, OffsetSpec::Latest),
        ])
        .await?;
    let total: i64 = ends.values().map(|o| o.offset).sum();
    ensure!(
        total == 1000,
        "the 3 partitions hold {total} records, expected exactly 1000"
    );
    let mut seen = BTreeSet::new();
    let mut last: HashMap<i32, i64> = HashMap::new();
    let mut partition_of_key: HashMap<String, i32> = HashMap::new();
    for r in &got {
        let value: i64 = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).parse()?;
        ensure!(
            seen.insert(value),
            "value {value} delivered twice ({})",
            show(r)
        );
        if let Some(prev) = last.insert(r.partition, value) {
            ensure!(
                prev < value,
                "partition {}: value {value} after {prev}",
                r.partition
            );
        }
        let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).to_string();
        ensure!(
            key == format!("key-{value}"),
            "key {key} with value {value}"
        );
        ensure!(
            *partition_of_key.entry(key.clone()).or_insert(r.partition) == r.partition,
            "key {key} in two partitions"
        );
    }
    ensure!(
        seen.len() == 1000,
        "{} distinct values, expected 1000",
        seen.len()
    );
    Ok(())
}

/// Not a matrix scenario (Spool's client only): a topic whose `max.message.bytes` (1000) is far
/// below `batch.size` refuses the producer's batches with MESSAGE_TOO_LARGE; the idempotent
/// producer splits them, as Kafka's Java producer does, and every record lands once, in order.
pub async fn produce_split(ctx: &Ctx) -> Result<()> {
    let client = ctx.client().await?;
    // 150 records: a first batch too large for the topic and a second of two records that
    // fits; sent at once (flush), the second must still land after the first one's parts (a
    // broker with no state for a producer id takes any first sequence number).
    for (name, n) in [("split", 500), ("split-tail", 150)] {
        let topic = ctx.name(name);
        create_topic(
            &client.admin(),
            NewTopic::new(&topic, 1, -1).config("max.message.bytes", "1000"),
        )
        .await?;
        let producer = client.producer(ProducerConfig {
            acks: Acks::All,
            enable_idempotence: Some(true),
            // Long enough that the records gather into batches of several KiB.
            linger: Duration::from_millis(200),
            ..ProducerConfig::default()
        })?;
        let value = |i: usize| format!("{i:06}-{}", "x".repeat(90));
        let mut deliveries = Vec::new();
        for i in 0..n {
            deliveries.push(producer.send(ProducerRecord::new(&topic, value(i))).await?);
        }
        producer.flush().await?;
        let mut offsets = Vec::new();
        for d in deliveries {
            offsets.push(d.await.context("a record of a split batch")?.offset);
        }
        producer.close().await?;
        ensure!(
            offsets == (0..n as i64).collect::<Vec<_>>(),
            "{topic}: acknowledged offsets are not 0..{n} in send order: {:?}",
            &offsets[..offsets.len().min(20)]
        );
        let got = read(&client, &topic, &[0], Offset::Earliest, n).await?;
        let values: Vec<String> = got
            .iter()
            .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).to_string())
            .collect();
        ensure!(
            values == (0..n).map(value).collect::<Vec<_>>(),
            "{topic}: read back {} records, not the {n} sent in order",
            values.len()
        );
    }
    Ok(())
}

pub async fn consume_offsets(ctx: &Ctx) -> Result<()> {
    let client = ctx.client().await?;
    let topic = ctx.name("offsets");
    create_topic(&client.admin(), NewTopic::new(&topic, 1, -1)).await?;
    produce_values(&client, &topic, (0..100).map(|i| (i.to_string(), None))).await?;
    let admin = client.admin();
    let ends = admin
        .list_offsets(&[(&topic, 0, OffsetSpec::Earliest)])
        .await?;
    ensure!(
        ends[&(topic.clone(), 0)].offset == 0,
        "earliest offset {:?}",
        ends
    );
    let ends = admin
        .list_offsets(&[(&topic, 0, OffsetSpec::Latest)])
        .await?;
    ensure!(
        ends[&(topic.clone(), 0)].offset == 100,
        "latest offset {:?}",
        ends
    );
    let got = read(&client, &topic, &[0], Offset::At(42), 58).await?;
    for (i, r) in got.iter().enumerate() {
        let want = 42 + i as i64;
        ensure!(
            r.offset == want && r.value == b(&want.to_string()),
            "expected offset and value {want}, got {}",
            show(r)
        );
    }
    Ok(())
}

pub async fn consume_timestamp(ctx: &Ctx) -> Result<()> {
    let client = ctx.client().await?;
    let topic = ctx.name("ts");
    create_topic(&client.admin(), NewTopic::new(&topic, 1, -1)).await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let t0 = (now - 3_600_000) / 1000 * 1000;
    produce_values(
        &client,
        &topic,
        (0..100).map(|i| (i.to_string(), Some(t0 + i * 1000))),
    )
    .await?;
    let admin = client.admin();
    for (ts, want) in [(t0 + 50_500, 51), (t0, 0), (t0 + 200_000, -1)] {
        let found = admin
            .list_offsets(&[(&topic, 0, OffsetSpec::Timestamp(ts))])
            .await?;
        let got = found[&(topic.clone(), 0)].offset;
        ensure!(
            got == want,
            "offset for timestamp T0+{}: expected {want}, got {got}",
            ts - t0
        );
    }
    let mut consumer = client.consumer(Default::default());
    consumer.assign(vec![(topic.clone(), 0)]);
    consumer.seek_to_timestamp(&topic, 0, t0 + 50_500)?;
    let deadline = Deadline::new("records 51..99");
    let mut got: Vec<ConsumerRecord> = Vec::new();
    while got.len() < 49 {
        ensure!(
            !deadline.left().is_zero(),
            "only {} of 49 records arrived",
            got.len()
        );
        got.extend(consumer.poll(Duration::from_secs(1)).await?);
    }
    for (i, r) in got.iter().enumerate() {
        let want = 51 + i as i64;
        ensure!(
            r.offset == want && r.value == b(&want.to_string()) && r.timestamp == t0 + want * 1000,
            "expected offset {want} with timestamp T0+{}, got {} at T0+{}",
            want * 1000,
            show(r),
            r.timestamp - t0
        );
    }
    Ok(())
}

pub async fn group_rebalance(ctx: &Ctx) -> Result<()> {
    let client = ctx.client().await?;
    let topic = ctx.name("grp");
    let group = ctx.name("g");
    create_topic(&client.admin(), NewTopic::new(&topic, 4, -1)).await?;
    let mut a = member(&client, &group, &topic)?;
    let mut b_ = member(&client, &group, &topic)?;

    // Both must own something before anything is produced; polling drives nothing here (the
    // membership runs in the background), it only keeps fetch positions fresh.
    let deadline = Deadline::new("a 2-member split of 4 partitions");
    loop {
        let (pa, pb) = (a.assignment(), b_.assignment());
        let all: BTreeSet<_> = pa.iter().chain(&pb).collect();
        if !pa.is_empty() && !pb.is_empty() && all.len() == 4 && pa.len() + pb.len() == 4 {
            break;
        }
        deadline.tick(format!("A={pa:?} B={pb:?}")).await?;
    }

    produce_values(&client, &topic, (0..100).map(|i| (format!("k-{i}"), None))).await?;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = Deadline::new("100 records across A and B");
    while seen.len() < 100 {
        ensure!(
            !deadline.left().is_zero(),
            "{} of 100 records arrived",
            seen.len()
        );
        for r in a
            .poll(Duration::from_millis(200))
            .await?
            .into_iter()
            .chain(b_.poll(Duration::from_millis(200)).await?)
        {
            let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).to_string();
            *seen.entry(v).or_default() += 1;
        }
    }
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(dups.is_empty(), "delivered more than once: {dups:?}");
    a.commit_sync().await?;
    b_.commit_sync().await?;
    a.close().await?;

    let deadline = Deadline::new("B to own all 4 partitions after A left");
    loop {
        // B's poll keeps its fetches going while it rebalances; nothing new is produced yet.
        if let Some(r) = b_.poll(Duration::from_millis(100)).await?.first() {
            bail!("B received {} again after A left", show(r));
        }
        if b_.assignment().len() == 4 {
            break;
        }
        deadline.tick(format!("B={:?}", b_.assignment())).await?;
    }
    produce_values(
        &client,
        &topic,
        (100..140).map(|i| (format!("k-{i}"), None)),
    )
    .await?;
    let mut after = BTreeSet::new();
    let deadline = Deadline::new("the 40 new records at B");
    while after.len() < 40 {
        ensure!(
            !deadline.left().is_zero(),
            "B got {} of 40 new records",
            after.len()
        );
        for r in b_.poll(Duration::from_millis(500)).await? {
            let v: i64 = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).parse()?;
            ensure!(v >= 100, "B received old record {} again", show(&r));
            ensure!(after.insert(v), "B received {} twice", show(&r));
        }
    }
    b_.close().await?;
    Ok(())
}

pub async fn offsets_commit_fetch(ctx: &Ctx) -> Result<()> {
    let client = ctx.client().await?;
    let topic = ctx.name("commit");
    let group = ctx.name("g");
    create_topic(&client.admin(), NewTopic::new(&topic, 2, -1)).await?;
    let producer = client.producer(ProducerConfig::default())?;
    for p in 0..2 {
        for i in 0..10 {
            let r = ProducerRecord::new(&topic, format!("{p}-{i}")).partition(p);
            producer.send_and_wait(r).await?;
        }
    }
    producer.close().await?;

    let consumer = member(&client, &group, &topic)?;
    let deadline = Deadline::new("the consumer to own both partitions");
    while consumer.assignment().len() != 2 {
        deadline
            .tick(format!("{:?}", consumer.assignment()))
            .await?;
    }
    let tp = |p: i32| (topic.clone(), p);
    consumer
        .commit_offsets_sync(vec![
            (
                tp(0),
                OffsetAndMetadata {
                    offset: 3,
                    metadata: "m0".into(),
                },
            ),
            (
                tp(1),
                OffsetAndMetadata {
                    offset: 7,
                    metadata: "m1".into(),
                },
            ),
        ])
        .await?;
    for (p, offset, metadata) in [(0, 3, "m0"), (1, 7, "m1")] {
        let c = consumer
            .committed(&topic, p)
            .await?
            .with_context(|| format!("no commit for partition {p}"))?;
        ensure!(
            c.offset == offset && c.metadata == metadata,
            "partition {p}: committed {c:?}, expected {offset} {metadata}"
        );
    }
    consumer.close().await?;

    let mut again = member(&client, &group, &topic)?;
    let mut first: HashMap<i32, i64> = HashMap::new();
    let deadline = Deadline::new("first records of both partitions");
    while first.len() < 2 {
        ensure!(!deadline.left().is_zero(), "first records seen: {first:?}");
        for r in again.poll(Duration::from_millis(500)).await? {
            first.entry(r.partition).or_insert(r.offset);
        }
    }
    ensure!(
        first[&0] == 3 && first[&1] == 7,
        "a new member started at {first:?}, expected partition 0 at 3 and 1 at 7"
    );
    again.close().await?;
    Ok(())
}

pub async fn admin_topics(ctx: &Ctx) -> Result<()> {
    let client = ctx.client().await?;
    let admin = client.admin();
    let topic = ctx.name("adm");
    create_topic(
        &admin,
        NewTopic::new(&topic, 2, -1).config("retention.ms", "3600000"),
    )
    .await?;
    let listed = admin.list_topics().await?;
    ensure!(listed.iter().any(|t| t.name == topic), "{topic} not listed");
    let configs = admin
        .describe_configs(ConfigResource::Topic(topic.clone()))
        .await?;
    let retention = configs.iter().find(|c| c.name == "retention.ms");
    ensure!(
        retention.and_then(|c| c.value.as_deref()) == Some("3600000"),
        "retention.ms described as {retention:?}"
    );
    match admin
        .create_topics(vec![NewTopic::new(&topic, 2, -1)])
        .await
    {
        Err(e) if e.is(ResponseError::TopicAlreadyExists) => {}
        other => bail!("creating {topic} again: expected TOPIC_ALREADY_EXISTS, got {other:?}"),
    }
    admin.create_partitions(&topic, 4).await?;
    wait_for_partitions(&admin, &topic, 4).await?;
    admin.delete_topics(&[&topic]).await?;
    let deadline = Deadline::new(format!("{topic} to disappear"));
    loop {
        let listed = admin.list_topics().await?;
        if !listed.iter().any(|t| t.name == topic) {
            break;
        }
        deadline.tick("still listed").await?;
    }
    match admin.describe_topics(&[&topic]).await {
        Err(e) if e.is(ResponseError::UnknownTopicOrPartition) => Ok(()),
        other => bail!("describe after delete: expected UNKNOWN_TOPIC_OR_PARTITION, got {other:?}"),
    }
}

pub async fn admin_groups(ctx: &Ctx) -> Result<()> {
    let client = ctx.client().await?;
    let admin = client.admin();
    let topic = ctx.name("ag");
    let group = ctx.name("g");
    create_topic(&admin, NewTopic::new(&topic, 2, -1)).await?;
    let producer = client.producer(ProducerConfig::default())?;
    for p in 0..2 {
        producer
            .send_and_wait(ProducerRecord::new(&topic, "x").partition(p))
            .await?;
    }
    producer.close().await?;

    let mut consumer = member(&client, &group, &topic)?;
    let mut read_from: BTreeSet<i32> = BTreeSet::new();
    let deadline = Deadline::new("one record from each partition");
    while read_from.len() < 2 {
        ensure!(!deadline.left().is_zero(), "read from {read_from:?}");
        read_from.extend(
            consumer
                .poll(Duration::from_millis(500))
                .await?
                .iter()
                .map(|r| r.partition),
        );
    }
    consumer.commit_sync().await?;

    let listed = admin.list_groups().await?;
    let listing = listed.iter().find(|g| g.group_id == group);
    ensure!(
        listing.is_some_and(|g| g.protocol_type == "consumer"),
        "list groups: {group} missing or not a consumer group: {listing:?}"
    );
    let d = admin.describe_group(&group).await?;
    let assignment: BTreeSet<_> = d
        .members
        .iter()
        .flat_map(|m| m.assignment.clone())
        .collect();
    let want: BTreeSet<_> = [(topic.clone(), 0), (topic.clone(), 1)].into();
    ensure!(
        d.state == "Stable"
            && d.protocol_type == "consumer"
            && d.members.len() == 1
            && assignment == want,
        "describe: {d:?}"
    );
    let offsets = admin.group_offsets(&group).await?;
    for p in 0..2 {
        let o = offsets.get(&(topic.clone(), p)).map(|c| c.offset);
        ensure!(
            o == Some(1),
            "group offset of partition {p}: {o:?}, expected 1"
        );
    }
    consumer.close().await?;
    let d = admin.describe_group(&group).await?;
    ensure!(
        d.state == "Empty" && d.members.is_empty(),
        "describe after close: {d:?}"
    );
    admin.delete_groups(&[&group]).await?;
    let listed = admin.list_groups().await?;
    ensure!(
        !listed.iter().any(|g| g.group_id == group),
        "{group} still listed after delete"
    );
    Ok(())
}

/// Not a matrix scenario: a plain group member for the mixed-group test (see main.rs).
pub async fn group_member(ctx: &Ctx, count: usize, assignor: Option<&str>) -> Result<()> {
    let client = ctx.client().await?;
    let topic = ctx.name("shared");
    let group = ctx.name("g");
    let assignors: Option<Vec<Arc<dyn Assignor>>> = match assignor {
        None => None,
        Some("range") => Some(vec![Arc::new(RangeAssignor)]),
        Some("roundrobin") => Some(vec![Arc::new(RoundRobinAssignor)]),
        Some("sticky") => Some(vec![Arc::new(StickyAssignor)]),
        Some("cooperative-sticky") => Some(vec![Arc::new(CooperativeStickyAssignor)]),
        Some(other) => bail!("unknown assignor {other:?}"),
    };
    let mut consumer = member_with(&client, &group, &topic, assignors)?;
    let mut seen = 0;
    // Longer than a scenario's usual wait: the other member decides when records arrive.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(80);
    while seen < count {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "read {seen} of {count} records"
        );
        let records = consumer.poll(Duration::from_millis(500)).await?;
        for r in &records {
            let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
            println!("{} {} {value}", r.partition, r.offset);
        }
        seen += records.len();
        if !records.is_empty() {
            consumer.commit_sync().await?;
        }
    }
    consumer.close().await?;
    Ok(())
}

/// A group member subscribed to `topic`, auto commit off, reading from the earliest offset
/// when the group has no commit.
fn member(client: &Client, group: &str, topic: &str) -> Result<GroupConsumer> {
    member_with(client, group, topic, None)
}

/// `member`, with these assignors instead of the client's default list.
fn member_with(
    client: &Client,
    group: &str,
    topic: &str,
    assignors: Option<Vec<Arc<dyn Assignor>>>,
) -> Result<GroupConsumer> {
    let mut config = GroupConfig::new(group).auto_offset_reset(AutoOffsetReset::Earliest);
    config.auto_commit = false;
    if let Some(assignors) = assignors {
        config.assignors = assignors;
    }
    let mut consumer = client.group_consumer(config)?;
    consumer.subscribe([topic]);
    Ok(consumer)
}

/// Produces records with value = key = the given string (or only values when the string is a
/// bare number), with optional timestamps, and waits for every acknowledgement.
async fn produce_values(
    client: &Client,
    topic: &str,
    values: impl Iterator<Item = (String, Option<i64>)>,
) -> Result<()> {
    let producer = client.producer(ProducerConfig::default())?;
    let mut deliveries = Vec::new();
    for (v, ts) in values {
        let mut record = match v.strip_prefix("k-") {
            Some(n) => ProducerRecord::new(topic, n.to_string()).key(v.clone()),
            None => ProducerRecord::new(topic, v.clone()),
        };
        record.timestamp = ts;
        deliveries.push(producer.send(record).await?);
    }
    producer.flush().await?;
    for d in deliveries {
        d.await?;
    }
    producer.close().await?;
    Ok(())
}
