//! The group consumer: Kafka's classic consumer-group protocol on top of [`Consumer`].
//!
//! ```text
//!  GroupConsumer (application side)              membership task (coordinator.rs)
//!    subscribe() ---------- commands ---------->  FindCoordinator, JoinGroup, SyncGroup,
//!    commit_sync()/commit_async()/committed()      Heartbeat, OffsetCommit/OffsetFetch,
//!    poll(): Consumer (fetch) <-- Shared: epoch,   LeaveGroup; leader runs the assignor
//!            assignment, start offsets, consumed positions --> (auto-)commit
//! ```
//!
//! The membership task heartbeats every `heartbeat_interval` however rarely the application
//! polls. Rebalances are eager unless every configured assignor is cooperative: on
//! REBALANCE_IN_PROGRESS an eager member revokes every partition (after committing what was
//! consumed when auto-commit is on), rejoins, and its new assignment starts at the committed
//! offsets (or `auto_offset_reset`). A cooperative member (`[cooperative-sticky]`) keeps
//! consuming while it rejoins, sends its owned partitions, gives up only what the new
//! assignment takes away (committing it) and then rejoins once more so those partitions can move. Records are handed to the application only while the
//! assignment they were fetched under is current, so the offsets committed on revocation cover
//! exactly the records delivered.
//!
//! ```no_run
//! # async fn demo() -> spool_client::Result<()> {
//! use std::time::Duration;
//! use spool_client::{Client, ClientConfig, GroupConfig};
//! let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
//! let mut consumer = client.group_consumer(GroupConfig::new("billing"))?;
//! consumer.subscribe(["orders"]);
//! loop {
//!     for record in consumer.poll(Duration::from_secs(1)).await? {
//!         println!("{}-{}@{}", record.topic, record.partition, record.offset);
//!     }
//! }
//! # }
//! ```

pub mod assignor;
mod coordinator;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::Stream;
use tokio::sync::{mpsc, oneshot};

use crate::cluster::Client;
use crate::config::{AutoOffsetReset, ConsumerConfig};
use crate::consumer::{Consumer, ConsumerRecord, ConsumerRecords, Offset};
use crate::error::{Error, Result};

pub use assignor::{
    Assignor, CooperativeStickyAssignor, MemberSubscription, PreviousAssignment, RangeAssignor,
    RoundRobinAssignor, StickyAssignor,
};
use coordinator::{Command, Membership, Shared};

/// Records (with the assignment epoch they were fetched under) sent to a [`GroupStream`].
type Dispatched = Result<(u64, Vec<ConsumerRecord>)>;

/// A (topic, partition) pair.
pub type Tp = (String, i32);

/// A committed offset and its metadata string (kept byte for byte).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetAndMetadata {
    /// The next offset to consume.
    pub offset: i64,
    /// Free-form metadata stored with the offset (empty by default).
    pub metadata: String,
}

impl OffsetAndMetadata {
    /// An offset with empty metadata.
    pub fn new(offset: i64) -> Self {
        OffsetAndMetadata {
            offset,
            metadata: String::new(),
        }
    }
}

/// A change of this member's assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    /// Partitions assigned after a rebalance (Java's `onPartitionsAssigned`).
    Assigned(Vec<Tp>),
    /// Partitions given up in an orderly rebalance or on close, after their consumed offsets
    /// were committed when auto-commit is on (`onPartitionsRevoked`).
    Revoked(Vec<Tp>),
    /// Partitions lost: the membership was fenced or expired, nothing was committed
    /// (`onPartitionsLost`).
    Lost(Vec<Tp>),
}

/// Called from the membership task on every [`RebalanceEvent`]; must not block.
pub type RebalanceListener = Arc<dyn Fn(&RebalanceEvent) + Send + Sync>;

