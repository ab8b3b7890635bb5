//! The sender task: drains ready batches, sends Produce requests and settles their outcome.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spool_protocol::records::set_producer_state;
use tokio::sync::Notify;
use uuid::Uuid;

use super::accumulator::{ProducerBatch, Split};
use super::{Shared, IDLE_WAKE};
use crate::config::Acks;
use crate::error::{Error, Result};

/// The sender loop. Ends once the producer is closed and everything queued has completed.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut pid_attempt = 0u32;
    let mut pid_retry_at: Option<Instant> = None;
    let mut refresh_started: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let mut can_send = shared.fatal.lock().unwrap().is_none();
        if shared.idempotent() && can_send {
            can_send = prepare_producer_id(&shared, now, &mut pid_attempt, &mut pid_retry_at).await;
        }
        if let Some(e) = shared.fatal.lock().unwrap().clone() {
            let queued = shared.acc.lock().unwrap().take_all_queued();
            for b in queued {
                b.complete(Err(e.clone()));
            }
            notify_completions(&shared);
        }

        let md = shared.client.metadata();
        let client = shared.client.clone();
        let drained = {
            let in_flight = shared.in_flight.lock().unwrap();
            let max = shared.config.max_in_flight_requests_per_connection;
            let mut acc = shared.acc.lock().unwrap();
            // Sequence numbers make several batches of a partition in flight safe: the broker
            // refuses one that overtook a failed batch, and it is retried in order.
            acc.set_max_in_flight_per_partition(if shared.idempotent() { max } else { 1 });
            acc.drain(
                now,
                can_send,
                shared.config.max_request_size,
                |tp| {
                    if client.is_stale(&tp.0) {
                        None
                    } else {
                        md.leader(&tp.0, tp.1)
                    }
                },
                |broker| in_flight.get(&broker).copied().unwrap_or(0) < max,
            )
        };

        if !drained.expired.is_empty() {
            for b in drained.expired {
                let err = Error::Timeout {
                    what: format!(
                        "delivery of {} record(s) to {}-{}",
                        b.record_count(),
                        b.tp.0,
                        b.tp.1
                    ),
                    after: shared.config.delivery_timeout,
                };
                give_up_sequence(&shared, &b, false);
                b.complete(Err(err));
            }
            notify_completions(&shared);
        }

        let mut next_wake = drained.next_wake;
        if !drained.unknown_leaders.is_empty() {
            let backoff = shared.client.config().retry_backoff;
            let due = refresh_started.is_none_or(|t| now >= t + backoff);
            if due {
                refresh_started = Some(now);
                let topics: Vec<String> = drained
                    .unknown_leaders
                    .iter()
                    .map(|t| t.to_string())
                    .collect();
                let s = shared.clone();
                tokio::spawn(async move {
                    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                    if let Err(e) = s.client.refresh(&names, true).await {
                        tracing::debug!(error = %e, "metadata refresh for the producer failed");
                    }
                    s.wake.notify_one();
                });
            }
            let again = refresh_started.unwrap_or(now) + backoff;
            next_wake = Some(next_wake.map_or(again, |w| w.min(again)));
        }

        for (broker, batches) in drained.by_broker {
            let mut ready = Vec::with_capacity(batches.len());
            for mut b in batches {
                match stamp_and_build(&shared, &mut b) {
                    Ok(()) => ready.push(b),
                    Err(e) => {
                        shared.acc.lock().unwrap().finish(&b);
                        b.complete(Err(e));
                        notify_completions(&shared);
                    }
                }
            }
            if ready.is_empty() {
                continue;
            }
            *shared.in_flight.lock().unwrap().entry(broker).or_default() += 1;
            let ticket = shared.write_order.ticket(broker);
            tokio::spawn(produce(shared.clone(), broker, ready, ticket));
        }

        {
            let acc = shared.acc.lock().unwrap();
            if acc.is_closing() && acc.is_empty() {
                return;
            }
        }
        if let Some(t) = pid_retry_at {
            next_wake = Some(next_wake.map_or(t, |w| w.min(t)));
        }
        let wake_at = next_wake.unwrap_or_else(|| Instant::now() + IDLE_WAKE);
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep_until(wake_at.into()) => {}
        }
    }
}

