//! Wires one source through decode → window operators → Parquet sinks, with checkpoints.
//!
//! Two threads: this one reads, decodes and aggregates; a sink thread encodes and writes
//! Parquet (and Kafka outputs), fed through a small bounded channel so a slow disk slows the
//! source down instead of filling memory.
//!
//! Each source partition has its own window operator. Kafka keys events by `service/model`,
//! so a key's windows live in one partition, and a partition's windows close on its own
//! watermark: what a window holds depends only on the order of that partition's events,
//! never on how polls interleaved partitions. That is what lets a checkpoint move a
//! partition to another processor, or a crashed one replay it, and produce the same rows.
//!
//! Checkpoint protocol, per partition: the sink thread completes the partition's open files
//! (fsync, rename), then writes the checkpoint (offsets + operator state) atomically, then
//! the offset is committed to Kafka as a hint. On restore, files the partition wrote at or
//! after the checkpoint's offset are removed and rewritten by the replay; file names come
//! from offsets and windows, so nothing is duplicated.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::TimestampMillisecondType;
use inferwatch_ingest::{PartitionOwner, Source};
use inferwatch_processor::{OperatorStats, SourceId, WindowOperator};
use inferwatch_schemas::feedback::UnmatchedBuilder;
use inferwatch_schemas::tables::feedback_unmatched_schema;
use inferwatch_schemas::tables::{dead_letter_schema, events as ev, events_schema};
use inferwatch_schemas::{
    decode_feedback, DeadLetterBuilder, EventDecoder, Feedback, Limits, Notice, RawBatch, Unmatched,
};
use inferwatch_sink::{
    Checkpoint, CheckpointStore, KafkaOutput, KafkaOutputConfig, ParquetOptions, PositionedTable,
    SinkError, Store, WindowTable,
};

use crate::alerting::Enqueuer;
use crate::config::Config;

/// Live counters for the progress line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub elapsed: Duration,
    pub payloads: u64,
    pub events: u64,
    pub dead_letters: u64,
    pub late_events: u64,
    pub windows_closed: u64,
    pub metric_rows: u64,
    pub checkpoints: u64,
    pub partitions: usize,
    pub source_done: Option<(u64, u64)>,
    /// Feedback counters, when the run has a feedback source.
    pub feedback: Option<FeedbackCounts>,
    /// Sessions ended early past `loops.max_sessions`.
    pub sessions_evicted: u64,
}

/// What became of the feedback events of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedbackCounts {
    pub received: u64,
    /// Not feedback at all (bad JSON, missing fields): in `dead_letter`.
    pub invalid: u64,
    pub joined: u64,
    pub unknown: u64,
    pub expired: u64,
    pub duplicate: u64,
    pub unusable: u64,
    /// Waiting now for their feedback / dropped past `feedback.max_pending`.
    pub waiting: u64,
    pub evicted: u64,
    /// Metric rows re-emitted with a higher `revision`.
    pub revised_rows: u64,
}

/// What a finished run reports.
#[derive(Debug)]
pub struct RunReport {
    pub progress: Progress,
    /// Window size of the run, ms.
    pub window_size_ms: i64,
    pub files_written: u64,
    /// Where the tables were written.
    pub store: Store,
    /// Wall time the processing thread waited for checkpoints (rebalances, shutdown).
    pub checkpoint_wait: Duration,
    /// Time the sink thread spent completing files and writing checkpoints.
    pub checkpoint_time: Duration,
}

/// How a run treats its source.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Checkpoint every `checkpoint.interval` and restore partitions from checkpoints (Kafka).
    pub checkpoints: bool,
    /// Stop after the source has been quiet this long, closing every window (backfills,
    /// tests). Without it an unbounded source runs until Ctrl-C / SIGTERM.
    pub stop_when_idle: Option<Duration>,
    /// Also send dead letters and metrics to Kafka topics.
    pub kafka_output: Option<KafkaOutputConfig>,
    /// Where alert notices go (Slack, Kafka) through the outbox; `None`: table only.
    pub notify: Option<Enqueuer>,
}

enum ToSink {
    /// Processing of `partition` (re)starts at offset `from`: its files from `from` on go.
    Start {
        partition: i32,
        from: i64,
    },
    Events {
        partition: i32,
        events: RecordBatch,
        dead: Option<RecordBatch>,
        first: i64,
        last: i64,
    },
    Metrics {
        partition: i32,
        batch: RecordBatch,
    },
    CalibrationBins {
        partition: i32,
        batch: RecordBatch,
    },
    /// `alerts` rows of closed windows, and the notices among them to deliver.
    Alerts {
        partition: i32,
        rows: RecordBatch,
        notices: Vec<Notice>,
    },
    /// Metric and reliability-bin rows re-emitted after late labels.
    Revisions {
        partition: i32,
        seq: u64,
        metrics: RecordBatch,
        bins: Option<RecordBatch>,
    },
    /// A checkpoint restored `partition` at revision `seq`, session cut `sessions_at` and
    /// windows emitted through `emitted_through`: later revision, session and alert files go.
    RevisionsFrom {
        partition: i32,
        seq: u64,
        sessions_at: Option<i64>,
        emitted_through: Option<i64>,
    },
    /// `budgets` rows of closed windows.
    Budgets {
        partition: i32,
        batch: RecordBatch,
    },
    /// `sessions` rows of sessions that ended, cut at window close `at`.
    Sessions {
        partition: i32,
        at: i64,
        batch: RecordBatch,
    },
    /// Reading feedback partition `partition` of `source` (re)starts at `from`: its
    /// `dead_letter` and `feedback_unmatched` files from there on go.
    FeedbackStart {
        source: Arc<str>,
        partition: i32,
        from: i64,
    },
    /// Rows about feedback events of `source`'s `partition`: bad payloads and feedback that
    /// joined nothing.
    Feedback {
        source: Arc<str>,
        partition: i32,
        dead: Option<RecordBatch>,
        unmatched: Option<RecordBatch>,
        first: i64,
        last: i64,
    },
    /// Complete every open file (time-based roll for sources without checkpoints).
    Flush,
    /// Answer once everything sent before has been handled.
    Barrier(SyncSender<()>),
    /// Complete the partition's files, then write its checkpoint. `release`: the partition
    /// leaves this processor. `done` gets the result when someone waits for it.
    Checkpoint {
        partition: i32,
        ckpt: Checkpoint,
        release: bool,
        done: Option<SyncSender<Result<()>>>,
    },
    /// The partition was lost to another processor: drop its open files, write nothing.
    Abort {
        partition: i32,
    },
}

struct SinkThread {
    data_dir: Store,
    source: String,
    max_rows: usize,
    parquet: ParquetOptions,
    events: HashMap<i32, (PositionedTable, PositionedTable)>,
    metrics: WindowTable,
    calibration_bins: WindowTable,
    sessions: WindowTable,
    budgets: WindowTable,
    alerts: WindowTable,
    /// Hands notices to the durable outbox of Slack and Kafka delivery, when configured.
    notify: Option<Enqueuer>,
    /// Per feedback partition: its `dead_letter` and `feedback_unmatched` tables.
    feedback: HashMap<i32, (PositionedTable, PositionedTable)>,
    store: CheckpointStore,
    kafka: Option<KafkaOutput>,
    /// (partition, next offset) of each durable checkpoint, for the Kafka commit.
    acks: Sender<(i32, i64)>,
    /// Time spent completing files and writing checkpoints.
    checkpoint_time: Duration,
    /// Per partition, the offsets (events, feedback) its last durable checkpoint covers, or
    /// where it started: what a processor that lost the partition cleans up from.
    committed: HashMap<i32, (i64, Option<i64>)>,
    /// Partitions another processor took over (found at a commit), shared with the main
    /// loop, which stops processing them.
    fenced: Arc<Mutex<BTreeSet<i32>>>,
}

