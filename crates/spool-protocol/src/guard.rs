//! Pre-decode bounds check for request frames.
//!
//! `kafka-protocol` trusts the wire: its array decoders call `Vec::with_capacity(count)`
//! with the declared count, its `String`/`Bytes` decoders into owned buffers call
//! `vec![0; len]` before checking that `len` bytes exist, and every tagged-field section
//! inserts as many entries as it declares. A hundred-byte request can therefore ask for
//! gigabytes (the CVE-2022-34917 class of bug). This module walks the frame first, using
//! the same layouts as `kafka-protocol` 0.18's generated `Decodable` impls, and refuses
//! any frame whose counts and lengths are not backed by bytes that are actually present.
//!
//! The walker never allocates: it only moves a cursor over the borrowed frame. The
//! schemas below are data, one table per API, interpreted by a single walker, so adding an
//! API means transcribing its decoder into a table rather than writing more code.
//!
//! Everything the guard accepts is either decodable without an allocation that outgrows
//! the frame (times the element-size amplification capped by
//! [`GuardLimits::max_array_elements`]), or rejected by `kafka-protocol` for a semantic
//! reason (bad UTF-8, null in a non-nullable field, a tag not valid at this version).

/// Limits applied while walking a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardLimits {
    /// Most entries one tagged-field section may declare. Each unknown tag becomes a
    /// `BTreeMap` entry in `kafka-protocol`, so this bounds per-struct map growth.
    pub max_tagged_fields: usize,
    /// Most array elements, plus tagged fields, the whole request may declare. Decoded
    /// elements are much larger in memory than on the wire (a 4-byte partition entry is a
    /// struct with a `BTreeMap` and more), so this caps that amplification.
    pub max_array_elements: usize,
}

impl Default for GuardLimits {
    fn default() -> Self {
        Self {
            max_tagged_fields: 64,
            max_array_elements: 100_000,
        }
    }
}

/// Why a request frame was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GuardError {
    /// The frame ended inside a fixed-size field or a varint.
    #[error("request truncated at byte {at}")]
    Truncated {
        /// Offset in the frame where the missing bytes should have started.
        at: usize,
    },
    /// A length or count prefix was negative but not -1 (null).
    #[error("{field}: negative length {len} at byte {at}")]
    NegativeLength {
        /// Kafka schema name of the field.
        field: &'static str,
        /// The declared length.
        len: i64,
        /// Offset of the length prefix.
        at: usize,
    },
    /// A string, byte or array length claims more than the bytes left in the frame.
    #[error("{field}: declares {count} but only {remaining} bytes remain")]
    CountExceedsBytes {
        /// Kafka schema name of the field.
        field: &'static str,
        /// Declared length in bytes, or element count for arrays.
        count: i64,
        /// Bytes left in the frame after the prefix.
        remaining: usize,
    },
    /// A tagged-field section declares more fields than [`GuardLimits::max_tagged_fields`].
    #[error("{count} tagged fields at byte {at} exceed the limit of {max}")]
    TooManyTaggedFields {
        /// Declared number of tagged fields.
        count: u32,
        /// The configured limit.
        max: usize,
        /// Offset of the section's count.
        at: usize,
    },
    /// The request declares more array elements and tagged fields in total than
    /// [`GuardLimits::max_array_elements`].
    #[error(
        "request declares at least {declared} array elements and tagged fields, limit is {max}"
    )]
    TooManyElements {
        /// Running total when the limit was crossed.
        declared: usize,
        /// The configured limit.
        max: usize,
    },
    /// An unsigned varint longer than 5 bytes or overflowing 32 bits.
    #[error("malformed varint at byte {at}")]
    BadVarint {
        /// Offset of the varint's first byte.
        at: usize,
    },
    /// A tagged field that `kafka-protocol` decodes in place did not fill exactly the size
    /// its header declared. That decoder ignores the declared size, so a lie would let it
    /// read the frame at offsets the guard never checked.
    #[error("tagged field {tag} declares {declared} bytes but its value takes {actual}")]
    TaggedFieldSizeMismatch {
        /// The tag number.
        tag: u32,
        /// Size from the tag header.
        declared: usize,
        /// Bytes the value actually occupies.
        actual: usize,
    },
    /// The guard has no schema for this API key at this version.
    #[error("unsupported api key {api_key} version {api_version}")]
    UnsupportedApi {
        /// Requested API key.
        api_key: i16,
        /// Requested API version.
        api_version: i16,
    },
}

/// Checks a whole request frame (header + body). Returns Ok(()) when kafka-protocol may
/// decode it safely.
///
/// `frame` is the bytes after the 4-byte size prefix. Bytes after the body are ignored,
/// as Kafka does.
pub fn check_request(frame: &[u8], limits: &GuardLimits) -> Result<(), GuardError> {
    walk_request(frame, limits).map(|_| ())
}

/// True when `check_request` knows the schema of this api key at this version.
pub fn knows(api_key: i16, api_version: i16) -> bool {
    find_api(api_key, api_version).is_some()
}

/// Walks header and body; returns the offset just past the body so tests can compare it
/// with where `kafka-protocol` stops.
fn walk_request(frame: &[u8], limits: &GuardLimits) -> Result<usize, GuardError> {
    let mut w = Walker {
        buf: frame,
        pos: 0,
        version: 0,
        flexible: false,
        limits,
        elements: 0,
    };
    let api_key = w.i16()?;
    let api_version = w.i16()?;
    let api = find_api(api_key, api_version).ok_or(GuardError::UnsupportedApi {
        api_key,
        api_version,
    })?;
    w.version = api_version;
    w.flexible = api_version >= api.flexible_from;

    // Correlation id, then the client id. KIP-482 kept the client id a classic int16
    // string in header v2 so that a broker can log who sent a request it cannot parse.
    w.skip(4)?;
    w.blob("ClientId", Prefix::Int16)?;
    if w.flexible {
        w.tagged_fields(&[])?;
    }
    w.structure(api.body)?;
    Ok(w.pos)
}

fn find_api(api_key: i16, api_version: i16) -> Option<&'static Api> {
    APIS.iter()
        .find(|a| a.key == api_key && (a.min..=a.max).contains(&api_version))
}

// ---------------------------------------------------------------------------------------
// Schema model
// ---------------------------------------------------------------------------------------

