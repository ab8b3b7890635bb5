//! API key -> handler, and the version ranges this broker implements (and so advertises).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use spool_protocol::codec::Request;

use crate::handlers;
use crate::handlers::produce::Outcome;
use crate::state::BrokerState;

/// The APIs and versions the broker implements: exactly what ApiVersions advertises.
///
/// Produce starts at v0 although v0-v2 (message format v0/v1) are refused: librdkafka enables
/// features by checking for Produce v0 in this list, and Kafka 4 advertises it for that reason
/// (KAFKA-18659).
pub fn supported_versions() -> &'static [(ApiKey, i16, i16)] {
    &[
        (ApiKey::Produce, 0, 13),
        (ApiKey::Fetch, 4, 17),
        (ApiKey::ListOffsets, 1, 10),
        (ApiKey::Metadata, 0, 13),
        (ApiKey::ApiVersions, 0, 4),
        (ApiKey::CreateTopics, 2, 7),
        (ApiKey::DeleteTopics, 1, 6),
        (ApiKey::InitProducerId, 0, 5),
        (ApiKey::DescribeConfigs, 1, 4),
        (ApiKey::CreatePartitions, 0, 3),
        (ApiKey::DescribeCluster, 0, 2),
        (ApiKey::FindCoordinator, 0, 6),
        (ApiKey::JoinGroup, 0, 9),
        (ApiKey::SyncGroup, 0, 5),
        (ApiKey::Heartbeat, 0, 4),
        (ApiKey::LeaveGroup, 0, 5),
        (ApiKey::OffsetCommit, 2, 9),
        (ApiKey::OffsetFetch, 1, 9),
        (ApiKey::DescribeGroups, 0, 6),
        (ApiKey::ListGroups, 0, 5),
        (ApiKey::DeleteGroups, 0, 2),
        (ApiKey::OffsetDelete, 0, 0),
        (ApiKey::ConsumerGroupHeartbeat, 0, 1),
        (ApiKey::ConsumerGroupDescribe, 0, 1),
    ]
}

/// The range for one API, if implemented.
pub fn version_range(key: ApiKey) -> Option<(i16, i16)> {
    supported_versions()
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|&(_, min, max)| (min, max))
}

/// True when the broker can decode and answer `key` at `version`.
pub fn decodable(key: ApiKey, version: i16) -> bool {
    match version_range(key) {
        // Produce v0-v2 are advertised but carry message formats we do not read.
        Some(_) if key == ApiKey::Produce && version < 3 => false,
        Some((min, max)) => (min..=max).contains(&version),
        None => false,
    }
}

