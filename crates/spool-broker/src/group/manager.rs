//! The async shell around the coordinator state machines: one `Group` per group id, the
//! connections parked on JoinGroup/SyncGroup, the timer, and the offset store.
//!
//! Locks are std mutexes held only while a state machine runs; waiting for a delayed answer
//! happens on a oneshot receiver after the lock is released.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use tokio::sync::oneshot;

use super::consumer_group::{
    CgHeartbeat, CgResponse, ConsumerGroup, ConsumerGroupConfig, TopicSource,
};
use super::offsets::OffsetStore;
use super::{
    Action, ErrorCode, Group, GroupConfig, GroupState, JoinRequest, JoinResponse, RequestId,
    SyncRequest, SyncResponse,
};

/// How often timers (session expiry, rebalance timeouts) are checked.
pub(crate) const TICK: Duration = Duration::from_millis(100);

enum Answer {
    Join(JoinResponse),
    Sync(SyncResponse),
}

struct Entry {
    group: Group,
    waiting: HashMap<RequestId, oneshot::Sender<Answer>>,
}

impl Entry {
    fn deliver(&mut self, actions: Vec<Action>) {
        for action in actions {
            let (id, answer) = match action {
                Action::Join {
                    request_id,
                    response,
                } => (request_id, Answer::Join(response)),
                Action::Sync {
                    request_id,
                    response,
                } => (request_id, Answer::Sync(response)),
            };
            if let Some(tx) = self.waiting.remove(&id) {
                // The connection may have gone away meanwhile; nothing to do then.
                let _ = tx.send(answer);
            }
        }
    }
}

/// All groups this broker coordinates (it coordinates every group: it is the only broker).
pub(crate) struct GroupManager {
    config: GroupConfig,
    groups: Mutex<HashMap<String, Entry>>,
    /// KIP-848 consumer groups. Lock order: `groups`, then `consumer`.
    consumer: Mutex<HashMap<String, ConsumerGroup>>,
    next_request: AtomicU64,
    salt: u64,
    /// The broker's shutdown: parked JoinGroup/SyncGroup answers give up on it, so a
    /// rebalance in progress cannot hold a shutdown for its whole timeout.
    shutdown: CancellationToken,
    /// Committed offsets.
    pub offsets: Arc<OffsetStore>,
}

impl std::fmt::Debug for GroupManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupManager").finish_non_exhaustive()
    }
}

