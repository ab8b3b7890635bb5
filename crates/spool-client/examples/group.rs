//! Consumer-group checks against a real broker (not part of `cargo test`: CI has no Kafka).
//!
//! ```text
//! cargo run -p spool-client --example group -- split   127.0.0.1:9092 topic group
//! cargo run -p spool-client --example group -- resume  127.0.0.1:9092 topic group
//! cargo run -p spool-client --example group -- member  127.0.0.1:9092 topic group SECONDS [range|roundrobin|sticky|cooperative-sticky]
//! cargo run -p spool-client --example group -- streams 127.0.0.1:9092 topic group N
//! cargo run -p spool-client --example group -- churn   127.0.0.1:9092 topic group [range|cooperative-sticky]
//! ```
//!
//! `split` and `resume` create `topic` with 6 partitions and produce into it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spool_client::{
    AutoOffsetReset, Client, ClientConfig, CooperativeStickyAssignor, GroupConfig, GroupConsumer,
    NewTopic, ProducerConfig, ProducerRecord, RangeAssignor, RoundRobinAssignor, StickyAssignor,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn config(group: &str) -> GroupConfig {
    let mut c = GroupConfig::new(group)
        .auto_offset_reset(AutoOffsetReset::Earliest)
        .on_rebalance(|e| println!("  rebalance event: {e:?}"));
    c.auto_commit_interval = Duration::from_secs(1);
    // Static membership when GROUP_INSTANCE_ID is set.
    c.group_instance_id = std::env::var("GROUP_INSTANCE_ID").ok();
    c
}

async fn setup(client: &Client, topic: &str, per_partition: usize) -> Result<(), BoxError> {
    let _ = client
        .admin()
        .create_topics(vec![NewTopic::new(topic, 6, 1)])
        .await;
    let p = client.producer(ProducerConfig::default())?;
    let mut deliveries = Vec::new();
    for i in 0..per_partition * 6 {
        deliveries.push(
            p.send(ProducerRecord::new(topic, format!("v{i}")).partition((i % 6) as i32))
                .await?,
        );
    }
    p.flush().await?;
    for d in deliveries {
        d.await?;
    }
    Ok(())
}

async fn wait_assigned(
    members: &mut [&mut GroupConsumer],
    want: usize,
    limit: Duration,
) -> Result<Duration, BoxError> {
    let start = Instant::now();
    while start.elapsed() < limit {
        for m in members.iter_mut() {
            m.poll(Duration::from_millis(50)).await?;
        }
        let total: usize = members.iter().map(|m| m.assignment().len()).sum();
        let all_nonempty = members.iter().all(|m| !m.assignment().is_empty());
        if total == want && all_nonempty {
            return Ok(start.elapsed());
        }
    }
    Err("assignment did not settle".into())
}

async fn split(bootstrap: &str, topic: &str, group: &str) -> Result<(), BoxError> {
    let client = Client::connect(ClientConfig::new(bootstrap)).await?;
    setup(&client, topic, 10).await?;
    let c1 = Client::connect(ClientConfig::new(bootstrap)).await?;
    let c2 = Client::connect(ClientConfig::new(bootstrap)).await?;
    let mut a = c1.group_consumer(config(group))?;
    let mut b = c2.group_consumer(config(group))?;
    a.subscribe([topic]);
    b.subscribe([topic]);
    let took = wait_assigned(&mut [&mut a, &mut b], 6, Duration::from_secs(60)).await?;
    println!("settled after {took:?}");
    println!("A {:?}: {:?}", a.handle().member(), a.assignment());
    println!("B {:?}: {:?}", b.handle().member(), b.assignment());
    assert_eq!(a.assignment().len(), 3, "3/3 split");
    assert_eq!(b.assignment().len(), 3, "3/3 split");
    let closed = Instant::now();
    a.close().await?;
    println!("A closed");
    while b.assignment().len() != 6 {
        b.poll(Duration::from_millis(50)).await?;
        if closed.elapsed() > Duration::from_secs(60) {
            return Err("B never got all partitions".into());
        }
    }
    println!(
        "B has all 6 {:?} {:?} after {:?}",
        b.handle().member(),
        b.assignment(),
        closed.elapsed()
    );
    b.close().await?;
    Ok(())
}