impl SinkThread {
    fn tables(&mut self, partition: i32) -> Result<&mut (PositionedTable, PositionedTable)> {
        if !self.events.contains_key(&partition) {
            let source = self.source.clone();
            let mut events =
                self.positioned("events", events_schema(), ev::TIMESTAMP, &source, partition)?;
            let mut dead =
                self.positioned("dead_letter", dead_letter_schema(), 3, &source, partition)?;
            let generation = self.store.generation(partition);
            events.set_generation(generation);
            dead.set_generation(generation);
            self.events.insert(partition, (events, dead));
        }
        Ok(self.events.get_mut(&partition).expect("inserted above"))
    }

    /// Completes the partition's files, and those of its co-partitioned feedback.
    /// A table whose files cover offsets of `source`'s `partition`.
    fn positioned(
        &self,
        table: &str,
        schema: datafusion::arrow::datatypes::SchemaRef,
        ts_col: usize,
        source: &str,
        partition: i32,
    ) -> Result<PositionedTable> {
        Ok(PositionedTable::new(
            &self.data_dir,
            table,
            schema,
            ts_col,
            source,
            partition,
            self.max_rows,
            &self.parquet,
        )?)
    }

    /// The `dead_letter` and `feedback_unmatched` tables of a feedback partition.
    fn feedback_tables(
        &self,
        source: &str,
        partition: i32,
    ) -> Result<(PositionedTable, PositionedTable)> {
        let mut dead =
            self.positioned("dead_letter", dead_letter_schema(), 3, source, partition)?;
        let mut unmatched = self.positioned(
            "feedback_unmatched",
            feedback_unmatched_schema(),
            1,
            source,
            partition,
        )?;
        let generation = self.store.generation(partition);
        dead.set_generation(generation);
        unmatched.set_generation(generation);
        Ok((dead, unmatched))
    }

    fn flush(&mut self, partition: i32) -> Result<()> {
        if let Some((e, d)) = self.events.get_mut(&partition) {
            e.flush()?;
            d.flush()?;
        }
        if let Some((d, u)) = self.feedback.get_mut(&partition) {
            d.flush()?;
            u.flush()?;
        }
        Ok(())
    }

    fn handle(&mut self, msg: ToSink) -> Result<()> {
        match msg {
            ToSink::Start { partition, from } => {
                if let Some(n) = &self.notify {
                    n.open(partition)?;
                }
                self.committed.entry(partition).or_default().0 = from;
                // Tables made before the claim carry no generation: make them anew.
                if let Some((mut e, mut d)) = self.events.remove(&partition) {
                    e.abort()?;
                    d.abort()?;
                }
                let (e, d) = self.tables(partition)?;
                e.abort()?;
                d.abort()?;
                let removed = e.remove_from(from)? + d.remove_from(from)?;
                if removed > 0 {
                    tracing::info!("partition {partition}: removed {removed} files from offset {from} on, to be rewritten");
                }
            }
            ToSink::Events {
                partition,
                events,
                dead,
                first,
                last,
            } => {
                if let Some(n) = &self.notify {
                    // A partition's pending notices go out as soon as it is ours.
                    n.open(partition)?;
                }
                let (ev_table, dl_table) = self.tables(partition)?;
                let empty = RecordBatch::new_empty(dead_letter_schema());
                // Both tables roll together so they always cover the same offsets.
                let rolled = ev_table.append(&events, first, last)?;
                dl_table.append(dead.as_ref().unwrap_or(&empty), first, last)?;
                if !rolled.is_empty() {
                    dl_table.flush()?;
                }
                if let (Some(k), Some(d)) = (&self.kafka, &dead) {
                    k.dead_letters(d)?;
                }
            }
            ToSink::Metrics { partition, batch } => {
                self.metrics.write(&batch, partition)?;
                if let Some(k) = &self.kafka {
                    k.metrics(&batch)?;
                }
            }
            ToSink::CalibrationBins { partition, batch } => {
                self.calibration_bins.write(&batch, partition)?;
            }
            ToSink::Revisions {
                partition,
                seq,
                metrics,
                bins,
            } => {
                self.metrics.write_revision(&metrics, partition, seq)?;
                if let Some(b) = bins {
                    self.calibration_bins.write_revision(&b, partition, seq)?;
                }
                if let Some(k) = &self.kafka {
                    k.metrics(&metrics)?;
                }
            }
            ToSink::RevisionsFrom {
                partition,
                seq,
                sessions_at,
                emitted_through,
            } => {
                self.metrics.remove_revisions_after(partition, seq)?;
                self.calibration_bins
                    .remove_revisions_after(partition, seq)?;
                self.sessions
                    .remove_at_after(partition, sessions_at.unwrap_or(i64::MIN))?;
                // Alert rows of windows after the checkpoint are made again by the replay.
                if let Some(through) = emitted_through {
                    self.alerts.remove_windows_after(partition, through)?;
                }
            }
            ToSink::Budgets { partition, batch } => {
                self.budgets.write(&batch, partition)?;
            }
            ToSink::Alerts {
                partition,
                rows,
                notices,
            } => {
                self.alerts.write(&rows, partition)?;
                // In the outbox (fsynced) before the checkpoint that covers these windows;
                // a replay re-adds the same ids, which the outbox ignores.
                if let Some(n) = &self.notify {
                    n.enqueue(partition, &notices)?;
                }
            }
            ToSink::Sessions {
                partition,
                at,
                batch,
            } => {
                self.sessions.write_at(&batch, partition, at)?;
            }
            ToSink::FeedbackStart {
                source,
                partition,
                from,
            } => {
                self.committed.entry(partition).or_default().1 = Some(from);
                let (d, u) = self.feedback_tables(&source, partition)?;
                d.remove_from(from)?;
                u.remove_from(from)?;
                if let Some((mut d, mut u)) = self.feedback.insert(partition, (d, u)) {
                    d.abort()?;
                    u.abort()?;
                }
            }
            ToSink::Feedback {
                source,
                partition,
                dead,
                unmatched,
                first,
                last,
            } => {
                if !self.feedback.contains_key(&partition) {
                    let tables = self.feedback_tables(&source, partition)?;
                    self.feedback.insert(partition, tables);
                }
                let (d, u) = self.feedback.get_mut(&partition).expect("inserted above");
                if let Some(b) = &dead {
                    d.append(b, first, last)?;
                }
                if let Some(b) = &unmatched {
                    u.append(b, first, last)?;
                }
                if let (Some(k), Some(b)) = (&self.kafka, &dead) {
                    k.dead_letters(b)?;
                }
            }
            ToSink::Barrier(done) => {
                let _ = done.send(());
            }
            ToSink::Flush => {
                for (e, d) in self.events.values_mut() {
                    e.flush()?;
                    d.flush()?;
                }
            }
            ToSink::Checkpoint {
                partition,
                ckpt,
                release,
                done,
            } => {
                let r = self.checkpoint(partition, &ckpt, release);
                let ok = matches!(r, Ok(true));
                let r = r.map(|_| ());
                match done {
                    Some(done) => {
                        let _ = done.send(r);
                    }
                    None => r?,
                }
                if ok {
                    let _ = self.acks.send((partition, ckpt.next_offset));
                }
            }
            ToSink::Abort { partition } => {
                self.store.release(partition);
                self.committed.remove(&partition);
                if let Some(n) = &self.notify {
                    n.release(partition);
                }
                if let Some((mut e, mut d)) = self.events.remove(&partition) {
                    e.abort()?;
                    d.abort()?;
                }
                if let Some((mut d, mut u)) = self.feedback.remove(&partition) {
                    d.abort()?;
                    u.abort()?;
                }
            }
        }
        Ok(())
    }

