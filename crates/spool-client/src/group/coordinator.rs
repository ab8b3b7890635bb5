//! The membership task: one per group consumer, independent of how often the application polls.
//!
//! ```text
//!  FindCoordinator(key type 0) --> JoinGroup (MEMBER_ID_REQUIRED: again with the given id)
//!        ^                            | leader: decode subscriptions, run the chosen assignor
//!        |                            v
//!  NOT_COORDINATOR,            SyncGroup --> OffsetFetch for the assignment --> Stable
//!  COORDINATOR_NOT_AVAILABLE,                                                     |
//!  lost connection          <--  Heartbeat every heartbeat_interval, auto-commit, commands
//!                                 REBALANCE_IN_PROGRESS: commit, revoke, rejoin
//!                                 ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID / FENCED: lose, rejoin
//! ```
//!
//! The task owns the coordinator connection (its own pool: a JoinGroup parked for a whole
//! rebalance must not hold back anyone else's requests). The application side and the task share
//! [`Shared`]: the assignment with an epoch bumped on every change, and the positions of records
//! already handed to the application. Records are handed out only under that lock and only for
//! the current epoch, so what is committed on revocation is exactly what was delivered.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::{mpsc, oneshot};

use super::assignor::{self, MemberSubscription, PreviousAssignment};
use super::{GroupConfig, OffsetAndMetadata, RebalanceEvent, Subscription, Tp};
use crate::cluster::{Client, ConnectionPool};
use crate::connection::Connection;
use crate::error::{Error, Result};

/// State shared between the application side and the membership task.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Bumped on every assignment change (revocation or new assignment).
    pub epoch: u64,
    /// Partitions currently owned; empty while rebalancing.
    pub assignment: BTreeSet<Tp>,
    /// Committed offsets found for the assignment (partitions absent: `auto_offset_reset`).
    pub start: HashMap<Tp, i64>,
    /// Next offset after the last record handed to the application, per owned partition.
    pub positions: HashMap<Tp, i64>,
    /// A fatal error (or closed): every later call fails with it.
    pub fatal: Option<Error>,
    /// Member id (empty before the first join).
    pub member_id: String,
    /// Generation of the current assignment (-1 when none).
    pub generation: i32,
    /// When the application last polled (`max.poll.interval.ms` is measured from here).
    pub last_poll: Instant,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared {
            epoch: 0,
            assignment: BTreeSet::new(),
            start: HashMap::new(),
            positions: HashMap::new(),
            fatal: None,
            member_id: String::new(),
            generation: -1,
            last_poll: Instant::now(),
        }
    }
}

/// Requests from the application side.
pub(crate) enum Command {
    /// Commit `offsets` (captured at assignment epoch `.0`), or every consumed position when
    /// `None`.
    Commit {
        offsets: Option<(u64, Vec<(Tp, OffsetAndMetadata)>)>,
        reply: Option<oneshot::Sender<Result<()>>>,
    },
    /// Look up committed offsets.
    Committed {
        partitions: Vec<Tp>,
        reply: oneshot::Sender<Result<HashMap<Tp, OffsetAndMetadata>>>,
    },
    /// Change the subscription (rejoins).
    Subscribe(Subscription),
    /// Commit (with auto-commit), leave the group, stop.
    Close(oneshot::Sender<Result<()>>),
}

