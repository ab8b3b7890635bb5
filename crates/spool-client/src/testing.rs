//! An in-memory single-node broker for unit tests, on 127.0.0.1, with fault injection.
//!
//! It implements just enough of Kafka for the client's own tests: ApiVersions, Metadata,
//! InitProducerId, Produce (with idempotent sequence checks), Fetch, ListOffsets, CreateTopics,
//! DeleteTopics, CreatePartitions, DescribeCluster. It is no model of the real broker (that is
//! spool-broker's job); integration against real brokers lives elsewhere.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use spool_protocol::batch::{set_base_offset, Batches};
use spool_protocol::records::DecodedBatches;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::connection::tests::FakeBroker;

/// One partition's log.
#[derive(Default)]
pub(crate) struct PartitionLog {
    /// (base offset, batch bytes with the base offset assigned)
    pub batches: Vec<(i64, Bytes)>,
    pub next_offset: i64,
    /// producer id -> (epoch, last sequence, base offset of the last batch, its first sequence)
    producers: HashMap<i64, (i16, i32, i64, i32)>,
}

pub(crate) struct TopicState {
    pub id: Uuid,
    pub partitions: Vec<PartitionLog>,
}

/// The broker's state; tests reach in to inspect it or inject faults.
#[derive(Default)]
pub(crate) struct BrokerState {
    pub topics: BTreeMap<String, TopicState>,
    next_pid: i64,
    /// Error codes answered to whole Produce requests, one per request, before appending.
    pub produce_faults: VecDeque<i16>,
    /// Number of Produce requests seen.
    pub produce_requests: usize,
    /// Caps on advertised versions, by API key.
    pub max_versions: HashMap<i16, i16>,
    /// Topics created on Metadata requests that allow it.
    pub auto_create: bool,
    /// (broker id, port) of every broker of the cluster.
    pub brokers: Vec<(i32, i32)>,
    /// Leader per partition; absent means `partition % brokers + 1`.
    pub leaders: HashMap<(String, i32), i32>,
}

impl BrokerState {
    fn create(&mut self, name: &str, partitions: i32) {
        let id = Uuid::from_u128(self.topics.len() as u128 + 1);
        self.topics.insert(
            name.to_string(),
            TopicState {
                id,
                partitions: (0..partitions).map(|_| PartitionLog::default()).collect(),
            },
        );
    }

    pub fn leader(&self, topic: &str, partition: i32) -> i32 {
        self.leaders
            .get(&(topic.to_string(), partition))
            .copied()
            .unwrap_or(partition % self.brokers.len().max(1) as i32 + 1)
    }

    fn name_of(&self, id: &Uuid) -> Option<String> {
        self.topics
            .iter()
            .find(|(_, t)| &t.id == id)
            .map(|(n, _)| n.clone())
    }
}