    /// Completes the partition's files and commits its checkpoint. `Ok(false)`: another
    /// processor took the partition over; this one wrote it no more.
    fn checkpoint(&mut self, partition: i32, ckpt: &Checkpoint, release: bool) -> Result<bool> {
        let started = Instant::now();
        let held = self.store.generation(partition);
        self.flush(partition)?;
        if let Err(e) = self.store.save(partition, ckpt) {
            if let (SinkError::Fenced { .. }, Some(g)) = (&e, held) {
                self.drop_fenced(partition, g)?;
                self.fenced.lock().expect("not poisoned").insert(partition);
                return Ok(false);
            }
            return Err(e.into());
        }
        self.committed
            .insert(partition, (ckpt.next_offset, ckpt.feedback_offset));
        if release {
            self.events.remove(&partition);
            self.feedback.remove(&partition);
            self.committed.remove(&partition);
            self.store.release(partition);
            if let Some(n) = &self.notify {
                n.release(partition);
            }
        }
        self.checkpoint_time += started.elapsed();
        Ok(true)
    }

    /// Another processor took `partition` over while this one held generation `g`: delete
    /// what this one wrote after its last commit (files named with `g`, so never the new
    /// owner's) and stop writing the partition.
    fn drop_fenced(&mut self, partition: i32, g: u64) -> Result<()> {
        let (from, feedback_from) = self.committed.remove(&partition).unwrap_or_default();
        let mut removed = 0;
        if let Some((mut e, mut d)) = self.events.remove(&partition) {
            e.abort()?;
            d.abort()?;
            removed += e.remove_generation_from(g, from)? + d.remove_generation_from(g, from)?;
        }
        if let Some((mut d, mut u)) = self.feedback.remove(&partition) {
            d.abort()?;
            u.abort()?;
            if let Some(f) = feedback_from {
                removed += d.remove_generation_from(g, f)? + u.remove_generation_from(g, f)?;
            }
        }
        if let Some(n) = &self.notify {
            n.release(partition);
        }
        tracing::error!(
            "partition {partition} was taken over by another processor: removed the {removed} \
             files this one wrote after its last checkpoint (offset {from}); it writes the \
             partition no more"
        );
        Ok(())
    }

    fn run(mut self, rx: Receiver<ToSink>) -> Result<(u64, Duration)> {
        while let Ok(msg) = rx.recv() {
            self.handle(msg)?;
        }
        for (e, d) in self.events.values_mut().chain(self.feedback.values_mut()) {
            e.flush()?;
            d.flush()?;
        }
        if let Some(k) = &self.kafka {
            k.flush(Duration::from_secs(10));
        }
        let files = self.metrics.files_written()
            + self.calibration_bins.files_written()
            + self.sessions.files_written()
            + self.budgets.files_written()
            + self.alerts.files_written()
            + self
                .events
                .values()
                .chain(self.feedback.values())
                .map(|(e, d)| e.files_written() + d.files_written())
                .sum::<u64>();
        Ok((files, self.checkpoint_time))
    }
}

/// One source partition's processing state.
struct Part {
    op: WindowOperator,
    /// The first offset not yet processed; `None` until the partition's first payload when
    /// it had no checkpoint.
    next_offset: Option<i64>,
    /// Offset of the last checkpoint (nothing to do if unchanged).
    checkpointed: Option<i64>,
    /// The offset this partition was last sent back to, so a real gap is seeked once only.
    sought: Option<i64>,
    last_active: Instant,
}

/// Everything the main loop and (for Kafka) the rebalance callbacks share.
struct Shared {
    config: Config,
    source: Arc<str>,
    options: RunOptions,
    parts: BTreeMap<i32, Part>,
    /// Partitions another processor took over (a commit of theirs came after this one's
    /// claim): their state here is dropped; a batch that still arrives for one claims it
    /// anew from the latest checkpoint.
    fenced: Arc<Mutex<BTreeSet<i32>>>,
    decoder: EventDecoder,
    dead: DeadLetterBuilder,
    tx: Option<SyncSender<ToSink>>,
    store: CheckpointStore,
    stats: OperatorStats,
    payloads: u64,
    dead_letters: u64,
    checkpoints: u64,
    checkpoint_wait: Duration,
    /// Notices not yet shown to the caller.
    new_notices: Vec<Notice>,
    /// An error raised inside a rebalance callback, reported by the main loop.
    fatal: Option<anyhow::Error>,
    /// When the assignment last changed: the idle clock of `stop_when_idle` restarts there.
    rebalanced_at: Instant,
    /// (partition, offset) the source should go back to.
    seek_requests: Vec<(i32, i64)>,
    /// The feedback join's side of the run, when there is a feedback source.
    feedback: Option<FeedbackSide>,
}

/// How far ahead of the events' watermark feedback may be dated and still wait for it.
const FUTURE_FEEDBACK_MS: i64 = 7 * 24 * 3_600_000;

/// Feedback read but not yet joined: it waits until every partition's watermark has passed
/// its time, so its prediction (which is older) has surely been processed. Each feedback
/// partition is released in offset order, so a checkpoint can name one offset below which
/// everything is joined.
struct FeedbackSide {
    source: Arc<str>,
    limits: Limits,
    /// Kafka: feedback partition p is read by whoever owns events partition p.
    co_partitioned: bool,
    held: BTreeMap<i32, std::collections::VecDeque<Feedback>>,
    /// Per feedback partition: the next offset to read.
    next_read: HashMap<i32, i64>,
    /// Partitions the feedback source should start or stop following.
    follow: Vec<(i32, Option<Option<i64>>)>,
    /// Feedback partitions whose files were reset for this run (file sources).
    started: std::collections::HashSet<i32>,
    done: bool,
    counts: FeedbackCounts,
    dead: DeadLetterBuilder,
}

impl FeedbackSide {
    fn held_len(&self) -> usize {
        self.held.values().map(|q| q.len()).sum()
    }

    /// The first offset of feedback partition `p` not yet joined.
    fn position(&self, p: i32) -> Option<i64> {
        self.held
            .get(&p)
            .and_then(|q| q.front())
            .map(|f| f.offset)
            .or_else(|| self.next_read.get(&p).copied())
    }
}

impl Shared {
    fn send(&self, msg: ToSink) -> Result<()> {
        self.tx
            .as_ref()
            .ok_or_else(|| anyhow!("the Parquet writer is gone"))?
            .send(msg)
            .map_err(|_| anyhow!("the Parquet writer stopped"))
    }

    fn new_operator(&self) -> Result<WindowOperator> {
        Ok(WindowOperator::new(&self.config.processor)?)
    }

    fn id(&self, partition: i32) -> SourceId {
        (self.source.clone(), partition)
    }

    /// Adds the operator's counter changes around `f` to the run's counters.
    fn tracked<T>(
        stats: &mut OperatorStats,
        op: &mut WindowOperator,
        f: impl FnOnce(&mut WindowOperator) -> T,
    ) -> T {
        let before = op.stats();
        let r = f(op);
        let after = op.stats();
        stats.events += after.events - before.events;
        stats.late_events += after.late_events - before.late_events;
        stats.windows_closed += after.windows_closed - before.windows_closed;
        stats.metric_rows += after.metric_rows - before.metric_rows;
        r
    }

