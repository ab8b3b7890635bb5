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
//! Regex subscriptions (Kafka 4's `subscribed_topic_regex`): a regex new to the group is
//! compiled when it arrives (INVALID_REGULAR_EXPRESSION if it does not) and resolved at once
//! against every topic name; resolutions are refreshed on heartbeats at most every
//! `regex_refresh_interval_ms` (Kafka's fixed 10 s batch interval), and a change in what a regex
//! matches bumps the group epoch. Kafka resolves asynchronously and bumps once the result is
//! in; here the topic list is an input ([`TopicSource`]) and resolution is synchronous.
//!
//! Not implemented: rack-aware assignment, persistence.

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

/// The broker's topics as a consumer group sees them: an input, so the state machine does no
/// I/O.
pub trait TopicSource {
    /// A topic's metadata, if it exists.
    fn info(&self, name: &str) -> Option<TopicInfo>;
    /// Every topic name (for regex subscriptions).
    fn names(&self) -> Vec<String>;
}

/// Timeouts of consumer groups (Kafka's group.consumer.* defaults).
#[derive(Debug, Clone)]
pub struct ConsumerGroupConfig {
    pub session_timeout_ms: i64,
    pub heartbeat_interval_ms: i32,
    /// Minimum time between two re-resolutions of a group's regexes against the topic list
    /// (Kafka's `REGEX_BATCH_REFRESH_INTERVAL_MS`, 10 s, not configurable there).
    pub regex_refresh_interval_ms: i64,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        ConsumerGroupConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            regex_refresh_interval_ms: 10_000,
        }
    }
}

/// A compiled subscription regex and the topics it matched at its last resolution.
#[derive(Debug, Clone)]
struct ResolvedRegex {
    /// Anchored at both ends: Kafka matches with `Matcher.matches()`, the whole name.
    matcher: regex::bytes::Regex,
    topics: BTreeSet<String>,
}

/// Longest subscription regex accepted, in bytes. Kafka has no limit, but regexes are compiled
/// under the group's lock from what any client sends. 4 KiB still holds an alternation of
/// dozens of full topic names; the compiled size is bounded separately.
const MAX_REGEX_LEN: usize = 4096;

/// Bound on the compiled program and on the lazy DFA's cache (the crate's defaults are 10 and
/// 2 MiB), still far above what a topic-name pattern such as `\w{1,249}` needs.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A regex new to the group as the member sent it, and compiled.
type NewRegex = (String, regex::bytes::Regex);

