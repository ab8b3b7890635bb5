//! ApiVersions: the ranges from the router, nothing more.

use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};

use crate::router::supported_versions;

pub(crate) fn handle() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_api_keys(
            supported_versions()
                .iter()
                .map(|&(key, min, max)| {
                    ApiVersion::default()
                        .with_api_key(key as i16)
                        .with_min_version(min)
                        .with_max_version(max)
                })
                .collect(),
        )
        .with_finalized_features_epoch(-1)
}
