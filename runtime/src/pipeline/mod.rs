//! Wires one source through decode → operator chains → Parquet sinks, with checkpoints.
//!
//! Threads: the driver (this one) polls the source, claims partitions, checkpoints and
//! feeds the label join; a pool of workers (`[runtime] threads`) decodes and aggregates,
//! each partition on one worker at a time; a sink thread encodes and writes Parquet (and
//! Kafka outputs), fed through a small bounded channel so a slow disk slows the source down
//! instead of filling memory. With one thread, the driver does all of it in place.
//!
//! Each source partition has its own operator chain (pricing → window aggregate → alerts;
//! see `inferwatch_processor::chain`). Kafka keys events by `service/model`, so a key's
//! windows live in one partition, and a partition's windows close on its own watermark: what a window holds depends only on the order of that partition's events,
//! never on how polls interleaved partitions. That is what lets a checkpoint move a
//! partition to another processor, or a crashed one replay it, and produce the same rows.
//!
//! Checkpoint protocol, per partition: the sink thread completes the partition's open files
//! (fsync, rename), then writes the checkpoint (offsets + the chain's operator states)
//! atomically, then the offset is committed to Kafka as a hint. On restore, files the
//! partition wrote at or after the checkpoint's offset are removed and rewritten by the
//! replay; file names come from offsets and windows, so nothing is duplicated.

mod driver;
mod feedback;
mod fences;
mod owner;
mod part;
mod partitions;
mod sink_thread;
mod workers;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inferwatch_ingest::{PartitionOwner, Source};
use inferwatch_processor::spill::Spill;
use inferwatch_processor::WindowOperator;
use inferwatch_schemas::DeadLetterBuilder;
use inferwatch_sink::{CheckpointStore, KafkaOutputConfig, Store};

use crate::alerting::Enqueuer;
use crate::config::Config;
use crate::error::{Result, RuntimeError};
use crate::spill::FileSpillDir;
use crate::telemetry::Telemetry;
use feedback::FeedbackSide;
use owner::Owner;
use part::Outlet;
use partitions::Shared;
use sink_thread::{SinkRun, SinkThread};
use workers::Workers;

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
    /// Alert notices not delivered yet: they wait in the outbox for the next start.
    pub notices_waiting: usize,
    /// Where the run's time went: which side limits its speed.
    pub time: TimeSpent,
    /// Bytes of `sessions` counts written to spill files (`runtime.sessions_memory_mb`).
    pub spilled_bytes: u64,
}

/// Where a run's time went. Reading the source and processing batches overlap when there
/// are workers: a source that takes most of the run while the workers idle is the limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeSpent {
    /// The driver thread inside the source's read or poll (a poll waits for messages).
    pub source: Duration,
    /// Decoding and operators, summed over the threads that process batches.
    pub processing: Duration,
    /// Threads that process batches; 0: the driver thread itself (`--threads 1`).
    pub workers: usize,
    /// The driver waiting for a worker to take a batch (every worker's queue full).
    pub waiting_for_workers: Duration,
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
    /// The process's health for `/metrics`; a fresh one when `None`.
    pub telemetry: Option<Arc<Telemetry>>,
}
/// A pipeline ready to run: the sink thread is up; Kafka sources take [`Pipeline::owner`].
pub struct Pipeline {
    shared: Arc<Mutex<Shared>>,
    sink: Option<SinkRun>,
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
        let threads = config.runtime.threads();
        let spill = Self::spill(config, data_dir)?;
        let telemetry = options
            .telemetry
            .clone()
            .unwrap_or_else(|| Telemetry::new(config.http.ready_max_lag));
        let (ack_tx, acks) = channel();
        let fenced = Arc::new(Mutex::new(BTreeSet::new()));
        let store = CheckpointStore::new(data_dir, source_name);
        let (sink_sender, sink) = SinkThread::new(
            config,
            data_dir,
            source_name,
            &options,
            metrics_schema,
            store.clone(),
            ack_tx,
            fenced.clone(),
            telemetry.clone(),
        )?
        // One thread for everything: the sink writes in place.
        .launch(threads > 1)?;
        let outlet = Outlet {
            sink: sink_sender,
            counters: telemetry.counters.clone(),
            notices: Arc::default(),
            write_events: config.sink.write_events,
        };
        let workers = match threads {
            0 | 1 => None,
            n => Some(Workers::start(n, &outlet)?),
        };
        let time = TimeSpent {
            workers: workers.as_ref().map_or(0, |_| threads),
            ..TimeSpent::default()
        };
        let shared = Shared {
            config: config.clone(),
            source: Arc::from(source_name),
            options,
            parts: BTreeMap::new(),
            cursors: BTreeMap::new(),
            seek_requests: Vec::new(),
            telemetry: telemetry.clone(),
            fenced,
            fenced_since: BTreeMap::new(),
            limits: config.limits(),
            outlet: Some(outlet),
            workers,
            store,
            checkpoints: 0,
            checkpoint_wait: Duration::ZERO,
            time,
            fatal: None,
            rebalanced_at: Instant::now(),
            feedback: None,
            finished: false,
            spill,
        };
        Ok(Self {
            shared: Arc::new(Mutex::new(shared)),
            sink: Some(sink),
            acks,
            feedback: None,
            data_dir: data_dir.clone(),
        })
    }

    /// Where the `sessions` counts past `runtime.sessions_memory_mb` go (see
    /// `inferwatch_processor::spill`).
    fn spill(config: &Config, data_dir: &Store) -> Result<Arc<Spill>> {
        let dir = match (config.runtime.spill_dir.as_str(), data_dir.local_dir()) {
            ("", Some(local)) => local.join("_spill"),
            ("", None) => std::env::temp_dir().join("inferwatch-spill"),
            (dir, _) => dir.into(),
        };
        let limit = config.runtime.sessions_memory_mb.saturating_mul(1 << 20);
        Ok(Spill::new(Box::new(FileSpillDir::new(&dir)?), limit))
    }

    /// Joins labels from `source` (feedback events) to the predictions of the main source.
    /// `co_partitioned` (Kafka): feedback partition p holds the feedback of events partition
    /// p, is read only while p is ours, and its position is part of p's checkpoints.
    pub fn with_feedback(mut self, source: Box<dyn Source>, co_partitioned: bool) -> Self {
        {
            let mut s = self.shared.lock().expect("not poisoned");
            let limits = s.limits.clone();
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
    fn sink_error(&mut self, e: RuntimeError) -> RuntimeError {
        let _ = self.shared.lock().expect("not poisoned").close();
        match self.sink.take() {
            Some(s @ SinkRun::Thread(_)) => match s.finish() {
                Err(sink_err) => sink_err.context("writing Parquet failed"),
                Ok(_) => e,
            },
            Some(s @ SinkRun::Inline(_)) => {
                // Its error is `e` already; completing the files is all that is left.
                let _ = s.finish();
                e
            }
            None => e,
        }
    }
}

#[cfg(test)]
mod tests;
