//! Wire-level behaviour of the broker, driven with raw frames: version negotiation, bad input,
//! and connection isolation.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, MetadataRequest, RequestHeader, RequestKind, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use spool_broker::EmbeddedBroker;
use spool_protocol::codec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn send(stream: &mut TcpStream, key: ApiKey, version: i16, corr: i32, body: RequestKind) {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("wire-test")));
    let mut out = BytesMut::new();
    codec::encode_request(&mut out, &header, &body).unwrap();
    stream.write_all(&out).await.unwrap();
}

/// Reads one response frame; `None` when the broker closed the connection.
async fn recv(stream: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.ok()?;
    Some(Bytes::from(body))
}

async fn api_versions(
    stream: &mut TcpStream,
    version: i16,
) -> (i32, kafka_protocol::messages::ApiVersionsResponse) {
    send(
        stream,
        ApiKey::ApiVersions,
        version,
        9,
        RequestKind::ApiVersions(ApiVersionsRequest::default()),
    )
    .await;
    let mut frame = recv(stream).await.expect("response");
    // ApiVersions responses always use header v0, so old clients can read them.
    let header = ResponseHeader::decode(&mut frame, 0).unwrap();
    let body =
        kafka_protocol::messages::ApiVersionsResponse::decode(&mut frame, version.min(4)).unwrap();
    (header.correlation_id, body)
}

#[tokio::test]
async fn api_versions_lists_what_is_implemented() {
    let broker = EmbeddedBroker::start().await.unwrap();
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    for v in 0..=4 {
        let (corr, resp) = api_versions(&mut s, v).await;
        assert_eq!(corr, 9);
        assert_eq!(resp.error_code, 0);
        let produce = resp.api_keys.iter().find(|k| k.api_key == 0).unwrap();
        assert_eq!((produce.min_version, produce.max_version), (0, 13));
        let fetch = resp.api_keys.iter().find(|k| k.api_key == 1).unwrap();
        assert_eq!(fetch.min_version, 4);
        // Nothing we do not implement, e.g. the transaction APIs (AddPartitionsToTxn, 24).
        assert!(resp.api_keys.iter().all(|k| k.api_key != 24));
        let join = resp.api_keys.iter().find(|k| k.api_key == 11).unwrap();
        assert_eq!((join.min_version, join.max_version), (0, 9));
    }
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_api_versions_version_gets_v0_unsupported_version() {
    let broker = EmbeddedBroker::start().await.unwrap();
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    // A future client's ApiVersions v99: header with the version, body we cannot know.
    let mut frame = BytesMut::new();
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(&18i16.to_be_bytes());
    frame.extend_from_slice(&99i16.to_be_bytes());
    frame.extend_from_slice(&77i32.to_be_bytes());
    frame.extend_from_slice(&[0xff, 0xff, 0, 1, 2, 3]);
    let len = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    s.write_all(&frame).await.unwrap();
    let mut resp = recv(&mut s)
        .await
        .expect("a v0 answer, not a closed socket");
    let header = ResponseHeader::decode(&mut resp, 0).unwrap();
    assert_eq!(header.correlation_id, 77);
    let body = kafka_protocol::messages::ApiVersionsResponse::decode(&mut resp, 0).unwrap();
    assert_eq!(body.error_code, 35);
    assert!(body
        .api_keys
        .iter()
        .any(|k| k.api_key == 18 && k.max_version == 4));
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_frames_close_only_their_connection() {
    let broker = EmbeddedBroker::start().await.unwrap();
    let mut good = TcpStream::connect(broker.addr()).await.unwrap();
    api_versions(&mut good, 3).await;

    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "oversized length",
            (200 * 1024 * 1024i32).to_be_bytes().to_vec(),
        ),
        ("negative length", (-5i32).to_be_bytes().to_vec()),
        (
            "tls client hello",
            vec![
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ],
        ),
        ("unknown api key", {
            let mut f = 8i32.to_be_bytes().to_vec();
            f.extend_from_slice(&[0x7f, 0x00, 0, 0, 0, 0, 0, 1]);
            f
        }),
        ("metadata v0 declaring 54 million topics", {
            let mut body = Vec::new();
            body.extend_from_slice(&3i16.to_be_bytes());
            body.extend_from_slice(&0i16.to_be_bytes());
            body.extend_from_slice(&1i32.to_be_bytes());
            body.extend_from_slice(&(-1i16).to_be_bytes());
            body.extend_from_slice(&54_000_000i32.to_be_bytes());
            let mut f = (body.len() as i32).to_be_bytes().to_vec();
            f.extend(body);
            f
        }),
        ("truncated body", {
            let mut body = Vec::new();
            body.extend_from_slice(&3i16.to_be_bytes());
            body.extend_from_slice(&12i16.to_be_bytes());
            body.extend_from_slice(&1i32.to_be_bytes());
            body.extend_from_slice(&(-1i16).to_be_bytes());
            body.push(0); // header tagged fields
            body.push(5); // compact array of 4 topics, none present
            let mut f = (body.len() as i32).to_be_bytes().to_vec();
            f.extend(body);
            f
        }),
    ];
    for (name, bytes) in cases {
        let mut bad = TcpStream::connect(broker.addr()).await.unwrap();
        bad.write_all(&bytes).await.unwrap();
        let mut buf = [0u8; 16];
        let n = bad.read(&mut buf).await.unwrap_or(0);
        assert_eq!(
            n, 0,
            "{name}: broker should close the connection without answering"
        );
        // The healthy connection is untouched.
        send(
            &mut good,
            ApiKey::Metadata,
            12,
            5,
            RequestKind::Metadata(MetadataRequest::default()),
        )
        .await;
        let mut frame = recv(&mut good)
            .await
            .unwrap_or_else(|| panic!("{name}: good connection died"));
        let header = ResponseHeader::decode(&mut frame, 1).unwrap();
        assert_eq!(header.correlation_id, 5, "{name}");
    }
    broker.shutdown().await.unwrap();
}

