//! Wires one source through decode → window operator → Parquet sinks.
//!
//! Two threads: this one reads, decodes and aggregates; a sink thread encodes and writes
//! Parquet, fed through a small bounded channel so a slow disk slows the source down instead
//! of filling memory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::TimestampMillisecondType;
use inferwatch_ingest::Source;
use inferwatch_processor::{SourceId, WindowOperator};
use inferwatch_schemas::tables::{dead_letter_schema, events as ev, events_schema};
use inferwatch_schemas::{DeadLetterBuilder, EventDecoder, Limits};
use inferwatch_sink::{ParquetOptions, PositionedTable, WindowTable};

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
    pub source_done: Option<(u64, u64)>,
}

/// What a finished run reports.
#[derive(Debug)]
pub struct RunReport {
    pub progress: Progress,
    /// The metric rows of the most recent windows (for the demo's summary).
    pub recent_metrics: Vec<RecordBatch>,
    pub files_written: u64,
    pub data_dir: PathBuf,
}

enum ToSink {
    Events { partition: i32, events: RecordBatch, dead: Option<RecordBatch>, first: i64, last: i64 },
    Metrics(RecordBatch),
    Flush,
}

struct SinkThread {
    data_dir: PathBuf,
    source: String,
    max_rows: usize,
    parquet: ParquetOptions,
    events: HashMap<i32, (PositionedTable, PositionedTable)>,
    metrics: WindowTable,
}

impl SinkThread {
    fn tables(&mut self, partition: i32) -> Result<&mut (PositionedTable, PositionedTable)> {
        if !self.events.contains_key(&partition) {
            let events = PositionedTable::new(
                &self.data_dir,
                "events",
                events_schema(),
                ev::TIMESTAMP,
                &self.source,
                partition,
                self.max_rows,
                &self.parquet,
            )?;
            let dead = PositionedTable::new(
                &self.data_dir,
                "dead_letter",
                dead_letter_schema(),
                3,
                &self.source,
                partition,
                self.max_rows,
                &self.parquet,
            )?;
            // Processing starts at the beginning: earlier files of this source go.
            events.remove_from(0)?;
            dead.remove_from(0)?;
            self.events.insert(partition, (events, dead));
        }
        Ok(self.events.get_mut(&partition).expect("inserted above"))
    }

    fn run(mut self, rx: Receiver<ToSink>) -> Result<u64> {
        self.metrics.remove_all()?;
        while let Ok(msg) = rx.recv() {
            match msg {
                ToSink::Events { partition, events, dead, first, last } => {
                    let (ev_table, dl_table) = self.tables(partition)?;
                    let empty = RecordBatch::new_empty(dead_letter_schema());
                    // Both tables roll together so they always cover the same offsets.
                    let rolled = ev_table.append(&events, first, last)?;
                    dl_table.append(dead.as_ref().unwrap_or(&empty), first, last)?;
                    if !rolled.is_empty() {
                        dl_table.flush()?;
                    }
                }
                ToSink::Metrics(batch) => {
                    self.metrics.write(&batch)?;
                }
                ToSink::Flush => {
                    for (e, d) in self.events.values_mut() {
                        e.flush()?;
                        d.flush()?;
                    }
                }
            }
        }
        for (e, d) in self.events.values_mut() {
            e.flush()?;
            d.flush()?;
        }
        let files = self.metrics.files_written()
            + self
                .events
                .values()
                .map(|(e, d)| e.files_written() + d.files_written())
                .sum::<u64>();
        Ok(files)
    }
}

/// How many recent metric rows the report keeps.
const RECENT_ROWS: usize = 64;