/// Gets a producer id or bumps the epoch when needed. Returns whether batches may be sent.
async fn prepare_producer_id(
    shared: &Arc<Shared>,
    now: Instant,
    attempt: &mut u32,
    retry_at: &mut Option<Instant>,
) -> bool {
    {
        let mut pid = shared.pid.lock().unwrap();
        if pid.bump_requested() {
            let in_flight: usize = shared.in_flight.lock().unwrap().values().sum();
            if in_flight > 0 {
                // Bump only once nothing sent under the old epoch is outstanding.
                return false;
            }
            if pid.bump() {
                tracing::info!(
                    epoch = pid.id_and_epoch().1,
                    "bumped idempotent producer epoch"
                );
            }
        }
        if pid.has_id() {
            return true;
        }
    }
    if retry_at.is_some_and(|t| now < t) {
        return false;
    }
    match init_producer_id(shared).await {
        Ok((id, epoch)) => {
            tracing::debug!(producer_id = id, epoch, "obtained producer id");
            shared.pid.lock().unwrap().set_id(id, epoch);
            shared.acc.lock().unwrap().forget_acknowledged();
            *attempt = 0;
            *retry_at = None;
            true
        }
        Err(Error::UnsupportedVersion { addr, .. })
            if shared.config.enable_idempotence.is_none() =>
        {
            // Like Kafka's client when idempotence was not asked for explicitly.
            tracing::warn!(%addr, "broker does not support InitProducerId; idempotence disabled");
            shared.idempotent.store(false, Ordering::Relaxed);
            true
        }
        Err(e) if e.is_retriable() => {
            *attempt += 1;
            tracing::debug!(error = %e, "InitProducerId failed; will retry");
            *retry_at = Some(now + shared.client.config().backoff(*attempt));
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot obtain a producer id; the producer stops");
            shared.set_fatal(e);
            false
        }
    }
}

async fn init_producer_id(shared: &Shared) -> Result<(i64, i16)> {
    let conn = shared.client.any_broker().await?;
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(i32::MAX);
    let (_, resp) = conn.send(&req).await?;
    if let Some(e) = Error::from_code(resp.error_code, None, "InitProducerId") {
        return Err(e);
    }
    Ok((resp.producer_id.0, resp.producer_epoch))
}

/// Stamps producer id/epoch/sequence (reusing the batch's own on a plain retry) and encodes.
fn stamp_and_build(shared: &Shared, b: &mut ProducerBatch) -> Result<()> {
    // Whether this call assigned the sequence numbers (and may give them back on failure).
    let mut assigned = false;
    let stamp = if shared.idempotent() {
        let mut pid = shared.pid.lock().unwrap();
        if pid.is_current(b.stamped) {
            b.stamped.expect("current stamp")
        } else {
            assigned = true;
            pid.assign(&b.tp, b.record_count())
        }
    } else {
        (-1, -1, -1)
    };
    match b.builder.take() {
        Some(builder) => {
            match builder.build(stamp.0, stamp.1, stamp.2, shared.config.compression) {
                Ok(bytes) => b.built = Some(bytes),
                Err(e) => {
                    if assigned {
                        shared.pid.lock().unwrap().rollback(&b.tp, stamp);
                    } else if shared.idempotent() {
                        // A split part's reserved sequences cannot be given back.
                        shared.pid.lock().unwrap().request_bump();
                    }
                    return Err(Error::protocol("compressing a batch", e));
                }
            }
        }
        None if b.stamped != Some(stamp) => {
            let mut v = b.built.as_ref().map(|x| x.to_vec()).unwrap_or_default();
            set_producer_state(&mut v, stamp.0, stamp.1, stamp.2);
            b.built = Some(v.into());
        }
        None => {}
    }
    b.stamped = Some(stamp);
    Ok(())
}

/// After giving up on a stamped batch: its sequences are unusable under this epoch, so bump
/// (Kafka's idempotent producer does the same). `definitive_unsent` batches were never sent and
/// can simply give their sequences back.
fn give_up_sequence(shared: &Shared, b: &ProducerBatch, definitive_unsent: bool) {
    if !shared.idempotent() {
        return;
    }
    let Some(stamp) = b.stamped else { return };
    let mut pid = shared.pid.lock().unwrap();
    if definitive_unsent {
        pid.rollback(&b.tp, stamp);
    } else if pid.is_current(Some(stamp)) {
        pid.request_bump();
    }
}

fn notify_completions(shared: &Shared) {
    shared.completions.send_modify(|g| *g = g.wrapping_add(1));
}

type Responses = HashMap<(String, i32), PartitionProduceResponse>;

