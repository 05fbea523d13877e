//! The Kafka source: a consumer-group member that hands raw payloads, one partition per
//! batch, to the processor.
//!
//! Rebalances are where exactly-once is won or lost, so the source does not decide what to
//! do with partition state itself: it asks a [`PartitionOwner`] (the processor) from inside
//! the rebalance callback. Before a partition goes, its owner makes its progress durable and
//! names the offset to commit; when a partition arrives, its owner names the offset its
//! checkpoint resumes from and the consumer starts there. Both happen synchronously, before
//! another group member can take the partition over.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inferwatch_schemas::kafka::{self, Role};
use inferwatch_schemas::{ClientProperties, RawBatch};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};

use crate::source::{Source, SourceError};

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
}

impl KafkaSourceConfig {
    pub fn new(brokers: &str, group: &str, topic: &str) -> Self {
        Self {
            brokers: brokers.into(),
            group: group.into(),
            topic: topic.into(),
            properties: ClientProperties::new(),
            poll_wait: Duration::from_millis(100),
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
}

struct Context {
    topic: String,
    owner: Arc<dyn PartitionOwner>,
    /// Set by a rebalance so that `next_batch` stops polling and drops what it buffered for
    /// partitions that left.
    rebalanced: AtomicBool,
    revoked: Mutex<Vec<i32>>,
    /// Start offsets of partitions just assigned from a checkpoint, for [`KafkaSource`]'s
    /// position tracking.
    starts: Mutex<Vec<(i32, i64)>>,
    /// Set at the first assignment: the group and the brokers were reached.
    joined: AtomicBool,
    errors: ErrorLog,
}

/// Broker-level errors, logged once per kind until messages flow again rather than once per
/// retry (librdkafka alternates between kinds while a broker is down).
#[derive(Default)]
struct ErrorLog {
    /// What the client reads, for the log lines: "kafka" or "kafka (feedback)".
    label: &'static str,
    seen: Mutex<BTreeSet<String>>,
    /// Secrets to keep out of the log lines.
    properties: ClientProperties,
    /// librdkafka's text for the last error that concerns the data itself (a batch it could
    /// not read): the consumer's poll returns only the code, this keeps the position.
    last_unreadable: Mutex<Option<String>>,
    /// The last connection-level error (TLS, SASL, unreachable brokers), for a run that
    /// never got going.
    last: Mutex<Option<String>>,
}

impl ErrorLog {
    fn new(label: &'static str, properties: &ClientProperties) -> Self {
        Self {
            label,
            properties: properties.clone(),
            ..Self::default()
        }
    }

    fn report(&self, error: KafkaError, reason: &str) {
        let reason = self.properties.scrub(reason);
        if error.rdkafka_error_code().is_some_and(unreadable_code) {
            *self.last_unreadable.lock().expect("not poisoned") = Some(reason);
            return;
        }
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AutoOffsetReset) {
            // The position asked for is gone (retention deleted it, or it is past the end):
            // events between were never read. Not ours to hide.
            tracing::error!(
                "{}: {reason}: events between the checkpoint and the new position were \
                 deleted by the brokers before this processor read them",
                self.label
            );
            return;
        }
        *self.last.lock().expect("not poisoned") = Some(format!("{error}: {reason}"));
        let kind = format!("{:?}", error.rdkafka_error_code());
        if self.seen.lock().expect("not poisoned").insert(kind) {
            tracing::warn!(
                "{}: {error}: {reason} (retrying; check that the brokers are reachable and \
                 the security settings in [kafka.properties])",
                self.label
            );
        }
    }

    /// A message arrived: trouble seen before is over.
    fn receiving(&self) {
        let mut seen = self.seen.lock().expect("not poisoned");
        if !seen.is_empty() {
            seen.clear();
            tracing::info!("{}: receiving again", self.label);
        }
    }
}

/// A consumer of `cfg`'s group; `extra` adds to the settings every consumer shares.
fn client_config(cfg: &KafkaSourceConfig, extra: &[(&str, &str)]) -> ClientConfig {
    let role = Role::Consumer { group: &cfg.group };
    kafka::client_config(&cfg.brokers, role, extra, &cfg.properties)
}

/// Error codes that concern the data rather than the connection: a batch compressed with a
/// codec the client lacks, corrupt compressed bytes, a malformed or oversized batch.
/// librdkafka reports such a batch once and moves past it, so a source that saw one stops.
fn unreadable_code(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        BadCompression
            | NotImplemented
            | BadMessage
            | InvalidMessage
            | InvalidMessageSize
            | MessageSizeTooLarge
            | UnsupportedCompressionType
            | UnsupportedForMessageFormat
            | InvalidRecord
    )
}