    fn emit_metrics(&mut self, partition: i32, batch: Option<RecordBatch>) -> Result<()> {
        let (bins, sessions, budgets, alerts) = match self.parts.get_mut(&partition) {
            Some(part) => {
                let budgets = part.op.take_budget_rows()?;
                part.op.evaluate_alerts(batch.as_ref(), budgets.as_ref())?;
                (
                    part.op.take_calibration_bins()?,
                    part.op.take_sessions(false)?,
                    budgets,
                    part.op.take_alerts()?,
                )
            }
            None => (None, None, None, None),
        };
        if let Some(m) = batch {
            self.send(ToSink::Metrics {
                partition,
                batch: m,
            })?;
        }
        if let Some(a) = alerts {
            self.new_notices.extend(a.notices.iter().cloned());
            self.send(ToSink::Alerts {
                partition,
                rows: a.rows,
                notices: a.notices,
            })?;
        }
        if let Some(batch) = budgets {
            self.send(ToSink::Budgets { partition, batch })?;
        }
        if let Some(batch) = bins {
            self.send(ToSink::CalibrationBins { partition, batch })?;
        }
        if let Some(s) = sessions {
            self.send(ToSink::Sessions {
                partition,
                at: s.at,
                batch: s.batch,
            })?;
        }
        Ok(())
    }

    /// A partition arrives: restore its checkpoint, if any. Returns where to resume.
    fn assign(&mut self, partition: i32, now: Instant) -> Result<Option<i64>> {
        let mut op = self.new_operator()?;
        if self.feedback.is_some() {
            op.expect_feedback(&self.config.processor.feedback);
        }
        let ckpt = if self.options.checkpoints {
            // Claimed, not just read: a previous owner that still writes can commit no more.
            self.store.claim(partition)?
        } else {
            None
        };
        let next = match ckpt {
            Some(c) => {
                op.restore(&self.id(partition), &c.state, now)
                    .with_context(|| {
                        format!("restoring partition {partition} of {}", self.source)
                    })?;
                self.send(ToSink::RevisionsFrom {
                    partition,
                    seq: op.revision_seq(),
                    sessions_at: op.sessions_at(),
                    emitted_through: op.emitted_through(),
                })?;
                if let Some(fb) = self.feedback.as_mut().filter(|f| f.co_partitioned) {
                    fb.follow.push((partition, Some(c.feedback_offset)));
                    fb.held.remove(&partition);
                    match c.feedback_offset {
                        Some(o) => fb.next_read.insert(partition, o),
                        None => fb.next_read.remove(&partition),
                    };
                    let msg = ToSink::FeedbackStart {
                        source: fb.source.clone(),
                        partition,
                        from: c.feedback_offset.unwrap_or(0),
                    };
                    self.send(msg)?;
                }
                self.send(ToSink::Start {
                    partition,
                    from: c.next_offset,
                })?;
                tracing::info!(
                    "partition {partition}: resuming from checkpoint at offset {}",
                    c.next_offset
                );
                Some(c.next_offset)
            }
            None => {
                if let Some(fb) = self.feedback.as_mut().filter(|f| f.co_partitioned) {
                    fb.follow.push((partition, Some(None)));
                    fb.held.remove(&partition);
                    fb.next_read.remove(&partition);
                    let msg = ToSink::FeedbackStart {
                        source: fb.source.clone(),
                        partition,
                        from: 0,
                    };
                    self.send(msg)?;
                }
                None
            }
        };
        self.parts.insert(
            partition,
            Part {
                op,
                next_offset: next,
                checkpointed: next,
                sought: None,
                last_active: now,
            },
        );
        Ok(next)
    }

    /// True when another processor took `partition` over: its state is dropped here.
    fn is_fenced(&mut self, partition: i32) -> bool {
        if !self
            .fenced
            .lock()
            .expect("not poisoned")
            .contains(&partition)
        {
            return false;
        }
        if self.parts.remove(&partition).is_some() {
            self.stop_following(partition);
        }
        true
    }

    fn process(&mut self, raw: RawBatch, now: Instant) -> Result<()> {
        let partition = raw.partition;
        if self.is_fenced(partition) {
            // Another processor committed it, yet the consumer still hands it to this one:
            // take it back from that commit (claimed anew below; a gap in offsets seeks).
            self.fenced.lock().expect("not poisoned").remove(&partition);
            tracing::warn!(
                "partition {partition}: still assigned here after another processor committed \
                 it; resuming from that processor's checkpoint"
            );
        }
        if !self.parts.contains_key(&partition) {
            self.assign(partition, now)?;
        }
        let part = self.parts.get_mut(&partition).expect("assigned above");
        // Offsets the checkpoint already covers (the committed offset can lag it).
        let raw = match part.next_offset {
            Some(next) if raw.offset(0) < next => {
                let mut kept = RawBatch::new(raw.source.clone(), partition);
                for i in (0..raw.len()).filter(|&i| raw.offset(i) >= next) {
                    kept.push(raw.payload(i), raw.offset(i));
                }
                if kept.is_empty() {
                    return Ok(());
                }
                kept
            }
            Some(next)
                if raw.offset(0) > next
                    && self.options.checkpoints
                    && part.sought != Some(next) =>
            {
                // The consumer resumed past the checkpoint (seen after a broker restart):
                // go back once; if the offsets really are gone, the next batch is taken.
                tracing::warn!(
                    "partition {partition}: expected offset {next}, got {}; seeking back",
                    raw.offset(0)
                );
                part.sought = Some(next);
                self.seek_requests.push((partition, next));
                return Ok(());
            }
            Some(next) if raw.offset(0) > next && self.options.checkpoints => {
                tracing::warn!(
                    "partition {partition}: offsets {next}..{} are not on the broker (retention or compaction?); going on",
                    raw.offset(0)
                );
                raw
            }
            Some(_) => raw,
            None => {
                // No checkpoint: processing starts here, and earlier files from here on go.
                self.send(ToSink::Start {
                    partition,
                    from: raw.offset(0),
                })?;
                raw
            }
        };
        let id = self.id(partition);
        let decoded = self.decoder.decode(&raw);
        let part = self.parts.get_mut(&partition).expect("assigned above");
        part.last_active = now;
        let dead_batch = if decoded.rejects.is_empty() {
            None
        } else {
            // Filed under the newest event time seen so far, so a replay files it alike.
            let ts = decoded
                .events
                .column(ev::TIMESTAMP)
                .as_primitive::<TimestampMillisecondType>();
            let stream_time = part
                .op
                .max_event_time(&id)
                .or_else(|| ts.values().iter().copied().max())
                .unwrap_or(0);
            self.dead
                .append_rejects(&raw, &decoded.rejects, stream_time);
            Some(self.dead.finish())
        };
        self.dead_letters += decoded.rejects.len() as u64;
        self.payloads += raw.len() as u64;
        let out = Self::tracked(&mut self.stats, &mut part.op, |op| {
            op.process_batch(&id, decoded.events, now)
        })?;
        let first = raw.offset(0);
        let last = raw.last_offset().unwrap_or(first);
        part.next_offset = Some(last + 1);
        let events = match out.events {
            Some(e) if self.config.sink.write_events => e,
            _ => RecordBatch::new_empty(events_schema()),
        };
        self.send(ToSink::Events {
            partition,
            events,
            dead: dead_batch,
            first,
            last,
        })?;
        self.emit_metrics(partition, out.metrics)
    }

