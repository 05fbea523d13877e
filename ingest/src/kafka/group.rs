//! The consumer-group member: rebalances ask the processor, batches go to it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inferwatch_schemas::RawBatch;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

use super::errors::ErrorLog;
use super::orphans::{Orphans, Unread};
use super::poll::{poll_batches, Ready};
use super::{
    assigned, client_config, kafka_err, partitions_of, watermarks, KafkaSourceConfig,
    PartitionOwner,
};
use crate::source::{Behind, Source, SourceError};

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
    /// Set when leaving the group: what is assigned now is handed back right away.
    leaving: AtomicBool,
    errors: ErrorLog,
    /// Per partition of `topic`: its start, its end (last stable offset when known) and
    /// the client's own lag, from the client's statistics (`statistics.interval.ms`).
    ends: Mutex<BTreeMap<i32, PartitionEnds>>,
}

impl ClientContext for Context {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.keep_ends(&statistics);
    }

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

/// Where a partition starts and ends, and how far behind the client counts itself; -1
/// where the client does not know (yet).
#[derive(Debug, Clone, Copy)]
struct PartitionEnds {
    start: i64,
    end: i64,
    client_lag: i64,
}

impl Context {
    /// Keeps where each partition of the topic ends, for [`Source::lag`] without a round
    /// trip to the brokers.
    fn keep_ends(&self, stats: &rdkafka::Statistics) {
        let Some(topic) = stats.topics.get(&self.topic) else {
            return;
        };
        let ends = topic
            .partitions
            .values()
            .filter(|p| p.partition >= 0)
            .map(|p| {
                let end = if p.ls_offset >= 0 {
                    p.ls_offset
                } else {
                    p.hi_offset
                };
                let ends = PartitionEnds {
                    start: p.lo_offset,
                    end,
                    client_lag: p.consumer_lag,
                };
                (p.partition, ends)
            });
        *self.ends.lock().expect("not poisoned") = ends.collect();
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
        let parts = partitions_of(tpl, &self.topic);
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
                let mut resumed = Vec::new();
                for (p, from) in self.owner.assigned(&self.topic, &parts) {
                    if let Some(off) = from {
                        resumed.push((p, off));
                        self.starts.lock().expect("not poisoned").push((p, off));
                        if let Err(e) =
                            tpl.set_partition_offset(&self.topic, p, Offset::Offset(off))
                        {
                            tracing::error!("cannot start partition {p} at offset {off}: {e}");
                        }
                    }
                }
                if self.leaving.load(Ordering::SeqCst) {
                    self.hand_back(consumer, &parts);
                    // Nothing is committed after the assign call below: a closing consumer
                    // takes that call as an unassign, and a commit still in flight when it
                    // terminates aborts librdkafka (rd_kafka_cgrp_terminated asserts).
                    resumed.clear();
                }
                let r = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = r {
                    tracing::error!("assigning partitions {parts:?} failed: {e}");
                }
                // The group sees where the checkpoints resume, even before anything new
                // arrives: an offset that stays behind looks like a partition nobody reads.
                if !resumed.is_empty() {
                    commit(consumer, &self.topic, &resumed, CommitMode::Async);
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                tracing::info!(
                    "{} partitions {parts:?} of {}",
                    if lost { "lost" } else { "revoked" },
                    self.topic
                );
                self.release(consumer, &parts, lost);
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

impl Context {
    /// Partitions handed to a member on its way out (a coordinator may give partitions
    /// nobody held to a leaving member; seen with Tansu): the ones read to their end close
    /// their last windows, then all are checkpointed, released and committed, before the
    /// assign call, while the group still waits for it.
    fn hand_back(&self, consumer: &BaseConsumer<Self>, parts: &[i32]) {
        let ends: Vec<(i32, i64)> = parts
            .iter()
            .filter_map(|&p| Some((p, watermarks(consumer, &self.topic, p)?.1)))
            .collect();
        self.owner.assigned_while_leaving(&self.topic, &ends);
        self.release(consumer, parts, false);
    }

    /// The owner checkpoints and lets go of `parts`; their checkpointed offsets are
    /// committed unless they were lost (another member may own them already). Messages
    /// polled for them are dropped by `next_batch`.
    fn release(&self, consumer: &BaseConsumer<Self>, parts: &[i32], lost: bool) {
        let commits = self.owner.revoked(&self.topic, parts, lost);
        self.revoked
            .lock()
            .expect("not poisoned")
            .extend_from_slice(parts);
        if !lost && !commits.is_empty() {
            commit(consumer, &self.topic, &commits, CommitMode::Sync);
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
    ready: Ready,
    /// Next offset per partition, where known: names the partition of an unreadable batch.
    positions: BTreeMap<i32, i64>,
    /// When the last message arrived: a quiet member looks for partitions nobody reads.
    last_message: Instant,
    orphans: Orphans,
}

/// How long a member is quiet before it looks for partitions nobody reads, and how often.
const QUIET: Duration = Duration::from_secs(5);

/// What the group member uses unless `[kafka.properties]` says otherwise.
const SESSION_TIMEOUT_MS: u64 = 10_000;

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
                ("session.timeout.ms", &SESSION_TIMEOUT_MS.to_string()),
                ("heartbeat.interval.ms", "1000"),
                ("max.poll.interval.ms", "300000"),
                // Where each partition ends, for the consumer lag the processor reports.
                ("statistics.interval.ms", "2000"),
            ],
        );
        let context = Context {
            topic: cfg.topic.clone(),
            owner,
            rebalanced: AtomicBool::new(false),
            revoked: Mutex::new(Vec::new()),
            starts: Mutex::new(Vec::new()),
            joined: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            errors: ErrorLog::new("kafka", &cfg.properties),
            ends: Mutex::new(BTreeMap::new()),
        };
        let consumer: BaseConsumer<Context> =
            cc.create_with_context(context).map_err(kafka_err(cfg))?;
        consumer.subscribe(&[&cfg.topic]).map_err(kafka_err(cfg))?;
        let session_ms = cfg.properties.get("session.timeout.ms");
        let session = Duration::from_millis(
            session_ms
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(SESSION_TIMEOUT_MS),
        );
        Ok(Self {
            consumer,
            name: Arc::from(cfg.topic.as_str()),
            brokers: cfg.brokers.clone(),
            poll_wait: cfg.poll_wait,
            ready: Ready::default(),
            positions: BTreeMap::new(),
            last_message: Instant::now(),
            orphans: Orphans::new(cfg.commit_interval, session),
        })
    }
}

impl KafkaSource {
    fn watermarks(&self, partition: i32) -> Option<(i64, i64)> {
        watermarks(&self.consumer, &self.name, partition)
    }

