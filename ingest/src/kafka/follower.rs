//! The feedback topic, read partition by partition as the processor tells it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use inferwatch_schemas::RawBatch;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::errors::ErrorLog;
use super::poll::{poll_batches, Ready};
use super::{client_config, kafka_err, KafkaSourceConfig};
use crate::source::{Source, SourceError};

/// Logs broker trouble of the feedback consumer once per kind.
struct FollowerContext {
    errors: ErrorLog,
}

impl ClientContext for FollowerContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.report(error, reason);
    }
}

impl ConsumerContext for FollowerContext {}

/// A topic read partition by partition as the processor tells it ([`Source::follow`]): the
/// feedback topic, co-partitioned with the events topic, follows the event partitions this
/// processor owns. It joins no group; where to resume comes from the processor's checkpoints.
pub struct KafkaFollower {
    consumer: BaseConsumer<FollowerContext>,
    name: Arc<str>,
    poll_wait: Duration,
    ready: Ready,
    positions: BTreeMap<i32, i64>,
}

impl KafkaFollower {
    pub fn new(cfg: &KafkaSourceConfig) -> Result<Self, SourceError> {
        let context = FollowerContext {
            errors: ErrorLog::new("kafka (feedback)", &cfg.properties),
        };
        let consumer: BaseConsumer<FollowerContext> = client_config(cfg, &[])
            .create_with_context(context)
            .map_err(kafka_err(cfg))?;
        Ok(Self {
            consumer,
            name: Arc::from(cfg.topic.as_str()),
            poll_wait: cfg.poll_wait,
            ready: Ready::default(),
            positions: BTreeMap::new(),
        })
    }
}

impl Source for KafkaFollower {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_batch(&mut self, max: usize) -> Result<Option<RawBatch>, SourceError> {
        if let Some(r) = self.ready.take() {
            return r.map(Some);
        }
        let errors = &self.consumer.context().errors;
        let (pending, failed) = poll_batches(
            &self.consumer,
            errors,
            &self.name,
            max,
            self.poll_wait,
            &mut self.positions,
            |_| false,
        );
        self.ready.refill(pending, failed, &self.name)
    }

    fn is_bounded(&self) -> bool {
        false
    }

    fn follow(&mut self, partition: i32, offset: Option<i64>) {
        let mut tpl = TopicPartitionList::new();
        let at = offset.map_or(Offset::Beginning, Offset::Offset);
        match offset {
            Some(o) => self.positions.insert(partition, o),
            None => self.positions.remove(&partition),
        };
        if let Err(e) = tpl
            .add_partition_offset(&self.name, partition, at)
            .and_then(|_| self.consumer.incremental_assign(&tpl))
        {
            tracing::error!("following partition {partition} of {}: {e}", self.name);
        }
    }

    fn unfollow(&mut self, partition: i32) {
        self.ready.batches.retain(|b| b.partition != partition);
        self.positions.remove(&partition);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.name, partition);
        if let Err(e) = self.consumer.incremental_unassign(&tpl) {
            tracing::warn!("leaving partition {partition} of {}: {e}", self.name);
        }
    }
}
