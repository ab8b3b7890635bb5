//! Writes the fuzz targets' seed corpus: `cargo run --manifest-path fuzz/Cargo.toml -p
//! spool-fuzz-gen -- fuzz/corpus`. Every file is deterministic, so rerunning it after a schema
//! change shows what changed in `git diff --stat fuzz/corpus`.
//!
//! Seeds are real requests (every API the broker implements, at every version it accepts,
//! encoded by kafka-protocol), real batches (every codec) and real embedded consumer-protocol
//! messages, plus the hostile cases the broker's integration tests send (huge counts, lying
//! lengths, a TLS ClientHello, decompression bombs, lying record counts).

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use spool_protocol::codec;
use spool_protocol::compression::{self, Compression};
use spool_protocol::records::BatchBuilder;

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn s(x: &'static str) -> StrBytes {
    StrBytes::from_static_str(x)
}

fn topic(x: &'static str) -> TopicName {
    TopicName(s(x))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create corpus dir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

/// A batch of three records (keys, a null value, a header) compressed with `codec`.
fn batch(codec: Compression) -> Bytes {
    let mut b = BatchBuilder::new(1 << 20);
    assert!(b.try_append(1_700_000_000_000, Some(b"k1"), Some(b"v1"), &[]));
    assert!(b.try_append(
        1_700_000_000_001,
        Some(b"k2"),
        None,
        &[("h", Some(b"x".as_slice()))]
    ));
    assert!(b.try_append(1_700_000_000_002, None, Some(&[7u8; 100]), &[]));
    b.build(-1, -1, -1, codec).expect("build")
}

fn subscription(version: i16) -> Bytes {
    let mut out = BytesMut::new();
    out.extend_from_slice(&version.to_be_bytes());
    ConsumerProtocolSubscription::default()
        .with_topics(vec![s("t"), s("u")])
        .with_user_data(Some(Bytes::from_static(b"ud")))
        .encode(&mut out, version)
        .expect("encode subscription");
    out.freeze()
}

fn assignment(version: i16) -> Bytes {
    let mut out = BytesMut::new();
    out.extend_from_slice(&version.to_be_bytes());
    ConsumerProtocolAssignment::default()
        .with_assigned_partitions(vec![consumer_protocol_assignment::TopicPartition::default(
        )
        .with_topic(topic("t"))
        .with_partitions(vec![0, 1, 2])])
        .encode(&mut out, version)
        .expect("encode assignment");
    out.freeze()
}

/// A request with some content in its main arrays, as version `v` can carry it.
fn populated(key: ApiKey, v: i16) -> Option<RequestKind> {
    let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    Some(match key {
        ApiKey::Produce => {
            let mut t = produce_request::TopicProduceData::default().with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(if v >= 7 {
                        Compression::Zstd
                    } else {
                        Compression::Lz4
                    }))),
            ]);
            if v >= 13 {
                t = t.with_topic_id(id);
            } else {
                t = t.with_name(topic("t"));
            }
            RequestKind::Produce(
                ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(1000)
                    .with_topic_data(vec![t]),
            )
        }
        ApiKey::Fetch => {
            let mut t = fetch_request::FetchTopic::default().with_partitions(vec![
                fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(5)
                    .with_partition_max_bytes(1 << 20),
            ]);
            if v >= 13 {
                t = t.with_topic_id(id);
            } else {
                t = t.with_topic(topic("t"));
            }
            RequestKind::Fetch(
                FetchRequest::default()
                    .with_max_wait_ms(500)
                    .with_max_bytes(1 << 20)
                    .with_topics(vec![t]),
            )
        }
        ApiKey::Metadata => {
            RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(topic("t"))),
            ])))
        }
        ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(
            vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic("t"))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_timestamp(1_700_000_000_000),
                ])],
        )),
        ApiKey::CreateTopics => {
            RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(topic("t"))
                    .with_num_partitions(3)
                    .with_replication_factor(1)
                    .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
                        .with_name(s("cleanup.policy"))
                        .with_value(Some(s("compact")))]),
            ]))
        }
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_session_timeout_ms(10_000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(s("range"))
                .with_metadata(subscription(3))]),
        ),
        ApiKey::SyncGroup => RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_member_id(s("m"))
                .with_assignments(vec![
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(s("m"))
                        .with_assignment(assignment(3)),
                ]),
        ),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(topic("t"))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_committed_offset(42)
                                .with_committed_metadata(Some(s("meta"))),
                        ]),
                ]),
        ),
        ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_member_id(s("m"))
                .with_subscribed_topic_names(Some(vec![topic("t")])),
        ),
        ApiKey::DescribeConfigs => {
            RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_configuration_keys(Some(vec![s("cleanup.policy")])),
            ]))
        }
        _ => return None,
    })
}

