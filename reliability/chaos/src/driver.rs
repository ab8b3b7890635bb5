//! The run: start the broker, start the load, inject one fault per cycle, check after each.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use spool_client::{AutoOffsetReset, Client, ConsumerConfig, NewTopic, Offset, OffsetSpec};

use crate::broker::Broker;
use crate::checker::{check_commits, check_log, LogVerdict, PartitionRead, Seen};
use crate::workload::{self, client_config, ConsumerSpec, ProducerSpec, Shared};

const TOPIC: &str = "chaos";
const GROUP: &str = "chaos-group";
/// How long a check may wait for the broker and read the log.
const CHECK_LIMIT: Duration = Duration::from_secs(120);

/// Settings of a run (see the flags in main.rs).
#[derive(Debug, Clone)]
pub struct Options {
    /// The `spool` binary.
    pub spool: PathBuf,
    /// Fault cycles.
    pub cycles: u32,
    /// Partitions of the topic.
    pub partitions: i32,
    /// Producers.
    pub producers: u32,
    /// Group consumers.
    pub consumers: usize,
    /// RNG seed of the fault schedule.
    pub seed: u64,
    /// Records per second per producer.
    pub rate: u32,
    /// Unacknowledged sends per producer at most.
    pub window: usize,
    /// Load before each fault, ms (range).
    pub load_ms: (u64, u64),
    /// SIGSTOP duration, ms (range).
    pub pause_ms: (u64, u64),
    /// Probability that a cycle's fault is kill -9.
    pub kill_ratio: f64,
    /// Probability that it is SIGTERM followed by kill -9 within `term_kill_ms` (the rest of
    /// the cycles pause).
    pub term_kill_ratio: f64,
    /// Longest delay between SIGTERM and SIGKILL, ms.
    pub term_kill_ms: u64,
    /// How long every producer and the group may take to make progress after a fault.
    pub stall_limit: Duration,
    /// Data directory to use (kept); a temporary one otherwise (kept only on failure).
    pub data_dir: Option<PathBuf>,
    /// The topic's `segment.bytes`: small segments make kills land around segment rolls and
    /// make recovery walk several segments.
    pub segment_bytes: u64,
    /// The group consumers' assignor (Java name); `None`: the client's default list.
    pub assignor: Option<String>,
    /// Static group membership (`group.instance.id`).
    pub static_members: bool,
    /// The producers' `delivery.timeout.ms`.
    pub delivery_timeout: Duration,
    /// The producers' `request.timeout.ms`.
    pub request_timeout: Duration,
}

/// One cycle's line.
#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    /// 1-based cycle number (0 for the final checks).
    pub cycle: u32,
    /// `kill`, `term-kill`, `pause`, `final` or `clean-restart`.
    pub fault: String,
    /// Pause length, or how long the restart took, ms.
    pub fault_ms: u64,
    /// Time from the end of the fault until every producer and the group made progress, ms.
    pub recovery_ms: u64,
    /// The log check.
    pub verdict: LogVerdict,
    /// Committed offsets that went backwards (or past the log end).
    pub commit_regressions: u64,
    /// Consumer offset regressions so far (cumulative).
    pub consumer_regressions: u64,
    /// Producers or the group that made no progress within the stall limit.
    pub stalls: Vec<String>,
    /// Violations found in this cycle.
    pub violations: u64,
}

