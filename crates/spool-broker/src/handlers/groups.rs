//! Consumer-group APIs (classic protocol; KIP-848 groups answer OffsetCommit/OffsetFetch,
//! DescribeGroups and ListGroups here too): FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups,
//! OffsetDelete. The rules live in `group::Group`; this maps wire structs to it.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::cluster::AUTHORIZED_OPERATIONS_OMITTED;
use super::text;
use crate::group::offsets::Committed;
use crate::group::{
    ErrorCode, GroupState, HeartbeatRequest as Hb, JoinRequest as Join, LeaveMember,
    SyncRequest as Sync,
};
use crate::server::now_ms;
use crate::state::BrokerState;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

fn opt(s: Option<StrBytes>) -> Option<String> {
    s.map(|s| s.to_string())
}

fn opt_text(s: Option<String>) -> Option<StrBytes> {
    s.map(text)
}

pub(crate) fn find_coordinator(
    state: &BrokerState,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let (host, port) = &state.advertised;
    let node = BrokerId(state.config.node_id);
    // Every group is coordinated here; other key types (transactions, share groups) are not
    // implemented, so they get an error rather than a coordinator that cannot serve them.
    let answer = |key: StrBytes| {
        let c = Coordinator::default().with_key(key);
        if req.key_type == KEY_TYPE_GROUP {
            c.with_node_id(node)
                .with_host(text(host.clone()))
                .with_port(*port as i32)
        } else if req.key_type == KEY_TYPE_TRANSACTION {
            // Clients retry COORDINATOR_NOT_AVAILABLE until their timeout; this one is fatal
            // at once, as InitProducerId with a transactional id already is here.
            c.with_node_id(BrokerId(-1))
                .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
                .with_error_message(Some(text("transactions are not supported by this broker")))
        } else {
            c.with_node_id(BrokerId(-1))
                .with_error_code(ResponseError::CoordinatorNotAvailable.code())
                .with_error_message(Some(text("only consumer groups are coordinated here")))
        }
    };
    if version >= 4 {
        FindCoordinatorResponse::default()
            .with_coordinators(req.coordinator_keys.into_iter().map(answer).collect())
    } else {
        let c = answer(req.key);
        FindCoordinatorResponse::default()
            .with_error_code(c.error_code)
            .with_error_message(if version >= 1 { c.error_message } else { None })
            .with_node_id(c.node_id)
            .with_host(c.host)
            .with_port(c.port)
    }
}

pub(crate) async fn join_group(
    state: &Arc<BrokerState>,
    req: JoinGroupRequest,
    version: i16,
    client_id: String,
    client_host: String,
) -> JoinGroupResponse {
    if req.group_id.0.is_empty() {
        return JoinGroupResponse::default()
            .with_error_code(ResponseError::InvalidGroupId.code())
            .with_member_id(req.member_id);
    }
    let group_id = req.group_id.0.to_string();
    if state
        .groups
        .with_consumer(&group_id, |g| !g.is_empty())
        .unwrap_or(false)
    {
        // A KIP-848 consumer group: classic members cannot join it.
        return JoinGroupResponse::default()
            .with_error_code(ResponseError::InconsistentGroupProtocol.code())
            .with_member_id(req.member_id);
    }
    // v0 has no rebalance timeout: Kafka uses the session timeout.
    let rebalance_timeout_ms = if version >= 1 {
        req.rebalance_timeout_ms
    } else {
        req.session_timeout_ms
    };
    let resp = state
        .groups
        .join(
            &group_id,
            |request_id| Join {
                request_id,
                member_id: req.member_id.to_string(),
                group_instance_id: opt(req.group_instance_id),
                client_id,
                client_host,
                protocol_type: req.protocol_type.to_string(),
                protocols: req
                    .protocols
                    .into_iter()
                    .map(|p| (p.name.to_string(), p.metadata))
                    .collect(),
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms,
                // KIP-394: from v4 a new member first learns its id, then rejoins with it.
                require_known_member_id: version >= 4,
                reason: opt(req.reason),
            },
            now_ms(),
        )
        .await;
    let mut out = JoinGroupResponse::default()
        .with_error_code(resp.error.code())
        .with_generation_id(resp.generation_id)
        .with_leader(text(resp.leader))
        .with_member_id(text(resp.member_id))
        .with_members(
            resp.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(text(m.member_id))
                        .with_group_instance_id(if version >= 5 {
                            opt_text(m.group_instance_id)
                        } else {
                            None
                        })
                        .with_metadata(m.metadata)
                })
                .collect(),
        );
    // v7 added protocol type; v6 and older carry only the protocol name (not nullable there).
    out.protocol_name = if version >= 7 {
        opt_text(resp.protocol_name)
    } else {
        Some(text(resp.protocol_name.unwrap_or_default()))
    };
    if version >= 7 {
        out.protocol_type = opt_text(resp.protocol_type);
    }
    out
}