async fn resume(bootstrap: &str, topic: &str, group: &str) -> Result<(), BoxError> {
    let client = Client::connect(ClientConfig::new(bootstrap)).await?;
    setup(&client, topic, 100).await?;
    // First run: read ~250 records, then close (commits what was returned).
    let mut seen: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    {
        let mut cfg = config(group);
        cfg.consumer.max_poll_records = 7;
        cfg.consumer.max_partition_fetch_bytes = 600;
        let mut c = client.group_consumer(cfg)?;
        c.subscribe([topic]);
        let mut n = 0;
        while n < 250 {
            for r in c.poll(Duration::from_secs(1)).await? {
                seen.entry(r.partition).or_default().push(r.offset);
                n += 1;
            }
        }
        c.commit_sync().await?;
        for p in 0..6 {
            println!(
                "run 1: p{p} read {} (last {:?}) committed {:?}",
                seen.get(&p).map_or(0, |v| v.len()),
                seen.get(&p).and_then(|v| v.last()),
                c.committed(topic, p).await?
            );
        }
        c.close().await?;
    }
    // Second run: must start exactly after what the first returned.
    let mut c = client.group_consumer(config(group))?;
    c.subscribe([topic]);
    let mut again: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut idle = Instant::now();
    while idle.elapsed() < Duration::from_secs(8) {
        let recs = c.poll(Duration::from_secs(1)).await?;
        if !recs.is_empty() {
            idle = Instant::now();
        }
        for r in recs {
            again.entry(r.partition).or_default().push(r.offset);
        }
    }
    let mut dup = 0;
    let mut total = 0;
    for p in 0..6 {
        let first: BTreeSet<i64> = seen
            .get(&p)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let second = again.get(&p).cloned().unwrap_or_default();
        dup += second.iter().filter(|o| first.contains(o)).count();
        total += first.len() + second.len();
        println!(
            "run 2: p{p} starts at {:?}, {} records",
            second.first(),
            second.len()
        );
    }
    println!("total distinct reads {total} (produced 600), redelivered {dup}");
    assert_eq!(dup, 0);
    assert_eq!(total, 600);
    c.close().await?;
    Ok(())
}

async fn member(
    bootstrap: &str,
    topic: &str,
    group: &str,
    secs: u64,
    assignor: &str,
) -> Result<(), BoxError> {
    let client = Client::connect(ClientConfig::new(bootstrap)).await?;
    let mut cfg = config(group);
    if assignor == "roundrobin" {
        cfg.assignors = vec![Arc::new(RoundRobinAssignor)];
    } else if assignor == "range" {
        cfg.assignors = vec![Arc::new(RangeAssignor)];
    } else if assignor == "sticky" {
        cfg.assignors = vec![Arc::new(StickyAssignor)];
    } else if assignor == "cooperative-sticky" {
        cfg.assignors = vec![Arc::new(CooperativeStickyAssignor)];
    }
    let mut c = client.group_consumer(cfg)?;
    c.subscribe([topic]);
    let start = Instant::now();
    let mut count = 0;
    let mut last = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        count += c.poll(Duration::from_millis(500)).await?.len();
        if c.assignment() != last {
            last = c.assignment();
            println!(
                "[{:?}] member {:?} assignment {:?}",
                start.elapsed(),
                c.handle().member(),
                last
            );
        }
    }
    println!("read {count} records; closing");
    c.close().await?;
    Ok(())
}

async fn streams(bootstrap: &str, topic: &str, group: &str, n: usize) -> Result<(), BoxError> {
    let client = Client::connect(ClientConfig::new(bootstrap)).await?;
    let mut c = client.group_consumer(config(group))?;
    c.subscribe([topic]);
    let handles = c.streams(n);
    let group_handle = handles[0].group().clone();
    let mut tasks = Vec::new();
    for mut h in handles {
        tasks.push(tokio::spawn(async move {
            let mut parts = BTreeSet::new();
            let mut count = 0usize;
            while let Ok(Some(batch)) =
                tokio::time::timeout(Duration::from_secs(8), h.next_batch()).await
            {
                for r in batch.expect("records") {
                    parts.insert(r.partition);
                    count += 1;
                }
            }
            (h.index(), count, parts)
        }));
    }
    for t in tasks {
        let (i, count, parts) = t.await?;
        println!("handle {i}: {count} records from partitions {parts:?}");
    }
    group_handle.commit_sync().await?;
    group_handle.close().await?;
    Ok(())
}

