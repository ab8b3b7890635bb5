//! The cluster as the client sees it: bootstrap, a metadata cache (brokers, topics, partition
//! leaders) and one pooled connection per broker id.
//!
//! Metadata is fetched per topic on first use and refreshed when it is older than
//! `metadata_max_age`, or when a component reports that it is out of date
//! ([`Client::invalidate`]: after NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION,
//! LEADER_NOT_AVAILABLE, a lost connection, ...). Brokers are reached at the host and port they
//! advertise, so multi-broker clusters whose leaders live on different brokers just work.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rand::seq::SliceRandom;
use uuid::Uuid;

use crate::config::ClientConfig;
use crate::connection::Connection;
use crate::error::{Error, Result};

/// A broker as advertised in metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Broker (node) id.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, if configured.
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// `host:port`, with brackets around IPv6 literals.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One partition's leadership and replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Leader broker id, -1 while there is none.
    pub leader: i32,
    /// Leader epoch, -1 when unknown.
    pub leader_epoch: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replica broker ids.
    pub isr: Vec<i32>,
    /// Offline replica broker ids.
    pub offline_replicas: Vec<i32>,
    /// Partition-level error code from the broker (0 when none).
    pub error_code: i16,
}

/// A topic's metadata.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Topic id (nil when the broker's Metadata version predates topic ids).
    pub id: Uuid,
    /// True for internal topics such as `__consumer_offsets`.
    pub internal: bool,
    /// Partitions sorted by index.
    pub partitions: Vec<PartitionInfo>,
    pub(crate) fetched_at: Instant,
}

impl TopicInfo {
    /// Number of partitions.
    pub fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }

    /// One partition's metadata.
    pub fn partition(&self, partition: i32) -> Option<&PartitionInfo> {
        self.partitions
            .binary_search_by_key(&partition, |p| p.partition)
            .ok()
            .map(|i| &self.partitions[i])
    }

    /// Partitions that currently have a leader.
    pub fn available_partitions(&self) -> Vec<i32> {
        self.partitions
            .iter()
            .filter(|p| p.leader >= 0)
            .map(|p| p.partition)
            .collect()
    }
}

/// A snapshot of cluster metadata.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// Cluster id, when the broker reports one.
    pub cluster_id: Option<String>,
    /// Controller id (-1 when unknown). KRaft brokers report some broker that forwards to the
    /// controller quorum.
    pub controller_id: i32,
    /// Known brokers by id.
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// Topics fetched so far, by name.
    pub topics: HashMap<String, Arc<TopicInfo>>,
}

impl Metadata {
    /// The leader of a partition, when known.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let p = self.topics.get(topic)?.partition(partition)?;
        (p.leader >= 0).then_some(p.leader)
    }

    /// The name of the topic with id `id`.
    pub fn topic_name(&self, id: &Uuid) -> Option<&str> {
        if id.is_nil() {
            return None;
        }
        self.topics
            .values()
            .find(|t| &t.id == id)
            .map(|t| t.name.as_str())
    }
}

#[derive(Default)]
struct BrokerSlot {
    conn: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

struct Inner {
    config: ClientConfig,
    metadata: RwLock<Arc<Metadata>>,
    stale: Mutex<HashSet<String>>,
    /// Bumped after every change to `metadata` or `stale`, so callers that keep what they
    /// looked up (the producer, per record) can tell cheaply whether it still holds.
    generation: AtomicU64,
    pool: Mutex<HashMap<i32, Arc<BrokerSlot>>>,
    /// The connection bootstrap used, kept as a last resort for metadata requests.
    bootstrap: tokio::sync::Mutex<Option<Arc<Connection>>>,
    refresh_lock: tokio::sync::Mutex<()>,
}

/// Connections of one user (a consumer's fetcher) kept apart from the client's shared pool.
///
/// A broker answers the requests of one connection in order, so a long-poll Fetch parked on a
/// shared connection would hold back every other request sent on it (a producer's sends, an
/// admin call). Java's producer and consumer never share a connection for the same reason.
#[derive(Default)]
pub struct ConnectionPool {
    slots: Mutex<HashMap<i32, Arc<BrokerSlot>>>,
}

impl std::fmt::Debug for ConnectionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionPool").finish_non_exhaustive()
    }
}

