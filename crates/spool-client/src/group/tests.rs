//! Membership state machine against a scripted single-member coordinator on 127.0.0.1.
//!
//! The fake answers ApiVersions, Metadata (topic `t`, 3 partitions), FindCoordinator, JoinGroup
//! (MEMBER_ID_REQUIRED for a member without an id; the joiner is leader of a one-member group),
//! SyncGroup, Heartbeat, OffsetCommit, OffsetFetch and LeaveGroup, logs every group request, and
//! answers queued error codes per API first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartitions, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::net::TcpListener;
use uuid::Uuid;

use super::*;
use crate::config::ClientConfig;
use crate::connection::tests::FakeBroker;

#[derive(Default)]
struct Coord {
    log: Vec<String>,
    faults: HashMap<i16, VecDeque<i16>>,
    generation: i32,
    next_member: u32,
    assignment: bytes::Bytes,
    committed: HashMap<(String, i32), (i64, String)>,
    /// Answered to the next SyncGroup instead of the leader's assignment.
    override_assignment: Option<bytes::Bytes>,
    /// Owned partitions sent with each JoinGroup (first protocol's subscription).
    owned: Vec<Vec<(String, i32)>>,
    /// Heartbeats answered without error: proof that membership moved on.
    heartbeats_ok: usize,
}

impl Coord {
    fn fault(&mut self, api: ApiKey) -> i16 {
        self.faults
            .get_mut(&(api as i16))
            .and_then(|q| q.pop_front())
            .unwrap_or(0)
    }
}

type State = Arc<Mutex<Coord>>;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

const APIS: &[ApiKey] = &[
    ApiKey::ApiVersions,
    ApiKey::Metadata,
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
];

async fn start() -> (String, State, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port() as i32;
    let state: State = Arc::default();
    let st = state.clone();
    let task = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let st = st.clone();
            tokio::spawn(async move {
                let mut b = FakeBroker { io: sock };
                while let Some((h, kind)) = b.read_kind().await {
                    serve(&mut b, &h, kind, &st, port).await;
                }
            });
        }
    });
    (format!("127.0.0.1:{port}"), state, task)
}