/// The whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Seed (replays the fault schedule).
    pub seed: u64,
    /// Cycles run.
    pub cycles: u32,
    /// kill -9 + restart faults.
    pub kills: u32,
    /// SIGTERM, kill -9 soon after, restart.
    pub term_kills: u32,
    /// SIGSTOP/SIGCONT faults.
    pub pauses: u32,
    /// Values sent.
    pub sent: u64,
    /// Acknowledged records.
    pub acknowledged: u64,
    /// Acknowledged records verified by the last check.
    pub checked: u64,
    /// Records in the log at the end.
    pub log_records: u64,
    /// Worst count over all checks of each kind of violation.
    pub lost: u64,
    /// See [`LogVerdict::misplaced`].
    pub misplaced: u64,
    /// See [`LogVerdict::duplicated`].
    pub duplicated: u64,
    /// See [`LogVerdict::gaps`].
    pub gaps: u64,
    /// See [`LogVerdict::reordered`].
    pub reordered: u64,
    /// See [`LogVerdict::phantom`].
    pub phantom: u64,
    /// See [`LogVerdict::consumer_mismatch`].
    pub consumer_mismatch: u64,
    /// Consumer offsets that went backwards within one assignment.
    pub consumer_regressions: u64,
    /// Committed offsets that went backwards, fell below an acknowledged commit or passed the
    /// log end, over all checks.
    pub commit_regressions: u64,
    /// Acknowledgements for another partition than the record was sent to.
    pub wrong_partition: u64,
    /// Cycles after which a producer or the group made no progress in time.
    pub stalls: u64,
    /// Sends that failed or timed out (allowed either way).
    pub uncertain: u64,
    /// Of those, found in the log at the end.
    pub uncertain_present: u64,
    /// Of those, absent at the end.
    pub uncertain_absent: u64,
    /// Records the group consumers returned.
    pub consumed: u64,
    /// Consumer observations verified against the log.
    pub consumer_seen_checked: u64,
    /// Successful commits whose offsets the checker holds the group to.
    pub commits_acknowledged: u64,
    /// Client-side errors (expected during faults), by kind.
    pub client_errors: BTreeMap<String, u64>,
    /// Slowest restart, ms.
    pub restart_ms_max: u64,
    /// Slowest recovery of the load after a fault, ms.
    pub recovery_ms_max: u64,
    /// Total violations; the run fails when non-zero.
    pub violations: u64,
    /// The first violations, described.
    pub examples: Vec<String>,
    /// Per-cycle reports.
    pub cycle_reports: Vec<CycleReport>,
    /// Where the data directory and broker log are (kept when the run failed).
    pub data_dir: Option<PathBuf>,
}

impl Summary {
    fn absorb(&mut self, c: &CycleReport) {
        let v = &c.verdict;
        self.lost = self.lost.max(v.lost);
        self.misplaced = self.misplaced.max(v.misplaced);
        self.duplicated = self.duplicated.max(v.duplicated);
        self.gaps = self.gaps.max(v.gaps);
        self.reordered = self.reordered.max(v.reordered);
        self.phantom = self.phantom.max(v.phantom);
        self.consumer_mismatch += v.consumer_mismatch;
        self.consumer_seen_checked += v.consumer_seen_checked;
        self.commit_regressions += c.commit_regressions;
        self.stalls += u64::from(!c.stalls.is_empty());
        self.checked = v.checked;
        self.log_records = v.log_records;
        self.uncertain_present = v.uncertain_present;
        self.uncertain_absent = v.uncertain_absent;
        for e in v.examples.iter().chain(&c.stalls) {
            if self.examples.len() < 30 {
                self.examples
                    .push(format!("cycle {} ({}): {e}", c.cycle, c.fault));
            }
        }
    }

    fn total_violations(&self) -> u64 {
        self.lost
            + self.misplaced
            + self.duplicated
            + self.gaps
            + self.reordered
            + self.phantom
            + self.consumer_mismatch
            + self.consumer_regressions
            + self.commit_regressions
            + self.wrong_partition
            + self.stalls
    }
}

impl CycleReport {
    /// The one-line form printed per cycle.
    pub fn line(&self, cycles: u32) -> String {
        let v = &self.verdict;
        let head = if self.cycle == 0 {
            format!("{:>23}", self.fault)
        } else {
            format!("cycle {:>3}/{cycles} {:<9}", self.cycle, self.fault)
        };
        format!(
            "{head} {:>5}ms recovered {:>5}ms | acked {:>7} log {:>7} | lost {} misplaced {} dup {} gaps {} reordered {} phantom {} read-mismatch {} | consumer-regress {} commit-regress {} stalls {} | {}",
            self.fault_ms,
            self.recovery_ms,
            v.checked,
            v.log_records,
            v.lost,
            v.misplaced,
            v.duplicated,
            v.gaps,
            v.reordered,
            v.phantom,
            v.consumer_mismatch,
            self.consumer_regressions,
            self.commit_regressions,
            self.stalls.len(),
            if self.violations == 0 { "ok" } else { "VIOLATION" },
        )
    }
}

/// Retries `f` until it succeeds or `deadline` passes.
async fn retry<T, F, Fut>(what: &str, deadline: Instant, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = spool_client::Result<T>>,
{
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            // The broker may be restarting: back off briefly and ask again.
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(anyhow!("{what}: {e}")),
        }
    }
}