impl ConnectionPool {
    /// The connection to broker `id` in this pool, (re)connecting when needed.
    pub async fn broker(&self, client: &Client, id: i32) -> Result<Arc<Connection>> {
        client.pooled(&self.slots, id).await
    }
}

/// A handle on a Kafka cluster: metadata plus pooled broker connections.
///
/// Cheap to clone; producers, consumers and the admin client made from it share its
/// connections and metadata.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap_servers", &self.inner.config.bootstrap_servers)
            .finish()
    }
}

/// What a metadata refresh learned about one requested topic.
type TopicOutcome = Result<Arc<TopicInfo>>;

impl Client {
    /// Connects to the first bootstrap server that answers and learns the cluster's brokers.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        config.validate()?;
        let client = Client {
            inner: Arc::new(Inner {
                config,
                metadata: RwLock::new(Arc::new(Metadata {
                    controller_id: -1,
                    ..Default::default()
                })),
                stale: Mutex::new(HashSet::new()),
                generation: AtomicU64::new(0),
                pool: Mutex::new(HashMap::new()),
                bootstrap: tokio::sync::Mutex::new(None),
                refresh_lock: tokio::sync::Mutex::new(()),
            }),
        };
        client.bootstrap().await?;
        client.refresh(&[], false).await?;
        Ok(client)
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The current metadata snapshot (no network).
    pub fn metadata(&self) -> Arc<Metadata> {
        self.inner.metadata.read().unwrap().clone()
    }

    /// Marks a topic's metadata as out of date; the next lookup refreshes it.
    pub fn invalidate(&self, topic: &str) {
        self.inner.stale.lock().unwrap().insert(topic.to_string());
        self.inner.generation.fetch_add(1, Ordering::Release);
    }

    /// Changes whenever cached metadata changes or a topic is invalidated: a lookup made
    /// after reading generation `g` is still what [`Client::cached_topic`] would say while
    /// the generation is `g`.
    pub(crate) fn metadata_generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// True when a topic was invalidated and not refreshed since.
    pub(crate) fn is_stale(&self, topic: &str) -> bool {
        self.inner.stale.lock().unwrap().contains(topic)
    }

    /// A topic's metadata, refreshed if missing, stale or older than `metadata_max_age`.
    /// Does not ask the broker to auto-create the topic.
    pub async fn topic(&self, name: &str) -> Result<Arc<TopicInfo>> {
        self.topic_with(name, false).await
    }

    /// Like [`Client::topic`], letting the broker auto-create the topic when `auto_create`
    /// (and the broker's `auto.create.topics.enable`) allow it.
    pub async fn topic_with(&self, name: &str, auto_create: bool) -> Result<Arc<TopicInfo>> {
        if let Some(t) = self.cached_topic(name) {
            return Ok(t);
        }
        let mut outcomes = self.refresh(&[name], auto_create).await?;
        outcomes.remove(name).unwrap_or_else(|| {
            Err(Error::from_code(3, None, format!("metadata for {name}")).expect("nonzero"))
        })
    }

    /// The cached topic if it is fresh and not invalidated.
    pub(crate) fn cached_topic(&self, name: &str) -> Option<Arc<TopicInfo>> {
        self.cached_topic_at(name, Instant::now())
    }

