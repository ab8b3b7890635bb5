//! API version negotiation: the ApiVersions handshake every new connection starts with.
//!
//! The client sends ApiVersions v3 (flexible). A broker that does not know v3 answers in v0
//! format with `UNSUPPORTED_VERSION` (35) and its supported ranges (KIP-511); the client then
//! retries at the highest ApiVersions version the broker listed. For every other API the version
//! used is the highest both the broker and this client implement.

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::ResponseError;

use crate::connection::{peek_i16, Connection};
use crate::error::{Error, Result};

/// The ApiVersions version sent first.
pub const HANDSHAKE_VERSION: i16 = 3;

/// The versions this client implements, per API: the intersection of what kafka-protocol can
/// encode and what this crate's code handles. APIs not listed use kafka-protocol's range.
pub fn client_range(api: ApiKey) -> (i16, i16) {
    match api {
        // v3 is the first with record format v2 (the only one this client writes).
        ApiKey::Produce => (3, 13),
        // v4 is the first with record format v2.
        ApiKey::Fetch => (4, 18),
        ApiKey::ListOffsets => (1, 10),
        // v1 distinguishes "no topics" (empty) from "all topics" (null).
        ApiKey::Metadata => (1, 13),
        ApiKey::ApiVersions => (0, 4),
        // v6 adds two-phase-commit fields this client never uses; v5 is enough.
        ApiKey::InitProducerId => (0, 5),
        // kafka-protocol 0.18's ApiKey table says v10 (Kafka 4.1+), but its message types stop at
        // v9; without this cap the admin client failed to encode against Kafka 4.3.
        ApiKey::OffsetCommit => (2, 9),
        ApiKey::OffsetFetch => (1, 9),
        other => {
            let r = other.valid_versions();
            (r.min, r.max)
        }
    }
}

/// What one broker advertised, and the version choice per API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerVersions {
    ranges: HashMap<i16, (i16, i16)>,
}

impl BrokerVersions {
    /// From the broker's `api_keys` list.
    pub fn from_response(resp: &ApiVersionsResponse) -> Self {
        BrokerVersions {
            ranges: resp
                .api_keys
                .iter()
                .map(|k| (k.api_key, (k.min_version, k.max_version)))
                .collect(),
        }
    }

    /// The broker's range for `api`, if it advertised it.
    pub fn broker_range(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.ranges.get(&(api as i16)).copied()
    }

    /// The highest version of `api` both sides support.
    pub fn pick(&self, api: ApiKey) -> Option<i16> {
        let (bmin, bmax) = self.broker_range(api)?;
        let (cmin, cmax) = client_range(api);
        let max = bmax.min(cmax);
        (max >= bmin.max(cmin)).then_some(max)
    }

    /// True when the broker advertised `api` at all.
    pub fn supports(&self, api: ApiKey) -> bool {
        self.pick(api).is_some()
    }
}

fn handshake_request() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("spool-client"))
        .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")))
}

async fn ask(conn: &Connection, version: i16) -> Result<Bytes> {
    let req = handshake_request();
    conn.round_trip(
        ApiKey::ApiVersions,
        version,
        ApiVersionsRequest::header_version(version),
        conn.request_timeout(),
        |buf| req.encode(buf, version).map_err(|e| e.to_string()),
    )
    .await
}

fn decode(body: &mut Bytes, version: i16) -> Result<ApiVersionsResponse> {
    ApiVersionsResponse::decode(body, version)
        .map_err(|e| Error::protocol(format!("decoding ApiVersions v{version} response"), e))
}

