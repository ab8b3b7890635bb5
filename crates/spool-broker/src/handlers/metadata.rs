//! Metadata: this broker leads every partition; unknown topics may be auto-created.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::ResponseError;
use spool_log::TopicMeta;

use super::cluster::AUTHORIZED_OPERATIONS_OMITTED;
use super::{find_or_create, text, uuid};
use crate::state::BrokerState;

pub(crate) fn handle(state: &BrokerState, req: MetadataRequest, version: i16) -> MetadataResponse {
    let node = BrokerId(state.config.node_id);
    let (host, port) = &state.advertised;
    // v0 has no null: an empty list means every topic. From v1, null means all, empty none.
    let wants_all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    // v0-v3 have no flag and always auto-create.
    let allow_create = version < 4 || req.allow_auto_topic_creation;
    let topics = if wants_all {
        state
            .logs
            .topics()
            .iter()
            .map(|m| topic(state, m))
            .collect()
    } else {
        let requested = req.topics.unwrap_or_default();
        // As Kafka: once any entry carries a topic id (v12+), the ids alone say what is asked
        // (Java's client sends id lookups with an empty name, not a null one); entries without
        // an id are ignored then, and each id is answered once.
        let mut ids: Vec<uuid::Uuid> = Vec::new();
        for t in &requested {
            if !t.topic_id.is_nil() && !ids.contains(&t.topic_id) {
                ids.push(t.topic_id);
            }
        }
        if !ids.is_empty() && version >= 12 {
            ids.into_iter()
                .map(|id| match state.logs.topic_by_id(*id.as_bytes()) {
                    Some(meta) => topic(state, &meta),
                    None => failed(None, id, ResponseError::UnknownTopicId),
                })
                .collect()
        } else {
            requested
                .into_iter()
                .map(|t| {
                    // Topic ids are valid from v12 only; a null name without an id names nothing.
                    let name = match t.name {
                        Some(name) if t.topic_id.is_nil() => name,
                        name => {
                            let name = name.or_else(|| Some(TopicName(text(""))));
                            return failed(name, t.topic_id, ResponseError::InvalidRequest);
                        }
                    };
                    match find_or_create(state, &name.0, allow_create) {
                        Ok(meta) => topic(state, &meta),
                        Err(code) => failed(Some(name), uuid::Uuid::nil(), code),
                    }
                })
                .collect()
        }
    };
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(node)
            .with_host(text(host.clone()))
            .with_port(*port as i32)])
        .with_cluster_id(Some(text(state.cluster_id.clone())))
        .with_controller_id(node)
        .with_topics(topics)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

fn topic(state: &BrokerState, meta: &TopicMeta) -> MetadataResponseTopic {
    let node = BrokerId(state.config.node_id);
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(text(meta.name.clone()))))
        .with_topic_id(uuid(meta.id))
        .with_partitions(
            (0..meta.partitions)
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_id(node)
                        .with_leader_epoch(0)
                        .with_replica_nodes(vec![node])
                        .with_isr_nodes(vec![node])
                })
                .collect(),
        )
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

fn failed(name: Option<TopicName>, id: uuid::Uuid, code: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code.code())
        .with_name(name)
        .with_topic_id(id)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
