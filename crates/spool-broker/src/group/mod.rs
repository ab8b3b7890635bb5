//! The classic consumer-group coordinator (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup) as a pure state machine: requests and timer ticks in,
//! responses out, no I/O and no clock.
//!
//! ```text
//! network layer                         group::Group (one per group id)
//!   JoinGroup  --JoinRequest{request_id}-->  join(req, now)  --> Vec<Action>
//!   SyncGroup  --SyncRequest{request_id}-->  sync(req, now)  --> Vec<Action>
//!   Heartbeat  --HeartbeatRequest------->  heartbeat(req, now) -> ErrorCode
//!   LeaveGroup --Vec<LeaveMember>------->  leave(members, now) -> LeaveOutcome
//!   timer at next_deadline() ----------->  tick(now)       --> Vec<Action>
//!   Action::Join/Sync{request_id, response} -> the connection parked on request_id
//! ```
//! JoinGroup and SyncGroup answers are delayed until the rebalance moves on,
//! so they come back as [`Action`]s naming the request they answer. Every
//! request id handed in is answered exactly once.
//!
//! The KIP-848 consumer protocol (ConsumerGroupHeartbeat) lives in [`consumer_group`], with
//! its server-side assignors in [`assignor`].
//!
//! Non-goals for now: persistence of group metadata, JoinGroup v9 `skip_assignment`,
//! classic-to-consumer upgrades of groups with members.

pub(crate) mod assignor;
pub(crate) mod consumer_group;
mod coordinator;
pub(crate) mod manager;
mod member;
pub(crate) mod offsets;
mod types;

#[cfg(test)]
mod tests;

pub use coordinator::Group;
pub use member::Member;
pub use types::{
    Action, ErrorCode, GroupConfig, GroupState, HeartbeatRequest, JoinMember, JoinRequest,
    JoinResponse, LeaveMember, LeaveMemberResult, LeaveOutcome, RequestId, SyncRequest,
    SyncResponse,
};
