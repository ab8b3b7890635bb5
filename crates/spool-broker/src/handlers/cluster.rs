//! DescribeCluster: one broker that is also the controller.

use kafka_protocol::messages::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest};

use super::text;
use crate::state::BrokerState;

/// Kafka's "operations not requested" marker for authorized-operations fields.
pub(crate) const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

pub(crate) fn describe_cluster(
    state: &BrokerState,
    _req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let (host, port) = &state.advertised;
    DescribeClusterResponse::default()
        .with_endpoint_type(1)
        .with_cluster_id(text(state.cluster_id.clone()))
        .with_controller_id(BrokerId(state.config.node_id))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(state.config.node_id))
            .with_host(text(host.clone()))
            .with_port(*port as i32)])
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