fn default_body(key: ApiKey) -> RequestKind {
    match key {
        ApiKey::Produce => ProduceRequest::default().into(),
        ApiKey::Fetch => FetchRequest::default().into(),
        ApiKey::ListOffsets => ListOffsetsRequest::default().into(),
        ApiKey::Metadata => MetadataRequest::default().into(),
        ApiKey::ApiVersions => ApiVersionsRequest::default()
            .with_client_software_name(s("spool-fuzz"))
            .with_client_software_version(s("1"))
            .into(),
        ApiKey::CreateTopics => CreateTopicsRequest::default().into(),
        ApiKey::DeleteTopics => DeleteTopicsRequest::default().into(),
        ApiKey::InitProducerId => InitProducerIdRequest::default().into(),
        ApiKey::DescribeConfigs => DescribeConfigsRequest::default().into(),
        ApiKey::CreatePartitions => CreatePartitionsRequest::default().into(),
        ApiKey::DescribeCluster => DescribeClusterRequest::default().into(),
        ApiKey::FindCoordinator => FindCoordinatorRequest::default().into(),
        ApiKey::JoinGroup => JoinGroupRequest::default().into(),
        ApiKey::SyncGroup => SyncGroupRequest::default().into(),
        ApiKey::Heartbeat => HeartbeatRequest::default().into(),
        ApiKey::LeaveGroup => LeaveGroupRequest::default().into(),
        ApiKey::OffsetCommit => OffsetCommitRequest::default().into(),
        ApiKey::OffsetFetch => OffsetFetchRequest::default().into(),
        ApiKey::DescribeGroups => DescribeGroupsRequest::default().into(),
        ApiKey::ListGroups => ListGroupsRequest::default().into(),
        ApiKey::DeleteGroups => DeleteGroupsRequest::default().into(),
        ApiKey::OffsetDelete => OffsetDeleteRequest::default().into(),
        ApiKey::ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest::default().into(),
        ApiKey::ConsumerGroupDescribe => ConsumerGroupDescribeRequest::default().into(),
        other => panic!("no seed body for {other:?}: add one"),
    }
}

/// A whole frame, length prefix included.
fn frame(key: ApiKey, v: i16, body: &RequestKind) -> Option<Vec<u8>> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(v)
        .with_correlation_id(7)
        .with_client_id(Some(s("seed")));
    let mut out = BytesMut::new();
    codec::encode_request(&mut out, &header, body).ok()?;
    Some(out.to_vec())
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// The hostile request frames the broker's tests send.
fn hostile_requests() -> Vec<(&'static str, Vec<u8>)> {
    let mut cases = Vec::new();
    // Metadata v0: api key 3, version 0, correlation id, null client id, 54 million topics.
    let mut b = Vec::new();
    b.extend_from_slice(&3i16.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&54_000_000i32.to_be_bytes());
    cases.push(("hostile-metadata-v0-54m-topics", framed(&b)));
    // Metadata v12 (flexible): header tagged fields declaring 20 million entries.
    let mut b = Vec::new();
    b.extend_from_slice(&3i16.to_be_bytes());
    b.extend_from_slice(&12i16.to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&[0x80, 0xDA, 0xC4, 0x09]); // uvarint 20_000_000
    b.extend_from_slice(&[0, 0]);
    cases.push(("hostile-20m-tagged-fields", framed(&b)));
    cases.push((
        "hostile-negative-frame-length",
        (-5i32).to_be_bytes().to_vec(),
    ));
    cases.push((
        "hostile-oversized-frame-length",
        (200i32 << 20).to_be_bytes().to_vec(),
    ));
    // Metadata v1 whose first topic name claims -2 and then 32767 bytes.
    for (name, len) in [
        ("hostile-negative-string", -2i16),
        ("hostile-oversized-string", i16::MAX),
    ] {
        let mut b = Vec::new();
        b.extend_from_slice(&3i16.to_be_bytes());
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(b"t");
        cases.push((name, framed(&b)));
    }
    // Produce v3 whose records field claims -7 and then 2^31-1 bytes.
    for (name, len) in [
        ("hostile-negative-bytes", -7i32),
        ("hostile-oversized-bytes", i32::MAX),
    ] {
        let mut b = Vec::new();
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&3i16.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id
        b.extend_from_slice(&1i16.to_be_bytes()); // acks
        b.extend_from_slice(&1000i32.to_be_bytes()); // timeout
        b.extend_from_slice(&1i32.to_be_bytes()); // one topic
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(b"t");
        b.extend_from_slice(&1i32.to_be_bytes()); // one partition
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        cases.push((name, framed(&b)));
    }
    // Metadata v1 whose topic array claims -3 entries.
    let mut b = Vec::new();
    b.extend_from_slice(&3i16.to_be_bytes());
    b.extend_from_slice(&1i16.to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-3i32).to_be_bytes());
    cases.push(("hostile-negative-array", framed(&b)));
    cases.push((
        "hostile-tls-client-hello",
        vec![
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0, 0,
        ],
    ));
    cases
}