/// The offset librdkafka names in its text ("... message at 1234 of 56 bytes failed",
/// "Message at offset 1234 might be too large ...").
fn offset_in(reason: &str) -> Option<i64> {
    let words: Vec<&str> = reason.split_whitespace().collect();
    words.windows(2).find_map(|w| match w[0] {
        "at" | "offset" => w[1].trim_end_matches([',', ':', ')']).parse().ok(),
        _ => None,
    })
}

/// The error for a batch the client could not read. librdkafka's poll names only the code;
/// the partition is the one whose next offset the batch covers, among `positions` (next
/// offset per partition, where known) and the current assignment.
fn unreadable_error<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    errors: &ErrorLog,
    topic: &str,
    positions: &BTreeMap<i32, i64>,
    e: &KafkaError,
) -> SourceError {
    let reason = errors
        .last_unreadable
        .lock()
        .expect("not poisoned")
        .take()
        .unwrap_or_else(|| e.to_string());
    let offset = offset_in(&reason);
    let assigned: Vec<i32> = consumer
        .assignment()
        .map(|t| {
            t.elements_for_topic(topic)
                .iter()
                .map(|e| e.partition())
                .collect()
        })
        .unwrap_or_default();
    let mut candidates: Vec<i32> = assigned
        .iter()
        .copied()
        .filter(|p| match (positions.get(p), offset) {
            (Some(&next), Some(at)) => next >= at,
            _ => true,
        })
        .collect();
    let exact: Vec<i32> = candidates
        .iter()
        .copied()
        .filter(|p| offset.is_some() && positions.get(p).copied() == offset)
        .collect();
    if exact.len() == 1 && candidates.iter().all(|p| positions.contains_key(p)) {
        candidates = exact;
    }
    SourceError::Unreadable {
        topic: topic.to_string(),
        partitions: candidates,
        offset,
        reason,
    }
}

/// Polls up to `max` messages for at most `wait`, one batch per partition. `interrupted` is
/// asked after every poll, also one that returned nothing (librdkafka returns nothing right
/// after it ran a rebalance callback); when it says so, polling stops (it may drop batches
/// first).
/// `positions` tracks the next offset of every partition seen. A batch the client cannot
/// read ends the poll: what came before it is returned with the
/// [`SourceError::Unreadable`], which the caller reports once that is handed on.
fn poll_batches<C: ConsumerContext>(
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

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        // Connection failures also arrive through `error`, once per kind: keep these quiet.
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(target: "librdkafka", "{fac}: {msg}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "{fac}: {msg}"),
            _ => tracing::debug!(target: "librdkafka", "{fac}: {msg}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.report(error, reason);
    }
}

impl ConsumerContext for Context {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let parts: Vec<i32> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        self.rebalanced.store(true, Ordering::SeqCst);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.joined.store(true, Ordering::SeqCst);
                // An earlier revocation of a partition that is ours again must not drop
                // the first messages of its new assignment.
                self.revoked
                    .lock()
                    .expect("not poisoned")
                    .retain(|p| !parts.contains(p));
                tracing::info!("assigned partitions {parts:?} of {}", self.topic);
                for (p, from) in self.owner.assigned(&self.topic, &parts) {
                    if let Some(off) = from {
                        self.starts.lock().expect("not poisoned").push((p, off));
                        if let Err(e) =
                            tpl.set_partition_offset(&self.topic, p, Offset::Offset(off))
                        {
                            tracing::error!("cannot start partition {p} at offset {off}: {e}");
                        }
                    }
                }
                let r = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = r {
                    tracing::error!("assigning partitions {parts:?} failed: {e}");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                tracing::info!(
                    "{} partitions {parts:?} of {}",
                    if lost { "lost" } else { "revoked" },
                    self.topic
                );
                let commits = self.owner.revoked(&self.topic, &parts, lost);
                self.revoked.lock().expect("not poisoned").extend(&parts);
                if !lost && !commits.is_empty() {
                    commit(consumer, &self.topic, &commits, CommitMode::Sync);
                }
                let r = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
                    tracing::error!("unassigning partitions {parts:?} failed: {e}");
                }
            }
            other => {
                tracing::error!("rebalance failed: {other:?}; leaving the assignment as it was");
            }
        }
    }
}

