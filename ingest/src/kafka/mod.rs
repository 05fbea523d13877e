//! The Kafka source: a consumer-group member that hands raw payloads, one partition per
//! batch, to the processor.
//!
//! Rebalances are where exactly-once is won or lost, so the source does not decide what to
//! do with partition state itself: it asks a [`PartitionOwner`] (the processor) from inside
//! the rebalance callback. Before a partition goes, its owner makes its progress durable and
//! names the offset to commit; when a partition arrives, its owner names the offset its
//! checkpoint resumes from and the consumer starts there. Both happen synchronously, before
//! another group member can take the partition over.

mod errors;
mod follower;
mod group;
mod orphans;
mod poll;

use std::time::Duration;

use inferwatch_schemas::kafka::{self, Role};
use inferwatch_schemas::ClientProperties;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::TopicPartitionList;

use crate::source::SourceError;

pub use follower::KafkaFollower;
pub use group::KafkaSource;

/// `[kafka]`: where events come from.
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Consumer group: processors in one group split the partitions.
    pub group: String,
    pub topic: String,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, ...), applied last.
    pub properties: ClientProperties,
    /// How long one `next_batch` waits for messages before returning what it has.
    pub poll_wait: Duration,
    /// How often the processor commits each partition's progress (its checkpoint
    /// interval). A partition whose committed offset stays below its end for much longer
    /// than this is read by nobody, and a quiet member rejoins the group to get it assigned.
    pub commit_interval: Duration,
}

impl KafkaSourceConfig {
    pub fn new(brokers: &str, group: &str, topic: &str) -> Self {
        Self {
            brokers: brokers.into(),
            group: group.into(),
            topic: topic.into(),
            properties: ClientProperties::new(),
            poll_wait: Duration::from_millis(100),
            commit_interval: Duration::from_secs(10),
        }
    }
}

/// Whoever holds per-partition state. Called from inside the consumer's poll, during a
/// rebalance, so the work is done before the group moves on.
pub trait PartitionOwner: Send + Sync {
    /// `partitions` of `topic` are now ours: for each, the offset to start from (its
    /// checkpoint), or `None` for the group's committed offset.
    fn assigned(&self, topic: &str, partitions: &[i32]) -> Vec<(i32, Option<i64>)>;

    /// `partitions` are being taken away. Unless `lost` (another member may already own
    /// them: drop their state, write nothing), make their progress durable and return the
    /// next offset to commit for each.
    fn revoked(&self, topic: &str, partitions: &[i32], lost: bool) -> Vec<(i32, i64)>;

    /// The member is leaving the group at the end of its input, and `partitions` of `topic`
    /// came to it while it left, each with the broker's end offset. A partition read to its
    /// end may close its windows as the ones held at the end did; it is revoked next.
    fn assigned_while_leaving(&self, topic: &str, ends: &[(i32, i64)]) {
        let _ = (topic, ends);
    }
}

/// A consumer of `cfg`'s group; `extra` adds to the settings every consumer shares.
fn client_config(cfg: &KafkaSourceConfig, extra: &[(&str, &str)]) -> ClientConfig {
    let role = Role::Consumer { group: &cfg.group };
    kafka::client_config(&cfg.brokers, role, extra, &cfg.properties)
}

/// The partitions of `topic` in `tpl`.
fn partitions_of(tpl: &TopicPartitionList, topic: &str) -> Vec<i32> {
    tpl.elements_for_topic(topic)
        .iter()
        .map(|e| e.partition())
        .collect()
}

/// The broker's first and next offsets of `partition` (a round trip).
fn watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(5))
        .ok()
}

/// The partitions of `topic` assigned to `consumer` (none when the client cannot tell).
fn assigned<C: ConsumerContext>(consumer: &BaseConsumer<C>, topic: &str) -> Vec<i32> {
    consumer
        .assignment()
        .map(|t| partitions_of(&t, topic))
        .unwrap_or_default()
}

fn kafka_err(cfg: &KafkaSourceConfig) -> impl Fn(KafkaError) -> SourceError + '_ {
    move |e| {
        let text = cfg.properties.scrub(&e.to_string());
        SourceError::Kafka(format!(
            "{text} (brokers {}; check [kafka.properties])",
            cfg.brokers
        ))
    }
}