/// Compiles a subscription regex, anchored at both ends; the error text follows Kafka's
/// `throwIfRegularExpressionIsInvalid`.
fn compile_regex(re: &str) -> Result<regex::bytes::Regex, String> {
    let invalid = |e: &dyn std::fmt::Display| {
        format!("SubscribedTopicRegex `{re}` is not a valid regular expression: {e}.")
    };
    if re.len() > MAX_REGEX_LEN {
        return Err(format!(
            "SubscribedTopicRegex is not a valid regular expression: it is {} bytes long, longer \
             than the {MAX_REGEX_LEN} bytes this broker accepts.",
            re.len()
        ));
    }
    // Unicode off: RE2/J's `\w`, `\d` and `\s` are ASCII, as are topic names, and Unicode
    // classes would make a bounded repetition like `\w{1,249}` too big to compile.
    // The pattern as sent must parse on its own: otherwise `a)|(?:b` would close the anchoring
    // group and match names the client's pattern does not. Parsing is cheap; only the anchored
    // form is compiled.
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(re)
        .map_err(|e| invalid(&e))?;
    regex::bytes::RegexBuilder::new(&format!("^(?:{re})$"))
        .unicode(false)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| invalid(&e))
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
    /// `subscribed_topic_regex`; `None` when absent or empty.
    pub subscribed_regex: Option<String>,
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
    /// The members' regexes, resolved.
    regexes: BTreeMap<String, ResolvedRegex>,
    /// When the regexes were last resolved against the topic list.
    regexes_resolved_at: i64,
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
            regexes: BTreeMap::new(),
            regexes_resolved_at: i64::MIN,
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
    /// Topics any member subscribes to, by name or through its regex.
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| self.member_topics(m))
            .collect()
    }

    /// A member's topics: its names plus what its regex matched at the last resolution.
    pub fn member_topics(&self, m: &CgMember) -> BTreeSet<String> {
        let mut topics = m.subscribed.clone();
        if let Some(r) = m
            .subscribed_regex
            .as_ref()
            .and_then(|r| self.regexes.get(r))
        {
            topics.extend(r.topics.iter().cloned());
        }
        topics
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
        topics: &dyn TopicSource,
    ) -> CgResponse {
        let new_regex = match self.validate(&req) {
            Ok(compiled) => compiled,
            Err(r) => return r,
        };
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
            if let Some(re) = &req.subscribed_topic_regex {
                let re = (!re.is_empty()).then(|| re.clone());
                if re != m.subscribed_regex {
                    m.subscribed_regex = re;
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
        if self.refresh_regexes(topics, now, new_regex) {
            bump = true;
        }
        if self.refresh_metadata(topics) {
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

    /// Checks a heartbeat before anything changes; returns the compiled regex when the request
    /// brings one new to the group, for [`Self::refresh_regexes`] to keep.
    fn validate(&self, req: &CgHeartbeat) -> Result<Option<NewRegex>, CgResponse> {
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
            if req.owned.as_ref().is_none_or(|o| !o.is_empty()) {
                return bad("topic partitions must be empty when (re-)joining");
            }
            // As Kafka 4.3: a member may join with an empty list or regex (Java's consumer does
            // while its client-side pattern matches nothing yet); only both absent is refused.
            if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
                return bad(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        if req.member_epoch == -2 && req.instance_id.is_none() {
            return bad("instance id must be set to leave as a static member");
        }
        if let Some(a) = &req.server_assignor {
            if !ASSIGNORS.contains(&a.as_str()) {
                return Err(CgResponse::error(
                    ResponseError::UnsupportedAssignor,
                    &format!("assignor {a} is not supported; use one of {ASSIGNORS:?}"),
                ));
            }
        }
        match req.subscribed_topic_regex.as_deref() {
            // Only a regex new to the group is compiled, as in Kafka; the others compiled
            // when they arrived.
            Some(re) if !re.is_empty() && !self.regexes.contains_key(re) => compile_regex(re)
                .map(|m| Some((re.to_string(), m)))
                .map_err(|message| {
                    CgResponse::error(ResponseError::InvalidRegularExpression, &message)
                }),
            _ => Ok(None),
        }
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
                subscribed_regex: None,
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

    /// Resolves the members' regexes against the topic list: at once for a regex new to the
    /// group, otherwise at most every `regex_refresh_interval_ms`. Regexes no member uses any
    /// more are dropped. True when what an already resolved regex matches changed. `new` is the
    /// regex this heartbeat brought, compiled by [`Self::validate`].
    fn refresh_regexes(
        &mut self,
        topics: &dyn TopicSource,
        now: i64,
        mut new: Option<NewRegex>,
    ) -> bool {
        let used: BTreeSet<String> = self
            .members
            .values()
            .filter_map(|m| m.subscribed_regex.clone())
            .collect();
        self.regexes.retain(|re, _| used.contains(re));
        if used.is_empty() {
            return false;
        }
        let unresolved = used.iter().any(|re| !self.regexes.contains_key(re));
        let due =
            now.saturating_sub(self.regexes_resolved_at) >= self.config.regex_refresh_interval_ms;
        if !unresolved && !due {
            return false;
        }
        let names = topics.names();
        let mut changed = false;
        for re in used {
            let matcher = match self.regexes.get(&re) {
                Some(r) => r.matcher.clone(),
                None => match new.take_if(|(r, _)| *r == re) {
                    Some((_, m)) => m,
                    // Every member's regex is resolved on the heartbeat that brought it, so
                    // this is not reached; skip the regex rather than trust it if it is.
                    None => match compile_regex(&re) {
                        Ok(m) => m,
                        Err(_) => continue,
                    },
                },
            };
            let matched: BTreeSet<String> = names
                .iter()
                .filter(|n| matcher.is_match(n.as_bytes()))
                .cloned()
                .collect();
            match self.regexes.get_mut(&re) {
                Some(r) => {
                    if r.topics != matched {
                        r.topics = matched;
                        changed = true;
                    }
                }
                None => {
                    self.regexes.insert(
                        re,
                        ResolvedRegex {
                            matcher,
                            topics: matched,
                        },
                    );
                }
            }
        }
        self.regexes_resolved_at = now;
        changed
    }

    /// Re-reads the subscribed topics' metadata; true when it changed.
    fn refresh_metadata(&mut self, topics: &dyn TopicSource) -> bool {
        let fresh: BTreeMap<String, TopicInfo> = self
            .subscribed_topics()
            .into_iter()
            .filter_map(|t| topics.info(&t).map(|i| (t, i)))
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
                let topics = self
                    .member_topics(m)
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

    /// One topic `t` with 4 partitions.
    struct OneTopic;

    impl TopicSource for OneTopic {
        fn info(&self, name: &str) -> Option<TopicInfo> {
            (name == "t").then_some(TopicInfo {
                id: T,
                partitions: 4,
            })
        }
        fn names(&self) -> Vec<String> {
            vec!["t".into()]
        }
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
        let r = g.heartbeat(join("a"), 0, &OneTopic);
        assert_eq!(r.error, None);
        assert_eq!(r.member_id.as_deref(), Some("a"));
        assert_eq!(r.member_epoch, 1);
        assert_eq!(r.heartbeat_interval_ms, 5_000);
        assert_eq!(parts(&r), BTreeSet::from([0, 1, 2, 3]));
        assert_eq!(g.state_name(), "Stable");
        // Nothing changed: no assignment in the answer.
        let a = r.assignment.unwrap();
        let r = g.heartbeat(hb("a", 1, Some(&a)), 10, &OneTopic);
        assert_eq!((r.error, r.member_epoch, r.assignment), (None, 1, None));
    }

    #[test]
    fn v0_server_generates_member_id_and_v1_requires_one() {
        let mut g = ConsumerGroup::new("g", Default::default());
        let mut req = join("");
        let r = g.heartbeat(req.clone(), 0, &OneTopic);
        assert_eq!(r.error, Some(ResponseError::InvalidRequest));
        req.server_generates_id = true;
        let r = g.heartbeat(req, 0, &OneTopic);
        assert_eq!(r.error, None);
        assert_eq!(r.member_id.unwrap().len(), 36);
    }

    #[test]
    fn two_members_split_with_revocation_first() {
        let mut g = ConsumerGroup::new("g", Default::default());
        let ra = g.heartbeat(join("a"), 0, &OneTopic);
        let a_owned = ra.assignment.clone().unwrap();
        let rb = g.heartbeat(join("b"), 1, &OneTopic);
        // b's target partitions are still a's: withheld, but b is at the new epoch.
        assert_eq!(rb.member_epoch, 2);
        assert!(parts(&rb).is_empty());
        assert_eq!(g.state_name(), "Reconciling");
        // a learns it must give up two partitions; its epoch stays until it confirms.
        let ra2 = g.heartbeat(hb("a", 1, Some(&a_owned)), 2, &OneTopic);
        assert_eq!(ra2.member_epoch, 1);
        let kept = parts(&ra2);
        assert_eq!(kept.len(), 2);
        // b still cannot have them: a has not confirmed.
        let rb2 = g.heartbeat(hb("b", 2, Some(&Assignment::new())), 3, &OneTopic);
        assert!(rb2.assignment.is_none());
        assert_eq!(g.held("b"), 0);
        // a confirms (owned = kept): it moves to epoch 3.
        let a_now = ra2.assignment.unwrap();
        let ra3 = g.heartbeat(hb("a", 1, Some(&a_now)), 4, &OneTopic);
        assert_eq!((ra3.error, ra3.member_epoch), (None, 2));
        // Now b gets the released partitions.
        let rb3 = g.heartbeat(hb("b", 2, Some(&Assignment::new())), 5, &OneTopic);
        let b = parts(&rb3);
        assert_eq!(b.len(), 2);
        assert!(b.is_disjoint(&kept));
        assert_eq!(g.state_name(), "Stable");
    }

    #[test]
    fn null_owned_partitions_mean_still_owned() {
        let mut g = ConsumerGroup::new("g", Default::default());
        let ra = g.heartbeat(join("a"), 0, &OneTopic);
        g.heartbeat(join("b"), 1, &OneTopic);
        let r = g.heartbeat(hb("a", 1, ra.assignment.as_ref()), 2, &OneTopic);
        assert_eq!(r.member_epoch, 1);
        let r = g.heartbeat(hb("a", 1, None), 3, &OneTopic);
        assert_eq!(r.member_epoch, 1);
        assert_eq!(
            g.member("a").unwrap().state,
            MemberState::UnrevokedPartitions
        );
    }

    #[test]
    fn leave_rebalances_to_the_rest() {
        let mut g = ConsumerGroup::new("g", Default::default());
        g.heartbeat(join("a"), 0, &OneTopic);
        g.heartbeat(join("b"), 0, &OneTopic);
        let r = g.heartbeat(hb("b", -1, None), 1, &OneTopic);
        assert_eq!((r.error, r.member_epoch), (None, -1));
        assert!(g.member("b").is_none());
        let r = g.heartbeat(hb("a", 1, None), 2, &OneTopic);
        // a never gave anything up, so its assignment did not change: only the epoch moves.
        assert_eq!((r.member_epoch, r.assignment), (3, None));
        assert_eq!(g.held("a"), 4);
        // Leaving twice: unknown.
        let r = g.heartbeat(hb("b", -1, None), 3, &OneTopic);
        assert_eq!(r.error, Some(ResponseError::UnknownMemberId));
    }

    #[test]
    fn session_expiry_removes_member() {
        let mut g = ConsumerGroup::new("g", Default::default());
        g.heartbeat(join("a"), 0, &OneTopic);
        assert!(g.tick(45_000).is_empty());
        assert_eq!(g.tick(45_001), vec!["a".to_string()]);
        assert!(g.is_empty());
        assert_eq!(g.state_name(), "Empty");
        let r = g.heartbeat(hb("a", 1, None), 45_002, &OneTopic);
        assert_eq!(r.error, Some(ResponseError::UnknownMemberId));
    }

    #[test]
    fn revocation_timeout_fences() {
        let mut g = ConsumerGroup::new("g", Default::default());
        let ra = g.heartbeat(join("a"), 0, &OneTopic);
        g.heartbeat(join("b"), 0, &OneTopic);
        g.heartbeat(hb("a", 1, ra.assignment.as_ref()), 1, &OneTopic);
        assert!(g.tick(30_001).is_empty());
        assert_eq!(g.tick(30_002), vec!["a".to_string()]);
    }

    #[test]
    fn fenced_epochs() {
        let mut g = ConsumerGroup::new("g", Default::default());
        let r = g.heartbeat(join("a"), 0, &OneTopic);
        let a = r.assignment.unwrap();
        // A new assignor moves the group (and a) to epoch 2; previous epoch 1.
        let mut change = hb("a", 1, Some(&a));
        change.server_assignor = Some("range".into());
        assert_eq!(g.heartbeat(change, 1, &OneTopic).member_epoch, 2);
        let r = g.heartbeat(hb("a", 3, Some(&a)), 2, &OneTopic);
        assert_eq!(r.error, Some(ResponseError::FencedMemberEpoch));
        // The previous epoch owning exactly its partitions is a lost response: fine.
        let r = g.heartbeat(hb("a", 1, Some(&a)), 3, &OneTopic);
        assert_eq!((r.error, r.member_epoch), (None, 2));
        let foreign = Assignment::from([(T, BTreeSet::from([9]))]);
        let r = g.heartbeat(hb("a", 1, Some(&foreign)), 4, &OneTopic);
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
            g.heartbeat(r, 0, &OneTopic).error,
            Some(ResponseError::InvalidRequest)
        );
        let mut r = join("a");
        r.subscribed_topic_names = None;
        assert_eq!(
            g.heartbeat(r, 0, &OneTopic).error,
            Some(ResponseError::InvalidRequest)
        );
        // Both absent is refused with Kafka's message...
        let mut r = join("a");
        r.subscribed_topic_names = None;
        r.subscribed_topic_regex = None;
        let r = g.heartbeat(r, 0, &OneTopic);
        assert_eq!(
            (r.error, r.message.as_deref()),
            (
                Some(ResponseError::InvalidRequest),
                Some("SubscribedTopicNames or SubscribedTopicRegex must be set in first request.")
            )
        );
        assert!(g.is_empty());
        // ...but an empty list joins (Java's consumer sends one while its pattern matches
        // nothing yet); the member simply owns nothing.
        let mut r = join("empty");
        r.subscribed_topic_names = Some(vec![]);
        assert_eq!(g.heartbeat(r, 0, &OneTopic).error, None);
        assert!(!g.is_empty());
        let mut r = join("a");
        r.server_assignor = Some("sticky".into());
        assert_eq!(
            g.heartbeat(r, 0, &OneTopic).error,
            Some(ResponseError::UnsupportedAssignor)
        );
        let r = hb("a", -2, None);
        assert_eq!(
            g.heartbeat(r, 0, &OneTopic).error,
            Some(ResponseError::InvalidRequest)
        );
    }

    #[test]
    fn static_members_leave_and_return() {
        let mut g = ConsumerGroup::new("g", Default::default());
        let mut j = join("a");
        j.instance_id = Some("i1".into());
        let r = g.heartbeat(j.clone(), 0, &OneTopic);
        let epoch = r.member_epoch;
        // Another member claiming the instance while a is active.
        let mut other = join("b");
        other.instance_id = Some("i1".into());
        assert_eq!(
            g.heartbeat(other.clone(), 1, &OneTopic).error,
            Some(ResponseError::UnreleasedInstanceId)
        );
        let mut leave = hb("a", -2, None);
        leave.instance_id = Some("i1".into());
        assert_eq!(g.heartbeat(leave, 2, &OneTopic).member_epoch, -2);
        // The replacement takes over its partitions and epoch without a rebalance.
        let r = g.heartbeat(other, 3, &OneTopic);
        assert_eq!((r.error, r.member_epoch), (None, epoch));
        assert_eq!(parts(&r).len(), 4);
        assert_eq!(g.group_epoch(), epoch);
    }

    #[test]
    fn range_assignor_by_request() {
        let mut g = ConsumerGroup::new("g", Default::default());
        let mut j = join("a");
        j.server_assignor = Some("range".into());
        let r = g.heartbeat(j, 0, &OneTopic);
        assert_eq!(g.assignor_name(), "range");
        assert_eq!(parts(&r).len(), 4);
    }

    /// A mutable set of topics, each with 2 partitions.
    struct Cluster(std::cell::RefCell<BTreeMap<String, TopicInfo>>);

    impl Cluster {
        fn new(names: &[&str]) -> Cluster {
            let c = Cluster(Default::default());
            for n in names {
                c.create(n);
            }
            c
        }
        fn create(&self, name: &str) {
            let id = Uuid::new_v4();
            self.0
                .borrow_mut()
                .insert(name.into(), TopicInfo { id, partitions: 2 });
        }
        fn delete(&self, name: &str) {
            self.0.borrow_mut().remove(name);
        }
        fn id(&self, name: &str) -> Uuid {
            self.0.borrow()[name].id
        }
    }

    impl TopicSource for Cluster {
        fn info(&self, name: &str) -> Option<TopicInfo> {
            self.0.borrow().get(name).copied()
        }
        fn names(&self) -> Vec<String> {
            self.0.borrow().keys().cloned().collect()
        }
    }

    fn join_regex(id: &str, re: &str) -> CgHeartbeat {
        CgHeartbeat {
            subscribed_topic_names: None,
            subscribed_topic_regex: Some(re.into()),
            ..join(id)
        }
    }

    /// Topic names in an assignment.
    fn topic_names(c: &Cluster, a: &Assignment) -> BTreeSet<String> {
        let ids: BTreeMap<Uuid, String> =
            c.0.borrow()
                .iter()
                .map(|(n, t)| (t.id, n.clone()))
                .collect();
        a.keys().map(|id| ids[id].clone()).collect()
    }

    #[test]
    fn a_regex_subscribes_to_every_topic_whose_whole_name_matches() {
        let c = Cluster::new(&["orders-eu", "orders-us", "old-orders-x", "other"]);
        let mut g = ConsumerGroup::new("g", Default::default());
        let r = g.heartbeat(join_regex("a", "orders-.*"), 0, &c);
        assert_eq!((r.error, r.member_epoch), (None, 1));
        let a = r.assignment.unwrap();
        assert_eq!(
            topic_names(&c, &a),
            BTreeSet::from(["orders-eu".to_string(), "orders-us".to_string()])
        );
        assert_eq!(a.values().map(|p| p.len()).sum::<usize>(), 4);
        // Explicit anchors are fine too.
        let r = g.heartbeat(join_regex("b", "^other$"), 1, &c);
        assert_eq!(r.error, None);
        assert_eq!(
            g.subscribed_topics(),
            BTreeSet::from(["orders-eu".into(), "orders-us".into(), "other".into()])
        );
    }

    #[test]
    fn an_invalid_regex_is_refused_and_the_member_not_admitted() {
        let c = Cluster::new(&["t"]);
        let mut g = ConsumerGroup::new("g", Default::default());
        let r = g.heartbeat(join_regex("a", "orders-(.*"), 0, &c);
        assert_eq!(r.error, Some(ResponseError::InvalidRegularExpression));
        assert_eq!(ResponseError::InvalidRegularExpression.code(), 128);
        assert!(r
            .message
            .unwrap()
            .starts_with("SubscribedTopicRegex `orders-(.*` is not a valid regular expression: "));
        assert!(g.is_empty());
        assert_eq!(g.group_epoch(), 0);
        // A member changing to an invalid regex is refused and keeps its subscription.
        let r = g.heartbeat(join_regex("a", "t"), 0, &c);
        assert_eq!(r.member_epoch, 1);
        let mut bad = hb("a", 1, r.assignment.as_ref());
        bad.subscribed_topic_regex = Some("[".into());
        let r = g.heartbeat(bad, 10, &c);
        assert_eq!(r.error, Some(ResponseError::InvalidRegularExpression));
        assert_eq!(
            g.member("a").unwrap().subscribed_regex.as_deref(),
            Some("t")
        );
        assert_eq!(g.group_epoch(), 1);
    }

    #[test]
    fn an_over_long_regex_is_refused() {
        let c = Cluster::new(&["t"]);
        let mut g = ConsumerGroup::new("g", Default::default());
        let r = g.heartbeat(join_regex("a", &"t|".repeat(3000)), 0, &c);
        assert_eq!(r.error, Some(ResponseError::InvalidRegularExpression));
        let message = r.message.unwrap();
        assert!(message.contains("longer than the 4096 bytes"), "{message}");
        assert!(g.is_empty());
        // Under the length limit but too big compiled: refused as well.
        let r = g.heartbeat(join_regex("a", r"(?:(?:\w{249}){249}){249}"), 0, &c);
        assert_eq!(r.error, Some(ResponseError::InvalidRegularExpression));
        assert!(g.is_empty());
    }

    #[test]
    fn ascii_classes_with_long_repetitions_are_accepted_as_kafka_does() {
        let c = Cluster::new(&["orders_eu", "orders-us"]);
        let mut g = ConsumerGroup::new("g", Default::default());
        let r = g.heartbeat(join_regex("a", r"\w{1,249}"), 0, &c);
        assert_eq!((r.error, r.message), (None, None));
        // `-` is no word character: only the first topic matches.
        assert_eq!(
            g.subscribed_topics(),
            BTreeSet::from(["orders_eu".to_string()])
        );
    }

    #[test]
    fn a_regex_cannot_escape_the_anchors() {
        let c = Cluster::new(&["a", "ab", "xb"]);
        let mut g = ConsumerGroup::new("g", Default::default());
        // Anchored naively, `^(?:a)|(?:b)$` would be valid and match every name starting with
        // `a` or ending with `b`.
        let r = g.heartbeat(join_regex("a", "a)|(?:b"), 0, &c);
        assert_eq!(r.error, Some(ResponseError::InvalidRegularExpression));
        assert!(g.is_empty());
    }

    #[test]
    fn topics_created_later_are_picked_up_at_the_next_refresh_and_bump_the_epoch() {
        let c = Cluster::new(&["orders-eu"]);
        let mut g = ConsumerGroup::new("g", Default::default());
        let r = g.heartbeat(join_regex("a", "orders-.*"), 0, &c);
        let mut owned = r.assignment.unwrap();
        c.create("orders-us");
        // Within the refresh interval (10 s): not looked for yet.
        let r = g.heartbeat(hb("a", 1, Some(&owned)), 5_000, &c);
        assert_eq!((r.member_epoch, r.assignment.is_none()), (1, true));
        assert_eq!(g.group_epoch(), 1);
        // After it: resolved again, a new group epoch, and the member gets the new topic.
        let r = g.heartbeat(hb("a", 1, Some(&owned)), 10_000, &c);
        assert_eq!(g.group_epoch(), 2);
        assert_eq!(r.member_epoch, 2);
        owned = r.assignment.unwrap();
        assert_eq!(
            topic_names(&c, &owned),
            BTreeSet::from(["orders-eu".to_string(), "orders-us".to_string()])
        );
        // Nothing new: a refresh that matches the same topics does not bump.
        let r = g.heartbeat(hb("a", 2, Some(&owned)), 30_000, &c);
        assert_eq!((r.member_epoch, g.group_epoch()), (2, 2));
    }

    #[test]
    fn a_deleted_topic_leaves_the_assignment_without_waiting_for_a_refresh() {
        let c = Cluster::new(&["orders-eu", "orders-us"]);
        let mut g = ConsumerGroup::new("g", Default::default());
        let r = g.heartbeat(join_regex("a", "orders-.*"), 0, &c);
        let owned = r.assignment.unwrap();
        let us = c.id("orders-us");
        c.delete("orders-us");
        let r = g.heartbeat(hb("a", 1, Some(&owned)), 100, &c);
        assert_eq!(g.group_epoch(), 2);
        let now = r.assignment.expect("assignment changed");
        assert!(!now.contains_key(&us));
        assert_eq!(
            topic_names(&c, &now),
            BTreeSet::from(["orders-eu".to_string()])
        );
    }

    #[test]
    fn changing_between_names_and_regex_bumps_and_unused_regexes_are_dropped() {
        let c = Cluster::new(&["t", "orders-eu"]);
        let mut g = ConsumerGroup::new("g", Default::default());
        let r = g.heartbeat(join("a"), 0, &c);
        assert_eq!(g.group_epoch(), 1);
        let owned = r.assignment.unwrap();
        // Names and regex together: the union.
        let mut both = hb("a", 1, Some(&owned));
        both.subscribed_topic_regex = Some("orders-.*".into());
        let r = g.heartbeat(both, 10, &c);
        assert_eq!((r.error, g.group_epoch(), r.member_epoch), (None, 2, 2));
        assert_eq!(
            g.subscribed_topics(),
            BTreeSet::from(["orders-eu".into(), "t".into()])
        );
        // An empty regex clears it; the resolved regex is forgotten.
        let mut clear = hb("a", 2, None);
        clear.subscribed_topic_regex = Some(String::new());
        let r = g.heartbeat(clear, 20, &c);
        assert_eq!(r.error, None);
        assert_eq!(g.group_epoch(), 3);
        assert_eq!(g.member("a").unwrap().subscribed_regex, None);
        assert_eq!(g.subscribed_topics(), BTreeSet::from(["t".into()]));
        assert!(g.regexes.is_empty());
    }
}