/// A batch whose records section is a bomb: `size` zero bytes compressed with `codec`.
fn bomb(codec: Compression, size: usize) -> Vec<u8> {
    let mut section = Vec::new();
    compression::compress(codec, &vec![0u8; size], &mut section).expect("compress");
    // Mode byte 3: 1 MiB cap, wrap the section in a header with a correct CRC.
    let mut seed = vec![3u8];
    seed.extend_from_slice(&codec.attribute_bits().to_be_bytes());
    seed.extend_from_slice(&1i32.to_be_bytes());
    seed.extend_from_slice(&section);
    seed
}

fn main() {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let req = root.join("request");
    for &(key, min, max) in spool_broker::supported_versions() {
        for v in min..=max {
            let seed = populated(key, v)
                .and_then(|body| frame(key, v, &body))
                .or_else(|| frame(key, v, &default_body(key)));
            let Some(seed) = seed else {
                // Produce v0-v2: advertised, but kafka-protocol 0.18 no longer encodes them.
                eprintln!("no seed for {key:?} v{v}: kafka-protocol cannot encode it");
                continue;
            };
            write(&req, &format!("{key:?}-v{v}"), &seed);
        }
    }
    for (name, seed) in hostile_requests() {
        write(&req, name, &seed);
    }

    let rb = root.join("record_batch");
    for codec in CODECS {
        let b = batch(codec);
        // Mode 0: raw batch bytes with the broker's cap.
        let mut seed = vec![0u8];
        seed.extend_from_slice(&b);
        write(&rb, &format!("batch-{}", codec.name()), &seed);
        // Mode 2: the same section, wrapped by the target (so mutations keep a valid CRC).
        let mut seed = vec![2u8];
        seed.extend_from_slice(&b[21..23]);
        seed.extend_from_slice(&b[57..61]);
        seed.extend_from_slice(&b[61..]);
        write(&rb, &format!("section-{}", codec.name()), &seed);
        // Record counts that lie, both ways.
        for (name, count) in [("more", 1000i32), ("fewer", 1)] {
            let mut lie = seed.clone();
            lie[3..7].copy_from_slice(&count.to_be_bytes());
            write(&rb, &format!("hostile-count-{name}-{}", codec.name()), &lie);
        }
        if codec != Compression::None {
            // Zeros against the 1 MiB cap: small seeds that are still bombs. Snappy compresses
            // only ~20:1, so its bomb crosses the cap by one block rather than by 3 MiB.
            let size = if codec == Compression::Snappy {
                (1 << 20) + 1
            } else {
                4 << 20
            };
            write(
                &rb,
                &format!("hostile-bomb-{}", codec.name()),
                &bomb(codec, size),
            );
        }
    }
    // Raw snappy that declares 4 GiB up front.
    let mut seed = vec![3u8];
    seed.extend_from_slice(&Compression::Snappy.attribute_bits().to_be_bytes());
    seed.extend_from_slice(&1i32.to_be_bytes());
    seed.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
    write(&rb, "hostile-snappy-declares-4gib", &seed);

    let em = root.join("embedded");
    for v in 0..=3 {
        let mut seed = vec![0u8];
        seed.extend_from_slice(&subscription(v));
        write(&em, &format!("subscription-v{v}"), &seed);
        let mut seed = vec![1u8];
        seed.extend_from_slice(&assignment(v));
        write(&em, &format!("assignment-v{v}"), &seed);
    }
    // An assignment with one topic claiming 2^30 partitions and no bytes for them.
    write(
        &em,
        "hostile-assignment-count-lies",
        &[1, 0, 0, 0, 0, 0, 1, 0, 1, b't', 0x40, 0, 0, 0],
    );
}