/// Runs the handshake on `conn` and returns the broker's versions.
pub(crate) async fn negotiate(conn: &Connection) -> Result<BrokerVersions> {
    let mut body = ask(conn, HANDSHAKE_VERSION).await?;
    let mut version = HANDSHAKE_VERSION;
    if peek_i16(&body) == Some(ResponseError::UnsupportedVersion.code()) {
        // KIP-511: the answer is in v0 format whatever we asked, listing what the broker has.
        let v0 = decode(&mut body, 0)?;
        let broker_max = v0
            .api_keys
            .iter()
            .find(|k| k.api_key == ApiKey::ApiVersions as i16)
            .map(|k| k.max_version)
            .unwrap_or(0);
        version = broker_max.min(HANDSHAKE_VERSION);
        if version < 0 {
            return Err(Error::UnsupportedVersion {
                api: ApiKey::ApiVersions,
                addr: conn.addr().to_string(),
                broker: None,
            });
        }
        tracing::debug!(
            addr = conn.addr(),
            version,
            "retrying ApiVersions at a lower version"
        );
        body = ask(conn, version).await?;
    }
    let resp = decode(&mut body, version)?;
    if let Some(e) = Error::from_code(
        resp.error_code,
        None,
        format!("ApiVersions from {}", conn.addr()),
    ) {
        return Err(e);
    }
    Ok(BrokerVersions::from_response(&resp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::tests::pair;
    use kafka_protocol::messages::api_versions_response::ApiVersion;

    fn api(key: ApiKey, min: i16, max: i16) -> ApiVersion {
        ApiVersion::default()
            .with_api_key(key as i16)
            .with_min_version(min)
            .with_max_version(max)
    }

    /// Every API this client sends: the range it negotiates must be one kafka-protocol can
    /// encode the request and decode the response at (its ApiKey table and message types
    /// disagree for some APIs).
    #[test]
    fn client_ranges_are_encodable() {
        use kafka_protocol::messages::*;
        use kafka_protocol::protocol::Message;
        fn check<Req: Message, Resp: Message>(api: ApiKey) {
            let (min, max) = client_range(api);
            for range in [Req::VERSIONS, Resp::VERSIONS] {
                assert!(
                    range.min <= min && max <= range.max,
                    "{api:?}: client range {min}..={max} outside {}..={}",
                    range.min,
                    range.max
                );
            }
        }
        check::<ProduceRequest, ProduceResponse>(ApiKey::Produce);
        check::<FetchRequest, FetchResponse>(ApiKey::Fetch);
        check::<ListOffsetsRequest, ListOffsetsResponse>(ApiKey::ListOffsets);
        check::<MetadataRequest, MetadataResponse>(ApiKey::Metadata);
        check::<ApiVersionsRequest, ApiVersionsResponse>(ApiKey::ApiVersions);
        check::<InitProducerIdRequest, InitProducerIdResponse>(ApiKey::InitProducerId);
        check::<CreateTopicsRequest, CreateTopicsResponse>(ApiKey::CreateTopics);
        check::<DeleteTopicsRequest, DeleteTopicsResponse>(ApiKey::DeleteTopics);
        check::<CreatePartitionsRequest, CreatePartitionsResponse>(ApiKey::CreatePartitions);
        check::<DescribeConfigsRequest, DescribeConfigsResponse>(ApiKey::DescribeConfigs);
        check::<DescribeClusterRequest, DescribeClusterResponse>(ApiKey::DescribeCluster);
        check::<FindCoordinatorRequest, FindCoordinatorResponse>(ApiKey::FindCoordinator);
        check::<JoinGroupRequest, JoinGroupResponse>(ApiKey::JoinGroup);
        check::<SyncGroupRequest, SyncGroupResponse>(ApiKey::SyncGroup);
        check::<HeartbeatRequest, HeartbeatResponse>(ApiKey::Heartbeat);
        check::<LeaveGroupRequest, LeaveGroupResponse>(ApiKey::LeaveGroup);
        check::<OffsetCommitRequest, OffsetCommitResponse>(ApiKey::OffsetCommit);
        check::<OffsetFetchRequest, OffsetFetchResponse>(ApiKey::OffsetFetch);
        check::<DescribeGroupsRequest, DescribeGroupsResponse>(ApiKey::DescribeGroups);
        check::<ListGroupsRequest, ListGroupsResponse>(ApiKey::ListGroups);
        check::<DeleteGroupsRequest, DeleteGroupsResponse>(ApiKey::DeleteGroups);
    }

    #[test]
    fn picks_highest_common_version() {
        let resp = ApiVersionsResponse::default().with_api_keys(vec![
            api(ApiKey::Produce, 0, 11),
            api(ApiKey::Fetch, 0, 99),
            api(ApiKey::Metadata, 0, 0),
        ]);
        let v = BrokerVersions::from_response(&resp);
        assert_eq!(v.pick(ApiKey::Produce), Some(11));
        assert_eq!(v.pick(ApiKey::Fetch), Some(18));
        // Metadata v0 is below what the client implements.
        assert_eq!(v.pick(ApiKey::Metadata), None);
        assert_eq!(v.pick(ApiKey::ListOffsets), None);
        assert_eq!(v.broker_range(ApiKey::Produce), Some((0, 11)));
    }

    #[tokio::test]
    async fn handshake_at_v3() {
        let (conn, mut broker) = pair();
        let server = tokio::spawn(async move {
            let (h, _) = broker.read_request().await.unwrap();
            assert_eq!(h.request_api_key, ApiKey::ApiVersions as i16);
            assert_eq!(h.request_api_version, 3);
            let resp = ApiVersionsResponse::default().with_api_keys(vec![
                api(ApiKey::ApiVersions, 0, 4),
                api(ApiKey::Produce, 3, 12),
            ]);
            broker.respond(&h, &resp).await;
            broker
        });
        let v = conn.handshake().await.unwrap();
        assert_eq!(v.pick(ApiKey::Produce), Some(12));
        assert_eq!(conn.version(ApiKey::Produce).unwrap(), 12);
        assert!(conn.version(ApiKey::Fetch).is_err());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn falls_back_when_broker_answers_unsupported_version_in_v0() {
        let (conn, mut broker) = pair();
        let server = tokio::spawn(async move {
            let (h, _) = broker.read_request().await.unwrap();
            assert_eq!(h.request_api_version, 3);
            // Answer as an old broker does: v0 body, error 35, its ranges.
            let old = ApiVersionsResponse::default()
                .with_error_code(35)
                .with_api_keys(vec![
                    api(ApiKey::ApiVersions, 0, 2),
                    api(ApiKey::Fetch, 0, 11),
                ]);
            let mut h0 = h.clone();
            h0.request_api_version = 0;
            broker.respond(&h0, &old).await;
            let (h, _) = broker.read_request().await.unwrap();
            assert_eq!(h.request_api_version, 2, "retried at the broker's max");
            let resp = ApiVersionsResponse::default().with_api_keys(vec![
                api(ApiKey::ApiVersions, 0, 2),
                api(ApiKey::Fetch, 0, 11),
            ]);
            broker.respond(&h, &resp).await;
        });
        let v = conn.handshake().await.unwrap();
        assert_eq!(v.pick(ApiKey::Fetch), Some(11));
        server.await.unwrap();
    }
}