/// What to send back for a request.
pub(crate) enum Reply {
    /// A response in the request's version.
    Response(Box<ResponseKind>),
    /// Nothing: Produce with acks=0 gets no response at all.
    None,
    /// Close the connection, for the reason given.
    Close(&'static str),
    /// The request's effects are applied; its answer is ready once this resolves (to one of
    /// the other variants). The connection may read and run later requests meanwhile, and
    /// still answers in request order.
    Later(Pin<Box<dyn Future<Output = Reply> + Send>>),
}

/// The answer to a produce request once its appends are settled.
fn produce_reply(outcome: Outcome) -> Reply {
    match outcome {
        Outcome::Respond(resp) => Reply::Response(Box::new(ResponseKind::Produce(resp))),
        Outcome::Silent => Reply::None,
        Outcome::Close => Reply::Close("acks=0 produce request failed"),
    }
}

/// Runs the handler for a decoded request.
pub(crate) async fn dispatch(
    state: &Arc<BrokerState>,
    request: Request,
    peer: SocketAddr,
) -> Reply {
    let v = request.version;
    let client_id = request
        .header
        .client_id
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default();
    let response = match request.body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(handlers::api_versions::handle()),
        RequestKind::Metadata(req) => {
            ResponseKind::Metadata(handlers::metadata::handle(state, req, v))
        }
        RequestKind::Produce(req) => {
            // Appended now, in request order, and an acks=all request's fsync started now, not
            // when the answer's turn comes (answers go out in order): a pipelined request joins
            // the next fsync round while earlier answers are still being written. The writer
            // awaits the fsync only when it reaches this answer.
            let appended = handlers::produce::begin(state, req, v);
            return Reply::Later(Box::pin(
                async move { produce_reply(appended.finish().await) },
            ));
        }
        RequestKind::Fetch(req) => {
            ResponseKind::Fetch(handlers::fetch::handle(state, req, v).await)
        }
        RequestKind::ListOffsets(req) => {
            ResponseKind::ListOffsets(handlers::list_offsets::handle(state, req, v))
        }
        RequestKind::CreateTopics(req) => {
            ResponseKind::CreateTopics(handlers::topics::create_topics(state, req, v))
        }
        RequestKind::DeleteTopics(req) => {
            ResponseKind::DeleteTopics(handlers::topics::delete_topics(state, req, v))
        }
        RequestKind::CreatePartitions(req) => {
            ResponseKind::CreatePartitions(handlers::topics::create_partitions(state, req))
        }
        RequestKind::DescribeConfigs(req) => {
            ResponseKind::DescribeConfigs(handlers::configs::describe_configs(state, req, v))
        }
        RequestKind::DescribeCluster(req) => {
            ResponseKind::DescribeCluster(handlers::cluster::describe_cluster(state, req))
        }
        RequestKind::InitProducerId(req) => {
            ResponseKind::InitProducerId(handlers::init_producer_id::handle(state, req))
        }
        RequestKind::FindCoordinator(req) => {
            ResponseKind::FindCoordinator(handlers::groups::find_coordinator(state, req, v))
        }
        RequestKind::JoinGroup(req) => ResponseKind::JoinGroup(
            handlers::groups::join_group(state, req, v, client_id, format!("/{}", peer.ip())).await,
        ),
        RequestKind::SyncGroup(req) => {
            ResponseKind::SyncGroup(handlers::groups::sync_group(state, req, v).await)
        }
        RequestKind::Heartbeat(req) => {
            ResponseKind::Heartbeat(handlers::groups::heartbeat(state, req))
        }
        RequestKind::LeaveGroup(req) => {
            ResponseKind::LeaveGroup(handlers::groups::leave_group(state, req, v))
        }
        RequestKind::OffsetCommit(req) => {
            ResponseKind::OffsetCommit(handlers::groups::offset_commit(state, req).await)
        }
        RequestKind::OffsetFetch(req) => {
            ResponseKind::OffsetFetch(handlers::groups::offset_fetch(state, req, v))
        }
        RequestKind::DescribeGroups(req) => {
            ResponseKind::DescribeGroups(handlers::groups::describe_groups(state, req, v))
        }
        RequestKind::ListGroups(req) => {
            ResponseKind::ListGroups(handlers::groups::list_groups(state, req))
        }
        RequestKind::DeleteGroups(req) => {
            ResponseKind::DeleteGroups(handlers::groups::delete_groups(state, req).await)
        }
        RequestKind::ConsumerGroupHeartbeat(req) => {
            ResponseKind::ConsumerGroupHeartbeat(handlers::consumer_groups::heartbeat(
                state,
                req,
                v,
                client_id,
                format!("/{}", peer.ip()),
            ))
        }
        RequestKind::ConsumerGroupDescribe(req) => {
            ResponseKind::ConsumerGroupDescribe(handlers::consumer_groups::describe(state, req))
        }
        RequestKind::OffsetDelete(req) => {
            ResponseKind::OffsetDelete(handlers::groups::offset_delete(state, req).await)
        }
        // `decodable` admits only the APIs above; should another slip through, close the
        // connection rather than answer in a format we never checked.
        _ => return Reply::Close("no handler for this API"),
    };
    Reply::Response(Box::new(response))
}