pub(crate) async fn sync_group(
    state: &Arc<BrokerState>,
    req: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    if req.group_id.0.is_empty() {
        return SyncGroupResponse::default().with_error_code(ResponseError::InvalidGroupId.code());
    }
    let group_id = req.group_id.0.to_string();
    let resp = state
        .groups
        .sync(
            &group_id,
            |request_id| Sync {
                request_id,
                member_id: req.member_id.to_string(),
                group_instance_id: opt(req.group_instance_id),
                generation_id: req.generation_id,
                protocol_type: opt(req.protocol_type),
                protocol_name: opt(req.protocol_name),
                assignments: req
                    .assignments
                    .into_iter()
                    .map(|a| (a.member_id.to_string(), a.assignment))
                    .collect(),
            },
            now_ms(),
        )
        .await;
    let out = SyncGroupResponse::default()
        .with_error_code(resp.error.code())
        .with_assignment(resp.assignment);
    if version >= 5 {
        out.with_protocol_type(opt_text(resp.protocol_type))
            .with_protocol_name(opt_text(resp.protocol_name))
    } else {
        out
    }
}

pub(crate) fn heartbeat(state: &BrokerState, req: HeartbeatRequest) -> HeartbeatResponse {
    let hb = Hb {
        member_id: req.member_id.to_string(),
        group_instance_id: opt(req.group_instance_id),
        generation_id: req.generation_id,
    };
    let now = now_ms();
    let error = state
        .groups
        .with_group(&req.group_id.0, |g| (g.heartbeat(&hb, now), Vec::new()))
        .unwrap_or(ErrorCode::UnknownMemberId);
    HeartbeatResponse::default().with_error_code(error.code())
}

