//! InitProducerId for idempotent producers. Transactions are not implemented yet.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;
use tracing::warn;

use crate::state::BrokerState;

pub(crate) fn handle(state: &BrokerState, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req
        .transactional_id
        .as_ref()
        .is_some_and(|id| id.0.is_empty())
    {
        return resp.with_error_code(ResponseError::InvalidRequest.code());
    }
    if req.transactional_id.is_some() {
        // No transaction coordinator yet: refuse clearly instead of handing out an id the
        // transactional APIs could never use.
        return resp.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    // An id without an epoch, or the reverse, is malformed (KafkaApis checks this first).
    if (req.producer_id.0 == -1) != (req.producer_epoch == -1) {
        return resp.with_error_code(ResponseError::InvalidRequest.code());
    }
    // Without a transactional id Kafka hands out a fresh id at epoch 0 whatever the request
    // names; idempotent producers bump epochs on their own.
    match state.producer_ids.next() {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            warn!("cannot persist producer id block: {e}");
            resp.with_error_code(ResponseError::KafkaStorageError.code())
        }
    }
}