    /// [`Client::cached_topic`] with the caller's clock reading: the producer's per-record
    /// path reads the clock once for everything it needs.
    pub(crate) fn cached_topic_at(&self, name: &str, now: Instant) -> Option<Arc<TopicInfo>> {
        {
            let stale = self.inner.stale.lock().unwrap();
            if !stale.is_empty() && stale.contains(name) {
                return None;
            }
        }
        let md = self.inner.metadata.read().unwrap();
        let t = md.topics.get(name)?;
        (now.saturating_duration_since(t.fetched_at) < self.inner.config.metadata_max_age)
            .then(|| t.clone())
    }

    /// Fetches metadata for `topics` (just brokers when empty) and merges it into the cache.
    /// Returns, per requested topic, its metadata or the topic-level error.
    pub(crate) async fn refresh(
        &self,
        topics: &[&str],
        auto_create: bool,
    ) -> Result<HashMap<String, TopicOutcome>> {
        let started = Instant::now();
        let _guard = self.inner.refresh_lock.lock().await;
        // Someone refreshed these while we waited: use theirs.
        if !topics.is_empty() {
            let md = self.metadata();
            let stale = self.inner.stale.lock().unwrap().clone();
            let fresh: Option<HashMap<_, _>> = topics
                .iter()
                .map(|t| {
                    md.topics
                        .get(*t)
                        .filter(|i| i.fetched_at >= started && !stale.contains(*t))
                        .map(|i| (t.to_string(), Ok(i.clone())))
                })
                .collect();
            if let Some(fresh) = fresh {
                return Ok(fresh);
            }
        }
        let request = Some(topics.iter().map(|t| t.to_string()).collect::<Vec<_>>());
        let resp = self.fetch_metadata(request, auto_create).await?;
        Ok(self.merge(resp, topics, false))
    }

    /// Fetches metadata for every topic and replaces the cached topic list with it.
    pub async fn refresh_all(&self) -> Result<Arc<Metadata>> {
        let _guard = self.inner.refresh_lock.lock().await;
        let resp = self.fetch_metadata(None, false).await?;
        self.merge(resp, &[], true);
        Ok(self.metadata())
    }