/// Wire shape of one field. Whether strings, bytes and arrays use the classic (int16 /
/// int32 prefix) or compact (unsigned varint + 1) encoding is not stored here: in every
/// covered API it flips exactly at the API's first flexible version, together with the
/// appearance of tagged-field sections.
#[derive(Debug, Clone, Copy)]
enum Ty {
    /// Fixed-width scalar of this many bytes: ints, booleans, UUIDs.
    Fixed(usize),
    /// Nullable or not: int16 length classic, unsigned varint length + 1 compact.
    Str,
    /// Nullable or not: int32 length classic, unsigned varint length + 1 compact.
    Bytes,
    /// int32 count classic, unsigned varint count + 1 compact; -1 / 0 is null.
    Array(&'static Ty),
    /// A nested struct, inline.
    Struct(&'static Schema),
    /// `kafka-protocol`'s `OptionStruct`: an int8 marker, and the struct only if it is 1.
    OptStruct(&'static Schema),
}

const I8: Ty = Ty::Fixed(1);
const BOOL: Ty = Ty::Fixed(1);
const I16: Ty = Ty::Fixed(2);
const I32: Ty = Ty::Fixed(4);
const I64: Ty = Ty::Fixed(8);
const UUID: Ty = Ty::Fixed(16);
const STR: Ty = Ty::Str;
const BYTES: Ty = Ty::Bytes;
const STRS: Ty = Ty::Array(&Ty::Str);
const I32S: Ty = Ty::Array(&I32);

/// A field present in versions `min..=max` of its message.
#[derive(Debug, Clone, Copy)]
struct Field {
    name: &'static str,
    ty: Ty,
    min: i16,
    max: i16,
}

impl Field {
    const fn new(name: &'static str, ty: Ty) -> Self {
        Self {
            name,
            ty,
            min: 0,
            max: i16::MAX,
        }
    }
    const fn since(self, min: i16) -> Self {
        Self { min, ..self }
    }
    const fn until(self, max: i16) -> Self {
        Self { max, ..self }
    }
    fn present(&self, version: i16) -> bool {
        (self.min..=self.max).contains(&version)
    }
}

/// A tagged field that `kafka-protocol` decodes in place (rather than storing as opaque
/// bytes) in the versions of `field`.
#[derive(Debug, Clone, Copy)]
struct Tag {
    tag: u32,
    field: Field,
}

/// One struct: its fields in wire order and the tags its decoder knows. Flexible versions
/// end every struct with a tagged-field section.
#[derive(Debug)]
struct Schema {
    fields: &'static [Field],
    tags: &'static [Tag],
}

impl Schema {
    const fn new(fields: &'static [Field]) -> Self {
        Self { fields, tags: &[] }
    }
    const fn with_tags(fields: &'static [Field], tags: &'static [Tag]) -> Self {
        Self { fields, tags }
    }
}

/// One request API: its versions, first flexible version (`i16::MAX` when none) and body.
#[derive(Debug)]
struct Api {
    key: i16,
    min: i16,
    max: i16,
    flexible_from: i16,
    body: &'static Schema,
}

const NEVER: i16 = i16::MAX;

// ---------------------------------------------------------------------------------------
// Request schemas, transcribed from kafka-protocol 0.18.0 src/messages/*_request.rs
// (the code that runs after the guard). Names follow Kafka's
// clients/src/main/resources/common/message/*Request.json.
// ---------------------------------------------------------------------------------------

#[rustfmt::skip]
static APIS: &[Api] = &[
    Api { key:  0, min: 3, max: 13, flexible_from:     9, body: &PRODUCE },
    Api { key:  1, min: 4, max: 18, flexible_from:    12, body: &FETCH },
    Api { key:  2, min: 1, max: 10, flexible_from:     6, body: &LIST_OFFSETS },
    Api { key:  3, min: 0, max: 13, flexible_from:     9, body: &METADATA },
    Api { key:  8, min: 2, max:  9, flexible_from:     8, body: &OFFSET_COMMIT },
    Api { key:  9, min: 1, max:  9, flexible_from:     6, body: &OFFSET_FETCH },
    Api { key: 10, min: 0, max:  6, flexible_from:     3, body: &FIND_COORDINATOR },
    Api { key: 11, min: 0, max:  9, flexible_from:     6, body: &JOIN_GROUP },
    Api { key: 12, min: 0, max:  4, flexible_from:     4, body: &HEARTBEAT },
    Api { key: 13, min: 0, max:  5, flexible_from:     4, body: &LEAVE_GROUP },
    Api { key: 14, min: 0, max:  5, flexible_from:     4, body: &SYNC_GROUP },
    Api { key: 15, min: 0, max:  6, flexible_from:     5, body: &DESCRIBE_GROUPS },
    Api { key: 16, min: 0, max:  5, flexible_from:     3, body: &LIST_GROUPS },
    Api { key: 17, min: 0, max:  1, flexible_from: NEVER, body: &SASL_HANDSHAKE },
    Api { key: 18, min: 0, max:  4, flexible_from:     3, body: &API_VERSIONS },
    Api { key: 19, min: 2, max:  7, flexible_from:     5, body: &CREATE_TOPICS },
    Api { key: 20, min: 1, max:  6, flexible_from:     4, body: &DELETE_TOPICS },
    Api { key: 21, min: 0, max:  2, flexible_from:     2, body: &DELETE_RECORDS },
    Api { key: 22, min: 0, max:  5, flexible_from:     2, body: &INIT_PRODUCER_ID },
    Api { key: 32, min: 1, max:  4, flexible_from:     4, body: &DESCRIBE_CONFIGS },
    Api { key: 33, min: 0, max:  2, flexible_from:     2, body: &ALTER_CONFIGS },
    Api { key: 37, min: 0, max:  3, flexible_from:     2, body: &CREATE_PARTITIONS },
    Api { key: 42, min: 0, max:  2, flexible_from:     2, body: &DELETE_GROUPS },
    Api { key: 44, min: 0, max:  1, flexible_from:     1, body: &INCREMENTAL_ALTER_CONFIGS },
    Api { key: 47, min: 0, max:  0, flexible_from: NEVER, body: &OFFSET_DELETE },
    Api { key: 60, min: 0, max:  2, flexible_from:     0, body: &DESCRIBE_CLUSTER },
    Api { key: 68, min: 0, max:  1, flexible_from:     0, body: &CONSUMER_GROUP_HEARTBEAT },
    Api { key: 69, min: 0, max:  1, flexible_from:     0, body: &CONSUMER_GROUP_DESCRIBE },
    Api { key: 75, min: 0, max:  0, flexible_from:     0, body: &DESCRIBE_TOPIC_PARTITIONS },
];

// ProduceRequest (key 0). Records stay opaque bytes here; record batches are bounded
// separately by the batch reader.
const PRODUCE: Schema = Schema::new(&[
    Field::new("TransactionalId", STR),
    Field::new("Acks", I16),
    Field::new("TimeoutMs", I32),
    Field::new("TopicData", Ty::Array(&Ty::Struct(&TOPIC_PRODUCE_DATA))),
]);
const TOPIC_PRODUCE_DATA: Schema = Schema::new(&[
    Field::new("Name", STR).until(12),
    Field::new("TopicId", UUID).since(13),
    Field::new(
        "PartitionData",
        Ty::Array(&Ty::Struct(&PARTITION_PRODUCE_DATA)),
    ),
]);
const PARTITION_PRODUCE_DATA: Schema =
    Schema::new(&[Field::new("Index", I32), Field::new("Records", BYTES)]);

// FetchRequest (key 1). The only covered API whose decoder reads known tags in place.
const FETCH: Schema = Schema::with_tags(
    &[
        Field::new("ReplicaId", I32).until(14),
        Field::new("MaxWaitMs", I32),
        Field::new("MinBytes", I32),
        Field::new("MaxBytes", I32),
        Field::new("IsolationLevel", I8),
        Field::new("SessionId", I32).since(7),
        Field::new("SessionEpoch", I32).since(7),
        Field::new("Topics", Ty::Array(&Ty::Struct(&FETCH_TOPIC))),
        Field::new(
            "ForgottenTopicsData",
            Ty::Array(&Ty::Struct(&FORGOTTEN_TOPIC)),
        )
        .since(7),
        Field::new("RackId", STR).since(11),
    ],
    &[
        Tag {
            tag: 0,
            field: Field::new("ClusterId", STR),
        },
        Tag {
            tag: 1,
            field: Field::new("ReplicaState", Ty::Struct(&REPLICA_STATE)).since(15),
        },
    ],
);
const REPLICA_STATE: Schema = Schema::new(&[
    Field::new("ReplicaId", I32).since(15),
    Field::new("ReplicaEpoch", I64).since(15),
]);
const FETCH_TOPIC: Schema = Schema::new(&[
    Field::new("Topic", STR).until(12),
    Field::new("TopicId", UUID).since(13),
    Field::new("Partitions", Ty::Array(&Ty::Struct(&FETCH_PARTITION))),
]);
const FETCH_PARTITION: Schema = Schema::with_tags(
    &[
        Field::new("Partition", I32),
        Field::new("CurrentLeaderEpoch", I32).since(9),
        Field::new("FetchOffset", I64),
        Field::new("LastFetchedEpoch", I32).since(12),
        Field::new("LogStartOffset", I64).since(5),
        Field::new("PartitionMaxBytes", I32),
    ],
    &[
        Tag {
            tag: 0,
            field: Field::new("ReplicaDirectoryId", UUID).since(17),
        },
        Tag {
            tag: 1,
            field: Field::new("HighWatermark", I64).since(18),
        },
    ],
);
const FORGOTTEN_TOPIC: Schema = Schema::new(&[
    Field::new("Topic", STR).since(7).until(12),
    Field::new("TopicId", UUID).since(13),
    Field::new("Partitions", I32S).since(7),
]);

// ListOffsetsRequest (key 2).
const LIST_OFFSETS: Schema = Schema::new(&[
    Field::new("ReplicaId", I32),
    Field::new("IsolationLevel", I8).since(2),
    Field::new("Topics", Ty::Array(&Ty::Struct(&LIST_OFFSETS_TOPIC))),
    Field::new("TimeoutMs", I32).since(10),
]);
const LIST_OFFSETS_TOPIC: Schema = Schema::new(&[
    Field::new("Name", STR),
    Field::new(
        "Partitions",
        Ty::Array(&Ty::Struct(&LIST_OFFSETS_PARTITION)),
    ),
]);
const LIST_OFFSETS_PARTITION: Schema = Schema::new(&[
    Field::new("PartitionIndex", I32),
    Field::new("CurrentLeaderEpoch", I32).since(4),
    Field::new("Timestamp", I64),
]);

// MetadataRequest (key 3).
const METADATA: Schema = Schema::new(&[
    Field::new("Topics", Ty::Array(&Ty::Struct(&METADATA_TOPIC))),
    Field::new("AllowAutoTopicCreation", BOOL).since(4),
    Field::new("IncludeClusterAuthorizedOperations", BOOL)
        .since(8)
        .until(10),
    Field::new("IncludeTopicAuthorizedOperations", BOOL).since(8),
]);
const METADATA_TOPIC: Schema = Schema::new(&[
    Field::new("TopicId", UUID).since(10),
    Field::new("Name", STR),
]);

// OffsetCommitRequest (key 8).
const OFFSET_COMMIT: Schema = Schema::new(&[
    Field::new("GroupId", STR),
    Field::new("GenerationIdOrMemberEpoch", I32),
    Field::new("MemberId", STR),
    Field::new("GroupInstanceId", STR).since(7),
    Field::new("RetentionTimeMs", I64).until(4),
    Field::new("Topics", Ty::Array(&Ty::Struct(&OFFSET_COMMIT_TOPIC))),
]);
const OFFSET_COMMIT_TOPIC: Schema = Schema::new(&[
    Field::new("Name", STR),
    Field::new(
        "Partitions",
        Ty::Array(&Ty::Struct(&OFFSET_COMMIT_PARTITION)),
    ),
]);
const OFFSET_COMMIT_PARTITION: Schema = Schema::new(&[
    Field::new("PartitionIndex", I32),
    Field::new("CommittedOffset", I64),
    Field::new("CommittedLeaderEpoch", I32).since(6),
    Field::new("CommittedMetadata", STR),
]);

// OffsetFetchRequest (key 9). v8 replaced the single group with a list of groups.
const OFFSET_FETCH: Schema = Schema::new(&[
    Field::new("GroupId", STR).until(7),
    Field::new("Topics", Ty::Array(&Ty::Struct(&OFFSET_FETCH_TOPIC))).until(7),
    Field::new("Groups", Ty::Array(&Ty::Struct(&OFFSET_FETCH_GROUP))).since(8),
    Field::new("RequireStable", BOOL).since(7),
]);
const OFFSET_FETCH_TOPIC: Schema = Schema::new(&[
    Field::new("Name", STR).until(7),
    Field::new("PartitionIndexes", I32S).until(7),
]);
const OFFSET_FETCH_GROUP: Schema = Schema::new(&[
    Field::new("GroupId", STR).since(8),
    Field::new("MemberId", STR).since(9),
    Field::new("MemberEpoch", I32).since(9),
    Field::new("Topics", Ty::Array(&Ty::Struct(&OFFSET_FETCH_GROUP_TOPIC))).since(8),
]);
const OFFSET_FETCH_GROUP_TOPIC: Schema = Schema::new(&[
    Field::new("Name", STR).since(8),
    Field::new("PartitionIndexes", I32S).since(8),
]);

// FindCoordinatorRequest (key 10). v4 batches keys.
const FIND_COORDINATOR: Schema = Schema::new(&[
    Field::new("Key", STR).until(3),
    Field::new("KeyType", I8).since(1),
    Field::new("CoordinatorKeys", STRS).since(4),
]);

// JoinGroupRequest (key 11).
const JOIN_GROUP: Schema = Schema::new(&[
    Field::new("GroupId", STR),
    Field::new("SessionTimeoutMs", I32),
    Field::new("RebalanceTimeoutMs", I32).since(1),
    Field::new("MemberId", STR),
    Field::new("GroupInstanceId", STR).since(5),
    Field::new("ProtocolType", STR),
    Field::new("Protocols", Ty::Array(&Ty::Struct(&JOIN_GROUP_PROTOCOL))),
    Field::new("Reason", STR).since(8),
]);
const JOIN_GROUP_PROTOCOL: Schema =
    Schema::new(&[Field::new("Name", STR), Field::new("Metadata", BYTES)]);

// HeartbeatRequest (key 12).
const HEARTBEAT: Schema = Schema::new(&[
    Field::new("GroupId", STR),
    Field::new("GenerationId", I32),
    Field::new("MemberId", STR),
    Field::new("GroupInstanceId", STR).since(3),
]);

// LeaveGroupRequest (key 13). v3 batches members.
const LEAVE_GROUP: Schema = Schema::new(&[
    Field::new("GroupId", STR),
    Field::new("MemberId", STR).until(2),
    Field::new("Members", Ty::Array(&Ty::Struct(&MEMBER_IDENTITY))).since(3),
]);
const MEMBER_IDENTITY: Schema = Schema::new(&[
    Field::new("MemberId", STR).since(3),
    Field::new("GroupInstanceId", STR).since(3),
    Field::new("Reason", STR).since(5),
]);

// SyncGroupRequest (key 14).
const SYNC_GROUP: Schema = Schema::new(&[
    Field::new("GroupId", STR),
    Field::new("GenerationId", I32),
    Field::new("MemberId", STR),
    Field::new("GroupInstanceId", STR).since(3),
    Field::new("ProtocolType", STR).since(5),
    Field::new("ProtocolName", STR).since(5),
    Field::new(
        "Assignments",
        Ty::Array(&Ty::Struct(&SYNC_GROUP_ASSIGNMENT)),
    ),
]);
const SYNC_GROUP_ASSIGNMENT: Schema =
    Schema::new(&[Field::new("MemberId", STR), Field::new("Assignment", BYTES)]);

// DescribeGroupsRequest (key 15).
const DESCRIBE_GROUPS: Schema = Schema::new(&[
    Field::new("Groups", STRS),
    Field::new("IncludeAuthorizedOperations", BOOL).since(3),
]);

// ListGroupsRequest (key 16).
const LIST_GROUPS: Schema = Schema::new(&[
    Field::new("StatesFilter", STRS).since(4),
    Field::new("TypesFilter", STRS).since(5),
]);

// SaslHandshakeRequest (key 17). Never flexible.
const SASL_HANDSHAKE: Schema = Schema::new(&[Field::new("Mechanism", STR)]);

// ApiVersionsRequest (key 18). v3+ is flexible, header v2 included.
const API_VERSIONS: Schema = Schema::new(&[
    Field::new("ClientSoftwareName", STR).since(3),
    Field::new("ClientSoftwareVersion", STR).since(3),
]);

// CreateTopicsRequest (key 19).
const CREATE_TOPICS: Schema = Schema::new(&[
    Field::new("Topics", Ty::Array(&Ty::Struct(&CREATABLE_TOPIC))),
    Field::new("TimeoutMs", I32),
    Field::new("ValidateOnly", BOOL),
]);
const CREATABLE_TOPIC: Schema = Schema::new(&[
    Field::new("Name", STR),
    Field::new("NumPartitions", I32),
    Field::new("ReplicationFactor", I16),
    Field::new(
        "Assignments",
        Ty::Array(&Ty::Struct(&CREATABLE_REPLICA_ASSIGNMENT)),
    ),
    Field::new("Configs", Ty::Array(&Ty::Struct(&CREATABLE_TOPIC_CONFIG))),
]);
const CREATABLE_REPLICA_ASSIGNMENT: Schema = Schema::new(&[
    Field::new("PartitionIndex", I32),
    Field::new("BrokerIds", I32S),
]);
const CREATABLE_TOPIC_CONFIG: Schema =
    Schema::new(&[Field::new("Name", STR), Field::new("Value", STR)]);

// DeleteTopicsRequest (key 20). v6 switched from names to (name, id) states.
const DELETE_TOPICS: Schema = Schema::new(&[
    Field::new("Topics", Ty::Array(&Ty::Struct(&DELETE_TOPIC_STATE))).since(6),
    Field::new("TopicNames", STRS).until(5),
    Field::new("TimeoutMs", I32),
]);
const DELETE_TOPIC_STATE: Schema = Schema::new(&[
    Field::new("Name", STR).since(6),
    Field::new("TopicId", UUID).since(6),
]);

// DeleteRecordsRequest (key 21).
const DELETE_RECORDS: Schema = Schema::new(&[
    Field::new("Topics", Ty::Array(&Ty::Struct(&DELETE_RECORDS_TOPIC))),
    Field::new("TimeoutMs", I32),
]);
const DELETE_RECORDS_TOPIC: Schema = Schema::new(&[
    Field::new("Name", STR),
    Field::new(
        "Partitions",
        Ty::Array(&Ty::Struct(&DELETE_RECORDS_PARTITION)),
    ),
]);
const DELETE_RECORDS_PARTITION: Schema =
    Schema::new(&[Field::new("PartitionIndex", I32), Field::new("Offset", I64)]);

// InitProducerIdRequest (key 22). kafka-protocol 0.18 stops at v5, before the 2PC fields.
const INIT_PRODUCER_ID: Schema = Schema::new(&[
    Field::new("TransactionalId", STR),
    Field::new("TransactionTimeoutMs", I32),
    Field::new("ProducerId", I64).since(3),
    Field::new("ProducerEpoch", I16).since(3),
]);

// DescribeConfigsRequest (key 32).
const DESCRIBE_CONFIGS: Schema = Schema::new(&[
    Field::new(
        "Resources",
        Ty::Array(&Ty::Struct(&DESCRIBE_CONFIGS_RESOURCE)),
    ),
    Field::new("IncludeSynonyms", BOOL),
    Field::new("IncludeDocumentation", BOOL).since(3),
]);
const DESCRIBE_CONFIGS_RESOURCE: Schema = Schema::new(&[
    Field::new("ResourceType", I8),
    Field::new("ResourceName", STR),
    Field::new("ConfigurationKeys", STRS),
]);

// AlterConfigsRequest (key 33).
const ALTER_CONFIGS: Schema = Schema::new(&[
    Field::new("Resources", Ty::Array(&Ty::Struct(&ALTER_CONFIGS_RESOURCE))),
    Field::new("ValidateOnly", BOOL),
]);
const ALTER_CONFIGS_RESOURCE: Schema = Schema::new(&[
    Field::new("ResourceType", I8),
    Field::new("ResourceName", STR),
    Field::new("Configs", Ty::Array(&Ty::Struct(&ALTERABLE_CONFIG))),
]);
const ALTERABLE_CONFIG: Schema = Schema::new(&[Field::new("Name", STR), Field::new("Value", STR)]);

// CreatePartitionsRequest (key 37).
const CREATE_PARTITIONS: Schema = Schema::new(&[
    Field::new("Topics", Ty::Array(&Ty::Struct(&CREATE_PARTITIONS_TOPIC))),
    Field::new("TimeoutMs", I32),
    Field::new("ValidateOnly", BOOL),
]);
const CREATE_PARTITIONS_TOPIC: Schema = Schema::new(&[
    Field::new("Name", STR),
    Field::new("Count", I32),
    Field::new(
        "Assignments",
        Ty::Array(&Ty::Struct(&CREATE_PARTITIONS_ASSIGNMENT)),
    ),
]);
const CREATE_PARTITIONS_ASSIGNMENT: Schema = Schema::new(&[Field::new("BrokerIds", I32S)]);

// DeleteGroupsRequest (key 42).
const DELETE_GROUPS: Schema = Schema::new(&[Field::new("GroupsNames", STRS)]);

// IncrementalAlterConfigsRequest (key 44). Same shape as AlterConfigs plus an operation.
const INCREMENTAL_ALTER_CONFIGS: Schema = Schema::new(&[
    Field::new(
        "Resources",
        Ty::Array(&Ty::Struct(&INCREMENTAL_ALTER_CONFIGS_RESOURCE)),
    ),
    Field::new("ValidateOnly", BOOL),
]);
const INCREMENTAL_ALTER_CONFIGS_RESOURCE: Schema = Schema::new(&[
    Field::new("ResourceType", I8),
    Field::new("ResourceName", STR),
    Field::new(
        "Configs",
        Ty::Array(&Ty::Struct(&INCREMENTAL_ALTERABLE_CONFIG)),
    ),
]);
const INCREMENTAL_ALTERABLE_CONFIG: Schema = Schema::new(&[
    Field::new("Name", STR),
    Field::new("ConfigOperation", I8),
    Field::new("Value", STR),
]);

// OffsetDeleteRequest (key 47). Never flexible.
const OFFSET_DELETE: Schema = Schema::new(&[
    Field::new("GroupId", STR),
    Field::new("Topics", Ty::Array(&Ty::Struct(&OFFSET_DELETE_TOPIC))),
]);
const OFFSET_DELETE_TOPIC: Schema = Schema::new(&[
    Field::new("Name", STR),
    Field::new(
        "Partitions",
        Ty::Array(&Ty::Struct(&OFFSET_DELETE_PARTITION)),
    ),
]);
const OFFSET_DELETE_PARTITION: Schema = Schema::new(&[Field::new("PartitionIndex", I32)]);

// DescribeClusterRequest (key 60). Flexible from v0.
const DESCRIBE_CLUSTER: Schema = Schema::new(&[
    Field::new("IncludeClusterAuthorizedOperations", BOOL),
    Field::new("EndpointType", I8).since(1),
    Field::new("IncludeFencedBrokers", BOOL).since(2),
]);

// ConsumerGroupHeartbeatRequest (key 68). Flexible from v0.
const CONSUMER_GROUP_HEARTBEAT: Schema = Schema::new(&[
    Field::new("GroupId", STR),
    Field::new("MemberId", STR),
    Field::new("MemberEpoch", I32),
    Field::new("InstanceId", STR),
    Field::new("RackId", STR),
    Field::new("RebalanceTimeoutMs", I32),
    Field::new("SubscribedTopicNames", STRS),
    Field::new("SubscribedTopicRegex", STR).since(1),
    Field::new("ServerAssignor", STR),
    Field::new(
        "TopicPartitions",
        Ty::Array(&Ty::Struct(&CONSUMER_GROUP_TOPIC_PARTITIONS)),
    ),
]);
const CONSUMER_GROUP_TOPIC_PARTITIONS: Schema =
    Schema::new(&[Field::new("TopicId", UUID), Field::new("Partitions", I32S)]);

// ConsumerGroupDescribeRequest (key 69). Flexible from v0.
const CONSUMER_GROUP_DESCRIBE: Schema = Schema::new(&[
    Field::new("GroupIds", STRS),
    Field::new("IncludeAuthorizedOperations", BOOL),
]);

// DescribeTopicPartitionsRequest (key 75). Flexible from v0.
const DESCRIBE_TOPIC_PARTITIONS: Schema = Schema::new(&[
    Field::new(
        "Topics",
        Ty::Array(&Ty::Struct(&DESCRIBE_TOPIC_PARTITIONS_TOPIC)),
    ),
    Field::new("ResponsePartitionLimit", I32),
    Field::new("Cursor", Ty::OptStruct(&DESCRIBE_TOPIC_PARTITIONS_CURSOR)),
]);
const DESCRIBE_TOPIC_PARTITIONS_TOPIC: Schema = Schema::new(&[Field::new("Name", STR)]);
const DESCRIBE_TOPIC_PARTITIONS_CURSOR: Schema = Schema::new(&[
    Field::new("TopicName", STR),
    Field::new("PartitionIndex", I32),
]);

// ---------------------------------------------------------------------------------------
// Walker
// ---------------------------------------------------------------------------------------

/// How a length or count is prefixed on the wire.
#[derive(Debug, Clone, Copy)]
enum Prefix {
    Int16,
    Int32,
    /// Unsigned varint holding length + 1, 0 meaning null.
    Compact,
}

/// Cursor over a borrowed frame. Invariant: `pos <= buf.len()`.
struct Walker<'a> {
    buf: &'a [u8],
    pos: usize,
    version: i16,
    flexible: bool,
    limits: &'a GuardLimits,
    /// Array elements and tagged fields declared so far.
    elements: usize,
}

impl Walker<'_> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn skip(&mut self, n: usize) -> Result<(), GuardError> {
        if n > self.remaining() {
            return Err(GuardError::Truncated { at: self.pos });
        }
        self.pos += n;
        Ok(())
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], GuardError> {
        let bytes = self
            .buf
            .get(self.pos..)
            .and_then(|rest| rest.get(..N))
            .and_then(|b| <[u8; N]>::try_from(b).ok())
            .ok_or(GuardError::Truncated { at: self.pos })?;
        self.pos += N;
        Ok(bytes)
    }