    /// Decodes a batch of feedback payloads and holds the good ones for the join.
    fn read_feedback(&mut self, raw: RawBatch) -> Result<()> {
        let Some(fb) = self.feedback.as_mut() else {
            return Ok(());
        };
        if raw.is_empty() || (fb.co_partitioned && !self.parts.contains_key(&raw.partition)) {
            return Ok(()); // polled just before its partition left
        }
        // After a partition is followed again from a checkpoint, older messages may still
        // arrive from the previous position: skip them.
        let from = fb
            .next_read
            .get(&raw.partition)
            .copied()
            .unwrap_or(i64::MIN);
        let raw = if raw.offset(0) < from {
            let mut kept = RawBatch::new(raw.source.clone(), raw.partition);
            for i in (0..raw.len()).filter(|&i| raw.offset(i) >= from) {
                kept.push(raw.payload(i), raw.offset(i));
            }
            if kept.is_empty() {
                return Ok(());
            }
            kept
        } else {
            raw
        };
        let last = raw.last_offset().unwrap_or(raw.offset(0));
        fb.next_read.insert(raw.partition, last + 1);
        if !fb.co_partitioned && fb.started.insert(raw.partition) {
            // A file is read from its start each run: its earlier files go.
            let msg = ToSink::FeedbackStart {
                source: fb.source.clone(),
                partition: raw.partition,
                from: 0,
            };
            self.send(msg)?;
        }
        let fb = self.feedback.as_mut().expect("checked above");
        let (good, bad) = decode_feedback(&raw, &fb.limits);
        fb.counts.received += raw.len() as u64;
        fb.counts.invalid += bad.len() as u64;
        let stream_time = good.iter().map(|f| f.timestamp).max().unwrap_or(0);
        fb.held.entry(raw.partition).or_default().extend(good);
        if !bad.is_empty() {
            fb.dead.append_rejects(&raw, &bad, stream_time);
            let dead = fb.dead.finish();
            let first = raw.offset(0);
            let msg = ToSink::Feedback {
                source: fb.source.clone(),
                partition: raw.partition,
                dead: Some(dead),
                unmatched: None,
                first,
                last: raw.last_offset().unwrap_or(first),
            };
            self.send(msg)?;
        }
        Ok(())
    }

    /// The watermark every partition has passed: feedback up to it may join.
    fn feedback_watermark(&self) -> Option<i64> {
        let ooo = self
            .config
            .processor
            .window
            .max_out_of_orderness
            .as_millis() as i64;
        self.parts
            .iter()
            .map(|(&k, p)| p.op.max_event_time(&self.id(k)).map(|t| t - ooo))
            .min()
            .flatten()
    }

    /// Whether the feedback source should be read now: it is not exhausted, and what is held
    /// is already due (so memory holds about one batch of feedback ahead of the events).
    fn wants_feedback(&self) -> bool {
        let Some(fb) = &self.feedback else {
            return false;
        };
        if fb.done || fb.held_len() >= self.config.processor.feedback.max_pending {
            return false;
        }
        let newest = fb
            .held
            .values()
            .flat_map(|q| q.back())
            .map(|f| f.timestamp)
            .max();
        match (newest, self.feedback_watermark()) {
            (None, _) => true,
            (Some(t), Some(wm)) => t <= wm,
            (Some(_), None) => false,
        }
    }

    /// Joins held feedback that is due (all of it with `all`), then emits the revisions of
    /// windows that late labels changed.
    fn release_feedback(&mut self, all: bool) -> Result<()> {
        let wm = if all {
            Some(i64::MAX)
        } else {
            self.feedback_watermark()
        };
        let (Some(wm), Some(fb)) = (wm, self.feedback.as_mut()) else {
            return Ok(());
        };
        let mut due = Vec::new();
        for q in fb.held.values_mut() {
            while let Some(f) = q.front() {
                // Feedback dated more than a week ahead of the events would hold its
                // partition up for that long: it is joined at once (and is likely unknown).
                if f.timestamp > wm && f.timestamp - wm <= FUTURE_FEEDBACK_MS {
                    break;
                }
                due.push(q.pop_front().expect("front exists"));
            }
        }
        if due.is_empty() {
            return Ok(());
        }
        // Per feedback partition: unmatched rows and the offsets they span.
        let mut unmatched: BTreeMap<i32, (UnmatchedBuilder, i64, i64)> = BTreeMap::new();
        for f in &due {
            let mut outcome = Err(Unmatched::Unknown);
            for (&p, part) in self.parts.iter_mut() {
                if fb.co_partitioned && p != f.partition {
                    continue;
                }
                outcome = part.op.join_feedback(f);
                if outcome != Err(Unmatched::Unknown) {
                    break;
                }
            }
            let c = &mut fb.counts;
            match outcome {
                Ok(()) => c.joined += 1,
                Err(why) => {
                    match why {
                        Unmatched::Unknown => c.unknown += 1,
                        Unmatched::Expired => c.expired += 1,
                        Unmatched::Duplicate => c.duplicate += 1,
                        Unmatched::Unusable => c.unusable += 1,
                    }
                    let e = unmatched
                        .entry(f.partition)
                        .or_insert_with(|| (UnmatchedBuilder::default(), f.offset, f.offset));
                    e.0.append(f, why);
                    e.1 = e.1.min(f.offset);
                    e.2 = e.2.max(f.offset);
                }
            }
        }
        let source = fb.source.clone();
        for (partition, (mut rows, first, last)) in unmatched {
            self.send(ToSink::Feedback {
                source: source.clone(),
                partition,
                dead: None,
                unmatched: Some(rows.finish()),
                first,
                last,
            })?;
        }
        self.emit_revisions(false)
    }

    /// Sends the revisions the operators have ready (all pending ones with `force`).
    fn emit_revisions(&mut self, force: bool) -> Result<()> {
        let keys: Vec<i32> = self.parts.keys().copied().collect();
        for k in keys {
            let part = self.parts.get_mut(&k).expect("listed above");
            let Some(r) = part.op.take_revisions(force)? else {
                continue;
            };
            if let Some(fb) = self.feedback.as_mut() {
                fb.counts.revised_rows += r.metrics.num_rows() as u64;
            }
            self.send(ToSink::Revisions {
                partition: k,
                seq: r.seq,
                metrics: r.metrics,
                bins: r.calibration_bins,
            })?;
        }
        Ok(())
    }

    fn sessions_evicted(&self) -> u64 {
        self.parts
            .values()
            .map(|p| p.op.session_stats().evicted)
            .sum()
    }

    fn feedback_counts(&self) -> Option<FeedbackCounts> {
        let fb = self.feedback.as_ref()?;
        let mut c = fb.counts;
        for p in self.parts.values() {
            let s = p.op.label_stats();
            c.waiting += s.waiting;
            c.evicted += s.evicted;
        }
        Some(c)
    }

    /// Nothing arrived: partitions idle for `idle_timeout` follow the active ones' watermark.
    fn tick(&mut self, now: Instant) -> Result<()> {
        let idle = self.config.processor.window.idle_timeout;
        let ooo = self
            .config
            .processor
            .window
            .max_out_of_orderness
            .as_millis() as i64;
        let active_wm = self
            .parts
            .iter()
            .filter(|(_, p)| now.duration_since(p.last_active) < idle)
            .filter_map(|(&k, p)| p.op.max_event_time(&self.id(k)))
            .min()
            .map(|t| t - ooo);
        let Some(wm) = active_wm else {
            return Ok(());
        };
        let idle_parts: Vec<i32> = self
            .parts
            .iter()
            .filter(|(_, p)| now.duration_since(p.last_active) >= idle)
            .map(|(&k, _)| k)
            .collect();
        for k in idle_parts {
            let part = self.parts.get_mut(&k).expect("listed above");
            let rows = Self::tracked(&mut self.stats, &mut part.op, |op| op.advance_watermark(wm))?;
            self.emit_metrics(k, rows)?;
        }
        Ok(())
    }