async fn serve(
    b: &mut FakeBroker<tokio::net::TcpStream>,
    h: &RequestHeader,
    kind: RequestKind,
    st: &State,
    port: i32,
) {
    match kind {
        RequestKind::ApiVersions(_) => {
            let keys = APIS
                .iter()
                .map(|k| {
                    let r = k.valid_versions();
                    ApiVersion::default()
                        .with_api_key(*k as i16)
                        .with_min_version(r.min)
                        .with_max_version(r.max.min(9))
                })
                .collect();
            b.respond(h, &ApiVersionsResponse::default().with_api_keys(keys))
                .await;
        }
        RequestKind::Metadata(_) => {
            let resp = MetadataResponse::default()
                .with_controller_id(BrokerId(1))
                .with_brokers(vec![MetadataResponseBroker::default()
                    .with_node_id(BrokerId(1))
                    .with_host(sb("127.0.0.1"))
                    .with_port(port)])
                .with_topics(vec![MetadataResponseTopic::default()
                    .with_name(Some(TopicName(sb("t"))))
                    .with_topic_id(Uuid::from_u128(1))
                    .with_partitions(
                        (0..3)
                            .map(|i| {
                                MetadataResponsePartition::default()
                                    .with_partition_index(i)
                                    .with_leader_id(BrokerId(1))
                            })
                            .collect(),
                    )]);
            b.respond(h, &resp).await;
        }
        RequestKind::FindCoordinator(req) => {
            let code = {
                let mut s = st.lock().unwrap();
                s.log.push("FindCoordinator".into());
                s.fault(ApiKey::FindCoordinator)
            };
            let c = Coordinator::default()
                .with_key(req.coordinator_keys.first().cloned().unwrap_or_default())
                .with_node_id(BrokerId(1))
                .with_host(sb("127.0.0.1"))
                .with_port(port)
                .with_error_code(code);
            b.respond(
                h,
                &FindCoordinatorResponse::default().with_coordinators(vec![c]),
            )
            .await;
        }
        RequestKind::JoinGroup(req) => {
            let resp = {
                let mut s = st.lock().unwrap();
                s.log.push(format!("JoinGroup member={}", req.member_id));
                if let Some(p) = req.protocols.first() {
                    let sub =
                        super::assignor::decode_subscription("", None, p.metadata.clone()).unwrap();
                    s.owned.push(sub.owned_partitions);
                }
                let code = s.fault(ApiKey::JoinGroup);
                if code != 0 {
                    JoinGroupResponse::default().with_error_code(code)
                } else if req.member_id.is_empty() {
                    s.next_member += 1;
                    JoinGroupResponse::default()
                        .with_error_code(ResponseError::MemberIdRequired.code())
                        .with_member_id(sb(&format!("m{}", s.next_member)))
                } else {
                    s.generation += 1;
                    let p = &req.protocols[0];
                    JoinGroupResponse::default()
                        .with_generation_id(s.generation)
                        .with_protocol_type(Some(sb("consumer")))
                        .with_protocol_name(Some(p.name.clone()))
                        .with_leader(req.member_id.clone())
                        .with_member_id(req.member_id.clone())
                        .with_members(vec![JoinGroupResponseMember::default()
                            .with_member_id(req.member_id.clone())
                            .with_metadata(p.metadata.clone())])
                }
            };
            b.respond(h, &resp).await;
        }
        RequestKind::SyncGroup(req) => {
            let resp = {
                let mut s = st.lock().unwrap();
                s.log
                    .push(format!("SyncGroup generation={}", req.generation_id));
                let code = s.fault(ApiKey::SyncGroup);
                if let Some(a) = req.assignments.first() {
                    s.assignment = a.assignment.clone();
                }
                let assignment = s.override_assignment.take().unwrap_or(s.assignment.clone());
                SyncGroupResponse::default()
                    .with_error_code(code)
                    .with_assignment(assignment)
            };
            b.respond(h, &resp).await;
        }
        RequestKind::Heartbeat(req) => {
            let code = {
                let mut s = st.lock().unwrap();
                let code = s.fault(ApiKey::Heartbeat);
                if code != 0 {
                    s.log.push(format!(
                        "Heartbeat generation={} -> {code}",
                        req.generation_id
                    ));
                } else {
                    s.heartbeats_ok += 1;
                }
                code
            };
            b.respond(h, &HeartbeatResponse::default().with_error_code(code))
                .await;
        }
        RequestKind::LeaveGroup(req) => {
            let member = req
                .members
                .first()
                .map(|m| m.member_id.to_string())
                .unwrap_or_else(|| req.member_id.to_string());
            st.lock()
                .unwrap()
                .log
                .push(format!("LeaveGroup member={member}"));
            b.respond(h, &LeaveGroupResponse::default()).await;
        }
        RequestKind::OffsetCommit(req) => {
            let resp = {
                let mut s = st.lock().unwrap();
                let code = s.fault(ApiKey::OffsetCommit);
                let mut topics = Vec::new();
                for t in req.topics {
                    let mut parts = Vec::new();
                    for p in t.partitions {
                        s.log.push(format!(
                            "OffsetCommit generation={} {}-{}={}",
                            req.generation_id_or_member_epoch,
                            t.name.0,
                            p.partition_index,
                            p.committed_offset
                        ));
                        if code == 0 {
                            s.committed.insert(
                                (t.name.0.to_string(), p.partition_index),
                                (
                                    p.committed_offset,
                                    p.committed_metadata
                                        .map(|m| m.to_string())
                                        .unwrap_or_default(),
                                ),
                            );
                        }
                        parts.push(
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code),
                        );
                    }
                    topics.push(
                        OffsetCommitResponseTopic::default()
                            .with_name(t.name)
                            .with_partitions(parts),
                    );
                }
                OffsetCommitResponse::default().with_topics(topics)
            };
            b.respond(h, &resp).await;
        }
        RequestKind::OffsetFetch(req) => {
            let resp = {
                let s = st.lock().unwrap();
                let groups = req
                    .groups
                    .into_iter()
                    .map(|g| {
                        let topics = g
                            .topics
                            .unwrap_or_default()
                            .into_iter()
                            .map(|t| {
                                let parts = t
                                    .partition_indexes
                                    .iter()
                                    .map(|p| {
                                        let c = s.committed.get(&(t.name.0.to_string(), *p));
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(*p)
                                            .with_committed_offset(c.map_or(-1, |c| c.0))
                                            .with_metadata(c.map(|c| sb(&c.1)))
                                    })
                                    .collect();
                                OffsetFetchResponseTopics::default()
                                    .with_name(t.name)
                                    .with_partitions(parts)
                            })
                            .collect();
                        OffsetFetchResponseGroup::default()
                            .with_group_id(g.group_id)
                            .with_topics(topics)
                    })
                    .collect();
                OffsetFetchResponse::default().with_groups(groups)
            };
            b.respond(h, &resp).await;
        }
        other => panic!("fake coordinator got {other:?}"),
    }
}