/// The checker's view of the broker, fresh for every check.
struct Checker {
    bootstrap: String,
    partitions: i32,
    /// Committed offsets at the previous check.
    commits: BTreeMap<i32, i64>,
    /// Consumer observations past the log end at the previous check.
    pending: Vec<Seen>,
}

impl Checker {
    async fn check(&mut self, shared: &Shared) -> Result<(LogVerdict, Vec<String>)> {
        let deadline = Instant::now() + CHECK_LIMIT;
        // The history first: every acknowledgement in it precedes the end offsets listed below.
        let (acked, uncertain, seen, acked_commits) = {
            let mut h = shared.history.lock().unwrap();
            (
                h.acked.clone(),
                h.uncertain.clone(),
                std::mem::take(&mut h.seen),
                h.acked_commits.clone(),
            )
        };
        let mut all_seen = std::mem::take(&mut self.pending);
        all_seen.extend(seen);
        let client = workload::connect(client_config(&self.bootstrap, "chaos-checker"), deadline)
            .await
            .context("checker connect")?;
        let admin = client.admin();
        // Commits before end offsets: a commit can only name an offset below the end it saw.
        let commits = retry("committed offsets", deadline, || admin.group_offsets(GROUP))
            .await
            .or_else(|e| {
                // A group that never committed is unknown to the coordinator.
                if self.commits.is_empty() && acked_commits.is_empty() {
                    Ok(BTreeMap::new())
                } else {
                    Err(e)
                }
            })?;
        let commits: BTreeMap<i32, i64> = commits
            .into_iter()
            .filter(|((t, _), _)| t == TOPIC)
            .map(|((_, p), c)| (p, c.offset))
            .collect();
        let specs: Vec<(&str, i32, OffsetSpec)> = (0..self.partitions)
            .map(|p| (TOPIC, p, OffsetSpec::Latest))
            .collect();
        let listed = retry("log end offsets", deadline, || admin.list_offsets(&specs)).await?;
        let ends: BTreeMap<i32, i64> = listed
            .into_iter()
            .map(|((_, p), o)| (p, o.offset))
            .collect();
        let read = read_log(&client, &ends, deadline).await;
        // What was sent, after the read: every value read was sent before it was read.
        let sent = shared.history.lock().unwrap().sent.clone();
        let (verdict, pending) = check_log(&read, &acked, &uncertain, &sent, all_seen);
        self.pending = pending;
        let commit_violations = check_commits(&self.commits, &acked_commits, &commits, &ends);
        self.commits = commits;
        Ok((verdict, commit_violations))
    }
}

/// Reads every partition from offset 0 to its end with a plain consumer.
async fn read_log(
    client: &Client,
    ends: &BTreeMap<i32, i64>,
    deadline: Instant,
) -> BTreeMap<i32, PartitionRead> {
    let mut consumer = client.consumer(ConsumerConfig {
        auto_offset_reset: AutoOffsetReset::Earliest,
        max_poll_records: 10_000,
        ..ConsumerConfig::default()
    });
    consumer.assign(ends.keys().map(|p| (TOPIC.to_string(), *p)).collect());
    let mut out: BTreeMap<i32, PartitionRead> = BTreeMap::new();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, end) in ends {
        // Seeking an assigned partition cannot fail.
        let _ = consumer.seek(TOPIC, *p, Offset::At(0));
        out.insert(
            *p,
            PartitionRead {
                end: *end,
                records: Vec::new(),
            },
        );
        next.insert(*p, 0);
    }
    while next.iter().any(|(p, n)| *n < ends[p]) && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)).await {
            Ok(records) => {
                for r in records {
                    let end = ends.get(&r.partition).copied().unwrap_or(0);
                    if let Some(n) = next.get_mut(&r.partition) {
                        *n = (*n).max(r.offset + 1);
                    }
                    if r.offset < end {
                        if let Some(part) = out.get_mut(&r.partition) {
                            part.records.push((r.offset, r.value));
                        }
                    }
                }
            }
            // Whatever stays unread shows up as a gap.
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    out
}