/// Sends `req` at `version` and decodes the answer.
async fn call<R: kafka_protocol::protocol::Request>(
    stream: &mut TcpStream,
    req: R,
    version: i16,
) -> R::Response {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(1);
    let mut body = BytesMut::new();
    let key = ApiKey::try_from(R::KEY).unwrap();
    kafka_protocol::protocol::Encodable::encode(
        &header,
        &mut body,
        key.request_header_version(version),
    )
    .unwrap();
    kafka_protocol::protocol::Encodable::encode(&req, &mut body, version).unwrap();
    stream
        .write_all(&(body.len() as i32).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&body).await.unwrap();
    let mut frame = recv(stream).await.expect("a response");
    ResponseHeader::decode(&mut frame, key.response_header_version(version)).unwrap();
    <R::Response as Decodable>::decode(&mut frame, version).unwrap()
}

fn topic_request(
    name: &str,
    partitions: i32,
    rf: i16,
) -> kafka_protocol::messages::CreateTopicsRequest {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::TopicName;
    kafka_protocol::messages::CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.into())))
            .with_num_partitions(partitions)
            .with_replication_factor(rf),
    ])
}

#[tokio::test]
async fn existing_topics_are_reported_before_other_create_errors() {
    let broker = EmbeddedBroker::start().await.unwrap();
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    let resp = call(&mut s, topic_request("t", 2, 1), 7).await;
    assert_eq!(resp.topics[0].error_code, 0);
    // Kafka answers "already exists" even when the rest of the request is also wrong.
    let resp = call(&mut s, topic_request("t", 2, 3), 7).await;
    assert_eq!(resp.topics[0].error_code, 36);
    let resp = call(&mut s, topic_request("bad name", 1, 1), 7).await;
    assert_eq!(resp.topics[0].error_code, 17);
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn produce_without_a_batch_is_an_invalid_record_and_acks_0_failures_close_the_connection() {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    let broker = EmbeddedBroker::start().await.unwrap();
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    call(&mut s, topic_request("p", 1, 1), 7).await;
    let produce = |acks: i16, partition: i32| {
        ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(1000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("p")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(Bytes::new()))])])
    };
    let resp = call(&mut s, produce(1, 0), 9).await;
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 87);
    let resp = call(&mut s, produce(1, 5), 9).await;
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 3);
    // acks=0 with a failing partition: no answer, the connection is closed.
    let header = RequestHeader::default()
        .with_request_api_key(0)
        .with_request_api_version(9)
        .with_correlation_id(2);
    let mut out = BytesMut::new();
    codec::encode_request(&mut out, &header, &RequestKind::Produce(produce(0, 5))).unwrap();
    s.write_all(&out).await.unwrap();
    assert!(recv(&mut s).await.is_none(), "connection should be closed");
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn list_offsets_special_timestamps_follow_their_versions() {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{ListOffsetsRequest, TopicName};
    let broker = EmbeddedBroker::start().await.unwrap();
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    call(&mut s, topic_request("l", 1, 1), 7).await;
    let req = |ts: i64| {
        ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("l")))
            .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(ts)])])
    };
    let code =
        |r: kafka_protocol::messages::ListOffsetsResponse| r.topics[0].partitions[0].error_code;
    assert_eq!(code(call(&mut s, req(-3), 6).await), 35);
    assert_eq!(code(call(&mut s, req(-3), 7).await), 0);
    assert_eq!(code(call(&mut s, req(-4), 7).await), 35);
    assert_eq!(code(call(&mut s, req(-9), 10).await), 35);
    let latest = call(&mut s, req(-1), 10).await;
    assert_eq!(
        (
            latest.topics[0].partitions[0].offset,
            latest.topics[0].partitions[0].leader_epoch
        ),
        (0, 0)
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn init_producer_id_hands_out_fresh_ids_without_a_transactional_id() {
    use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};
    let broker = EmbeddedBroker::start().await.unwrap();
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    let first = call(
        &mut s,
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transactional_id(None)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
        4,
    )
    .await;
    assert_eq!((first.error_code, first.producer_epoch), (0, 0));
    let again = call(
        &mut s,
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transactional_id(None)
            .with_producer_id(ProducerId(7))
            .with_producer_epoch(3),
        4,
    )
    .await;
    assert_eq!(again.error_code, 0);
    assert_ne!(again.producer_id, first.producer_id);
    assert_eq!(again.producer_epoch, 0);
    let bad = call(
        &mut s,
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transactional_id(None)
            .with_producer_id(ProducerId(7))
            .with_producer_epoch(-1),
        4,
    )
    .await;
    assert_eq!(bad.error_code, 42);
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn zstd_batches_need_produce_v7_and_fetch_v10() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{FetchRequest, ProduceRequest, TopicName};
    use spool_protocol::compression::Compression;
    use spool_protocol::records::BatchBuilder;

    let broker = EmbeddedBroker::start().await.unwrap();
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    call(&mut s, topic_request("z", 1, 1), 7).await;
    let mut builder = BatchBuilder::new(1 << 20);
    assert!(builder.try_append(1, None, Some(b"zstd value"), &[]));
    let batch = builder.build(-1, -1, -1, Compression::Zstd).unwrap();
    let produce = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("z")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let old = call(&mut s, produce.clone(), 6).await;
    assert_eq!(old.responses[0].partition_responses[0].error_code, 76);
    let new = call(&mut s, produce, 7).await;
    assert_eq!(new.responses[0].partition_responses[0].error_code, 0);

    let fetch = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("z")))
            .with_partitions(vec![FetchPartition::default()
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let old = call(&mut s, fetch.clone(), 9).await;
    assert_eq!(old.responses[0].partitions[0].error_code, 76);
    let new = call(&mut s, fetch, 12).await;
    let p = &new.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert!(!p.records.as_ref().unwrap().is_empty());
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_group_lives_joins_syncs_commits_and_is_deleted_over_the_wire() {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::*;

    let dir = tempfile::tempdir().unwrap();
    let mut config = spool_broker::BrokerConfig::new(dir.path());
    config.group.initial_rebalance_delay_ms = 0;
    let broker = EmbeddedBroker::start_with(config.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    call(&mut s, topic_request("gt", 2, 1), 7).await;
    let group = || GroupId(StrBytes::from_static_str("g1"));

    let coordinator = call(
        &mut s,
        FindCoordinatorRequest::default()
            .with_coordinator_keys(vec![StrBytes::from_static_str("g1")]),
        4,
    )
    .await;
    assert_eq!(coordinator.coordinators[0].error_code, 0);
    assert_eq!(
        coordinator.coordinators[0].port as u16,
        broker.addr().port()
    );
    // No transactions here: a transaction coordinator lookup fails for good (clients retry
    // COORDINATOR_NOT_AVAILABLE forever), with the code Kafka gives a client not allowed one.
    let txn = call(
        &mut s,
        FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![StrBytes::from_static_str("tx")]),
        4,
    )
    .await;
    assert_eq!(txn.coordinators[0].error_code, 53);
    assert_eq!(txn.coordinators[0].node_id.0, -1);

    let join = |member: StrBytes| {
        JoinGroupRequest::default()
            .with_group_id(group())
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(member)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(b"subscription"))])
    };
    // KIP-394: a new member first gets its id...
    let first = call(&mut s, join(StrBytes::default()), 5).await;
    assert_eq!(first.error_code, 79);
    assert!(!first.member_id.is_empty());
    // ...then joins with it and, alone, leads generation 1.
    let joined = call(&mut s, join(first.member_id.clone()), 5).await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader, first.member_id);
    assert_eq!(joined.members.len(), 1);
    assert_eq!(
        joined.members[0].metadata,
        Bytes::from_static(b"subscription")
    );
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));

    let me = joined.member_id.clone();
    let synced = call(
        &mut s,
        SyncGroupRequest::default()
            .with_group_id(group())
            .with_generation_id(1)
            .with_member_id(me.clone())
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(me.clone())
                .with_assignment(Bytes::from_static(b"assignment"))]),
        5,
    )
    .await;
    assert_eq!(synced.error_code, 0);
    assert_eq!(synced.assignment, Bytes::from_static(b"assignment"));

    let heartbeat = |generation: i32| {
        HeartbeatRequest::default()
            .with_group_id(group())
            .with_generation_id(generation)
            .with_member_id(me.clone())
    };
    assert_eq!(call(&mut s, heartbeat(1), 4).await.error_code, 0);
    assert_eq!(call(&mut s, heartbeat(7), 4).await.error_code, 22);

    let commit = |generation: i32, member: StrBytes| {
        OffsetCommitRequest::default()
            .with_group_id(group())
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(member)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("gt")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(1)
                    .with_committed_offset(42)
                    .with_committed_metadata(Some(StrBytes::from_static_str(
                        "m é \"x\"",
                    )))])])
    };
    let stale = call(&mut s, commit(0, me.clone()), 8).await;
    assert_eq!(stale.topics[0].partitions[0].error_code, 22);
    let ok = call(&mut s, commit(1, me.clone()), 8).await;
    assert_eq!(ok.topics[0].partitions[0].error_code, 0);

    let fetch = OffsetFetchRequest::default()
        .with_group_id(group())
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("gt")))
            .with_partition_indexes(vec![0, 1])]));
    let fetched = call(&mut s, fetch.clone(), 7).await;
    let parts = &fetched.topics[0].partitions;
    assert_eq!(
        (parts[0].committed_offset, parts[1].committed_offset),
        (-1, 42)
    );
    assert_eq!(parts[1].metadata.as_deref(), Some("m é \"x\""));

    let described = call(
        &mut s,
        DescribeGroupsRequest::default().with_groups(vec![group()]),
        5,
    )
    .await;
    let g = &described.groups[0];
    assert_eq!(
        (g.group_state.as_str(), g.protocol_data.as_str()),
        ("Stable", "range")
    );
    assert_eq!(
        g.members[0].member_assignment,
        Bytes::from_static(b"assignment")
    );
    // ConsumerGroupDescribe answers for KIP-848 groups only, with Kafka 4's messages.
    let as_consumer = call(
        &mut s,
        ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![group(), GroupId(StrBytes::from_static_str("absent"))]),
        0,
    )
    .await;
    let errors: Vec<(i16, Option<String>)> = as_consumer
        .groups
        .iter()
        .map(|g| {
            (
                g.error_code,
                g.error_message.as_ref().map(|m| m.to_string()),
            )
        })
        .collect();
    assert_eq!(
        errors,
        vec![
            (69, Some("Group g1 is not a consumer group.".to_string())),
            (69, Some("Group absent not found.".to_string())),
        ]
    );
    let listed = call(&mut s, ListGroupsRequest::default(), 4).await;
    assert!(listed
        .groups
        .iter()
        .any(|l| l.group_id.0.as_str() == "g1" && l.group_state.as_str() == "Stable"));

    let delete = || DeleteGroupsRequest::default().with_groups_names(vec![group()]);
    assert_eq!(call(&mut s, delete(), 2).await.results[0].error_code, 68);
    let left = call(
        &mut s,
        LeaveGroupRequest::default()
            .with_group_id(group())
            .with_members(vec![MemberIdentity::default().with_member_id(me.clone())]),
        3,
    )
    .await;
    assert_eq!((left.error_code, left.members[0].error_code), (0, 0));

    // Committed offsets survive a restart.
    drop(s);
    broker.shutdown().await.unwrap();
    let broker = EmbeddedBroker::start_with(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    let fetched = call(&mut s, fetch.clone(), 7).await;
    assert_eq!(fetched.topics[0].partitions[1].committed_offset, 42);
    assert_eq!(call(&mut s, delete(), 2).await.results[0].error_code, 0);
    let fetched = call(&mut s, fetch, 7).await;
    assert_eq!(fetched.topics[0].partitions[1].committed_offset, -1);
    assert_eq!(call(&mut s, delete(), 2).await.results[0].error_code, 69);
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn kip_848_members_split_partitions_and_revoke_before_reassignment() {
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
    use kafka_protocol::messages::{
        ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, TopicName,
    };

    let broker = EmbeddedBroker::start().await.unwrap();
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    call(&mut s, topic_request("k", 4, 1), 7).await;

    let beat = |member: &str, epoch: i32, owned: Option<Vec<i32>>, topic_id: uuid::Uuid| {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g848")))
            .with_member_id(StrBytes::from_string(member.to_string()))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(if epoch == 0 {
                Some(vec![TopicName(StrBytes::from_static_str("k"))])
            } else {
                None
            })
            // Owned partitions; an empty list (not an empty entry) when joining.
            .with_topic_partitions(owned.map(|p| {
                if p.is_empty() {
                    Vec::new()
                } else {
                    vec![TopicPartitions::default()
                        .with_topic_id(topic_id)
                        .with_partitions(p)]
                }
            }))
    };
    let owned = |r: &ConsumerGroupHeartbeatResponse| -> Option<Vec<i32>> {
        r.assignment.as_ref().map(|a| {
            let mut p: Vec<i32> = a
                .topic_partitions
                .iter()
                .flat_map(|t| t.partitions.clone())
                .collect();
            p.sort();
            p
        })
    };
    let nil = uuid::Uuid::nil();
    // Member A alone gets everything.
    let a = call(&mut s, beat("member-a", 0, Some(vec![]), nil), 1).await;
    assert_eq!(a.error_code, 0, "{:?}", a.error_message);
    assert_eq!(owned(&a), Some(vec![0, 1, 2, 3]));
    let topic_id = a.assignment.as_ref().unwrap().topic_partitions[0].topic_id;
    assert!(!topic_id.is_nil());
    let a_epoch = a.member_epoch;
    let a = call(
        &mut s,
        beat("member-a", a_epoch, Some(vec![0, 1, 2, 3]), topic_id),
        1,
    )
    .await;
    assert_eq!(a.error_code, 0);

    // B joins: it gets nothing A still owns.
    let b = call(&mut s, beat("member-b", 0, Some(vec![]), nil), 1).await;
    assert_eq!(b.error_code, 0);
    assert_eq!(owned(&b).unwrap_or_default(), Vec::<i32>::new());
    // A is asked to give two partitions up...
    let a = call(
        &mut s,
        beat("member-a", a_epoch, Some(vec![0, 1, 2, 3]), topic_id),
        1,
    )
    .await;
    let keep = owned(&a).expect("a new, smaller assignment for A");
    assert_eq!(keep.len(), 2);
    // ...and acknowledges by heartbeating with only what it keeps.
    let a = call(
        &mut s,
        beat("member-a", a.member_epoch, Some(keep.clone()), topic_id),
        1,
    )
    .await;
    assert_eq!(a.error_code, 0);
    // Now B receives the released partitions.
    let b = call(
        &mut s,
        beat("member-b", b.member_epoch, Some(vec![]), topic_id),
        1,
    )
    .await;
    let theirs = owned(&b).expect("B's assignment once A released");
    assert_eq!(theirs.len(), 2);
    assert!(theirs.iter().all(|p| !keep.contains(p)));
    // A stale epoch is fenced.
    let stale = call(
        &mut s,
        beat("member-b", b.member_epoch + 5, Some(theirs), topic_id),
        1,
    )
    .await;
    assert_eq!(stale.error_code, 110);
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_parked_join_does_not_hold_up_shutdown() {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::*;

    let dir = tempfile::tempdir().unwrap();
    let mut config = spool_broker::BrokerConfig::new(dir.path());
    config.group.initial_rebalance_delay_ms = 0;
    let broker = EmbeddedBroker::start_with(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let join = |member: StrBytes| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("parked")))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(60_000)
            .with_member_id(member)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(b"m"))])
    };
    let mut a = TcpStream::connect(broker.addr()).await.unwrap();
    let first = call(&mut a, join(StrBytes::default()), 3).await;
    assert_eq!((first.error_code, first.generation_id), (0, 1));
    // A second member's join waits for the first to rejoin, for up to a minute.
    let mut b = TcpStream::connect(broker.addr()).await.unwrap();
    let parked = tokio::spawn(async move { call(&mut b, join(StrBytes::default()), 3).await });
    // Wait until the broker holds that join (the group is rebalancing).
    let mut c = TcpStream::connect(broker.addr()).await.unwrap();
    let describe = || {
        DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_static_str("parked"))])
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while call(&mut c, describe(), 5).await.groups[0]
            .group_state
            .as_str()
            != "PreparingRebalance"
        {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the second join never started a rebalance");
    // Shutdown must not wait for that minute.
    tokio::time::timeout(std::time::Duration::from_secs(20), broker.shutdown())
        .await
        .expect("shutdown waited for the parked JoinGroup")
        .unwrap();
    let answer = parked.await.unwrap();
    assert_eq!(
        answer.error_code, 15,
        "parked join answered COORDINATOR_NOT_AVAILABLE"
    );
}

