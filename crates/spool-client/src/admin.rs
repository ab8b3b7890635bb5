//! Cluster administration: topics, partitions, configs, cluster description, offsets.
//!
//! Topic changes go to the controller (on KRaft clusters, the broker Metadata names as
//! controller, which forwards to the quorum); descriptions and offsets go to any broker or to
//! partition leaders.

use std::collections::HashMap;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, ListOffsetsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::cluster::{BrokerInfo, Client, PartitionInfo};
use crate::error::{Error, Result};

/// ListOffsets timestamp asking for the log start.
pub(crate) const EARLIEST_TIMESTAMP: i64 = -2;
/// ListOffsets timestamp asking for the log end.
pub(crate) const LATEST_TIMESTAMP: i64 = -1;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partitions; -1 for the broker's `num.partitions`.
    pub partitions: i32,
    /// Replication factor; -1 for the broker's `default.replication.factor`.
    pub replication_factor: i16,
    /// Topic configs such as `cleanup.policy=compact`.
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with explicit partitions and replication factor.
    pub fn new(name: impl Into<String>, partitions: i32, replication_factor: i16) -> Self {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor,
            configs: Vec::new(),
        }
    }

    /// Adds a topic config.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((key.into(), value.into()));
        self
    }
}

/// A topic in [`Admin::list_topics`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicListing {
    /// Name.
    pub name: String,
    /// Topic id (nil on brokers without topic ids).
    pub id: Uuid,
    /// True for internal topics such as `__consumer_offsets`.
    pub internal: bool,
}

/// A topic in [`Admin::describe_topics`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// Name.
    pub name: String,
    /// Topic id.
    pub id: Uuid,
    /// Internal topic.
    pub internal: bool,
    /// Partitions with leaders and replicas, by index.
    pub partitions: Vec<PartitionInfo>,
}

/// What [`Admin::describe_configs`] describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigResource {
    /// A topic's configs.
    Topic(String),
    /// A broker's configs.
    Broker(i32),
}

/// Where a config value comes from (Kafka's `ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic.
    DynamicTopic,
    /// Set dynamically on this broker.
    DynamicBroker,
    /// Set dynamically as the cluster-wide broker default.
    DynamicDefaultBroker,
    /// From the broker's properties file.
    StaticBroker,
    /// Kafka's built-in default.
    Default,
    /// A dynamic broker logger level.
    DynamicBrokerLogger,
    /// A client-metrics config.
    ClientMetrics,
    /// A group config.
    Group,
    /// A source code this client does not know.
    Unknown(i8),
}

impl ConfigSource {
    fn from_i8(v: i8) -> Self {
        match v {
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            6 => ConfigSource::DynamicBrokerLogger,
            7 => ConfigSource::ClientMetrics,
            8 => ConfigSource::Group,
            other => ConfigSource::Unknown(other),
        }
    }

    /// Kafka's name for the source, e.g. `DYNAMIC_TOPIC_CONFIG`.
    pub fn name(self) -> &'static str {
        match self {
            ConfigSource::DynamicTopic => "DYNAMIC_TOPIC_CONFIG",
            ConfigSource::DynamicBroker => "DYNAMIC_BROKER_CONFIG",
            ConfigSource::DynamicDefaultBroker => "DYNAMIC_DEFAULT_BROKER_CONFIG",
            ConfigSource::StaticBroker => "STATIC_BROKER_CONFIG",
            ConfigSource::Default => "DEFAULT_CONFIG",
            ConfigSource::DynamicBrokerLogger => "DYNAMIC_BROKER_LOGGER_CONFIG",
            ConfigSource::ClientMetrics => "CLIENT_METRICS_CONFIG",
            ConfigSource::Group => "GROUP_CONFIG",
            ConfigSource::Unknown(_) => "UNKNOWN",
        }
    }
}

