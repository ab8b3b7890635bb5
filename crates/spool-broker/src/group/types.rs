//! Plain input and output types of the classic group coordinator.
//!
//! The network layer maps kafka-protocol request structs to these and the
//! actions back to response structs; nothing here knows about the wire.

use bytes::Bytes;

/// Identifies one delayed request (JoinGroup or SyncGroup) so the network
/// layer can route the eventual response to the connection that waits for it.
///
/// The caller chooses the values; the coordinator only echoes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Errors the coordinator answers with, carrying Kafka's numeric codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No error (0).
    None,
    /// COORDINATOR_NOT_AVAILABLE (15): only for a group marked dead.
    CoordinatorNotAvailable,
    /// ILLEGAL_GENERATION (22): the request names another generation.
    IllegalGeneration,
    /// INCONSISTENT_GROUP_PROTOCOL (23): protocol type or protocols do not match the group.
    InconsistentGroupProtocol,
    /// UNKNOWN_MEMBER_ID (25): the member id is not (or no longer) in the group.
    UnknownMemberId,
    /// INVALID_SESSION_TIMEOUT (26): outside the configured bounds.
    InvalidSessionTimeout,
    /// REBALANCE_IN_PROGRESS (27): the member must rejoin.
    RebalanceInProgress,
    /// MEMBER_ID_REQUIRED (79): rejoin with the member id carried in the response.
    MemberIdRequired,
    /// GROUP_MAX_SIZE_REACHED (81): the group is full.
    GroupMaxSizeReached,
    /// FENCED_INSTANCE_ID (82): a static member's id was replaced by a newer one.
    FencedInstanceId,
}

impl ErrorCode {
    /// Kafka's numeric error code.
    pub fn code(self) -> i16 {
        match self {
            ErrorCode::None => 0,
            ErrorCode::CoordinatorNotAvailable => 15,
            ErrorCode::IllegalGeneration => 22,
            ErrorCode::InconsistentGroupProtocol => 23,
            ErrorCode::UnknownMemberId => 25,
            ErrorCode::InvalidSessionTimeout => 26,
            ErrorCode::RebalanceInProgress => 27,
            ErrorCode::MemberIdRequired => 79,
            ErrorCode::GroupMaxSizeReached => 81,
            ErrorCode::FencedInstanceId => 82,
        }
    }
}

/// Coordinator settings (Kafka broker configs of the same meaning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms` (default 6000).
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (default 1800000).
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms` (default 3000): how long the first
    /// rebalance of an empty group waits for more members.
    pub initial_rebalance_delay_ms: i32,
    /// How long a new member's parked JoinGroup may wait before it is dropped
    /// (Kafka's `classicGroupNewMemberJoinTimeoutMs`, 300000).
    pub new_member_join_timeout_ms: i32,
    /// `group.max.size`; `None` means unlimited.
    pub max_size: Option<usize>,
    /// `group.consumer.session.timeout.ms` (default 45000): how long a KIP-848 (consumer
    /// protocol) member lives without a heartbeat.
    pub consumer_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms` (default 5000): the interval KIP-848 members are
    /// told to heartbeat at.
    pub consumer_heartbeat_interval_ms: i32,
    /// Minimum time between two re-resolutions of a KIP-848 group's subscription regexes
    /// against the topic list (default 10000, Kafka's fixed `REGEX_BATCH_REFRESH_INTERVAL_MS`;
    /// not a Kafka config, so no flag: tests lower it).
    pub consumer_regex_refresh_interval_ms: i32,
}

impl GroupConfig {
    /// Checks the KIP-848 timeouts the way Kafka's `GroupCoordinatorConfig` does (both at
    /// least 1, the heartbeat interval below the session timeout), with its messages.
    pub fn validate(&self) -> Result<(), String> {
        if self.consumer_session_timeout_ms < 1 {
            return Err("group.consumer.session.timeout.ms must be at least 1".into());
        }
        if self.consumer_heartbeat_interval_ms < 1 {
            return Err("group.consumer.heartbeat.interval.ms must be at least 1".into());
        }
        if self.consumer_heartbeat_interval_ms >= self.consumer_session_timeout_ms {
            return Err("group.consumer.heartbeat.interval.ms must be less than \
                 group.consumer.session.timeout.ms"
                .into());
        }
        Ok(())
    }
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            new_member_join_timeout_ms: 300_000,
            max_size: None,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_regex_refresh_interval_ms: 10_000,
        }
    }
}

