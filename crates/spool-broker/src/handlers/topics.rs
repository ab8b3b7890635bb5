//! CreateTopics, DeleteTopics, CreatePartitions on a single node (replication factor 1).

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::ResponseError;
use spool_log::{topic_config, LogError};
use tracing::info;

use super::configs::{config_source, ConfigSource};
use super::{log_error_code, text, uuid};
use crate::state::BrokerState;

pub(crate) fn create_topics(
    state: &BrokerState,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = req
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.0.to_string()))
        .map(|t| t.name.0.to_string())
        .collect();
    let results = req
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let result = CreatableTopicResult::default()
                .with_name(topic.name.clone())
                .with_num_partitions(-1)
                .with_replication_factor(-1);
            let fail = |code: ResponseError, msg: String| {
                result
                    .clone()
                    .with_error_code(code.code())
                    .with_error_message(Some(text(msg)))
            };
            if duplicates.contains(&name) {
                return fail(
                    ResponseError::InvalidRequest,
                    format!("Create topics request from client contains duplicate topic {name}"),
                );
            }
            // Kafka checks the name and existence before anything else, so "create if missing"
            // tools see TOPIC_ALREADY_EXISTS whatever else the request says.
            if let Err(e) = topic_config::validate_name(&name) {
                return fail(ResponseError::InvalidTopicException, e);
            }
            if state.logs.topic(&name).is_some() {
                return fail(
                    ResponseError::TopicAlreadyExists,
                    format!("Topic '{name}' already exists."),
                );
            }
            let partitions = if !topic.assignments.is_empty() {
                if topic.num_partitions != -1 || topic.replication_factor != -1 {
                    return fail(
                        ResponseError::InvalidRequest,
                        "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
                    );
                }
                let node = state.config.node_id;
                if topic.assignments.iter().any(|a| a.broker_ids.iter().any(|b| b.0 != node) || a.broker_ids.len() != 1) {
                    return fail(
                        ResponseError::InvalidReplicaAssignment,
                        format!("every replica must be on broker {node}, the only broker"),
                    );
                }
                topic.assignments.len() as i32
            } else if topic.num_partitions == -1 {
                state.config.default_partitions
            } else if topic.num_partitions <= 0 {
                return fail(
                    ResponseError::InvalidPartitions,
                    "Number of partitions was set to an invalid non-positive value.".into(),
                );
            } else {
                topic.num_partitions
            };
            if partitions > state.config.max_partitions_per_topic {
                return fail(
                    ResponseError::InvalidPartitions,
                    format!(
                        "Number of partitions {partitions} exceeds this broker's limit of {}.",
                        state.config.max_partitions_per_topic
                    ),
                );
            }
            if topic.replication_factor != -1 && topic.replication_factor != 1 {
                let msg = if topic.replication_factor <= 0 {
                    "Replication factor must be larger than 0, or -1 to use the default value.".to_string()
                } else {
                    format!(
                        "Unable to replicate the partition {} time(s): The target replication factor of {} cannot be reached because only 1 broker(s) are registered.",
                        topic.replication_factor, topic.replication_factor
                    )
                };
                return fail(ResponseError::InvalidReplicationFactor, msg);
            }
            let mut configs = BTreeMap::new();
            for c in &topic.configs {
                let Some(value) = &c.value else {
                    return fail(
                        ResponseError::InvalidConfig,
                        format!("Null value not supported for topic configs: {}", c.name),
                    );
                };
                if let Err(reason) = topic_config::validate(&c.name, value) {
                    return fail(ResponseError::InvalidConfig, reason);
                }
                configs.insert(c.name.to_string(), value.to_string());
            }
            let meta = if req.validate_only {
                None
            } else {
                match state.logs.create_topic(&name, partitions, configs.clone()) {
                    Ok(meta) => {
                        info!(topic = %name, partitions, "created topic");
                        Some(meta)
                    }
                    Err(e) => return fail(log_error_code(&e), e.to_string()),
                }
            };
            let mut result = result
                .with_num_partitions(partitions)
                .with_replication_factor(1);
            if let Some(meta) = meta {
                result = result.with_topic_id(uuid(meta.id));
            }
            if version >= 5 {
                result = result.with_configs(Some(
                    topic_config::catalogue()
                        .iter()
                        .map(|entry| {
                            let (value, source) = match configs.get(entry.name) {
                                Some(v) => (v.clone(), ConfigSource::DynamicTopic),
                                None => (entry.default.to_string(), ConfigSource::Default),
                            };
                            CreatableTopicConfigs::default()
                                .with_name(text(entry.name))
                                .with_value(Some(text(value)))
                                .with_config_source(config_source(source))
                        })
                        .collect(),
                ));
            }
            result
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

