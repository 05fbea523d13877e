//! The sink thread: encodes and writes Parquet (and the Kafka outputs), completes files and
//! commits checkpoints, in the order the processing side sent them.

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::{sync_channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use inferwatch_schemas::tables::feedback_unmatched_schema;
use inferwatch_schemas::tables::{dead_letter_schema, events as ev, events_schema};
use inferwatch_schemas::{tables, Notice};
use inferwatch_sink::{
    CheckpointStore, KafkaOutput, ParquetOptions, PositionedTable, Store, WindowTable,
};

use super::RunOptions;
use crate::alerting::Enqueuer;
use crate::config::Config;
use crate::error::Result;
use crate::telemetry::Telemetry;

mod commit;
mod protocol;

pub(crate) use protocol::{SinkRun, SinkSender, ToSink};

pub(super) struct SinkThread {
    pub(super) data_dir: Store,
    pub(super) source: String,
    pub(super) max_rows: usize,
    pub(super) parquet: ParquetOptions,
    pub(super) events: HashMap<i32, (PositionedTable, PositionedTable)>,
    pub(super) metrics: WindowTable,
    pub(super) calibration_bins: WindowTable,
    pub(super) sessions: WindowTable,
    pub(super) budgets: WindowTable,
    pub(super) alerts: WindowTable,
    /// Hands notices to the durable outbox of Slack and Kafka delivery, when configured.
    pub(super) notify: Option<Enqueuer>,
    /// Per feedback partition: its `dead_letter` and `feedback_unmatched` tables.
    pub(super) feedback: HashMap<i32, (PositionedTable, PositionedTable)>,
    pub(super) store: CheckpointStore,
    pub(super) kafka: Option<KafkaOutput>,
    /// (partition, next offset) of each durable checkpoint, for the Kafka commit.
    pub(super) acks: Sender<(i32, i64)>,
    /// Time spent completing files and writing checkpoints.
    pub(super) checkpoint_time: Duration,
    /// Per partition, the offsets (events, feedback) its last durable checkpoint covers, or
    /// where it started: what a processor that lost the partition cleans up from.
    pub(super) committed: HashMap<i32, (i64, Option<i64>)>,
    /// Partitions are claimed at checkpoint generations (Kafka runs).
    pub(super) claims: bool,
    /// Partitions another processor took over (found at a commit), shared with the main
    /// loop, which stops processing them.
    pub(super) fenced: Arc<Mutex<BTreeSet<i32>>>,
    /// Where checkpoint durations are counted.
    pub(super) telemetry: Arc<Telemetry>,
}

impl SinkThread {
    /// Opens the window tables (a run without checkpoints replaces its source's earlier
    /// windows) and the Kafka outputs.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        config: &Config,
        data_dir: &Store,
        source: &str,
        options: &RunOptions,
        metrics_schema: SchemaRef,
        store: CheckpointStore,
        acks: Sender<(i32, i64)>,
        fenced: Arc<Mutex<BTreeSet<i32>>>,
        telemetry: Arc<Telemetry>,
    ) -> Result<Self> {
        let parquet = config.sink.parquet();
        let table = |name: &str, schema| -> Result<WindowTable> {
            let t = WindowTable::new(data_dir, name, schema, source, &parquet)?;
            if !options.checkpoints {
                // A run from the start of a source replaces its earlier windows.
                t.remove_all()?;
            }
            Ok(t)
        };
        if !options.checkpoints {
            for table in ["events", "dead_letter"] {
                inferwatch_sink::table::remove_source(data_dir, table, source)?;
            }
        }
        let kafka = options
            .kafka_output
            .clone()
            .map(KafkaOutput::new)
            .transpose()?;
        Ok(Self {
            data_dir: data_dir.clone(),
            source: source.to_string(),
            max_rows: config.sink.max_file_rows,
            parquet: parquet.clone(),
            events: HashMap::new(),
            metrics: table("metrics", metrics_schema)?,
            calibration_bins: table("calibration_bins", tables::calibration_bins_schema())?,
            sessions: table("sessions", tables::sessions_schema())?,
            budgets: table("budgets", tables::budgets_schema())?,
            alerts: table("alerts", tables::alerts_schema())?,
            notify: options.notify.clone(),
            feedback: HashMap::new(),
            store,
            kafka,
            acks,
            checkpoint_time: Duration::ZERO,
            committed: HashMap::new(),
            claims: options.checkpoints,
            fenced,
            telemetry,
        })
    }

    /// Starts the sink on its own thread, fed through a small bounded channel so a slow
    /// disk slows the source down instead of filling memory; or, without a thread, ready to
    /// handle messages in place.
    pub(super) fn launch(self, thread: bool) -> Result<(SinkSender, SinkRun)> {
        if !thread {
            let sink = Arc::new(Mutex::new(self));
            return Ok((SinkSender::Inline(sink.clone()), SinkRun::Inline(sink)));
        }
        let (tx, rx) = sync_channel::<ToSink>(4);
        let handle = std::thread::Builder::new()
            .name("inferwatch-sink".into())
            .spawn(move || self.run(rx))?;
        Ok((SinkSender::Thread(tx), SinkRun::Thread(handle)))
    }

    pub(super) fn tables(
        &mut self,
        partition: i32,
    ) -> Result<&mut (PositionedTable, PositionedTable)> {
        if !self.events.contains_key(&partition) {
            let source = self.source.clone();
            let mut events =
                self.positioned("events", events_schema(), ev::TIMESTAMP, &source, partition)?;
            let mut dead =
                self.positioned("dead_letter", dead_letter_schema(), 3, &source, partition)?;
            let generation = self.store.claimed(partition);
            events.set_generation(generation);
            dead.set_generation(generation);
            self.events.insert(partition, (events, dead));
        }
        Ok(self.events.get_mut(&partition).expect("inserted above"))
    }

    /// Completes the partition's files, and those of its co-partitioned feedback.
    /// A table whose files cover offsets of `source`'s `partition`.
    pub(super) fn positioned(
        &self,
        table: &str,
        schema: SchemaRef,
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
    pub(super) fn feedback_tables(
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
        let generation = self.store.claimed(partition);
        dead.set_generation(generation);
        unmatched.set_generation(generation);
        Ok((dead, unmatched))
    }

    pub(super) fn flush(&mut self, partition: i32) -> Result<()> {
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

    pub(super) fn handle(&mut self, msg: ToSink) -> Result<()> {
        match msg {
            ToSink::Start { partition, from } => self.start(partition, from)?,
            ToSink::Events {
                partition,
                events,
                dead,
                first,
                last,
            } => self.events(partition, &events, dead.as_ref(), first, last)?,
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
            } => self.revisions(partition, seq, &metrics, bins.as_ref())?,
            ToSink::RevisionsFrom {
                partition,
                seq,
                sessions_at,
                emitted_through,
            } => self.revisions_from(partition, seq, sessions_at, emitted_through)?,
            ToSink::Budgets { partition, batch } => {
                self.budgets.write(&batch, partition)?;
            }
            ToSink::Alerts {
                partition,
                rows,
                notices,
            } => self.alerts(partition, &rows, &notices)?,
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
            } => self.feedback_start(&source, partition, from)?,
            ToSink::Feedback {
                source,
                partition,
                dead,
                unmatched,
                first,
                last,
            } => self.feedback(&source, partition, dead, unmatched, (first, last))?,
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
            } => self.checkpoint_and_ack(partition, ckpt, release, done)?,
            ToSink::Abort { partition } => self.abort(partition)?,
        }
        Ok(())
    }

    /// Processing of `partition` (re)starts at `from`: its files from there on go.
    fn start(&mut self, partition: i32, from: i64) -> Result<()> {
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
        Ok(())
    }

    fn events(
        &mut self,
        partition: i32,
        events: &RecordBatch,
        dead: Option<&RecordBatch>,
        first: i64,
        last: i64,
    ) -> Result<()> {
        if let Some(n) = &self.notify {
            // A partition's pending notices go out as soon as it is ours.
            n.open(partition)?;
        }
        let (ev_table, dl_table) = self.tables(partition)?;
        let empty = RecordBatch::new_empty(dead_letter_schema());
        // Both tables roll together so they always cover the same offsets.
        let rolled = ev_table.append(events, first, last)?;
        dl_table.append(dead.unwrap_or(&empty), first, last)?;
        if !rolled.is_empty() {
            dl_table.flush()?;
        }
        if let (Some(k), Some(d)) = (&self.kafka, dead) {
            k.dead_letters(d)?;
        }
        Ok(())
    }

    fn revisions(
        &mut self,
        partition: i32,
        seq: u64,
        metrics: &RecordBatch,
        bins: Option<&RecordBatch>,
    ) -> Result<()> {
        self.metrics.write_revision(metrics, partition, seq)?;
        if let Some(b) = bins {
            self.calibration_bins.write_revision(b, partition, seq)?;
        }
        if let Some(k) = &self.kafka {
            k.metrics(metrics)?;
        }
        Ok(())
    }

    fn alerts(&mut self, partition: i32, rows: &RecordBatch, notices: &[Notice]) -> Result<()> {
        self.alerts.write(rows, partition)?;
        // In the outbox (fsynced) before the checkpoint that covers these windows; a replay
        // re-adds the same ids, which the outbox ignores.
        if let Some(n) = &self.notify {
            n.enqueue(partition, notices)?;
        }
        Ok(())
    }

    /// A checkpoint restored `partition`: later revision, session and alert files go.
    fn revisions_from(
        &mut self,
        partition: i32,
        seq: u64,
        sessions_at: Option<i64>,
        emitted_through: Option<i64>,
    ) -> Result<()> {
        self.metrics.remove_revisions_after(partition, seq)?;
        self.calibration_bins
            .remove_revisions_after(partition, seq)?;
        self.sessions
            .remove_at_after(partition, sessions_at.unwrap_or(i64::MIN))?;
        // Alert rows of windows after the checkpoint are made again by the replay.
        if let Some(through) = emitted_through {
            self.alerts.remove_windows_after(partition, through)?;
        }
        Ok(())
    }

    fn feedback_start(&mut self, source: &str, partition: i32, from: i64) -> Result<()> {
        self.committed.entry(partition).or_default().1 = Some(from);
        let (d, u) = self.feedback_tables(source, partition)?;
        d.remove_from(from)?;
        u.remove_from(from)?;
        if let Some((mut d, mut u)) = self.feedback.insert(partition, (d, u)) {
            d.abort()?;
            u.abort()?;
        }
        Ok(())
    }

    fn feedback(
        &mut self,
        source: &str,
        partition: i32,
        dead: Option<RecordBatch>,
        unmatched: Option<RecordBatch>,
        (first, last): (i64, i64),
    ) -> Result<()> {
        if !self.feedback.contains_key(&partition) {
            let tables = self.feedback_tables(source, partition)?;
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
        Ok(())
    }

    pub(super) fn run(mut self, rx: Receiver<ToSink>) -> Result<(u64, Duration)> {
        while let Ok(msg) = rx.recv() {
            self.receive(msg)?;
        }
        self.finish()
    }

    /// Handles one message.
    pub(super) fn receive(&mut self, msg: ToSink) -> Result<()> {
        let partition = msg.partition();
        // Rows of a partition's offsets written under no claim would duplicate the new
        // owner's; window rows have fixed names, so a late one is overwritten alike.
        let stale = matches!(msg, ToSink::Events { .. });
        if stale
            && self.claims
            && partition.is_some_and(|p| self.fenced.lock().expect("not poisoned").contains(&p))
        {
            // Processed before the main loop learned another processor took it over.
            return Ok(());
        }
        let claimed = partition.and_then(|p| self.store.claimed(p));
        match (self.handle(msg), partition) {
            (Ok(()), _) => {}
            // A write that failed because another processor took the partition over fences
            // this one; anything else ends the run.
            (Err(e), Some(p)) => self.fence_if_taken_over(p, claimed, e)?,
            (Err(e), None) => return Err(e),
        }
        Ok(())
    }

    /// Completes every open file and flushes the Kafka outputs; (files written, time spent
    /// checkpointing).
    pub(super) fn finish(mut self) -> Result<(u64, Duration)> {
        let open: BTreeSet<i32> = self
            .events
            .keys()
            .chain(self.feedback.keys())
            .copied()
            .collect();
        for p in open {
            self.complete(p)?;
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
