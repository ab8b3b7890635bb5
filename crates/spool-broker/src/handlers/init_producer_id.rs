//! InitProducerId for idempotent producers. Transactions are not implemented yet.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;
use tracing::warn;

use crate::state::BrokerState;

pub(crate) fn handle(state: &BrokerState, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        // No transaction coordinator yet: refuse clearly instead of handing out an id the
        // transactional APIs could never use.
        return resp.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    // A producer asking to bump its epoch (KIP-360) keeps its id while the epoch has room.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return resp
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    match state.producer_ids.next() {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            warn!("cannot persist producer id block: {e}");
            resp.with_error_code(ResponseError::KafkaStorageError.code())
        }
    }
}