pub(crate) fn delete_topics(
    state: &BrokerState,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    // v6 names topics by name or id in `topics`; earlier versions list names.
    let targets: Vec<(Option<TopicName>, uuid::Uuid)> = if version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n), uuid::Uuid::nil()))
            .collect()
    };
    let responses = targets
        .into_iter()
        .map(|(name, id)| {
            let meta = match &name {
                Some(n) => state.logs.topic(&n.0),
                None => state.logs.topic_by_id(*id.as_bytes()),
            };
            let result = DeletableTopicResult::default()
                .with_name(name.clone())
                .with_topic_id(id);
            // Name or id, exactly one of them (Kafka's ControllerApis.deleteTopics).
            if name.is_some() != id.is_nil() {
                return result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(text(
                        "name a topic by exactly one of its name and its id",
                    )));
            }
            let Some(meta) = meta else {
                let code = if name.is_some() {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    ResponseError::UnknownTopicId
                };
                return result.with_error_code(code.code());
            };
            let result = result
                .with_name(Some(TopicName(text(meta.name.clone()))))
                .with_topic_id(uuid(meta.id));
            match state.logs.delete_topic(&meta.name) {
                Ok(()) => {
                    info!(topic = %meta.name, "deleted topic");
                    result
                }
                Err(e) => result
                    .with_error_code(log_error_code(&e).code())
                    .with_error_message(Some(text(e.to_string()))),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

pub(crate) fn create_partitions(
    state: &BrokerState,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            let fail = |code: ResponseError, msg: String| {
                result
                    .clone()
                    .with_error_code(code.code())
                    .with_error_message(Some(text(msg)))
            };
            let Some(meta) = state.logs.topic(&t.name.0) else {
                return fail(
                    ResponseError::UnknownTopicOrPartition,
                    format!("The topic '{}' does not exist.", t.name.0),
                );
            };
            if t.count <= meta.partitions {
                return fail(
                    ResponseError::InvalidPartitions,
                    format!(
                        "Topic currently has {} partitions, which is higher than the requested {}.",
                        meta.partitions, t.count
                    ),
                );
            }
            if t.count > state.config.max_partitions_per_topic {
                return fail(
                    ResponseError::InvalidPartitions,
                    format!(
                        "Number of partitions {} exceeds this broker's limit of {}.",
                        t.count, state.config.max_partitions_per_topic
                    ),
                );
            }
            if let Some(assignments) = &t.assignments {
                let node = state.config.node_id;
                let added = (t.count - meta.partitions) as usize;
                if assignments.len() != added
                    || assignments
                        .iter()
                        .any(|a| a.broker_ids.iter().any(|b| b.0 != node))
                {
                    return fail(
                        ResponseError::InvalidReplicaAssignment,
                        format!("assign exactly {added} new partition(s), each to broker {node}"),
                    );
                }
            }
            if req.validate_only {
                return result;
            }
            match state.logs.create_partitions(&meta.name, t.count) {
                Ok(()) => {
                    info!(topic = %meta.name, partitions = t.count, "added partitions");
                    result
                }
                Err(e @ LogError::InvalidPartitions { .. }) => {
                    fail(ResponseError::InvalidPartitions, e.to_string())
                }
                Err(e) => fail(log_error_code(&e), e.to_string()),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
