//! Consumer groups end to end with Spool's own group consumer on an in-process broker.

use std::collections::BTreeSet;
use std::time::Duration;

use spool_broker::{BrokerConfig, EmbeddedBroker};
use std::sync::Arc;

use spool_client::{
    AutoOffsetReset, Client, ClientConfig, GroupConfig, GroupConsumer, NewTopic, ProducerConfig,
    ProducerRecord, StickyAssignor,
};
use tokio::time::{timeout, Instant};

async fn broker(dir: &std::path::Path) -> EmbeddedBroker {
    let mut config = BrokerConfig::new(dir);
    config.group.initial_rebalance_delay_ms = 0;
    EmbeddedBroker::start_with(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

async fn member(bootstrap: &str, group: &str) -> GroupConsumer {
    let client = Client::connect(ClientConfig::new(bootstrap)).await.unwrap();
    let mut config = GroupConfig::new(group).auto_offset_reset(AutoOffsetReset::Earliest);
    config.session_timeout = Duration::from_secs(6);
    config.heartbeat_interval = Duration::from_millis(500);
    let mut c = client.group_consumer(config).unwrap();
    c.subscribe(["orders".to_string()]);
    c
}

async fn produce(bootstrap: &str, from: usize, n: usize) {
    let client = Client::connect(ClientConfig::new(bootstrap)).await.unwrap();
    let producer = client.producer(ProducerConfig::default()).unwrap();
    let mut deliveries = Vec::new();
    for i in from..from + n {
        let record = ProducerRecord::new("orders", i.to_string()).key(format!("k{i}"));
        deliveries.push(producer.send(record).await.unwrap());
    }
    for d in deliveries {
        d.await.unwrap();
    }
    producer.close().await.unwrap();
}

/// Polls the members round robin until `want` values arrived or the deadline passes.
async fn consume(members: &mut [&mut GroupConsumer], want: usize) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        for m in members.iter_mut() {
            for r in m.poll(Duration::from_millis(100)).await.unwrap() {
                got.push(
                    std::str::from_utf8(r.value.as_deref().unwrap())
                        .unwrap()
                        .parse()
                        .unwrap(),
                );
            }
        }
    }
    got.sort();
    got
}

/// Polls until `m` owns `n` partitions.
async fn until_owns(m: &mut GroupConsumer, n: usize) {
    timeout(Duration::from_secs(30), async {
        while m.assignment().len() != n {
            m.poll(Duration::from_millis(100)).await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("member owns {:?}, expected {n} partitions", m.assignment()));
}

#[tokio::test]
async fn members_split_partitions_hand_them_over_and_resume_from_commits_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path()).await;
    let addr = b.bootstrap();
    let admin = Client::connect(ClientConfig::new(&addr))
        .await
        .unwrap()
        .admin();
    admin
        .create_topics(vec![NewTopic::new("orders", 6, 1)])
        .await
        .unwrap();

    let mut a = member(&addr, "g").await;
    let mut c = member(&addr, "g").await;
    // Both must be polled for the rebalance to complete, so poll them together.
    timeout(Duration::from_secs(30), async {
        while a.assignment().len() + c.assignment().len() != 6
            || a.assignment().is_empty()
            || c.assignment().is_empty()
        {
            a.poll(Duration::from_millis(50)).await.unwrap();
            c.poll(Duration::from_millis(50)).await.unwrap();
        }
    })
    .await
    .expect("the two members never shared the six partitions");
    let owned_a: BTreeSet<_> = a.assignment().into_iter().collect();
    let owned_c: BTreeSet<_> = c.assignment().into_iter().collect();
    assert_eq!((owned_a.len(), owned_c.len()), (3, 3));
    assert!(owned_a.is_disjoint(&owned_c));

    produce(&addr, 0, 60).await;
    assert_eq!(
        consume(&mut [&mut a, &mut c], 60).await,
        (0..60).collect::<Vec<_>>()
    );

    // A member that leaves is replaced at once.
    c.close().await.unwrap();
    until_owns(&mut a, 6).await;
    produce(&addr, 60, 30).await;
    assert_eq!(
        consume(&mut [&mut a], 30).await,
        (60..90).collect::<Vec<_>>()
    );
    // Everything produced was consumed: no lag on any partition that was fetched.
    let mut fetched = 0;
    for p in 0..6 {
        if let Some(lag) = a.lag("orders", p).await.unwrap() {
            assert_eq!(lag, 0, "partition {p}");
            fetched += 1;
        }
    }
    assert!(fetched > 0, "no partition reported a high watermark");
    a.commit_sync().await.unwrap();
    a.close().await.unwrap();

    // Commits survive a restart: a new member reads only what came after them.
    b.shutdown().await.unwrap();
    let b = broker(dir.path()).await;
    let addr = b.bootstrap();
    let mut fresh = member(&addr, "g").await;
    produce(&addr, 90, 10).await;
    assert_eq!(
        consume(&mut [&mut fresh], 10).await,
        (90..100).collect::<Vec<_>>()
    );
    fresh.close().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_member_that_dies_without_leaving_is_replaced_after_its_session_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path()).await;
    let addr = b.bootstrap();
    let admin = Client::connect(ClientConfig::new(&addr))
        .await
        .unwrap()
        .admin();
    admin
        .create_topics(vec![NewTopic::new("orders", 4, 1)])
        .await
        .unwrap();
    let mut a = member(&addr, "g").await;
    let mut dead = member(&addr, "g").await;
    timeout(Duration::from_secs(30), async {
        while a.assignment().len() != 2 || dead.assignment().len() != 2 {
            a.poll(Duration::from_millis(50)).await.unwrap();
            dead.poll(Duration::from_millis(50)).await.unwrap();
        }
    })
    .await
    .expect("the two members never split the four partitions");
    // Dropped without close: no LeaveGroup, heartbeats stop.
    drop(dead);
    let died = Instant::now();
    until_owns(&mut a, 4).await;
    // Not before the 6 s session timeout: the broker waited for it rather than guessing.
    assert!(
        died.elapsed() >= Duration::from_secs(5),
        "taken over after {:?}",
        died.elapsed()
    );
    produce(&addr, 0, 20).await;
    assert_eq!(
        consume(&mut [&mut a], 20).await,
        (0..20).collect::<Vec<_>>()
    );
    a.close().await.unwrap();
    b.shutdown().await.unwrap();
}

