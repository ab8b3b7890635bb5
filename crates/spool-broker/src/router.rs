//! API key -> handler, and the version ranges this broker implements (and so advertises).

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
}

/// Runs the handler for a decoded request.
pub(crate) async fn dispatch(state: &Arc<BrokerState>, request: Request) -> Reply {
    let v = request.version;
    let response = match request.body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(handlers::api_versions::handle()),
        RequestKind::Metadata(req) => {
            ResponseKind::Metadata(handlers::metadata::handle(state, req, v))
        }
        RequestKind::Produce(req) => match handlers::produce::handle(state, req, v).await {
            Outcome::Respond(resp) => ResponseKind::Produce(resp),
            Outcome::Silent => return Reply::None,
            Outcome::Close => return Reply::Close("acks=0 produce request failed"),
        },
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
        // `decodable` admits only the APIs above; should another slip through, close the
        // connection rather than answer in a format we never checked.
        _ => return Reply::Close("no handler for this API"),
    };
    Reply::Response(Box::new(response))
}
