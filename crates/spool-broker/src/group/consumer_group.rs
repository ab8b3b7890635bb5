//! The KIP-848 ("consumer", next-generation) group protocol as a pure state machine:
//! ConsumerGroupHeartbeat in, response out; timers through [`ConsumerGroup::tick`].
//!
//! Following Kafka's GroupMetadataManager / CurrentAssignmentBuilder:
//! - the group epoch bumps when membership, subscriptions, the assignor or the subscribed
//!   topics' metadata change;
//! - then the server-side assignor computes a target assignment for that epoch;
//! - each member reconciles towards its target on its own heartbeats: partitions it must give
//!   up are revoked first (its epoch stays until its heartbeat's owned partitions no longer
//!   list them), partitions still held by another member are withheld until released, and
//!   its epoch advances to the target epoch once nothing is left to revoke.
//!
//! Not implemented: regex subscriptions, rack-aware assignment, persistence.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::assignor::{self, Assignment, AssignorMember, ASSIGNORS};

/// A subscribed topic as the broker's metadata knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicInfo {
    pub id: Uuid,
    pub partitions: i32,
}

/// Timeouts of consumer groups (Kafka's group.consumer.* defaults).
#[derive(Debug, Clone)]
pub struct ConsumerGroupConfig {
    pub session_timeout_ms: i64,
    pub heartbeat_interval_ms: i32,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        ConsumerGroupConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
        }
    }
}

/// A ConsumerGroupHeartbeat request, decoded.
#[derive(Debug, Clone, Default)]
pub struct CgHeartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1 when unchanged.
    pub rebalance_timeout_ms: i32,
    /// None when unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// None when unchanged.
    pub owned: Option<Vec<(Uuid, Vec<i32>)>>,
    pub client_id: String,
    pub client_host: String,
    /// v0: a joining member has no id yet and the coordinator makes one up.
    pub server_generates_id: bool,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgResponse {
    pub error: Option<ResponseError>,
    pub message: Option<String>,
    pub member_id: Option<String>,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// Present when the member should (re)learn its assignment.
    pub assignment: Option<Assignment>,
}

impl CgResponse {
    fn error(e: ResponseError, message: &str) -> Self {
        CgResponse {
            error: Some(e),
            message: Some(message.to_string()),
            ..Default::default()
        }
    }
}

/// Where a member is in its reconciliation (Kafka's MemberState).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Stable,
    /// Waiting for the member to revoke `pending_revocation`.
    UnrevokedPartitions,
    /// At the target epoch, but some target partitions are still held by others.
    UnreleasedPartitions,
}

/// One member of a consumer group.
#[derive(Debug, Clone)]
pub struct CgMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed: BTreeSet<String>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    /// -2 while a static member is away (it keeps its partitions until its session ends).
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    pub assigned: Assignment,
    pub pending_revocation: Assignment,
    session_deadline: i64,
    revocation_deadline: Option<i64>,
}

/// One consumer group.
#[derive(Debug)]
pub struct ConsumerGroup {
    id: String,
    config: ConsumerGroupConfig,
    group_epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, CgMember>,
    target: BTreeMap<String, Assignment>,
    /// Metadata of the subscribed topics when the group epoch last moved.
    metadata: BTreeMap<String, TopicInfo>,
    assignor: String,
}

#[cfg(test)]
fn count(a: &Assignment) -> usize {
    a.values().map(|p| p.len()).sum()
}

fn to_assignment(owned: &[(Uuid, Vec<i32>)]) -> Assignment {
    let mut a = Assignment::new();
    for (t, ps) in owned {
        if !ps.is_empty() {
            a.entry(*t).or_default().extend(ps.iter().copied());
        }
    }
    a
}

/// True unless the member told us it no longer owns any of `revoking`.
fn owns_any(owned: Option<&Assignment>, revoking: &Assignment) -> bool {
    let Some(owned) = owned else { return true };
    revoking
        .iter()
        .any(|(t, ps)| owned.get(t).is_some_and(|o| !o.is_disjoint(ps)))
}