    /// While quiet, looks for partitions nobody reads every [`QUIET`], and rejoins the group
    /// when one has been left for too long.
    fn watch_orphans(&mut self) {
        let now = Instant::now();
        let due_check = self
            .orphans
            .last_check
            .is_none_or(|t| now.duration_since(t) >= QUIET);
        if now.duration_since(self.last_message) >= QUIET && due_check {
            self.check_orphans(now);
        }
    }

    fn check_orphans(&mut self, now: Instant) {
        let ctx = self.consumer.context();
        if !ctx.joined.load(Ordering::SeqCst) || ctx.leaving.load(Ordering::SeqCst) {
            return;
        }
        let held = assigned(&self.consumer, &self.name);
        self.orphans.check(&self.consumer, &self.name, &held, now);
        let due = self.orphans.due();
        if !due.is_empty() {
            self.rejoin(&due);
            self.orphans.rejoined(now);
        }
    }

    /// Leaves the group and joins it again, so that its coordinator assigns every partition
    /// afresh. What is held is revoked first (checkpointed and committed, as in any
    /// rebalance).
    fn rejoin(&mut self, orphans: &[Unread]) {
        let parts: Vec<i32> = orphans.iter().map(|u| u.partition).collect();
        let unread: u64 = orphans.iter().map(|u| u.messages).sum();
        let still = orphans
            .iter()
            .map(|u| u.still_for)
            .min()
            .unwrap_or_default();
        tracing::warn!(
            "partitions {parts:?} of {} hold {unread} unread messages and no member of the \
             group has read them for {}s: rejoining the group so that they are assigned again",
            self.name,
            still.as_secs()
        );
        self.ready.batches.clear();
        self.consumer.unsubscribe();
        // The revocation runs inside a poll. Messages polled meanwhile are dropped: the
        // checkpoint of their partition says where its next owner starts.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !assigned(&self.consumer, &self.name).is_empty() && Instant::now() < deadline {
            let _ = self.consumer.poll(Duration::from_millis(100));
        }
        if let Err(e) = self.consumer.subscribe(&[&self.name]) {
            tracing::error!("subscribing to {} again failed: {e}", self.name);
        }
    }

    /// Leaves the group: the owner is asked to checkpoint every partition first.
    fn leave(&mut self) {
        self.ready.batches.clear();
        self.consumer
            .context()
            .leaving
            .store(true, Ordering::SeqCst);
        let assigned = assigned(&self.consumer, &self.name);
        if !assigned.is_empty() {
            self.consumer
                .context()
                .release(&self.consumer, &assigned, false);
        }
        self.consumer.unsubscribe();
        self.close_consumer();
    }

