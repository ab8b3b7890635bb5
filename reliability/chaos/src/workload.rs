//! The load: idempotent `acks=all` producers writing unique values and group consumers reading
//! and committing, each recording what it was told into the shared history.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spool_client::{
    Acks, Assignor, AutoOffsetReset, Client, ClientConfig, CooperativeStickyAssignor, GroupConfig,
    ProducerConfig, ProducerRecord, RangeAssignor, RoundRobinAssignor, StickyAssignor,
};
use tokio::sync::Semaphore;

use crate::checker::{Ack, ConsumerTracker, Seen, Value};

/// Distinct error messages kept (with counts) for the report.
const MAX_ERROR_KINDS: usize = 100;
/// Consumer regressions described in the report.
const MAX_EXAMPLES: usize = 20;

/// Everything the clients were told, in the order they were told it.
#[derive(Debug, Default)]
pub struct History {
    /// Acknowledged sends.
    pub acked: Vec<Ack>,
    /// Sends that failed (the delivery future or `send` itself returned an error): they may or
    /// may not be in the log.
    pub uncertain: Vec<Value>,
    /// Values sent so far per producer (sequence numbers `0..n`).
    pub sent: HashMap<u32, u64>,
    /// Consumer observations not yet verified against the log.
    pub seen: Vec<Seen>,
    /// Records group consumers returned.
    pub consumed: u64,
    /// Successful commits known to cover the records of the poll before them.
    pub commits_acked: u64,
    /// Per partition, the highest offset a successful commit is known to have covered.
    pub acked_commits: BTreeMap<i32, i64>,
    /// Offsets that went backwards within one assignment.
    pub consumer_regressions: u64,
    /// Acknowledgements naming another partition than the record was sent to.
    pub wrong_partition: u64,
    /// Examples of the two above.
    pub examples: Vec<String>,
    /// `send` refused the record (it was never queued).
    pub send_errors: u64,
    /// Delivery futures that failed.
    pub delivery_errors: u64,
    /// Group consumer polls that failed.
    pub poll_errors: u64,
    /// Group consumer commits that failed.
    pub commit_errors: u64,
    /// Error messages by kind, counted.
    pub errors: BTreeMap<String, u64>,
}

impl History {
    fn note(&mut self, kind: &str, e: &spool_client::Error) {
        let mut msg = record_counts_elided(&format!("{kind}: {e}"));
        msg.truncate(200);
        if self.errors.len() < MAX_ERROR_KINDS || self.errors.contains_key(&msg) {
            *self.errors.entry(msg).or_default() += 1;
        }
    }

    fn example(&mut self, s: String) {
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(s);
        }
    }
}

/// `delivery of 46 record(s) to ...` -> `delivery of N record(s) to ...`, so one kind of error
/// is counted once whatever the batch size.
fn record_counts_elided(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find(" record(s)") {
        let head = &rest[..i];
        let digits = head.len() - head.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        out.push_str(&head[..head.len() - digits]);
        if digits > 0 {
            out.push('N');
        }
        out.push_str(" record(s)");
        rest = &rest[i + " record(s)".len()..];
    }
    out.push_str(rest);
    out
}

/// State shared by the workload tasks and the driver.
pub struct Shared {
    /// The history.
    pub history: Mutex<History>,
    /// Set to end the load.
    pub stop: AtomicBool,
    /// Acknowledged records per producer (progress).
    pub acked_by: Vec<AtomicU64>,
    /// Records consumed by the group (progress).
    pub consumed: AtomicU64,
}