pub(crate) fn leave_group(
    state: &BrokerState,
    req: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    // v3 batched leaves (KIP-345); before, one member id at the top level.
    let members: Vec<LeaveMember> = if version >= 3 {
        req.members
            .into_iter()
            .map(|m| LeaveMember {
                member_id: m.member_id.to_string(),
                group_instance_id: opt(m.group_instance_id),
            })
            .collect()
    } else {
        vec![LeaveMember {
            member_id: req.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let now = now_ms();
    let Some(outcome) = state.groups.with_group(&req.group_id.0, |g| {
        let mut outcome = g.leave(members, now);
        let actions = std::mem::take(&mut outcome.actions);
        (outcome, actions)
    }) else {
        return LeaveGroupResponse::default()
            .with_error_code(ResponseError::UnknownMemberId.code());
    };
    if version < 3 {
        // One member: its error is the response's.
        let error = outcome
            .members
            .first()
            .map(|m| m.error)
            .filter(|e| *e != ErrorCode::None)
            .unwrap_or(outcome.error);
        return LeaveGroupResponse::default().with_error_code(error.code());
    }
    LeaveGroupResponse::default()
        .with_error_code(outcome.error.code())
        .with_members(
            outcome
                .members
                .into_iter()
                .map(|m| {
                    MemberResponse::default()
                        .with_member_id(text(m.member_id))
                        .with_group_instance_id(opt_text(m.group_instance_id))
                        .with_error_code(m.error.code())
                })
                .collect(),
        )
}

/// Whether a member may commit for the group now (Kafka's validateOffsetCommit).
fn commit_check(
    state: &BrokerState,
    group: &str,
    member: &str,
    instance: Option<&str>,
    generation: i32,
) -> Result<(), ResponseError> {
    // KIP-848 groups check the member epoch instead of the generation.
    if let Some(r) = state
        .groups
        .with_consumer(group, |g| g.validate_offset_request(member, generation))
    {
        return r;
    }
    let check = state.groups.with_group(group, |g| {
        let code = if generation < 0 && member.is_empty() {
            // A "simple" consumer (no membership) may commit only while nobody is a member.
            if g.members().next().is_some() {
                Err(ResponseError::UnknownMemberId)
            } else {
                Ok(())
            }
        } else {
            match g.member(member) {
                None => Err(ResponseError::UnknownMemberId),
                Some(m) if instance.is_some() && m.group_instance_id() != instance => {
                    Err(ResponseError::FencedInstanceId)
                }
                Some(_) if generation != g.generation_id() => Err(ResponseError::IllegalGeneration),
                Some(_) if g.state() == GroupState::CompletingRebalance => {
                    Err(ResponseError::RebalanceInProgress)
                }
                Some(_) => Ok(()),
            }
        };
        (code, Vec::new())
    });
    match check {
        Some(code) => code,
        // No live group: only simple commits are possible.
        None if generation < 0 && member.is_empty() => Ok(()),
        None => Err(ResponseError::UnknownMemberId),
    }
}

/// The wire code of an outcome.
fn code_of(r: Result<(), ResponseError>) -> i16 {
    r.err().map_or(0, |e| e.code())
}

pub(crate) async fn offset_commit(
    state: &Arc<BrokerState>,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group = req.group_id.0.to_string();
    let mut code = if group.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        commit_check(
            state,
            &group,
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id_or_member_epoch,
        )
    };
    let now = now_ms();
    let mut entries = Vec::new();
    if code.is_ok() {
        for t in &req.topics {
            for p in &t.partitions {
                entries.push((
                    (t.name.0.to_string(), p.partition_index),
                    Committed {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: opt(p.committed_metadata.clone()),
                        commit_ms: now,
                    },
                ));
            }
        }
        let store = state.groups.offsets.clone();
        let g = group.clone();
        // The fsync runs on the blocking pool.
        let written = tokio::task::spawn_blocking(move || store.commit(&g, entries)).await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::warn!(group = %group, "offset commit could not be written: {written:?}");
            code = Err(ResponseError::CoordinatorNotAvailable);
        }
    }
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let known = state.logs.topic(&t.name.0);
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .into_iter()
                        .map(|p| {
                            let exists = known.as_ref().is_some_and(|m| {
                                p.partition_index >= 0 && p.partition_index < m.partitions
                            });
                            let c = if code.is_ok() && !exists {
                                // Kafka stores it anyway but reports the unknown partition.
                                Err(ResponseError::UnknownTopicOrPartition)
                            } else {
                                code
                            };
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code_of(c))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// A topic's partitions with their committed offsets, if any.
type TopicOffsets = (TopicName, Vec<(i32, Option<Committed>)>);

/// Offsets of one group: the requested partitions, or every committed one when `None`.
fn fetch_offsets(
    state: &BrokerState,
    group: &str,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
) -> Vec<TopicOffsets> {
    match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(name, parts)| {
                let found = parts
                    .into_iter()
                    .map(|p| (p, state.groups.offsets.get(group, &(name.0.to_string(), p))))
                    .collect();
                (name, found)
            })
            .collect(),
        None => {
            let mut out: Vec<TopicOffsets> = Vec::new();
            for ((t, p), c) in state.groups.offsets.all(group) {
                match out.last_mut() {
                    Some((name, parts)) if name.0.as_str() == t => parts.push((p, Some(c))),
                    _ => out.push((TopicName(text(t)), vec![(p, Some(c))])),
                }
            }
            out
        }
    }
}

pub(crate) fn offset_fetch(
    state: &BrokerState,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    // A partition without a commit answers offset -1 and empty metadata, as Kafka does.
    let part = |c: Option<Committed>| match c {
        Some(c) => (c.offset, c.leader_epoch, c.metadata),
        None => (-1, -1, Some(String::new())),
    };
    if version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name, t.partition_indexes))
                        .collect()
                });
                // v9 (KIP-848): a consumer group's member must be at its current epoch.
                let member = g.member_id.as_deref().unwrap_or_default().to_string();
                let check = if version >= 9 {
                    state.groups.with_consumer(&g.group_id.0, |cg| {
                        if member.is_empty() && g.member_epoch < 0 {
                            Ok(())
                        } else {
                            cg.validate_offset_request(&member, g.member_epoch)
                        }
                    })
                } else {
                    None
                };
                if let Some(Err(e)) = check {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(e.code());
                }
                let found = fetch_offsets(state, &g.group_id.0, topics);
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(
                        found
                            .into_iter()
                            .map(|(name, parts)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(name)
                                    .with_partitions(
                                        parts
                                            .into_iter()
                                            .map(|(p, c)| {
                                                let (o, e, m) = part(c);
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(o)
                                                    .with_committed_leader_epoch(e)
                                                    .with_metadata(opt_text(m))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    let found = fetch_offsets(state, &req.group_id.0, topics);
    OffsetFetchResponse::default().with_topics(
        found
            .into_iter()
            .map(|(name, parts)| {
                OffsetFetchResponseTopic::default()
                    .with_name(name)
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, c)| {
                                let (o, e, m) = part(c);
                                let r = OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(o)
                                    .with_metadata(opt_text(m));
                                // The leader epoch field exists from v5.
                                if version >= 5 {
                                    r.with_committed_leader_epoch(e)
                                } else {
                                    r
                                }
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

fn state_name(s: GroupState) -> &'static str {
    match s {
        GroupState::Empty => "Empty",
        GroupState::PreparingRebalance => "PreparingRebalance",
        GroupState::CompletingRebalance => "CompletingRebalance",
        GroupState::Stable => "Stable",
        GroupState::Dead => "Dead",
    }
}

pub(crate) fn describe_groups(
    state: &BrokerState,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            if state.groups.with_consumer(&id.0, |_| ()).is_some() {
                // Kafka 4 describes only classic groups here: a KIP-848 group is
                // GROUP_ID_NOT_FOUND from v6 (clients then use ConsumerGroupDescribe), and a
                // Dead group before, as for an unknown id.
                let dead = DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_group_state(text("Dead"))
                    .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
                return if version >= 6 {
                    dead.with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(Some(text(format!(
                            "Group {} is not a classic group.",
                            id.0
                        ))))
                } else {
                    dead
                };
            }
            let described = state.groups.with_group(&id.0, |g| {
                let protocol = g.protocol_name().unwrap_or_default().to_string();
                let stable = g.state() == GroupState::Stable;
                let members = g
                    .members()
                    .map(|m| {
                        let metadata = m
                            .protocols()
                            .iter()
                            .find(|(name, _)| *name == protocol)
                            .map(|(_, md)| md.clone())
                            .unwrap_or_default();
                        DescribedGroupMember::default()
                            .with_member_id(text(m.member_id()))
                            .with_group_instance_id(m.group_instance_id().map(text))
                            .with_client_id(text(m.client_id()))
                            .with_client_host(text(m.client_host()))
                            .with_member_metadata(metadata)
                            // Assignments are only meaningful once the group is stable.
                            .with_member_assignment(if stable {
                                m.assignment().clone()
                            } else {
                                Bytes::new()
                            })
                    })
                    .collect();
                let d = DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_group_state(text(state_name(g.state())))
                    .with_protocol_type(text(g.protocol_type().unwrap_or_default()))
                    .with_protocol_data(text(protocol))
                    .with_members(members)
                    .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
                (d, Vec::new())
            });
            match described {
                Some(d) => d,
                // Known only through its offsets: an empty group.
                None if state.groups.offsets.last_commit_ms(&id.0).is_some() => {
                    DescribedGroup::default()
                        .with_group_id(id)
                        .with_group_state(text("Empty"))
                        .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
                }
                // Kafka 4 answers GROUP_ID_NOT_FOUND from v6, and a Dead group before.
                None if version >= 6 => DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(text(format!("Group {} not found.", id.0))))
                    .with_group_state(text("Dead"))
                    .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
                None => DescribedGroup::default()
                    .with_group_id(id)
                    .with_group_state(text("Dead"))
                    .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub(crate) fn list_groups(state: &BrokerState, req: ListGroupsRequest) -> ListGroupsResponse {
    let groups = state
        .groups
        .group_ids()
        .into_iter()
        .filter_map(|id| {
            let consumer = state
                .groups
                .with_consumer(&id, |g| g.state_name().to_string());
            let (name, protocol_type, group_type) = match consumer {
                Some(s) => (s, "consumer".to_string(), "consumer"),
                None => {
                    let (group_state, protocol_type) = state
                        .groups
                        .with_group(&id, |g| {
                            (
                                (g.state(), g.protocol_type().unwrap_or_default().to_string()),
                                Vec::new(),
                            )
                        })
                        .unwrap_or((GroupState::Empty, String::new()));
                    if group_state == GroupState::Dead {
                        return None;
                    }
                    (
                        state_name(group_state).to_string(),
                        protocol_type,
                        "classic",
                    )
                }
            };
            let name = name.as_str();
            let state_ok = req.states_filter.is_empty()
                || req
                    .states_filter
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(name));
            let type_ok = req.types_filter.is_empty()
                || req
                    .types_filter
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(group_type));
            (state_ok && type_ok).then(|| {
                ListedGroup::default()
                    .with_group_id(GroupId(text(id)))
                    .with_protocol_type(text(protocol_type))
                    .with_group_state(text(name))
                    .with_group_type(text(group_type))
            })
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub(crate) async fn delete_groups(
    state: &Arc<BrokerState>,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for id in req.groups_names {
        let exists = state.groups.state(&id.0).is_some()
            || state.groups.offsets.last_commit_ms(&id.0).is_some();
        let code = if !exists {
            Err(ResponseError::GroupIdNotFound)
        } else if !state.groups.remove_if_empty(&id.0) {
            Err(ResponseError::NonEmptyGroup)
        } else {
            let store = state.groups.offsets.clone();
            let g = id.0.to_string();
            match tokio::task::spawn_blocking(move || store.delete_group(&g)).await {
                Ok(Ok(())) => Ok(()),
                _ => Err(ResponseError::CoordinatorNotAvailable),
            }
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code_of(code)),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

pub(crate) async fn offset_delete(
    state: &Arc<BrokerState>,
    req: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group = req.group_id.0.to_string();
    let exists = state.groups.state(&group).is_some()
        || state.groups.offsets.last_commit_ms(&group).is_some();
    if !exists {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::GroupIdNotFound.code());
    }
    // A live group may not lose offsets of topics its members consume.
    let subscribed = subscribed_topics(state, &group);
    let mut to_delete = Vec::new();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let busy = subscribed.iter().any(|s| s.as_str() == t.name.0.as_str());
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let code = if busy {
                        Err(ResponseError::GroupSubscribedToTopic)
                    } else {
                        to_delete.push((t.name.0.to_string(), p.partition_index));
                        Ok(())
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code_of(code))
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    let store = state.groups.offsets.clone();
    let g = group.clone();
    if !to_delete.is_empty() {
        if let Ok(Err(e)) | Err(e) =
            tokio::task::spawn_blocking(move || store.delete(&g, to_delete))
                .await
                .map_err(std::io::Error::other)
        {
            tracing::warn!(group = %group, "offset delete failed: {e}");
            return OffsetDeleteResponse::default()
                .with_error_code(ResponseError::CoordinatorNotAvailable.code());
        }
    }
    OffsetDeleteResponse::default().with_topics(topics)
}

/// Topics the members of a live consumer group subscribe to (from their protocol metadata).
fn subscribed_topics(state: &BrokerState, group: &str) -> Vec<String> {
    if let Some(topics) = state
        .groups
        .with_consumer(group, |g| g.subscribed_topics().into_iter().collect())
    {
        return topics;
    }
    state
        .groups
        .with_group(group, |g| {
            if g.protocol_type() != Some("consumer") || g.state() == GroupState::Empty {
                return (Vec::new(), Vec::new());
            }
            let protocol = g.protocol_name().unwrap_or_default().to_string();
            let mut topics = Vec::new();
            for m in g.members() {
                if let Some((_, md)) = m.protocols().iter().find(|(n, _)| *n == protocol) {
                    topics.extend(decode_subscription(md));
                }
            }
            (topics, Vec::new())
        })
        .unwrap_or_default()
}

/// Topics of a ConsumerProtocolSubscription (an i16 version, then the message). Malformed
/// metadata yields none.
fn decode_subscription(md: &Bytes) -> Vec<String> {
    use kafka_protocol::protocol::Decodable;
    use spool_protocol::embedded::{self, Embedded};
    if md.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([md[0], md[1]]).clamp(0, 3);
    let mut body = md.slice(2..);
    // Another client's bytes: bound every count before kafka-protocol allocates from it.
    if !embedded::check(Embedded::Subscription, version, &body) {
        return Vec::new();
    }
    match ConsumerProtocolSubscription::decode(&mut body, version) {
        Ok(s) => s.topics.into_iter().map(|t| t.to_string()).collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::decode_subscription;
    use bytes::Bytes;

    #[test]
    fn subscriptions_parse_and_lies_do_not_allocate() {
        let mut md = vec![0, 0, 0, 0, 0, 2];
        for t in ["a", "bc"] {
            md.extend_from_slice(&(t.len() as i16).to_be_bytes());
            md.extend_from_slice(t.as_bytes());
        }
        md.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // null user data
        assert_eq!(decode_subscription(&Bytes::from(md)), vec!["a", "bc"]);
        let lie = Bytes::from_static(&[0, 1, 0x7f, 0xff, 0xff, 0xff, 0, 1]);
        assert!(decode_subscription(&lie).is_empty());
    }
}