#[tokio::test]
async fn kip_848_regex_member_gets_topics_created_after_it_joined() {
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
    use kafka_protocol::messages::{
        ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest,
        ConsumerGroupHeartbeatResponse, GroupId,
    };
    use std::collections::BTreeMap;

    let dir = tempfile::tempdir().unwrap();
    let mut config = spool_broker::BrokerConfig::new(dir.path());
    // Re-resolve the regex on every heartbeat instead of every 10 s.
    config.group.consumer_regex_refresh_interval_ms = 0;
    // group.consumer.heartbeat.interval.ms reaches the members.
    config.group.consumer_heartbeat_interval_ms = 1_500;
    let broker = EmbeddedBroker::start_with(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    call(&mut s, topic_request("orders-eu", 2, 1), 7).await;
    call(&mut s, topic_request("old-orders", 1, 1), 7).await;

    let beat = |member: &str, epoch: i32, regex: Option<&str>, owned: Vec<TopicPartitions>| {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g-regex")))
            .with_member_id(StrBytes::from_string(member.to_string()))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(if epoch == 0 { 30_000 } else { -1 })
            .with_subscribed_topic_regex(regex.map(|r| StrBytes::from_string(r.to_string())))
            .with_topic_partitions(Some(owned))
    };
    // topic id -> partitions of an answer's assignment.
    let parts = |r: &ConsumerGroupHeartbeatResponse| -> BTreeMap<uuid::Uuid, Vec<i32>> {
        r.assignment
            .as_ref()
            .expect("an assignment")
            .topic_partitions
            .iter()
            .map(|t| {
                let mut p = t.partitions.clone();
                p.sort();
                (t.topic_id, p)
            })
            .collect()
    };
    let as_owned = |a: &BTreeMap<uuid::Uuid, Vec<i32>>| -> Vec<TopicPartitions> {
        a.iter()
            .map(|(id, p)| {
                TopicPartitions::default()
                    .with_topic_id(*id)
                    .with_partitions(p.clone())
            })
            .collect()
    };

    // An invalid regex: INVALID_REGULAR_EXPRESSION (128), as Kafka answers.
    let bad = call(&mut s, beat("bad", 0, Some("orders-(["), vec![]), 1).await;
    assert_eq!(bad.error_code, 128, "{:?}", bad.error_message);

    let r = call(&mut s, beat("m", 0, Some("orders-.*"), vec![]), 1).await;
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(r.heartbeat_interval_ms, 1_500);
    let first = parts(&r);
    assert_eq!(first.len(), 1, "only orders-eu matches: {first:?}");
    assert_eq!(first.values().next().unwrap(), &vec![0, 1]);
    let epoch = r.member_epoch;

    call(&mut s, topic_request("orders-us", 3, 1), 7).await;
    let r = call(&mut s, beat("m", epoch, None, as_owned(&first)), 1).await;
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert!(r.member_epoch > epoch, "the group epoch moved");
    let now = parts(&r);
    assert_eq!(now.len(), 2, "orders-eu and orders-us: {now:?}");
    assert_eq!(now.values().map(Vec::len).sum::<usize>(), 5);

    let d = call(
        &mut s,
        ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(StrBytes::from_static_str("g-regex"))]),
        0,
    )
    .await;
    let member = &d.groups[0].members[0];
    assert_eq!(
        member
            .subscribed_topic_regex
            .as_deref()
            .map(|r| r.to_string()),
        Some("orders-.*".to_string())
    );
    assert_eq!(member.assignment.topic_partitions.len(), 2);

    // DescribeGroups is for classic groups: Kafka 4.3 answers GROUP_ID_NOT_FOUND from v6 and a
    // Dead group with nothing else before.
    let classic = |v| {
        let req = kafka_protocol::messages::DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_static_str("g-regex"))]);
        (req, v)
    };
    let (req, v) = classic(6);
    let d = call(&mut s, req, v).await;
    let g = &d.groups[0];
    assert_eq!(
        (
            g.error_code,
            g.error_message.as_deref().map(|m| m.to_string())
        ),
        (
            69,
            Some("Group g-regex is not a classic group.".to_string())
        )
    );
    assert_eq!(g.group_state.as_str(), "Dead");
    assert!(g.members.is_empty());
    let (req, v) = classic(5);
    let d = call(&mut s, req, v).await;
    let g = &d.groups[0];
    assert_eq!(
        (
            g.error_code,
            g.group_state.as_str(),
            g.protocol_type.as_str()
        ),
        (0, "Dead", "")
    );
    assert!(g.members.is_empty());

    // Spool's admin falls back to ConsumerGroupDescribe for it.
    let admin = spool_client::Client::connect(spool_client::ClientConfig::new(&broker.bootstrap()))
        .await
        .unwrap()
        .admin();
    let described = admin.describe_group("g-regex").await.unwrap();
    assert_eq!(described.protocol_type, "consumer");
    assert_eq!(described.members.len(), 1);
    assert_eq!(described.members[0].assignment.len(), 5);
    // An unknown id: the DescribeGroups error, not the fallback's.
    let err = admin
        .describe_group("nobody")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Group nobody not found."), "{err}");
    broker.shutdown().await.unwrap();
}