/// Waits until every producer acknowledged more than `producers` and the group consumed more
/// than `consumed`, up to `limit`; returns how long it took and what did not progress.
async fn wait_progress(
    shared: &Shared,
    producers: &[u64],
    consumed: u64,
    limit: Duration,
) -> (Duration, Vec<String>) {
    let start = Instant::now();
    loop {
        let mut stuck: Vec<String> = shared
            .acked_by
            .iter()
            .zip(producers)
            .enumerate()
            .filter(|(_, (now, before))| now.load(Ordering::SeqCst) <= **before)
            .map(|(i, _)| format!("producer {i} had no acknowledgement for {limit:?}"))
            .collect();
        if shared.consumed.load(Ordering::SeqCst) <= consumed {
            stuck.push(format!("the group consumed nothing for {limit:?}"));
        }
        if stuck.is_empty() || start.elapsed() >= limit {
            return (start.elapsed(), stuck);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn marks(shared: &Shared) -> (Vec<u64>, u64) {
    (
        shared
            .acked_by
            .iter()
            .map(|a| a.load(Ordering::SeqCst))
            .collect(),
        shared.consumed.load(Ordering::SeqCst),
    )
}

/// Runs the whole test; `print` gets each cycle's line.
pub async fn run(opts: Options, print: &mut dyn FnMut(&str)) -> Result<Summary> {
    let mut temp = None;
    let dir = match &opts.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            let t = tempfile::Builder::new().prefix("spool-chaos-").tempdir()?;
            let path = t.path().to_path_buf();
            temp = Some(t);
            path
        }
    };
    let data = dir.join("data");
    let log = dir.join("broker.log");
    let mut summary = Summary {
        seed: opts.seed,
        data_dir: Some(dir.clone()),
        ..Summary::default()
    };
    let result = drive(&opts, &mut summary, data, log, print).await;
    summary.violations = summary.total_violations();
    let failed = result.is_err() || summary.violations > 0;
    if let (false, None) = (failed, &opts.data_dir) {
        summary.data_dir = None;
    } else if let Some(t) = temp {
        // Keep the evidence: the data directory and the broker's log.
        let _ = t.keep();
    }
    result.map(|()| summary)
}

async fn drive(
    opts: &Options,
    summary: &mut Summary,
    data: PathBuf,
    log: PathBuf,
    print: &mut dyn FnMut(&str),
) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut broker = Broker::new(opts.spool.clone(), data, log);
    broker.start().await?;
    let bootstrap = broker.addr().context("broker address")?.to_string();
    let setup = workload::connect(
        client_config(&bootstrap, "chaos-setup"),
        Instant::now() + Duration::from_secs(30),
    )
    .await?;
    setup
        .admin()
        .create_topics(vec![NewTopic::new(TOPIC, opts.partitions, 1)
            .config("segment.bytes", opts.segment_bytes.to_string())])
        .await
        .context("creating the topic")?;
    let shared = Arc::new(Shared::new(opts.producers));
    let drain = Duration::from_secs(150);
    let producers: Vec<_> = (0..opts.producers)
        .map(|index| {
            let spec = ProducerSpec {
                index,
                bootstrap: bootstrap.clone(),
                topic: TOPIC.to_string(),
                partitions: opts.partitions,
                rate: opts.rate,
                window: opts.window,
                delivery_timeout: opts.delivery_timeout,
                request_timeout: opts.request_timeout,
            };
            tokio::spawn(workload::produce(shared.clone(), spec, drain))
        })
        .collect();
    let consumers: Vec<_> = (0..opts.consumers)
        .map(|index| {
            let spec = ConsumerSpec {
                index,
                bootstrap: bootstrap.clone(),
                topic: TOPIC.to_string(),
                group: GROUP.to_string(),
                assignor: opts.assignor.clone(),
                static_member: opts.static_members,
            };
            tokio::spawn(workload::consume(shared.clone(), spec))
        })
        .collect();
    let mut checker = Checker {
        bootstrap: bootstrap.clone(),
        partitions: opts.partitions,
        commits: BTreeMap::new(),
        pending: Vec::new(),
    };
    // The load must be running before the first fault, or there is nothing to check.
    let (p0, c0) = marks(&shared);
    let (_, stuck) = wait_progress(&shared, &p0, c0, opts.stall_limit).await;
    if !stuck.is_empty() {
        bail!("the load never started: {}", stuck.join("; "));
    }
    for cycle in 1..=opts.cycles {
        // Every random choice is drawn here, in a fixed order, so a seed replays the schedule.
        let load = Duration::from_millis(rng.gen_range(opts.load_ms.0..=opts.load_ms.1));
        let pick: f64 = rng.gen();
        let pause = Duration::from_millis(rng.gen_range(opts.pause_ms.0..=opts.pause_ms.1));
        let term_delay = Duration::from_millis(rng.gen_range(0..=opts.term_kill_ms));
        let fault = if pick < opts.kill_ratio {
            "kill"
        } else if pick < opts.kill_ratio + opts.term_kill_ratio {
            "term-kill"
        } else {
            "pause"
        };
        tokio::time::sleep(load).await;
        let fault_ms = match fault {
            "kill" | "term-kill" => {
                if fault == "kill" {
                    broker.kill9().await?;
                    summary.kills += 1;
                } else {
                    broker.term_then_kill(term_delay).await?;
                    summary.term_kills += 1;
                }
                let took = broker.start().await?.as_millis() as u64;
                summary.restart_ms_max = summary.restart_ms_max.max(took);
                took
            }
            _ => {
                broker.pause().await?;
                // The fault itself: the broker stays stopped this long.
                tokio::time::sleep(pause).await;
                broker.resume().await?;
                summary.pauses += 1;
                pause.as_millis() as u64
            }
        };
        // Progress counts from the end of the fault.
        let (p, c) = marks(&shared);
        let (recovery, stalls) = wait_progress(&shared, &p, c, opts.stall_limit).await;
        summary.recovery_ms_max = summary.recovery_ms_max.max(recovery.as_millis() as u64);
        let report = cycle_report(
            &mut checker,
            &shared,
            cycle,
            fault,
            fault_ms,
            recovery,
            stalls,
        )
        .await?;
        print(&report.line(opts.cycles));
        summary.absorb(&report);
        summary.cycles = cycle;
        summary.cycle_reports.push(report);
    }
    // Stop the load and let every send be answered, so the final check sees a settled history.
    shared.stop.store(true, Ordering::SeqCst);
    for t in producers.into_iter().chain(consumers) {
        let _ = t.await;
    }
    let report = cycle_report(
        &mut checker,
        &shared,
        0,
        "final",
        0,
        Duration::ZERO,
        Vec::new(),
    )
    .await?;
    print(&report.line(opts.cycles));
    summary.absorb(&report);
    summary.cycle_reports.push(report);
    // A clean shutdown and restart must keep everything too.
    let began = Instant::now();
    broker.stop(Duration::from_secs(60)).await?;
    broker.start().await?;
    let report = cycle_report(
        &mut checker,
        &shared,
        0,
        "clean-restart",
        began.elapsed().as_millis() as u64,
        Duration::ZERO,
        Vec::new(),
    )
    .await?;
    print(&report.line(opts.cycles));
    summary.absorb(&report);
    summary.cycle_reports.push(report);
    broker.stop(Duration::from_secs(60)).await?;
    let h = shared.history.lock().unwrap();
    summary.sent = h.sent.values().sum();
    summary.acknowledged = h.acked.len() as u64;
    summary.uncertain = h.uncertain.len() as u64;
    summary.consumed = h.consumed;
    summary.commits_acknowledged = h.commits_acked;
    summary.consumer_regressions = h.consumer_regressions;
    summary.wrong_partition = h.wrong_partition;
    summary.client_errors = h.errors.clone();
    for e in &h.examples {
        if summary.examples.len() < 30 {
            summary.examples.push(e.clone());
        }
    }
    Ok(())
}

async fn cycle_report(
    checker: &mut Checker,
    shared: &Shared,
    cycle: u32,
    fault: &str,
    fault_ms: u64,
    recovery: Duration,
    stalls: Vec<String>,
) -> Result<CycleReport> {
    let (verdict, commit_violations) = checker.check(shared).await?;
    let consumer_regressions = shared.history.lock().unwrap().consumer_regressions;
    let mut verdict = verdict;
    for c in &commit_violations {
        if verdict.examples.len() < 40 {
            verdict.examples.push(c.clone());
        }
    }
    let violations = verdict.violations() + commit_violations.len() as u64 + stalls.len() as u64;
    Ok(CycleReport {
        cycle,
        fault: fault.to_string(),
        fault_ms,
        recovery_ms: recovery.as_millis() as u64,
        verdict,
        commit_regressions: commit_violations.len() as u64,
        consumer_regressions,
        stalls,
        violations,
    })
}
