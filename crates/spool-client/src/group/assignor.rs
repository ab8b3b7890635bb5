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

    /// User data to put in this member's subscription for this assignor.
    fn user_data(&self, _generation: i32) -> Option<Bytes> {
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

    /// Java's `CooperativeStickyAssignor` user data: the generation as an `i32` (read by members
    /// whose subscriptions predate the generation field).
    fn user_data(&self, generation: i32) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(&generation.to_be_bytes()))
    }

    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> GroupAssignment {
        let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
        sorted.sort_by(|a, b| member_order(a, b));
        let subscribes = |m: &MemberSubscription, topic: &str| m.topics.iter().any(|t| t == topic);
        // Every partition of a subscribed, existing topic.
        let mut all: Vec<(String, i32)> = Vec::new();
        for (topic, &count) in partitions_per_topic {
            if sorted.iter().any(|m| subscribes(m, topic)) {
                all.extend((0..count.max(0)).map(|p| (topic.clone(), p)));
            }
        }
        // Previous owners: the highest generation's claim wins; equal conflicting claims void.
        let mut claims: BTreeMap<(String, i32), (i32, Option<usize>)> = BTreeMap::new();
        for (i, m) in sorted.iter().enumerate() {
            let generation = member_generation(m);
            for tp in &m.owned_partitions {
                let valid = partitions_per_topic
                    .get(&tp.0)
                    .is_some_and(|&n| tp.1 >= 0 && tp.1 < n)
                    && subscribes(m, &tp.0);
                if !valid {
                    continue;
                }
                match claims.get(tp) {
                    Some((g, _)) if *g > generation => {}
                    Some((g, _)) if *g == generation => {
                        claims.insert(tp.clone(), (generation, None));
                    }
                    _ => {
                        claims.insert(tp.clone(), (generation, Some(i)));
                    }
                }
            }
        }
        let previous: BTreeMap<(String, i32), usize> = claims
            .into_iter()
            .filter_map(|(tp, (_, owner))| owner.map(|o| (tp, o)))
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
            let best = (0..sorted.len())
                .filter(|&i| subscribes(sorted[i], &tp.0))
                .min_by_key(|&i| (load[i], i));
            if let Some(i) = best {
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
        m.user_data = CooperativeStickyAssignor.user_data(5);
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
}