/// Runs `source` to its end (or until `stop` is set), calling `on_progress` about twice a
/// second and `on_metrics` for every batch of closed windows.
pub fn run(
    mut source: Box<dyn Source>,
    config: &Config,
    stop: &AtomicBool,
    mut on_progress: impl FnMut(&Progress),
    mut on_metrics: impl FnMut(&RecordBatch),
) -> Result<RunReport> {
    let started = Instant::now();
    let mut operator = WindowOperator::new(&config.processor)?;
    let mut decoder = EventDecoder::new(Limits {
        max_payload_bytes: config.source.max_payload_bytes,
        ..Limits::default()
    });
    let (tx, rx) = sync_channel::<ToSink>(4);
    let sink = SinkThread {
        data_dir: config.data_dir.clone(),
        source: source.name().to_string(),
        max_rows: config.sink.max_file_rows,
        parquet: config.sink.parquet(),
        events: HashMap::new(),
        metrics: WindowTable::new(
            &config.data_dir,
            "metrics",
            operator.metrics_schema(),
            source.name(),
            &config.sink.parquet(),
        )?,
    };
    let sink: JoinHandle<Result<u64>> = std::thread::Builder::new()
        .name("inferwatch-sink".into())
        .spawn(move || sink.run(rx))?;
    // If the sink thread fails, sends fail: its own error is the one worth showing.
    let sink_failed = |sink: JoinHandle<Result<u64>>| -> anyhow::Error {
        match sink.join() {
            Ok(Err(e)) => e.context("writing Parquet failed"),
            Ok(Ok(_)) => anyhow::anyhow!("the Parquet writer stopped early"),
            Err(_) => anyhow::anyhow!("the Parquet writer panicked"),
        }
    };

    let mut progress = Progress::default();
    let mut recent: Vec<RecordBatch> = Vec::new();
    let mut last_report = Instant::now();
    let mut last_roll = Instant::now();
    let mut dead = DeadLetterBuilder::default();
    let source_name: Arc<str> = Arc::from(source.name());
    let mut keep = |batch: RecordBatch, recent: &mut Vec<RecordBatch>| {
        on_metrics(&batch);
        recent.push(batch);
        while recent.iter().map(|b| b.num_rows()).sum::<usize>() > RECENT_ROWS && recent.len() > 1 {
            recent.remove(0);
        }
    };

    while !stop.load(Ordering::Relaxed) {
        let Some(raw) = source
            .next_batch(config.source.batch_size)
            .with_context(|| format!("reading from {}", source.name()))?
        else {
            break;
        };
        let now = Instant::now();
        if raw.is_empty() {
            if let Some(m) = operator.handle_tick(now)? {
                if tx.send(ToSink::Metrics(m.clone())).is_err() {
                    return Err(sink_failed(sink));
                }
                keep(m, &mut recent);
            }
        } else {
            let id: SourceId = (source_name.clone(), raw.partition);
            let decoded = decoder.decode(&raw);
            let dead_batch = if decoded.rejects.is_empty() {
                None
            } else {
                // Filed under the newest event time seen so far, so a replay files it alike.
                let ts = decoded.events.column(ev::TIMESTAMP).as_primitive::<TimestampMillisecondType>();
                let stream_time = operator
                    .max_event_time(&id)
                    .or_else(|| ts.values().iter().copied().max())
                    .unwrap_or(0);
                dead.append_rejects(&raw, &decoded.rejects, stream_time);
                Some(dead.finish())
            };
            progress.dead_letters += decoded.rejects.len() as u64;
            progress.payloads += raw.len() as u64;
            let out = operator.process_batch(&id, decoded.events, now)?;
            let first = raw.offset(0);
            let last = raw.last_offset().unwrap_or(first);
            let events = out.events.unwrap_or_else(|| RecordBatch::new_empty(events_schema()));
            let msg = ToSink::Events { partition: raw.partition, events, dead: dead_batch, first, last };
            if tx.send(msg).is_err() {
                return Err(sink_failed(sink));
            }
            if let Some(m) = out.metrics {
                if tx.send(ToSink::Metrics(m.clone())).is_err() {
                    return Err(sink_failed(sink));
                }
                keep(m, &mut recent);
            }
        }
        if !source.is_bounded() && last_roll.elapsed() >= config.sink.roll_interval {
            last_roll = Instant::now();
            if tx.send(ToSink::Flush).is_err() {
                return Err(sink_failed(sink));
            }
        }
        if last_report.elapsed() >= Duration::from_millis(500) {
            last_report = Instant::now();
            fill(&mut progress, &operator, source.as_ref(), started);
            on_progress(&progress);
        }
    }
    // End of input (or a stop): every open window closes and is written.
    if let Some(m) = operator.finish()? {
        if tx.send(ToSink::Metrics(m.clone())).is_err() {
            return Err(sink_failed(sink));
        }
        keep(m, &mut recent);
    }
    drop(tx);
    let files_written = match sink.join() {
        Ok(r) => r.context("writing Parquet failed")?,
        Err(_) => anyhow::bail!("the Parquet writer panicked"),
    };
    fill(&mut progress, &operator, source.as_ref(), started);
    on_progress(&progress);
    Ok(RunReport {
        progress,
        recent_metrics: recent,
        files_written,
        data_dir: config.data_dir.clone(),
    })
}

fn fill(p: &mut Progress, op: &WindowOperator, source: &dyn Source, started: Instant) {
    let s = op.stats();
    p.elapsed = started.elapsed();
    p.events = s.events;
    p.late_events = s.late_events;
    p.windows_closed = s.windows_closed;
    p.metric_rows = s.metric_rows;
    p.source_done = source.progress();
}
