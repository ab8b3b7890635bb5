//! Partition assignors (run by the group leader) and the embedded "consumer" protocol: the
//! subscription and assignment blobs carried opaquely by JoinGroup and SyncGroup.
//!
//! Names and algorithms follow Kafka's Java client (`range`, `roundrobin`) so a Spool member can
//! share a group with Java, librdkafka or other members: the coordinator only picks a protocol
//! every member lists, and whichever member is leader computes everyone's assignment.
//!
//! Wire format (Java's `ConsumerProtocol`): a big-endian `i16` version, then
//! `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment` at that version. Versions newer
//! than this client knows are read as the newest it knows (the format only ever appends fields).

use spool_protocol::embedded::{self, Embedded};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::error::{Error, Result};

/// Newest `ConsumerProtocolSubscription`/`ConsumerProtocolAssignment` version known here.
pub const CONSUMER_PROTOCOL_VERSION: i16 = 3;

/// One member's subscription as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberSubscription {
    /// Member id assigned by the coordinator.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// Subscribed topics.
    pub topics: Vec<String>,
    /// Partitions the member owned before this rebalance (sent by v1+ subscriptions).
    pub owned_partitions: Vec<(String, i32)>,
    /// Assignor-specific user data.
    pub user_data: Option<Bytes>,
    /// The generation the owned partitions belong to (-1 when unknown).
    pub generation_id: i32,
    /// `client.rack`, when set.
    pub rack_id: Option<String>,
}

/// The result of an assignment: member id -> assigned (topic, partition) pairs.
pub type GroupAssignment = BTreeMap<String, Vec<(String, i32)>>;

/// What this member was last assigned and in which generation (what Java's assignors learn in
/// `onAssignment`). Eager members give their partitions up before rejoining, so the
/// subscription's owned partitions are empty for them; assignors that need the previous
/// assignment (`sticky`) carry it in their user data instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviousAssignment<'a> {
    /// Generation the assignment was received in.
    pub generation: i32,
    /// The assigned partitions.
    pub partitions: &'a [(String, i32)],
}

/// A partition assignment strategy (`partition.assignment.strategy`).
pub trait Assignor: Send + Sync + fmt::Debug {
    /// Protocol name sent in JoinGroup; must match other clients' name for the same algorithm.
    fn name(&self) -> &str;

    /// Assigns the partitions of `partitions_per_topic` (topic -> partition count) to `members`.
    /// Every member gets an entry, possibly empty. Topics missing from the map are not assigned.
    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> GroupAssignment;

    /// True when the assignor supports the cooperative (incremental) rebalance protocol: it never
    /// hands a partition to a new owner in the same rebalance that takes it from the old one.
    /// A member rebalances cooperatively only when all its assignors do (as in Java).
    fn supports_cooperative(&self) -> bool {
        false
    }

    /// User data to put in this member's subscription for this assignor; `previous` is `None`
    /// until the member has been assigned once.
    fn user_data(&self, _previous: Option<PreviousAssignment<'_>>) -> Option<Bytes> {
        None
    }
}

/// Java's member order: static members first (by `group.instance.id`), then by member id.
fn member_order(a: &MemberSubscription, b: &MemberSubscription) -> std::cmp::Ordering {
    match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.member_id.cmp(&b.member_id),
    }
}

fn empty_assignment(members: &[MemberSubscription]) -> GroupAssignment {
    members
        .iter()
        .map(|m| (m.member_id.clone(), Vec::new()))
        .collect()
}

/// Java's `RangeAssignor` (`range`): per topic, the subscribers sorted, partitions split into
/// contiguous ranges; the first `partitions % subscribers` members get one extra.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

impl Assignor for RangeAssignor {
    fn name(&self) -> &str {
        "range"
    }

    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> GroupAssignment {
        let mut out = empty_assignment(members);
        for (topic, &count) in partitions_per_topic {
            let mut subscribers: Vec<&MemberSubscription> = members
                .iter()
                .filter(|m| m.topics.iter().any(|t| t == topic))
                .collect();
            if subscribers.is_empty() || count <= 0 {
                continue;
            }
            subscribers.sort_by(|a, b| member_order(a, b));
            let n = subscribers.len() as i32;
            let per = count / n;
            let extra = count % n;
            for (i, m) in subscribers.iter().enumerate() {
                let i = i as i32;
                let start = per * i + i.min(extra);
                let len = per + if i + 1 > extra { 0 } else { 1 };
                let list = out.entry(m.member_id.clone()).or_default();
                list.extend((start..start + len).map(|p| (topic.clone(), p)));
            }
        }
        out
    }
}

/// Java's `RoundRobinAssignor` (`roundrobin`): all subscribed topic-partitions sorted by topic
/// then partition, dealt to the sorted members in turn, skipping members not subscribed to the
/// partition's topic.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinAssignor;

impl Assignor for RoundRobinAssignor {
    fn name(&self) -> &str {
        "roundrobin"
    }

    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> GroupAssignment {
        let mut out = empty_assignment(members);
        let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
        sorted.sort_by(|a, b| member_order(a, b));
        let subscribed: BTreeSet<&str> = members
            .iter()
            .flat_map(|m| m.topics.iter().map(String::as_str))
            .collect();
        let mut next = 0usize;
        for topic in subscribed {
            let Some(&count) = partitions_per_topic.get(topic) else {
                continue;
            };
            if !sorted.iter().any(|m| m.topics.iter().any(|t| t == topic)) {
                continue;
            }
            for p in 0..count.max(0) {
                // Advance the circular iterator to the next subscriber of this topic.
                while !sorted[next % sorted.len()]
                    .topics
                    .iter()
                    .any(|t| t == topic)
                {
                    next += 1;
                }
                let m = sorted[next % sorted.len()];
                next += 1;
                out.entry(m.member_id.clone())
                    .or_default()
                    .push((topic.to_string(), p));
            }
        }
        out
    }
}

