//! One member of a classic group.

use bytes::Bytes;

use super::types::RequestId;

/// A member of a classic group, as the coordinator tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) protocol_type: String,
    /// Supported protocols in the member's preference order.
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
    /// The parked JoinGroup, if any ("awaiting join").
    pub(crate) pending_join: Option<RequestId>,
    /// The parked SyncGroup, if any ("awaiting sync").
    pub(crate) pending_sync: Option<RequestId>,
    /// Joined but not yet through a completed join phase.
    pub(crate) is_new: bool,
    /// When the member's heartbeat timer fires; `None` once fired while the
    /// member was awaiting a rebalance (rescheduled when the rebalance moves on).
    pub(crate) heartbeat_deadline: Option<i64>,
    /// Time of the last heartbeat (or join).
    pub(crate) last_heartbeat_ms: i64,
}

impl Member {
    /// The member id.
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The `group.instance.id` of a static member.
    pub fn group_instance_id(&self) -> Option<&str> {
        self.group_instance_id.as_deref()
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The client's address.
    pub fn client_host(&self) -> &str {
        &self.client_host
    }

    /// Session timeout.
    pub fn session_timeout_ms(&self) -> i32 {
        self.session_timeout_ms
    }

    /// Rebalance timeout.
    pub fn rebalance_timeout_ms(&self) -> i32 {
        self.rebalance_timeout_ms
    }

    /// Supported protocols, in preference order.
    pub fn protocols(&self) -> &[(String, Bytes)] {
        &self.protocols
    }

    /// The member's current assignment.
    pub fn assignment(&self) -> &Bytes {
        &self.assignment
    }

    /// Time of the last heartbeat (or join).
    pub fn last_heartbeat_ms(&self) -> i64 {
        self.last_heartbeat_ms
    }

    /// Whether a JoinGroup of this member is parked.
    pub fn is_awaiting_join(&self) -> bool {
        self.pending_join.is_some()
    }

    /// Whether a SyncGroup of this member is parked.
    pub fn is_awaiting_sync(&self) -> bool {
        self.pending_sync.is_some()
    }

    /// Kafka's `hasSatisfiedHeartbeat`: a member parked in a rebalance needs no
    /// heartbeat, unless it is new (new members may expire while awaiting join).
    pub(crate) fn has_satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.is_awaiting_join() || self.is_awaiting_sync())
    }

    /// Whether the member supports `name`.
    pub(crate) fn supports(&self, name: &str) -> bool {
        self.protocols.iter().any(|(n, _)| n == name)
    }

    /// Same protocol names and metadata, in the same order.
    pub(crate) fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// The member's metadata for `protocol` (empty if it does not support it).
    pub(crate) fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// The member's first-listed protocol among `candidates`.
    pub(crate) fn vote<'a>(&'a self, candidates: &[&str]) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .find(|n| candidates.contains(n))
    }
}