/// One config of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Name, e.g. `retention.ms`.
    pub name: String,
    /// Value; `None` for sensitive values or unset ones.
    pub value: Option<String>,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// True when it cannot be changed dynamically.
    pub read_only: bool,
    /// True for secrets (whose value is hidden).
    pub sensitive: bool,
}

impl ConfigEntry {
    /// True when the value is Kafka's default.
    pub fn is_default(&self) -> bool {
        self.source == ConfigSource::Default
    }
}

/// The cluster as DescribeCluster (or Metadata) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// Cluster id.
    pub cluster_id: Option<String>,
    /// Controller id (-1 when unknown).
    pub controller_id: i32,
    /// Brokers by id.
    pub brokers: Vec<BrokerInfo>,
}

/// Which offset [`Admin::list_offsets`] looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (the offset the next record will get).
    Latest,
    /// The first offset whose record has a timestamp at or after this (ms since the epoch).
    Timestamp(i64),
}

impl OffsetSpec {
    fn timestamp(self) -> i64 {
        match self {
            OffsetSpec::Earliest => EARLIEST_TIMESTAMP,
            OffsetSpec::Latest => LATEST_TIMESTAMP,
            OffsetSpec::Timestamp(t) => t,
        }
    }
}

/// An offset found by ListOffsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset; -1 when no record matches a timestamp lookup.
    pub offset: i64,
    /// The record's timestamp for timestamp lookups, else -1.
    pub timestamp: i64,
    /// Leader epoch of the offset, -1 when unknown.
    pub leader_epoch: i32,
}

/// Administrative operations on a cluster.
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