    /// Leaves the group now, serving the rebalance callbacks that come on the way out:
    /// they run only inside a poll, and a coordinator may still hand this member partitions
    /// as it leaves. Served when the consumer is dropped, after the run's report, their
    /// last windows were never closed (the pipeline had stopped writing). Polled messages
    /// are dropped: the next owner reads them from the checkpoint.
    fn close_consumer(&mut self) {
        if let Err(e) = self.consumer.close_queue() {
            tracing::warn!("leaving the group of {}: {e}", self.name);
            return;
        }
        let deadline = Instant::now() + LEAVE_WAIT;
        while !self.consumer.closed() && Instant::now() < deadline {
            let _ = self.consumer.poll(Duration::from_millis(100));
        }
        if !self.consumer.closed() {
            tracing::warn!(
                "leaving the group of {} took longer than {}s; the group's coordinator \
                 reassigns its partitions once its session times out",
                self.name,
                LEAVE_WAIT.as_secs()
            );
        }
    }
}

/// How long leaving the group may take before the run ends anyway.
const LEAVE_WAIT: Duration = Duration::from_secs(30);

impl Source for KafkaSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_batch(&mut self, max: usize) -> Result<Option<RawBatch>, SourceError> {
        if let Some(r) = self.ready.take() {
            return r.map(Some);
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
        if pending.is_empty() && failed.is_none() {
            self.watch_orphans();
        } else {
            self.last_message = Instant::now();
        }
        self.ready.refill(pending, failed, &self.name)
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

    fn lag(&self) -> Option<Vec<(i32, u64)>> {
        let ends = self
            .consumer
            .context()
            .ends
            .lock()
            .expect("not poisoned")
            .clone();
        let mut out = Vec::new();
        for p in assigned(&self.consumer, &self.name) {
            let Some(&e) = ends.get(&p) else {
                continue;
            };
            // What was handed on decides; before the first message, the client's count,
            // else the whole partition (an empty one is caught up).
            let lag = match self.positions.get(&p) {
                Some(&read) if e.end >= 0 => (e.end - read).max(0),
                _ if e.client_lag >= 0 => e.client_lag,
                // The start may be unknown yet: from 0 is an upper bound.
                _ if e.end >= 0 => e.end - e.start.max(0),
                _ => continue,
            };
            out.push((p, lag as u64));
        }
        Some(out)
    }

    fn behind(&mut self) -> Behind {
        let Ok(assignment) = self.consumer.assignment() else {
            return Behind::Unanswered("the client could not list its partitions".into());
        };
        let assigned = partitions_of(&assignment, &self.name);
        let client_positions = self.consumer.position().ok();
        let mut out = Vec::new();
        for p in assigned {
            let Some((low, high)) = self.watermarks(p) else {
                return Behind::Unanswered(format!(
                    "the brokers did not say where partition {p} ends"
                ));
            };
            let client = client_positions
                .as_ref()
                .and_then(|t| t.find_partition(&self.name, p))
                .and_then(|e| e.offset().to_raw())
                .filter(|&o| o >= 0);
            // What was handed on decides (the client's position can stay ahead after a seek
            // back); nothing known yet: the whole partition may be ahead.
            let ours = self.positions.get(&p).copied();
            let read = ours.or(client).unwrap_or(low);
            // A transaction's commit marker at the end is never delivered; the client
            // steps past it.
            let marker = high - read == 1 && client.is_some_and(|c| c >= high);
            if high <= read || marker {
                continue;
            }
            out.push((p, (high - read) as u64));
            // Quiet while behind: ask for the partition again from where it stands, in case
            // its fetch stalled (seen after a seek back during a rebalance).
            if let Some(at) = ours {
                self.seek(p, at);
            }
        }
        // Partitions nobody reads are waited for too (a rejoin gets them assigned), unless
        // someone is seen reading them.
        self.check_orphans(Instant::now());
        out.extend(self.orphans.waited_for().map(|u| (u.partition, u.messages)));
        Behind::Partitions(out)
    }

    fn start_of(&mut self, partition: i32) -> Option<i64> {
        self.watermarks(partition).map(|(low, _)| low)
    }

    fn commit(&mut self, offsets: &[(i32, i64)]) {
        let topic = self.name.clone();
        commit(&self.consumer, &topic, offsets, CommitMode::Async);
    }

    fn close(&mut self) {
        self.leave();
    }

    fn still_assigned(&self, partition: i32) -> bool {
        assigned(&self.consumer, &self.name).contains(&partition)
    }

    fn seek(&mut self, partition: i32, offset: i64) -> bool {
        // Batches already buffered for the partition come from the old position.
        self.ready.batches.retain(|b| b.partition != partition);
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