/// Metadata by topic id (v12+), as Java's consumer asks for the topics of a KIP-848
/// assignment: the id with an empty (not null) name. Unknown ids are UNKNOWN_TOPIC_ID; ids
/// before v12 are INVALID_REQUEST.
#[tokio::test]
async fn metadata_by_topic_id() {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{MetadataRequest, TopicName};

    let broker = EmbeddedBroker::start().await.unwrap();
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    call(&mut s, topic_request("byid", 2, 1), 7).await;
    let by_name = |name: &str| {
        MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.into()))))]))
    };
    let id = call(&mut s, by_name("byid"), 12).await.topics[0].topic_id;
    assert!(!id.is_nil());
    let by_id = |id: uuid::Uuid| {
        MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default()
                .with_topic_id(id)
                .with_name(Some(TopicName(StrBytes::default()))),
            // Once ids are used, entries without one are ignored (as Kafka does).
            MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::default()))),
        ]))
    };
    let found = call(&mut s, by_id(id), 12).await;
    assert_eq!(found.topics.len(), 1);
    assert_eq!(found.topics[0].error_code, 0);
    assert_eq!(found.topics[0].name.as_ref().unwrap().0.as_str(), "byid");
    assert_eq!(found.topics[0].partitions.len(), 2);

    let unknown = call(&mut s, by_id(uuid::Uuid::from_u128(7)), 13).await;
    assert_eq!(unknown.topics[0].error_code, 100);
    assert!(unknown.topics[0].name.is_none());

    let too_old = call(&mut s, by_id(id), 11).await;
    assert_eq!(too_old.topics[0].error_code, 42);
    broker.shutdown().await.unwrap();
}