impl Client {
    /// An admin client using this client's connections.
    pub fn admin(&self) -> Admin {
        Admin {
            client: self.clone(),
        }
    }
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn timeout_ms(client: &Client) -> i32 {
    client
        .config()
        .request_timeout
        .as_millis()
        .min(i32::MAX as u128) as i32
}

impl Admin {
    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs `op` against the controller, retrying on NOT_CONTROLLER and transport errors.
    async fn with_controller<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut(std::sync::Arc<crate::connection::Connection>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match self.client.controller().await {
                Ok(conn) => op(conn).await,
                Err(e) => Err(e),
            };
            match result {
                Err(e)
                    if attempt < 4 && (e.is(ResponseError::NotController) || e.is_retriable()) =>
                {
                    tracing::debug!(error = %e, "admin request failed; retrying");
                    let _ = self.client.refresh(&[], false).await;
                    tokio::time::sleep(self.client.config().backoff(attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// Creates topics. Fails with the first topic's error (e.g. TOPIC_ALREADY_EXISTS, whose
    /// [`Error::is`] check makes "create if missing" easy).
    pub async fn create_topics(&self, topics: Vec<NewTopic>) -> Result<()> {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(timeout_ms(&self.client))
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(topic_name(&t.name))
                            .with_num_partitions(t.partitions)
                            .with_replication_factor(t.replication_factor)
                            .with_configs(
                                t.configs
                                    .iter()
                                    .map(|(k, v)| {
                                        CreatableTopicConfig::default()
                                            .with_name(StrBytes::from_string(k.clone()))
                                            .with_value(Some(StrBytes::from_string(v.clone())))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        self.with_controller(|conn| {
            let req = req.clone();
            async move {
                let (_, resp) = conn.send(&req).await?;
                for t in resp.topics {
                    let message = t.error_message.map(|m| m.to_string());
                    if let Some(e) = Error::from_code(
                        t.error_code,
                        message,
                        format!("create topic {}", t.name.as_str()),
                    ) {
                        return Err(e);
                    }
                }
                Ok(())
            }
        })
        .await?;
        for t in &topics {
            self.client.invalidate(&t.name);
        }
        Ok(())
    }

    /// Deletes topics by name.
    pub async fn delete_topics(&self, names: &[&str]) -> Result<()> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let result = self
            .with_controller(|conn| {
                let names = names.clone();
                async move {
                    let version = conn.version(ApiKey::DeleteTopics)?;
                    let mut req =
                        DeleteTopicsRequest::default().with_timeout_ms(timeout_ms(&self.client));
                    if version >= 6 {
                        req = req.with_topics(
                            names
                                .iter()
                                .map(|n| DeleteTopicState::default().with_name(Some(topic_name(n))))
                                .collect(),
                        );
                    } else {
                        req = req.with_topic_names(names.iter().map(|n| topic_name(n)).collect());
                    }
                    let resp = conn.send_at(&req, version).await?;
                    for r in resp.responses {
                        let name = r.name.map(|n| n.0.to_string()).unwrap_or_default();
                        let message = r.error_message.map(|m| m.to_string());
                        if let Some(e) =
                            Error::from_code(r.error_code, message, format!("delete topic {name}"))
                        {
                            return Err(e);
                        }
                    }
                    Ok(())
                }
            })
            .await;
        for n in &names {
            self.client.invalidate(n);
        }
        result
    }

    /// Lists the cluster's topics (internal ones included, flagged), sorted by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicListing>> {
        let md = self.client.refresh_all().await?;
        let mut out: Vec<TopicListing> = md
            .topics
            .values()
            .map(|t| TopicListing {
                name: t.name.clone(),
                id: t.id,
                internal: t.internal,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Describes topics: partitions, leaders, replicas. Fails if any topic does not exist.
    pub async fn describe_topics(&self, names: &[&str]) -> Result<Vec<TopicDescription>> {
        let mut outcomes = self.client.refresh(names, false).await?;
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            let t = outcomes.remove(*n).unwrap_or_else(|| {
                Err(Error::from_code(3, None, format!("describe topic {n}")).expect("nonzero"))
            })?;
            out.push(TopicDescription {
                name: t.name.clone(),
                id: t.id,
                internal: t.internal,
                partitions: t.partitions.clone(),
            });
        }
        Ok(out)
    }

    /// Grows a topic to `total_partitions` partitions.
    pub async fn create_partitions(&self, topic: &str, total_partitions: i32) -> Result<()> {
        let req = CreatePartitionsRequest::default()
            .with_timeout_ms(timeout_ms(&self.client))
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(topic))
                .with_count(total_partitions)
                .with_assignments(None)]);
        self.with_controller(|conn| {
            let req = req.clone();
            async move {
                let (_, resp) = conn.send(&req).await?;
                for r in resp.results {
                    let message = r.error_message.map(|m| m.to_string());
                    if let Some(e) = Error::from_code(
                        r.error_code,
                        message,
                        format!("create partitions for {}", r.name.as_str()),
                    ) {
                        return Err(e);
                    }
                }
                Ok(())
            }
        })
        .await?;
        self.client.invalidate(topic);
        Ok(())
    }

    /// Every config of a topic or broker, with its source.
    pub async fn describe_configs(&self, resource: ConfigResource) -> Result<Vec<ConfigEntry>> {
        let (kind, name, conn) = match &resource {
            ConfigResource::Topic(t) => (2i8, t.clone(), self.client.any_broker().await?),
            // Broker configs are answered by that broker.
            ConfigResource::Broker(id) => (4i8, id.to_string(), self.client.broker(*id).await?),
        };
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(kind)
                .with_resource_name(StrBytes::from_string(name.clone()))
                .with_configuration_keys(None),
        ]);
        let (_, resp) = conn.send(&req).await?;
        let mut out = Vec::new();
        for r in resp.results {
            let message = r.error_message.map(|m| m.to_string());
            if let Some(e) = Error::from_code(
                r.error_code,
                message,
                format!("describe configs of {resource:?}"),
            ) {
                return Err(e);
            }
            for c in r.configs {
                out.push(ConfigEntry {
                    name: c.name.to_string(),
                    value: c.value.map(|v| v.to_string()),
                    source: ConfigSource::from_i8(c.config_source),
                    read_only: c.read_only,
                    sensitive: c.is_sensitive,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Cluster id, controller and brokers (DescribeCluster when the broker has it, else
    /// Metadata).
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let conn = self.client.any_broker().await?;
        if conn.versions().supports(ApiKey::DescribeCluster) {
            let (_, resp) = conn.send(&DescribeClusterRequest::default()).await?;
            let message = resp.error_message.map(|m| m.to_string());
            if let Some(e) = Error::from_code(resp.error_code, message, "describe cluster") {
                return Err(e);
            }
            return Ok(ClusterDescription {
                cluster_id: Some(resp.cluster_id.to_string()),
                controller_id: resp.controller_id.0,
                brokers: resp
                    .brokers
                    .into_iter()
                    .map(|b| BrokerInfo {
                        id: b.broker_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                        rack: b.rack.map(|r| r.to_string()),
                    })
                    .collect(),
            });
        }
        self.client.refresh(&[], false).await?;
        let md = self.client.metadata();
        Ok(ClusterDescription {
            cluster_id: md.cluster_id.clone(),
            controller_id: md.controller_id,
            brokers: md.brokers.values().cloned().collect(),
        })
    }

    /// Looks up offsets per partition (earliest, latest or by timestamp).
    pub async fn list_offsets(
        &self,
        specs: &[(&str, i32, OffsetSpec)],
    ) -> Result<HashMap<(String, i32), ListedOffset>> {
        let specs: Vec<(String, i32, i64)> = specs
            .iter()
            .map(|(t, p, s)| (t.to_string(), *p, s.timestamp()))
            .collect();
        list_offsets(&self.client, &specs).await
    }
}

/// ListOffsets for `(topic, partition, timestamp)` triples, sent to each partition's leader,
/// retried after metadata refreshes when leadership moved.
pub(crate) async fn list_offsets(
    client: &Client,
    specs: &[(String, i32, i64)],
) -> Result<HashMap<(String, i32), ListedOffset>> {
    let mut out = HashMap::new();
    let mut todo: Vec<(String, i32, i64)> = specs.to_vec();
    let mut attempt = 0;
    while !todo.is_empty() {
        attempt += 1;
        let mut by_leader: HashMap<i32, Vec<(String, i32, i64)>> = HashMap::new();
        let mut retry = Vec::new();
        let mut last_error = None;
        for (t, p, ts) in todo.drain(..) {
            match client.leader(&t, p).await {
                Ok((leader, _)) => by_leader.entry(leader).or_default().push((t, p, ts)),
                Err(e) if e.is_retriable() && attempt < 5 => {
                    client.invalidate(&t);
                    last_error = Some(e);
                    retry.push((t, p, ts));
                }
                Err(e) => return Err(e),
            }
        }
        for (leader, items) in by_leader {
            let mut topics: indexmap::IndexMap<String, Vec<ListOffsetsPartition>> =
                indexmap::IndexMap::new();
            for (t, p, ts) in &items {
                topics.entry(t.clone()).or_default().push(
                    ListOffsetsPartition::default()
                        .with_partition_index(*p)
                        .with_timestamp(*ts),
                );
            }
            let req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(0)
                .with_timeout_ms(timeout_ms(client))
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(t, parts)| {
                            ListOffsetsTopic::default()
                                .with_name(topic_name(&t))
                                .with_partitions(parts)
                        })
                        .collect(),
                );
            let resp = match client.broker(leader).await {
                Ok(conn) => conn.send(&req).await.map(|(_, r)| r),
                Err(e) => Err(e),
            };
            let resp = match resp {
                Ok(r) => r,
                Err(e) if e.is_retriable() && attempt < 5 => {
                    for (t, _, _) in &items {
                        client.invalidate(t);
                    }
                    last_error = Some(e);
                    retry.extend(items);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let wanted: HashMap<(String, i32), i64> = items
                .iter()
                .map(|(t, p, ts)| ((t.clone(), *p), *ts))
                .collect();
            for t in resp.topics {
                for p in t.partitions {
                    let key = (t.name.0.to_string(), p.partition_index);
                    let Some(ts) = wanted.get(&key) else { continue };
                    match Error::from_code(
                        p.error_code,
                        None,
                        format!("list offsets of {}-{}", key.0, key.1),
                    ) {
                        None => {
                            out.insert(
                                key,
                                ListedOffset {
                                    offset: p.offset,
                                    timestamp: p.timestamp,
                                    leader_epoch: p.leader_epoch,
                                },
                            );
                        }
                        Some(e) if e.is_retriable() && attempt < 5 => {
                            client.invalidate(&key.0);
                            last_error = Some(e);
                            retry.push((key.0, key.1, *ts));
                        }
                        Some(e) => return Err(e),
                    }
                }
            }
        }
        if !retry.is_empty() {
            tracing::debug!(error = ?last_error.map(|e| e.to_string()), "retrying offset lookups");
            tokio::time::sleep(client.config().backoff(attempt)).await;
        }
        todo = retry;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientConfig;
    use crate::testing::MiniBroker;

    #[tokio::test]
    async fn topic_lifecycle() {
        let broker = MiniBroker::start(&[("existing", 1)]).await;
        let client = Client::connect(ClientConfig::new(&broker.addr))
            .await
            .unwrap();
        let admin = client.admin();
        admin
            .create_topics(vec![
                NewTopic::new("a", 3, 1).config("cleanup.policy", "compact")
            ])
            .await
            .unwrap();
        let err = admin
            .create_topics(vec![NewTopic::new("a", 3, 1)])
            .await
            .unwrap_err();
        assert!(err.is(ResponseError::TopicAlreadyExists), "{err}");
        assert!(err.to_string().contains("create topic a"), "{err}");
        let names: Vec<String> = admin
            .list_topics()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, vec!["a", "existing"]);
        let d = admin.describe_topics(&["a"]).await.unwrap();
        assert_eq!(d[0].partitions.len(), 3);
        assert_eq!(d[0].partitions[2].leader, 1);
        admin.create_partitions("a", 5).await.unwrap();
        assert_eq!(
            admin.describe_topics(&["a"]).await.unwrap()[0]
                .partitions
                .len(),
            5
        );
        admin.delete_topics(&["a"]).await.unwrap();
        let err = admin.describe_topics(&["a"]).await.unwrap_err();
        assert!(err.is(ResponseError::UnknownTopicOrPartition), "{err}");
        let c = admin.describe_cluster().await.unwrap();
        assert_eq!(c.cluster_id.as_deref(), Some("mini"));
        assert_eq!(c.brokers.len(), 1);
    }

    #[tokio::test]
    async fn list_offsets_earliest_latest_timestamp() {
        let broker = MiniBroker::start(&[("t", 1)]).await;
        let client = Client::connect(ClientConfig::new(&broker.addr))
            .await
            .unwrap();
        let p = client.producer(crate::ProducerConfig::default()).unwrap();
        for ts in [100, 200, 300] {
            p.send_and_wait(crate::ProducerRecord::new("t", "x").timestamp(ts))
                .await
                .unwrap();
        }
        let admin = client.admin();
        let got = admin
            .list_offsets(&[("t", 0, OffsetSpec::Earliest)])
            .await
            .unwrap();
        assert_eq!(got[&("t".to_string(), 0)].offset, 0);
        let got = admin
            .list_offsets(&[("t", 0, OffsetSpec::Latest)])
            .await
            .unwrap();
        assert_eq!(got[&("t".to_string(), 0)].offset, 3);
        let got = admin
            .list_offsets(&[("t", 0, OffsetSpec::Timestamp(150))])
            .await
            .unwrap();
        assert_eq!(got[&("t".to_string(), 0)].offset, 1);
    }
}