fn gid(s: &str) -> GroupId {
    GroupId(StrBytes::from_string(s.to_string()))
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn coordinator_error(e: &Error) -> bool {
    matches!(
        e,
        Error::Connect { .. } | Error::Disconnected { .. } | Error::Timeout { .. }
    ) || e.is(ResponseError::NotCoordinator)
        || e.is(ResponseError::CoordinatorNotAvailable)
}

/// The highest version of `api` both sides support, capped at `max` (e.g. before topic ids).
fn version(conn: &Connection, api: ApiKey, max: i16) -> Result<i16> {
    let v = conn.version(api)?;
    let (bmin, _) = conn.versions().broker_range(api).unwrap_or((0, 0));
    let v = v.min(max);
    if v < bmin {
        return Err(Error::UnsupportedVersion {
            api,
            addr: conn.addr().to_string(),
            broker: conn.versions().broker_range(api),
        });
    }
    Ok(v)
}

enum JoinOutcome {
    Joined,
    /// Try again at once (new member id, rebalance still going).
    Retry,
    /// Back off, then retry.
    Backoff(Error),
}

pub(crate) struct Membership {
    client: Client,
    config: GroupConfig,
    pool: ConnectionPool,
    coordinator: Option<Arc<Connection>>,
    shared: Arc<Mutex<Shared>>,
    subscription: Subscription,
    /// Topics matched by the subscription at the last join.
    topics: Vec<String>,
    member_id: String,
    generation: i32,
    protocol: Option<String>,
    rejoin: bool,
    /// Cooperative protocol: every configured assignor supports it.
    cooperative: bool,
    /// Cooperative: partitions were revoked after the last sync; rejoin at once.
    follow_up: bool,
    /// Set when the group was left because the application stopped polling; the member rejoins
    /// once it polls again.
    poll_expired_at: Option<Instant>,
    /// The last assignment received and its generation (Java's assignors keep it from
    /// `onAssignment`); kept after partitions are revoked, for `sticky`'s user data.
    last_assigned: Option<(i32, Vec<Tp>)>,
    /// Leader only: partition counts the assignment was computed from.
    assigned_from: Option<BTreeMap<String, i32>>,
    last_committed: HashMap<Tp, i64>,
    retry_at: Option<Instant>,
    attempt: u32,
    next_heartbeat: Instant,
    next_commit: Instant,
    next_metadata_check: Instant,
}

impl Membership {
    pub(crate) fn new(client: Client, config: GroupConfig, shared: Arc<Mutex<Shared>>) -> Self {
        let now = Instant::now();
        let next_commit = now + config.auto_commit_interval;
        let cooperative = config.assignors.iter().all(|a| a.supports_cooperative());
        Membership {
            client,
            config,
            pool: ConnectionPool::default(),
            coordinator: None,
            shared,
            subscription: Subscription::Topics(Vec::new()),
            topics: Vec::new(),
            member_id: String::new(),
            generation: -1,
            protocol: None,
            rejoin: false,
            cooperative,
            follow_up: false,
            poll_expired_at: None,
            assigned_from: None,
            last_assigned: None,
            last_committed: HashMap::new(),
            retry_at: None,
            attempt: 0,
            next_heartbeat: now,
            next_commit,
            next_metadata_check: now,
        }
    }

    fn backoff(&mut self) {
        self.attempt += 1;
        self.retry_at = Some(Instant::now() + self.client.config().backoff(self.attempt));
    }

    fn fail(&mut self, e: Error) {
        tracing::error!(group = %self.config.group_id, error = %e, "group consumer failed");
        let mut sh = self.shared.lock().unwrap();
        sh.fatal.get_or_insert(e);
    }

    fn emit(&self, event: RebalanceEvent) {
        if let Some(listener) = &self.config.on_rebalance {
            listener(&event);
        }
    }

    fn is_fatal(&self) -> bool {
        self.shared.lock().unwrap().fatal.is_some()
    }

    /// The task's main loop.
    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        loop {
            let wake = self.next_wake();
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else {
                        // Dropped without close(): leave like close() would.
                        let _ = self.shutdown().await;
                        return;
                    };
                    if let Some(reply) = self.handle(cmd).await {
                        let r = self.shutdown().await;
                        let _ = reply.send(r);
                        return;
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            if self.is_fatal() {
                continue;
            }
            if self.retry_at.is_some_and(|t| Instant::now() < t) {
                continue;
            }
            self.retry_at = None;
            if self.coordinator.is_none() {
                if let Err(e) = self.find_coordinator().await {
                    tracing::debug!(group = %self.config.group_id, error = %e, "coordinator lookup failed");
                    if e.is_retriable() || coordinator_error(&e) {
                        self.backoff();
                    } else {
                        self.fail(e);
                    }
                    continue;
                }
            }
            if let Some(at) = self.poll_expired_at {
                if self.shared.lock().unwrap().last_poll > at {
                    tracing::info!(group = %self.config.group_id, "polling again; rejoining");
                    self.poll_expired_at = None;
                }
            }
            if self.wants_join() {
                // Commands arriving while the JoinGroup is parked wait, except close().
                let mut deferred = Vec::new();
                let mut close = None;
                {
                    let join = self.join_and_sync();
                    tokio::pin!(join);
                    loop {
                        tokio::select! {
                            _ = &mut join => break,
                            cmd = rx.recv() => match cmd {
                                Some(Command::Close(reply)) => { close = Some(Some(reply)); break; }
                                None => { close = Some(None); break; }
                                Some(other) => deferred.push(other),
                            }
                        }
                    }
                }
                if let Some(reply) = close {
                    let r = self.shutdown().await;
                    if let Some(reply) = reply {
                        let _ = reply.send(r);
                    }
                    return;
                }
                for cmd in deferred {
                    if let Some(reply) = self.handle(cmd).await {
                        let r = self.shutdown().await;
                        let _ = reply.send(r);
                        return;
                    }
                }
                continue;
            }
            let now = Instant::now();
            if self.generation >= 0 && now >= self.next_heartbeat {
                let idle = self.shared.lock().unwrap().last_poll.elapsed();
                if idle > self.config.rebalance_timeout {
                    self.poll_timeout(idle).await;
                    continue;
                }
                self.heartbeat().await;
            }
            if self.config.auto_commit && self.generation >= 0 && now >= self.next_commit {
                self.next_commit = now + self.config.auto_commit_interval;
                if let Err(e) = self.commit_positions().await {
                    tracing::warn!(group = %self.config.group_id, error = %e, "auto-commit failed");
                }
            }
            if now >= self.next_metadata_check {
                self.next_metadata_check = now
                    + self
                        .client
                        .config()
                        .metadata_max_age
                        .min(Duration::from_secs(30));
                self.check_metadata().await;
            }
        }
    }

    fn wants_join(&self) -> bool {
        self.rejoin && self.subscription_nonempty() && self.poll_expired_at.is_none()
    }

    /// `max.poll.interval.ms` exceeded: like Java, give the partitions up (lost: the
    /// application may still be processing them), leave the group (dynamic members) and rejoin
    /// only when the application polls again.
    async fn poll_timeout(&mut self, idle: Duration) {
        tracing::warn!(
            group = %self.config.group_id,
            ?idle,
            "no poll within max.poll.interval (rebalance_timeout); leaving the group"
        );
        self.lose();
        if self.config.group_instance_id.is_none() {
            if let Err(e) = self.leave().await {
                tracing::debug!(group = %self.config.group_id, error = %e, "leave group failed");
            }
            self.member_id.clear();
        }
        self.generation = -1;
        self.rejoin = true;
        self.poll_expired_at = Some(Instant::now());
    }

    fn subscription_nonempty(&self) -> bool {
        match &self.subscription {
            Subscription::Topics(t) => !t.is_empty(),
            Subscription::Matching(_) | Subscription::Pattern(_) => true,
        }
    }

    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        if let Some(t) = self.retry_at {
            return t;
        }
        if self.is_fatal() {
            return now + Duration::from_secs(3600);
        }
        if self.poll_expired_at.is_some() {
            return now + Duration::from_millis(100);
        }
        if self.coordinator.is_none() || self.wants_join() {
            return now;
        }
        let mut wake = self.next_metadata_check;
        if self.generation >= 0 {
            wake = wake.min(self.next_heartbeat);
            if self.config.auto_commit {
                wake = wake.min(self.next_commit);
            }
        }
        wake
    }

    /// Handles a command; returns the reply channel when it is a close.
    async fn handle(&mut self, cmd: Command) -> Option<oneshot::Sender<Result<()>>> {
        match cmd {
            Command::Close(reply) => return Some(reply),
            Command::Subscribe(sub) => {
                self.subscription = sub;
                self.rejoin = true;
                self.next_metadata_check = Instant::now();
            }
            Command::Commit { offsets, reply } => {
                let r = match offsets {
                    None => self.commit_positions().await,
                    Some((epoch, offsets)) => {
                        let current = self.shared.lock().unwrap().epoch;
                        if epoch != current {
                            Err(Error::Kafka {
                                error: ResponseError::RebalanceInProgress,
                                message: Some(
                                    "the group rebalanced since these offsets were read".into(),
                                ),
                                context: "commit".into(),
                            })
                        } else {
                            self.commit(offsets).await
                        }
                    }
                };
                match reply {
                    Some(reply) => {
                        let _ = reply.send(r);
                    }
                    None => {
                        if let Err(e) = r {
                            tracing::warn!(group = %self.config.group_id, error = %e, "async commit failed");
                        }
                    }
                }
            }
            Command::Committed { partitions, reply } => {
                let r = self.fetch_offsets(&partitions).await;
                let _ = reply.send(r);
            }
        }
        None
    }

    async fn coordinator(&mut self) -> Result<Arc<Connection>> {
        if let Some(c) = &self.coordinator {
            if !c.is_poisoned() {
                return Ok(c.clone());
            }
        }
        self.find_coordinator().await?;
        self.coordinator
            .clone()
            .ok_or_else(|| Error::from_code(15, None, "coordinator").expect("nonzero"))
    }

    fn coordinator_lost(&mut self) {
        if self.coordinator.take().is_some() {
            tracing::info!(group = %self.config.group_id, "coordinator lost; rediscovering");
        }
    }

    async fn find_coordinator(&mut self) -> Result<()> {
        let conn = self.client.any_broker().await?;
        let v = version(&conn, ApiKey::FindCoordinator, 6)?;
        let group = &self.config.group_id;
        let mut req = FindCoordinatorRequest::default();
        if v >= 4 {
            req = req.with_coordinator_keys(vec![sb(group)]);
        } else {
            req = req.with_key(sb(group));
        }
        let resp = conn.send_at(&req, v).await?;
        let (code, msg, node) = if v >= 4 {
            let c = resp.coordinators.into_iter().next().ok_or_else(|| {
                Error::protocol("FindCoordinator response", "no coordinator entry")
            })?;
            (c.error_code, c.error_message, c.node_id.0)
        } else {
            (resp.error_code, resp.error_message, resp.node_id.0)
        };
        if let Some(e) = Error::from_code(
            code,
            msg.map(|m| m.to_string()),
            format!("find coordinator for group {group}"),
        ) {
            return Err(e);
        }
        let conn = self.pool.broker(&self.client, node).await?;
        tracing::debug!(group = %group, node, addr = conn.addr(), "found coordinator");
        self.coordinator = Some(conn);
        self.attempt = 0;
        Ok(())
    }

    /// Topics the subscription currently matches.
    async fn resolve_topics(&mut self) -> Vec<String> {
        match &self.subscription {
            Subscription::Topics(t) => t.clone(),
            Subscription::Matching(_) | Subscription::Pattern(_) => {
                let sub = self.subscription.clone();
                match self.client.refresh_all().await {
                    Ok(md) => {
                        let mut v: Vec<String> = md
                            .topics
                            .values()
                            .filter(|t| !t.internal && sub.matches(&t.name))
                            .map(|t| t.name.clone())
                            .collect();
                        v.sort();
                        v
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "topic listing failed");
                        self.topics.clone()
                    }
                }
            }
        }
    }

    /// Partition counts of `topics` (0 for topics that do not exist yet).
    async fn partition_counts(&self, topics: &BTreeSet<String>) -> BTreeMap<String, i32> {
        let mut out = BTreeMap::new();
        for t in topics {
            let n = match self.client.topic(t).await {
                Ok(info) => info.partition_count(),
                Err(_) => 0,
            };
            out.insert(t.clone(), n);
        }
        out
    }

    /// Periodic check: a pattern matching new topics, or (leader) partition counts changing,
    /// means a rebalance, as in Java.
    async fn check_metadata(&mut self) {
        if self.generation < 0 || self.rejoin {
            return;
        }
        if matches!(
            self.subscription,
            Subscription::Matching(_) | Subscription::Pattern(_)
        ) {
            let topics = self.resolve_topics().await;
            if topics != self.topics {
                tracing::info!(group = %self.config.group_id, ?topics, "subscribed topics changed; rejoining");
                self.prepare_rebalance().await;
                self.rejoin = true;
                return;
            }
        }
        if let Some(before) = self.assigned_from.clone() {
            for t in before.keys() {
                self.client.invalidate(t);
            }
            let now = self
                .partition_counts(&before.keys().cloned().collect())
                .await;
            if now != before {
                tracing::info!(group = %self.config.group_id, "partition counts changed; rebalancing");
                self.prepare_rebalance().await;
                self.rejoin = true;
            }
        }
    }

    /// Drops the assignment: bumps the epoch (no record of it is handed out after this), commits
    /// what was consumed when `commit` and auto-commit are on, and tells the listener.
    async fn revoke(&mut self, commit: bool) {
        if !commit {
            self.lose();
            return;
        }
        let (revoked, positions) = {
            let mut sh = self.shared.lock().unwrap();
            if sh.assignment.is_empty() {
                return;
            }
            sh.epoch += 1;
            sh.start.clear();
            let revoked: Vec<Tp> = std::mem::take(&mut sh.assignment).into_iter().collect();
            (revoked, std::mem::take(&mut sh.positions))
        };
        if commit && self.config.auto_commit {
            let offsets = self.changed(&positions);
            if !offsets.is_empty() {
                if let Err(e) = self.commit(offsets).await {
                    tracing::warn!(group = %self.config.group_id, error = %e, "commit on revocation failed");
                }
            }
        }
        self.emit(RebalanceEvent::Revoked(revoked));
    }

    fn changed(&self, positions: &HashMap<Tp, i64>) -> Vec<(Tp, OffsetAndMetadata)> {
        let mut v: Vec<(Tp, OffsetAndMetadata)> = positions
            .iter()
            .filter(|(tp, o)| self.last_committed.get(*tp) != Some(*o))
            .map(|(tp, o)| (tp.clone(), OffsetAndMetadata::new(*o)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Commits the consumed positions of the current assignment that changed since last time.
    async fn commit_positions(&mut self) -> Result<()> {
        let positions = self.shared.lock().unwrap().positions.clone();
        let offsets = self.changed(&positions);
        if offsets.is_empty() {
            return Ok(());
        }
        self.commit(offsets).await
    }

    /// Drops the assignment without committing (the membership is gone).
    fn lose(&mut self) {
        let lost = {
            let mut sh = self.shared.lock().unwrap();
            if sh.assignment.is_empty() {
                return;
            }
            sh.epoch += 1;
            sh.start.clear();
            sh.positions.clear();
            std::mem::take(&mut sh.assignment)
        };
        self.emit(RebalanceEvent::Lost(lost.into_iter().collect()));
    }

    /// Handles errors meaning this member was fenced; true when `e` was one.
    fn fenced(&mut self, e: &Error) -> bool {
        if e.is(ResponseError::UnknownMemberId) {
            self.member_id.clear();
        } else if !e.is(ResponseError::IllegalGeneration) && !e.is(ResponseError::FencedInstanceId)
        {
            return false;
        }
        self.generation = -1;
        self.lose();
        if e.is(ResponseError::FencedInstanceId) {
            self.fail(e.clone());
        } else {
            self.rejoin = true;
        }
        true
    }

    /// Handles an error that means the membership is gone or must be redone.
    async fn membership_error(&mut self, e: &Error) {
        if self.fenced(e) {
            return;
        }
        if e.is(ResponseError::RebalanceInProgress) {
            self.prepare_rebalance().await;
            self.rejoin = true;
        } else if coordinator_error(e) {
            self.coordinator_lost();
        }
    }

    async fn heartbeat(&mut self) {
        self.next_heartbeat = Instant::now() + self.config.heartbeat_interval;
        let r = async {
            let conn = self.coordinator().await?;
            let v = version(&conn, ApiKey::Heartbeat, 4)?;
            let mut req = HeartbeatRequest::default()
                .with_group_id(gid(&self.config.group_id))
                .with_generation_id(self.generation)
                .with_member_id(sb(&self.member_id));
            if v >= 3 {
                req = req.with_group_instance_id(self.config.group_instance_id.as_deref().map(sb));
            }
            let resp = conn.send_at(&req, v).await?;
            match Error::from_code(resp.error_code, None, "heartbeat") {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }
        .await;
        if let Err(e) = r {
            tracing::debug!(group = %self.config.group_id, error = %e, "heartbeat");
            if coordinator_error(&e) {
                self.coordinator_lost();
                self.next_heartbeat = Instant::now() + self.client.config().retry_backoff;
            } else if e.is_retriable() && !e.is(ResponseError::RebalanceInProgress) {
                self.next_heartbeat = Instant::now() + self.client.config().retry_backoff;
            } else {
                self.membership_error(&e).await;
            }
        }
    }

    /// Before (re)joining: eager members commit and revoke everything (Java's `onJoinPrepare`);
    /// cooperative ones commit and keep consuming.
    async fn prepare_rebalance(&mut self) {
        if !self.cooperative {
            self.revoke(true).await;
        } else if self.config.auto_commit && self.generation >= 0 {
            if let Err(e) = self.commit_positions().await {
                tracing::warn!(group = %self.config.group_id, error = %e, "commit before rebalance failed");
            }
        }
    }

    /// Cooperative: gives up some partitions, committing what was consumed of them.
    async fn revoke_some(&mut self, partitions: &BTreeSet<Tp>) {
        if partitions.is_empty() {
            return;
        }
        let positions = {
            let mut sh = self.shared.lock().unwrap();
            sh.epoch += 1;
            sh.assignment.retain(|tp| !partitions.contains(tp));
            rebase(&mut sh);
            sh.start.retain(|tp, _| !partitions.contains(tp));
            let mut removed = HashMap::new();
            for tp in partitions {
                if let Some(p) = sh.positions.remove(tp) {
                    removed.insert(tp.clone(), p);
                }
            }
            removed
        };
        if self.config.auto_commit {
            let offsets = self.changed(&positions);
            if let Err(e) = self.commit(offsets).await {
                tracing::warn!(group = %self.config.group_id, error = %e, "commit on revocation failed");
            }
        }
        self.emit(RebalanceEvent::Revoked(
            partitions.iter().cloned().collect(),
        ));
    }

    async fn join_and_sync(&mut self) {
        self.prepare_rebalance().await;
        match self.join_once().await {
            Ok(JoinOutcome::Joined) => {
                self.rejoin = std::mem::take(&mut self.follow_up);
                self.attempt = 0;
            }
            Ok(JoinOutcome::Retry) => {}
            Ok(JoinOutcome::Backoff(e)) | Err(e) => {
                tracing::info!(group = %self.config.group_id, error = %e, "join failed; retrying");
                if coordinator_error(&e) {
                    self.coordinator_lost();
                }
                if e.is_retriable()
                    || coordinator_error(&e)
                    || e.kafka_code().is_some_and(retry_join)
                {
                    self.backoff();
                } else {
                    self.fail(e);
                }
            }
        }
    }

    async fn join_once(&mut self) -> Result<JoinOutcome> {
        let conn = self.coordinator().await?;
        self.topics = self.resolve_topics().await;
        let mut topics = self.topics.clone();
        topics.sort();
        let v = version(&conn, ApiKey::JoinGroup, 9)?;
        if self.config.group_instance_id.is_some() && v < 5 {
            return Err(Error::Config(
                "group_instance_id (static membership) needs JoinGroup v5+".into(),
            ));
        }
        if self.cooperative {
            // Partitions of topics no longer subscribed go now.
            let gone: BTreeSet<Tp> = self
                .shared
                .lock()
                .unwrap()
                .assignment
                .iter()
                .filter(|(t, _)| !topics.contains(t))
                .cloned()
                .collect();
            self.revoke_some(&gone).await;
        }
        let owned: Vec<Tp> = self
            .shared
            .lock()
            .unwrap()
            .assignment
            .iter()
            .cloned()
            .collect();
        let mut protocols = Vec::new();
        for a in &self.config.assignors {
            let meta = assignor::encode_subscription(
                &topics,
                &owned,
                self.generation,
                None,
                a.user_data(self.last_assigned.as_ref().map(|(generation, partitions)| {
                    PreviousAssignment {
                        generation: *generation,
                        partitions,
                    }
                })),
            )?;
            protocols.push(
                JoinGroupRequestProtocol::default()
                    .with_name(sb(a.name()))
                    .with_metadata(meta),
            );
        }
        let mut req = JoinGroupRequest::default()
            .with_group_id(gid(&self.config.group_id))
            .with_session_timeout_ms(ms(self.config.session_timeout))
            .with_member_id(sb(&self.member_id))
            .with_protocol_type(sb("consumer"))
            .with_protocols(protocols);
        if v >= 1 {
            req = req.with_rebalance_timeout_ms(ms(self.config.rebalance_timeout));
        }
        if v >= 5 {
            req = req.with_group_instance_id(self.config.group_instance_id.as_deref().map(sb));
        }
        let timeout = self
            .client
            .config()
            .request_timeout
            .max(self.config.rebalance_timeout + Duration::from_secs(5));
        let resp = conn.send_with_timeout(&req, v, timeout).await?;
        if resp.error_code == ResponseError::MemberIdRequired.code() {
            self.member_id = resp.member_id.to_string();
            return Ok(JoinOutcome::Retry);
        }
        if let Some(e) = Error::from_code(
            resp.error_code,
            None,
            format!("join group {}", self.config.group_id),
        ) {
            if e.is(ResponseError::UnknownMemberId) {
                self.member_id.clear();
                return Ok(JoinOutcome::Retry);
            }
            if e.is(ResponseError::RebalanceInProgress) {
                return Ok(JoinOutcome::Retry);
            }
            return Ok(JoinOutcome::Backoff(e));
        }
        self.member_id = resp.member_id.to_string();
        let generation = resp.generation_id;
        let protocol = resp
            .protocol_name
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let leader = resp.leader.to_string() == self.member_id;
        tracing::info!(group = %self.config.group_id, member = %self.member_id, generation, %protocol, leader, "joined group");
        let assignments = if leader && !resp.skip_assignment {
            let mut members = Vec::new();
            for m in &resp.members {
                let sub = assignor::decode_subscription(
                    &m.member_id,
                    m.group_instance_id.as_deref(),
                    m.metadata.clone(),
                )
                .unwrap_or_else(|e| {
                    // Another client's unreadable subscription: it gets nothing, the group goes on.
                    tracing::warn!(member = %m.member_id, error = %e, "undecodable subscription");
                    MemberSubscription {
                        member_id: m.member_id.to_string(),
                        group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                        generation_id: -1,
                        ..Default::default()
                    }
                });
                members.push(sub);
            }
            self.leader_assign(&protocol, &members).await?
        } else {
            self.assigned_from = None;
            Vec::new()
        };
        // SyncGroup
        let v = version(&conn, ApiKey::SyncGroup, 5)?;
        let mut req = SyncGroupRequest::default()
            .with_group_id(gid(&self.config.group_id))
            .with_generation_id(generation)
            .with_member_id(sb(&self.member_id))
            .with_assignments(assignments);
        if v >= 3 {
            req = req.with_group_instance_id(self.config.group_instance_id.as_deref().map(sb));
        }
        if v >= 5 {
            req = req
                .with_protocol_type(Some(sb("consumer")))
                .with_protocol_name(Some(sb(&protocol)));
        }
        let resp = conn.send_with_timeout(&req, v, timeout).await?;
        if let Some(e) = Error::from_code(
            resp.error_code,
            None,
            format!("sync group {}", self.config.group_id),
        ) {
            if e.is(ResponseError::UnknownMemberId) {
                self.member_id.clear();
                return Ok(JoinOutcome::Retry);
            }
            if e.is(ResponseError::RebalanceInProgress) || e.is(ResponseError::IllegalGeneration) {
                return Ok(JoinOutcome::Retry);
            }
            return Ok(JoinOutcome::Backoff(e));
        }
        let mine = assignor::decode_assignment(resp.assignment)?;
        self.last_assigned = Some((generation, mine.clone()));
        self.generation = generation;
        self.protocol = Some(protocol);
        self.next_heartbeat = Instant::now() + self.config.heartbeat_interval;
        let owned: BTreeSet<Tp> = self.shared.lock().unwrap().assignment.clone();
        let assigned: BTreeSet<Tp> = mine.iter().cloned().collect();
        // Cooperative: give up what was taken away, then rejoin at once so it can move.
        let revoked: BTreeSet<Tp> = owned.difference(&assigned).cloned().collect();
        if !revoked.is_empty() {
            self.revoke_some(&revoked).await;
            self.follow_up = true;
        }
        let added: Vec<Tp> = assigned.difference(&owned).cloned().collect();
        // Where to start: committed offsets.
        let start = match self.fetch_offsets(&added).await {
            Ok(s) => s,
            Err(e) => {
                // Without them we must not consume (we could re-read or skip); join again.
                self.membership_error(&e).await;
                return Ok(JoinOutcome::Backoff(e));
            }
        };
        {
            let mut sh = self.shared.lock().unwrap();
            if !added.is_empty() || owned.is_empty() {
                sh.epoch += 1;
            }
            rebase(&mut sh);
            sh.assignment.extend(added.iter().cloned());
            let assignment = sh.assignment.clone();
            sh.positions.retain(|tp, _| assignment.contains(tp));
            sh.start.retain(|tp, _| assignment.contains(tp));
            self.last_committed.retain(|tp, _| assignment.contains(tp));
            for (tp, o) in start {
                sh.start.insert(tp.clone(), o.offset);
                self.last_committed.insert(tp, o.offset);
            }
            sh.member_id = self.member_id.clone();
            sh.generation = generation;
        }
        self.emit(RebalanceEvent::Assigned(added));
        Ok(JoinOutcome::Joined)
    }

    async fn leader_assign(
        &mut self,
        protocol: &str,
        members: &[MemberSubscription],
    ) -> Result<Vec<SyncGroupRequestAssignment>> {
        let assignor = self
            .config
            .assignors
            .iter()
            .find(|a| a.name() == protocol)
            .cloned()
            .ok_or_else(|| {
                Error::Config(format!("coordinator chose unknown assignor {protocol}"))
            })?;
        let all: BTreeSet<String> = members
            .iter()
            .flat_map(|m| m.topics.iter().cloned())
            .collect();
        let counts = self.partition_counts(&all).await;
        let known: BTreeMap<String, i32> = counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(t, n)| (t.clone(), *n))
            .collect();
        let result = assignor.assign(&known, members);
        tracing::debug!(group = %self.config.group_id, ?result, "leader computed assignment");
        self.assigned_from = Some(counts);
        let mut out = Vec::new();
        for m in members {
            let parts = result.get(&m.member_id).cloned().unwrap_or_default();
            out.push(
                SyncGroupRequestAssignment::default()
                    .with_member_id(sb(&m.member_id))
                    .with_assignment(assignor::encode_assignment(&parts)?),
            );
        }
        Ok(out)
    }

    /// OffsetCommit, retried on coordinator moves; other errors are returned (and acted on).
    pub(crate) async fn commit(&mut self, offsets: Vec<(Tp, OffsetAndMetadata)>) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        if self.generation < 0 {
            return Err(Error::Kafka {
                error: ResponseError::RebalanceInProgress,
                message: Some("not a member of a stable group".into()),
                context: "commit".into(),
            });
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = self.commit_once(&offsets).await;
            match r {
                Ok(()) => {
                    for (tp, o) in &offsets {
                        self.last_committed.insert(tp.clone(), o.offset);
                    }
                    return Ok(());
                }
                Err(e)
                    if attempt < 4
                        && (coordinator_error(&e)
                            || (e.is_retriable() && !e.is(ResponseError::RebalanceInProgress))) =>
                {
                    if coordinator_error(&e) {
                        self.coordinator_lost();
                    }
                    tokio::time::sleep(self.client.config().backoff(attempt)).await;
                }
                Err(e) => {
                    if self.fenced(&e) {
                    } else if e.is(ResponseError::RebalanceInProgress) {
                        self.rejoin = true;
                    }
                    return Err(e);
                }
            }
        }
    }

    async fn commit_once(&mut self, offsets: &[(Tp, OffsetAndMetadata)]) -> Result<()> {
        let conn = self.coordinator().await?;
        let v = version(&conn, ApiKey::OffsetCommit, 9)?;
        let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for ((t, p), o) in offsets {
            let mut part = OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(o.offset)
                .with_committed_metadata(Some(sb(&o.metadata)));
            if v >= 6 {
                part = part.with_committed_leader_epoch(-1);
            }
            by_topic.entry(t.as_str()).or_default().push(part);
        }
        let mut req = OffsetCommitRequest::default()
            .with_group_id(gid(&self.config.group_id))
            .with_generation_id_or_member_epoch(self.generation)
            .with_member_id(sb(&self.member_id))
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, parts)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(sb(t)))
                            .with_partitions(parts)
                    })
                    .collect(),
            );
        if v >= 7 {
            req = req.with_group_instance_id(self.config.group_instance_id.as_deref().map(sb));
        }
        let resp = conn.send_at(&req, v).await?;
        let mut first = None;
        for t in resp.topics {
            for p in t.partitions {
                if let Some(e) = Error::from_code(
                    p.error_code,
                    None,
                    format!("commit {}-{}", t.name.0, p.partition_index),
                ) {
                    first.get_or_insert(e);
                }
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// OffsetFetch: committed offsets of `partitions` (absent when none is committed).
    pub(crate) async fn fetch_offsets(
        &mut self,
        partitions: &[Tp],
    ) -> Result<HashMap<Tp, OffsetAndMetadata>> {
        if partitions.is_empty() {
            return Ok(HashMap::new());
        }
        let deadline = Instant::now() + self.client.config().request_timeout;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.fetch_offsets_once(partitions).await {
                Ok(r) => return Ok(r),
                Err(e)
                    if Instant::now() < deadline && (coordinator_error(&e) || e.is_retriable()) =>
                {
                    if coordinator_error(&e) {
                        self.coordinator_lost();
                    }
                    tokio::time::sleep(self.client.config().backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn fetch_offsets_once(
        &mut self,
        partitions: &[Tp],
    ) -> Result<HashMap<Tp, OffsetAndMetadata>> {
        let conn = self.coordinator().await?;
        let v = version(&conn, ApiKey::OffsetFetch, 9)?;
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in partitions {
            by_topic.entry(t.as_str()).or_default().push(*p);
        }
        let group = gid(&self.config.group_id);
        let req = if v >= 8 {
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(group)
                .with_topics(Some(
                    by_topic
                        .iter()
                        .map(|(t, ps)| {
                            OffsetFetchRequestTopics::default()
                                .with_name(TopicName(sb(t)))
                                .with_partition_indexes(ps.clone())
                        })
                        .collect(),
                ))])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(group)
                .with_topics(Some(
                    by_topic
                        .iter()
                        .map(|(t, ps)| {
                            OffsetFetchRequestTopic::default()
                                .with_name(TopicName(sb(t)))
                                .with_partition_indexes(ps.clone())
                        })
                        .collect(),
                ))
        };
        let resp = conn.send_at(&req, v).await?;
        let mut out = HashMap::new();
        let rows = crate::admin_groups::offset_fetch_rows(resp, v, "fetch committed offsets")?;
        for (t, p, offset, meta, code) in rows {
            if let Some(e) = Error::from_code(code, None, format!("committed offset of {t}-{p}")) {
                return Err(e);
            }
            if offset >= 0 {
                out.insert(
                    (t, p),
                    OffsetAndMetadata {
                        offset,
                        metadata: meta.map(|m| m.to_string()).unwrap_or_default(),
                    },
                );
            }
        }
        Ok(out)
    }

    /// close(): commit (auto-commit), revoke, LeaveGroup (dynamic members only, like Java).
    async fn shutdown(&mut self) -> Result<()> {
        let mut result = Ok(());
        if self.generation >= 0 {
            if self.config.auto_commit {
                result = self.commit_positions().await;
            }
            self.revoke(true).await;
        }
        if !self.member_id.is_empty() && self.config.group_instance_id.is_none() {
            if let Err(e) = self.leave().await {
                tracing::debug!(group = %self.config.group_id, error = %e, "leave group failed");
            }
        }
        {
            let mut sh = self.shared.lock().unwrap();
            sh.fatal.get_or_insert(Error::Closed("group consumer"));
            sh.epoch += 1;
            sh.assignment.clear();
        }
        self.member_id.clear();
        self.generation = -1;
        result
    }

    async fn leave(&mut self) -> Result<()> {
        let conn = match &self.coordinator {
            Some(c) if !c.is_poisoned() => c.clone(),
            _ => self.coordinator().await?,
        };
        let v = version(&conn, ApiKey::LeaveGroup, 5)?;
        let mut req = LeaveGroupRequest::default().with_group_id(gid(&self.config.group_id));
        if v >= 3 {
            req = req.with_members(vec![MemberIdentity::default()
                .with_member_id(sb(&self.member_id))
                .with_group_instance_id(self.config.group_instance_id.as_deref().map(sb))]);
        } else {
            req = req.with_member_id(sb(&self.member_id));
        }
        let resp = conn.send_at(&req, v).await?;
        tracing::info!(group = %self.config.group_id, member = %self.member_id, "left group");
        match Error::from_code(resp.error_code, None, "leave group") {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// JoinGroup/SyncGroup errors worth retrying after a pause.
fn retry_join(code: i16) -> bool {
    matches!(
        ResponseError::try_from_code(code),
        Some(
            ResponseError::CoordinatorLoadInProgress
                | ResponseError::CoordinatorNotAvailable
                | ResponseError::NotCoordinator
                | ResponseError::IllegalGeneration
                | ResponseError::UnstableOffsetCommit
        )
    )
}

fn ms(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}

/// Kept partitions resume where the application got to when the fetcher is reset.
fn rebase(sh: &mut Shared) {
    let positions: Vec<(Tp, i64)> = sh
        .positions
        .iter()
        .filter(|(tp, _)| sh.assignment.contains(*tp))
        .map(|(tp, p)| (tp.clone(), *p))
        .collect();
    for (tp, p) in positions {
        sh.start.insert(tp, p);
    }
}