/// Members join and leave while a producer runs; every record must be read, and (orderly
/// rebalances, auto-commit on revocation) none twice.
async fn churn(bootstrap: &str, topic: &str, group: &str, assignor: &str) -> Result<(), BoxError> {
    let client = Client::connect(ClientConfig::new(bootstrap)).await?;
    let _ = client
        .admin()
        .create_topics(vec![NewTopic::new(topic, 6, 1)])
        .await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(i32, i64)>::new()));
    let total = 6000usize;
    let producer = {
        let p = client.producer(ProducerConfig::default())?;
        let topic = topic.to_string();
        tokio::spawn(async move {
            for i in 0..total {
                let _d = p
                    .send(
                        ProducerRecord::new(topic.as_str(), format!("v{i}"))
                            .partition((i % 6) as i32),
                    )
                    .await;
                if i % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
            p.flush().await.expect("flush");
        })
    };
    let spawn_member = |name: &'static str, start: u64, stop: Option<u64>| {
        let seen = seen.clone();
        let (bootstrap, topic, group, assignor) = (
            bootstrap.to_string(),
            topic.to_string(),
            group.to_string(),
            assignor.to_string(),
        );
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(start)).await;
            let client = Client::connect(ClientConfig::new(&bootstrap))
                .await
                .expect("connect");
            let mut cfg = GroupConfig::new(group).auto_offset_reset(AutoOffsetReset::Earliest);
            cfg.auto_commit_interval = Duration::from_secs(1);
            if assignor == "cooperative-sticky" {
                cfg.assignors = vec![Arc::new(CooperativeStickyAssignor)];
            }
            let mut c = client.group_consumer(cfg).expect("consumer");
            c.subscribe([topic]);
            let began = Instant::now();
            let mut idle = Instant::now();
            let mut n = 0;
            loop {
                let recs = c.poll(Duration::from_millis(200)).await.expect("poll");
                if !recs.is_empty() {
                    idle = Instant::now();
                }
                n += recs.len();
                seen.lock()
                    .unwrap()
                    .extend(recs.iter().map(|r| (r.partition, r.offset)));
                match stop {
                    Some(s) if began.elapsed() > Duration::from_secs(s) => break,
                    None if began.elapsed() > Duration::from_secs(40)
                        && idle.elapsed() > Duration::from_secs(6) =>
                    {
                        break
                    }
                    _ => {}
                }
            }
            println!("{name}: read {n}, leaving with {:?}", c.assignment());
            c.close().await.expect("close");
        })
    };
    let a = spawn_member("A", 0, None);
    let b = spawn_member("B", 5, Some(12));
    let c = spawn_member("C", 10, Some(20));
    let d = spawn_member("D", 14, None);
    producer.await?;
    for m in [a, b, c, d] {
        m.await?;
    }
    let seen = seen.lock().unwrap().clone();
    let distinct: BTreeSet<(i32, i64)> = seen.iter().copied().collect();
    println!(
        "{assignor}: produced {total}, read {} records, {} distinct, {} duplicates",
        seen.len(),
        distinct.len(),
        seen.len() - distinct.len()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(0).as_str() {
        "split" => split(&arg(1), &arg(2), &arg(3)).await,
        "resume" => resume(&arg(1), &arg(2), &arg(3)).await,
        "member" => member(&arg(1), &arg(2), &arg(3), arg(4).parse()?, &arg(5)).await,
        "streams" => streams(&arg(1), &arg(2), &arg(3), arg(4).parse()?).await,
        "churn" => churn(&arg(1), &arg(2), &arg(3), &arg(4)).await,
        _ => Err("usage: group split|resume|member|streams BOOTSTRAP TOPIC GROUP [..]".into()),
    }
}
