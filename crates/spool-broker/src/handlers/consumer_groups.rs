//! KIP-848 consumer-group APIs: ConsumerGroupHeartbeat and ConsumerGroupDescribe. The rules
//! live in `group::consumer_group`; this maps wire structs to it.

use kafka_protocol::messages::consumer_group_describe_response::{
    self as describe, DescribedGroup, Member,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment as WireAssignment, TopicPartitions,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::cluster::AUTHORIZED_OPERATIONS_OMITTED;
use super::{text, uuid};
use crate::group::assignor::Assignment;
use crate::group::consumer_group::{CgHeartbeat, ConsumerGroup, TopicInfo, TopicSource};
use crate::server::now_ms;
use crate::state::BrokerState;

/// The broker's topics, as the consumer-group state machine reads them.
struct BrokerTopics<'a>(&'a BrokerState);

impl TopicSource for BrokerTopics<'_> {
    fn info(&self, name: &str) -> Option<TopicInfo> {
        self.0.logs.topic(name).map(|m| TopicInfo {
            id: uuid(m.id),
            partitions: m.partitions,
        })
    }

    fn names(&self) -> Vec<String> {
        self.0.logs.topics().into_iter().map(|m| m.name).collect()
    }
}

pub(crate) fn heartbeat(
    state: &BrokerState,
    req: ConsumerGroupHeartbeatRequest,
    version: i16,
    client_id: String,
    client_host: String,
) -> ConsumerGroupHeartbeatResponse {
    if req.group_id.0.is_empty() {
        return ConsumerGroupHeartbeatResponse::default()
            .with_error_code(ResponseError::InvalidGroupId.code())
            .with_error_message(Some(text("group id must be set")));
    }
    let hb = CgHeartbeat {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.map(|s| s.to_string()),
        rack_id: req.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req
            .subscribed_topic_names
            .map(|ts| ts.into_iter().map(|t| t.0.to_string()).collect()),
        subscribed_topic_regex: req.subscribed_topic_regex.map(|s| s.to_string()),
        server_assignor: req.server_assignor.map(|s| s.to_string()),
        owned: req.topic_partitions.map(|tps| {
            tps.into_iter()
                .map(|tp| (tp.topic_id, tp.partitions))
                .collect()
        }),
        client_id,
        client_host,
        // KIP-1082: from v1 the client makes up its member id.
        server_generates_id: version == 0,
    };
    let r = state
        .groups
        .consumer_heartbeat(&req.group_id.0, hb, now_ms(), &BrokerTopics(state));
    let out = ConsumerGroupHeartbeatResponse::default()
        .with_error_code(r.error.map_or(0, |e| e.code()))
        .with_error_message(r.message.map(text));
    if r.error.is_some() {
        return out;
    }
    out.with_member_id(r.member_id.map(text))
        .with_member_epoch(r.member_epoch)
        .with_heartbeat_interval_ms(r.heartbeat_interval_ms)
        .with_assignment(r.assignment.map(|a| {
            WireAssignment::default().with_topic_partitions(
                a.into_iter()
                    .map(|(t, ps)| {
                        TopicPartitions::default()
                            .with_topic_id(t)
                            .with_partitions(ps.into_iter().collect())
                    })
                    .collect(),
            )
        }))
}

fn describe_assignment(g: &ConsumerGroup, a: Option<&Assignment>) -> describe::Assignment {
    let tps = a
        .into_iter()
        .flatten()
        .map(|(t, ps)| {
            describe::TopicPartitions::default()
                .with_topic_id(*t)
                .with_topic_name(TopicName(text(g.topic_name(t).unwrap_or_default())))
                .with_partitions(ps.iter().copied().collect())
        })
        .collect();
    describe::Assignment::default().with_topic_partitions(tps)
}

pub(crate) fn describe(
    state: &BrokerState,
    req: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let groups = req
        .group_ids
        .into_iter()
        .map(|id| {
            let found = state.groups.with_consumer(&id.0, |g| {
                let members = g
                    .members()
                    .map(|m| {
                        Member::default()
                            .with_member_id(text(m.member_id.clone()))
                            .with_instance_id(m.instance_id.clone().map(text))
                            .with_rack_id(m.rack_id.clone().map(text))
                            .with_member_epoch(m.epoch)
                            .with_client_id(text(m.client_id.clone()))
                            .with_client_host(text(m.client_host.clone()))
                            .with_subscribed_topic_names(
                                m.subscribed
                                    .iter()
                                    .map(|t| TopicName(text(t.clone())))
                                    .collect(),
                            )
                            .with_subscribed_topic_regex(m.subscribed_regex.clone().map(text))
                            .with_assignment(describe_assignment(g, Some(&m.assigned)))
                            .with_target_assignment(describe_assignment(
                                g,
                                g.target_of(&m.member_id),
                            ))
                            // 1 = consumer protocol member (0 = classic, for upgrades).
                            .with_member_type(1)
                    })
                    .collect();
                DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_group_state(text(g.state_name()))
                    .with_group_epoch(g.group_epoch())
                    .with_assignment_epoch(g.assignment_epoch())
                    .with_assignor_name(text(g.assignor_name()))
                    .with_members(members)
                    .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
            });
            found.unwrap_or_else(|| {
                // Kafka's messages: a classic group (also one known only by its committed
                // offsets, Kafka's "simple" group) is the wrong type; otherwise there is none.
                let classic = state
                    .groups
                    .with_group(&id.0, |_| ((), Vec::new()))
                    .is_some()
                    || state.groups.offsets.last_commit_ms(&id.0).is_some();
                let message = if classic {
                    format!("Group {} is not a consumer group.", id.0)
                } else {
                    format!("Group {} not found.", id.0)
                };
                DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(text(message)))
                    .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
            })
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