/// What a member subscribes to.
#[derive(Clone)]
pub enum Subscription {
    /// These topics.
    Topics(Vec<String>),
    /// Every (non-internal) topic whose name the predicate accepts, re-evaluated every
    /// `min(metadata_max_age, 30 s)`; a change triggers a rebalance (Java's pattern
    /// subscription).
    Matching(Arc<dyn Fn(&str) -> bool + Send + Sync>),
    /// Every (non-internal) topic whose whole name the regular expression matches (Java's
    /// `subscribe(Pattern)`: `Matcher.matches()`, so the pattern is anchored at both ends),
    /// re-evaluated like [`Subscription::Matching`].
    Pattern(regex::Regex),
}

impl Subscription {
    /// A pattern subscription; the pattern must match a topic's whole name.
    pub fn pattern(pattern: &str) -> Result<Subscription> {
        let invalid =
            |e: &dyn fmt::Display| Error::Config(format!("invalid topic pattern {pattern:?}: {e}"));
        // The pattern must parse on its own before it is wrapped: `a)|(?:b` would otherwise
        // close the anchoring group and match any name starting with `a` or ending with `b`.
        regex_syntax::Parser::new()
            .parse(pattern)
            .map_err(|e| invalid(&e))?;
        // Anchoring here, not by the caller, gives Java's full-match semantics to patterns like
        // `orders-.*` that would otherwise match `old-orders-1` too.
        regex::Regex::new(&format!("^(?:{pattern})$"))
            .map(Subscription::Pattern)
            .map_err(|e| invalid(&e))
    }

    /// True when the subscription covers `topic` (a listed topic, or a match).
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Subscription::Topics(t) => t.iter().any(|x| x == topic),
            Subscription::Matching(pred) => pred(topic),
            Subscription::Pattern(re) => re.is_match(topic),
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subscription::Topics(t) => f.debug_tuple("Topics").field(t).finish(),
            Subscription::Matching(_) => f.write_str("Matching(..)"),
            Subscription::Pattern(re) => f.debug_tuple("Pattern").field(&re.as_str()).finish(),
        }
    }
}

/// Group consumer settings, named after (and defaulting like) Java's consumer.
#[derive(Clone)]
pub struct GroupConfig {
    /// `group.id`.
    pub group_id: String,
    /// `group.instance.id`: static membership (JoinGroup v5+). Static members do not send
    /// LeaveGroup on close, so a quick restart keeps the assignment without a rebalance.
    pub group_instance_id: Option<String>,
    /// `session.timeout.ms` (45 s).
    pub session_timeout: Duration,
    /// `max.poll.interval.ms` (5 min), sent as the rebalance timeout: how long the coordinator
    /// waits for members to rejoin. A member whose application does not poll for this long
    /// leaves the group (its partitions are reported lost) and rejoins on its next poll.
    pub rebalance_timeout: Duration,
    /// `heartbeat.interval.ms` (3 s).
    pub heartbeat_interval: Duration,
    /// `enable.auto.commit` (true): commit consumed positions every `auto_commit_interval`,
    /// on revocation and on close.
    pub auto_commit: bool,
    /// `auto.commit.interval.ms` (5 s).
    pub auto_commit_interval: Duration,
    /// `partition.assignment.strategy`: in order of preference. Default
    /// `[range, cooperative-sticky]` like Java 3+: rebalancing is eager unless every assignor
    /// listed supports the cooperative protocol (e.g. `[cooperative-sticky]` alone).
    pub assignors: Vec<Arc<dyn Assignor>>,
    /// Fetch settings; its `auto_offset_reset` applies to partitions without a committed offset.
    pub consumer: ConsumerConfig,
    /// Called on every assignment change.
    pub on_rebalance: Option<RebalanceListener>,
}