    fn i8(&mut self) -> Result<i8, GuardError> {
        self.take::<1>().map(i8::from_be_bytes)
    }

    fn i16(&mut self) -> Result<i16, GuardError> {
        self.take::<2>().map(i16::from_be_bytes)
    }

    fn i32(&mut self) -> Result<i32, GuardError> {
        self.take::<4>().map(i32::from_be_bytes)
    }

    /// Reads an unsigned varint of at most 5 bytes (Kafka's Java code refuses longer ones)
    /// carrying no bits beyond 32. `kafka-protocol` silently stops after 5 bytes and drops
    /// the high bits, so accepting either would let its idea of a length differ from ours.
    fn uvarint(&mut self) -> Result<u32, GuardError> {
        let start = self.pos;
        let mut value = 0u32;
        for i in 0..5 {
            let [b] = self.take::<1>()?;
            if i == 4 && b > 0x0f {
                return Err(GuardError::BadVarint { at: start });
            }
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(GuardError::BadVarint { at: start })
    }

    /// The classic prefix in non-flexible versions, compact otherwise.
    fn prefix(&self, classic: Prefix) -> Prefix {
        if self.flexible {
            Prefix::Compact
        } else {
            classic
        }
    }

    /// Reads a length or count; `None` is null. Values below -1 are refused: kafka-protocol
    /// refuses them too, and there is no sane distance to skip past one.
    fn length(&mut self, field: &'static str, prefix: Prefix) -> Result<Option<u64>, GuardError> {
        let at = self.pos;
        let raw = match prefix {
            Prefix::Int16 => i64::from(self.i16()?),
            Prefix::Int32 => i64::from(self.i32()?),
            Prefix::Compact => i64::from(self.uvarint()?) - 1,
        };
        match raw {
            -1 => Ok(None),
            n if n < -1 => Err(GuardError::NegativeLength { field, len: n, at }),
            n => Ok(Some(n.unsigned_abs())),
        }
    }

    fn blob(&mut self, field: &'static str, prefix: Prefix) -> Result<(), GuardError> {
        let Some(len) = self.length(field, prefix)? else {
            return Ok(());
        };
        let remaining = self.remaining();
        match usize::try_from(len) {
            Ok(n) if n <= remaining => self.skip(n),
            _ => Err(GuardError::CountExceedsBytes {
                field,
                count: i64::try_from(len).unwrap_or(i64::MAX),
                remaining,
            }),
        }
    }

    /// Adds declared entries to the request-wide budget before anything is walked, so a
    /// rejection happens at the first prefix that would blow it.
    fn spend(&mut self, n: u64) -> Result<(), GuardError> {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        self.elements = self.elements.saturating_add(n);
        if self.elements > self.limits.max_array_elements {
            return Err(GuardError::TooManyElements {
                declared: self.elements,
                max: self.limits.max_array_elements,
            });
        }
        Ok(())
    }

    fn array(&mut self, field: &'static str, elem: &Ty) -> Result<(), GuardError> {
        let Some(count) = self.length(field, self.prefix(Prefix::Int32))? else {
            return Ok(());
        };
        // A zero-byte element would let any count pass, so every element costs at least
        // one byte: a count can never exceed the bytes left.
        let min =
            u64::try_from(min_size(elem, self.version, self.flexible).max(1)).unwrap_or(u64::MAX);
        let remaining = self.remaining();
        if count.saturating_mul(min) > u64::try_from(remaining).unwrap_or(u64::MAX) {
            return Err(GuardError::CountExceedsBytes {
                field,
                count: i64::try_from(count).unwrap_or(i64::MAX),
                remaining,
            });
        }
        self.spend(count)?;
        for _ in 0..count {
            self.value(field, elem)?;
        }
        Ok(())
    }

    fn value(&mut self, field: &'static str, ty: &Ty) -> Result<(), GuardError> {
        match *ty {
            Ty::Fixed(n) => self.skip(n),
            Ty::Str => self.blob(field, self.prefix(Prefix::Int16)),
            Ty::Bytes => self.blob(field, self.prefix(Prefix::Int32)),
            Ty::Array(elem) => self.array(field, elem),
            Ty::Struct(schema) => self.structure(schema),
            Ty::OptStruct(schema) => {
                if self.i8()? == 1 {
                    self.structure(schema)
                } else {
                    Ok(())
                }
            }
        }
    }

    fn structure(&mut self, schema: &Schema) -> Result<(), GuardError> {
        let version = self.version;
        for field in schema.fields.iter().filter(|f| f.present(version)) {
            self.value(field.name, &field.ty)?;
        }
        if self.flexible {
            self.tagged_fields(schema.tags)?;
        }
        Ok(())
    }

    fn tagged_fields(&mut self, known: &[Tag]) -> Result<(), GuardError> {
        let at = self.pos;
        let count = self.uvarint()?;
        if usize::try_from(count).map_or(true, |c| c > self.limits.max_tagged_fields) {
            return Err(GuardError::TooManyTaggedFields {
                count,
                max: self.limits.max_tagged_fields,
                at,
            });
        }
        // Each entry is at least a one-byte tag and a one-byte size.
        let remaining = self.remaining();
        if u64::from(count) * 2 > u64::try_from(remaining).unwrap_or(u64::MAX) {
            return Err(GuardError::CountExceedsBytes {
                field: "tagged fields",
                count: i64::from(count),
                remaining,
            });
        }
        self.spend(u64::from(count))?;
        for _ in 0..count {
            let tag = self.uvarint()?;
            let size = self.uvarint()?;
            let remaining = self.remaining();
            let size = match usize::try_from(size) {
                Ok(s) if s <= remaining => s,
                _ => {
                    return Err(GuardError::CountExceedsBytes {
                        field: "tagged field",
                        count: i64::from(size),
                        remaining,
                    })
                }
            };
            let decoded = known
                .iter()
                .find(|t| t.tag == tag && t.field.present(self.version));
            match decoded {
                // kafka-protocol decodes these from the frame itself and never looks at
                // `size`, so walk them by schema and insist the size was honest.
                Some(t) => {
                    let start = self.pos;
                    self.value(t.field.name, &t.field.ty)?;
                    let actual = self.pos - start;
                    if actual != size {
                        return Err(GuardError::TaggedFieldSizeMismatch {
                            tag,
                            declared: size,
                            actual,
                        });
                    }
                }
                // Everything else becomes an opaque `Bytes` slice of exactly `size`.
                None => self.skip(size)?,
            }
        }
        Ok(())
    }
}

/// Fewest bytes one value of `ty` can take at this version.
fn min_size(ty: &Ty, version: i16, flexible: bool) -> usize {
    match *ty {
        Ty::Fixed(n) => n,
        Ty::Str if !flexible => 2,
        Ty::Bytes | Ty::Array(_) if !flexible => 4,
        // Compact null/empty is a single varint byte; OptStruct's marker is one byte.
        Ty::Str | Ty::Bytes | Ty::Array(_) | Ty::OptStruct(_) => 1,
        Ty::Struct(schema) => {
            let fields: usize = schema
                .fields
                .iter()
                .filter(|f| f.present(version))
                .map(|f| min_size(&f.ty, version, flexible))
                .sum();
            fields + usize::from(flexible)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::{
        alter_configs_request as ac, consumer_group_heartbeat_request as cgh,
        create_partitions_request as cp, create_topics_request as ct, delete_records_request as dr,
        delete_topics_request as dt, describe_configs_request as dc,
        describe_topic_partitions_request as dtp, fetch_request as fe,
        incremental_alter_configs_request as iac, join_group_request as jg,
        leave_group_request as lg, list_offsets_request as lo, metadata_request as md,
        offset_commit_request as oc, offset_delete_request as od, offset_fetch_request as of,
        produce_request as pr, sync_group_request as sg, AlterConfigsRequest, ApiVersionsRequest,
        ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, CreatePartitionsRequest,
        CreateTopicsRequest, DeleteGroupsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
        DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest,
        DescribeTopicPartitionsRequest, FetchRequest, FindCoordinatorRequest, HeartbeatRequest,
        IncrementalAlterConfigsRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest,
        ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
        OffsetDeleteRequest, OffsetFetchRequest, ProduceRequest, RequestHeader,
        SaslHandshakeRequest, SyncGroupRequest,
    };
    use kafka_protocol::protocol::{
        Decodable, Encodable, HeaderVersion, Message, Request, StrBytes,
    };
    use std::collections::BTreeMap;

    // ---- helpers -------------------------------------------------------------------

    fn s(x: &'static str) -> StrBytes {
        StrBytes::from_static_str(x)
    }

    /// A non-nil UUID. `uuid` is not our dependency, so borrow kafka-protocol's decoder
    /// to make one (Metadata v10 topic: id, null name, no tags).
    macro_rules! uuid {
        ($seed:expr) => {{
            let mut wire = [$seed; 18];
            wire[16] = 0;
            wire[17] = 0;
            md::MetadataRequestTopic::decode(&mut &wire[..], 10)
                .expect("valid topic")
                .topic_id
        }};
    }

    /// One unknown tag in flexible versions, so every struct's tag skipping is exercised.
    fn unk(flexible: bool) -> BTreeMap<i32, Bytes> {
        let mut m = BTreeMap::new();
        if flexible {
            m.insert(77, Bytes::from_static(b"future"));
        }
        m
    }

    fn frame_of<R: Request>(req: &R, v: i16) -> Vec<u8> {
        let hv = R::header_version(v);
        // Alternate null and non-null client ids across versions.
        let client_id = (v % 2 == 1).then(|| s("spool-test"));
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(v)
            .with_correlation_id(42)
            .with_client_id(client_id)
            .with_unknown_tagged_fields(unk(hv >= 2));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, hv).expect("header encodes");
        req.encode(&mut buf, v).expect("body encodes");
        buf.to_vec()
    }

    /// Where kafka-protocol stops decoding header + body, or None if it refuses.
    fn decoded_len<R: Request>(frame: &[u8], v: i16) -> Option<usize> {
        let mut buf = Bytes::copy_from_slice(frame);
        RequestHeader::decode(&mut buf, R::header_version(v)).ok()?;
        R::decode(&mut buf, v).ok()?;
        Some(frame.len() - buf.len())
    }

    struct Case {
        name: &'static str,
        key: i16,
        min: i16,
        max: i16,
        frame: fn(i16) -> Vec<u8>,
        decoded_len: fn(&[u8], i16) -> Option<usize>,
        header_version: fn(i16) -> i16,
    }

    macro_rules! case {
        ($req:ty, $build:expr) => {
            Case {
                name: stringify!($req),
                key: <$req as Request>::KEY,
                min: <$req as Message>::VERSIONS.min,
                max: <$req as Message>::VERSIONS.max,
                frame: |v| frame_of::<$req>(&$build(v), v),
                decoded_len: decoded_len::<$req>,
                header_version: <$req as HeaderVersion>::header_version,
            }
        };
    }

    fn cases() -> Vec<Case> {
        vec![
            case!(ProduceRequest, produce),
            case!(FetchRequest, fetch),
            case!(ListOffsetsRequest, list_offsets),
            case!(MetadataRequest, metadata),
            case!(MetadataRequest, |_| MetadataRequest::default()
                .with_topics(None)),
            case!(OffsetCommitRequest, offset_commit),
            case!(OffsetFetchRequest, offset_fetch),
            case!(FindCoordinatorRequest, find_coordinator),
            case!(JoinGroupRequest, join_group),
            case!(HeartbeatRequest, heartbeat),
            case!(LeaveGroupRequest, leave_group),
            case!(SyncGroupRequest, sync_group),
            case!(DescribeGroupsRequest, describe_groups),
            case!(ListGroupsRequest, list_groups),
            case!(SaslHandshakeRequest, |_| SaslHandshakeRequest::default()
                .with_mechanism(s("SCRAM-SHA-512"))),
            case!(ApiVersionsRequest, api_versions),
            case!(CreateTopicsRequest, create_topics),
            case!(DeleteTopicsRequest, delete_topics),
            case!(DeleteRecordsRequest, delete_records),
            case!(InitProducerIdRequest, init_producer_id),
            case!(DescribeConfigsRequest, describe_configs),
            case!(AlterConfigsRequest, alter_configs),
            case!(CreatePartitionsRequest, create_partitions),
            case!(DeleteGroupsRequest, |v: i16| DeleteGroupsRequest::default()
                .with_groups_names(vec![s("g1").into(), s("g2").into()])
                .with_unknown_tagged_fields(unk(v >= 2))),
            case!(IncrementalAlterConfigsRequest, incremental_alter_configs),
            case!(OffsetDeleteRequest, offset_delete),
            case!(DescribeClusterRequest, describe_cluster),
            case!(ConsumerGroupHeartbeatRequest, consumer_group_heartbeat),
            case!(ConsumerGroupDescribeRequest, |_| {
                ConsumerGroupDescribeRequest::default()
                    .with_group_ids(vec![s("g1").into(), s("g2").into()])
                    .with_include_authorized_operations(true)
                    .with_unknown_tagged_fields(unk(true))
            }),
            case!(DescribeTopicPartitionsRequest, |v| {
                describe_topic_partitions(v, true)
            }),
            case!(DescribeTopicPartitionsRequest, |v| {
                describe_topic_partitions(v, false)
            }),
        ]
    }

    // ---- realistic requests, valid at every version ------------------------------

    fn produce(v: i16) -> ProduceRequest {
        let flex = v >= 9;
        let part = |index, records| {
            pr::PartitionProduceData::default()
                .with_index(index)
                .with_records(records)
                .with_unknown_tagged_fields(unk(flex))
        };
        let topic = pr::TopicProduceData::default().with_partition_data(vec![
            part(0, Some(Bytes::from_static(b"opaque record batch bytes"))),
            part(1, None),
            part(2, Some(Bytes::new())),
        ]);
        let topic = if v >= 13 {
            topic.with_topic_id(uuid!(1))
        } else {
            topic.with_name(s("orders").into())
        };
        ProduceRequest::default()
            .with_transactional_id(Some(s("tx-1").into()))
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![topic.clone(), topic])
            .with_unknown_tagged_fields(unk(flex))
    }

    fn fetch(v: i16) -> FetchRequest {
        let flex = v >= 12;
        let part = |p| {
            let mut x = fe::FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(100)
                .with_partition_max_bytes(1 << 20)
                .with_unknown_tagged_fields(unk(flex));
            if v >= 9 {
                x = x.with_current_leader_epoch(3);
            }
            if v >= 12 {
                x = x.with_last_fetched_epoch(2);
            }
            if v >= 5 {
                x = x.with_log_start_offset(7);
            }
            if v >= 17 {
                x = x.with_replica_directory_id(uuid!(9));
            }
            if v >= 18 {
                x = x.with_high_watermark(500);
            }
            x
        };
        let topic = fe::FetchTopic::default().with_partitions(vec![part(0), part(1)]);
        let topic = if v >= 13 {
            topic.with_topic_id(uuid!(2))
        } else {
            topic.with_topic(s("orders").into())
        };
        let mut req = FetchRequest::default()
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(50 << 20)
            .with_isolation_level(1)
            .with_topics(vec![topic])
            .with_unknown_tagged_fields(unk(flex));
        if v >= 7 {
            let forgotten = fe::ForgottenTopic::default().with_partitions(vec![4, 5]);
            let forgotten = if v >= 13 {
                forgotten.with_topic_id(uuid!(3))
            } else {
                forgotten.with_topic(s("old").into())
            };
            req = req
                .with_session_id(12)
                .with_session_epoch(1)
                .with_forgotten_topics_data(vec![forgotten]);
        }
        if v >= 11 {
            req = req.with_rack_id(s("rack-a"));
        }
        if v >= 12 {
            req = req.with_cluster_id(Some(s("cluster-1")));
        }
        if v >= 15 {
            req = req.with_replica_state(
                fe::ReplicaState::default()
                    .with_replica_id(5.into())
                    .with_replica_epoch(7),
            );
        }
        req
    }

    fn list_offsets(v: i16) -> ListOffsetsRequest {
        let flex = v >= 6;
        let mut part = lo::ListOffsetsPartition::default()
            .with_partition_index(0)
            .with_timestamp(-1)
            .with_unknown_tagged_fields(unk(flex));
        if v >= 4 {
            part = part.with_current_leader_epoch(5);
        }
        let topic = lo::ListOffsetsTopic::default()
            .with_name(s("orders").into())
            .with_partitions(vec![part.clone(), part.with_partition_index(1)])
            .with_unknown_tagged_fields(unk(flex));
        let mut req = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![topic])
            .with_unknown_tagged_fields(unk(flex));
        if v >= 2 {
            req = req.with_isolation_level(1);
        }
        if v >= 10 {
            req = req.with_timeout_ms(1000);
        }
        req
    }

