//! Unit tests driving the state machine directly, one per transition and per error answer.

use bytes::Bytes;

use super::*;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;
const DELAY: i32 = 1_000;

fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: DELAY,
        ..GroupConfig::default()
    }
}

fn group() -> Group {
    Group::new("g", config(), 0xabc)
}

fn protos(names: &[&str]) -> Vec<(String, Bytes)> {
    names
        .iter()
        .map(|n| (n.to_string(), Bytes::from(format!("meta-{n}"))))
        .collect()
}

fn join_req(rid: u64, member_id: &str, names: &[&str]) -> JoinRequest {
    JoinRequest {
        request_id: RequestId(rid),
        member_id: member_id.to_owned(),
        group_instance_id: None,
        client_id: "client".to_owned(),
        client_host: "/127.0.0.1".to_owned(),
        protocol_type: "consumer".to_owned(),
        protocols: protos(names),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        require_known_member_id: false,
        reason: None,
    }
}

fn static_join(rid: u64, member_id: &str, instance: &str) -> JoinRequest {
    JoinRequest {
        group_instance_id: Some(instance.to_owned()),
        ..join_req(rid, member_id, &["range"])
    }
}

fn sync_req(
    rid: u64,
    member_id: &str,
    generation: i32,
    assignments: &[(&str, &str)],
) -> SyncRequest {
    SyncRequest {
        request_id: RequestId(rid),
        member_id: member_id.to_owned(),
        group_instance_id: None,
        generation_id: generation,
        protocol_type: Some("consumer".to_owned()),
        protocol_name: None,
        assignments: assignments
            .iter()
            .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
            .collect(),
    }
}

fn hb(member_id: &str, generation: i32) -> HeartbeatRequest {
    HeartbeatRequest {
        member_id: member_id.to_owned(),
        group_instance_id: None,
        generation_id: generation,
    }
}

fn leave_of(member_id: &str) -> Vec<LeaveMember> {
    vec![LeaveMember {
        member_id: member_id.to_owned(),
        group_instance_id: None,
    }]
}

/// The join response for `rid` among `actions` (panics in tests only).
fn join_resp(actions: &[Action], rid: u64) -> JoinResponse {
    let found = actions.iter().find_map(|a| match a {
        Action::Join {
            request_id,
            response,
        } if *request_id == RequestId(rid) => Some(response.clone()),
        _ => None,
    });
    found.unwrap_or_else(|| panic!("no join response for {rid} in {actions:?}"))
}

fn sync_resp(actions: &[Action], rid: u64) -> SyncResponse {
    let found = actions.iter().find_map(|a| match a {
        Action::Sync {
            request_id,
            response,
        } if *request_id == RequestId(rid) => Some(response.clone()),
        _ => None,
    });
    found.unwrap_or_else(|| panic!("no sync response for {rid} in {actions:?}"))
}

/// Runs the initial rebalance delay out (extended once by later joiners).
fn initial(g: &mut Group) -> Vec<Action> {
    let mut out = g.tick(DELAY as i64);
    out.extend(g.tick(2 * DELAY as i64));
    out
}

/// Two members join an empty group; returns (group, leader id, follower id) at generation 1, CompletingRebalance.
fn two_joined() -> (Group, String, String) {
    let mut g = group();
    let a = g.join(join_req(1, "", &["range"]), 0);
    assert!(a.is_empty(), "parked during the initial delay");
    let b = g.join(join_req(2, "", &["range"]), 100);
    assert!(b.is_empty());
    let actions = initial(&mut g);
    let ra = join_resp(&actions, 1);
    let rb = join_resp(&actions, 2);
    (g, ra.member_id, rb.member_id)
}

/// Two members in a Stable group at generation 1, at time 5000.
fn stable_two() -> (Group, String, String) {
    let (mut g, leader, follower) = two_joined();
    g.sync(sync_req(10, &follower, 1, &[]), 4_000);
    let out = g.sync(
        sync_req(11, &leader, 1, &[(&leader, "A"), (&follower, "B")]),
        5_000,
    );
    assert_eq!(out.len(), 2);
    assert_eq!(g.state(), GroupState::Stable);
    (g, leader, follower)
}