    /// Closes every open window and ends every session of every partition (end of a
    /// finite source).
    fn finish(&mut self) -> Result<()> {
        let keys: Vec<i32> = self.parts.keys().copied().collect();
        for k in keys {
            let part = self.parts.get_mut(&k).expect("listed above");
            let rows = Self::tracked(&mut self.stats, &mut part.op, |op| op.finish())?;
            self.emit_metrics(k, rows)?;
            let part = self.parts.get_mut(&k).expect("listed above");
            if let Some(s) = part.op.take_sessions(true)? {
                self.send(ToSink::Sessions {
                    partition: k,
                    at: s.at,
                    batch: s.batch,
                })?;
            }
        }
        Ok(())
    }

    /// Queues a checkpoint of `partition`; returns the receiver to wait on when `wait`.
    fn checkpoint(
        &mut self,
        partition: i32,
        release: bool,
        wait: bool,
    ) -> Result<Option<Receiver<Result<()>>>> {
        if self.is_fenced(partition) {
            return Ok(None);
        }
        let id = self.id(partition);
        let Some(part) = self.parts.get_mut(&partition) else {
            return Ok(None);
        };
        let Some(next_offset) = part.next_offset else {
            return Ok(None);
        };
        if part.checkpointed == Some(next_offset) && !release {
            return Ok(None);
        }
        let state = part.op.snapshot(&id)?;
        part.checkpointed = Some(next_offset);
        let feedback_offset = self
            .feedback
            .as_ref()
            .filter(|f| f.co_partitioned)
            .and_then(|f| f.position(partition));
        let (done, rx) = if wait {
            let (s, r) = sync_channel(1);
            (Some(s), Some(r))
        } else {
            (None, None)
        };
        self.checkpoints += 1;
        self.send(ToSink::Checkpoint {
            partition,
            ckpt: Checkpoint {
                next_offset,
                state,
                feedback_offset,
            },
            release,
            done,
        })?;
        Ok(rx)
    }

    /// Checkpoints `partitions`, waits until they are durable, and returns the offsets to
    /// commit. `release` drops them from this processor afterwards.
    fn checkpoint_and_wait(
        &mut self,
        partitions: &[i32],
        release: bool,
    ) -> Result<Vec<(i32, i64)>> {
        let started = Instant::now();
        let mut waits = Vec::new();
        for &p in partitions {
            if let Some(rx) = self.checkpoint(p, release, true)? {
                waits.push(rx);
            }
        }
        for rx in waits {
            rx.recv()
                .map_err(|_| anyhow!("the Parquet writer stopped"))??;
        }
        self.checkpoint_wait += started.elapsed();
        let mut commits = Vec::new();
        for &p in partitions {
            let fenced = self.is_fenced(p);
            if release {
                // Kafka takes it away (or gives it back later): either way, start afresh.
                self.fenced.lock().expect("not poisoned").remove(&p);
            }
            if fenced {
                continue;
            }
            if let Some(part) = self.parts.get(&p) {
                if let Some(next) = part.next_offset {
                    commits.push((p, next));
                }
            }
            if release {
                self.parts.remove(&p);
                self.stop_following(p);
            }
        }
        Ok(commits)
    }

    /// Events partition `p` left: its feedback partition is no longer ours either.
    fn stop_following(&mut self, p: i32) {
        if let Some(fb) = self.feedback.as_mut().filter(|f| f.co_partitioned) {
            fb.follow.push((p, None));
            fb.held.remove(&p);
            fb.next_read.remove(&p);
        }
    }
}

/// The rebalance side of [`Shared`], handed to the Kafka source.
struct Owner(Arc<Mutex<Shared>>);

impl PartitionOwner for Owner {
    fn assigned(&self, _topic: &str, partitions: &[i32]) -> Vec<(i32, Option<i64>)> {
        let mut s = self.0.lock().expect("not poisoned");
        let now = Instant::now();
        s.rebalanced_at = now;
        let mut out = Vec::new();
        for &p in partitions {
            // Kafka gives it to this processor (again): claimed anew below.
            s.fenced.lock().expect("not poisoned").remove(&p);
            match s.assign(p, now) {
                Ok(from) => out.push((p, from)),
                Err(e) => {
                    s.fatal.get_or_insert(e);
                }
            }
        }
        out
    }

    fn revoked(&self, _topic: &str, partitions: &[i32], lost: bool) -> Vec<(i32, i64)> {
        let mut s = self.0.lock().expect("not poisoned");
        s.rebalanced_at = Instant::now();
        if lost {
            for &p in partitions {
                s.fenced.lock().expect("not poisoned").remove(&p);
                s.parts.remove(&p);
                s.stop_following(p);
                if let Err(e) = s.send(ToSink::Abort { partition: p }) {
                    s.fatal.get_or_insert(e);
                }
            }
            return Vec::new();
        }
        let owned: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| s.parts.contains_key(p))
            .collect();
        match s.checkpoint_and_wait(&owned, true) {
            Ok(commits) => commits,
            Err(e) => {
                // Without a checkpoint the next owner replays from the previous one; this
                // process must not write that partition again, so the run stops.
                s.fatal
                    .get_or_insert(e.context("checkpointing revoked partitions"));
                Vec::new()
            }
        }
    }
}

/// A pipeline ready to run: the sink thread is up; Kafka sources take [`Pipeline::owner`].
pub struct Pipeline {
    shared: Arc<Mutex<Shared>>,
    sink: Option<JoinHandle<Result<(u64, Duration)>>>,
    acks: Receiver<(i32, i64)>,
    feedback: Option<Box<dyn Source>>,
    data_dir: Store,
}

impl Pipeline {
    pub fn new(
        config: &Config,
        data_dir: &Store,
        source_name: &str,
        options: RunOptions,
    ) -> Result<Self> {
        // Also checks the processor config before anything starts.
        let metrics_schema = WindowOperator::new(&config.processor)?.metrics_schema();
        let parquet = config.sink.parquet();
        let table = |name: &str, schema| -> Result<WindowTable> {
            let t = WindowTable::new(data_dir, name, schema, source_name, &parquet)?;
            if !options.checkpoints {
                // A run from the start of a source replaces its earlier windows.
                t.remove_all()?;
            }
            Ok(t)
        };
        use inferwatch_schemas::tables;
        let metrics = table("metrics", metrics_schema)?;
        let calibration_bins = table("calibration_bins", tables::calibration_bins_schema())?;
        let sessions = table("sessions", tables::sessions_schema())?;
        let budgets = table("budgets", tables::budgets_schema())?;
        let alerts = table("alerts", tables::alerts_schema())?;
        let kafka = options
            .kafka_output
            .clone()
            .map(KafkaOutput::new)
            .transpose()?;
        let (tx, rx) = sync_channel::<ToSink>(4);
        let (ack_tx, acks) = channel();
        let fenced = Arc::new(Mutex::new(BTreeSet::new()));
        let store = CheckpointStore::new(data_dir, source_name);
        let sink = SinkThread {
            data_dir: data_dir.clone(),
            source: source_name.to_string(),
            max_rows: config.sink.max_file_rows,
            parquet: config.sink.parquet(),
            events: HashMap::new(),
            metrics,
            calibration_bins,
            sessions,
            budgets,
            alerts,
            notify: options.notify.clone(),
            feedback: HashMap::new(),
            store: store.clone(),
            kafka,
            acks: ack_tx,
            checkpoint_time: Duration::ZERO,
            committed: HashMap::new(),
            fenced: fenced.clone(),
        };
        let sink = std::thread::Builder::new()
            .name("inferwatch-sink".into())
            .spawn(move || sink.run(rx))?;
        let shared = Shared {
            config: config.clone(),
            source: Arc::from(source_name),
            options,
            parts: BTreeMap::new(),
            fenced,
            decoder: EventDecoder::new(Limits {
                max_payload_bytes: config.source.max_payload_bytes,
                ..Limits::default()
            }),
            dead: DeadLetterBuilder::default(),
            tx: Some(tx),
            store,
            stats: OperatorStats::default(),
            payloads: 0,
            dead_letters: 0,
            checkpoints: 0,
            checkpoint_wait: Duration::ZERO,
            new_notices: Vec::new(),
            fatal: None,
            rebalanced_at: Instant::now(),
            seek_requests: Vec::new(),
            feedback: None,
        };
        Ok(Self {
            shared: Arc::new(Mutex::new(shared)),
            sink: Some(sink),
            acks,
            feedback: None,
            data_dir: data_dir.clone(),
        })
    }

