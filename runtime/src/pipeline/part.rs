//! One source partition's processing: where its offsets stand, decoding its payloads, its
//! operator, and handing what comes out to the sink. A partition runs on one thread at a
//! time (a worker, or the driver), so its results depend only on its own events.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::TimestampMillisecondType;
use inferwatch_processor::{Chain, Collector, Emitted, Watermark};
use inferwatch_schemas::tables::{events as ev, events_schema};
use inferwatch_schemas::{DeadLetterBuilder, EventDecoder, Limits, Notice, RawBatch};

use super::sink_thread::{SinkSender, ToSink};
use crate::error::Result;
use crate::telemetry::{Counters, PartitionGauges};

/// Where every partition's outputs go, shared by the driver and the workers.
#[derive(Clone)]
pub(super) struct Outlet {
    pub(super) sink: SinkSender,
    pub(super) counters: Arc<Counters>,
    /// Notices not yet shown to the caller.
    pub(super) notices: Arc<Mutex<Vec<Notice>>>,
    pub(super) write_events: bool,
}

impl Outlet {
    pub(super) fn send(&self, msg: ToSink) -> Result<()> {
        self.sink.send(msg)
    }
}

/// One source partition's processing state.
pub(super) struct Part {
    pub(super) partition: i32,
    /// The partition's operators: pricing, window aggregate, alerts.
    pub(super) chain: Chain,
    /// The first offset not yet processed; `None` until the partition's first payload when
    /// it had no checkpoint.
    pub(super) next_offset: Option<i64>,
    /// Offset of the last checkpoint (nothing to do if unchanged).
    pub(super) checkpointed: Option<i64>,
    pub(super) last_active: Instant,
    decoder: EventDecoder,
    dead: DeadLetterBuilder,
}

impl Part {
    pub(super) fn new(
        partition: i32,
        chain: Chain,
        next_offset: Option<i64>,
        limits: Limits,
        now: Instant,
    ) -> Self {
        Self {
            partition,
            chain,
            next_offset,
            checkpointed: next_offset,
            last_active: now,
            decoder: EventDecoder::new(limits),
            dead: DeadLetterBuilder::default(),
        }
    }

    /// What the partition holds, for the process's metrics (`lag` is the source's to say).
    pub(super) fn gauges(&self) -> PartitionGauges {
        let window = self.chain.window();
        PartitionGauges {
            lag: None,
            watermark_ms: window.watermark(),
            open_windows: window.open_panes() as u64,
            state_bytes: window.state_bytes() as u64,
        }
    }

    /// Runs `f` on the chain and adds its counter changes to the run's counters.
    pub(super) fn tracked<T>(&mut self, out: &Outlet, f: impl FnOnce(&mut Chain) -> T) -> T {
        let before = self.chain.window().stats();
        let r = f(&mut self.chain);
        out.counters.add(before, self.chain.window().stats());
        r
    }

    /// Decodes and aggregates one batch of the partition's payloads (the driver already
    /// dropped what a checkpoint covers) and sends the events, dead letters and the rows of
    /// windows it closed to the sink.
    pub(super) fn process(&mut self, raw: RawBatch, now: Instant, out: &Outlet) -> Result<()> {
        let partition = self.partition;
        let decoded = self.decoder.decode(&raw);
        self.last_active = now;
        let dead_batch = if decoded.rejects.is_empty() {
            None
        } else {
            // Filed under the newest event time seen so far, so a replay files it alike.
            let ts = decoded
                .events
                .column(ev::TIMESTAMP)
                .as_primitive::<TimestampMillisecondType>();
            let stream_time = self
                .chain
                .window()
                .max_event_time()
                .or_else(|| ts.values().iter().copied().max())
                .unwrap_or(0);
            self.dead
                .append_rejects(&raw, &decoded.rejects, stream_time);
            Some(self.dead.finish())
        };
        let c = &out.counters;
        c.dead_lettered(decoded.rejects.iter().map(|r| r.reason.as_str()));
        c.payloads.fetch_add(raw.len() as u64, Ordering::Relaxed);
        let mut collected = Collector::default();
        self.tracked(out, |chain| {
            chain.process_batch(decoded.events, &mut collected)
        })?;
        let first = raw.offset(0);
        let last = raw.last_offset().unwrap_or(first);
        self.next_offset = Some(last + 1);
        let mut emitted: Vec<Emitted> = collected.drain().collect();
        let events = emitted.iter().position(|e| matches!(e, Emitted::Events(_)));
        let events = match events.map(|i| emitted.remove(i)) {
            Some(Emitted::Events(e)) if out.write_events => e,
            _ => RecordBatch::new_empty(events_schema()),
        };
        out.send(ToSink::Events {
            partition,
            events,
            dead: dead_batch,
            first,
            last,
        })?;
        self.send(emitted, out)
    }

    /// Moves the partition's watermark (an idle partition following the others, or the
    /// end of the source) and sends what closing windows produced.
    pub(super) fn watermark(&mut self, wm: Watermark, out: &Outlet) -> Result<()> {
        let mut collected = Collector::default();
        self.tracked(out, |chain| chain.handle_watermark(wm, &mut collected))?;
        self.send(collected.drain().collect(), out)
    }

    /// Sends the chain's tables to the sink; alert notices are also kept for the caller.
    pub(super) fn send(&mut self, emitted: Vec<Emitted>, out: &Outlet) -> Result<()> {
        let partition = self.partition;
        for e in emitted {
            let msg = match e {
                // Only a batch's own call emits events; `process` sends them with its
                // offsets and dead letters.
                Emitted::Events(_) => continue,
                Emitted::Metrics(batch) => ToSink::Metrics { partition, batch },
                Emitted::Budgets(batch) => ToSink::Budgets { partition, batch },
                Emitted::CalibrationBins(batch) => ToSink::CalibrationBins { partition, batch },
                Emitted::Sessions(s) => ToSink::Sessions {
                    partition,
                    at: s.at,
                    batch: s.batch,
                },
                Emitted::Alerts(a) => {
                    out.counters.alert_rows(&a.rows);
                    let mut notices = out.notices.lock().expect("not poisoned");
                    notices.extend(a.notices.iter().cloned());
                    drop(notices);
                    ToSink::Alerts {
                        partition,
                        rows: a.rows,
                        notices: a.notices,
                    }
                }
                Emitted::Revisions(r) => ToSink::Revisions {
                    partition,
                    seq: r.seq,
                    metrics: r.metrics,
                    bins: r.calibration_bins,
                },
            };
            out.send(msg)?;
        }
        Ok(())
    }
}
