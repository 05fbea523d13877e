//! One poll of a consumer: up to `max` messages, one batch per partition.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use inferwatch_schemas::RawBatch;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::message::Message;

use rdkafka::error::KafkaError;

use super::errors::{unreadable_code, unreadable_error, ErrorLog};
use crate::source::SourceError;

/// Polls up to `max` messages for at most `wait`, one batch per partition. `interrupted` is
/// asked after every poll, also one that returned nothing (librdkafka returns nothing right
/// after it ran a rebalance callback); when it says so, polling stops (it may drop batches
/// first).
/// `positions` tracks the next offset of every partition seen. A batch the client cannot
/// read ends the poll: what came before it is returned with the
/// [`SourceError::Unreadable`], which the caller reports once that is handed on.
pub(super) fn poll_batches<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    errors: &ErrorLog,
    name: &Arc<str>,
    max: usize,
    wait: Duration,
    positions: &mut BTreeMap<i32, i64>,
    mut interrupted: impl FnMut(&mut BTreeMap<i32, RawBatch>) -> bool,
) -> (BTreeMap<i32, RawBatch>, Option<SourceError>) {
    let deadline = Instant::now() + wait;
    let mut pending: BTreeMap<i32, RawBatch> = BTreeMap::new();
    let mut n = 0;
    while n < max {
        let wait = deadline.saturating_duration_since(Instant::now());
        match consumer.poll(wait) {
            None => {
                // Messages polled before a rebalance in this poll must be sorted out now:
                // some may belong to partitions just revoked.
                interrupted(&mut pending);
                break;
            }
            Some(Err(
                e @ (KafkaError::MessageConsumption(code)
                | KafkaError::MessageConsumptionFatal(code)),
            )) if unreadable_code(code) => {
                let err = unreadable_error(consumer, errors, name, positions, &e);
                return (pending, Some(err));
            }
            Some(Err(e)) => {
                // Broker trouble is retried by librdkafka; the context logs it once.
                tracing::debug!("poll {name}: {e}");
                if Instant::now() >= deadline {
                    break;
                }
            }
            Some(Ok(msg)) => {
                let p = msg.partition();
                let batch = pending
                    .entry(p)
                    .or_insert_with(|| RawBatch::with_capacity(name.clone(), p, 1024, 1 << 18));
                batch.push(msg.payload().unwrap_or_default(), msg.offset());
                positions.insert(p, msg.offset() + 1);
                n += 1;
                errors.receiving();
            }
        }
        if interrupted(&mut pending) {
            break;
        }
    }
    (pending, None)
}

/// Batches polled but not handed on yet, and an unreadable batch to report once they are.
#[derive(Default)]
pub(super) struct Ready {
    pub(super) batches: VecDeque<RawBatch>,
    failed: Option<SourceError>,
}

impl Ready {
    /// What is due before polling again: the next batch here, or the error after them.
    pub(super) fn take(&mut self) -> Option<Result<RawBatch, SourceError>> {
        match self.batches.pop_front() {
            Some(b) => Some(Ok(b)),
            None => self.failed.take().map(Err),
        }
    }

    /// Keeps what a poll brought and hands on its first batch (an empty one of `name` when
    /// nothing came).
    pub(super) fn refill(
        &mut self,
        pending: BTreeMap<i32, RawBatch>,
        failed: Option<SourceError>,
        name: &Arc<str>,
    ) -> Result<Option<RawBatch>, SourceError> {
        self.batches.extend(pending.into_values());
        self.failed = failed;
        match self.take() {
            Some(r) => r.map(Some),
            None => Ok(Some(RawBatch::new(name.clone(), 0))),
        }
    }
}