async fn send_request(
    shared: &Shared,
    broker: i32,
    batches: &[ProducerBatch],
    ticket: u64,
) -> Result<Option<Responses>> {
    // Requests to one broker reach the socket in the order they were drained; the turn passes
    // on once this one is queued there (or failed).
    let turn = shared.write_order.wait_turn(broker, ticket).await;
    let conn = shared.client.broker(broker).await?;
    let mut version = conn.version(ApiKey::Produce)?;
    let md = shared.client.metadata();
    let topic_id = |t: &str| md.topics.get(t).map(|i| i.id).unwrap_or(Uuid::nil());
    // v13 addresses topics by id; fall back when an id is unknown.
    if version >= 13 && batches.iter().any(|b| topic_id(&b.tp.0).is_nil()) {
        version = 12;
    }
    let mut topics: IndexMap<Arc<str>, Vec<PartitionProduceData>> = IndexMap::new();
    for b in batches {
        topics.entry(b.tp.0.clone()).or_default().push(
            PartitionProduceData::default()
                .with_index(b.tp.1)
                .with_records(b.built.clone()),
        );
    }
    let acks = shared.config.acks;
    let timeout_ms = shared
        .client
        .config()
        .request_timeout
        .as_millis()
        .min(i32::MAX as u128) as i32;
    let req = ProduceRequest::default()
        .with_acks(acks.as_i16())
        .with_timeout_ms(timeout_ms)
        .with_topic_data(
            topics
                .into_iter()
                .map(|(t, parts)| {
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_topic_id(topic_id(&t))
                        .with_partition_data(parts)
                })
                .collect(),
        );
    if acks == Acks::None {
        conn.send_no_response(&req, version).await?;
        return Ok(None);
    }
    let response = conn.start(&req, version).await?;
    drop(turn);
    let resp = response.await?;
    let mut out = HashMap::new();
    for t in resp.responses {
        let name = if t.name.is_empty() {
            md.topic_name(&t.topic_id).unwrap_or_default().to_string()
        } else {
            t.name.0.to_string()
        };
        for p in t.partition_responses {
            out.insert((name.clone(), p.index), p);
        }
    }
    Ok(Some(out))
}

/// What to do with a batch after an attempt.
enum Settle {
    Done(ProducerBatch, Result<(i64, i64)>),
    Retry(ProducerBatch),
    /// Too large for the broker: split it (keeping its sequence numbers when `bool`), or fail
    /// with the error if it cannot be.
    Split(ProducerBatch, Error, bool),
}

/// Sends one Produce request and settles every batch in it.
async fn produce(shared: Arc<Shared>, broker: i32, mut batches: Vec<ProducerBatch>, ticket: u64) {
    for b in &mut batches {
        b.attempts += 1;
    }
    let result = send_request(&shared, broker, &batches, ticket).await;
    let now = Instant::now();
    let mut settled = Vec::with_capacity(batches.len());
    let mut stale_topics: HashSet<Arc<str>> = HashSet::new();
    match result {
        Ok(None) => {
            for b in batches {
                settled.push(Settle::Done(b, Ok((-1, -1))));
            }
        }
        Ok(Some(mut responses)) => {
            for b in batches {
                let key = (b.tp.0.to_string(), b.tp.1);
                let outcome = match responses.remove(&key) {
                    None => Err(Error::protocol(
                        format!("produce to {}-{}", b.tp.0, b.tp.1),
                        "the response does not mention the partition",
                    )),
                    Some(p)
                        if p.error_code == 0
                            || p.error_code == ResponseError::DuplicateSequenceNumber.code() =>
                    {
                        Ok((p.base_offset, p.log_append_time_ms))
                    }
                    Some(p) => {
                        let mut message = p.error_message.map(|m| m.to_string());
                        if let Some(r) = p.record_errors.first() {
                            let detail = format!(
                                "record {}: {}",
                                r.batch_index,
                                r.batch_index_error_message.as_deref().unwrap_or("invalid")
                            );
                            message = Some(match message {
                                Some(m) => format!("{m} ({detail})"),
                                None => detail,
                            });
                        }
                        Err(Error::from_code(
                            p.error_code,
                            message,
                            format!("produce to {}-{}", b.tp.0, b.tp.1),
                        )
                        .expect("nonzero"))
                    }
                };
                match outcome {
                    Ok(x) => settled.push(Settle::Done(b, Ok(x))),
                    Err(e) => settled.push(on_error(&shared, b, e, now, &mut stale_topics)),
                }
            }
        }
        Err(e) => {
            tracing::debug!(broker, error = %e, "produce request failed");
            for b in batches {
                settled.push(on_error(&shared, b, e.clone(), now, &mut stale_topics));
            }
        }
    }
    for t in &stale_topics {
        shared.client.invalidate(t);
    }
    let mut done = Vec::new();
    let mut unsplittable = Vec::new();
    {
        let mut acc = shared.acc.lock().unwrap();
        for s in settled {
            match s {
                Settle::Retry(b) => acc.reenqueue(b),
                Settle::Done(b, r) => {
                    if r.is_ok() {
                        acc.acknowledged(&b.tp);
                    }
                    acc.finish(&b);
                    done.push((b, r));
                }
                Settle::Split(b, err, keep_sequences) => {
                    let (tp, records) = (b.tp.clone(), b.record_count());
                    match acc.split(b, keep_sequences) {
                        Split::Parts(parts) => tracing::warn!(
                            topic = %tp.0,
                            partition = tp.1,
                            records,
                            parts,
                            "batch too large for the broker (MESSAGE_TOO_LARGE): split and sent again"
                        ),
                        Split::Whole(b) => {
                            let b = *b;
                            acc.finish(&b);
                            unsplittable.push(done.len());
                            done.push((b, Err(err)));
                        }
                    }
                }
            }
        }
    }
    for i in unsplittable {
        give_up_sequence(&shared, &done[i].0, false);
    }
    if let Some(n) = shared.in_flight.lock().unwrap().get_mut(&broker) {
        *n = n.saturating_sub(1);
    }
    for (b, r) in done {
        b.complete(r);
    }
    notify_completions(&shared);
    shared.wake.notify_one();
}