impl GroupManager {
    pub fn open(
        data_dir: &Path,
        config: GroupConfig,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let salt = u64::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..8]
                .try_into()
                .unwrap_or([0; 8]),
        );
        Ok(GroupManager {
            config,
            groups: Mutex::new(HashMap::new()),
            consumer: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            salt,
            shutdown,
            offsets: Arc::new(OffsetStore::open(data_dir)?),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_consumer(&self) -> MutexGuard<'_, HashMap<String, ConsumerGroup>> {
        self.consumer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// ConsumerGroupHeartbeat. A classic group with members keeps its id to itself.
    pub fn consumer_heartbeat(
        &self,
        group_id: &str,
        req: CgHeartbeat,
        now_ms: i64,
        topics: &dyn TopicSource,
    ) -> CgResponse {
        let mut classic = self.lock();
        let mut consumer = self.lock_consumer();
        if !consumer.contains_key(group_id) {
            if let Some(e) = classic.get(group_id) {
                if e.group.members().next().is_some() {
                    return CgResponse {
                        error: Some(kafka_protocol::ResponseError::GroupIdNotFound),
                        message: Some(format!("group {group_id} is not a consumer group")),
                        ..Default::default()
                    };
                }
                // An empty classic group becomes a consumer group.
                let mut e = classic.remove(group_id).expect("present");
                let actions = e.group.mark_dead();
                e.deliver(actions);
            }
        }
        if req.member_epoch != 0 && !consumer.contains_key(group_id) {
            return CgResponse {
                error: Some(kafka_protocol::ResponseError::UnknownMemberId),
                message: Some("unknown member: rejoin with epoch 0".into()),
                ..Default::default()
            };
        }
        drop(classic);
        let config = ConsumerGroupConfig {
            session_timeout_ms: i64::from(self.config.consumer_session_timeout_ms),
            heartbeat_interval_ms: self.config.consumer_heartbeat_interval_ms,
            regex_refresh_interval_ms: i64::from(self.config.consumer_regex_refresh_interval_ms),
        };
        let group = consumer
            .entry(group_id.to_string())
            .or_insert_with(|| ConsumerGroup::new(group_id, config));
        let resp = group.heartbeat(req, now_ms, topics);
        if group.is_empty() && group.group_epoch() == 0 {
            // A refused first join leaves no group behind.
            consumer.remove(group_id);
        }
        resp
    }

    /// Runs `f` on a consumer group, if there is one by that id.
    pub fn with_consumer<T>(
        &self,
        group_id: &str,
        f: impl FnOnce(&ConsumerGroup) -> T,
    ) -> Option<T> {
        self.lock_consumer().get(group_id).map(f)
    }

    fn entry<'a>(&self, groups: &'a mut HashMap<String, Entry>, id: &str) -> &'a mut Entry {
        groups.entry(id.to_string()).or_insert_with(|| Entry {
            group: Group::new(id, self.config.clone(), self.salt),
            waiting: HashMap::new(),
        })
    }

    /// JoinGroup: answered when the rebalance lets it be.
    pub async fn join(
        &self,
        group_id: &str,
        build: impl FnOnce(RequestId) -> JoinRequest,
        now_ms: i64,
    ) -> JoinResponse {
        let id = RequestId(self.next_request.fetch_add(1, Ordering::Relaxed));
        let req = build(id);
        let member_id = req.member_id.clone();
        let rx = {
            let mut groups = self.lock();
            {
                // An empty KIP-848 group gives its id up to a classic one.
                let mut consumer = self.lock_consumer();
                if consumer.get(group_id).is_some_and(|g| g.is_empty()) {
                    consumer.remove(group_id);
                }
            }
            let entry = self.entry(&mut groups, group_id);
            let (tx, rx) = oneshot::channel();
            entry.waiting.insert(id, tx);
            let actions = entry.group.join(req, now_ms);
            entry.deliver(actions);
            rx
        };
        let answer = tokio::select! {
            answer = rx => answer.ok(),
            _ = self.shutdown.cancelled() => None,
        };
        match answer {
            Some(Answer::Join(r)) => r,
            _ => JoinResponse::error(&member_id, ErrorCode::CoordinatorNotAvailable),
        }
    }

    /// SyncGroup: answered once the leader's assignment is in.
    pub async fn sync(
        &self,
        group_id: &str,
        build: impl FnOnce(RequestId) -> SyncRequest,
        now_ms: i64,
    ) -> SyncResponse {
        let id = RequestId(self.next_request.fetch_add(1, Ordering::Relaxed));
        let req = build(id);
        let rx = {
            let mut groups = self.lock();
            let Some(entry) = groups.get_mut(group_id) else {
                return SyncResponse::error(ErrorCode::UnknownMemberId);
            };
            let (tx, rx) = oneshot::channel();
            entry.waiting.insert(id, tx);
            let actions = entry.group.sync(req, now_ms);
            entry.deliver(actions);
            rx
        };
        let answer = tokio::select! {
            answer = rx => answer.ok(),
            _ = self.shutdown.cancelled() => None,
        };
        match answer {
            Some(Answer::Sync(r)) => r,
            _ => SyncResponse::error(ErrorCode::CoordinatorNotAvailable),
        }
    }

    /// Runs `f` on the group if it exists (heartbeat, leave, reads), delivering its actions.
    pub fn with_group<T>(
        &self,
        group_id: &str,
        f: impl FnOnce(&mut Group) -> (T, Vec<Action>),
    ) -> Option<T> {
        let mut groups = self.lock();
        let entry = groups.get_mut(group_id)?;
        let (out, actions) = f(&mut entry.group);
        entry.deliver(actions);
        Some(out)
    }

    /// State and member count of a group, if it exists in memory.
    /// (Consumer groups report Empty or Stable.)
    pub fn state(&self, group_id: &str) -> Option<(GroupState, usize)> {
        let classic = self
            .lock()
            .get(group_id)
            .map(|e| (e.group.state(), e.group.members().count()));
        classic.or_else(|| {
            self.with_consumer(group_id, |g| {
                let n = g.members().count();
                let s = if n == 0 {
                    GroupState::Empty
                } else {
                    GroupState::Stable
                };
                (s, n)
            })
        })
    }

    /// Every known group id: live groups and groups with committed offsets.
    pub fn group_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().keys().cloned().collect();
        ids.extend(self.lock_consumer().keys().cloned());
        for g in self.offsets.groups() {
            if !ids.contains(&g) {
                ids.push(g);
            }
        }
        ids.sort();
        ids.dedup();
        ids
    }

    /// Forgets a group that has no members (DeleteGroups). Returns false when it has some.
    pub fn remove_if_empty(&self, group_id: &str) -> bool {
        let mut groups = self.lock();
        {
            let mut consumer = self.lock_consumer();
            match consumer.get(group_id) {
                Some(g) if !g.is_empty() => return false,
                Some(_) => {
                    consumer.remove(group_id);
                }
                None => {}
            }
        }
        match groups.get_mut(group_id) {
            Some(e)
                if e.group.state() != GroupState::Empty && e.group.state() != GroupState::Dead =>
            {
                false
            }
            Some(e) => {
                let actions = e.group.mark_dead();
                e.deliver(actions);
                groups.remove(group_id);
                true
            }
            None => true,
        }
    }

    /// Advances every group's timers.
    pub fn tick(&self, now_ms: i64) {
        let mut groups = self.lock();
        for entry in groups.values_mut() {
            let actions = entry.group.tick(now_ms);
            entry.deliver(actions);
        }
        drop(groups);
        for g in self.lock_consumer().values_mut() {
            for member in g.tick(now_ms) {
                tracing::info!(group = g.id(), member, "consumer group member expired");
            }
        }
    }

    /// Drops committed offsets of groups without members whose newest commit is older than
    /// `retention_ms` (Kafka's offsets.retention.minutes). Blocking (file write).
    pub fn expire_offsets(&self, now_ms: i64, retention_ms: i64) {
        for g in self.offsets.groups() {
            let empty = self
                .state(&g)
                .is_none_or(|(s, n)| n == 0 && matches!(s, GroupState::Empty | GroupState::Dead));
            let old = self
                .offsets
                .last_commit_ms(&g)
                .is_some_and(|t| now_ms.saturating_sub(t) > retention_ms);
            if empty && old {
                if let Err(e) = self.offsets.delete_group(&g) {
                    tracing::warn!(group = %g, "cannot expire offsets: {e}");
                }
            }
        }
    }
}