fn test_config(events: Arc<Mutex<Vec<RebalanceEvent>>>) -> GroupConfig {
    let mut c = GroupConfig::new("g").on_rebalance(move |e| events.lock().unwrap().push(e.clone()));
    c.heartbeat_interval = Duration::from_millis(30);
    c.auto_commit_interval = Duration::from_secs(3600);
    c
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn all3() -> Vec<Tp> {
    (0..3).map(|p| ("t".to_string(), p)).collect()
}

async fn joined() -> (
    State,
    tokio::task::JoinHandle<()>,
    GroupConsumer,
    Arc<Mutex<Vec<RebalanceEvent>>>,
) {
    let (addr, state, task) = start().await;
    state
        .lock()
        .unwrap()
        .committed
        .insert(("t".into(), 1), (7, "meta".into()));
    let client = Client::connect(ClientConfig::new(&addr)).await.unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut c = client.group_consumer(test_config(events.clone())).unwrap();
    c.subscribe(["t"]);
    eventually("assignment", || c.assignment() == all3()).await;
    (state, task, c, events)
}

fn log(state: &State) -> Vec<String> {
    state.lock().unwrap().log.clone()
}

#[tokio::test]
async fn joins_with_member_id_required_and_starts_at_committed_offsets() {
    let (state, task, c, events) = joined().await;
    assert_eq!(
        log(&state),
        vec![
            "FindCoordinator",
            "JoinGroup member=",
            "JoinGroup member=m1",
            "SyncGroup generation=1"
        ]
    );
    assert_eq!(c.handle().member(), ("m1".to_string(), 1));
    assert_eq!(
        *events.lock().unwrap(),
        vec![RebalanceEvent::Assigned(all3())]
    );
    let start = c.handle.shared.lock().unwrap().start.clone();
    assert_eq!(start, HashMap::from([(("t".to_string(), 1), 7)]));
    let committed = c.committed("t", 1).await.unwrap().unwrap();
    assert_eq!(committed.metadata, "meta", "metadata round-trips");
    assert_eq!(c.committed("t", 0).await.unwrap(), None);
    task.abort();
}

#[tokio::test]
async fn rebalance_in_progress_commits_consumed_positions_then_rejoins() {
    let (state, task, c, events) = joined().await;
    c.handle
        .shared
        .lock()
        .unwrap()
        .positions
        .insert(("t".into(), 0), 5);
    state.lock().unwrap().log.clear();
    state
        .lock()
        .unwrap()
        .faults
        .insert(ApiKey::Heartbeat as i16, VecDeque::from([27]));
    eventually("rejoin", || c.handle().member().1 == 2).await;
    assert_eq!(
        log(&state),
        vec![
            "Heartbeat generation=1 -> 27",
            "OffsetCommit generation=1 t-0=5",
            "JoinGroup member=m1",
            "SyncGroup generation=2"
        ]
    );
    assert_eq!(
        *events.lock().unwrap(),
        vec![
            RebalanceEvent::Assigned(all3()),
            RebalanceEvent::Revoked(all3()),
            RebalanceEvent::Assigned(all3())
        ]
    );
    // The fresh assignment starts from what was just committed.
    let start = c.handle.shared.lock().unwrap().start.clone();
    assert_eq!(start.get(&("t".to_string(), 0)), Some(&5));
    task.abort();
}

#[tokio::test]
async fn unknown_member_id_loses_partitions_and_rejoins_without_an_id() {
    let (state, task, c, events) = joined().await;
    c.handle
        .shared
        .lock()
        .unwrap()
        .positions
        .insert(("t".into(), 0), 5);
    state.lock().unwrap().log.clear();
    state
        .lock()
        .unwrap()
        .faults
        .insert(ApiKey::Heartbeat as i16, VecDeque::from([25]));
    eventually("rejoin", || c.handle().member() == ("m2".to_string(), 2)).await;
    let l = log(&state);
    assert_eq!(
        l,
        vec![
            "Heartbeat generation=1 -> 25",
            "JoinGroup member=",
            "JoinGroup member=m2",
            "SyncGroup generation=2"
        ],
        "no commit with a fenced member id"
    );
    assert_eq!(
        events.lock().unwrap()[1],
        RebalanceEvent::Lost(all3()),
        "lost, not revoked"
    );
    task.abort();
}

#[tokio::test]
async fn illegal_generation_rejoins_keeping_the_member_id() {
    let (state, task, c, _events) = joined().await;
    state.lock().unwrap().log.clear();
    state
        .lock()
        .unwrap()
        .faults
        .insert(ApiKey::Heartbeat as i16, VecDeque::from([22]));
    eventually("rejoin", || c.handle().member().1 == 2).await;
    assert_eq!(log(&state)[1], "JoinGroup member=m1");
    task.abort();
}

#[tokio::test]
async fn not_coordinator_rediscovers_without_rebalancing() {
    let (state, task, c, events) = joined().await;
    state.lock().unwrap().log.clear();
    state.lock().unwrap().faults.insert(
        ApiKey::Heartbeat as i16,
        VecDeque::from([ResponseError::NotCoordinator.code()]),
    );
    state.lock().unwrap().faults.insert(
        ApiKey::FindCoordinator as i16,
        VecDeque::from([ResponseError::CoordinatorNotAvailable.code()]),
    );
    eventually("rediscovery", || {
        log(&state)
            .iter()
            .filter(|l| *l == "FindCoordinator")
            .count()
            == 2
    })
    .await;
    // Two good heartbeats after the rediscovery: the member carried on instead of rejoining.
    let beats = state.lock().unwrap().heartbeats_ok;
    eventually("heartbeats with the new coordinator", || {
        state.lock().unwrap().heartbeats_ok >= beats + 2
    })
    .await;
    assert_eq!(
        c.handle().member(),
        ("m1".to_string(), 1),
        "same generation"
    );
    assert_eq!(c.assignment(), all3());
    assert_eq!(events.lock().unwrap().len(), 1);
    assert!(!log(&state).iter().any(|l| l.starts_with("JoinGroup")));
    task.abort();
}

#[tokio::test]
async fn join_retries_after_coordinator_loading() {
    let (addr, state, task) = start().await;
    state.lock().unwrap().faults.insert(
        ApiKey::JoinGroup as i16,
        VecDeque::from([ResponseError::CoordinatorLoadInProgress.code()]),
    );
    let client = Client::connect(ClientConfig::new(&addr)).await.unwrap();
    let mut c = client.group_consumer(test_config(Arc::default())).unwrap();
    c.subscribe(["t"]);
    eventually("assignment", || c.assignment() == all3()).await;
    task.abort();
}

#[tokio::test]
async fn commits_explicit_offsets_and_close_commits_then_leaves() {
    let (state, task, c, events) = joined().await;
    let h = c.handle();
    h.commit_offsets_sync(vec![(
        ("t".into(), 2),
        OffsetAndMetadata {
            offset: 9,
            metadata: "x".into(),
        },
    )])
    .await
    .unwrap();
    assert_eq!(
        state.lock().unwrap().committed[&("t".to_string(), 2)],
        (9, "x".to_string())
    );
    let err = h
        .commit_offsets_sync(vec![(("other".into(), 0), OffsetAndMetadata::new(1))])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotAssigned { .. }), "{err}");
    c.handle
        .shared
        .lock()
        .unwrap()
        .positions
        .insert(("t".into(), 0), 3);
    state.lock().unwrap().log.clear();
    c.close().await.unwrap();
    assert_eq!(
        log(&state),
        vec!["OffsetCommit generation=1 t-0=3", "LeaveGroup member=m1"]
    );
    assert_eq!(
        events.lock().unwrap().last(),
        Some(&RebalanceEvent::Revoked(all3()))
    );
    assert!(matches!(h.commit_sync().await, Err(Error::Closed(_))));
    task.abort();
}