/// A JoinGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// Echoed in the [`Action::Join`] that answers this request.
    pub request_id: RequestId,
    /// Empty for a member that does not know its id yet.
    pub member_id: String,
    /// `group.instance.id` of a static member (JoinGroup v5+).
    pub group_instance_id: Option<String>,
    /// The client id from the request header.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// E.g. "consumer".
    pub protocol_type: String,
    /// Supported protocols in preference order: name and metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout; a negative value (JoinGroup v0) means "use the session timeout".
    pub rebalance_timeout_ms: i32,
    /// JoinGroup v4+: an unknown member first gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
    /// Free-text reason (v8+), informational only.
    pub reason: Option<String>,
}

/// A SyncGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    /// Echoed in the [`Action::Sync`] that answers this request.
    pub request_id: RequestId,
    /// The member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// The generation the member believes it is in.
    pub generation_id: i32,
    /// v5+: checked against the group's when present.
    pub protocol_type: Option<String>,
    /// v5+: checked against the group's when present.
    pub protocol_name: Option<String>,
    /// Only the leader sends assignments: member id and assignment bytes.
    pub assignments: Vec<(String, Bytes)>,
}

/// A Heartbeat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRequest {
    /// The member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// The generation the member believes it is in.
    pub generation_id: i32,
}

/// One member of a (batched, v3+) LeaveGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveMember {
    /// The member id; empty to remove a static member by instance id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
}

/// Per-member result of a LeaveGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveMemberResult {
    /// As in the request.
    pub member_id: String,
    /// As in the request.
    pub group_instance_id: Option<String>,
    /// The outcome for this member.
    pub error: ErrorCode,
}

/// Result of a LeaveGroup request: answered at once, and may complete a rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveOutcome {
    /// Top-level error (only [`ErrorCode::CoordinatorNotAvailable`] for a dead group).
    pub error: ErrorCode,
    /// One result per requested member, in request order.
    pub members: Vec<LeaveMemberResult>,
    /// Delayed responses released by the leave.
    pub actions: Vec<Action>,
}

/// One member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinMember {
    /// The member id.
    pub member_id: String,
    /// The member's `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// The member's metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// A JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    /// The outcome.
    pub error: ErrorCode,
    /// The generation (-1 on error).
    pub generation_id: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The chosen protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id (empty if none).
    pub leader: String,
    /// The member id assigned to the requester (the new one for MEMBER_ID_REQUIRED).
    pub member_id: String,
    /// All members with their metadata; only non-empty for the leader.
    pub members: Vec<JoinMember>,
}

/// A SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    /// The outcome.
    pub error: ErrorCode,
    /// The group's protocol type (none on error).
    pub protocol_type: Option<String>,
    /// The chosen protocol (none on error).
    pub protocol_name: Option<String>,
    /// The member's assignment (empty on error).
    pub assignment: Bytes,
}

/// Something the network layer must do: send a (possibly delayed) response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer the JoinGroup request `request_id`.
    Join {
        /// The request being answered.
        request_id: RequestId,
        /// The response.
        response: JoinResponse,
    },
    /// Answer the SyncGroup request `request_id`.
    Sync {
        /// The request being answered.
        request_id: RequestId,
        /// The response.
        response: SyncResponse,
    },
}

/// The classic group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Join done; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assignment handed out; members heartbeat.
    Stable,
    /// Unloaded or deleted; every request is refused.
    Dead,
}

impl JoinResponse {
    /// An error response carrying `member_id`.
    pub(crate) fn error(member_id: &str, error: ErrorCode) -> Self {
        JoinResponse {
            error,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_owned(),
            members: Vec::new(),
        }
    }
}

impl SyncResponse {
    /// An error response.
    pub(crate) fn error(error: ErrorCode) -> Self {
        SyncResponse {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}