/// A running in-memory cluster of one or more brokers sharing one state (so leadership can
/// move between them). Brokers have ids 1..=n.
pub(crate) struct MiniBroker {
    /// Address of broker 1.
    pub addr: String,
    pub state: Arc<Mutex<BrokerState>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for MiniBroker {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

const SUPPORTED: &[ApiKey] = &[
    ApiKey::ApiVersions,
    ApiKey::Metadata,
    ApiKey::InitProducerId,
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::CreatePartitions,
    ApiKey::DescribeCluster,
];

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

impl MiniBroker {
    /// Starts a one-broker cluster with the given topics (name, partitions).
    pub async fn start(topics: &[(&str, i32)]) -> MiniBroker {
        Self::cluster(1, topics).await
    }

    /// Starts `n` brokers; partition `p` is led by broker `p % n + 1` unless moved.
    pub async fn cluster(n: i32, topics: &[(&str, i32)]) -> MiniBroker {
        let mut st = BrokerState {
            auto_create: true,
            ..Default::default()
        };
        for (t, count) in topics {
            st.create(t, *count);
        }
        let mut listeners = Vec::new();
        for id in 1..=n {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            st.brokers.push((id, l.local_addr().unwrap().port() as i32));
            listeners.push((id, l));
        }
        let addr = format!("127.0.0.1:{}", st.brokers[0].1);
        let state = Arc::new(Mutex::new(st));
        let mut tasks = Vec::new();
        for (id, listener) in listeners {
            let s = state.clone();
            tasks.push(tokio::spawn(async move {
                while let Ok((sock, _)) = listener.accept().await {
                    let s = s.clone();
                    tokio::spawn(async move {
                        let mut b = FakeBroker { io: sock };
                        while let Some((h, kind)) = b.read_kind().await {
                            if let Some(resp) = handle(&s, id, kind).await {
                                respond_kind(&mut b, &h, resp).await;
                            }
                        }
                    });
                }
            }));
        }
        MiniBroker { addr, state, tasks }
    }

    /// Record count per partition of `topic`.
    pub fn record_values(&self, topic: &str, partition: usize) -> Vec<(i64, Option<Bytes>)> {
        let st = self.state.lock().unwrap();
        let log = &st.topics[topic].partitions[partition];
        let mut out = Vec::new();
        for (_, b) in &log.batches {
            for batch in DecodedBatches::new(b.clone(), 1 << 24) {
                for r in batch.unwrap().records {
                    let r = r.unwrap();
                    out.push((r.offset, r.value));
                }
            }
        }
        out
    }
}

async fn respond_kind(
    b: &mut FakeBroker<tokio::net::TcpStream>,
    h: &RequestHeader,
    resp: ResponseKind,
) {
    match resp {
        ResponseKind::ApiVersions(r) => b.respond(h, &r).await,
        ResponseKind::Metadata(r) => b.respond(h, &r).await,
        ResponseKind::InitProducerId(r) => b.respond(h, &r).await,
        ResponseKind::Produce(r) => b.respond(h, &r).await,
        ResponseKind::Fetch(r) => b.respond(h, &r).await,
        ResponseKind::ListOffsets(r) => b.respond(h, &r).await,
        ResponseKind::CreateTopics(r) => b.respond(h, &r).await,
        ResponseKind::DeleteTopics(r) => b.respond(h, &r).await,
        ResponseKind::CreatePartitions(r) => b.respond(h, &r).await,
        ResponseKind::DescribeCluster(r) => b.respond(h, &r).await,
        other => panic!("mini broker cannot answer {other:?}"),
    }
}

async fn handle(
    state: &Arc<Mutex<BrokerState>>,
    me: i32,
    req: RequestKind,
) -> Option<ResponseKind> {
    Some(match req {
        RequestKind::ApiVersions(_) => {
            let st = state.lock().unwrap();
            let keys = SUPPORTED
                .iter()
                .map(|k| {
                    let r = k.valid_versions();
                    let max = st.max_versions.get(&(*k as i16)).copied().unwrap_or(r.max);
                    ApiVersion::default()
                        .with_api_key(*k as i16)
                        .with_min_version(r.min)
                        .with_max_version(max)
                })
                .collect();
            ResponseKind::ApiVersions(ApiVersionsResponse::default().with_api_keys(keys))
        }
        RequestKind::Metadata(req) => {
            let mut st = state.lock().unwrap();
            let wanted: Option<Vec<String>> = req.topics.map(|ts| {
                ts.into_iter()
                    .filter_map(|t| t.name.map(|n| n.0.to_string()))
                    .collect()
            });
            if let Some(w) = &wanted {
                for t in w {
                    if !st.topics.contains_key(t) && req.allow_auto_topic_creation && st.auto_create
                    {
                        st.create(t, 3);
                    }
                }
            }
            let names: Vec<String> = match &wanted {
                Some(w) => w.clone(),
                None => st.topics.keys().cloned().collect(),
            };
            let topics = names
                .iter()
                .map(|n| match st.topics.get(n) {
                    None => MetadataResponseTopic::default()
                        .with_name(Some(name(n)))
                        .with_error_code(3),
                    Some(t) => MetadataResponseTopic::default()
                        .with_name(Some(name(n)))
                        .with_topic_id(t.id)
                        .with_partitions(
                            (0..t.partitions.len() as i32)
                                .map(|i| {
                                    let leader = st.leader(n, i);
                                    MetadataResponsePartition::default()
                                        .with_partition_index(i)
                                        .with_leader_id(BrokerId(leader))
                                        .with_leader_epoch(0)
                                        .with_replica_nodes(vec![BrokerId(leader)])
                                        .with_isr_nodes(vec![BrokerId(leader)])
                                })
                                .collect(),
                        ),
                })
                .collect();
            ResponseKind::Metadata(
                MetadataResponse::default()
                    .with_cluster_id(Some(StrBytes::from_static_str("mini")))
                    .with_controller_id(BrokerId(1))
                    .with_brokers(
                        st.brokers
                            .iter()
                            .map(|(id, port)| {
                                MetadataResponseBroker::default()
                                    .with_node_id(BrokerId(*id))
                                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                                    .with_port(*port)
                            })
                            .collect(),
                    )
                    .with_topics(topics),
            )
        }
        RequestKind::InitProducerId(_) => {
            let mut st = state.lock().unwrap();
            st.next_pid += 1;
            ResponseKind::InitProducerId(
                InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(st.next_pid + 1000))
                    .with_producer_epoch(0),
            )
        }
        RequestKind::Produce(req) => {
            let mut st = state.lock().unwrap();
            st.produce_requests += 1;
            let fault = st.produce_faults.pop_front();
            let acks = req.acks;
            let mut responses = Vec::new();
            for t in req.topic_data {
                let tname = if t.topic_id.is_nil() {
                    t.name.0.to_string()
                } else {
                    st.name_of(&t.topic_id).unwrap_or_default()
                };
                let mut parts = Vec::new();
                for p in t.partition_data {
                    let mut resp = PartitionProduceResponse::default().with_index(p.index);
                    let leader = st.leader(&tname, p.index);
                    match (fault, st.topics.get_mut(&tname)) {
                        (_, Some(_)) if leader != me => resp = resp.with_error_code(6),
                        (Some(code), _) => resp = resp.with_error_code(code),
                        (None, None) => resp = resp.with_error_code(3),
                        (None, Some(topic)) => match topic.partitions.get_mut(p.index as usize) {
                            None => resp = resp.with_error_code(3),
                            Some(log) => {
                                let (code, base) = append(log, p.records.unwrap_or_default());
                                resp = resp.with_error_code(code).with_base_offset(base);
                            }
                        },
                    }
                    parts.push(resp);
                }
                responses.push(
                    TopicProduceResponse::default()
                        .with_name(t.name)
                        .with_topic_id(t.topic_id)
                        .with_partition_responses(parts),
                );
            }
            if acks == 0 {
                return None;
            }
            ResponseKind::Produce(ProduceResponse::default().with_responses(responses))
        }
        RequestKind::Fetch(req) => {
            let mut empty = true;
            let mut topics = Vec::new();
            {
                let st = state.lock().unwrap();
                for t in &req.topics {
                    let tname = if t.topic_id.is_nil() {
                        t.topic.0.to_string()
                    } else {
                        st.name_of(&t.topic_id).unwrap_or_default()
                    };
                    let mut parts = Vec::new();
                    for p in &t.partitions {
                        let mut pd = PartitionData::default().with_partition_index(p.partition);
                        match st
                            .topics
                            .get(&tname)
                            .and_then(|t| t.partitions.get(p.partition as usize))
                        {
                            None => pd = pd.with_error_code(3),
                            Some(_) if st.leader(&tname, p.partition) != me => {
                                pd = pd.with_error_code(6)
                            }
                            Some(log) if p.fetch_offset < 0 || p.fetch_offset > log.next_offset => {
                                pd = pd.with_error_code(1).with_high_watermark(log.next_offset)
                            }
                            Some(log) => {
                                let mut out = BytesMut::new();
                                for (_, b) in &log.batches {
                                    let h = spool_protocol::batch::BatchHeader::parse(b).unwrap();
                                    if h.last_offset() >= p.fetch_offset
                                        && (out.is_empty()
                                            || out.len() + b.len()
                                                <= p.partition_max_bytes as usize)
                                    {
                                        out.extend_from_slice(b);
                                    }
                                }
                                if !out.is_empty() {
                                    empty = false;
                                }
                                pd = pd
                                    .with_high_watermark(log.next_offset)
                                    .with_last_stable_offset(log.next_offset)
                                    .with_log_start_offset(0)
                                    .with_aborted_transactions(Some(vec![]))
                                    .with_records(Some(out.freeze()));
                            }
                        }
                        parts.push(pd);
                    }
                    topics.push(
                        FetchableTopicResponse::default()
                            .with_topic(t.topic.clone())
                            .with_topic_id(t.topic_id)
                            .with_partitions(parts),
                    );
                }
            }
            if empty {
                tokio::time::sleep(Duration::from_millis(req.max_wait_ms.clamp(0, 50) as u64))
                    .await;
            }
            ResponseKind::Fetch(FetchResponse::default().with_responses(topics))
        }
        RequestKind::ListOffsets(req) => {
            let st = state.lock().unwrap();
            let topics = req
                .topics
                .into_iter()
                .map(|t| {
                    let parts = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let r = ListOffsetsPartitionResponse::default()
                                .with_partition_index(p.partition_index);
                            match st
                                .topics
                                .get(t.name.as_str())
                                .and_then(|x| x.partitions.get(p.partition_index as usize))
                            {
                                None => r.with_error_code(3),
                                Some(_) if st.leader(t.name.as_str(), p.partition_index) != me => {
                                    r.with_error_code(6)
                                }
                                Some(log) => {
                                    let offset = match p.timestamp {
                                        -2 => 0,
                                        -1 => log.next_offset,
                                        ts => first_at_or_after(log, ts),
                                    };
                                    r.with_offset(offset).with_timestamp(-1)
                                }
                            }
                        })
                        .collect();
                    ListOffsetsTopicResponse::default()
                        .with_name(t.name)
                        .with_partitions(parts)
                })
                .collect();
            ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(topics))
        }
        RequestKind::CreateTopics(req) => {
            let mut st = state.lock().unwrap();
            let results = req
                .topics
                .into_iter()
                .map(|t| {
                    let r = CreatableTopicResult::default().with_name(t.name.clone());
                    if st.topics.contains_key(t.name.as_str()) {
                        r.with_error_code(36)
                            .with_error_message(Some(StrBytes::from_static_str("exists")))
                    } else {
                        let n = if t.num_partitions < 0 {
                            1
                        } else {
                            t.num_partitions
                        };
                        st.create(&t.name, n);
                        r.with_num_partitions(n)
                    }
                })
                .collect();
            ResponseKind::CreateTopics(CreateTopicsResponse::default().with_topics(results))
        }
        RequestKind::DeleteTopics(req) => {
            let mut st = state.lock().unwrap();
            let mut names: Vec<String> = req.topic_names.iter().map(|n| n.0.to_string()).collect();
            names.extend(
                req.topics
                    .iter()
                    .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string())),
            );
            let results = names
                .into_iter()
                .map(|n| {
                    let code = if st.topics.remove(&n).is_some() { 0 } else { 3 };
                    DeletableTopicResult::default()
                        .with_name(Some(name(&n)))
                        .with_error_code(code)
                })
                .collect();
            ResponseKind::DeleteTopics(DeleteTopicsResponse::default().with_responses(results))
        }
        RequestKind::CreatePartitions(req) => {
            let mut st = state.lock().unwrap();
            let results = req
                .topics
                .into_iter()
                .map(|t| {
                    let r = create_partitions_response::CreatePartitionsTopicResult::default()
                        .with_name(t.name.clone());
                    match st.topics.get_mut(t.name.as_str()) {
                        None => r.with_error_code(3),
                        Some(x) if (t.count as usize) <= x.partitions.len() => {
                            r.with_error_code(37)
                        }
                        Some(x) => {
                            x.partitions
                                .resize_with(t.count as usize, PartitionLog::default);
                            r
                        }
                    }
                })
                .collect();
            ResponseKind::CreatePartitions(
                CreatePartitionsResponse::default().with_results(results),
            )
        }
        RequestKind::DescribeCluster(_) => {
            let st = state.lock().unwrap();
            ResponseKind::DescribeCluster(
                DescribeClusterResponse::default()
                    .with_cluster_id(StrBytes::from_static_str("mini"))
                    .with_controller_id(BrokerId(1))
                    .with_brokers(
                        st.brokers
                            .iter()
                            .map(|(id, port)| {
                                DescribeClusterBroker::default()
                                    .with_broker_id(BrokerId(*id))
                                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                                    .with_port(*port)
                            })
                            .collect(),
                    ),
            )
        }
        other => panic!("mini broker got an unexpected request: {other:?}"),
    })
}