#[test]
fn error_codes_are_kafkas() {
    let codes = [
        (ErrorCode::None, 0),
        (ErrorCode::CoordinatorNotAvailable, 15),
        (ErrorCode::IllegalGeneration, 22),
        (ErrorCode::InconsistentGroupProtocol, 23),
        (ErrorCode::UnknownMemberId, 25),
        (ErrorCode::InvalidSessionTimeout, 26),
        (ErrorCode::RebalanceInProgress, 27),
        (ErrorCode::MemberIdRequired, 79),
        (ErrorCode::GroupMaxSizeReached, 81),
        (ErrorCode::FencedInstanceId, 82),
    ];
    for (error, code) in codes {
        assert_eq!(error.code(), code, "{error:?}");
    }
}

#[test]
fn two_members_join_same_generation_leader_gets_member_list() {
    let mut g = group();
    assert!(g.join(join_req(1, "", &["range"]), 0).is_empty());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert!(g.join(join_req(2, "", &["range"]), 100).is_empty());
    assert!(
        g.tick(DELAY as i64 - 1).is_empty(),
        "initial delay not over"
    );
    // Kafka's InitialDelayedJoin: a member added during the delay extends it once more.
    assert!(g.tick(DELAY as i64).is_empty());
    let actions = g.tick(2 * DELAY as i64);
    assert_eq!(actions.len(), 2);
    let (ra, rb) = (join_resp(&actions, 1), join_resp(&actions, 2));
    assert_eq!((ra.error, rb.error), (ErrorCode::None, ErrorCode::None));
    assert_eq!((ra.generation_id, rb.generation_id), (1, 1));
    assert_ne!(ra.member_id, rb.member_id);
    assert_eq!(ra.leader, ra.member_id, "first member leads");
    assert_eq!(rb.leader, ra.member_id);
    assert_eq!(ra.protocol_name.as_deref(), Some("range"));
    assert_eq!(ra.protocol_type.as_deref(), Some("consumer"));
    let listed: Vec<_> = ra.members.iter().map(|m| m.member_id.clone()).collect();
    assert_eq!(listed, vec![ra.member_id.clone(), rb.member_id.clone()]);
    assert_eq!(ra.members[0].metadata, Bytes::from("meta-range"));
    assert!(rb.members.is_empty(), "followers get no member list");
    assert_eq!(g.state(), GroupState::CompletingRebalance);
}

#[test]
fn initial_delay_is_extended_by_new_members_up_to_the_rebalance_timeout() {
    let mut g = group();
    g.join(join_req(1, "", &["range"]), 0);
    g.join(join_req(2, "", &["range"]), 1_000); // during the delay: extends it
    assert!(g.tick(DELAY as i64).is_empty());
    assert_eq!(g.next_deadline(), Some(2 * DELAY as i64));
    assert_eq!(g.tick(2 * DELAY as i64).len(), 2);
}

#[test]
fn zero_initial_delay_completes_at_once() {
    let cfg = GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    };
    let mut g = Group::new("g", cfg, 1);
    let out = g.join(join_req(1, "", &["range"]), 0);
    let r = join_resp(&out, 1);
    assert_eq!((r.error, r.generation_id), (ErrorCode::None, 1));
    assert_eq!(g.state(), GroupState::CompletingRebalance);
}

#[test]
fn leader_sync_propagates_assignments_and_followers_wait() {
    let (mut g, leader, follower) = two_joined();
    assert!(
        g.sync(sync_req(10, &follower, 1, &[]), 4_000).is_empty(),
        "follower waits for the leader"
    );
    let out = g.sync(
        sync_req(11, &leader, 1, &[(&leader, "A"), (&follower, "B")]),
        5_000,
    );
    let (sl, sf) = (sync_resp(&out, 11), sync_resp(&out, 10));
    assert_eq!((sl.error, sf.error), (ErrorCode::None, ErrorCode::None));
    assert_eq!(sl.assignment, Bytes::from("A"));
    assert_eq!(sf.assignment, Bytes::from("B"));
    assert_eq!(sf.protocol_name.as_deref(), Some("range"));
    assert_eq!(g.state(), GroupState::Stable);
    // A late sync in Stable gets the stored assignment at once.
    let again = g.sync(sync_req(12, &follower, 1, &[]), 6_000);
    assert_eq!(sync_resp(&again, 12).assignment, Bytes::from("B"));
}

#[test]
fn heartbeat_ok_in_stable_and_keeps_the_session_alive() {
    let (mut g, leader, follower) = stable_two();
    for t in [10_000, 14_000, 18_000, 22_000] {
        assert_eq!(g.heartbeat(&hb(&leader, 1), t), ErrorCode::None);
        assert_eq!(g.heartbeat(&hb(&follower, 1), t), ErrorCode::None);
        assert!(g.tick(t + 1).is_empty());
    }
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(g.members().count(), 2);
}