/// Java's `CooperativeStickyAssignor` (`cooperative-sticky`): balanced, keeps partitions with
/// their previous owners where balance allows, and never moves a partition in one step: a
/// partition changing owner is first only revoked (its old owner rejoins at once), then assigned
/// in the follow-up rebalance.
///
/// The balancing algorithm is this client's own (a leader's choice is never checked by other
/// members); previous ownership comes from the subscriptions' owned partitions and generation,
/// as Java's members send them.
#[derive(Debug, Clone, Copy, Default)]
pub struct CooperativeStickyAssignor;

impl Assignor for CooperativeStickyAssignor {
    fn name(&self) -> &str {
        "cooperative-sticky"
    }

    fn supports_cooperative(&self) -> bool {
        true
    }

    /// Java's `CooperativeStickyAssignor` user data: the generation of the last assignment as an
    /// `i32`, -1 before the first (read by leaders whose subscriptions predate the generation
    /// field).
    fn user_data(&self, previous: Option<PreviousAssignment<'_>>) -> Option<Bytes> {
        let generation = previous.map_or(-1, |p| p.generation);
        Some(Bytes::copy_from_slice(&generation.to_be_bytes()))
    }

    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> GroupAssignment {
        let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
        sorted.sort_by(|a, b| member_order(a, b));
        let claims: Vec<Claim> = sorted
            .iter()
            .map(|m| {
                let owned = m.owned_partitions.iter().map(|(t, p)| (t.as_str(), *p));
                (member_generation(m), owned.collect())
            })
            .collect();
        let (owner, previous) = sticky_owners(partitions_per_topic, &sorted, &claims);
        let mut out = empty_assignment(members);
        for (tp, o) in owner {
            // Cooperative: a partition moving away from a live previous owner is only revoked
            // now; the follow-up rebalance assigns it.
            if previous.get(&tp).is_some_and(|&p| p != o) {
                continue;
            }
            out.entry(sorted[o].member_id.clone()).or_default().push(tp);
        }
        out
    }
}

/// Java's `StickyAssignor` (`sticky`): the eager counterpart of `cooperative-sticky`. Balanced
/// (counts differ by at most one when every member subscribes to the same topics) and keeps
/// partitions with their previous owners where balance allows; partitions move in one
/// rebalance, which is safe because eager members give everything up before rejoining.
///
/// Since eager members own nothing while they rejoin, the previous assignment travels in the
/// user data (Java's `StickyAssignorUserData`, see [`encode_sticky_user_data`]), not in the
/// subscription's owned partitions.
#[derive(Debug, Clone, Copy, Default)]
pub struct StickyAssignor;

impl Assignor for StickyAssignor {
    fn name(&self) -> &str {
        "sticky"
    }

    /// The previous assignment and its generation; nothing before the first assignment, as in
    /// Java.
    fn user_data(&self, previous: Option<PreviousAssignment<'_>>) -> Option<Bytes> {
        previous.map(|p| encode_sticky_user_data(p.partitions, Some(p.generation)))
    }

    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> GroupAssignment {
        let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
        sorted.sort_by(|a, b| member_order(a, b));
        // Like Java, only the user data counts (owned partitions are empty for eager members);
        // unreadable or missing user data is no previous assignment, and a v0 blob (no
        // generation) claims with the lowest generation.
        let claims: Vec<Claim> = sorted
            .iter()
            .map(|m| {
                m.user_data
                    .as_ref()
                    .and_then(|d| decode_sticky_user_data(d, partitions_per_topic))
                    .map(|d| (d.generation.unwrap_or(-1), d.partitions))
                    .unwrap_or((-1, Vec::new()))
            })
            .collect();
        let (owner, _) = sticky_owners(partitions_per_topic, &sorted, &claims);
        let mut out = empty_assignment(members);
        for (tp, o) in owner {
            out.entry(sorted[o].member_id.clone()).or_default().push(tp);
        }
        out
    }
}

/// Encodes Java's `StickyAssignorUserData` v1 (no version prefix, classic non-flexible types):
/// `i32` topic count, then per topic an `i16`-length name, an `i32` partition count and the
/// `i32` partitions; then the `i32` generation. Without a generation it is the v0 layout (the
/// array alone).
pub fn encode_sticky_user_data(partitions: &[(String, i32)], generation: Option<i32>) -> Bytes {
    let by_topic = group_by_topic(partitions);
    let mut buf = BytesMut::new();
    buf.put_i32(by_topic.len() as i32);
    for (topic, ps) in by_topic {
        // Topic names are at most 249 bytes, so the i16 length cannot overflow.
        buf.put_i16(topic.len() as i16);
        buf.put_slice(topic.as_bytes());
        buf.put_i32(ps.len() as i32);
        for p in ps {
            buf.put_i32(p);
        }
    }
    if let Some(g) = generation {
        buf.put_i32(g);
    }
    buf.freeze()
}