impl Shared {
    /// State for `producers` producers.
    pub fn new(producers: u32) -> Shared {
        Shared {
            history: Mutex::new(History::default()),
            stop: AtomicBool::new(false),
            acked_by: (0..producers).map(|_| AtomicU64::new(0)).collect(),
            consumed: AtomicU64::new(0),
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// Client settings for the workload: short enough timeouts that a pause or restart is retried
/// within a cycle.
pub fn client_config(bootstrap: &str, id: &str) -> ClientConfig {
    let mut c = ClientConfig::new(bootstrap);
    c.client_id = id.to_string();
    c.request_timeout = Duration::from_secs(15);
    c.connect_timeout = Duration::from_secs(5);
    c
}

/// Connects, retrying while the broker is down, until `deadline`.
pub async fn connect(config: ClientConfig, deadline: Instant) -> spool_client::Result<Client> {
    loop {
        match Client::connect(config.clone()).await {
            Ok(c) => return Ok(c),
            // The broker is (re)starting: a short backoff, then again.
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// What one producer does.
#[derive(Debug, Clone)]
pub struct ProducerSpec {
    /// Index (values are `p<index>-<seq>`).
    pub index: u32,
    /// Bootstrap address.
    pub bootstrap: String,
    /// Topic.
    pub topic: String,
    /// Partitions of the topic; record `seq` goes to `(seq + index) % partitions`.
    pub partitions: i32,
    /// Records per second.
    pub rate: u32,
    /// Most sends awaiting their acknowledgement at once.
    pub window: usize,
    /// `delivery.timeout.ms`.
    pub delivery_timeout: Duration,
    /// `request.timeout.ms`.
    pub request_timeout: Duration,
}

/// Sends unique values until told to stop, then waits (up to `drain`) for every outstanding
/// send to be answered.
pub async fn produce(shared: Arc<Shared>, spec: ProducerSpec, drain: Duration) {
    let mut cc = client_config(&spec.bootstrap, &format!("chaos-p{}", spec.index));
    cc.request_timeout = spec.request_timeout;
    let client = match connect(cc, Instant::now() + Duration::from_secs(120)).await {
        Ok(c) => c,
        Err(e) => {
            shared.history.lock().unwrap().note("producer connect", &e);
            return;
        }
    };
    let config = ProducerConfig {
        acks: Acks::All,
        enable_idempotence: Some(true),
        delivery_timeout: spec.delivery_timeout,
        ..ProducerConfig::default()
    };
    let producer = match client.producer(config) {
        Ok(p) => p,
        Err(e) => {
            shared.history.lock().unwrap().note("producer config", &e);
            return;
        }
    };
    let window = Arc::new(Semaphore::new(spec.window));
    let interval = Duration::from_secs_f64(1.0 / f64::from(spec.rate.max(1)));
    let mut next = Instant::now();
    let mut seq = 0u64;
    while !shared.stopped() {
        let Ok(permit) = window.clone().acquire_owned().await else {
            break;
        };
        let now = Instant::now();
        if next > now {
            tokio::time::sleep_until(next.into()).await;
        } else if now - next > Duration::from_secs(1) {
            // After a stall, resume the rate instead of bursting to catch up.
            next = now;
        }
        next += interval;
        let value = Value {
            producer: spec.index,
            seq,
        };
        seq += 1;
        let partition = ((seq - 1 + u64::from(spec.index)) % spec.partitions as u64) as i32;
        shared.history.lock().unwrap().sent.insert(spec.index, seq);
        let record = ProducerRecord::new(spec.topic.clone(), value.encode()).partition(partition);
        match producer.send(record).await {
            Ok(delivery) => {
                let shared = shared.clone();
                let index = spec.index as usize;
                tokio::spawn(async move {
                    let result = delivery.await;
                    drop(permit);
                    let mut h = shared.history.lock().unwrap();
                    match result {
                        Ok(meta) => {
                            if meta.partition != partition {
                                h.wrong_partition += 1;
                                h.example(format!(
                                    "{value} sent to partition {partition}, acknowledged in {}",
                                    meta.partition
                                ));
                            }
                            h.acked.push(Ack {
                                partition: meta.partition,
                                offset: meta.offset,
                                value,
                            });
                            shared.acked_by[index].fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => {
                            h.delivery_errors += 1;
                            h.note("delivery", &e);
                            h.uncertain.push(value);
                        }
                    }
                });
            }
            Err(e) => {
                let mut h = shared.history.lock().unwrap();
                h.send_errors += 1;
                h.note("send", &e);
                h.uncertain.push(value);
            }
        }
    }
    // Every outstanding send holds a permit until it is answered.
    let all = u32::try_from(spec.window).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(drain, async {
        let _ = producer.flush().await;
        let _ = window.acquire_many(all).await;
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(10), producer.close()).await;
}

/// What one group consumer does.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Index.
    pub index: usize,
    /// Bootstrap address.
    pub bootstrap: String,
    /// Topic subscribed to.
    pub topic: String,
    /// Group.
    pub group: String,
    /// Assignor (Java name), or `None` for the client's default list.
    pub assignor: Option<String>,
    /// Static membership: `group.instance.id` = `chaos-c<index>`.
    pub static_member: bool,
}

/// The assignor named as in Java's `partition.assignment.strategy`.
pub fn assignor(name: &str) -> Option<Arc<dyn Assignor>> {
    Some(match name {
        "range" => Arc::new(RangeAssignor),
        "roundrobin" => Arc::new(RoundRobinAssignor),
        "sticky" => Arc::new(StickyAssignor),
        "cooperative-sticky" => Arc::new(CooperativeStickyAssignor),
        _ => return None,
    })
}

/// Reads and commits (after every poll that returned records) until told to stop, then closes
/// (committing and leaving the group).
pub async fn consume(shared: Arc<Shared>, spec: ConsumerSpec) {
    let client = match connect(
        client_config(&spec.bootstrap, &format!("chaos-c{}", spec.index)),
        Instant::now() + Duration::from_secs(120),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            shared.history.lock().unwrap().note("consumer connect", &e);
            return;
        }
    };
    let rebalances = Arc::new(AtomicU64::new(0));
    let counter = rebalances.clone();
    let mut config = GroupConfig::new(spec.group.clone())
        .auto_offset_reset(AutoOffsetReset::Earliest)
        .on_rebalance(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
    config.session_timeout = Duration::from_secs(10);
    config.heartbeat_interval = Duration::from_millis(500);
    config.rebalance_timeout = Duration::from_secs(20);
    config.auto_commit_interval = Duration::from_secs(1);
    if spec.static_member {
        config.group_instance_id = Some(format!("chaos-c{}", spec.index));
    }
    if let Some(a) = spec.assignor.as_deref().and_then(assignor) {
        config.assignors = vec![a];
    }
    let mut consumer = match client.group_consumer(config) {
        Ok(c) => c,
        Err(e) => {
            shared
                .history
                .lock()
                .unwrap()
                .note("group consumer config", &e);
            return;
        }
    };
    consumer.subscribe([spec.topic.clone()]);
    // Commits go through the handle: the consumer itself is not shared across an await.
    let handle = consumer.handle();
    let mut tracker = ConsumerTracker::default();
    while !shared.stopped() {
        let before = rebalances.load(Ordering::SeqCst);
        match consumer.poll(Duration::from_millis(300)).await {
            Ok(records) => {
                let after = rebalances.load(Ordering::SeqCst);
                if records.is_empty() {
                    continue;
                }
                let pairs: Vec<(i32, i64)> =
                    records.iter().map(|r| (r.partition, r.offset)).collect();
                let regressions = tracker.observe(before, after, &pairs);
                {
                    let mut h = shared.history.lock().unwrap();
                    h.consumed += records.len() as u64;
                    h.consumer_regressions += regressions.len() as u64;
                    for r in regressions {
                        h.example(format!("consumer {}: {r}", spec.index));
                    }
                    h.seen.extend(records.into_iter().map(|r| Seen {
                        consumer: spec.index,
                        partition: r.partition,
                        offset: r.offset,
                        value: r.value,
                    }));
                }
                shared
                    .consumed
                    .fetch_add(pairs.len() as u64, Ordering::SeqCst);
                match handle.commit_sync().await {
                    // With no rebalance since before the poll, the commit covered this poll's
                    // records: the group's committed offsets must never again be below them.
                    Ok(()) if rebalances.load(Ordering::SeqCst) == before => {
                        let mut h = shared.history.lock().unwrap();
                        h.commits_acked += 1;
                        for (p, o) in &pairs {
                            let c = h.acked_commits.entry(*p).or_insert(0);
                            *c = (*c).max(o + 1);
                        }
                    }
                    Ok(()) => {}
                    Err(e) => {
                        let mut h = shared.history.lock().unwrap();
                        h.commit_errors += 1;
                        h.note("commit", &e);
                    }
                }
            }
            Err(e) => {
                {
                    let mut h = shared.history.lock().unwrap();
                    h.poll_errors += 1;
                    h.note("poll", &e);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(15), consumer.close()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_counts_are_elided_from_error_kinds() {
        assert_eq!(
            record_counts_elided(
                "delivery: delivery of 46 record(s) to chaos-0 timed out after 1.5s"
            ),
            "delivery: delivery of N record(s) to chaos-0 timed out after 1.5s"
        );
        assert_eq!(record_counts_elided("commit: x (25)"), "commit: x (25)");
    }
}