    fn merge(
        &self,
        resp: MetadataResponse,
        requested: &[&str],
        replace_all: bool,
    ) -> HashMap<String, TopicOutcome> {
        let now = Instant::now();
        let mut md = (*self.metadata()).clone();
        if replace_all {
            md.topics.clear();
        }
        md.cluster_id = resp.cluster_id.map(|s| s.to_string());
        md.controller_id = resp.controller_id.0;
        if !resp.brokers.is_empty() {
            md.brokers = resp
                .brokers
                .into_iter()
                .map(|b| {
                    let info = BrokerInfo {
                        id: b.node_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                        rack: b.rack.map(|r| r.to_string()),
                    };
                    (info.id, info)
                })
                .collect();
        }
        let mut outcomes = HashMap::new();
        let mut stale = self.inner.stale.lock().unwrap();
        for t in resp.topics {
            let Some(name) = t.name.map(|n| n.0.to_string()) else {
                continue;
            };
            stale.remove(&name);
            let err = Error::from_code(t.error_code, None, format!("metadata for topic {name}"));
            if let Some(err) = err {
                // The topic is gone (or not there yet): forget what we knew.
                md.topics.remove(&name);
                outcomes.insert(name, Err(err));
                continue;
            }
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .into_iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.into_iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.into_iter().map(|b| b.0).collect(),
                    offline_replicas: p.offline_replicas.into_iter().map(|b| b.0).collect(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            let info = Arc::new(TopicInfo {
                name: name.clone(),
                id: t.topic_id,
                internal: t.is_internal,
                partitions,
                fetched_at: now,
            });
            md.topics.insert(name.clone(), info.clone());
            outcomes.insert(name, Ok(info));
        }

        for r in requested {
            outcomes.entry(r.to_string()).or_insert_with(|| {
                Err(Error::from_code(3, None, format!("metadata for topic {r}")).expect("nonzero"))
            });
        }
        // Published before `stale` is released: a lookup never sees a topic as no longer
        // stale while the metadata it reads is still the old one.
        *self.inner.metadata.write().unwrap() = Arc::new(md);
        drop(stale);
        self.inner.generation.fetch_add(1, Ordering::Release);
        outcomes
    }

    /// Sends one Metadata request to some broker, trying others on transport errors.
    /// `topics: None` asks for every topic.
    pub(crate) async fn fetch_metadata(
        &self,
        topics: Option<Vec<String>>,
        auto_create: bool,
    ) -> Result<MetadataResponse> {
        let mut last = None;
        for attempt in 0..3 {
            let conn = match self.any_broker().await {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(self.inner.config.backoff(attempt + 1)).await;
                    continue;
                }
            };
            let req = MetadataRequest::default()
                .with_topics(topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| {
                            MetadataRequestTopic::default()
                                .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                        })
                        .collect()
                }))
                // Before v4 the broker decides alone (and the field may not be false).
                .with_allow_auto_topic_creation(
                    auto_create || conn.version(ApiKey::Metadata).is_ok_and(|v| v < 4),
                );
            match conn.send(&req).await {
                Ok((_, resp)) => {
                    if let Some(e) = Error::from_code(resp.error_code, None, "metadata") {
                        return Err(e);
                    }
                    return Ok(resp);
                }
                Err(e) if e.is_retriable() => {
                    tracing::debug!(error = %e, "metadata request failed; trying another broker");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(Error::Closed("client")))
    }

    async fn bootstrap(&self) -> Result<Arc<Connection>> {
        let mut slot = self.inner.bootstrap.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_poisoned()) {
            return Ok(c.clone());
        }
        let mut last = None;
        for addr in &self.inner.config.bootstrap_servers {
            match Connection::connect(addr, &self.inner.config).await {
                Ok(c) => {
                    let c = Arc::new(c);
                    *slot = Some(c.clone());
                    return Ok(c);
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "bootstrap server unreachable");
                    last = Some(e);
                }
            }
        }
        Err(Error::Bootstrap {
            servers: self.inner.config.bootstrap_servers.join(","),
            last: Box::new(last.unwrap_or(Error::Config("no bootstrap servers".into()))),
        })
    }

    /// A connection to any broker: an open pooled one if there is one, else a known broker,
    /// else a bootstrap server.
    pub async fn any_broker(&self) -> Result<Arc<Connection>> {
        let slots: Vec<(i32, Arc<BrokerSlot>)> = self
            .inner
            .pool
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let md = self.metadata();
        for (id, slot) in &slots {
            if !md.brokers.contains_key(id) {
                continue;
            }
            if let Ok(guard) = slot.conn.try_lock() {
                if let Some(c) = guard.as_ref().filter(|c| !c.is_poisoned()) {
                    return Ok(c.clone());
                }
            }
        }
        let mut ids: Vec<i32> = md.brokers.keys().copied().collect();
        ids.shuffle(&mut rand::thread_rng());
        let mut last = None;
        for id in ids {
            match self.broker(id).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        match self.bootstrap().await {
            Ok(c) => Ok(c),
            Err(e) => Err(last.unwrap_or(e)),
        }
    }

    /// The pooled connection to broker `id`, (re)connecting when needed.
    pub async fn broker(&self, id: i32) -> Result<Arc<Connection>> {
        self.pooled(&self.inner.pool, id).await
    }

    /// The connection to broker `id` from `pool`, (re)connecting when needed.
    async fn pooled(
        &self,
        pool: &Mutex<HashMap<i32, Arc<BrokerSlot>>>,
        id: i32,
    ) -> Result<Arc<Connection>> {
        let info = match self.metadata().brokers.get(&id) {
            Some(b) => b.clone(),
            None => {
                // Boxed: refresh -> any_broker -> broker is a (bounded) async recursion.
                Box::pin(self.refresh(&[], false)).await?;
                self.metadata().brokers.get(&id).cloned().ok_or_else(|| {
                    Error::from_code(8, None, format!("broker {id} is not in the metadata"))
                        .expect("nonzero")
                })?
            }
        };
        let addr = info.addr();
        let slot = pool.lock().unwrap().entry(id).or_default().clone();
        let mut guard = slot.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            if !c.is_poisoned() && c.addr() == addr {
                return Ok(c.clone());
            }
        }
        let conn = Arc::new(Connection::connect(&addr, &self.inner.config).await?);
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// The leader of a partition and a connection to it, refreshing metadata if the leader is
    /// unknown.
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<(i32, Arc<Connection>)> {
        let t = self.topic(topic).await?;
        let p = t.partition(partition).ok_or_else(|| {
            Error::from_code(3, None, format!("{topic}-{partition}")).expect("nonzero")
        })?;
        let leader = if p.leader >= 0 {
            p.leader
        } else {
            self.invalidate(topic);
            let t = self.topic(topic).await?;
            let p = t.partition(partition).map(|p| p.leader).unwrap_or(-1);
            if p < 0 {
                return Err(Error::Kafka {
                    error: ResponseError::LeaderNotAvailable,
                    message: None,
                    context: format!("leader of {topic}-{partition}"),
                });
            }
            p
        };
        Ok((leader, self.broker(leader).await?))
    }

    /// A connection to the controller (what KRaft brokers report as controller forwards to the
    /// quorum), or to any broker when none is known.
    pub async fn controller(&self) -> Result<Arc<Connection>> {
        let id = self.metadata().controller_id;
        if id >= 0 {
            if let Ok(c) = self.broker(id).await {
                return Ok(c);
            }
        }
        self.any_broker().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{ApiVersionsResponse, BrokerId, RequestKind};
    use tokio::net::TcpListener;

    /// A tiny scripted broker on 127.0.0.1 answering ApiVersions and Metadata.
    pub(crate) async fn fake_cluster(
        topics: Vec<(&'static str, i32)>,
    ) -> (String, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let topics = topics.clone();
                tokio::spawn(async move {
                    let mut b = crate::connection::tests::FakeBroker { io: sock };
                    while let Some((h, kind)) = b.read_kind().await {
                        match kind {
                            RequestKind::ApiVersions(_) => {
                                let keys = [ApiKey::ApiVersions, ApiKey::Metadata]
                                    .iter()
                                    .map(|k| {
                                        let r = k.valid_versions();
                                        ApiVersion::default()
                                            .with_api_key(*k as i16)
                                            .with_min_version(r.min)
                                            .with_max_version(r.max)
                                    })
                                    .collect();
                                b.respond(&h, &ApiVersionsResponse::default().with_api_keys(keys))
                                    .await;
                            }
                            RequestKind::Metadata(req) => {
                                let wanted: Option<Vec<String>> = req.topics.map(|ts| {
                                    ts.into_iter()
                                        .filter_map(|t| t.name.map(|n| n.0.to_string()))
                                        .collect()
                                });
                                let resp = MetadataResponse::default()
                                    .with_cluster_id(Some(StrBytes::from_static_str("fake")))
                                    .with_controller_id(BrokerId(1))
                                    .with_brokers(vec![MetadataResponseBroker::default()
                                        .with_node_id(BrokerId(1))
                                        .with_host(StrBytes::from_static_str("127.0.0.1"))
                                        .with_port(addr.port() as i32)])
                                    .with_topics(
                                        topics
                                            .iter()
                                            .filter(|(n, _)| {
                                                wanted
                                                    .as_ref()
                                                    .is_none_or(|w| w.iter().any(|x| x == n))
                                            })
                                            .map(|(n, count)| {
                                                MetadataResponseTopic::default()
                                                    .with_name(Some(TopicName(
                                                        StrBytes::from_static_str(n),
                                                    )))
                                                    .with_topic_id(Uuid::from_u128(7))
                                                    .with_partitions(
                                                        (0..*count)
                                                            .map(|i| {
                                                                MetadataResponsePartition::default()
                                                                    .with_partition_index(i)
                                                                    .with_leader_id(BrokerId(1))
                                                                    .with_replica_nodes(vec![
                                                                        BrokerId(1),
                                                                    ])
                                                                    .with_isr_nodes(vec![BrokerId(
                                                                        1,
                                                                    )])
                                                            })
                                                            .rev()
                                                            .collect(),
                                                    )
                                            })
                                            .chain(
                                                wanted
                                                    .iter()
                                                    .flatten()
                                                    .filter(|w| !topics.iter().any(|(n, _)| n == w))
                                                    .map(|w| {
                                                        MetadataResponseTopic::default()
                                                            .with_name(Some(TopicName(
                                                                StrBytes::from_string(w.clone()),
                                                            )))
                                                            .with_error_code(3)
                                                    }),
                                            )
                                            .collect(),
                                    );
                                b.respond(&h, &resp).await;
                            }
                            _ => return,
                        }
                    }
                });
            }
        });
        (addr.to_string(), handle)
    }

    #[tokio::test]
    async fn the_metadata_generation_moves_on_every_change_a_cached_lookup_depends_on() {
        let (addr, _server) = fake_cluster(vec![("orders", 3)]).await;
        let client = Client::connect(ClientConfig::new(&addr)).await.unwrap();
        client.topic("orders").await.unwrap();
        let g = client.metadata_generation();
        assert!(client.cached_topic("orders").is_some());
        assert_eq!(client.metadata_generation(), g, "lookups change nothing");
        client.invalidate("orders");
        let g2 = client.metadata_generation();
        assert_ne!(g2, g);
        assert!(client.cached_topic("orders").is_none());
        client.topic("orders").await.unwrap();
        assert_ne!(client.metadata_generation(), g2, "a refresh moves it");
        assert!(client.cached_topic("orders").is_some());
    }

    #[tokio::test]
    async fn bootstraps_caches_topics_and_pools_connections() {
        let (addr, server) = fake_cluster(vec![("orders", 3)]).await;
        let client = Client::connect(ClientConfig::new(&addr)).await.unwrap();
        let md = client.metadata();
        assert_eq!(md.cluster_id.as_deref(), Some("fake"));
        assert_eq!(md.brokers[&1].addr(), addr);
        let t = client.topic("orders").await.unwrap();
        assert_eq!(t.partition_count(), 3);
        assert_eq!(t.partitions[0].partition, 0, "sorted by index");
        assert_eq!(t.partition(2).unwrap().leader, 1);
        assert_eq!(client.metadata().leader("orders", 1), Some(1));
        assert_eq!(
            client.metadata().topic_name(&Uuid::from_u128(7)),
            Some("orders")
        );
        let err = client.topic("missing").await.unwrap_err();
        assert!(err.is(ResponseError::UnknownTopicOrPartition), "{err}");
        let (leader, c1) = client.leader("orders", 0).await.unwrap();
        assert_eq!(leader, 1);
        let c2 = client.broker(1).await.unwrap();
        assert!(Arc::ptr_eq(&c1, &c2), "one pooled connection per broker");
        client.invalidate("orders");
        assert!(client.cached_topic("orders").is_none());
        client.topic("orders").await.unwrap();
        assert!(client.cached_topic("orders").is_some());
        server.abort();
    }

    #[tokio::test]
    async fn bootstrap_failure_names_the_servers() {
        let err = Client::connect(ClientConfig::new("127.0.0.1:1"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Bootstrap { .. }), "{err}");
        assert!(err.to_string().contains("127.0.0.1:1"));
    }

    #[test]
    fn ipv6_addresses_get_brackets() {
        let b = BrokerInfo {
            id: 1,
            host: "::1".into(),
            port: 9092,
            rack: None,
        };
        assert_eq!(b.addr(), "[::1]:9092");
    }
}
