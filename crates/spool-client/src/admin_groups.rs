//! Admin operations on consumer groups: list, describe, committed offsets, reset, delete.
//! Each group is addressed through its coordinator (FindCoordinator), as Kafka requires.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, ConsumerGroupDescribeRequest, DeleteGroupsRequest, DescribeGroupsRequest,
    FindCoordinatorRequest, GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::admin::Admin;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::group::assignor::decode_assignment;

/// A group in [`Admin::list_groups`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type, `consumer` for consumer groups.
    pub protocol_type: String,
    /// State (`Stable`, `Empty`, ...), empty when the broker does not say.
    pub state: String,
}

/// A member in [`GroupDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberDescription {
    /// Member id given by the coordinator.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// The member's client id.
    pub client_id: String,
    /// Where it connects from.
    pub client_host: String,
    /// Partitions assigned to it (decoded for `consumer` groups).
    pub assignment: Vec<(String, i32)>,
}

/// What [`Admin::describe_group`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State name as the coordinator spells it.
    pub state: String,
    /// Protocol type.
    pub protocol_type: String,
    /// The chosen protocol (assignor) name.
    pub protocol: String,
    /// Members.
    pub members: Vec<GroupMemberDescription>,
}

/// A committed offset with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset the group will read.
    pub offset: i64,
    /// Metadata committed with it.
    pub metadata: Option<String>,
}

fn group_id(s: &str) -> GroupId {
    GroupId(StrBytes::from_string(s.to_string()))
}