    /// Joins labels from `source` (feedback events) to the predictions of the main source.
    /// `co_partitioned` (Kafka): feedback partition p holds the feedback of events partition
    /// p, is read only while p is ours, and its position is part of p's checkpoints.
    pub fn with_feedback(mut self, source: Box<dyn Source>, co_partitioned: bool) -> Self {
        {
            let mut s = self.shared.lock().expect("not poisoned");
            let limits = s.decoder.limits().clone();
            s.feedback = Some(FeedbackSide {
                source: Arc::from(source.name()),
                limits,
                co_partitioned,
                held: BTreeMap::new(),
                next_read: HashMap::new(),
                follow: Vec::new(),
                started: Default::default(),
                done: false,
                counts: FeedbackCounts::default(),
                dead: DeadLetterBuilder::default(),
            });
        }
        self.feedback = Some(source);
        self
    }

    /// What a Kafka source calls back during rebalances.
    pub fn owner(&self) -> Arc<dyn PartitionOwner> {
        Arc::new(Owner(self.shared.clone()))
    }

    /// The sink thread's own error explains a failed send best.
    fn sink_error(&mut self, e: anyhow::Error) -> anyhow::Error {
        self.shared.lock().expect("not poisoned").tx = None;
        match self.sink.take().map(|h| h.join()) {
            Some(Ok(Err(sink_err))) => sink_err.context("writing Parquet failed"),
            Some(Err(_)) => anyhow!("the Parquet writer panicked"),
            _ => e,
        }
    }

    /// Runs `source` to its end (or until `stop`, or until idle when asked), calling
    /// `on_progress` about twice a second and `on_metrics` for every batch of closed windows.
    pub fn run(
        mut self,
        mut source: Box<dyn Source>,
        stop: &AtomicBool,
        mut on_progress: impl FnMut(&Progress),
        mut on_notice: impl FnMut(&Notice),
    ) -> Result<RunReport> {
        match self.run_loop(source.as_mut(), stop, &mut on_progress, &mut on_notice) {
            Ok(report) => Ok(report),
            Err(e) => Err(self.sink_error(e)),
        }
    }