/// Appends a produced record set with Kafka-like idempotence checks. Returns (error, base).
fn append(log: &mut PartitionLog, records: Bytes) -> (i16, i64) {
    let mut first_base = -1;
    for item in Batches::checked(&records) {
        let Ok((h, range)) = item else { return (2, -1) };
        if h.producer_id >= 0 {
            let last_seq = h.last_sequence();
            match log.producers.get(&h.producer_id).copied() {
                Some((epoch, last, base, first)) if epoch == h.producer_epoch => {
                    if h.base_sequence == first && last == last_seq {
                        return (46, base); // duplicate of the last batch
                    }
                    if h.base_sequence != spool_protocol_next(last) {
                        return (45, -1);
                    }
                }
                Some((epoch, ..)) if h.producer_epoch < epoch => return (47, -1),
                _ if h.base_sequence != 0 && log.producers.contains_key(&h.producer_id) => {
                    return (45, -1)
                }
                _ => {}
            }
            log.producers.insert(
                h.producer_id,
                (h.producer_epoch, last_seq, log.next_offset, h.base_sequence),
            );
        }
        let mut b = records[range].to_vec();
        set_base_offset(&mut b, log.next_offset);
        if first_base < 0 {
            first_base = log.next_offset;
        }
        log.batches.push((log.next_offset, Bytes::from(b)));
        log.next_offset += h.last_offset_delta as i64 + 1;
    }
    (0, first_base)
}

fn spool_protocol_next(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

fn first_at_or_after(log: &PartitionLog, ts: i64) -> i64 {
    for (_, b) in &log.batches {
        for batch in DecodedBatches::new(b.clone(), 1 << 24) {
            for r in batch.unwrap().records {
                let r = r.unwrap();
                if r.timestamp >= ts {
                    return r.offset;
                }
            }
        }
    }
    -1
}