    fn metadata(v: i16) -> MetadataRequest {
        let flex = v >= 9;
        let mut topics = vec![md::MetadataRequestTopic::default()
            .with_name(Some(s("orders").into()))
            .with_unknown_tagged_fields(unk(flex))];
        if v >= 10 {
            topics.push(md::MetadataRequestTopic::default().with_topic_id(uuid!(4)));
        }
        let mut req = MetadataRequest::default()
            .with_topics(Some(topics))
            .with_unknown_tagged_fields(unk(flex));
        if v >= 4 {
            req = req.with_allow_auto_topic_creation(false);
        }
        if (8..=10).contains(&v) {
            req = req.with_include_cluster_authorized_operations(true);
        }
        if v >= 8 {
            req = req.with_include_topic_authorized_operations(true);
        }
        req
    }

    fn offset_commit(v: i16) -> OffsetCommitRequest {
        let flex = v >= 8;
        let part = |p, meta| {
            let x = oc::OffsetCommitRequestPartition::default()
                .with_partition_index(p)
                .with_committed_offset(1234)
                .with_committed_metadata(meta)
                .with_unknown_tagged_fields(unk(flex));
            if v >= 6 {
                x.with_committed_leader_epoch(4)
            } else {
                x
            }
        };
        let topic = oc::OffsetCommitRequestTopic::default()
            .with_name(s("orders").into())
            .with_partitions(vec![part(0, Some(s("meta"))), part(1, None)]);
        let mut req = OffsetCommitRequest::default()
            .with_group_id(s("group-1").into())
            .with_generation_id_or_member_epoch(3)
            .with_member_id(s("member-1"))
            .with_topics(vec![topic]);
        if v >= 7 {
            req = req.with_group_instance_id(Some(s("instance-1")));
        }
        if v <= 4 {
            req = req.with_retention_time_ms(60_000);
        }
        req
    }