fn commit(consumer: &BaseConsumer<Context>, topic: &str, offsets: &[(i32, i64)], mode: CommitMode) {
    let mut tpl = TopicPartitionList::new();
    for &(p, off) in offsets {
        if tpl
            .add_partition_offset(topic, p, Offset::Offset(off))
            .is_err()
        {
            return;
        }
    }
    // Offsets are only a hint (checkpoints are the truth), so a failed commit is logged.
    if let Err(e) = consumer.commit(&tpl, mode) {
        tracing::warn!(
            "committing offsets {offsets:?} of {topic} failed: {e} (checkpoints still hold them)"
        );
    }
}

/// A consumer-group member reading one topic.
pub struct KafkaSource {
    consumer: BaseConsumer<Context>,
    name: Arc<str>,
    brokers: String,
    poll_wait: Duration,
    ready: VecDeque<RawBatch>,
    /// Next offset per partition, where known: names the partition of an unreadable batch.
    positions: BTreeMap<i32, i64>,
    /// An unreadable batch, reported once what was read before it is handed on.
    failed: Option<SourceError>,
}

impl KafkaSource {
    /// Joins the group and subscribes. Brokers need not be up yet: the consumer keeps
    /// retrying, and says so in the log.
    pub fn new(
        cfg: &KafkaSourceConfig,
        owner: Arc<dyn PartitionOwner>,
    ) -> Result<Self, SourceError> {
        let cc = client_config(
            cfg,
            &[
                ("partition.assignment.strategy", "cooperative-sticky"),
                ("session.timeout.ms", "10000"),
                ("heartbeat.interval.ms", "1000"),
                ("max.poll.interval.ms", "300000"),
            ],
        );
        let context = Context {
            topic: cfg.topic.clone(),
            owner,
            rebalanced: AtomicBool::new(false),
            revoked: Mutex::new(Vec::new()),
            starts: Mutex::new(Vec::new()),
            joined: AtomicBool::new(false),
            errors: ErrorLog::new("kafka", &cfg.properties),
        };
        let consumer: BaseConsumer<Context> =
            cc.create_with_context(context).map_err(kafka_err(cfg))?;
        consumer.subscribe(&[&cfg.topic]).map_err(kafka_err(cfg))?;
        Ok(Self {
            consumer,
            name: Arc::from(cfg.topic.as_str()),
            brokers: cfg.brokers.clone(),
            poll_wait: cfg.poll_wait,
            ready: VecDeque::new(),
            positions: BTreeMap::new(),
            failed: None,
        })
    }
}

