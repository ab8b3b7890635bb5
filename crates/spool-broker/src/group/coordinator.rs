//! The classic group state machine: requests and timer ticks in, responses out.
//!
//! Follows Kafka's classic protocol handling in `GroupMetadataManager` and
//! `ClassicGroup` (group-coordinator module). Differences are noted where
//! they are made. Every [`RequestId`] handed in is answered exactly once,
//! either at once or by a later call (Kafka drops some superseded futures;
//! here they are answered so no connection waits forever).

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use indexmap::IndexMap;

use super::member::Member;
use super::types::{
    Action, ErrorCode, GroupConfig, GroupState, HeartbeatRequest, JoinMember, JoinRequest,
    JoinResponse, LeaveMember, LeaveMemberResult, LeaveOutcome, RequestId, SyncRequest,
    SyncResponse,
};

/// State of the initial-rebalance delay (Kafka's `InitialDelayedJoin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InitialDelay {
    delay_ms: i64,
    remaining_ms: i64,
}

/// One classic consumer group. Pure: no I/O, no clock; time comes in as `now_ms`.
#[derive(Debug, Clone)]
pub struct Group {
    group_id: String,
    config: GroupConfig,
    id_salt: u64,
    next_member_seq: u64,
    state: GroupState,
    previous_state: GroupState,
    generation_id: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    /// Members in join order (the order a new leader is picked in).
    members: IndexMap<String, Member>,
    /// group.instance.id -> member id.
    static_members: HashMap<String, String>,
    /// Members told MEMBER_ID_REQUIRED, with the time they expire.
    pending_members: IndexMap<String, i64>,
    /// Members of the current generation that have not sent SyncGroup yet.
    pending_sync_members: HashSet<String>,
    join_deadline: Option<i64>,
    initial_delay: Option<InitialDelay>,
    new_member_added: bool,
    /// Deadline for every member to sync, and the generation it belongs to.
    sync_deadline: Option<(i64, i32)>,
}

impl Group {
    /// A new empty group. `id_salt` goes into generated member ids so ids from
    /// different group incarnations do not collide (pass something random).
    pub fn new(group_id: impl Into<String>, config: GroupConfig, id_salt: u64) -> Self {
        Group {
            group_id: group_id.into(),
            config,
            id_salt,
            next_member_seq: 0,
            state: GroupState::Empty,
            previous_state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending_members: IndexMap::new(),
            pending_sync_members: HashSet::new(),
            join_deadline: None,
            initial_delay: None,
            new_member_added: false,
            sync_deadline: None,
        }
    }

    /// The group id.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// The current state.
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// The current generation (0 before the first rebalance completes).
    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    /// The protocol type set by the first member.
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// The protocol chosen for the current generation.
    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    /// The leader's member id.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// The members, in join order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// One member.
    pub fn member(&self, member_id: &str) -> Option<&Member> {
        self.members.get(member_id)
    }