    fn offset_fetch(v: i16) -> OffsetFetchRequest {
        let flex = v >= 6;
        let mut req = OffsetFetchRequest::default().with_unknown_tagged_fields(unk(flex));
        if v <= 7 {
            let topic = of::OffsetFetchRequestTopic::default()
                .with_name(s("orders").into())
                .with_partition_indexes(vec![0, 1, 2]);
            req = req
                .with_group_id(s("group-1").into())
                .with_topics(Some(vec![topic]));
        } else {
            let topics = of::OffsetFetchRequestTopics::default()
                .with_name(s("orders").into())
                .with_partition_indexes(vec![0, 1]);
            let mut group = of::OffsetFetchRequestGroup::default()
                .with_group_id(s("group-1").into())
                .with_topics(Some(vec![topics]));
            if v >= 9 {
                group = group.with_member_id(Some(s("m"))).with_member_epoch(6);
            }
            let all_topics = of::OffsetFetchRequestGroup::default()
                .with_group_id(s("group-2").into())
                .with_topics(None);
            req = req.with_groups(vec![group, all_topics]);
        }
        if v >= 7 {
            req = req.with_require_stable(true);
        }
        req
    }

    fn find_coordinator(v: i16) -> FindCoordinatorRequest {
        let mut req = FindCoordinatorRequest::default().with_unknown_tagged_fields(unk(v >= 3));
        if v <= 3 {
            req = req.with_key(s("group-1"));
        }
        if v >= 1 {
            req = req.with_key_type(1);
        }
        if v >= 4 {
            req = req.with_coordinator_keys(vec![s("tx-1"), s("tx-2")]);
        }
        req
    }