/// Decodes `StickyAssignorUserData` written by any client: v1 (with generation) if the bytes
/// hold it, else v0, as Java tries them. `None` when neither reads: the member is treated as
/// having no previous assignment. Every count is checked against the bytes left before anything
/// is allocated from it.
///
/// Only claims on existing partitions of `partitions_per_topic` are kept, borrowing the map's
/// topic names, and at most as many as the map has partitions: the bytes come from another
/// member, and a name per 4-byte partition entry would let one member's user data grow by
/// thousands of times at the leader. Nothing else could be assigned from a claim anyway.
pub fn decode_sticky_user_data<'a>(
    data: &[u8],
    partitions_per_topic: &'a BTreeMap<String, i32>,
) -> Option<StickyUserData<'a>> {
    let cap: usize = partitions_per_topic
        .values()
        .map(|&n| n.max(0) as usize)
        .sum();
    let mut buf = data;
    let count = take_i32(&mut buf)?;
    // Each topic entry needs at least 6 bytes (name length and partition count).
    if count < 0 || count as usize > buf.len() / 6 {
        return None;
    }
    let mut out = Vec::new();
    for _ in 0..count {
        let len = take_i16(&mut buf)?;
        if len < 0 || len as usize > buf.len() {
            return None;
        }
        let (name, rest) = buf.split_at(len as usize);
        let name = std::str::from_utf8(name).ok()?;
        buf = rest;
        // Topic names are at most 249 bytes: a longer one is no topic, so skip the lookup.
        let known = (name.len() <= MAX_TOPIC_NAME_LEN)
            .then(|| partitions_per_topic.get_key_value(name))
            .flatten();
        let n = take_i32(&mut buf)?;
        if n < 0 || n as usize > buf.len() / 4 {
            return None;
        }
        for _ in 0..n {
            let p = take_i32(&mut buf)?;
            // Keep reading past the cap: the generation comes after the partitions.
            if let Some((topic, &partitions)) = known {
                if out.len() < cap && (0..partitions).contains(&p) {
                    out.push((topic.as_str(), p));
                }
            }
        }
    }
    // Trailing bytes beyond the generation are ignored, as Java's schema reader does.
    let generation = take_i32(&mut buf);
    Some(StickyUserData {
        partitions: out,
        generation,
    })
}

/// Kafka's limit on a topic name's length.
const MAX_TOPIC_NAME_LEN: usize = 249;

/// A decoded `StickyAssignorUserData`, reduced to the partitions that exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyUserData<'a> {
    /// The member's previous assignment, topic names borrowed from the known topics.
    pub partitions: Vec<(&'a str, i32)>,
    /// Its generation; absent in v0.
    pub generation: Option<i32>,
}

fn take_i32(buf: &mut &[u8]) -> Option<i32> {
    let (head, rest) = buf.split_first_chunk::<4>()?;
    *buf = rest;
    Some(i32::from_be_bytes(*head))
}

fn take_i16(buf: &mut &[u8]) -> Option<i16> {
    let (head, rest) = buf.split_first_chunk::<2>()?;
    *buf = rest;
    Some(i16::from_be_bytes(*head))
}

/// A member's generation: the subscription field (v2+), else Java's user data (an `i32`).
fn member_generation(m: &MemberSubscription) -> i32 {
    if m.generation_id >= 0 {
        return m.generation_id;
    }
    match &m.user_data {
        Some(d) if d.len() >= 4 => i32::from_be_bytes([d[0], d[1], d[2], d[3]]),
        _ => -1,
    }
}

/// A member's claim on its previous assignment: (generation, partitions).
type Claim<'a> = (i32, Vec<(&'a str, i32)>);

/// Partition -> index into `sorted`.
type Owners = BTreeMap<(String, i32), usize>;

/// The balancing shared by `sticky` and `cooperative-sticky`: returns the new owner of every
/// partition of a subscribed topic, and the valid previous owners. A claim counts only while
/// the topic exists and the member still subscribes to it; of conflicting claims the highest
/// generation wins and equal generations void each other (Java's `AbstractStickyAssignor`).
/// Previous owners keep their partitions, the rest go to the least loaded, then partitions move
/// from a member to one with at least two fewer until no such move exists, so counts differ by
/// at most one when all members subscribe to the same topics.
fn sticky_owners(
    partitions_per_topic: &BTreeMap<String, i32>,
    sorted: &[&MemberSubscription],
    claims: &[Claim<'_>],
) -> (Owners, Owners) {
    let subscribes = |m: &MemberSubscription, topic: &str| m.topics.iter().any(|t| t == topic);
    // Every partition of a subscribed, existing topic.
    let mut all: Vec<(String, i32)> = Vec::new();
    for (topic, &count) in partitions_per_topic {
        if sorted.iter().any(|m| subscribes(m, topic)) {
            all.extend((0..count.max(0)).map(|p| (topic.clone(), p)));
        }
    }
    // Previous owners: the highest generation's claim wins; equal conflicting claims void.
    let mut best: BTreeMap<(&str, i32), (i32, Option<usize>)> = BTreeMap::new();
    for (i, (m, (generation, owned))) in sorted.iter().zip(claims).enumerate() {
        let generation = *generation;
        for &tp in owned {
            let valid = partitions_per_topic
                .get(tp.0)
                .is_some_and(|&n| tp.1 >= 0 && tp.1 < n)
                && subscribes(m, tp.0);
            if !valid {
                continue;
            }
            match best.get(&tp) {
                Some((g, _)) if *g > generation => {}
                Some((g, _)) if *g == generation => {
                    best.insert(tp, (generation, None));
                }
                _ => {
                    best.insert(tp, (generation, Some(i)));
                }
            }
        }
    }
    let previous: Owners = best
        .into_iter()
        .filter_map(|((t, p), (_, owner))| owner.map(|o| ((t.to_string(), p), o)))
        .collect();
    // Start from the previous ownership, then hand out the rest to the least loaded.
    let mut owner: BTreeMap<(String, i32), usize> = BTreeMap::new();
    let mut load = vec![0usize; sorted.len()];
    for tp in &all {
        if let Some(&o) = previous.get(tp) {
            owner.insert(tp.clone(), o);
            load[o] += 1;
        }
    }
    for tp in &all {
        if owner.contains_key(tp) {
            continue;
        }
        let least = (0..sorted.len())
            .filter(|&i| subscribes(sorted[i], &tp.0))
            .min_by_key(|&i| (load[i], i));
        if let Some(i) = least {
            owner.insert(tp.clone(), i);
            load[i] += 1;
        }
    }
    // Balance: move partitions from a member to an eligible one with at least two fewer,
    // preferring the most loaded donor, until no such move exists.
    loop {
        let mut moved = false;
        let mut donors: Vec<usize> = (0..sorted.len()).collect();
        donors.sort_by_key(|&i| (std::cmp::Reverse(load[i]), i));
        'donors: for d in donors {
            let mine: Vec<(String, i32)> = owner
                .iter()
                .filter(|(_, &o)| o == d)
                .map(|(tp, _)| tp.clone())
                .rev()
                .collect();
            for tp in mine {
                let taker = (0..sorted.len())
                    .filter(|&i| subscribes(sorted[i], &tp.0) && load[i] + 1 < load[d])
                    .min_by_key(|&i| (load[i], i));
                if let Some(t) = taker {
                    owner.insert(tp, t);
                    load[d] -= 1;
                    load[t] += 1;
                    moved = true;
                    break 'donors;
                }
            }
        }
        if !moved {
            break;
        }
    }
    (owner, previous)
}

