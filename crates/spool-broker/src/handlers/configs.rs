//! DescribeConfigs: every topic config with its value, default and source, and the broker's
//! static settings.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::ResponseError;
use spool_log::topic_config::{self, ConfigKind};

use super::text;
use crate::state::BrokerState;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Where a config value comes from (Kafka's DescribeConfigs `ConfigSource`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum ConfigSource {
    DynamicTopic,
    StaticBroker,
    Default,
}

pub(crate) fn config_source(s: ConfigSource) -> i8 {
    match s {
        ConfigSource::DynamicTopic => 1,
        ConfigSource::StaticBroker => 4,
        ConfigSource::Default => 5,
    }
}

fn config_type(kind: ConfigKind) -> i8 {
    match kind {
        ConfigKind::Boolean => 1,
        ConfigKind::String => 2,
        ConfigKind::Int => 3,
        ConfigKind::Long => 5,
        ConfigKind::Double => 6,
        ConfigKind::List => 7,
        ConfigKind::Class => 8,
        ConfigKind::Password => 9,
    }
}

pub(crate) fn describe_configs(
    state: &BrokerState,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|res| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let wanted = |name: &str| {
                // Null or empty both mean every config (Kafka's ConfigHelper).
                res.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.is_empty() || keys.iter().any(|k| k.as_str() == name))
            };
            match res.resource_type {
                RESOURCE_TOPIC => {
                    if let Err(e) = topic_config::validate_name(&res.resource_name) {
                        return result
                            .with_error_code(ResponseError::InvalidTopicException.code())
                            .with_error_message(Some(text(e)));
                    }
                    let Some(meta) = state.logs.topic(&res.resource_name) else {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(text(format!(
                                "Topic {} does not exist",
                                res.resource_name.as_str()
                            ))));
                    };
                    let configs = topic_config::catalogue()
                        .iter()
                        .filter(|e| wanted(e.name))
                        .map(|entry| {
                            let (value, source) = match meta.configs.get(entry.name) {
                                Some(v) => (v.clone(), ConfigSource::DynamicTopic),
                                None => (entry.default.to_string(), ConfigSource::Default),
                            };
                            let mut out = DescribeConfigsResourceResult::default()
                                .with_name(text(entry.name))
                                .with_value(Some(text(value.clone())))
                                .with_config_source(config_source(source))
                                .with_config_type(config_type(entry.kind));
                            if req.include_synonyms {
                                out = out.with_synonyms(vec![DescribeConfigsSynonym::default()
                                    .with_name(text(entry.name))
                                    .with_value(Some(text(value)))
                                    .with_source(config_source(source))]);
                            }
                            if version >= 3 && req.include_documentation {
                                out = out.with_documentation(Some(text(entry.doc)));
                            }
                            out
                        })
                        .collect();
                    result.with_configs(configs)
                }
                RESOURCE_BROKER => {
                    let id = state.config.node_id.to_string();
                    if !res.resource_name.is_empty() && res.resource_name.as_str() != id {
                        return result
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(text(format!(
                                "broker {} is not this broker ({id})",
                                res.resource_name.as_str()
                            ))));
                    }
                    let configs = broker_configs(state)
                        .into_iter()
                        .filter(|(name, _, _)| wanted(name))
                        .map(|(name, value, kind)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(text(name))
                                .with_value(Some(text(value)))
                                .with_read_only(true)
                                .with_config_source(config_source(ConfigSource::StaticBroker))
                                .with_config_type(config_type(kind))
                        })
                        .collect();
                    result.with_configs(configs)
                }
                other => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(text(format!(
                        "resource type {other} is not supported"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn broker_configs(state: &BrokerState) -> Vec<(&'static str, String, ConfigKind)> {
    let c = &state.config;
    let (host, port) = &state.advertised;
    vec![
        ("node.id", c.node_id.to_string(), ConfigKind::Int),
        ("broker.id", c.node_id.to_string(), ConfigKind::Int),
        (
            "log.dirs",
            c.data_dir.display().to_string(),
            ConfigKind::String,
        ),
        (
            "advertised.listeners",
            format!("PLAINTEXT://{host}:{port}"),
            ConfigKind::String,
        ),
        (
            "num.partitions",
            c.default_partitions.to_string(),
            ConfigKind::Int,
        ),
        (
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
            ConfigKind::Boolean,
        ),
        ("default.replication.factor", "1".into(), ConfigKind::Int),
        (
            "socket.request.max.bytes",
            c.max_request_bytes.to_string(),
            ConfigKind::Int,
        ),
        (
            "max.connections",
            c.max_connections.to_string(),
            ConfigKind::Int,
        ),
        (
            "log.retention.check.interval.ms",
            c.retention_check_interval_ms.to_string(),
            ConfigKind::Long,
        ),
    ]
}