#[test]
fn heartbeat_ok_in_completing_rebalance() {
    let (mut g, _leader, follower) = two_joined();
    assert_eq!(g.heartbeat(&hb(&follower, 1), 4_000), ErrorCode::None);
}

#[test]
fn third_member_join_triggers_rebalance_and_rejoins_complete_it() {
    let (mut g, leader, follower) = stable_two();
    assert!(g.join(join_req(20, "", &["range"]), 6_000).is_empty());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&hb(&leader, 1), 6_100),
        ErrorCode::RebalanceInProgress
    );
    assert_eq!(
        g.heartbeat(&hb(&follower, 1), 6_100),
        ErrorCode::RebalanceInProgress
    );
    let s = g.sync(sync_req(21, &follower, 1, &[]), 6_150);
    assert_eq!(sync_resp(&s, 21).error, ErrorCode::RebalanceInProgress);
    assert!(g.join(join_req(22, &leader, &["range"]), 6_200).is_empty());
    let out = g.join(join_req(23, &follower, &["range"]), 6_300);
    assert_eq!(out.len(), 3, "all rejoined: every parked join answered");
    let (rl, rf, rn) = (
        join_resp(&out, 22),
        join_resp(&out, 23),
        join_resp(&out, 20),
    );
    assert_eq!(
        (rl.generation_id, rf.generation_id, rn.generation_id),
        (2, 2, 2)
    );
    assert_eq!(rl.leader, leader, "old leader kept");
    assert_eq!(rl.members.len(), 3);
    assert!(rn.members.is_empty());
    assert_eq!(g.state(), GroupState::CompletingRebalance);
}