impl ConsumerGroup {
    pub fn new(id: &str, config: ConsumerGroupConfig) -> Self {
        ConsumerGroup {
            id: id.to_string(),
            config,
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            metadata: BTreeMap::new(),
            assignor: ASSIGNORS[0].to_string(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }
    pub fn assignment_epoch(&self) -> i32 {
        self.assignment_epoch
    }
    pub fn assignor_name(&self) -> &str {
        &self.assignor
    }
    pub fn members(&self) -> impl Iterator<Item = &CgMember> {
        self.members.values()
    }
    #[cfg(test)]
    pub fn member(&self, id: &str) -> Option<&CgMember> {
        self.members.get(id)
    }
    pub fn target_of(&self, id: &str) -> Option<&Assignment> {
        self.target.get(id)
    }
    /// Topic name of a topic id among the subscribed topics.
    pub fn topic_name(&self, id: &Uuid) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(_, t)| t.id == *id)
            .map(|(n, _)| n.as_str())
    }
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
    /// Topics any member subscribes to.
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.subscribed.iter().cloned())
            .collect()
    }

    /// Kafka's ConsumerGroupState names.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch != self.assignment_epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            m.epoch != -2 && (m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    fn bump(&mut self) {
        self.group_epoch += 1;
    }

    fn remove_member(&mut self, id: &str) {
        if self.members.remove(id).is_some() {
            self.target.remove(id);
            self.bump();
        }
    }

    /// OffsetCommit / OffsetFetch from a member (Kafka's validateOffsetCommit).
    pub fn validate_offset_request(
        &self,
        member_id: &str,
        epoch: i32,
    ) -> Result<(), ResponseError> {
        if member_id.is_empty() && epoch < 0 {
            // An admin / simple client: only while the group has nobody.
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        match self.members.get(member_id) {
            None => Err(ResponseError::UnknownMemberId),
            Some(m) if m.epoch != epoch => Err(ResponseError::StaleMemberEpoch),
            Some(_) => Ok(()),
        }
    }

    /// Expires members whose session ended and members that did not revoke in time.
    /// Returns the ids removed.
    pub fn tick(&mut self, now: i64) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| now > m.session_deadline || m.revocation_deadline.is_some_and(|d| now > d))
            .map(|m| m.member_id.clone())
            .collect();
        for id in &gone {
            self.remove_member(id);
        }
        gone
    }

    pub fn heartbeat(
        &mut self,
        req: CgHeartbeat,
        now: i64,
        resolve: &dyn Fn(&str) -> Option<TopicInfo>,
    ) -> CgResponse {
        if let Err(r) = self.validate(&req) {
            return r;
        }
        if req.member_epoch < 0 {
            return self.leave(&req);
        }
        let owned = req.owned.as_deref().map(to_assignment);
        let mut fresh = false;
        let member_id = if req.member_epoch == 0 {
            match self.join(&req, now) {
                Ok((id, new)) => {
                    fresh = new;
                    id
                }
                Err(r) => return r,
            }
        } else {
            let Some(m) = self.members.get(&req.member_id) else {
                return CgResponse::error(
                    ResponseError::UnknownMemberId,
                    "unknown member: rejoin with epoch 0",
                );
            };
            let fenced = if req.member_epoch > m.epoch {
                true
            } else if req.member_epoch < m.epoch {
                // A lost response: the member may still be one epoch behind, as long as it
                // owns nothing it was not given.
                !(req.member_epoch == m.previous_epoch
                    && owned.as_ref().is_some_and(|o| {
                        o.iter()
                            .all(|(t, ps)| m.assigned.get(t).is_some_and(|a| ps.is_subset(a)))
                    }))
            } else {
                false
            };
            if fenced {
                return CgResponse::error(
                    ResponseError::FencedMemberEpoch,
                    &format!(
                        "member epoch {} is fenced; the coordinator has {}",
                        req.member_epoch, m.epoch
                    ),
                );
            }
            req.member_id.clone()
        };
        let before_assigned;
        // Joining, new subscriptions or new topic metadata: one new group epoch.
        let mut bump = false;
        {
            let m = self.members.get_mut(&member_id).expect("member exists");
            before_assigned = m.assigned.clone();
            m.session_deadline = now + self.config.session_timeout_ms;
            if req.rebalance_timeout_ms >= 0 {
                m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            }
            m.rack_id = req.rack_id.clone().or(m.rack_id.take());
            m.client_id = req.client_id.clone();
            m.client_host = req.client_host.clone();
            let mut changed = false;
            if let Some(names) = &req.subscribed_topic_names {
                let names: BTreeSet<String> = names.iter().cloned().collect();
                if names != m.subscribed {
                    m.subscribed = names;
                    changed = true;
                }
            }
            if req.server_assignor.is_some() && req.server_assignor != m.server_assignor {
                m.server_assignor = req.server_assignor.clone();
                changed = true;
            }
            if changed || fresh {
                bump = true;
            }
        }
        if self.refresh_metadata(resolve) {
            bump = true;
        }
        if bump {
            self.bump();
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target();
        }
        self.reconcile(&member_id, owned.as_ref(), now);
        let m = &self.members[&member_id];
        // Kafka sends the assignment on full requests (joining, or a client resending
        // everything after an error) and when it changed.
        let full = req.member_epoch == 0
            || (req.rebalance_timeout_ms != -1
                && (req.subscribed_topic_names.is_some() || req.subscribed_topic_regex.is_some())
                && req.owned.is_some());
        let send = full || m.assigned != before_assigned;
        CgResponse {
            error: None,
            message: None,
            member_id: Some(member_id.clone()),
            member_epoch: m.epoch,
            heartbeat_interval_ms: self.config.heartbeat_interval_ms,
            assignment: send.then(|| m.assigned.clone()),
        }
    }

    fn validate(&self, req: &CgHeartbeat) -> Result<(), CgResponse> {
        let bad = |msg: &str| Err(CgResponse::error(ResponseError::InvalidRequest, msg));
        if req.member_epoch < -2 {
            return bad("member epoch must be >= -2");
        }
        if req.member_id.is_empty() && !(req.member_epoch == 0 && req.server_generates_id) {
            return bad("member id must be set");
        }
        if req.member_epoch == 0 {
            if req.rebalance_timeout_ms < 0 {
                return bad("rebalance timeout must be set when joining");
            }
            if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
                return bad("subscribed topic names or regex must be set when joining");
            }
            if req.owned.as_ref().is_none_or(|o| !o.is_empty()) {
                return bad("topic partitions must be empty when (re-)joining");
            }
        }
        if req.member_epoch == -2 && req.instance_id.is_none() {
            return bad("instance id must be set to leave as a static member");
        }
        if req
            .subscribed_topic_regex
            .as_ref()
            .is_some_and(|r| !r.is_empty())
        {
            return bad("regex subscriptions are not supported by this broker");
        }
        if let Some(a) = &req.server_assignor {
            if !ASSIGNORS.contains(&a.as_str()) {
                return Err(CgResponse::error(
                    ResponseError::UnsupportedAssignor,
                    &format!("assignor {a} is not supported; use one of {ASSIGNORS:?}"),
                ));
            }
        }
        Ok(())
    }

    fn leave(&mut self, req: &CgHeartbeat) -> CgResponse {
        let known = self
            .members
            .get(&req.member_id)
            .map(|m| m.instance_id.clone());
        let Some(instance) = known else {
            return CgResponse::error(ResponseError::UnknownMemberId, "unknown member");
        };
        if req.member_epoch == -2 && instance.is_some() {
            // Static leave: the member keeps its partitions until it returns or its
            // session ends; the group does not rebalance.
            let m = self.members.get_mut(&req.member_id).expect("known");
            if m.epoch >= 0 {
                m.previous_epoch = m.epoch;
            }
            m.epoch = -2;
        } else {
            self.remove_member(&req.member_id);
        }
        CgResponse {
            member_id: Some(req.member_id.clone()),
            member_epoch: req.member_epoch,
            heartbeat_interval_ms: 0,
            ..Default::default()
        }
    }

    /// A member joining (epoch 0): returns its id, and whether it is new to the group.
    fn join(&mut self, req: &CgHeartbeat, now: i64) -> Result<(String, bool), CgResponse> {
        let member_id = if req.member_id.is_empty() {
            Uuid::new_v4().to_string()
        } else {
            req.member_id.clone()
        };
        let mut inherited = None;
        if let Some(instance) = &req.instance_id {
            let holder = self
                .members
                .values()
                .find(|m| m.instance_id.as_ref() == Some(instance) && m.member_id != member_id);
            if let Some(h) = holder {
                if h.epoch != -2 {
                    return Err(CgResponse::error(
                        ResponseError::UnreleasedInstanceId,
                        &format!("instance id {instance} is in use by another member"),
                    ));
                }
                // A static member coming back: it takes over its old partitions and epoch,
                // without a rebalance.
                let old = self.members.remove(&h.member_id.clone()).expect("found");
                let target = self.target.remove(&old.member_id);
                inherited = Some((old, target));
            }
        }
        if let Some((old, target)) = inherited {
            let mut m = old;
            m.member_id = member_id.clone();
            m.epoch = m.previous_epoch;
            m.session_deadline = now + self.config.session_timeout_ms;
            if let Some(t) = target {
                self.target.insert(member_id.clone(), t);
            }
            self.members.insert(member_id.clone(), m);
            return Ok((member_id, false));
        }
        if self.members.contains_key(&member_id) {
            // Rejoining under the same id (the member reset itself): start afresh.
            self.members.remove(&member_id);
            self.target.remove(&member_id);
        }
        self.members.insert(
            member_id.clone(),
            CgMember {
                member_id: member_id.clone(),
                instance_id: req.instance_id.clone(),
                rack_id: None,
                client_id: String::new(),
                client_host: String::new(),
                subscribed: BTreeSet::new(),
                server_assignor: None,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                epoch: 0,
                previous_epoch: 0,
                state: MemberState::Stable,
                assigned: Assignment::new(),
                pending_revocation: Assignment::new(),
                session_deadline: now + self.config.session_timeout_ms,
                revocation_deadline: None,
            },
        );
        Ok((member_id, true))
    }

    /// Re-reads the subscribed topics' metadata; true when it changed.
    fn refresh_metadata(&mut self, resolve: &dyn Fn(&str) -> Option<TopicInfo>) -> bool {
        let fresh: BTreeMap<String, TopicInfo> = self
            .subscribed_topics()
            .into_iter()
            .filter_map(|t| resolve(&t).map(|i| (t, i)))
            .collect();
        let changed = fresh != self.metadata;
        self.metadata = fresh;
        changed
    }

    fn compute_target(&mut self) {
        // The assignor most members ask for, else the default.
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.server_assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        self.assignor = votes
            .iter()
            .max_by_key(|(name, n)| (**n, std::cmp::Reverse(**name)))
            .map_or(ASSIGNORS[0], |(name, _)| name)
            .to_string();
        let partitions: BTreeMap<Uuid, i32> = self
            .metadata
            .values()
            .map(|t| (t.id, t.partitions))
            .collect();
        let inputs: BTreeMap<String, AssignorMember<'_>> = self
            .members
            .values()
            .map(|m| {
                let topics = m
                    .subscribed
                    .iter()
                    .filter_map(|t| self.metadata.get(t).map(|i| i.id))
                    .collect();
                (
                    m.member_id.clone(),
                    AssignorMember {
                        topics,
                        previous: self.target.get(&m.member_id),
                    },
                )
            })
            .collect();
        self.target = assignor::assign(&self.assignor, &inputs, &partitions);
        self.assignment_epoch = self.group_epoch;
    }

    /// Whether another member still holds (assigned or revoking) a partition.
    fn held_by_other(&self, me: &str, topic: &Uuid, p: i32) -> bool {
        self.members.values().any(|m| {
            m.member_id != me
                && (m.assigned.get(topic).is_some_and(|ps| ps.contains(&p))
                    || m.pending_revocation
                        .get(topic)
                        .is_some_and(|ps| ps.contains(&p)))
        })
    }

    /// Kafka's CurrentAssignmentBuilder: moves the member towards its target.
    fn reconcile(&mut self, id: &str, owned: Option<&Assignment>, now: i64) {
        let m = &self.members[id];
        let waiting = match m.state {
            MemberState::Stable => m.epoch == self.assignment_epoch,
            // Still owns partitions it was asked to give up.
            MemberState::UnrevokedPartitions => owns_any(owned, &m.pending_revocation),
            MemberState::UnreleasedPartitions => false,
        };
        if waiting {
            return;
        }
        let empty = Assignment::new();
        let target = self.target.get(id).unwrap_or(&empty);
        let mut keep = Assignment::new();
        let mut revoke = Assignment::new();
        let mut unreleased = false;
        let mut next = Assignment::new();
        let topics: BTreeSet<Uuid> = target.keys().chain(m.assigned.keys()).copied().collect();
        for t in topics {
            let cur = m.assigned.get(&t).cloned().unwrap_or_default();
            let tgt = target.get(&t).cloned().unwrap_or_default();
            let kept: BTreeSet<i32> = cur.intersection(&tgt).copied().collect();
            let revoking: BTreeSet<i32> = cur.difference(&tgt).copied().collect();
            let mut new = kept.clone();
            for &p in tgt.difference(&cur) {
                if self.held_by_other(id, &t, p) {
                    unreleased = true;
                } else {
                    new.insert(p);
                }
            }
            if !kept.is_empty() {
                keep.insert(t, kept);
            }
            if !revoking.is_empty() {
                revoke.insert(t, revoking);
            }
            if !new.is_empty() {
                next.insert(t, new);
            }
        }
        let epoch = self.assignment_epoch;
        let m = self.members.get_mut(id).expect("member exists");
        if !revoke.is_empty() && owns_any(owned, &revoke) {
            // Give up first; the epoch moves once the member confirms.
            m.state = MemberState::UnrevokedPartitions;
            m.assigned = keep;
            m.pending_revocation = revoke;
            if m.revocation_deadline.is_none() {
                m.revocation_deadline = Some(now + i64::from(m.rebalance_timeout_ms.max(0)));
            }
            return;
        }
        if m.epoch != epoch {
            m.previous_epoch = m.epoch;
        }
        m.epoch = epoch;
        m.assigned = next;
        m.pending_revocation = Assignment::new();
        m.revocation_deadline = None;
        m.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
    }

    /// Partitions a member holds in total (assigned + revoking).
    #[cfg(test)]
    pub fn held(&self, id: &str) -> usize {
        self.members
            .get(id)
            .map_or(0, |m| count(&m.assigned) + count(&m.pending_revocation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Uuid = Uuid::from_bytes([7; 16]);

    fn topics(name: &str) -> Option<TopicInfo> {
        (name == "t").then_some(TopicInfo {
            id: T,
            partitions: 4,
        })
    }

    fn join(id: &str) -> CgHeartbeat {
        CgHeartbeat {
            member_id: id.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(vec!["t".into()]),
            owned: Some(vec![]),
            ..Default::default()
        }
    }

    fn hb(id: &str, epoch: i32, owned: Option<&Assignment>) -> CgHeartbeat {
        CgHeartbeat {
            member_id: id.into(),
            member_epoch: epoch,
            rebalance_timeout_ms: -1,
            owned: owned.map(|a| {
                a.iter()
                    .map(|(t, ps)| (*t, ps.iter().copied().collect()))
                    .collect()
            }),
            ..Default::default()
        }
    }

    fn parts(r: &CgResponse) -> BTreeSet<i32> {
        r.assignment
            .as_ref()
            .expect("assignment sent")
            .get(&T)
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn first_member_gets_everything() {
        let mut g = ConsumerGroup::new("g", Default::default());
        let r = g.heartbeat(join("a"), 0, &topics);
        assert_eq!(r.error, None);
        assert_eq!(r.member_id.as_deref(), Some("a"));
        assert_eq!(r.member_epoch, 1);
        assert_eq!(r.heartbeat_interval_ms, 5_000);
        assert_eq!(parts(&r), BTreeSet::from([0, 1, 2, 3]));
        assert_eq!(g.state_name(), "Stable");
        // Nothing changed: no assignment in the answer.
        let a = r.assignment.unwrap();
        let r = g.heartbeat(hb("a", 1, Some(&a)), 10, &topics);
        assert_eq!((r.error, r.member_epoch, r.assignment), (None, 1, None));
    }

    #[test]
    fn v0_server_generates_member_id_and_v1_requires_one() {
        let mut g = ConsumerGroup::new("g", Default::default());
        let mut req = join("");
        let r = g.heartbeat(req.clone(), 0, &topics);
        assert_eq!(r.error, Some(ResponseError::InvalidRequest));
        req.server_generates_id = true;
        let r = g.heartbeat(req, 0, &topics);
        assert_eq!(r.error, None);
        assert_eq!(r.member_id.unwrap().len(), 36);
    }

    #[test]
    fn two_members_split_with_revocation_first() {
        let mut g = ConsumerGroup::new("g", Default::default());
        let ra = g.heartbeat(join("a"), 0, &topics);
        let a_owned = ra.assignment.clone().unwrap();
        let rb = g.heartbeat(join("b"), 1, &topics);
        // b's target partitions are still a's: withheld, but b is at the new epoch.
        assert_eq!(rb.member_epoch, 2);
        assert!(parts(&rb).is_empty());
        assert_eq!(g.state_name(), "Reconciling");
        // a learns it must give up two partitions; its epoch stays until it confirms.
        let ra2 = g.heartbeat(hb("a", 1, Some(&a_owned)), 2, &topics);
        assert_eq!(ra2.member_epoch, 1);
        let kept = parts(&ra2);
        assert_eq!(kept.len(), 2);
        // b still cannot have them: a has not confirmed.
        let rb2 = g.heartbeat(hb("b", 2, Some(&Assignment::new())), 3, &topics);
        assert!(rb2.assignment.is_none());
        assert_eq!(g.held("b"), 0);
        // a confirms (owned = kept): it moves to epoch 3.
        let a_now = ra2.assignment.unwrap();
        let ra3 = g.heartbeat(hb("a", 1, Some(&a_now)), 4, &topics);
        assert_eq!((ra3.error, ra3.member_epoch), (None, 2));
        // Now b gets the released partitions.
        let rb3 = g.heartbeat(hb("b", 2, Some(&Assignment::new())), 5, &topics);
        let b = parts(&rb3);
        assert_eq!(b.len(), 2);
        assert!(b.is_disjoint(&kept));
        assert_eq!(g.state_name(), "Stable");
    }

    #[test]
    fn null_owned_partitions_mean_still_owned() {
        let mut g = ConsumerGroup::new("g", Default::default());
        let ra = g.heartbeat(join("a"), 0, &topics);
        g.heartbeat(join("b"), 1, &topics);
        let r = g.heartbeat(hb("a", 1, ra.assignment.as_ref()), 2, &topics);
        assert_eq!(r.member_epoch, 1);
        let r = g.heartbeat(hb("a", 1, None), 3, &topics);
        assert_eq!(r.member_epoch, 1);
        assert_eq!(
            g.member("a").unwrap().state,
            MemberState::UnrevokedPartitions
        );
    }

    #[test]
    fn leave_rebalances_to_the_rest() {
        let mut g = ConsumerGroup::new("g", Default::default());
        g.heartbeat(join("a"), 0, &topics);
        g.heartbeat(join("b"), 0, &topics);
        let r = g.heartbeat(hb("b", -1, None), 1, &topics);
        assert_eq!((r.error, r.member_epoch), (None, -1));
        assert!(g.member("b").is_none());
        let r = g.heartbeat(hb("a", 1, None), 2, &topics);
        // a never gave anything up, so its assignment did not change: only the epoch moves.
        assert_eq!((r.member_epoch, r.assignment), (3, None));
        assert_eq!(g.held("a"), 4);
        // Leaving twice: unknown.
        let r = g.heartbeat(hb("b", -1, None), 3, &topics);
        assert_eq!(r.error, Some(ResponseError::UnknownMemberId));
    }

    #[test]
    fn session_expiry_removes_member() {
        let mut g = ConsumerGroup::new("g", Default::default());
        g.heartbeat(join("a"), 0, &topics);
        assert!(g.tick(45_000).is_empty());
        assert_eq!(g.tick(45_001), vec!["a".to_string()]);
        assert!(g.is_empty());
        assert_eq!(g.state_name(), "Empty");
        let r = g.heartbeat(hb("a", 1, None), 45_002, &topics);
        assert_eq!(r.error, Some(ResponseError::UnknownMemberId));
    }

    #[test]
    fn revocation_timeout_fences() {
        let mut g = ConsumerGroup::new("g", Default::default());
        let ra = g.heartbeat(join("a"), 0, &topics);
        g.heartbeat(join("b"), 0, &topics);
        g.heartbeat(hb("a", 1, ra.assignment.as_ref()), 1, &topics);
        assert!(g.tick(30_001).is_empty());
        assert_eq!(g.tick(30_002), vec!["a".to_string()]);
    }

    #[test]
    fn fenced_epochs() {
        let mut g = ConsumerGroup::new("g", Default::default());
        let r = g.heartbeat(join("a"), 0, &topics);
        let a = r.assignment.unwrap();
        // A new assignor moves the group (and a) to epoch 2; previous epoch 1.
        let mut change = hb("a", 1, Some(&a));
        change.server_assignor = Some("range".into());
        assert_eq!(g.heartbeat(change, 1, &topics).member_epoch, 2);
        let r = g.heartbeat(hb("a", 3, Some(&a)), 2, &topics);
        assert_eq!(r.error, Some(ResponseError::FencedMemberEpoch));
        // The previous epoch owning exactly its partitions is a lost response: fine.
        let r = g.heartbeat(hb("a", 1, Some(&a)), 3, &topics);
        assert_eq!((r.error, r.member_epoch), (None, 2));
        let foreign = Assignment::from([(T, BTreeSet::from([9]))]);
        let r = g.heartbeat(hb("a", 1, Some(&foreign)), 4, &topics);
        assert_eq!(r.error, Some(ResponseError::FencedMemberEpoch));
        assert_eq!(
            g.validate_offset_request("a", 1),
            Err(ResponseError::StaleMemberEpoch)
        );
        assert_eq!(g.validate_offset_request("a", 2), Ok(()));
        assert_eq!(
            g.validate_offset_request("x", 2),
            Err(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn bad_requests() {
        let mut g = ConsumerGroup::new("g", Default::default());
        let mut r = join("a");
        r.rebalance_timeout_ms = -1;
        assert_eq!(
            g.heartbeat(r, 0, &topics).error,
            Some(ResponseError::InvalidRequest)
        );
        let mut r = join("a");
        r.subscribed_topic_names = None;
        assert_eq!(
            g.heartbeat(r, 0, &topics).error,
            Some(ResponseError::InvalidRequest)
        );
        let mut r = join("a");
        r.server_assignor = Some("sticky".into());
        assert_eq!(
            g.heartbeat(r, 0, &topics).error,
            Some(ResponseError::UnsupportedAssignor)
        );
        let r = hb("a", -2, None);
        assert_eq!(
            g.heartbeat(r, 0, &topics).error,
            Some(ResponseError::InvalidRequest)
        );
    }

    #[test]
    fn static_members_leave_and_return() {
        let mut g = ConsumerGroup::new("g", Default::default());
        let mut j = join("a");
        j.instance_id = Some("i1".into());
        let r = g.heartbeat(j.clone(), 0, &topics);
        let epoch = r.member_epoch;
        // Another member claiming the instance while a is active.
        let mut other = join("b");
        other.instance_id = Some("i1".into());
        assert_eq!(
            g.heartbeat(other.clone(), 1, &topics).error,
            Some(ResponseError::UnreleasedInstanceId)
        );
        let mut leave = hb("a", -2, None);
        leave.instance_id = Some("i1".into());
        assert_eq!(g.heartbeat(leave, 2, &topics).member_epoch, -2);
        // The replacement takes over its partitions and epoch without a rebalance.
        let r = g.heartbeat(other, 3, &topics);
        assert_eq!((r.error, r.member_epoch), (None, epoch));
        assert_eq!(parts(&r).len(), 4);
        assert_eq!(g.group_epoch(), epoch);
    }

    #[test]
    fn range_assignor_by_request() {
        let mut g = ConsumerGroup::new("g", Default::default());
        let mut j = join("a");
        j.server_assignor = Some("range".into());
        let r = g.heartbeat(j, 0, &topics);
        assert_eq!(g.assignor_name(), "range");
        assert_eq!(parts(&r).len(), 4);
    }
}