    fn run_loop(
        &mut self,
        source: &mut dyn Source,
        stop: &AtomicBool,
        on_progress: &mut impl FnMut(&Progress),
        on_notice: &mut impl FnMut(&Notice),
    ) -> Result<RunReport> {
        let started = Instant::now();
        let mut keep = |notices: Vec<Notice>| {
            for n in &notices {
                on_notice(n);
            }
        };
        let (batch_size, roll_interval, checkpoint_interval, checkpoints, stop_when_idle) = {
            let s = self.shared.lock().expect("not poisoned");
            (
                s.config.source.batch_size,
                s.config.sink.roll_interval,
                s.config.checkpoint.interval,
                s.options.checkpoints,
                s.options.stop_when_idle,
            )
        };
        let mut last_report = Instant::now();
        let mut last_roll = Instant::now();
        let mut last_payload = Instant::now();
        let mut finished = false;
        let mut source_error: Option<anyhow::Error> = None;

        while !stop.load(Ordering::Relaxed) {
            let raw = match source.next_batch(batch_size) {
                Ok(raw) => raw,
                Err(e) => {
                    // Stop as on a signal: what was read before is made durable (files,
                    // checkpoints), and the error ends the run after that.
                    let name = source.name().to_string();
                    source_error =
                        Some(anyhow::Error::new(e).context(format!("reading from {name}")));
                    break;
                }
            };
            let now = Instant::now();
            let mut s = self.shared.lock().expect("not poisoned");
            if let Some(e) = s.fatal.take() {
                return Err(e);
            }
            match raw {
                None => {
                    finished = true;
                    break;
                }
                Some(raw) if raw.is_empty() => {
                    s.tick(now)?;
                    if let Some(d) = stop_when_idle {
                        // Quiet means: nothing arrived for `d` while holding partitions, and
                        // not just after a rebalance. A member without partitions waits
                        // longer, in case the group is still settling.
                        let since = last_payload.max(s.rebalanced_at);
                        let limit = if s.parts.is_empty() { d * 3 } else { d };
                        if now.duration_since(since) >= limit {
                            if let Some(why) = source.stalled() {
                                anyhow::bail!("{why}");
                            }
                            finished = true;
                            break;
                        }
                    }
                }
                Some(raw) => {
                    last_payload = now;
                    s.process(raw, now)?;
                }
            }
            if let Some(fsrc) = self.feedback.as_mut() {
                let follow = s
                    .feedback
                    .as_mut()
                    .map(|f| std::mem::take(&mut f.follow))
                    .unwrap_or_default();
                for (p, start) in follow {
                    match start {
                        Some(offset) => fsrc.follow(p, offset),
                        None => fsrc.unfollow(p),
                    }
                }
                while s.wants_feedback() {
                    match fsrc
                        .next_batch(batch_size)
                        .with_context(|| format!("reading feedback from {}", fsrc.name()))?
                    {
                        None => s.feedback.as_mut().expect("has feedback").done = true,
                        Some(raw) if raw.is_empty() => break,
                        Some(raw) => s.read_feedback(raw)?,
                    }
                }
                s.release_feedback(false)?;
            }
            keep(std::mem::take(&mut s.new_notices));
            for (p, off) in std::mem::take(&mut s.seek_requests) {
                if !source.seek(p, off) {
                    // The batch past the checkpoint was dropped; restarting replays it.
                    anyhow::bail!("partition {p}: cannot seek back to offset {off}; restart the processor to resume from its checkpoint");
                }
            }
            if checkpoints {
                if last_roll.elapsed() >= checkpoint_interval {
                    last_roll = Instant::now();
                    let parts: Vec<i32> = s.parts.keys().copied().collect();
                    for p in parts {
                        s.checkpoint(p, false, false)?;
                    }
                }
            } else if !source.is_bounded() && last_roll.elapsed() >= roll_interval {
                last_roll = Instant::now();
                s.send(ToSink::Flush)?;
            }
            drop(s);
            let acked: Vec<(i32, i64)> = self.acks.try_iter().collect();
            if !acked.is_empty() {
                source.commit(&acked);
            }
            if last_report.elapsed() >= Duration::from_millis(500) {
                last_report = Instant::now();
                on_progress(&self.progress(source, started));
            }
        }
        {
            let mut s = self.shared.lock().expect("not poisoned");
            if finished {
                // End of input: the rest of the feedback joins, then every open window
                // closes and is written.
                if let Some(fsrc) = self.feedback.as_mut() {
                    // A file to its end; a topic until it has had nothing for half a second.
                    let mut quiet = 0;
                    while !s.feedback.as_ref().is_some_and(|f| f.done) && quiet < 10 {
                        match fsrc.next_batch(batch_size)? {
                            None => s.feedback.as_mut().expect("has feedback").done = true,
                            Some(raw) if raw.is_empty() => {
                                quiet += 1;
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            Some(raw) => {
                                quiet = 0;
                                s.read_feedback(raw)?;
                            }
                        }
                    }
                    s.release_feedback(true)?;
                }
                s.finish()?;
                s.emit_revisions(true)?;
                keep(std::mem::take(&mut s.new_notices));
            }
            if checkpoints {
                let parts: Vec<i32> = s.parts.keys().copied().collect();
                let commits = s.checkpoint_and_wait(&parts, false)?;
                drop(s);
                source.commit(&commits);
            }
        }
        if checkpoints {
            // Deliver what the last windows raised while their partitions are still ours:
            // leaving the group hands the outbox logs over with the partitions.
            let (notify, barrier) = {
                let s = self.shared.lock().expect("not poisoned");
                let (tx, rx) = sync_channel(1);
                let sent = s.options.notify.is_some() && s.send(ToSink::Barrier(tx)).is_ok();
                (s.options.notify.clone(), sent.then_some(rx))
            };
            // The last windows' notices are in the outbox once the writer got this far.
            if let Some(rx) = barrier {
                let _ = rx.recv();
            }
            if let Some(n) = notify {
                let stopping = stop.load(Ordering::Relaxed) || source_error.is_some();
                let wait = if stopping { 2 } else { 30 };
                n.drain(Duration::from_secs(wait));
            }
        }
        // Leaving the group checkpoints whatever is still assigned (nothing new by now).
        source.close();
        let (
            stats,
            payloads,
            dead_letters,
            checkpoints_n,
            checkpoint_wait,
            feedback_counts,
            sessions_evicted,
        ) = {
            let mut s = self.shared.lock().expect("not poisoned");
            if let Some(e) = s.fatal.take() {
                return Err(e);
            }
            s.tx = None;
            (
                s.stats,
                s.payloads,
                s.dead_letters,
                s.checkpoints,
                s.checkpoint_wait,
                s.feedback_counts(),
                s.sessions_evicted(),
            )
        };
        let (files_written, checkpoint_time) = match self.sink.take().map(|h| h.join()) {
            Some(Ok(r)) => r.context("writing Parquet failed")?,
            Some(Err(_)) => anyhow::bail!("the Parquet writer panicked"),
            None => (0, Duration::ZERO),
        };
        if let Some(e) = source_error {
            return Err(e);
        }
        let progress = Progress {
            elapsed: started.elapsed(),
            payloads,
            events: stats.events,
            dead_letters,
            late_events: stats.late_events,
            windows_closed: stats.windows_closed,
            metric_rows: stats.metric_rows,
            checkpoints: checkpoints_n,
            partitions: 0,
            source_done: source.progress(),
            feedback: feedback_counts,
            sessions_evicted,
        };
        on_progress(&progress);
        let window_size_ms = {
            let s = self.shared.lock().expect("not poisoned");
            s.config.processor.window.size.as_millis() as i64
        };
        Ok(RunReport {
            progress,
            window_size_ms,
            files_written,
            store: self.data_dir.clone(),
            checkpoint_wait,
            checkpoint_time,
        })
    }

    fn progress(&self, source: &dyn Source, started: Instant) -> Progress {
        let s = self.shared.lock().expect("not poisoned");
        Progress {
            elapsed: started.elapsed(),
            payloads: s.payloads,
            events: s.stats.events,
            dead_letters: s.dead_letters,
            late_events: s.stats.late_events,
            windows_closed: s.stats.windows_closed,
            metric_rows: s.stats.metric_rows,
            checkpoints: s.checkpoints,
            partitions: s.parts.len(),
            source_done: source.progress(),
            feedback: s.feedback_counts(),
            sessions_evicted: s.sessions_evicted(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::atomic::AtomicUsize;

    use inferwatch_ingest::SourceError;

    /// A scripted two-partition source: batches, and pauses that show up as empty polls.
    struct Script {
        steps: VecDeque<Option<RawBatch>>,
        left: Arc<AtomicUsize>,
    }

    impl Source for Script {
        fn name(&self) -> &str {
            "script"
        }

        fn next_batch(&mut self, _max: usize) -> Result<Option<RawBatch>, SourceError> {
            self.left.store(self.steps.len(), Ordering::SeqCst);
            match self.steps.pop_front() {
                Some(Some(b)) => Ok(Some(b)),
                Some(None) => {
                    std::thread::sleep(Duration::from_millis(30));
                    Ok(Some(RawBatch::new(Arc::from("script"), 0)))
                }
                None => Ok(None),
            }
        }

        fn is_bounded(&self) -> bool {
            false
        }
    }

    fn batch(
        partition: i32,
        service: &str,
        seconds: std::ops::Range<i64>,
        first_offset: i64,
    ) -> RawBatch {
        let mut raw = RawBatch::new(Arc::from("script"), partition);
        for (i, s) in seconds.enumerate() {
            let json = format!(
                r#"{{"event_id":"{service}-{s}","timestamp":{},"service":"{service}","model":"m"}}"#,
                1_767_225_600_000 + s * 1000
            );
            raw.push(json.as_bytes(), first_offset + i as i64);
        }
        raw
    }

    #[test]
    fn an_idle_partition_follows_the_active_ones_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.processor.window.idle_timeout = Duration::from_millis(150);
        // A rule that fires on any window of "quiet": its notice says when the window closed.
        config.processor.alerts.rules = vec![toml::from_str(
            "name = 'seen'\nmetric = 'requests'\nop = '>='\nwarning = 1\nmatch = { service = 'quiet' }",
        )
        .unwrap()];
        // Partition 1 stops after its first minute; partition 0 goes on for five.
        let mut steps: VecDeque<Option<RawBatch>> = VecDeque::new();
        steps.push_back(Some(batch(1, "quiet", 0..50, 0)));
        for m in 0..5 {
            steps.push_back(Some(batch(0, "busy", m * 60..m * 60 + 60, m * 60)));
            for _ in 0..3 {
                steps.push_back(None);
            }
        }
        let left = Arc::new(AtomicUsize::new(usize::MAX));
        let source = Script {
            steps,
            left: left.clone(),
        };
        let store = Store::local(dir.path());
        let pipeline = Pipeline::new(&config, &store, "script", RunOptions::default()).unwrap();
        let mut quiet_closed_with_steps_left = None;
        let stop = AtomicBool::new(false);
        pipeline
            .run(
                Box::new(source),
                &stop,
                |_| {},
                |n| {
                    if n.service == "quiet" {
                        quiet_closed_with_steps_left.get_or_insert(left.load(Ordering::SeqCst));
                    }
                },
            )
            .unwrap();
        // Its window closed while the source was still running, not at the end.
        let left = quiet_closed_with_steps_left.expect("the quiet partition's window was emitted");
        assert!(left > 3, "closed with {left} steps left");
    }
}