fn group_by_topic(partitions: &[(String, i32)]) -> BTreeMap<&str, Vec<i32>> {
    let mut by: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by.entry(t.as_str()).or_default().push(*p);
    }
    by
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Encodes a subscription as Java does: `i16` version then the v3 struct.
pub fn encode_subscription(
    topics: &[String],
    owned: &[(String, i32)],
    generation_id: i32,
    rack_id: Option<&str>,
    user_data: Option<Bytes>,
) -> Result<Bytes> {
    let msg = ConsumerProtocolSubscription::default()
        .with_user_data(user_data)
        .with_topics(
            topics
                .iter()
                .map(|t| StrBytes::from_string(t.clone()))
                .collect(),
        )
        .with_owned_partitions(
            group_by_topic(owned)
                .into_iter()
                .map(|(t, ps)| {
                    OwnedTopic::default()
                        .with_topic(name(t))
                        .with_partitions(ps)
                })
                .collect(),
        )
        .with_generation_id(generation_id)
        .with_rack_id(rack_id.map(|r| StrBytes::from_string(r.to_string())));
    let mut buf = BytesMut::new();
    buf.put_i16(CONSUMER_PROTOCOL_VERSION);
    msg.encode(&mut buf, CONSUMER_PROTOCOL_VERSION)
        .map_err(|e| Error::protocol("encoding consumer subscription", e))?;
    Ok(buf.freeze())
}

fn read_version(buf: &mut Bytes, what: &str) -> Result<i16> {
    if buf.remaining() < 2 {
        return Err(Error::protocol(what, "too short for a version"));
    }
    let v = buf.get_i16();
    if v < 0 {
        return Err(Error::protocol(what, format!("negative version {v}")));
    }
    Ok(v.min(CONSUMER_PROTOCOL_VERSION))
}

/// Decodes another member's subscription (any version).
pub fn decode_subscription(
    member_id: &str,
    group_instance_id: Option<&str>,
    mut bytes: Bytes,
) -> Result<MemberSubscription> {
    let what = "decoding consumer subscription";
    let version = read_version(&mut bytes, what)?;
    // The bytes come from another member: check counts before kafka-protocol sizes from them.
    if !embedded::check(Embedded::Subscription, version, &bytes) {
        return Err(Error::protocol(what, "malformed subscription"));
    }
    let msg = ConsumerProtocolSubscription::decode(&mut bytes, version)
        .map_err(|e| Error::protocol(what, e))?;
    Ok(MemberSubscription {
        member_id: member_id.to_string(),
        group_instance_id: group_instance_id.map(String::from),
        topics: msg.topics.iter().map(|t| t.to_string()).collect(),
        owned_partitions: msg
            .owned_partitions
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.0.to_string(), *p)))
            .collect(),
        user_data: msg.user_data,
        generation_id: msg.generation_id,
        rack_id: msg.rack_id.map(|r| r.to_string()),
    })
}