impl fmt::Debug for GroupConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupConfig")
            .field("group_id", &self.group_id)
            .field("group_instance_id", &self.group_instance_id)
            .field("session_timeout", &self.session_timeout)
            .field("rebalance_timeout", &self.rebalance_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("auto_commit", &self.auto_commit)
            .field("auto_commit_interval", &self.auto_commit_interval)
            .field("assignors", &self.assignors)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl GroupConfig {
    /// Defaults for group `group_id`.
    pub fn new(group_id: impl Into<String>) -> Self {
        GroupConfig {
            group_id: group_id.into(),
            group_instance_id: None,
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            assignors: vec![Arc::new(RangeAssignor), Arc::new(CooperativeStickyAssignor)],
            consumer: ConsumerConfig::default(),
            on_rebalance: None,
        }
    }

    /// Sets `auto.offset.reset`.
    pub fn auto_offset_reset(mut self, reset: AutoOffsetReset) -> Self {
        self.consumer.auto_offset_reset = reset;
        self
    }

    /// Sets the rebalance listener.
    pub fn on_rebalance(mut self, f: impl Fn(&RebalanceEvent) + Send + Sync + 'static) -> Self {
        self.on_rebalance = Some(Arc::new(f));
        self
    }

    fn validate(&self) -> Result<()> {
        if self.group_id.is_empty() {
            return Err(Error::Config("group_id is empty".into()));
        }
        if self.assignors.is_empty() {
            return Err(Error::Config("no assignors".into()));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.session_timeout {
            return Err(Error::Config(
                "heartbeat_interval must be positive and below session_timeout".into(),
            ));
        }
        if self.auto_commit && self.auto_commit_interval.is_zero() {
            return Err(Error::Config(
                "auto_commit_interval must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// A cloneable handle on a group consumer's membership: commits, committed offsets,
/// assignment. Usable from any task, also after [`GroupConsumer::streams`].
#[derive(Clone)]
pub struct GroupHandle {
    tx: mpsc::UnboundedSender<Command>,
    shared: Arc<Mutex<Shared>>,
}

impl fmt::Debug for GroupHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupHandle")
            .field("assignment", &self.assignment())
            .finish()
    }
}

impl GroupHandle {
    fn send(&self, cmd: Command) -> Result<()> {
        self.tx
            .send(cmd)
            .map_err(|_| Error::Closed("group consumer"))
    }

    fn check(&self) -> Result<()> {
        match &self.shared.lock().unwrap().fatal {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// The partitions currently assigned to this member (empty while rebalancing).
    pub fn assignment(&self) -> Vec<Tp> {
        self.shared
            .lock()
            .unwrap()
            .assignment
            .iter()
            .cloned()
            .collect()
    }

    /// This member's id and generation (empty and -1 before joining).
    pub fn member(&self) -> (String, i32) {
        let sh = self.shared.lock().unwrap();
        (sh.member_id.clone(), sh.generation)
    }

    /// Commits the positions of every record handed out so far and waits for the answer.
    pub async fn commit_sync(&self) -> Result<()> {
        self.check()?;
        let (reply, rx) = oneshot::channel();
        self.send(Command::Commit {
            offsets: None,
            reply: Some(reply),
        })?;
        rx.await.map_err(|_| Error::Closed("group consumer"))?
    }

    /// Like [`GroupHandle::commit_sync`] without waiting; failures are logged.
    pub fn commit_async(&self) -> Result<()> {
        self.check()?;
        self.send(Command::Commit {
            offsets: None,
            reply: None,
        })
    }

    /// Commits explicit offsets (the next offset to read, with metadata) of assigned
    /// partitions. Fails with [`Error::NotAssigned`] for a partition not assigned now, and with
    /// REBALANCE_IN_PROGRESS when the assignment changes before the commit is sent (the
    /// partitions may belong to another member by then).
    pub async fn commit_offsets_sync(&self, offsets: Vec<(Tp, OffsetAndMetadata)>) -> Result<()> {
        self.check()?;
        let epoch = {
            let sh = self.shared.lock().unwrap();
            if let Some(((t, p), _)) = offsets.iter().find(|(tp, _)| !sh.assignment.contains(tp)) {
                return Err(Error::NotAssigned {
                    topic: t.clone(),
                    partition: *p,
                });
            }
            sh.epoch
        };
        let (reply, rx) = oneshot::channel();
        self.send(Command::Commit {
            offsets: Some((epoch, offsets)),
            reply: Some(reply),
        })?;
        rx.await.map_err(|_| Error::Closed("group consumer"))?
    }

    /// The committed offsets of `partitions` (OffsetFetch); partitions without one are absent.
    pub async fn committed(&self, partitions: Vec<Tp>) -> Result<HashMap<Tp, OffsetAndMetadata>> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Committed { partitions, reply })?;
        rx.await.map_err(|_| Error::Closed("group consumer"))?
    }

    /// Commits (with auto-commit), leaves the group and stops the membership task.
    pub async fn close(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        if self.send(Command::Close(reply)).is_err() {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }
}

/// A member of a consumer group.
pub struct GroupConsumer {
    handle: GroupHandle,
    fetcher: Consumer,
    /// Assignment epoch the fetcher is set up for.
    epoch: u64,
    /// Paused partitions and the position to resume from (`None`: committed/reset).
    paused: HashMap<Tp, Option<i64>>,
    /// The membership task (heartbeats, commits); aborted on drop, like a crashed process.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for GroupConsumer {
    /// Without [`GroupConsumer::close`] the member just stops: no commit, no LeaveGroup; the
    /// coordinator notices after `session.timeout.ms`, as it would a crashed process.
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("assignment", &self.handle.assignment())
            .finish()
    }
}

impl Client {
    /// A group consumer. Nothing happens until [`GroupConsumer::subscribe`].
    pub fn group_consumer(&self, config: GroupConfig) -> Result<GroupConsumer> {
        config.validate()?;
        let shared = Arc::new(Mutex::new(Shared::new()));
        let (tx, rx) = mpsc::unbounded_channel();
        let fetcher = self.consumer(config.consumer.clone());
        let membership = Membership::new(self.clone(), config, shared.clone());
        let task = tokio::spawn(membership.run(rx));
        Ok(GroupConsumer {
            handle: GroupHandle { tx, shared },
            fetcher,
            epoch: 0,
            paused: HashMap::new(),
            task: Some(task),
        })
    }
}

impl GroupConsumer {
    /// A handle for commits and assignment queries from other tasks.
    pub fn handle(&self) -> GroupHandle {
        self.handle.clone()
    }

    /// Subscribes to `topics` (replacing any earlier subscription) and joins the group.
    pub fn subscribe<I, S>(&mut self, topics: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut t: Vec<String> = topics.into_iter().map(Into::into).collect();
        t.sort();
        t.dedup();
        let _ = self
            .handle
            .send(Command::Subscribe(Subscription::Topics(t)));
    }

    /// Subscribes to every topic whose whole name matches the regular expression `pattern`
    /// (see [`Subscription::Pattern`]); topics created later that match are picked up within
    /// `min(metadata_max_age, 30 s)` and trigger a rebalance.
    pub fn subscribe_pattern(&mut self, pattern: &str) -> Result<()> {
        let sub = Subscription::pattern(pattern)?;
        let _ = self.handle.send(Command::Subscribe(sub));
        Ok(())
    }

    /// Subscribes to every topic whose name `matches` accepts (see [`Subscription::Matching`]).
    pub fn subscribe_matching(&mut self, matches: impl Fn(&str) -> bool + Send + Sync + 'static) {
        let _ = self
            .handle
            .send(Command::Subscribe(Subscription::Matching(Arc::new(
                matches,
            ))));
    }

    /// The partitions currently assigned (empty while rebalancing).
    pub fn assignment(&self) -> Vec<Tp> {
        self.handle.assignment()
    }

    /// Brings the fetcher in line with the current assignment; returns the epoch.
    fn sync_assignment(&mut self) -> Result<u64> {
        let (epoch, assignment, start, fatal) = {
            let mut sh = self.handle.shared.lock().unwrap();
            sh.last_poll = Instant::now();
            (
                sh.epoch,
                sh.assignment.clone(),
                sh.start.clone(),
                sh.fatal.clone(),
            )
        };
        if let Some(e) = fatal {
            return Err(e);
        }
        if epoch == self.epoch {
            return Ok(epoch);
        }
        self.epoch = epoch;
        self.paused.retain(|tp, _| assignment.contains(tp));
        // Start over: positions of the old assignment may be past records never handed out.
        self.fetcher.assign(Vec::new());
        let active: Vec<Tp> = assignment
            .iter()
            .filter(|tp| !self.paused.contains_key(*tp))
            .cloned()
            .collect();
        self.fetcher.assign(active.clone());
        for (t, p) in &active {
            if let Some(o) = start.get(&(t.clone(), *p)) {
                self.fetcher.seek(t, *p, Offset::At(*o))?;
            }
        }
        Ok(epoch)
    }

    /// Fetches records without recording them as consumed; tagged with their epoch.
    async fn fetch(&mut self, timeout: Duration) -> Result<(u64, ConsumerRecords)> {
        let deadline = Instant::now() + timeout;
        loop {
            let epoch = self.sync_assignment()?;
            let now = Instant::now();
            // Short slices so a new assignment is noticed promptly.
            let slice = (deadline.saturating_duration_since(now)).min(Duration::from_millis(100));
            let records = if self.fetcher.assignment().is_empty() {
                tokio::time::sleep(slice).await;
                ConsumerRecords::default()
            } else {
                self.fetcher.poll_records(slice).await?
            };
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok((epoch, records));
            }
        }
    }

    /// Waits up to `timeout` for records of the assigned partitions. Their positions count as
    /// consumed (auto-commit commits them).
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        Ok(self.poll_records(timeout).await?.to_vec())
    }

    /// [`GroupConsumer::poll`] for reading the records in place (see [`ConsumerRecords`]).
    pub async fn poll_records(&mut self, timeout: Duration) -> Result<ConsumerRecords> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (epoch, records) = self.fetch(left).await?;
            if !records.is_empty()
                && deliver(
                    &self.handle.shared,
                    epoch,
                    records.iter().map(|r| (r.topic, r.partition, r.offset)),
                )
            {
                return Ok(records);
            }
            if Instant::now() >= deadline {
                return Ok(ConsumerRecords::default());
            }
        }
    }

    /// Records as an endless stream (one-second polls); errors are yielded and the stream
    /// goes on.
    pub fn stream(&mut self) -> impl Stream<Item = Result<ConsumerRecord>> + '_ {
        futures::stream::unfold((self, VecDeque::new()), |(c, mut buf)| async move {
            loop {
                if let Some(r) = buf.pop_front() {
                    return Some((Ok(r), (c, buf)));
                }
                match c.poll(Duration::from_secs(1)).await {
                    Ok(records) => buf.extend(records),
                    Err(e) => return Some((Err(e), (c, buf))),
                }
            }
        })
    }

    /// Commits the positions of every record returned so far; waits for the answer.
    pub async fn commit_sync(&self) -> Result<()> {
        self.handle.commit_sync().await
    }

    /// Commits the positions of every record returned so far without waiting.
    pub fn commit_async(&self) -> Result<()> {
        self.handle.commit_async()
    }

    /// Commits explicit offsets of assigned partitions.
    pub async fn commit_offsets_sync(&self, offsets: Vec<(Tp, OffsetAndMetadata)>) -> Result<()> {
        self.handle.commit_offsets_sync(offsets).await
    }

    /// The committed offset of a partition, if any.
    pub async fn committed(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Option<OffsetAndMetadata>> {
        let tp: Tp = (topic.to_string(), partition);
        Ok(self.handle.committed(vec![tp.clone()]).await?.remove(&tp))
    }

    /// The offset of the next record `poll` returns for an assigned partition.
    pub async fn position(&mut self, topic: &str, partition: i32) -> Result<i64> {
        self.sync_assignment()?;
        let tp: Tp = (topic.to_string(), partition);
        if let Some(p) = self.handle.shared.lock().unwrap().positions.get(&tp) {
            return Ok(*p);
        }
        if let Some(Some(p)) = self.paused.get(&tp) {
            return Ok(*p);
        }
        if self.paused.contains_key(&tp) {
            if let Some(o) = self.handle.shared.lock().unwrap().start.get(&tp) {
                return Ok(*o);
            }
        }
        self.fetcher.position(topic, partition).await
    }

    /// Records of an assigned partition not yet returned: its high watermark as of the last
    /// fetch minus the position. `None` until a fetch of the partition has answered.
    pub async fn lag(&mut self, topic: &str, partition: i32) -> Result<Option<i64>> {
        let position = self.position(topic, partition).await?;
        Ok(self
            .fetcher
            .high_watermark(topic, partition)
            .filter(|hw| *hw >= 0)
            .map(|hw| (hw - position).max(0)))
    }

    /// Moves an assigned partition's position; takes effect on the next poll.
    pub fn seek(&mut self, topic: &str, partition: i32, offset: Offset) -> Result<()> {
        self.sync_assignment()?;
        let tp: Tp = (topic.to_string(), partition);
        if !self.handle.shared.lock().unwrap().assignment.contains(&tp) {
            return Err(Error::NotAssigned {
                topic: topic.to_string(),
                partition,
            });
        }
        let mut sh = self.handle.shared.lock().unwrap();
        match offset {
            Offset::At(o) => {
                sh.positions.insert(tp.clone(), o);
            }
            _ => {
                sh.positions.remove(&tp);
            }
        }
        drop(sh);
        if let Some(slot) = self.paused.get_mut(&tp) {
            if let Offset::At(o) = offset {
                *slot = Some(o);
            }
            return Ok(());
        }
        self.fetcher.seek(topic, partition, offset)
    }

    /// Stops fetching from assigned partitions until [`GroupConsumer::resume`]. Pauses are
    /// dropped when a rebalance takes the partition away.
    pub fn pause(&mut self, partitions: &[Tp]) -> Result<()> {
        self.sync_assignment()?;
        let assignment = self.handle.assignment();
        for tp in partitions {
            if !assignment.contains(tp) {
                return Err(Error::NotAssigned {
                    topic: tp.0.clone(),
                    partition: tp.1,
                });
            }
        }
        for tp in partitions {
            if self.paused.contains_key(tp) {
                continue;
            }
            let pos = self
                .handle
                .shared
                .lock()
                .unwrap()
                .positions
                .get(tp)
                .copied();
            self.paused.insert(tp.clone(), pos);
        }
        let active: Vec<Tp> = self
            .fetcher
            .assignment()
            .into_iter()
            .filter(|tp| !self.paused.contains_key(tp))
            .collect();
        self.fetcher.assign(active);
        Ok(())
    }

    /// Resumes paused partitions.
    pub fn resume(&mut self, partitions: &[Tp]) -> Result<()> {
        self.sync_assignment()?;
        let start = self.handle.shared.lock().unwrap().start.clone();
        let mut active = self.fetcher.assignment();
        let mut seeks = Vec::new();
        for tp in partitions {
            if let Some(pos) = self.paused.remove(tp) {
                active.push(tp.clone());
                if let Some(o) = pos.or_else(|| start.get(tp).copied()) {
                    seeks.push((tp.clone(), o));
                }
            }
        }
        self.fetcher.assign(active);
        for ((t, p), o) in seeks {
            self.fetcher.seek(&t, p, Offset::At(o))?;
        }
        Ok(())
    }

    /// The paused partitions.
    pub fn paused(&self) -> Vec<Tp> {
        let mut v: Vec<Tp> = self.paused.keys().cloned().collect();
        v.sort();
        v
    }

    /// Commits (with auto-commit), leaves the group (dynamic members) and stops.
    pub async fn close(mut self) -> Result<()> {
        let r = self.handle.close().await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        r
    }

    /// Splits consumption into `n` handles: partition `p` of any topic goes to handle
    /// `p % n` (recomputed on every rebalance). Each handle can be driven from its own task
    /// or thread. A background task fetches for all of them; a handle that does not keep up
    /// eventually holds up the others (each buffers up to 4 fetched batches).
    pub fn streams(self, n: usize) -> Vec<GroupStream> {
        let n = n.max(1);
        let mut senders = Vec::with_capacity(n);
        let mut out = Vec::with_capacity(n);
        for index in 0..n {
            let (tx, rx) = mpsc::channel::<Dispatched>(4);
            senders.push(tx);
            out.push(GroupStream {
                index,
                rx,
                handle: self.handle.clone(),
                buf: VecDeque::new(),
            });
        }
        tokio::spawn(dispatch(self, senders));
        out
    }
}

/// Whether records fetched under `epoch` may be handed out: only if that is still the current
/// assignment. If so, records their positions as consumed; if not, they are to be dropped (they
/// are fetched again from the committed offsets). `consumed` is the records' (topic, partition,
/// offset) in fetch order.
fn deliver<'a>(
    shared: &Mutex<Shared>,
    epoch: u64,
    consumed: impl Iterator<Item = (&'a str, i32, i64)>,
) -> bool {
    let mut sh = shared.lock().unwrap();
    if sh.epoch != epoch {
        return false;
    }
    // Records come in runs of one partition, offsets rising: one position per run.
    let mut consumed = consumed.peekable();
    while let Some((topic, partition, offset)) = consumed.next() {
        let run_ends = consumed
            .peek()
            .is_none_or(|&(t, p, _)| p != partition || t != topic);
        if run_ends {
            sh.positions
                .insert((topic.to_string(), partition), offset.saturating_add(1));
        }
    }
    true
}

async fn dispatch(mut consumer: GroupConsumer, senders: Vec<mpsc::Sender<Dispatched>>) {
    let n = senders.len();
    loop {
        if senders.iter().all(|s| s.is_closed()) {
            let _ = consumer.close().await;
            return;
        }
        match consumer.fetch(Duration::from_millis(500)).await {
            Ok((epoch, records)) => {
                let mut parts: Vec<Vec<ConsumerRecord>> = vec![Vec::new(); n];
                for r in &records {
                    let i = (r.partition.max(0) as usize) % n;
                    parts[i].push(r.to_record());
                }
                for (i, batch) in parts.into_iter().enumerate() {
                    if !batch.is_empty() {
                        let _ = senders[i].send(Ok((epoch, batch))).await;
                    }
                }
            }
            Err(e) => {
                let closed = matches!(e, Error::Closed(_));
                for s in &senders {
                    let _ = s.send(Err(e.clone())).await;
                }
                if closed {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One of the handles made by [`GroupConsumer::streams`].
pub struct GroupStream {
    index: usize,
    rx: mpsc::Receiver<Dispatched>,
    handle: GroupHandle,
    buf: VecDeque<ConsumerRecord>,
}

impl fmt::Debug for GroupStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupStream")
            .field("index", &self.index)
            .finish()
    }
}

impl GroupStream {
    /// Which handle this is (0-based).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The group's membership handle (commits, assignment, close).
    pub fn group(&self) -> &GroupHandle {
        &self.handle
    }

    /// The next batch of records for this handle's partitions; `None` once the group consumer
    /// is closed. Positions of returned records count as consumed.
    pub async fn next_batch(&mut self) -> Option<Result<Vec<ConsumerRecord>>> {
        if !self.buf.is_empty() {
            return Some(Ok(self.buf.drain(..).collect()));
        }
        loop {
            match self.rx.recv().await? {
                Ok((epoch, records)) => {
                    let consumed = records.iter().map(|r| (&*r.topic, r.partition, r.offset));
                    if deliver(&self.handle.shared, epoch, consumed) {
                        return Some(Ok(records));
                    }
                }
                Err(Error::Closed(_)) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// The records one at a time, as a `Stream`.
    pub fn stream(&mut self) -> impl Stream<Item = Result<ConsumerRecord>> + '_ {
        futures::stream::unfold(self, |s| async move {
            loop {
                if let Some(r) = s.buf.pop_front() {
                    return Some((Ok(r), s));
                }
                match s.next_batch().await? {
                    Ok(batch) => s.buf.extend(batch),
                    Err(e) => return Some((Err(e), s)),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