#[test]
fn join_during_completing_rebalance_fails_parked_syncs() {
    let (mut g, _leader, follower) = two_joined();
    assert!(g.sync(sync_req(10, &follower, 1, &[]), 4_000).is_empty());
    let out = g.join(join_req(20, "", &["range"]), 4_500);
    assert_eq!(sync_resp(&out, 10).error, ErrorCode::RebalanceInProgress);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn follower_rejoin_with_same_metadata_in_completing_rebalance_gets_current_generation() {
    let (mut g, leader, follower) = two_joined();
    let out = g.join(join_req(30, &follower, &["range"]), 4_000);
    let r = join_resp(&out, 30);
    assert_eq!(
        (r.error, r.generation_id, r.leader.as_str()),
        (ErrorCode::None, 1, leader.as_str())
    );
    assert_eq!(g.state(), GroupState::CompletingRebalance);
}

#[test]
fn leader_rejoin_in_stable_forces_rebalance() {
    let (mut g, leader, _follower) = stable_two();
    assert!(g.join(join_req(30, &leader, &["range"]), 6_000).is_empty());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn member_leave_triggers_rebalance() {
    let (mut g, leader, follower) = stable_two();
    let outcome = g.leave(leave_of(&follower), 6_000);
    assert_eq!(outcome.error, ErrorCode::None);
    assert_eq!(outcome.members[0].error, ErrorCode::None);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert!(g.member(&follower).is_none());
    let out = g.join(join_req(30, &leader, &["range"]), 6_100);
    let r = join_resp(&out, 30);
    assert_eq!((r.generation_id, r.members.len()), (2, 1));
}

#[test]
fn last_member_leaving_empties_the_group() {
    let (mut g, leader, follower) = stable_two();
    let outcome = g.leave(
        vec![
            LeaveMember {
                member_id: leader.clone(),
                group_instance_id: None,
            },
            LeaveMember {
                member_id: follower.clone(),
                group_instance_id: None,
            },
        ],
        6_000,
    );
    assert!(outcome.members.iter().all(|m| m.error == ErrorCode::None));
    assert_eq!(g.state(), GroupState::Empty);
    // Kafka's initNextGeneration bumps the generation when the group empties.
    assert_eq!(g.generation_id(), 2);
    assert_eq!(g.protocol_name(), None);
    assert_eq!(g.leader(), None);
}

#[test]
fn session_expiry_via_tick_triggers_rebalance() {
    let (mut g, leader, follower) = stable_two();
    // Session deadlines were reset at 5000 when the syncs were answered.
    assert_eq!(g.heartbeat(&hb(&leader, 1), 14_000), ErrorCode::None);
    assert!(g.tick(14_999).is_empty());
    let _ = g.tick(15_000);
    assert!(g.member(&follower).is_none(), "follower expired");
    assert!(g.member(&leader).is_some());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    let out = g.join(join_req(30, &leader, &["range"]), 15_100);
    assert_eq!(join_resp(&out, 30).generation_id, 2);
}

#[test]
fn members_parked_in_a_rebalance_do_not_expire() {
    let (mut g, leader, follower) = stable_two();
    assert!(g.join(join_req(30, &leader, &["range"]), 6_000).is_empty());
    // Session timeout passes but the leader is parked in the join: kept.
    let out = g.tick(15_000);
    assert!(g.member(&follower).is_none());
    assert!(g.member(&leader).is_some());
    // The follower's removal completed the join.
    assert_eq!(join_resp(&out, 30).generation_id, 2);
}

#[test]
fn member_id_required_flow() {
    let mut g = group();
    let mut req = join_req(1, "", &["range"]);
    req.require_known_member_id = true;
    let out = g.join(req.clone(), 0);
    let r = join_resp(&out, 1);
    assert_eq!(r.error, ErrorCode::MemberIdRequired);
    assert!(!r.member_id.is_empty());
    assert_eq!(g.members().count(), 0, "pending, not yet a member");
    assert_eq!(g.state(), GroupState::Empty);
    let rejoin = JoinRequest {
        request_id: RequestId(2),
        member_id: r.member_id.clone(),
        ..req
    };
    assert!(g.join(rejoin, 10).is_empty());
    let out = g.tick(10 + DELAY as i64);
    let r2 = join_resp(&out, 2);
    assert_eq!(
        (r2.error, r2.member_id.as_str(), r2.generation_id),
        (ErrorCode::None, r.member_id.as_str(), 1)
    );
}

#[test]
fn pending_member_that_never_rejoins_expires() {
    let (mut g, leader, follower) = stable_two();
    let mut req = join_req(40, "", &["range"]);
    req.require_known_member_id = true;
    let pending_id = join_resp(&g.join(req.clone(), 6_000), 40).member_id;
    g.join(join_req(41, &leader, &["range"]), 6_100);
    let out = g.join(join_req(42, &follower, &["range"]), 6_200);
    assert!(out.is_empty(), "waits for the pending member");
    let out = g.tick(6_000 + SESSION as i64);
    assert_eq!(join_resp(&out, 41).generation_id, 2);
    let late = JoinRequest {
        request_id: RequestId(43),
        member_id: pending_id,
        ..req
    };
    assert_eq!(
        join_resp(&g.join(late, 17_000), 43).error,
        ErrorCode::UnknownMemberId
    );
}

#[test]
fn illegal_generation() {
    let (mut g, leader, follower) = stable_two();
    assert_eq!(
        g.heartbeat(&hb(&leader, 0), 6_000),
        ErrorCode::IllegalGeneration
    );
    assert_eq!(
        g.heartbeat(&hb(&leader, 7), 6_000),
        ErrorCode::IllegalGeneration
    );
    let out = g.sync(sync_req(50, &follower, 2, &[]), 6_000);
    assert_eq!(sync_resp(&out, 50).error, ErrorCode::IllegalGeneration);
}

#[test]
fn unknown_member_id() {
    let (mut g, _leader, _follower) = stable_two();
    assert_eq!(
        g.heartbeat(&hb("nobody", 1), 6_000),
        ErrorCode::UnknownMemberId
    );
    let out = g.sync(sync_req(50, "nobody", 1, &[]), 6_000);
    assert_eq!(sync_resp(&out, 50).error, ErrorCode::UnknownMemberId);
    let out = g.join(join_req(51, "nobody", &["range"]), 6_000);
    let r = join_resp(&out, 51);
    assert_eq!(
        (r.error, r.member_id.as_str()),
        (ErrorCode::UnknownMemberId, "nobody")
    );
    assert_eq!(g.state(), GroupState::Stable, "no rebalance for strangers");
    let mut empty = group();
    assert_eq!(empty.heartbeat(&hb("x", 0), 0), ErrorCode::UnknownMemberId);
}

#[test]
fn inconsistent_group_protocol() {
    let (mut g, _leader, follower) = stable_two();
    // No protocol in common.
    let out = g.join(join_req(60, "", &["roundrobin"]), 6_000);
    assert_eq!(
        join_resp(&out, 60).error,
        ErrorCode::InconsistentGroupProtocol
    );
    // Different protocol type.
    let mut other = join_req(61, "", &["range"]);
    other.protocol_type = "connect".to_owned();
    assert_eq!(
        join_resp(&g.join(other, 6_000), 61).error,
        ErrorCode::InconsistentGroupProtocol
    );
    // Empty protocol list, even on an empty group.
    let mut empty = group();
    assert_eq!(
        join_resp(&empty.join(join_req(62, "", &[]), 0), 62).error,
        ErrorCode::InconsistentGroupProtocol
    );
    // SyncGroup naming another protocol.
    let mut s = sync_req(63, &follower, 1, &[]);
    s.protocol_name = Some("roundrobin".to_owned());
    assert_eq!(
        sync_resp(&g.sync(s, 6_000), 63).error,
        ErrorCode::InconsistentGroupProtocol
    );
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(g.members().count(), 2);
}

#[test]
fn invalid_session_timeout() {
    let mut g = group();
    for timeout in [5_999, 1_800_001, -1] {
        let mut req = join_req(1, "", &["range"]);
        req.session_timeout_ms = timeout;
        assert_eq!(
            join_resp(&g.join(req, 0), 1).error,
            ErrorCode::InvalidSessionTimeout
        );
    }
    assert_eq!(g.state(), GroupState::Empty);
}

#[test]
fn protocol_selected_by_votes_among_common_protocols() {
    let mut g = group();
    g.join(join_req(1, "", &["range", "roundrobin"]), 0);
    g.join(join_req(2, "", &["roundrobin", "range"]), 0);
    g.join(join_req(3, "", &["roundrobin"]), 0);
    let out = initial(&mut g);
    for rid in 1..=3 {
        assert_eq!(
            join_resp(&out, rid).protocol_name.as_deref(),
            Some("roundrobin")
        );
    }
    assert_eq!(
        join_resp(&out, 1).members[0].metadata,
        Bytes::from("meta-roundrobin")
    );
}

#[test]
fn protocol_vote_majority_wins_when_all_support_both() {
    let mut g = group();
    g.join(join_req(1, "", &["roundrobin", "range"]), 0);
    g.join(join_req(2, "", &["range", "roundrobin"]), 0);
    g.join(join_req(3, "", &["range", "roundrobin"]), 0);
    let out = initial(&mut g);
    assert_eq!(join_resp(&out, 1).protocol_name.as_deref(), Some("range"));
}

#[test]
fn static_member_rejoin_replaces_member_id_without_rebalance() {
    let mut g = group();
    g.join(static_join(1, "", "i-1"), 0);
    g.join(static_join(2, "", "i-2"), 0);
    let out = initial(&mut g);
    let (a, b) = (join_resp(&out, 1).member_id, join_resp(&out, 2).member_id);
    g.sync(sync_req(3, &b, 1, &[]), 4_000);
    g.sync(sync_req(4, &a, 1, &[(&a, "A"), (&b, "B")]), 4_000);
    assert_eq!(g.state(), GroupState::Stable);

    // i-2 restarts and rejoins with an empty member id.
    let out = g.join(static_join(5, "", "i-2"), 5_000);
    let r = join_resp(&out, 5);
    assert_eq!(r.error, ErrorCode::None);
    assert_ne!(r.member_id, b);
    assert!(r.member_id.starts_with("i-2-"));
    assert_eq!((r.generation_id, r.leader.as_str()), (1, a.as_str()));
    assert_eq!(g.state(), GroupState::Stable, "same protocol: no rebalance");
    let s = g.sync(
        SyncRequest {
            group_instance_id: Some("i-2".to_owned()),
            ..sync_req(6, &r.member_id, 1, &[])
        },
        5_100,
    );
    assert_eq!(
        sync_resp(&s, 6).assignment,
        Bytes::from("B"),
        "assignment kept"
    );

    // The old member id is fenced.
    let old = HeartbeatRequest {
        member_id: b.clone(),
        group_instance_id: Some("i-2".to_owned()),
        generation_id: 1,
    };
    assert_eq!(g.heartbeat(&old, 5_200), ErrorCode::FencedInstanceId);
    let new = HeartbeatRequest {
        member_id: r.member_id.clone(),
        ..old
    };
    assert_eq!(g.heartbeat(&new, 5_200), ErrorCode::None);
}

#[test]
fn static_member_rejoin_fences_the_old_parked_join() {
    let mut g = group();
    g.join(static_join(1, "", "i-1"), 0);
    g.join(static_join(2, "", "i-2"), 0);
    let out = initial(&mut g);
    let (a, b) = (join_resp(&out, 1).member_id, join_resp(&out, 2).member_id);
    g.sync(sync_req(3, &a, 1, &[(&a, "A"), (&b, "B")]), 3_000);
    assert!(
        g.join(join_req(4, "", &["range"]), 4_000).is_empty(),
        "rebalance"
    );
    assert!(
        g.join(static_join(5, &a, "i-1"), 4_100).is_empty(),
        "parked"
    );
    // i-1 restarts: its parked join is fenced, the new id takes its place.
    let out = g.join(static_join(6, "", "i-1"), 4_200);
    assert_eq!(join_resp(&out, 5).error, ErrorCode::FencedInstanceId);
    assert_eq!(out.len(), 1, "still waiting for i-2");
    let out = g.join(static_join(7, &b, "i-2"), 4_300);
    let r = join_resp(&out, 6);
    assert_eq!((r.error, r.generation_id), (ErrorCode::None, 2));
    assert_eq!(r.leader, r.member_id, "the leader's replacement leads");
    assert_eq!(r.members.len(), 3);
    let stale = HeartbeatRequest {
        member_id: a,
        group_instance_id: Some("i-1".to_owned()),
        generation_id: 2,
    };
    assert_eq!(g.heartbeat(&stale, 4_400), ErrorCode::FencedInstanceId);
}

#[test]
fn rebalance_timeout_removes_member_that_never_rejoined() {
    let (mut g, leader, follower) = stable_two();
    assert!(g.join(join_req(30, &leader, &["range"]), 6_000).is_empty());
    // The follower keeps heartbeating (REBALANCE_IN_PROGRESS) but never rejoins.
    for t in (7_000..36_000).step_by(3_000) {
        assert_eq!(
            g.heartbeat(&hb(&follower, 1), t),
            ErrorCode::RebalanceInProgress
        );
        assert!(g.tick(t).is_empty());
    }
    let out = g.tick(6_000 + REBALANCE as i64);
    let r = join_resp(&out, 30);
    assert_eq!((r.generation_id, r.members.len()), (2, 1));
    assert!(g.member(&follower).is_none());
    assert_eq!(
        g.heartbeat(&hb(&follower, 1), 36_001),
        ErrorCode::UnknownMemberId
    );
}

#[test]
fn new_leader_elected_when_leader_does_not_rejoin() {
    let (mut g, leader, follower) = stable_two();
    // Changed metadata forces a rebalance; the leader never rejoins.
    assert!(g
        .join(join_req(30, &follower, &["range", "roundrobin"]), 6_000)
        .is_empty());
    g.heartbeat(&hb(&leader, 1), 6_000);
    let out = g.tick(6_000 + REBALANCE as i64);
    let r = join_resp(&out, 30);
    assert_eq!(r.leader, follower);
    assert_eq!(r.members.len(), 1);
}

#[test]
fn sync_timeout_removes_members_that_never_synced() {
    let (mut g, leader, follower) = two_joined();
    g.sync(
        sync_req(10, &leader, 1, &[(&leader, "A"), (&follower, "B")]),
        4_000,
    );
    assert_eq!(g.state(), GroupState::Stable);
    for t in [10_000, 18_000, 26_000] {
        g.heartbeat(&hb(&leader, 1), t);
        g.heartbeat(&hb(&follower, 1), t);
        assert!(g.tick(t).is_empty());
    }
    let _ = g.tick(2 * DELAY as i64 + REBALANCE as i64);
    assert!(
        g.member(&follower).is_none(),
        "follower never sent SyncGroup"
    );
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn batched_leave_gives_per_member_results() {
    let (mut g, leader, follower) = stable_two();
    let outcome = g.leave(
        vec![
            LeaveMember {
                member_id: follower.clone(),
                group_instance_id: None,
            },
            LeaveMember {
                member_id: "ghost".to_owned(),
                group_instance_id: None,
            },
            LeaveMember {
                member_id: String::new(),
                group_instance_id: Some("no-such-instance".to_owned()),
            },
        ],
        6_000,
    );
    let errors: Vec<_> = outcome.members.iter().map(|m| m.error).collect();
    assert_eq!(
        errors,
        vec![
            ErrorCode::None,
            ErrorCode::UnknownMemberId,
            ErrorCode::UnknownMemberId
        ]
    );
    assert_eq!(outcome.members[1].member_id, "ghost");
    assert!(g.member(&follower).is_none());
    assert!(g.member(&leader).is_some());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn leave_by_instance_id_removes_static_member() {
    let mut g = group();
    g.join(static_join(1, "", "i-1"), 0);
    let id = join_resp(&g.tick(DELAY as i64), 1).member_id;
    let outcome = g.leave(
        vec![LeaveMember {
            member_id: String::new(),
            group_instance_id: Some("i-1".to_owned()),
        }],
        4_000,
    );
    assert_eq!(outcome.members[0].error, ErrorCode::None);
    assert!(g.member(&id).is_none());
    assert_eq!(g.state(), GroupState::Empty);
}

#[test]
fn leave_completes_a_rebalance_waiting_on_the_leaver() {
    let (mut g, leader, follower) = stable_two();
    g.join(join_req(30, &leader, &["range"]), 6_000);
    let outcome = g.leave(leave_of(&follower), 6_100);
    assert_eq!(join_resp(&outcome.actions, 30).generation_id, 2);
}

#[test]
fn removed_member_racing_heartbeat_and_join_get_unknown_member_id() {
    let (mut g, leader, follower) = stable_two();
    // Follower's session expires while a new member triggers a rebalance.
    g.heartbeat(&hb(&leader, 1), 14_000);
    g.join(join_req(30, "", &["range"]), 14_500);
    g.join(join_req(31, &leader, &["range"]), 14_600);
    let out = g.tick(15_000);
    assert!(g.member(&follower).is_none());
    let generation = join_resp(&out, 31).generation_id;
    assert_eq!(generation, 2);
    // Its in-flight heartbeat (old generation) and rejoin arrive afterwards.
    assert_eq!(
        g.heartbeat(&hb(&follower, 1), 15_001),
        ErrorCode::UnknownMemberId
    );
    assert_eq!(
        g.heartbeat(&hb(&follower, 2), 15_001),
        ErrorCode::UnknownMemberId
    );
    let out = g.join(join_req(32, &follower, &["range"]), 15_002);
    assert_eq!(join_resp(&out, 32).error, ErrorCode::UnknownMemberId);
    let out = g.sync(sync_req(33, &follower, 2, &[]), 15_003);
    assert_eq!(sync_resp(&out, 33).error, ErrorCode::UnknownMemberId);
    // The survivors are unaffected.
    assert_eq!(g.heartbeat(&hb(&leader, 2), 15_004), ErrorCode::None);
}

#[test]
fn removed_member_parked_join_is_answered_unknown_member_id() {
    // A new member parked longer than new_member_join_timeout_ms is dropped.
    let cfg = GroupConfig {
        new_member_join_timeout_ms: 1_000,
        ..config()
    };
    let mut g = Group::new("g", cfg, 2);
    g.join(join_req(1, "", &["range"]), 0);
    let out = g.tick(1_000);
    assert_eq!(join_resp(&out, 1).error, ErrorCode::UnknownMemberId);
    assert_eq!(g.members().count(), 0);
}

#[test]
fn retried_join_supersedes_the_parked_one() {
    let (mut g, leader, follower) = stable_two();
    g.join(join_req(30, &leader, &["range"]), 6_000);
    let out = g.join(join_req(31, &leader, &["range"]), 6_100);
    assert_eq!(join_resp(&out, 30).error, ErrorCode::RebalanceInProgress);
    let out = g.join(join_req(32, &follower, &["range"]), 6_200);
    assert_eq!(join_resp(&out, 31).generation_id, 2);
}

#[test]
fn group_max_size_reached() {
    let cfg = GroupConfig {
        max_size: Some(1),
        ..config()
    };
    let mut g = Group::new("g", cfg, 3);
    g.join(join_req(1, "", &["range"]), 0);
    let out = g.join(join_req(2, "", &["range"]), 10);
    assert_eq!(join_resp(&out, 2).error, ErrorCode::GroupMaxSizeReached);
    assert_eq!(g.members().count(), 1);
}

#[test]
fn dead_group_refuses_everything_and_answers_parked_requests() {
    let mut g = group();
    g.join(join_req(1, "", &["range"]), 0);
    let out = g.mark_dead();
    assert_eq!(join_resp(&out, 1).error, ErrorCode::CoordinatorNotAvailable);
    assert_eq!(
        join_resp(&g.join(join_req(2, "", &["range"]), 1), 2).error,
        ErrorCode::CoordinatorNotAvailable
    );
    assert_eq!(
        g.heartbeat(&hb("x", 0), 1),
        ErrorCode::CoordinatorNotAvailable
    );
    assert_eq!(
        g.leave(leave_of("x"), 1).error,
        ErrorCode::CoordinatorNotAvailable
    );
    assert!(g.tick(i64::MAX).is_empty());
}

/// Drives random operations (including adversarial timestamps) and checks that
/// nothing panics and every request id is answered at most once, and exactly
/// once after everyone leaves and time runs out.
#[test]
fn random_operations_answer_every_request_exactly_once() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut states_seen = std::collections::HashSet::new();
    for round in 0..200 {
        let mut g = Group::new("g", config(), round);
        let mut answered = std::collections::HashSet::new();
        let mut issued = 0u64;
        let mut expected = std::collections::HashSet::new();
        let mut now = 0i64;
        let mut known: Vec<String> = Vec::new();
        let mut record = |actions: &[Action], known: &mut Vec<String>| {
            for a in actions {
                let (rid, member) = match a {
                    Action::Join {
                        request_id,
                        response,
                    } => (*request_id, Some(response.member_id.clone())),
                    Action::Sync { request_id, .. } => (*request_id, None),
                };
                assert!(answered.insert(rid), "answered twice: {rid:?}");
                if let Some(m) = member.filter(|m| !m.is_empty()) {
                    known.push(m);
                }
            }
        };
        for _ in 0..300 {
            now += (next() % 4_000) as i64;
            let pick = |r: u64, known: &Vec<String>| -> String {
                if known.is_empty() || r.is_multiple_of(5) {
                    String::new()
                } else {
                    known[(r as usize / 5) % known.len()].clone()
                }
            };
            let current: Vec<String> = g.members().map(|m| m.member_id().to_owned()).collect();
            let member = match next() % 4 {
                0 => pick(next(), &known),
                1 => g.leader().unwrap_or_default().to_owned(),
                _ if !current.is_empty() => current[next() as usize % current.len()].clone(),
                _ => String::new(),
            };
            let generation = if next().is_multiple_of(4) {
                (next() % 4) as i32
            } else {
                g.generation_id()
            };
            issued += 1;
            let op = next() % 6;
            if op <= 2 {
                expected.insert(RequestId(issued));
            }
            match op {
                0 | 1 => {
                    let names: &[&str] = if next().is_multiple_of(4) {
                        &["roundrobin"]
                    } else {
                        &["range", "roundrobin"]
                    };
                    let mut req = join_req(issued, &member, names);
                    req.require_known_member_id = next().is_multiple_of(2);
                    if next().is_multiple_of(5) {
                        req.group_instance_id = Some(format!("i-{}", next() % 3));
                    }
                    let out = g.join(req, now);
                    record(&out, &mut known);
                }
                2 => {
                    let out = g.sync(
                        sync_req(issued, &member, generation, &[(&member, "x")]),
                        now,
                    );
                    record(&out, &mut known);
                }
                3 => {
                    g.heartbeat(&hb(&member, generation), now);
                }
                4 => {
                    let out = g.leave(leave_of(&member), now);
                    record(&out.actions, &mut known);
                }
                _ => {
                    let out = g.tick(now);
                    record(&out, &mut known);
                }
            }
            states_seen.insert(g.state());
            // Invariants after every step.
            if let Some(leader) = g.leader() {
                assert!(g.member(leader).is_some(), "leader {leader} not a member");
            }
            let n = g.members().count();
            match g.state() {
                GroupState::Empty => assert_eq!(n, 0),
                GroupState::CompletingRebalance | GroupState::Stable => {
                    assert!(n > 0);
                    assert!(g.leader().is_some());
                    assert!(g.protocol_name().is_some());
                    assert!(g.members().all(|m| !m.is_awaiting_join()));
                }
                GroupState::PreparingRebalance | GroupState::Dead => {}
            }
            if g.state() != GroupState::CompletingRebalance {
                assert!(g.members().all(|m| !m.is_awaiting_sync()));
            }
        }
        // Everyone leaves and time runs out: nothing may stay parked.
        let ids: Vec<String> = g.members().map(|m| m.member_id().to_owned()).collect();
        let out = g.leave(
            ids.iter()
                .map(|m| LeaveMember {
                    member_id: m.clone(),
                    group_instance_id: None,
                })
                .collect(),
            now,
        );
        record(&out.actions, &mut known);
        for _ in 0..5 {
            now += 400_000;
            let out = g.tick(now);
            record(&out, &mut known);
        }
        assert!(g
            .members()
            .all(|m| !m.is_awaiting_join() && !m.is_awaiting_sync()));
        assert_eq!(answered, expected, "every join and sync answered");
        let _ = g.tick(i64::MAX);
        let _ = g.tick(i64::MIN);
    }
    for state in [
        GroupState::Empty,
        GroupState::PreparingRebalance,
        GroupState::CompletingRebalance,
        GroupState::Stable,
    ] {
        assert!(states_seen.contains(&state), "never reached {state:?}");
    }
}