#[tokio::test]
async fn commit_rejected_for_a_fenced_generation_triggers_rejoin() {
    let (state, task, c, _events) = joined().await;
    c.handle
        .shared
        .lock()
        .unwrap()
        .positions
        .insert(("t".into(), 0), 4);
    state
        .lock()
        .unwrap()
        .faults
        .insert(ApiKey::OffsetCommit as i16, VecDeque::from([22]));
    let err = c.commit_sync().await.unwrap_err();
    assert!(err.is(ResponseError::IllegalGeneration), "{err}");
    eventually("rejoin", || c.handle().member().1 == 2).await;
    task.abort();
}

#[test]
fn config_is_validated() {
    let mut c = GroupConfig::new("");
    assert!(c.validate().is_err());
    c.group_id = "g".into();
    assert!(c.validate().is_ok());
    c.heartbeat_interval = c.session_timeout;
    assert!(c.validate().is_err());
}

#[tokio::test]
async fn leaves_when_the_application_stops_polling_and_rejoins_when_it_polls() {
    let (addr, state, task) = start().await;
    let client = Client::connect(ClientConfig::new(&addr)).await.unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut cfg = test_config(events.clone());
    cfg.rebalance_timeout = Duration::from_millis(400);
    let mut c = client.group_consumer(cfg).unwrap();
    c.subscribe(["t"]);
    eventually("assignment", || c.assignment() == all3()).await;
    eventually("poll timeout", || {
        log(&state).iter().any(|l| l == "LeaveGroup member=m1")
    })
    .await;
    assert!(c.assignment().is_empty());
    assert_eq!(events.lock().unwrap()[1], RebalanceEvent::Lost(all3()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        log(&state)
            .iter()
            .filter(|l| l.starts_with("JoinGroup"))
            .count(),
        2,
        "no rejoin before the next poll"
    );
    // What poll() does first.
    c.sync_assignment().unwrap();
    eventually("rejoin", || c.assignment() == all3()).await;
    assert_eq!(c.handle().member(), ("m2".to_string(), 2));
    task.abort();
}

#[tokio::test]
async fn pattern_subscription_resolves_matching_topics() {
    let (addr, _state, task) = start().await;
    let client = Client::connect(ClientConfig::new(&addr)).await.unwrap();
    let mut c = client.group_consumer(test_config(Arc::default())).unwrap();
    c.subscribe_matching(|t| t.starts_with('t'));
    eventually("assignment", || c.assignment() == all3()).await;
    task.abort();
}

#[tokio::test]
async fn regex_subscription_matches_whole_topic_names() {
    let (addr, _state, task) = start().await;
    let client = Client::connect(ClientConfig::new(&addr)).await.unwrap();
    let mut c = client.group_consumer(test_config(Arc::default())).unwrap();
    c.subscribe_pattern("t|u.*").unwrap();
    eventually("assignment", || c.assignment() == all3()).await;
    task.abort();
    // Java's Matcher.matches(): the whole name, whatever anchors the pattern has.
    let p = Subscription::pattern("orders-.*").unwrap();
    assert!(p.matches("orders-1"));
    assert!(!p.matches("old-orders-1"));
    let p = Subscription::pattern("^a|b$").unwrap();
    assert!(p.matches("a") && p.matches("b") && !p.matches("ab") && !p.matches("xb"));
    assert!(matches!(
        Subscription::pattern("(unclosed"),
        Err(Error::Config(_))
    ));
}

#[test]
fn a_topic_pattern_cannot_escape_its_anchors() {
    // Wrapped as `^(?:a)|(?:b)$` it would compile and match `ax` and `xb`.
    assert!(matches!(
        Subscription::pattern("a)|(?:b"),
        Err(Error::Config(m)) if m.contains("invalid topic pattern")
    ));
    let p = Subscription::pattern("(a)|(?:b)").unwrap();
    assert!(p.matches("a") && p.matches("b") && !p.matches("ax") && !p.matches("xb"));
}

#[tokio::test]
async fn cooperative_member_keeps_partitions_and_revokes_only_what_moves() {
    let (addr, state, task) = start().await;
    let client = Client::connect(ClientConfig::new(&addr)).await.unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut cfg = test_config(events.clone());
    cfg.assignors = vec![Arc::new(CooperativeStickyAssignor)];
    let mut c = client.group_consumer(cfg).unwrap();
    c.subscribe(["t"]);
    eventually("assignment", || c.assignment() == all3()).await;
    let epoch = c.handle.shared.lock().unwrap().epoch;
    c.handle
        .shared
        .lock()
        .unwrap()
        .positions
        .extend([(("t".into(), 0), 4), (("t".into(), 1), 6)]);
    // A rebalance that keeps everything: nothing revoked, consumption uninterrupted.
    state.lock().unwrap().log.clear();
    state
        .lock()
        .unwrap()
        .faults
        .insert(ApiKey::Heartbeat as i16, VecDeque::from([27]));
    eventually("rejoin", || c.handle().member().1 == 2).await;
    assert_eq!(c.assignment(), all3());
    assert_eq!(c.handle.shared.lock().unwrap().epoch, epoch, "no reset");
    assert_eq!(
        state.lock().unwrap().owned.last(),
        Some(&all3()),
        "owned sent"
    );
    assert_eq!(
        log(&state)[..3],
        [
            "Heartbeat generation=1 -> 27",
            "OffsetCommit generation=1 t-0=4",
            "OffsetCommit generation=1 t-1=6",
        ],
        "commit before rejoining"
    );
    // Now the leader takes t-1 and t-2 away: revoked, then a follow-up join.
    c.handle
        .shared
        .lock()
        .unwrap()
        .positions
        .insert(("t".into(), 1), 8);
    state.lock().unwrap().override_assignment =
        Some(super::assignor::encode_assignment(&[("t".to_string(), 0)]).unwrap());
    state.lock().unwrap().log.clear();
    state
        .lock()
        .unwrap()
        .faults
        .insert(ApiKey::Heartbeat as i16, VecDeque::from([27]));
    eventually("follow-up", || c.handle().member().1 == 4).await;
    let l = log(&state);
    assert_eq!(
        l[..6],
        [
            "Heartbeat generation=2 -> 27",
            "OffsetCommit generation=2 t-1=8",
            "JoinGroup member=m1",
            "SyncGroup generation=3",
            "JoinGroup member=m1",
            "SyncGroup generation=4",
        ],
        "committed before the join (nothing new to commit at revocation), then a follow-up join"
    );
    let ev = events.lock().unwrap().clone();
    assert!(ev.contains(&RebalanceEvent::Revoked(vec![
        ("t".into(), 1),
        ("t".into(), 2)
    ])));
    assert_eq!(
        ev.last(),
        Some(&RebalanceEvent::Assigned(vec![
            ("t".into(), 1),
            ("t".into(), 2)
        ]))
    );
    assert_eq!(c.assignment(), all3());
    // t-0 was never revoked; it resumes from the consumed position.
    assert_eq!(
        c.handle
            .shared
            .lock()
            .unwrap()
            .start
            .get(&("t".to_string(), 0)),
        Some(&4)
    );
    task.abort();
}

#[test]
fn delivered_records_move_each_partitions_position_past_its_last_record() {
    let shared = Mutex::new(Shared::new());
    shared.lock().unwrap().epoch = 3;
    let consumed = [
        ("a", 0, 5),
        ("a", 0, 6),
        ("b", 0, 9),
        ("a", 1, 2),
        ("a", 0, 7),
    ];
    assert!(deliver(&shared, 3, consumed.into_iter()));
    let positions = shared.lock().unwrap().positions.clone();
    let expected: HashMap<Tp, i64> = [
        (("a".to_string(), 0), 8),
        (("b".to_string(), 0), 10),
        (("a".to_string(), 1), 3),
    ]
    .into();
    assert_eq!(positions, expected);
    // Fetched under an assignment since replaced: not handed out, nothing recorded.
    assert!(!deliver(&shared, 2, [("c", 0, 1)].into_iter()));
    assert_eq!(shared.lock().unwrap().positions, expected);
}