/// Retry, split or fail a batch after `err`, per Kafka's rules.
fn on_error(
    shared: &Shared,
    mut b: ProducerBatch,
    err: Error,
    now: Instant,
    stale_topics: &mut HashSet<Arc<str>>,
) -> Settle {
    let code = err.kafka_code();
    if code == Some(ResponseError::MessageTooLarge.code()) && b.record_count() > 1 {
        let keep_sequences =
            shared.idempotent() && shared.pid.lock().unwrap().is_current(b.stamped);
        return Settle::Split(b, err, keep_sequences);
    }
    let sequence_error = shared.idempotent()
        && matches!(
            code.and_then(ResponseError::try_from_code),
            Some(ResponseError::OutOfOrderSequenceNumber | ResponseError::UnknownProducerId)
        );
    let backoff = shared.client.config().backoff(b.attempts);
    let deadline = b.created + shared.config.delivery_timeout;
    let can_retry = (err.is_retriable() || sequence_error)
        && b.attempts <= shared.config.retries
        && now + backoff < deadline;
    if err.invalidates_metadata() {
        stale_topics.insert(b.tp.0.clone());
    }
    if can_retry {
        tracing::debug!(topic = %b.tp.0, partition = b.tp.1, attempt = b.attempts, error = %err, "retrying batch");
        // With several batches of a partition in flight, OUT_OF_ORDER_SEQUENCE_NUMBER usually
        // means this one overtook an earlier batch that failed or is still unresolved: retry it
        // as it is, behind that batch. Only a gap with nothing unresolved before it means the
        // broker's and our sequences diverged; then bump the epoch (re-stamping a batch whose
        // first attempt may have been written would risk a duplicate, so never bump for the
        // overtaking case).
        let overtook = sequence_error
            && shared
                .acc
                .lock()
                .unwrap()
                .has_earlier_unresolved(&b.tp, b.id);
        if sequence_error && !overtook {
            shared.pid.lock().unwrap().request_bump();
        }
        b.retry_at = Some(now + backoff);
        return Settle::Retry(b);
    }
    give_up_sequence(shared, &b, false);
    Settle::Done(b, Err(err))
}

/// Hands out, per broker, the order in which produce requests go onto the socket: each request
/// task takes a ticket when the sender drains its batches and waits for its turn before writing.
/// Several batches of one partition may be in flight, and the broker must see them in sequence
/// order.
#[derive(Default)]
pub(crate) struct WriteOrder {
    /// Per broker: (next ticket to hand out, ticket whose turn it is).
    tickets: Mutex<HashMap<i32, (u64, u64)>>,
    turn_passed: Notify,
}

impl WriteOrder {
    pub fn ticket(&self, broker: i32) -> u64 {
        let mut t = self.tickets.lock().unwrap();
        let e = t.entry(broker).or_default();
        e.0 += 1;
        e.0 - 1
    }

    /// Waits until `ticket` is next; the turn passes on when the returned guard drops.
    pub async fn wait_turn(&self, broker: i32, ticket: u64) -> Turn<'_> {
        loop {
            let passed = self.turn_passed.notified();
            tokio::pin!(passed);
            passed.as_mut().enable();
            if self.tickets.lock().unwrap().get(&broker).map_or(0, |e| e.1) == ticket {
                return Turn {
                    order: self,
                    broker,
                };
            }
            passed.await;
        }
    }
}

/// The right to write the next produce request to one broker.
pub(crate) struct Turn<'a> {
    order: &'a WriteOrder,
    broker: i32,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Some(e) = self.order.tickets.lock().unwrap().get_mut(&self.broker) {
            e.1 += 1;
        }
        self.order.turn_passed.notify_waiters();
    }
}