/// Encodes one member's assignment: `i16` version then the v3 struct.
pub fn encode_assignment(partitions: &[(String, i32)]) -> Result<Bytes> {
    let msg = ConsumerProtocolAssignment::default().with_assigned_partitions(
        group_by_topic(partitions)
            .into_iter()
            .map(|(t, ps)| {
                AssignedTopic::default()
                    .with_topic(name(t))
                    .with_partitions(ps)
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(CONSUMER_PROTOCOL_VERSION);
    msg.encode(&mut buf, CONSUMER_PROTOCOL_VERSION)
        .map_err(|e| Error::protocol("encoding consumer assignment", e))?;
    Ok(buf.freeze())
}

/// Decodes the assignment the leader computed for this member. An empty blob (a member that got
/// nothing, as some clients send it) is an empty assignment.
pub fn decode_assignment(mut bytes: Bytes) -> Result<Vec<(String, i32)>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let what = "decoding consumer assignment";
    let version = read_version(&mut bytes, what)?;
    // The bytes come from the group's leader: check counts before kafka-protocol sizes from them.
    if !embedded::check(Embedded::Assignment, version, &bytes) {
        return Err(Error::protocol(what, "malformed assignment"));
    }
    let msg = ConsumerProtocolAssignment::decode(&mut bytes, version)
        .map_err(|e| Error::protocol(what, e))?;
    let mut out: Vec<(String, i32)> = msg
        .assigned_partitions
        .iter()
        .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.0.to_string(), *p)))
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            generation_id: -1,
            ..Default::default()
        }
    }

    fn tps(list: &[(&str, i32)]) -> Vec<(String, i32)> {
        list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    fn counts(list: &[(&str, i32)]) -> BTreeMap<String, i32> {
        list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    // Expected values below are what Java's RangeAssignorTest/RoundRobinAssignorTest assert
    // for the same inputs (e.g. testTwoConsumersTwoTopicsSixPartitions).

    #[test]
    fn range_two_members_two_topics_three_partitions_each() {
        let a = RangeAssignor.assign(
            &counts(&[("t1", 3), ("t2", 3)]),
            &[member("c1", &["t1", "t2"]), member("c0", &["t1", "t2"])],
        );
        assert_eq!(a["c0"], tps(&[("t1", 0), ("t1", 1), ("t2", 0), ("t2", 1)]));
        assert_eq!(a["c1"], tps(&[("t1", 2), ("t2", 2)]));
    }

    #[test]
    fn range_six_partitions_split_three_three_and_uneven_splits() {
        let a = RangeAssignor.assign(
            &counts(&[("t", 6)]),
            &[member("m-b", &["t"]), member("m-a", &["t"])],
        );
        assert_eq!(a["m-a"], tps(&[("t", 0), ("t", 1), ("t", 2)]));
        assert_eq!(a["m-b"], tps(&[("t", 3), ("t", 4), ("t", 5)]));
        // 7 partitions over 3: 3,2,2
        let a = RangeAssignor.assign(
            &counts(&[("t", 7)]),
            &[
                member("a", &["t"]),
                member("b", &["t"]),
                member("c", &["t"]),
            ],
        );
        assert_eq!(a["a"], tps(&[("t", 0), ("t", 1), ("t", 2)]));
        assert_eq!(a["b"], tps(&[("t", 3), ("t", 4)]));
        assert_eq!(a["c"], tps(&[("t", 5), ("t", 6)]));
        // more members than partitions: the last gets nothing
        let a = RangeAssignor.assign(
            &counts(&[("t", 1)]),
            &[member("a", &["t"]), member("b", &["t"])],
        );
        assert_eq!(a["a"], tps(&[("t", 0)]));
        assert!(a["b"].is_empty());
    }

    #[test]
    fn range_only_assigns_subscribers_and_known_topics() {
        let a = RangeAssignor.assign(
            &counts(&[("t1", 2), ("t2", 2)]),
            &[member("a", &["t1"]), member("b", &["t1", "t2", "missing"])],
        );
        assert_eq!(a["a"], tps(&[("t1", 0)]));
        assert_eq!(a["b"], tps(&[("t1", 1), ("t2", 0), ("t2", 1)]));
    }

    #[test]
    fn range_puts_static_members_first() {
        let mut s = member("zzz", &["t"]);
        s.group_instance_id = Some("instance".into());
        let a = RangeAssignor.assign(&counts(&[("t", 3)]), &[member("aaa", &["t"]), s]);
        assert_eq!(a["zzz"], tps(&[("t", 0), ("t", 1)]));
        assert_eq!(a["aaa"], tps(&[("t", 2)]));
    }

    #[test]
    fn roundrobin_two_members_two_topics() {
        let a = RoundRobinAssignor.assign(
            &counts(&[("t1", 3), ("t2", 3)]),
            &[member("c0", &["t1", "t2"]), member("c1", &["t1", "t2"])],
        );
        assert_eq!(a["c0"], tps(&[("t1", 0), ("t1", 2), ("t2", 1)]));
        assert_eq!(a["c1"], tps(&[("t1", 1), ("t2", 0), ("t2", 2)]));
    }

    #[test]
    fn roundrobin_skips_non_subscribers() {
        // Java's testMultipleConsumersMixedTopics: t1 (3) for c0,c2? here: c0 [t1], c1 [t1,t2],
        // c2 [t1]; t2 has 2 partitions.
        let a = RoundRobinAssignor.assign(
            &counts(&[("t1", 3), ("t2", 2)]),
            &[
                member("c0", &["t1"]),
                member("c1", &["t1", "t2"]),
                member("c2", &["t1"]),
            ],
        );
        assert_eq!(a["c0"], tps(&[("t1", 0)]));
        assert_eq!(a["c1"], tps(&[("t1", 1), ("t2", 0), ("t2", 1)]));
        assert_eq!(a["c2"], tps(&[("t1", 2)]));
    }

    #[test]
    fn subscription_round_trips_and_starts_with_version() {
        let b = encode_subscription(
            &["a".into(), "b".into()],
            &tps(&[("a", 1), ("a", 0)]),
            7,
            None,
            None,
        )
        .unwrap();
        assert_eq!(&b[..2], &[0, 3]);
        let s = decode_subscription("m", Some("i"), b).unwrap();
        assert_eq!(s.topics, vec!["a", "b"]);
        assert_eq!(s.owned_partitions, tps(&[("a", 1), ("a", 0)]));
        assert_eq!(s.generation_id, 7);
        assert_eq!(s.group_instance_id.as_deref(), Some("i"));
    }

    #[test]
    fn decodes_v0_subscriptions_and_future_versions() {
        // v0 as librdkafka/old Java write it: version 0, topics ["x"], null user data.
        let mut v0 = BytesMut::new();
        v0.put_i16(0);
        v0.put_i32(1);
        v0.put_i16(1);
        v0.put_slice(b"x");
        v0.put_i32(-1);
        let s = decode_subscription("m", None, v0.freeze()).unwrap();
        assert_eq!(s.topics, vec!["x"]);
        assert_eq!(s.generation_id, -1);
        // A version from the future is read as the newest known (appended fields ignored).
        let mut future =
            BytesMut::from(&encode_subscription(&["y".into()], &[], 1, None, None).unwrap()[..]);
        future[1] = 9;
        future.put_slice(b"more");
        assert_eq!(
            decode_subscription("m", None, future.freeze())
                .unwrap()
                .topics,
            vec!["y"]
        );
        assert!(decode_subscription("m", None, Bytes::from_static(&[0])).is_err());
        assert!(decode_subscription("m", None, Bytes::from_static(&[0, 0, 0, 0, 0, 9])).is_err());
    }

    #[test]
    fn assignment_round_trips() {
        let b = encode_assignment(&tps(&[("b", 2), ("a", 1), ("a", 0)])).unwrap();
        assert_eq!(&b[..2], &[0, 3]);
        assert_eq!(
            decode_assignment(b).unwrap(),
            tps(&[("a", 0), ("a", 1), ("b", 2)])
        );
        assert!(decode_assignment(Bytes::new()).unwrap().is_empty());
        assert!(decode_assignment(Bytes::from_static(&[0, 1, 0xff])).is_err());
    }

    fn owning(
        id: &str,
        topics: &[&str],
        owned: &[(&str, i32)],
        generation: i32,
    ) -> MemberSubscription {
        MemberSubscription {
            owned_partitions: tps(owned),
            generation_id: generation,
            ..member(id, topics)
        }
    }

    fn six() -> Vec<(&'static str, i32)> {
        (0..6).map(|p| ("t", p)).collect()
    }

    #[test]
    fn cooperative_sticky_fresh_group_is_balanced() {
        let a = CooperativeStickyAssignor.assign(
            &counts(&[("t", 6)]),
            &[member("b", &["t"]), member("a", &["t"])],
        );
        assert_eq!(a["a"], tps(&[("t", 0), ("t", 2), ("t", 4)]));
        assert_eq!(a["b"], tps(&[("t", 1), ("t", 3), ("t", 5)]));
    }

    #[test]
    fn cooperative_sticky_moves_in_two_steps() {
        // a owned everything; b joins. Round 1: a keeps 3, the 3 moving to b are only revoked.
        let c = counts(&[("t", 6)]);
        let r1 = CooperativeStickyAssignor.assign(
            &c,
            &[owning("a", &["t"], &six(), 1), owning("b", &["t"], &[], -1)],
        );
        assert_eq!(r1["a"].len(), 3);
        assert!(r1["b"].is_empty(), "nothing moves in the same rebalance");
        // Round 2: a owns its 3; b gets the rest.
        let owned: Vec<(&str, i32)> = r1["a"].iter().map(|(_, p)| ("t", *p)).collect();
        let r2 = CooperativeStickyAssignor.assign(
            &c,
            &[owning("a", &["t"], &owned, 2), owning("b", &["t"], &[], 2)],
        );
        assert_eq!(r2["a"], r1["a"], "sticky");
        assert_eq!(r2["b"].len(), 3);
        let mut all: Vec<_> = r2["a"].iter().chain(&r2["b"]).cloned().collect();
        all.sort();
        assert_eq!(all, tps(&six()));
    }

    #[test]
    fn cooperative_sticky_keeps_owners_when_a_member_leaves() {
        let c = counts(&[("t", 6)]);
        let r = CooperativeStickyAssignor.assign(
            &c,
            &[
                owning("a", &["t"], &[("t", 0), ("t", 3)], 3),
                owning("c", &["t"], &[("t", 2), ("t", 5)], 3),
            ],
        );
        // b (1, 4) left: its partitions are spread, a and c keep theirs.
        assert_eq!(r["a"], tps(&[("t", 0), ("t", 1), ("t", 3)]));
        assert_eq!(r["c"], tps(&[("t", 2), ("t", 4), ("t", 5)]));
    }

    #[test]
    fn cooperative_sticky_resolves_claims_by_generation_and_subscription() {
        let c = counts(&[("t", 2), ("u", 1)]);
        let r = CooperativeStickyAssignor.assign(
            &c,
            &[
                // stale claim on t-0, and a claim on u which a no longer subscribes to
                owning("a", &["t"], &[("t", 0), ("u", 0)], 1),
                owning("b", &["t", "u"], &[("t", 0)], 2),
            ],
        );
        assert_eq!(r["b"], tps(&[("t", 0), ("u", 0)]));
        assert_eq!(r["a"], tps(&[("t", 1)]));
        // generation from Java's user data when the field is absent
        let mut m = member("x", &["t"]);
        m.user_data = CooperativeStickyAssignor.user_data(Some(PreviousAssignment {
            generation: 5,
            partitions: &[],
        }));
        assert_eq!(member_generation(&m), 5);
    }

    #[test]
    fn cooperative_sticky_respects_subscriptions_when_balancing() {
        let r = CooperativeStickyAssignor.assign(
            &counts(&[("t", 4), ("u", 2)]),
            &[member("a", &["t"]), member("b", &["t", "u"])],
        );
        assert_eq!(r["a"].len(), 3);
        assert_eq!(r["b"].len(), 3);
        assert!(r["a"].iter().all(|(t, _)| t == "t"));
    }
    fn sticky(
        id: &str,
        topics: &[&str],
        owned: &[(&str, i32)],
        generation: i32,
    ) -> MemberSubscription {
        MemberSubscription {
            user_data: StickyAssignor.user_data(Some(PreviousAssignment {
                generation,
                partitions: &tps(owned),
            })),
            ..member(id, topics)
        }
    }

    #[test]
    fn sticky_user_data_is_kafkas_sticky_assignor_user_data_v1() {
        // STICKY_ASSIGNOR_USER_DATA_V1 in Kafka's StickyAssignor.java: ArrayOf(TOPIC_ASSIGNMENT
        // {topic STRING, partitions ArrayOf(INT32)}) then generation INT32; classic types, no
        // version prefix.
        let expected: &[u8] = &[
            0, 0, 0, 2, // two topics
            0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, // "t": [0, 2]
            0, 2, b'u', b'v', 0, 0, 0, 1, 0, 0, 0, 1, // "uv": [1]
            0, 0, 0, 5, // generation
        ];
        let owned = tps(&[("t", 0), ("uv", 1), ("t", 2)]);
        let b = StickyAssignor
            .user_data(Some(PreviousAssignment {
                generation: 5,
                partitions: &owned,
            }))
            .unwrap();
        assert_eq!(&b[..], expected);
        let known = counts(&[("t", 3), ("uv", 2)]);
        assert_eq!(
            decode_sticky_user_data(expected, &known),
            Some(StickyUserData {
                partitions: vec![("t", 0), ("t", 2), ("uv", 1)],
                generation: Some(5)
            })
        );
        // v0 (older Java): the array alone, no generation.
        assert_eq!(
            decode_sticky_user_data(&expected[..expected.len() - 4], &known),
            Some(StickyUserData {
                partitions: vec![("t", 0), ("t", 2), ("uv", 1)],
                generation: None
            })
        );
        assert_eq!(
            &encode_sticky_user_data(&owned, None)[..],
            &expected[..expected.len() - 4]
        );
        // Nothing before the first assignment, as Java sends null user data.
        assert!(StickyAssignor.user_data(None).is_none());
    }

    #[test]
    fn sticky_user_data_from_other_clients_is_read_defensively() {
        for bad in [
            &[][..],
            &[0, 0, 0][..],
            &[0xff, 0xff, 0xff, 0xff][..],             // negative count
            &[0x7f, 0xff, 0xff, 0xff, 0, 1][..],       // count the bytes cannot back
            &[0, 0, 0, 1, 0, 5, b'a'][..],             // name longer than the bytes
            &[0, 0, 0, 1, 0xff, 0xfe, 0, 0, 0, 0][..], // negative name length
            &[0, 0, 0, 1, 0, 1, b'a', 0x7f, 0, 0, 0][..], // huge partition count
            &[0, 0, 0, 1, 0, 1, 0xff, 0, 0, 0, 0][..], // name not UTF-8
        ] {
            assert_eq!(
                decode_sticky_user_data(bad, &counts(&[("a", 1)])),
                None,
                "{bad:?}"
            );
        }
        // Garbage user data counts as no previous assignment; the assignment still happens.
        let mut junk = member("a", &["t"]);
        junk.user_data = Some(Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef, 1]));
        let a = StickyAssignor.assign(&counts(&[("t", 2)]), &[junk, member("b", &["t"])]);
        assert_eq!(a["a"].len() + a["b"].len(), 2);
        assert_eq!(a["a"].len(), 1);
    }

    #[test]
    fn sticky_user_data_keeps_only_claims_on_known_partitions_up_to_their_count() {
        // A member's 512 KB of user data: one topic entry with a maximal name and as many
        // partition entries as fit.
        let entries = 120_000;
        let user_data = |name: &[u8], p: i32| {
            let mut b = BytesMut::new();
            b.put_i32(1);
            b.put_i16(name.len() as i16);
            b.put_slice(name);
            b.put_i32(entries);
            for _ in 0..entries {
                b.put_i32(p);
            }
            b.put_i32(7);
            b.freeze()
        };
        let long = vec![b'x'; i16::MAX as usize];
        let known = counts(&[("t", 4), (&"x".repeat(249), 2)]);
        // Unknown (here: impossibly long) topic: nothing kept, the generation is still read.
        let d = decode_sticky_user_data(&user_data(&long, 0), &known).unwrap();
        assert_eq!((d.partitions.len(), d.generation), (0, Some(7)));
        // A known topic claimed over and over: at most as many claims as partitions exist.
        let d = decode_sticky_user_data(&user_data(b"t", 1), &known).unwrap();
        assert_eq!((d.partitions.len(), d.generation), (6, Some(7)));
        assert!(d.partitions.iter().all(|&tp| tp == ("t", 1)));
        // Partitions the topic does not have are no claim.
        let d = decode_sticky_user_data(&user_data(b"t", 4), &known).unwrap();
        assert!(d.partitions.is_empty());
        // The assignor still assigns everything.
        let mut hostile = member("a", &["t"]);
        hostile.user_data = Some(user_data(&long, 0));
        let a = StickyAssignor.assign(&counts(&[("t", 4)]), &[hostile, member("b", &["t"])]);
        assert_balanced(&a, 4);
    }

    fn assert_balanced(a: &GroupAssignment, total: usize) {
        let lens: Vec<usize> = a.values().map(Vec::len).collect();
        let (min, max) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
        assert!(max - min <= 1, "unbalanced: {a:?}");
        let all: BTreeSet<&(String, i32)> = a.values().flatten().collect();
        assert_eq!(all.len(), total, "every partition once: {a:?}");
        assert_eq!(lens.iter().sum::<usize>(), total);
    }

    #[test]
    fn sticky_is_balanced_for_equal_subscriptions() {
        for members in 1..=5usize {
            for (t1, t2) in [(1, 0), (3, 4), (7, 2), (10, 10)] {
                let ms: Vec<MemberSubscription> = (0..members)
                    .map(|i| member(&format!("m{i}"), &["t1", "t2"]))
                    .collect();
                let c = counts(&[("t1", t1), ("t2", t2)]);
                let a = StickyAssignor.assign(&c, &ms);
                assert_balanced(&a, (t1 + t2) as usize);
                // A lopsided previous assignment is rebalanced too.
                let all: Vec<(String, i32)> = a.values().flatten().cloned().collect();
                let mut skewed = ms.clone();
                skewed[0].user_data = Some(encode_sticky_user_data(&all, Some(3)));
                let b = StickyAssignor.assign(&c, &skewed);
                assert_balanced(&b, (t1 + t2) as usize);
            }
        }
    }

    #[test]
    fn sticky_keeps_partitions_across_leave_and_join() {
        let c = counts(&[("t", 6)]);
        // Three members own two each; b leaves: a and c keep theirs and split b's.
        let r = StickyAssignor.assign(
            &c,
            &[
                sticky("a", &["t"], &[("t", 0), ("t", 3)], 4),
                sticky("c", &["t"], &[("t", 2), ("t", 5)], 4),
            ],
        );
        assert_eq!(r["a"].len(), 3);
        assert_eq!(r["c"].len(), 3);
        assert!(r["a"].contains(&("t".into(), 0)) && r["a"].contains(&("t".into(), 3)));
        assert!(r["c"].contains(&("t".into(), 2)) && r["c"].contains(&("t".into(), 5)));
        // b joins again (no user data): each of a and c gives up exactly one, nothing else
        // moves, and b's partitions move in this same (eager) rebalance.
        let owned =
            |id: &str| -> Vec<(&str, i32)> { r[id].iter().map(|(_, p)| ("t", *p)).collect() };
        let r2 = StickyAssignor.assign(
            &c,
            &[
                sticky("a", &["t"], &owned("a"), 5),
                member("b", &["t"]),
                sticky("c", &["t"], &owned("c"), 5),
            ],
        );
        assert_balanced(&r2, 6);
        assert_eq!(r2["b"].len(), 2);
        for id in ["a", "c"] {
            assert!(
                r2[id].iter().all(|tp| r[id].contains(tp)),
                "{id} only loses: {r2:?}"
            );
        }
        // Unlike range/roundrobin, a fresh member order does not reshuffle: same input, same
        // owners.
        let r3 = StickyAssignor.assign(
            &c,
            &[
                sticky("c", &["t"], &tps_ref(&r2["c"]), 6),
                sticky("b", &["t"], &tps_ref(&r2["b"]), 6),
                sticky("a", &["t"], &tps_ref(&r2["a"]), 6),
            ],
        );
        assert_eq!(r3, r2);
    }

    fn tps_ref(v: &[(String, i32)]) -> Vec<(&str, i32)> {
        v.iter().map(|(t, p)| (t.as_str(), *p)).collect()
    }

    #[test]
    fn sticky_generation_conflicts_resolve_like_java() {
        let c = counts(&[("t", 4)]);
        // a's claim on t-0 and t-1 is from generation 2; b claims t-0 from generation 3 (a
        // missed a rebalance): b keeps t-0, a keeps the unclaimed t-1.
        let r = StickyAssignor.assign(
            &c,
            &[
                sticky("a", &["t"], &[("t", 0), ("t", 1)], 2),
                sticky("b", &["t"], &[("t", 0), ("t", 2)], 3),
            ],
        );
        assert!(r["b"].contains(&("t".into(), 0)) && r["b"].contains(&("t".into(), 2)));
        assert!(r["a"].contains(&("t".into(), 1)));
        assert_balanced(&r, 4);
        // Conflicts are settled partition by partition (Kafka 3.1+, KAFKA-12984): a claim from
        // an older generation that nobody newer contests stands. Before, Java dropped every
        // claim of a member behind the highest generation, which would give a t-1 and t-2 here
        // (b keeping t-0, the rest handed out afresh).
        let r = StickyAssignor.assign(
            &c,
            &[
                sticky("a", &["t"], &[("t", 2), ("t", 3)], 2),
                sticky("b", &["t"], &[("t", 0)], 3),
            ],
        );
        assert_eq!(r["a"], tps(&[("t", 2), ("t", 3)]));
        assert_eq!(r["b"], tps(&[("t", 0), ("t", 1)]));
        // Same generation: neither claim counts, the partition is assigned afresh; the other
        // claims stand.
        let r = StickyAssignor.assign(
            &c,
            &[
                sticky("a", &["t"], &[("t", 0), ("t", 1)], 3),
                sticky("b", &["t"], &[("t", 0), ("t", 2)], 3),
            ],
        );
        assert!(r["a"].contains(&("t".into(), 1)));
        assert!(r["b"].contains(&("t".into(), 2)));
        assert_balanced(&r, 4);
        // A v0 claim (no generation) loses to any generation.
        let mut old = member("a", &["t"]);
        old.user_data = Some(encode_sticky_user_data(&tps(&[("t", 0)]), None));
        let r = StickyAssignor.assign(&c, &[old, sticky("b", &["t"], &[("t", 0)], 0)]);
        assert!(r["b"].contains(&("t".into(), 0)));
    }

    #[test]
    fn sticky_drops_claims_on_unsubscribed_or_missing_partitions() {
        let r = StickyAssignor.assign(
            &counts(&[("t", 2)]),
            &[
                sticky("a", &["t"], &[("u", 0), ("t", 7), ("t", 1)], 1),
                member("b", &["t"]),
            ],
        );
        assert_eq!(r["a"], tps(&[("t", 1)]));
        assert_eq!(r["b"], tps(&[("t", 0)]));
    }
}