impl Admin {
    /// The connection to `group`'s coordinator.
    async fn coordinator(&self, group: &str) -> Result<Arc<Connection>> {
        let conn = self.client().any_broker().await?;
        let key = StrBytes::from_string(group.to_string());
        // v4 batched the keys; a field outside its versions cannot be encoded.
        let version = conn.version(ApiKey::FindCoordinator)?;
        let req = if version >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![key])
        } else {
            FindCoordinatorRequest::default().with_key(key)
        };
        let resp = conn.send_at(&req, version).await?;
        let (code, message, node) = if version >= 4 {
            let c = resp
                .coordinators
                .into_iter()
                .next()
                .ok_or_else(|| Error::Protocol {
                    context: "FindCoordinator".into(),
                    detail: "no coordinator in the answer".into(),
                })?;
            (c.error_code, c.error_message, c.node_id)
        } else {
            (resp.error_code, resp.error_message, resp.node_id)
        };
        if let Some(e) = Error::from_code(
            code,
            message.map(|m| m.to_string()),
            format!("coordinator of group {group}"),
        ) {
            return Err(e);
        }
        let BrokerId(id) = node;
        self.client().broker(id).await
    }

    /// Every group of every broker.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let md = self.client().refresh_all().await?;
        let mut out = Vec::new();
        for id in md.brokers.keys() {
            let conn = self.client().broker(*id).await?;
            let (_, resp) = conn.send(&ListGroupsRequest::default()).await?;
            if let Some(e) = Error::from_code(resp.error_code, None, "list groups") {
                return Err(e);
            }
            out.extend(resp.groups.into_iter().map(|g| GroupListing {
                group_id: g.group_id.0.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: g.group_state.to_string(),
            }));
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(out)
    }

    /// State and members of one group.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let conn = self.coordinator(group).await?;
        let req = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
        let (_, resp) = conn.send(&req).await?;
        let g = resp
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol {
                context: "DescribeGroups".into(),
                detail: "no group in the answer".into(),
            })?;
        // Kafka 4 describes KIP-848 (consumer protocol) groups only through
        // ConsumerGroupDescribe and answers GROUP_ID_NOT_FOUND here; ask that way, as Java's
        // admin does, and report the first error if that fails too.
        if g.error_code == ResponseError::GroupIdNotFound.code()
            && conn.version(ApiKey::ConsumerGroupDescribe).is_ok()
        {
            if let Some(d) = self.describe_consumer_protocol_group(&conn, group).await? {
                return Ok(d);
            }
        }
        if let Some(e) = Error::from_code(
            g.error_code,
            g.error_message.map(|m| m.to_string()),
            format!("describe group {group}"),
        ) {
            return Err(e);
        }
        let consumer = g.protocol_type.as_str() == "consumer";
        Ok(GroupDescription {
            group_id: g.group_id.0.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members: g
                .members
                .into_iter()
                .map(|m| GroupMemberDescription {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.map(|s| s.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    // Unreadable assignments (another client's protocol) are shown as none.
                    assignment: if consumer {
                        decode_assignment(m.member_assignment).unwrap_or_default()
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
        })
    }

    /// A KIP-848 group through ConsumerGroupDescribe; `None` when the coordinator has no such
    /// group.
    async fn describe_consumer_protocol_group(
        &self,
        conn: &Connection,
        group: &str,
    ) -> Result<Option<GroupDescription>> {
        let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![group_id(group)]);
        let (_, resp) = conn.send(&req).await?;
        let Some(g) = resp.groups.into_iter().next() else {
            return Ok(None);
        };
        if g.error_code != 0 {
            return Ok(None);
        }
        Ok(Some(GroupDescription {
            group_id: g.group_id.0.to_string(),
            state: g.group_state.to_string(),
            protocol_type: "consumer".into(),
            protocol: g.assignor_name.to_string(),
            members: g
                .members
                .into_iter()
                .map(|m| {
                    let mut assignment: Vec<(String, i32)> = m
                        .assignment
                        .topic_partitions
                        .iter()
                        .flat_map(|t| {
                            let name = t.topic_name.0.to_string();
                            t.partitions.iter().map(move |p| (name.clone(), *p))
                        })
                        .collect();
                    assignment.sort();
                    GroupMemberDescription {
                        member_id: m.member_id.to_string(),
                        group_instance_id: m.instance_id.map(|s| s.to_string()),
                        client_id: m.client_id.to_string(),
                        client_host: m.client_host.to_string(),
                        assignment,
                    }
                })
                .collect(),
        }))
    }

    /// All committed offsets of a group.
    pub async fn group_offsets(
        &self,
        group: &str,
    ) -> Result<BTreeMap<(String, i32), CommittedOffset>> {
        let conn = self.coordinator(group).await?;
        let version = conn.version(ApiKey::OffsetFetch)?;
        let req = if version >= 8 {
            OffsetFetchRequest::default().with_groups(vec![
                kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(group_id(group))
                    .with_topics(None),
            ])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(group_id(group))
                .with_topics(None)
        };
        let resp = conn.send_at(&req, version).await?;
        let mut out = BTreeMap::new();
        let context = || format!("offsets of group {group}");
        // v8 nests the same answer per group; flatten both shapes to (topic, partition, offset,
        // metadata) rows.
        let rows = offset_fetch_rows(resp, version, &context())?;
        for (topic, partition, offset, metadata, _) in rows {
            // -1: no commit for this partition.
            if offset >= 0 {
                out.insert(
                    (topic, partition),
                    CommittedOffset {
                        offset,
                        metadata: metadata.map(|m| m.to_string()),
                    },
                );
            }
        }
        Ok(out)
    }

    /// Sets committed offsets of a group that has no active members (as
    /// `kafka-consumer-groups --reset-offsets --execute` does).
    pub async fn alter_group_offsets(
        &self,
        group: &str,
        offsets: &[((String, i32), i64)],
    ) -> Result<()> {
        let conn = self.coordinator(group).await?;
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for ((t, p), o) in offsets {
            topics.entry(t).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*o)
                    .with_committed_metadata(Some(StrBytes::default())),
            );
        }
        let req = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t.to_string())))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let (_, resp) = conn.send(&req).await?;
        for t in resp.topics {
            for p in t.partitions {
                if let Some(e) = Error::from_code(
                    p.error_code,
                    None,
                    format!(
                        "commit offset of {}-{} for group {group}",
                        t.name.0, p.partition_index
                    ),
                ) {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Deletes groups that have no active members, with their offsets.
    pub async fn delete_groups(&self, groups: &[&str]) -> Result<()> {
        for group in groups {
            let conn = self.coordinator(group).await?;
            let req = DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]);
            let (_, resp) = conn.send(&req).await?;
            for r in resp.results {
                if let Some(e) =
                    Error::from_code(r.error_code, None, format!("delete group {group}"))
                {
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

/// One partition of an OffsetFetch answer: topic, partition, offset, metadata, error code.
pub(crate) type OffsetRow = (String, i32, i64, Option<StrBytes>, i16);

/// Flattens both OffsetFetch answer shapes (v8+ nests them per group) into rows, failing on a
/// group- or request-level error.
pub(crate) fn offset_fetch_rows(
    resp: kafka_protocol::messages::OffsetFetchResponse,
    version: i16,
    context: &str,
) -> Result<Vec<OffsetRow>> {
    let mut rows = Vec::new();
    if version >= 8 {
        for g in resp.groups {
            if let Some(e) = Error::from_code(g.error_code, None, context) {
                return Err(e);
            }
            for t in g.topics {
                let name = t.name.0.to_string();
                rows.extend(t.partitions.into_iter().map(|p| {
                    (
                        name.clone(),
                        p.partition_index,
                        p.committed_offset,
                        p.metadata,
                        p.error_code,
                    )
                }));
            }
        }
    } else {
        if let Some(e) = Error::from_code(resp.error_code, None, context) {
            return Err(e);
        }
        for t in resp.topics {
            let name = t.name.0.to_string();
            rows.extend(t.partitions.into_iter().map(|p| {
                (
                    name.clone(),
                    p.partition_index,
                    p.committed_offset,
                    p.metadata,
                    p.error_code,
                )
            }));
        }
    }
    Ok(rows)
}