impl KafkaSource {
    /// Leaves the group: the owner is asked to checkpoint every partition first.
    fn leave(&mut self) {
        self.ready.clear();
        let assigned: Vec<i32> = self
            .consumer
            .assignment()
            .map(|t| {
                t.elements_for_topic(&self.name)
                    .iter()
                    .map(|e| e.partition())
                    .collect()
            })
            .unwrap_or_default();
        if !assigned.is_empty() {
            let ctx = self.consumer.context();
            let commits = ctx.owner.revoked(&ctx.topic, &assigned, false);
            commit(&self.consumer, &ctx.topic, &commits, CommitMode::Sync);
        }
        self.consumer.unsubscribe();
    }
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

impl Source for KafkaSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_batch(&mut self, max: usize) -> Result<Option<RawBatch>, SourceError> {
        if let Some(b) = self.ready.pop_front() {
            return Ok(Some(b));
        }
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let ctx = self.consumer.context();
        let mut revoked = Vec::new();
        let (pending, failed) = poll_batches(
            &self.consumer,
            &ctx.errors,
            &self.name,
            max,
            self.poll_wait,
            &mut self.positions,
            |pending| {
                if !ctx.rebalanced.swap(false, Ordering::SeqCst) {
                    return false;
                }
                // Messages polled before a revocation belong to the partition's next owner.
                for p in std::mem::take(&mut *ctx.revoked.lock().expect("not poisoned")) {
                    pending.remove(&p);
                    revoked.push(p);
                }
                true
            },
        );
        for p in revoked {
            self.positions.remove(&p);
        }
        self.positions.extend(std::mem::take(
            &mut *ctx.starts.lock().expect("not poisoned"),
        ));
        self.ready.extend(pending.into_values());
        self.failed = failed;
        if self.ready.is_empty() {
            if let Some(e) = self.failed.take() {
                return Err(e);
            }
        }
        Ok(Some(
            self.ready
                .pop_front()
                .unwrap_or_else(|| RawBatch::new(self.name.clone(), 0)),
        ))
    }

    fn is_bounded(&self) -> bool {
        false
    }

    fn stalled(&self) -> Option<String> {
        let ctx = self.consumer.context();
        if ctx.joined.load(Ordering::SeqCst) {
            return None;
        }
        let last = ctx.errors.last.lock().expect("not poisoned").clone()?;
        Some(format!(
            "never got a partition of {} from {}: {last}. Check the brokers and the security \
             settings in [kafka.properties] (security.protocol, ssl.ca.location, \
             sasl.mechanism, sasl.username, sasl.password)",
            self.name, self.brokers
        ))
    }

    fn commit(&mut self, offsets: &[(i32, i64)]) {
        let topic = self.name.clone();
        commit(&self.consumer, &topic, offsets, CommitMode::Async);
    }

    fn close(&mut self) {
        self.leave();
    }

    fn seek(&mut self, partition: i32, offset: i64) -> bool {
        // Batches already buffered for the partition come from the old position.
        self.ready.retain(|b| b.partition != partition);
        self.positions.insert(partition, offset);
        match self.consumer.seek(
            &self.name,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(10),
        ) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    "seeking partition {partition} of {} to {offset}: {e}",
                    self.name
                );
                false
            }
        }
    }
}

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
    ready: VecDeque<RawBatch>,
    positions: BTreeMap<i32, i64>,
    failed: Option<SourceError>,
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
            ready: VecDeque::new(),
            positions: BTreeMap::new(),
            failed: None,
        })
    }
}

impl Source for KafkaFollower {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_batch(&mut self, max: usize) -> Result<Option<RawBatch>, SourceError> {
        if let Some(b) = self.ready.pop_front() {
            return Ok(Some(b));
        }
        if let Some(e) = self.failed.take() {
            return Err(e);
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
        self.ready.extend(pending.into_values());
        self.failed = failed;
        if self.ready.is_empty() {
            if let Some(e) = self.failed.take() {
                return Err(e);
            }
        }
        Ok(Some(
            self.ready
                .pop_front()
                .unwrap_or_else(|| RawBatch::new(self.name.clone(), 0)),
        ))
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
        self.ready.retain(|b| b.partition != partition);
        self.positions.remove(&partition);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.name, partition);
        if let Err(e) = self.consumer.incremental_unassign(&tpl) {
            tracing::warn!("leaving partition {partition} of {}: {e}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_read_from_librdkafka_texts() {
        let decompress = "Decompression (codec 0x1) of message at 4096 of 812 bytes failed: \
                          Local: Not implemented";
        assert_eq!(offset_in(decompress), Some(4096));
        let large = "Message at offset 77 might be too large to fetch, try increasing \
                     receive.message.max.bytes";
        assert_eq!(offset_in(large), Some(77));
        assert_eq!(offset_in("Local: Bad compressed data"), None);
        assert!(unreadable_code(RDKafkaErrorCode::BadCompression));
        assert!(!unreadable_code(RDKafkaErrorCode::BrokerTransportFailure));
    }
}