    fn join_group(v: i16) -> JoinGroupRequest {
        let flex = v >= 6;
        let proto = |name, meta| {
            jg::JoinGroupRequestProtocol::default()
                .with_name(s(name))
                .with_metadata(Bytes::from_static(meta))
                .with_unknown_tagged_fields(unk(flex))
        };
        let mut req = JoinGroupRequest::default()
            .with_group_id(s("group-1").into())
            .with_session_timeout_ms(10_000)
            .with_member_id(s(""))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![
                proto("range", b"\0\x01subscription"),
                proto("sticky", b""),
            ]);
        if v >= 1 {
            req = req.with_rebalance_timeout_ms(30_000);
        }
        if v >= 5 {
            req = req.with_group_instance_id(Some(s("instance-1")));
        }
        if v >= 8 {
            req = req.with_reason(Some(s("rejoin")));
        }
        req
    }

    fn heartbeat(v: i16) -> HeartbeatRequest {
        let req = HeartbeatRequest::default()
            .with_group_id(s("group-1").into())
            .with_generation_id(9)
            .with_member_id(s("member-1"));
        if v >= 3 {
            req.with_group_instance_id(Some(s("instance-1")))
        } else {
            req
        }
    }

    fn leave_group(v: i16) -> LeaveGroupRequest {
        let req = LeaveGroupRequest::default().with_group_id(s("group-1").into());
        if v <= 2 {
            return req.with_member_id(s("member-1"));
        }
        let mut member = lg::MemberIdentity::default()
            .with_member_id(s("member-1"))
            .with_group_instance_id(Some(s("instance-1")))
            .with_unknown_tagged_fields(unk(v >= 4));
        if v >= 5 {
            member = member.with_reason(Some(s("shutdown")));
        }
        req.with_members(vec![member.clone(), member.with_group_instance_id(None)])
    }

    fn sync_group(v: i16) -> SyncGroupRequest {
        let assignment = sg::SyncGroupRequestAssignment::default()
            .with_member_id(s("member-1"))
            .with_assignment(Bytes::from_static(b"\0\x01assignment"));
        let mut req = SyncGroupRequest::default()
            .with_group_id(s("group-1").into())
            .with_generation_id(2)
            .with_member_id(s("member-1"))
            .with_assignments(vec![assignment.clone(), assignment]);
        if v >= 3 {
            req = req.with_group_instance_id(Some(s("instance-1")));
        }
        if v >= 5 {
            req = req
                .with_protocol_type(Some(s("consumer")))
                .with_protocol_name(Some(s("range")));
        }
        req
    }

    fn describe_groups(v: i16) -> DescribeGroupsRequest {
        let req = DescribeGroupsRequest::default().with_groups(vec![
            s("g1").into(),
            s("g2").into(),
            s("").into(),
        ]);
        if v >= 3 {
            req.with_include_authorized_operations(true)
        } else {
            req
        }
    }

    fn list_groups(v: i16) -> ListGroupsRequest {
        let mut req = ListGroupsRequest::default().with_unknown_tagged_fields(unk(v >= 3));
        if v >= 4 {
            req = req.with_states_filter(vec![s("Stable"), s("Empty")]);
        }
        if v >= 5 {
            req = req.with_types_filter(vec![s("classic")]);
        }
        req
    }

    fn api_versions(v: i16) -> ApiVersionsRequest {
        if v >= 3 {
            ApiVersionsRequest::default()
                .with_client_software_name(s("spool-client"))
                .with_client_software_version(s("0.1.0"))
                .with_unknown_tagged_fields(unk(true))
        } else {
            ApiVersionsRequest::default()
        }
    }

    fn create_topics(v: i16) -> CreateTopicsRequest {
        let flex = v >= 5;
        let topic = ct::CreatableTopic::default()
            .with_name(s("orders").into())
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(vec![ct::CreatableReplicaAssignment::default()
                .with_partition_index(0)
                .with_broker_ids(vec![1.into(), 2.into(), 3.into()])
                .with_unknown_tagged_fields(unk(flex))])
            .with_configs(vec![
                ct::CreatableTopicConfig::default()
                    .with_name(s("cleanup.policy"))
                    .with_value(Some(s("compact"))),
                ct::CreatableTopicConfig::default().with_name(s("retention.ms")),
            ]);
        CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(5_000)
            .with_validate_only(true)
            .with_unknown_tagged_fields(unk(flex))
    }

    fn delete_topics(v: i16) -> DeleteTopicsRequest {
        let req = DeleteTopicsRequest::default().with_timeout_ms(5_000);
        if v >= 6 {
            req.with_topics(vec![
                dt::DeleteTopicState::default().with_name(Some(s("orders").into())),
                dt::DeleteTopicState::default().with_topic_id(uuid!(5)),
            ])
        } else {
            req.with_topic_names(vec![s("orders").into(), s("payments").into()])
        }
    }

    fn delete_records(v: i16) -> DeleteRecordsRequest {
        let part = |p| {
            dr::DeleteRecordsPartition::default()
                .with_partition_index(p)
                .with_offset(100)
                .with_unknown_tagged_fields(unk(v >= 2))
        };
        DeleteRecordsRequest::default()
            .with_topics(vec![dr::DeleteRecordsTopic::default()
                .with_name(s("orders").into())
                .with_partitions(vec![part(0), part(1)])])
            .with_timeout_ms(5_000)
    }

    fn init_producer_id(v: i16) -> InitProducerIdRequest {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(Some(s("tx-1").into()))
            .with_transaction_timeout_ms(60_000);
        if v >= 3 {
            req.with_producer_id(5.into()).with_producer_epoch(1)
        } else {
            req
        }
    }

    fn describe_configs(v: i16) -> DescribeConfigsRequest {
        let req = DescribeConfigsRequest::default()
            .with_resources(vec![
                dc::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("orders"))
                    .with_configuration_keys(Some(vec![s("retention.ms")])),
                dc::DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(s("1"))
                    .with_configuration_keys(None),
            ])
            .with_include_synonyms(true);
        if v >= 3 {
            req.with_include_documentation(true)
        } else {
            req
        }
    }

    fn alter_configs(_v: i16) -> AlterConfigsRequest {
        AlterConfigsRequest::default()
            .with_resources(vec![ac::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("orders"))
                .with_configs(vec![
                    ac::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("1000"))),
                    ac::AlterableConfig::default().with_name(s("segment.ms")),
                ])])
            .with_validate_only(true)
    }

    fn create_partitions(_v: i16) -> CreatePartitionsRequest {
        CreatePartitionsRequest::default()
            .with_topics(vec![
                cp::CreatePartitionsTopic::default()
                    .with_name(s("orders").into())
                    .with_count(3)
                    .with_assignments(Some(vec![cp::CreatePartitionsAssignment::default()
                        .with_broker_ids(vec![1.into(), 2.into()])])),
                cp::CreatePartitionsTopic::default()
                    .with_name(s("payments").into())
                    .with_count(6)
                    .with_assignments(None),
            ])
            .with_timeout_ms(5_000)
            .with_validate_only(false)
    }

    fn incremental_alter_configs(_v: i16) -> IncrementalAlterConfigsRequest {
        IncrementalAlterConfigsRequest::default()
            .with_resources(vec![iac::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("orders"))
                .with_configs(vec![
                    iac::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_config_operation(0)
                        .with_value(Some(s("1000"))),
                    iac::AlterableConfig::default()
                        .with_name(s("segment.ms"))
                        .with_config_operation(1),
                ])])
            .with_validate_only(true)
    }

    fn offset_delete(_v: i16) -> OffsetDeleteRequest {
        OffsetDeleteRequest::default()
            .with_group_id(s("group-1").into())
            .with_topics(vec![od::OffsetDeleteRequestTopic::default()
                .with_name(s("orders").into())
                .with_partitions(vec![
                    od::OffsetDeleteRequestPartition::default().with_partition_index(0),
                    od::OffsetDeleteRequestPartition::default().with_partition_index(1),
                ])])
    }

    fn describe_cluster(v: i16) -> DescribeClusterRequest {
        let mut req = DescribeClusterRequest::default()
            .with_include_cluster_authorized_operations(true)
            .with_unknown_tagged_fields(unk(true));
        if v >= 1 {
            req = req.with_endpoint_type(2);
        }
        if v >= 2 {
            req = req.with_include_fenced_brokers(true);
        }
        req
    }

    fn consumer_group_heartbeat(v: i16) -> ConsumerGroupHeartbeatRequest {
        let req = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(s("group-1").into())
            .with_member_id(s("member-1"))
            .with_member_epoch(0)
            .with_instance_id(Some(s("instance-1")))
            .with_rack_id(None)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![s("orders").into()]))
            .with_server_assignor(Some(s("uniform")))
            .with_topic_partitions(Some(vec![cgh::TopicPartitions::default()
                .with_topic_id(uuid!(6))
                .with_partitions(vec![0, 1])]));
        if v >= 1 {
            req.with_subscribed_topic_regex(Some(s("ord.*")))
        } else {
            req
        }
    }

    fn describe_topic_partitions(_v: i16, cursor: bool) -> DescribeTopicPartitionsRequest {
        DescribeTopicPartitionsRequest::default()
            .with_topics(vec![
                dtp::TopicRequest::default().with_name(s("orders").into()),
                dtp::TopicRequest::default().with_name(s("payments").into()),
            ])
            .with_response_partition_limit(2000)
            .with_cursor(cursor.then(|| {
                dtp::Cursor::default()
                    .with_topic_name(s("orders").into())
                    .with_partition_index(3)
            }))
    }

    // ---- hand-built frames for the attack cases ------------------------------------

    /// Header for `key`/`version` with client id "t"; header v2 adds an empty tag section.
    fn header(key: i16, version: i16, v2: bool) -> Vec<u8> {
        let mut b = Vec::new();
        b.put_i16(key);
        b.put_i16(version);
        b.put_i32(1);
        b.put_i16(1);
        b.put_u8(b't');
        if v2 {
            b.put_u8(0);
        }
        b
    }

    fn put_uvarint(b: &mut Vec<u8>, mut v: u32) {
        while v >= 0x80 {
            b.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        b.put_u8(v as u8);
    }

    // ---- tests -----------------------------------------------------------------------

    #[test]
    fn accepts_every_version_of_every_covered_api() {
        let limits = GuardLimits::default();
        let mut frames = 0;
        for case in cases() {
            for v in case.min..=case.max {
                let frame = (case.frame)(v);
                let decoded = (case.decoded_len)(&frame, v);
                assert_eq!(
                    decoded,
                    Some(frame.len()),
                    "kafka-protocol reads {} v{v}",
                    case.name
                );
                // Same end offset as the real decoder: the table matches field for field.
                assert_eq!(
                    walk_request(&frame, &limits),
                    Ok(frame.len()),
                    "{} v{v}",
                    case.name
                );

                let mut padded = frame.clone();
                padded.extend_from_slice(&[0xff; 9]);
                assert_eq!(
                    check_request(&padded, &limits),
                    Ok(()),
                    "{} v{v} + trailer",
                    case.name
                );
                frames += 1;
            }
        }
        assert!(frames >= 180, "only {frames} frames checked");
    }

    #[test]
    fn knows_exactly_what_kafka_protocol_decodes() {
        let cases = cases();
        for case in &cases {
            for v in case.min..=case.max {
                assert!(knows(case.key, v), "{} v{v}", case.name);
                let api = find_api(case.key, v).expect("known");
                let flexible = v >= api.flexible_from;
                assert_eq!(
                    flexible,
                    (case.header_version)(v) == 2,
                    "{} v{v}",
                    case.name
                );
            }
            assert!(!knows(case.key, case.min - 1), "{}", case.name);
            assert!(!knows(case.key, case.max + 1), "{}", case.name);
        }
        for api in APIS {
            assert!(
                cases.iter().any(|c| c.key == api.key),
                "no test for key {}",
                api.key
            );
        }
        assert_eq!(APIS.len(), 29);
    }

    #[test]
    fn every_truncation_is_refused_without_panicking() {
        let limits = GuardLimits::default();
        for case in cases() {
            for v in case.min..=case.max {
                let frame = (case.frame)(v);
                for cut in 0..frame.len() {
                    let prefix = frame.get(..cut).expect("cut < len");
                    assert!(
                        check_request(prefix, &limits).is_err(),
                        "{} v{v} accepted at {cut}/{}",
                        case.name,
                        frame.len()
                    );
                }
            }
        }
    }

    #[test]
    fn metadata_v0_with_54_million_topics_is_refused() {
        let mut f = header(3, 0, false);
        let at = f.len();
        f.put_i32(54_000_000);
        f.extend_from_slice(&[0, 1, b'a', 0, 1, b'b']);
        assert_eq!(
            check_request(&f, &GuardLimits::default()),
            Err(GuardError::CountExceedsBytes {
                field: "Topics",
                count: 54_000_000,
                remaining: f.len() - at - 4,
            })
        );
    }

    #[test]
    fn array_count_is_weighed_by_minimum_element_size() {
        // Metadata v10 topic: 16-byte id + 1-byte compact name + 1-byte tag count.
        let mut f = header(3, 10, true);
        put_uvarint(&mut f, 3 + 1);
        f.extend_from_slice(&[0; 40]);
        assert_eq!(
            check_request(&f, &GuardLimits::default()),
            Err(GuardError::CountExceedsBytes {
                field: "Topics",
                count: 3,
                remaining: 40,
            })
        );
        // Compact count near u32::MAX.
        let mut f = header(3, 12, true);
        put_uvarint(&mut f, u32::MAX);
        f.extend_from_slice(&[0; 8]);
        assert!(matches!(
            check_request(&f, &GuardLimits::default()),
            Err(GuardError::CountExceedsBytes {
                field: "Topics",
                ..
            })
        ));
    }

    #[test]
    fn null_arrays_pass_and_negative_ones_do_not() {
        let mut f = header(3, 1, false);
        f.put_i32(-1);
        assert_eq!(check_request(&f, &GuardLimits::default()), Ok(()));

        let mut f = header(3, 1, false);
        let at = f.len();
        f.put_i32(-2);
        assert_eq!(
            check_request(&f, &GuardLimits::default()),
            Err(GuardError::NegativeLength {
                field: "Topics",
                len: -2,
                at
            })
        );
    }

    #[test]
    fn header_tag_flood_is_refused() {
        let mut f = header(18, 3, false);
        let at = f.len();
        put_uvarint(&mut f, 20_000_000);
        f.extend_from_slice(&[0; 16]);
        assert_eq!(
            check_request(&f, &GuardLimits::default()),
            Err(GuardError::TooManyTaggedFields {
                count: 20_000_000,
                max: 64,
                at
            })
        );
    }

    #[test]
    fn tag_limits_apply_per_section() {
        let limits = GuardLimits {
            max_tagged_fields: 2,
            ..GuardLimits::default()
        };
        let mut ok = header(18, 3, false);
        ok.extend_from_slice(&[2, 1, 0, 2, 1, 0xaa]); // two header tags
        ok.extend_from_slice(&[1, 1, 0]); // empty name, empty version, no tags
        assert_eq!(check_request(&ok, &limits), Ok(()));

        let mut three = header(18, 3, false);
        three.extend_from_slice(&[3, 1, 0, 2, 0, 3, 0, 1, 1, 0]);
        assert!(matches!(
            check_request(&three, &limits),
            Err(GuardError::TooManyTaggedFields {
                count: 3,
                max: 2,
                ..
            })
        ));

        // A tag claiming more bytes than remain.
        let mut big = header(18, 3, false);
        big.extend_from_slice(&[1, 9]);
        put_uvarint(&mut big, 1 << 30);
        big.extend_from_slice(&[0; 4]);
        assert!(matches!(
            check_request(&big, &limits),
            Err(GuardError::CountExceedsBytes {
                field: "tagged field",
                ..
            })
        ));
    }

    #[test]
    fn negative_string_lengths_are_refused() {
        // Header client id.
        let mut f = Vec::new();
        f.put_i16(17);
        f.put_i16(1);
        f.put_i32(1);
        f.put_i16(-7);
        f.extend_from_slice(&[0; 8]);
        assert_eq!(
            check_request(&f, &GuardLimits::default()),
            Err(GuardError::NegativeLength {
                field: "ClientId",
                len: -7,
                at: 8
            })
        );
        // Body string.
        let mut f = header(17, 1, false);
        let at = f.len();
        f.put_i16(-2);
        assert_eq!(
            check_request(&f, &GuardLimits::default()),
            Err(GuardError::NegativeLength {
                field: "Mechanism",
                len: -2,
                at
            })
        );
        // Bytes (Produce v3 records).
        let mut f = header(0, 3, false);
        f.put_i16(-1); // transactional id
        f.put_i16(1);
        f.put_i32(1000);
        f.put_i32(1); // one topic
        f.put_i16(1);
        f.put_u8(b't');
        f.put_i32(1); // one partition
        f.put_i32(0);
        let at = f.len();
        f.put_i32(i32::MIN);
        assert_eq!(
            check_request(&f, &GuardLimits::default()),
            Err(GuardError::NegativeLength {
                field: "Records",
                len: i64::from(i32::MIN),
                at
            })
        );
    }

    #[test]
    fn oversized_records_are_refused() {
        let mut f = header(0, 9, true);
        f.put_u8(0); // null transactional id
        f.put_i16(1);
        f.put_i32(1000);
        put_uvarint(&mut f, 2); // one topic
        f.extend_from_slice(&[2, b't']);
        put_uvarint(&mut f, 2); // one partition
        f.put_i32(0);
        put_uvarint(&mut f, 1_000_000_001);
        f.extend_from_slice(&[0; 61]);
        assert_eq!(
            check_request(&f, &GuardLimits::default()),
            Err(GuardError::CountExceedsBytes {
                field: "Records",
                count: 1_000_000_000,
                remaining: 61,
            })
        );
    }

    #[test]
    fn malformed_varints_are_refused() {
        let mut f = header(18, 3, false);
        let at = f.len();
        f.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]);
        assert_eq!(
            check_request(&f, &GuardLimits::default()),
            Err(GuardError::BadVarint { at })
        );

        // Five bytes, but more than 32 bits of value.
        let mut f = header(18, 3, false);
        f.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x1f]);
        assert_eq!(
            check_request(&f, &GuardLimits::default()),
            Err(GuardError::BadVarint { at })
        );

        // u32::MAX itself is well formed; it is the length that is refused.
        let mut f = header(18, 3, true);
        f.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0]);
        assert!(matches!(
            check_request(&f, &GuardLimits::default()),
            Err(GuardError::CountExceedsBytes {
                field: "ClientSoftwareName",
                ..
            })
        ));

        // Ends mid-varint.
        let mut f = header(18, 3, false);
        f.extend_from_slice(&[0x80, 0x80]);
        assert_eq!(
            check_request(&f, &GuardLimits::default()),
            Err(GuardError::Truncated { at: at + 2 })
        );
    }

    #[test]
    fn unknown_apis_and_versions_are_refused() {
        for (key, version) in [
            (9999, 0),
            (-1, 0),
            (0, 2),
            (0, 14),
            (1, 3),
            (4, 0),
            (18, -1),
        ] {
            let f = header(key, version, false);
            assert_eq!(
                check_request(&f, &GuardLimits::default()),
                Err(GuardError::UnsupportedApi {
                    api_key: key,
                    api_version: version
                }),
            );
            assert!(!knows(key, version));
        }
        assert_eq!(
            check_request(&[0, 3, 0], &GuardLimits::default()),
            Err(GuardError::Truncated { at: 2 })
        );
    }

    #[test]
    fn element_budget_spans_the_whole_request() {
        let limits = GuardLimits {
            max_array_elements: 10,
            ..GuardLimits::default()
        };
        let topics = |n: i32| {
            let mut f = header(3, 1, false);
            f.put_i32(n);
            for _ in 0..n {
                f.extend_from_slice(&[0, 1, b'x']);
            }
            f
        };
        assert_eq!(check_request(&topics(10), &limits), Ok(()));
        assert_eq!(
            check_request(&topics(11), &limits),
            Err(GuardError::TooManyElements {
                declared: 11,
                max: 10
            })
        );
        // Nested arrays add up: 2 topics x 5 partitions + 2 = 12.
        let mut f = header(21, 0, false);
        f.put_i32(2);
        for _ in 0..2 {
            f.extend_from_slice(&[0, 1, b't']);
            f.put_i32(5);
            f.extend_from_slice(&[0; 5 * 12]);
        }
        f.put_i32(1000);
        assert!(matches!(
            check_request(&f, &limits),
            Err(GuardError::TooManyElements { max: 10, .. })
        ));
        assert_eq!(check_request(&f, &GuardLimits::default()), Ok(()));
    }

    #[test]
    fn known_fetch_tags_must_declare_their_true_size() {
        let base = FetchRequest::default()
            .with_max_wait_ms(1)
            .with_topics(vec![]);
        let mut f = frame_of(&base, 12);
        // The body ends with its (empty) tag section; replace it with tag 0, the cluster id.
        assert_eq!(f.pop(), Some(0));
        let lie = [&f[..], &[1, 0, 0, 3, b'a', b'b']].concat();
        assert_eq!(
            check_request(&lie, &GuardLimits::default()),
            Err(GuardError::TaggedFieldSizeMismatch {
                tag: 0,
                declared: 0,
                actual: 3
            })
        );
        let honest = [&f[..], &[1, 0, 3, 3, b'a', b'b']].concat();
        assert_eq!(check_request(&honest, &GuardLimits::default()), Ok(()));
        assert_eq!(decoded_len::<FetchRequest>(&honest, 12), Some(honest.len()));

        // Tag 1 (replica state) is opaque before v15, where kafka-protocol refuses it.
        let early = [&f[..], &[1, 1, 2, 0, 0]].concat();
        assert_eq!(check_request(&early, &GuardLimits::default()), Ok(()));
    }

    /// Deterministic xorshift so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn mutated_frames_never_panic_and_agree_with_the_decoder() {
        let limits = GuardLimits::default();
        let mut rng = Rng(0x5eed_cafe_f00d_d00d);
        let (mut accepted, mut agreed) = (0, 0);
        for case in cases() {
            for v in case.min..=case.max {
                let frame = (case.frame)(v);
                for _ in 0..300 {
                    let mut m = frame.clone();
                    for _ in 0..1 + rng.below(3) {
                        let i = rng.below(m.len());
                        let byte = match rng.below(4) {
                            0 => 0xff,
                            1 => 0x00,
                            2 => 0x80,
                            _ => rng.next() as u8,
                        };
                        if let Some(b) = m.get_mut(i) {
                            *b = byte;
                        }
                    }
                    if rng.below(8) == 0 {
                        m.truncate(rng.below(m.len()));
                    }
                    let Ok(end) = walk_request(&m, &limits) else {
                        continue;
                    };
                    accepted += 1;
                    // Header bytes may now name another API; only compare like with like.
                    if m.get(..4) != frame.get(..4) {
                        continue;
                    }
                    if let Some(kp_end) = (case.decoded_len)(&m, v) {
                        assert_eq!(end, kp_end, "{} v{v}: {m:?}", case.name);
                        agreed += 1;
                    }
                }
            }
        }
        assert!(
            accepted > 1000 && agreed > 1000,
            "{accepted} accepted, {agreed} agreed"
        );
    }
}