    /// The earliest time at which [`Group::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        let members = self.members.values().filter_map(|m| m.heartbeat_deadline);
        let pending = self.pending_members.values().copied();
        members
            .chain(pending)
            .chain(self.join_deadline)
            .chain(self.sync_deadline.map(|(d, _)| d))
            .min()
    }

    /// Marks the group dead (unloaded or deleted): parked requests are
    /// answered with COORDINATOR_NOT_AVAILABLE and later ones refused.
    pub fn mark_dead(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        for member in self.members.values_mut() {
            if let Some(request_id) = member.pending_join.take() {
                let response =
                    JoinResponse::error(&member.member_id, ErrorCode::CoordinatorNotAvailable);
                out.push(Action::Join {
                    request_id,
                    response,
                });
            }
            if let Some(request_id) = member.pending_sync.take() {
                let response = SyncResponse::error(ErrorCode::CoordinatorNotAvailable);
                out.push(Action::Sync {
                    request_id,
                    response,
                });
            }
        }
        self.transition(GroupState::Dead);
        self.join_deadline = None;
        self.sync_deadline = None;
        self.initial_delay = None;
        out
    }

    // ---------------------------------------------------------------- join

    /// Handles a JoinGroup request. The response may come now or from a later call.
    pub fn join(&mut self, req: JoinRequest, now_ms: i64) -> Vec<Action> {
        let mut out = Vec::new();
        let rid = req.request_id;
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            reply_join(
                &mut out,
                rid,
                JoinResponse::error(&req.member_id, ErrorCode::InvalidSessionTimeout),
            );
        } else if self.state == GroupState::Dead {
            reply_join(
                &mut out,
                rid,
                JoinResponse::error(&req.member_id, ErrorCode::CoordinatorNotAvailable),
            );
        } else if !self.accept_joining_member(&req.member_id) {
            // Kafka also drops the member that could not be accepted.
            self.remove(&req.member_id, &mut out);
            reply_join(
                &mut out,
                rid,
                JoinResponse::error("", ErrorCode::GroupMaxSizeReached),
            );
        } else if req.member_id.is_empty() {
            self.join_new_member(req, now_ms, &mut out);
        } else {
            self.join_existing_member(req, now_ms, &mut out);
        }
        out
    }

    fn join_new_member(&mut self, req: JoinRequest, now: i64, out: &mut Vec<Action>) {
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            reply_join(
                out,
                req.request_id,
                JoinResponse::error("", ErrorCode::InconsistentGroupProtocol),
            );
            return;
        }
        let new_id =
            self.generate_member_id(req.group_instance_id.as_deref().unwrap_or(&req.client_id));
        if let Some(instance_id) = req.group_instance_id.clone() {
            match self.static_members.get(&instance_id).cloned() {
                Some(old_id) => {
                    self.replace_static_member_then_rebalance(req, &old_id, new_id, now, out)
                }
                None => self.add_member_then_rebalance(req, new_id, now, out),
            }
        } else if req.require_known_member_id {
            let deadline = now.saturating_add(i64::from(req.session_timeout_ms));
            self.pending_members.insert(new_id.clone(), deadline);
            reply_join(
                out,
                req.request_id,
                JoinResponse::error(&new_id, ErrorCode::MemberIdRequired),
            );
        } else {
            self.add_member_then_rebalance(req, new_id, now, out);
        }
    }

    fn join_existing_member(&mut self, req: JoinRequest, now: i64, out: &mut Vec<Action>) {
        let member_id = req.member_id.clone();
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            reply_join(
                out,
                req.request_id,
                JoinResponse::error(&member_id, ErrorCode::InconsistentGroupProtocol),
            );
            return;
        }
        if self.pending_members.contains_key(&member_id) {
            if req.group_instance_id.is_some() {
                // A pending member is always dynamic (Kafka throws here).
                reply_join(
                    out,
                    req.request_id,
                    JoinResponse::error(&member_id, ErrorCode::UnknownMemberId),
                );
            } else {
                self.add_member_then_rebalance(req, member_id, now, out);
            }
            return;
        }
        if let Err(error) = self.validate_member(&member_id, req.group_instance_id.as_deref()) {
            reply_join(out, req.request_id, JoinResponse::error(&member_id, error));
            return;
        }
        let (matches, is_leader) = match self.members.get(&member_id) {
            Some(m) => (m.matches(&req.protocols), self.is_leader(&member_id)),
            None => (false, false),
        };
        match self.state {
            GroupState::PreparingRebalance => self.update_member_then_rebalance(req, now, out),
            GroupState::CompletingRebalance if matches => {
                // Lost the JoinGroup response: hand out the current generation again.
                let response =
                    self.current_join_response(&member_id, is_leader, self.leader.clone());
                reply_join(out, req.request_id, response);
            }
            GroupState::Stable if matches && !is_leader => {
                let response = self.current_join_response(&member_id, false, self.leader.clone());
                reply_join(out, req.request_id, response);
            }
            // The leader rejoining in Stable, or changed metadata: rebalance.
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member_then_rebalance(req, now, out)
            }
            GroupState::Empty | GroupState::Dead => {
                reply_join(
                    out,
                    req.request_id,
                    JoinResponse::error(&member_id, ErrorCode::UnknownMemberId),
                );
            }
        }
    }

    fn add_member_then_rebalance(
        &mut self,
        req: JoinRequest,
        member_id: String,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        let rebalance_timeout_ms = effective_rebalance_timeout(&req);
        let member = Member {
            member_id: member_id.clone(),
            group_instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            pending_join: Some(req.request_id),
            pending_sync: None,
            is_new: true,
            // New members cannot heartbeat while parked: bound the parked join instead.
            heartbeat_deadline: Some(
                now.saturating_add(i64::from(self.config.new_member_join_timeout_ms)),
            ),
            last_heartbeat_ms: now,
        };
        if self.state == GroupState::PreparingRebalance && self.previous_state == GroupState::Empty
        {
            self.new_member_added = true;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        if let Some(instance_id) = &member.group_instance_id {
            self.static_members
                .insert(instance_id.clone(), member_id.clone());
        }
        self.pending_members.shift_remove(&member_id);
        self.members.insert(member_id, member);
        self.maybe_prepare_rebalance_or_complete_join(now, out);
    }

    fn update_member_then_rebalance(&mut self, req: JoinRequest, now: i64, out: &mut Vec<Action>) {
        self.update_member(&req, out);
        self.maybe_prepare_rebalance_or_complete_join(now, out);
    }

    /// Takes the request's protocols and timeouts and parks its join.
    fn update_member(&mut self, req: &JoinRequest, out: &mut Vec<Action>) {
        let rebalance_timeout_ms = effective_rebalance_timeout(req);
        let Some(member) = self.members.get_mut(&req.member_id) else {
            return;
        };
        member.protocols = req.protocols.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = rebalance_timeout_ms;
        if let Some(old) = member.pending_join.replace(req.request_id) {
            // A retried join supersedes the parked one (Kafka drops the old future).
            reply_join(
                out,
                old,
                JoinResponse::error(&req.member_id, ErrorCode::RebalanceInProgress),
            );
        }
    }

    /// Kafka's static-member rejoin with an unknown member id: the instance's
    /// old member id is fenced and replaced by `new_id`.
    fn replace_static_member_then_rebalance(
        &mut self,
        mut req: JoinRequest,
        old_id: &str,
        new_id: String,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        let leader_before = self.leader.clone();
        let Some(mut member) = self.members.shift_remove(old_id) else {
            reply_join(
                out,
                req.request_id,
                JoinResponse::error("", ErrorCode::UnknownMemberId),
            );
            return;
        };
        if let Some(request_id) = member.pending_join.take() {
            reply_join(
                out,
                request_id,
                JoinResponse::error(old_id, ErrorCode::FencedInstanceId),
            );
        }
        if let Some(request_id) = member.pending_sync.take() {
            reply_sync(
                out,
                request_id,
                SyncResponse::error(ErrorCode::FencedInstanceId),
            );
        }
        self.pending_sync_members.remove(old_id);
        member.member_id = new_id.clone();
        member.is_new = false;
        member.heartbeat_deadline = Some(now.saturating_add(i64::from(member.session_timeout_ms)));
        member.last_heartbeat_ms = now;
        if let Some(instance_id) = &member.group_instance_id {
            self.static_members
                .insert(instance_id.clone(), new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        self.members.insert(new_id.clone(), member);
        req.member_id = new_id.clone();
        self.update_member(&req, out);

        match self.state {
            GroupState::Stable => {
                if self.select_protocol() == self.protocol_name {
                    // Nothing the assignment depends on changed: no rebalance. Like Kafka
                    // before JoinGroup v9, the old leader id is returned so the member
                    // acts as a follower and syncs to fetch its kept assignment.
                    if let Some(m) = self.members.get_mut(&new_id) {
                        m.pending_join = None;
                    }
                    let response = self.current_join_response(&new_id, false, leader_before);
                    reply_join(out, req.request_id, response);
                } else {
                    self.maybe_prepare_rebalance_or_complete_join(now, out);
                }
            }
            // The leader may already be assigning with the old id: rebalance.
            GroupState::CompletingRebalance => self.prepare_rebalance(now, out),
            GroupState::PreparingRebalance => self.maybe_complete_join_phase(now, out),
            GroupState::Empty | GroupState::Dead => {
                // Not reachable (a static member exists); answer rather than park forever.
                self.remove(&new_id, out);
            }
        }
    }

    /// The current generation's JoinGroup response for `member_id`.
    fn current_join_response(
        &self,
        member_id: &str,
        with_members: bool,
        leader: Option<String>,
    ) -> JoinResponse {
        JoinResponse {
            error: ErrorCode::None,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: leader.unwrap_or_default(),
            member_id: member_id.to_owned(),
            members: if with_members {
                self.join_members()
            } else {
                Vec::new()
            },
        }
    }

    /// Every member with its metadata for the chosen protocol (the leader's view).
    fn join_members(&self) -> Vec<JoinMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or("");
        self.members
            .values()
            .map(|m| JoinMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(protocol),
            })
            .collect()
    }

    // ---------------------------------------------------------------- sync

    /// Handles a SyncGroup request. Followers syncing before the leader wait.
    pub fn sync(&mut self, req: SyncRequest, now_ms: i64) -> Vec<Action> {
        let mut out = Vec::new();
        let rid = req.request_id;
        if let Err(error) = self.validate_sync(&req) {
            reply_sync(&mut out, rid, SyncResponse::error(error));
            return out;
        }
        match self.state {
            GroupState::PreparingRebalance => {
                reply_sync(
                    &mut out,
                    rid,
                    SyncResponse::error(ErrorCode::RebalanceInProgress),
                );
            }
            GroupState::CompletingRebalance => {
                if let Some(member) = self.members.get_mut(&req.member_id) {
                    if let Some(old) = member.pending_sync.replace(rid) {
                        reply_sync(
                            &mut out,
                            old,
                            SyncResponse::error(ErrorCode::RebalanceInProgress),
                        );
                    }
                }
                self.remove_pending_sync_member(&req.member_id);
                if self.is_leader(&req.member_id) {
                    let mut assignments: HashMap<String, Bytes> =
                        req.assignments.into_iter().collect();
                    for member in self.members.values_mut() {
                        member.assignment =
                            assignments.remove(&member.member_id).unwrap_or_default();
                    }
                    self.propagate_assignment(ErrorCode::None, now_ms, &mut out);
                    self.transition(GroupState::Stable);
                }
            }
            GroupState::Stable => {
                self.remove_pending_sync_member(&req.member_id);
                let assignment = self
                    .members
                    .get(&req.member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                let response = SyncResponse {
                    error: ErrorCode::None,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment,
                };
                reply_sync(&mut out, rid, response);
            }
            // validate_sync refuses these (no members / dead); answer anyway.
            GroupState::Empty | GroupState::Dead => {
                reply_sync(
                    &mut out,
                    rid,
                    SyncResponse::error(ErrorCode::UnknownMemberId),
                );
            }
        }
        out
    }

    fn validate_sync(&self, req: &SyncRequest) -> Result<(), ErrorCode> {
        if self.state == GroupState::Dead {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        self.validate_member(&req.member_id, req.group_instance_id.as_deref())?;
        if req.generation_id != self.generation_id {
            return Err(ErrorCode::IllegalGeneration);
        }
        let inconsistent =
            |given: &Option<String>, ours: &Option<String>| given.is_some() && given != ours;
        if inconsistent(&req.protocol_type, &self.protocol_type)
            || inconsistent(&req.protocol_name, &self.protocol_name)
        {
            return Err(ErrorCode::InconsistentGroupProtocol);
        }
        Ok(())
    }

    fn remove_pending_sync_member(&mut self, member_id: &str) {
        self.pending_sync_members.remove(member_id);
        if self.pending_sync_members.is_empty() {
            self.sync_deadline = None;
        }
    }

    /// Answers every parked SyncGroup with its member's assignment (or `error`).
    fn propagate_assignment(&mut self, error: ErrorCode, now: i64, out: &mut Vec<Action>) {
        let ok = error == ErrorCode::None;
        for member in self.members.values_mut() {
            if let Some(request_id) = member.pending_sync.take() {
                let response = SyncResponse {
                    error,
                    protocol_type: if ok { self.protocol_type.clone() } else { None },
                    protocol_name: if ok { self.protocol_name.clone() } else { None },
                    assignment: member.assignment.clone(),
                };
                reply_sync(out, request_id, response);
                member.heartbeat_deadline =
                    Some(now.saturating_add(i64::from(member.session_timeout_ms)));
            }
        }
    }

    // ----------------------------------------------------------- heartbeat

    /// Handles a Heartbeat request; the answer is immediate.
    pub fn heartbeat(&mut self, req: &HeartbeatRequest, now_ms: i64) -> ErrorCode {
        if self.state == GroupState::Dead {
            return ErrorCode::CoordinatorNotAvailable;
        }
        if let Err(error) = self.validate_member(&req.member_id, req.group_instance_id.as_deref()) {
            return error;
        }
        if req.generation_id != self.generation_id {
            return ErrorCode::IllegalGeneration;
        }
        let answer = match self.state {
            GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
            GroupState::CompletingRebalance | GroupState::Stable => ErrorCode::None,
            GroupState::Empty | GroupState::Dead => return ErrorCode::UnknownMemberId,
        };
        if let Some(member) = self.members.get_mut(&req.member_id) {
            member.heartbeat_deadline =
                Some(now_ms.saturating_add(i64::from(member.session_timeout_ms)));
            member.last_heartbeat_ms = now_ms;
        }
        answer
    }

    // --------------------------------------------------------------- leave

    /// Handles a (batched) LeaveGroup request with per-member results.
    pub fn leave(&mut self, members: Vec<LeaveMember>, now_ms: i64) -> LeaveOutcome {
        let mut out = Vec::new();
        if self.state == GroupState::Dead {
            return LeaveOutcome {
                error: ErrorCode::CoordinatorNotAvailable,
                members: Vec::new(),
                actions: out,
            };
        }
        let mut results = Vec::with_capacity(members.len().min(self.members.len() + 1));
        let mut any_left = false;
        for leaving in members {
            let error = if leaving.member_id.is_empty() {
                // Administrative removal of a static member by instance id.
                match leaving
                    .group_instance_id
                    .as_ref()
                    .and_then(|i| self.static_members.get(i))
                    .cloned()
                {
                    Some(member_id) => {
                        self.remove(&member_id, &mut out);
                        ErrorCode::None
                    }
                    None => ErrorCode::UnknownMemberId,
                }
            } else if self
                .pending_members
                .shift_remove(&leaving.member_id)
                .is_some()
            {
                ErrorCode::None
            } else {
                match self.validate_member(&leaving.member_id, leaving.group_instance_id.as_deref())
                {
                    Ok(()) => {
                        self.remove(&leaving.member_id, &mut out);
                        ErrorCode::None
                    }
                    Err(error) => error,
                }
            };
            any_left |= error == ErrorCode::None;
            results.push(LeaveMemberResult {
                member_id: leaving.member_id,
                group_instance_id: leaving.group_instance_id,
                error,
            });
        }
        if any_left {
            match self.state {
                GroupState::Stable | GroupState::CompletingRebalance => {
                    self.maybe_prepare_rebalance_or_complete_join(now_ms, &mut out)
                }
                GroupState::PreparingRebalance => self.maybe_complete_join_phase(now_ms, &mut out),
                GroupState::Empty | GroupState::Dead => {}
            }
        }
        LeaveOutcome {
            error: ErrorCode::None,
            members: results,
            actions: out,
        }
    }

    // ---------------------------------------------------------------- tick

    /// Fires every timer due at `now_ms`: pending-member and session expiry,
    /// join completion (rebalance timeout, initial delay), sync expiry.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state == GroupState::Dead {
            return out;
        }
        let expired_pending: Vec<String> = self
            .pending_members
            .iter()
            .filter(|(_, deadline)| **deadline <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for member_id in expired_pending {
            self.pending_members.shift_remove(&member_id);
            if self.state == GroupState::PreparingRebalance && self.has_all_members_joined() {
                self.complete_join(now_ms, &mut out);
            }
        }

        let due: Vec<String> = self
            .members
            .values()
            .filter(|m| m.heartbeat_deadline.is_some_and(|d| d <= now_ms))
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in due {
            let Some(member) = self.members.get_mut(&member_id) else {
                continue;
            };
            if member.heartbeat_deadline.is_some_and(|d| d > now_ms) {
                continue; // rescheduled by a rebalance completed earlier in this tick
            }
            if member.has_satisfied_heartbeat() {
                member.heartbeat_deadline = None;
            } else {
                self.expire_member(&member_id, now_ms, &mut out);
            }
        }

        if self.join_deadline.is_some_and(|d| d <= now_ms) {
            self.join_deadline = None;
            match self.initial_delay {
                Some(initial) => self.try_complete_initial_rebalance(initial, now_ms, &mut out),
                None => self.complete_join(now_ms, &mut out),
            }
        }

        if let Some((deadline, generation)) = self.sync_deadline {
            if deadline <= now_ms {
                self.sync_deadline = None;
                self.expire_pending_sync(generation, now_ms, &mut out);
            }
        }
        out
    }

    /// Session expiry (Kafka's `removeMemberAndUpdateClassicGroup`).
    fn expire_member(&mut self, member_id: &str, now: i64, out: &mut Vec<Action>) {
        self.remove(member_id, out);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance_or_complete_join(now, out)
            }
            GroupState::PreparingRebalance if self.has_all_members_joined() => {
                self.complete_join(now, out)
            }
            _ => {}
        }
    }

    fn expire_pending_sync(&mut self, generation: i32, now: i64, out: &mut Vec<Action>) {
        let syncing = matches!(
            self.state,
            GroupState::CompletingRebalance | GroupState::Stable
        );
        if generation != self.generation_id || !syncing || self.pending_sync_members.is_empty() {
            return;
        }
        let mut laggards: Vec<String> = self.pending_sync_members.drain().collect();
        laggards.sort();
        for member_id in laggards {
            self.remove(&member_id, out);
        }
        self.prepare_rebalance(now, out);
    }

    fn try_complete_initial_rebalance(
        &mut self,
        initial: InitialDelay,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        if self.new_member_added && initial.remaining_ms != 0 {
            self.new_member_added = false;
            let delay_ms =
                i64::from(self.config.initial_rebalance_delay_ms).min(initial.remaining_ms);
            let remaining_ms = (initial.remaining_ms - initial.delay_ms).max(0);
            self.initial_delay = Some(InitialDelay {
                delay_ms,
                remaining_ms,
            });
            self.join_deadline = Some(now.saturating_add(delay_ms));
        } else {
            self.complete_join(now, out);
        }
    }

    // ------------------------------------------------------- rebalancing

    fn maybe_prepare_rebalance_or_complete_join(&mut self, now: i64, out: &mut Vec<Action>) {
        if matches!(
            self.state,
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance
        ) {
            self.prepare_rebalance(now, out);
        } else {
            self.maybe_complete_join_phase(now, out);
        }
    }

    fn prepare_rebalance(&mut self, now: i64, out: &mut Vec<Action>) {
        if self.state == GroupState::CompletingRebalance {
            // Members waiting for the assignment must rejoin instead.
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
            }
            self.propagate_assignment(ErrorCode::RebalanceInProgress, now, out);
        }
        self.pending_sync_members.clear();
        self.sync_deadline = None;
        let initial = self.state == GroupState::Empty;
        self.transition(GroupState::PreparingRebalance);
        if initial {
            let delay_ms = i64::from(self.config.initial_rebalance_delay_ms.max(0));
            if delay_ms == 0 {
                // No delay configured: complete as soon as everyone has joined.
                self.initial_delay = None;
                self.maybe_complete_join_else_schedule(now, out);
            } else {
                let remaining_ms = (self.rebalance_timeout_ms() - delay_ms).max(0);
                self.initial_delay = Some(InitialDelay {
                    delay_ms,
                    remaining_ms,
                });
                self.new_member_added = false;
                self.join_deadline = Some(now.saturating_add(delay_ms));
            }
        } else {
            self.maybe_complete_join_else_schedule(now, out);
        }
    }

    fn maybe_complete_join_else_schedule(&mut self, now: i64, out: &mut Vec<Action>) {
        if self.has_all_members_joined() {
            self.complete_join(now, out);
        } else {
            self.join_deadline = Some(now.saturating_add(self.rebalance_timeout_ms()));
        }
    }

    /// Completes the join phase early once everyone has rejoined (never during
    /// the initial delay).
    fn maybe_complete_join_phase(&mut self, now: i64, out: &mut Vec<Action>) {
        if self.state == GroupState::PreparingRebalance
            && self.initial_delay.is_none()
            && self.has_all_members_joined()
        {
            self.complete_join(now, out);
        }
    }

    /// Kafka's `completeClassicGroupJoin`: drops dynamic members that did not
    /// rejoin, bumps the generation, picks the protocol and answers the joins.
    fn complete_join(&mut self, now: i64, out: &mut Vec<Action>) {
        self.join_deadline = None;
        self.initial_delay = None;
        let not_rejoined: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.is_awaiting_join() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in not_rejoined {
            self.remove(&member_id, out);
        }
        if self.state == GroupState::Dead {
            return;
        }
        if !self.maybe_elect_new_joined_leader() && !self.members.is_empty() {
            // Only static members that have not rejoined are left: wait again.
            self.join_deadline = Some(now.saturating_add(self.rebalance_timeout_ms()));
            return;
        }
        self.generation_id = if self.generation_id == i32::MAX {
            1
        } else {
            self.generation_id + 1
        };
        self.pending_sync_members.clear();
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition(GroupState::Empty);
            return;
        }
        self.protocol_name = self.select_protocol();
        self.transition(GroupState::CompletingRebalance);
        let leader = self.leader.clone();
        let leader_view = self.join_members();
        let member_ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in member_ids {
            let is_leader = leader.as_deref() == Some(member_id.as_str());
            let generation_id = self.generation_id;
            let protocol_type = self.protocol_type.clone();
            let protocol_name = self.protocol_name.clone();
            let Some(member) = self.members.get_mut(&member_id) else {
                continue;
            };
            if let Some(request_id) = member.pending_join.take() {
                let response = JoinResponse {
                    error: ErrorCode::None,
                    generation_id,
                    protocol_type,
                    protocol_name,
                    leader: leader.clone().unwrap_or_default(),
                    member_id: member_id.clone(),
                    members: if is_leader {
                        leader_view.clone()
                    } else {
                        Vec::new()
                    },
                };
                reply_join(out, request_id, response);
            }
            member.heartbeat_deadline =
                Some(now.saturating_add(i64::from(member.session_timeout_ms)));
            member.is_new = false;
            self.pending_sync_members.insert(member_id);
        }
        self.sync_deadline = Some((
            now.saturating_add(self.rebalance_timeout_ms()),
            self.generation_id,
        ));
    }

    /// Keeps the leader if it rejoined, else takes the first member that did.
    fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader.clone() else {
            return false;
        };
        if self
            .members
            .get(&leader)
            .is_some_and(Member::is_awaiting_join)
        {
            return true;
        }
        match self.members.values().find(|m| m.is_awaiting_join()) {
            Some(m) => {
                self.leader = Some(m.member_id.clone());
                true
            }
            None => false,
        }
    }

    // ------------------------------------------------------------- helpers

    /// Removes a member, answering its parked requests with UNKNOWN_MEMBER_ID.
    fn remove(&mut self, member_id: &str, out: &mut Vec<Action>) {
        if let Some(mut member) = self.members.shift_remove(member_id) {
            if let Some(request_id) = member.pending_join.take() {
                reply_join(
                    out,
                    request_id,
                    JoinResponse::error("", ErrorCode::UnknownMemberId),
                );
            }
            if let Some(request_id) = member.pending_sync.take() {
                reply_sync(
                    out,
                    request_id,
                    SyncResponse::error(ErrorCode::UnknownMemberId),
                );
            }
            if let Some(instance_id) = &member.group_instance_id {
                self.static_members.remove(instance_id);
            }
        }
        if self.is_leader(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        self.pending_members.shift_remove(member_id);
        self.pending_sync_members.remove(member_id);
    }

    fn validate_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), ErrorCode> {
        if let Some(instance_id) = group_instance_id {
            match self.static_members.get(instance_id) {
                None => return Err(ErrorCode::UnknownMemberId),
                Some(existing) if existing != member_id => return Err(ErrorCode::FencedInstanceId),
                Some(_) => {}
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(ErrorCode::UnknownMemberId)
        }
    }

    fn accept_joining_member(&self, member_id: &str) -> bool {
        let Some(max) = self.config.max_size else {
            return true;
        };
        let existing = self.members.get(member_id);
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                let awaiting = self
                    .members
                    .values()
                    .filter(|m| m.is_awaiting_join())
                    .count();
                existing.is_some_and(Member::is_awaiting_join) || awaiting < max
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                existing.is_some() || self.members.len() < max
            }
        }
    }

    /// Kafka's `supportsProtocols`: an empty group takes any non-empty type and
    /// protocol list; otherwise the type must match and at least one of the
    /// protocols must be supported by every current member.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.state == GroupState::Empty {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|(name, _)| self.members.values().all(|m| m.supports(name)))
    }

    /// Kafka's `selectProtocol`: among protocols every member supports, each
    /// member votes for its first-listed one; most votes wins. Ties go to the
    /// protocol voted for first in member join order.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| self.members.values().all(|m| m.supports(n)))
            .collect();
        let mut votes: Vec<(&str, usize)> = Vec::new();
        for member in self.members.values() {
            if let Some(choice) = member.vote(&candidates) {
                match votes.iter_mut().find(|(n, _)| *n == choice) {
                    Some((_, count)) => *count += 1,
                    None => votes.push((choice, 1)),
                }
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in votes {
            if best.is_none_or(|(_, c)| count > c) {
                best = Some((name, count));
            }
        }
        best.map(|(name, _)| name.to_owned())
    }

    fn has_all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(Member::is_awaiting_join)
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// The group's rebalance timeout: the largest of its members'.
    fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
            .max(0)
    }

    fn generate_member_id(&mut self, prefix: &str) -> String {
        self.next_member_seq = self.next_member_seq.wrapping_add(1);
        format!(
            "{prefix}-{:016x}-{:08x}",
            self.id_salt, self.next_member_seq
        )
    }

    fn transition(&mut self, state: GroupState) {
        self.previous_state = self.state;
        self.state = state;
    }
}

fn effective_rebalance_timeout(req: &JoinRequest) -> i32 {
    if req.rebalance_timeout_ms < 0 {
        req.session_timeout_ms
    } else {
        req.rebalance_timeout_ms
    }
}

fn reply_join(out: &mut Vec<Action>, request_id: RequestId, response: JoinResponse) {
    out.push(Action::Join {
        request_id,
        response,
    });
}

fn reply_sync(out: &mut Vec<Action>, request_id: RequestId, response: SyncResponse) {
    out.push(Action::Sync {
        request_id,
        response,
    });
}