fn owned(m: &GroupConsumer) -> BTreeSet<(String, i32)> {
    m.assignment().into_iter().collect()
}

#[tokio::test]
async fn sticky_members_keep_their_partitions_when_a_member_joins() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path()).await;
    let addr = b.bootstrap();
    let admin = Client::connect(ClientConfig::new(&addr))
        .await
        .unwrap()
        .admin();
    admin
        .create_topics(vec![NewTopic::new("orders", 6, 1)])
        .await
        .unwrap();
    let sticky_member = |addr: String| async move {
        let client = Client::connect(ClientConfig::new(&addr)).await.unwrap();
        let mut config = GroupConfig::new("sticky").auto_offset_reset(AutoOffsetReset::Earliest);
        config.session_timeout = Duration::from_secs(6);
        config.heartbeat_interval = Duration::from_millis(200);
        config.assignors = vec![Arc::new(StickyAssignor)];
        let mut c = client.group_consumer(config).unwrap();
        c.subscribe(["orders".to_string()]);
        c
    };
    let mut a = sticky_member(addr.clone()).await;
    let mut c = sticky_member(addr.clone()).await;
    timeout(Duration::from_secs(30), async {
        while a.assignment().len() != 3 || c.assignment().len() != 3 {
            a.poll(Duration::from_millis(50)).await.unwrap();
            c.poll(Duration::from_millis(50)).await.unwrap();
        }
    })
    .await
    .expect("the two members never split the six partitions");
    let (before_a, before_c) = (owned(&a), owned(&c));
    // A third member: eager, so everyone gives everything up and rejoins, but the previous
    // assignment travels in the user data and each keeps two of its three.
    let mut d = sticky_member(addr.clone()).await;
    timeout(Duration::from_secs(30), async {
        while a.assignment().len() != 2 || c.assignment().len() != 2 || d.assignment().len() != 2 {
            a.poll(Duration::from_millis(50)).await.unwrap();
            c.poll(Duration::from_millis(50)).await.unwrap();
            d.poll(Duration::from_millis(50)).await.unwrap();
        }
    })
    .await
    .expect("the three members never split the six partitions");
    assert!(
        owned(&a).is_subset(&before_a),
        "{:?} then {:?}",
        before_a,
        owned(&a)
    );
    assert!(
        owned(&c).is_subset(&before_c),
        "{:?} then {:?}",
        before_c,
        owned(&c)
    );
    for m in [a, c, d] {
        m.close().await.unwrap();
    }
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_pattern_subscription_picks_up_topics_created_later() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path()).await;
    let addr = b.bootstrap();
    let admin = Client::connect(ClientConfig::new(&addr))
        .await
        .unwrap()
        .admin();
    admin
        .create_topics(vec![
            NewTopic::new("orders-eu", 2, 1),
            NewTopic::new("old-orders-x", 1, 1),
        ])
        .await
        .unwrap();
    let mut client_config = ClientConfig::new(&addr);
    // How often the subscription is re-evaluated against the topic list.
    client_config.metadata_max_age = Duration::from_millis(300);
    let client = Client::connect(client_config).await.unwrap();
    let mut config = GroupConfig::new("pattern").auto_offset_reset(AutoOffsetReset::Earliest);
    config.heartbeat_interval = Duration::from_millis(200);
    let mut m = client.group_consumer(config).unwrap();
    m.subscribe_pattern("^orders-.*").unwrap();
    until_owns(&mut m, 2).await;
    assert!(owned(&m).iter().all(|(t, _)| t == "orders-eu"));

    admin
        .create_topics(vec![NewTopic::new("orders-us", 3, 1)])
        .await
        .unwrap();
    until_owns(&mut m, 5).await;
    let topics: BTreeSet<String> = owned(&m).into_iter().map(|(t, _)| t).collect();
    assert_eq!(
        topics,
        BTreeSet::from(["orders-eu".to_string(), "orders-us".to_string()])
    );
    m.close().await.unwrap();
    b.shutdown().await.unwrap();
}
