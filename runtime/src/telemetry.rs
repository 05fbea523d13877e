//! The process's own health, as Prometheus metrics: counters where things happen (the
//! partitions, the sink thread, alert delivery), gauges the driver refreshes, and the
//! liveness and readiness the HTTP endpoints answer from. Rendering is the text exposition
//! format (version 0.0.4), names by Prometheus conventions: `inferwatch_` prefix, base units,
//! `_total` on counters.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inferwatch_processor::OperatorStats;
use inferwatch_sink::outbox::SharedOutbox;
use inferwatch_sink::slack::SlackStats;

/// Upper bounds (seconds) of the checkpoint duration histogram's buckets.
const CHECKPOINT_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Run-wide counters every partition adds to, from any thread.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) payloads: AtomicU64,
    pub(crate) dead_letters: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) late_events: AtomicU64,
    pub(crate) windows_closed: AtomicU64,
    pub(crate) metric_rows: AtomicU64,
    /// Dead letters by the class of their reason (a bounded set of label values).
    dead_reasons: Mutex<BTreeMap<&'static str, u64>>,
    /// Alert and breaker transitions by (kind, rule, state).
    alerts: Mutex<BTreeMap<(String, String, String), u64>>,
}

impl Counters {
    pub(crate) fn stats(&self) -> OperatorStats {
        OperatorStats {
            events: self.events.load(Ordering::Relaxed),
            late_events: self.late_events.load(Ordering::Relaxed),
            windows_closed: self.windows_closed.load(Ordering::Relaxed),
            metric_rows: self.metric_rows.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add(&self, before: OperatorStats, after: OperatorStats) {
        let add = |c: &AtomicU64, a: u64, b: u64| c.fetch_add(a - b, Ordering::Relaxed);
        add(&self.events, after.events, before.events);
        add(&self.late_events, after.late_events, before.late_events);
        add(
            &self.windows_closed,
            after.windows_closed,
            before.windows_closed,
        );
        add(&self.metric_rows, after.metric_rows, before.metric_rows);
    }

    /// Counts events' dead letters by reason; `dead_letters` counts them all.
    pub(crate) fn dead_lettered<'a>(&self, reasons: impl Iterator<Item = &'a str>) {
        let n = self.classify(reasons);
        self.dead_letters.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts dead letters by reason only (feedback's: the feedback counts hold them).
    pub(crate) fn classify<'a>(&self, reasons: impl Iterator<Item = &'a str>) -> u64 {
        let mut reasons = reasons.peekable();
        if reasons.peek().is_none() {
            // Most batches: no lock taken.
            return 0;
        }
        let mut map = self.dead_reasons.lock().expect("not poisoned");
        let mut n = 0;
        for r in reasons {
            *map.entry(inferwatch_schemas::dead_letter::reason_class(r))
                .or_default() += 1;
            n += 1;
        }
        n
    }

    /// Counts the transitions of an `alerts` table batch.
    pub(crate) fn alert_rows(&self, rows: &datafusion::arrow::array::RecordBatch) {
        use datafusion::arrow::array::AsArray;
        let col = |name: &str| rows.column_by_name(name).map(|c| c.as_string::<i32>());
        let (Some(kind), Some(rule), Some(state)) = (col("kind"), col("rule"), col("state")) else {
            return;
        };
        let mut map = self.alerts.lock().expect("not poisoned");
        for i in 0..rows.num_rows() {
            let key = (
                kind.value(i).to_string(),
                rule.value(i).to_string(),
                state.value(i).to_string(),
            );
            *map.entry(key).or_default() += 1;
        }
    }
}

/// What one partition holds, refreshed by the driver now and then.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PartitionGauges {
    /// Messages past what was read (Kafka), when the source can tell.
    pub(crate) lag: Option<u64>,
    /// The partition's watermark (event time, ms), once it has seen an event.
    pub(crate) watermark_ms: Option<i64>,
    pub(crate) open_windows: u64,
    pub(crate) state_bytes: u64,
}

/// Where alert delivery stands: its outbox and its Slack loops' counts.
pub struct DeliveryWatch {
    pub outbox: SharedOutbox,
    pub slack: Vec<Arc<SlackStats>>,
}

/// The run's health, shared by the pipeline and whoever serves it.
pub struct Telemetry {
    started: Instant,
    pub(crate) counters: Arc<Counters>,
    partitions: Mutex<BTreeMap<i32, PartitionGauges>>,
    /// Checkpoint durations: bucket counts, their sum in seconds, how many.
    checkpoints: Mutex<([u64; CHECKPOINT_BUCKETS.len()], f64, u64)>,
    /// Where the tables go: it counts the files it completes.
    store: Mutex<Option<inferwatch_sink::Store>>,
    delivery: Mutex<Option<DeliveryWatch>>,
    /// When the driver last turned its loop, ms after `started`.
    heartbeat_ms: AtomicI64,
    /// Partitions restored and caught up (see [`Telemetry::ready`]).
    caught_up: AtomicBool,
    /// How many messages behind a partition may be and still count as caught up.
    ready_max_lag: u64,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("ready", &self.ready())
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    pub fn new(ready_max_lag: u64) -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            counters: Arc::default(),
            partitions: Mutex::default(),
            checkpoints: Mutex::new(([0; CHECKPOINT_BUCKETS.len()], 0.0, 0)),
            store: Mutex::new(None),
            delivery: Mutex::new(None),
            heartbeat_ms: AtomicI64::new(0),
            caught_up: AtomicBool::new(false),
            ready_max_lag,
        })
    }

    pub(crate) fn watch_delivery(&self, watch: DeliveryWatch) {
        *self.delivery.lock().expect("not poisoned") = Some(watch);
    }

    /// The driver's loop turned: the process is not stuck.
    pub(crate) fn beat(&self) {
        let ms = self.started.elapsed().as_millis() as i64;
        self.heartbeat_ms.store(ms, Ordering::Relaxed);
    }

    /// Time since the driver last turned its loop.
    pub fn since_heartbeat(&self) -> Duration {
        let ms = self.heartbeat_ms.load(Ordering::Relaxed).max(0) as u64;
        self.started
            .elapsed()
            .saturating_sub(Duration::from_millis(ms))
    }

    /// Replaces what the partitions held are known to hold (`None`: busy just now, as
    /// before); partitions no longer held go. `restoring`: some are not ready to count.
    pub(crate) fn set_partitions(
        &self,
        gauges: BTreeMap<i32, Option<PartitionGauges>>,
        restoring: bool,
    ) {
        let mut parts = self.partitions.lock().expect("not poisoned");
        let merged: BTreeMap<i32, PartitionGauges> = gauges
            .into_iter()
            .map(|(p, g)| (p, g.or_else(|| parts.get(&p).copied()).unwrap_or_default()))
            .collect();
        let caught_up = !restoring
            && merged
                .values()
                .all(|g| g.lag.unwrap_or(0) <= self.ready_max_lag);
        *parts = merged;
        self.caught_up.store(caught_up, Ordering::Relaxed);
    }

    /// Ready: the run has started, its partitions are restored, and none is further
    /// behind than `ready_max_lag` messages.
    pub fn ready(&self) -> bool {
        self.caught_up.load(Ordering::Relaxed)
    }

    pub(crate) fn checkpoint_took(&self, d: Duration) {
        let s = d.as_secs_f64();
        let mut h = self.checkpoints.lock().expect("not poisoned");
        if let Some(i) = CHECKPOINT_BUCKETS.iter().position(|&b| s <= b) {
            h.0[i] += 1;
        }
        h.1 += s;
        h.2 += 1;
    }

    pub(crate) fn watch_store(&self, store: &inferwatch_sink::Store) {
        *self.store.lock().expect("not poisoned") = Some(store.clone());
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        self.render_events(&mut out);
        self.render_partitions(&mut out);
        self.render_sink(&mut out);
        self.render_alerts(&mut out);
        header(
            &mut out,
            "inferwatch_build_info",
            "gauge",
            "The running build: version as a label, value 1.",
        );
        let _ = writeln!(
            out,
            "inferwatch_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out
    }

    fn render_events(&self, out: &mut String) {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, help, value) in [
            (
                "inferwatch_events_received_total",
                "Payloads read from the source, valid or not.",
                load(&c.payloads),
            ),
            (
                "inferwatch_events_processed_total",
                "Valid events decoded and aggregated (rows of the events table).",
                load(&c.events),
            ),
            (
                "inferwatch_late_events_total",
                "Events that arrived after every window they belong to had closed.",
                load(&c.late_events),
            ),
            (
                "inferwatch_windows_closed_total",
                "Windows closed (per source partition).",
                load(&c.windows_closed),
            ),
        ] {
            counter(out, name, help, value);
        }
        header(
            out,
            "inferwatch_events_dead_lettered_total",
            "counter",
            "Payloads written to the dead_letter table, by class of reason.",
        );
        let reasons = c.dead_reasons.lock().expect("not poisoned");
        for (reason, n) in reasons.iter() {
            let _ = writeln!(
                out,
                "inferwatch_events_dead_lettered_total{{reason=\"{reason}\"}} {n}"
            );
        }
    }

    fn render_partitions(&self, out: &mut String) {
        let parts = self.partitions.lock().expect("not poisoned");
        gauge(
            out,
            "inferwatch_partitions",
            "Source partitions this process holds.",
            parts.len() as f64,
        );
        header(
            out,
            "inferwatch_consumer_lag_messages",
            "gauge",
            "Messages past what was read, per source partition (Kafka).",
        );
        for (p, g) in parts.iter() {
            if let Some(lag) = g.lag {
                let _ = writeln!(
                    out,
                    "inferwatch_consumer_lag_messages{{partition=\"{p}\"}} {lag}"
                );
            }
        }
        // The slowest partition's watermark decides what is final.
        let oldest = parts.values().filter_map(|g| g.watermark_ms).min();
        if let Some(wm) = oldest {
            let now = inferwatch_schemas::time::now_ms();
            gauge(
                out,
                "inferwatch_watermark_lag_seconds",
                "Wall clock minus the oldest partition watermark (event time).",
                (now - wm) as f64 / 1000.0,
            );
        }
        let sum = |f: fn(&PartitionGauges) -> u64| parts.values().map(f).sum::<u64>() as f64;
        gauge(
            out,
            "inferwatch_open_windows",
            "Open panes (windows, for tumbling windows) summed over partitions.",
            sum(|g| g.open_windows),
        );
        gauge(
            out,
            "inferwatch_state_bytes",
            "Bytes of the open windows' metric states.",
            sum(|g| g.state_bytes),
        );
    }

    fn render_sink(&self, out: &mut String) {
        let (buckets, sum, count) = *self.checkpoints.lock().expect("not poisoned");
        let name = "inferwatch_checkpoint_duration_seconds";
        header(
            out,
            name,
            "histogram",
            "Time to complete a partition's files and write its checkpoint.",
        );
        let mut cumulative = 0;
        for (le, n) in CHECKPOINT_BUCKETS.iter().zip(buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
        let store = self.store.lock().expect("not poisoned");
        let (files, bytes) = store.as_ref().map_or((0, 0), |s| s.finished());
        counter(
            out,
            "inferwatch_parquet_files_written_total",
            "Parquet files completed (every table).",
            files,
        );
        counter(
            out,
            "inferwatch_parquet_written_bytes_total",
            "Bytes of the Parquet files completed (every table).",
            bytes,
        );
    }

    fn render_alerts(&self, out: &mut String) {
        header(
            out,
            "inferwatch_alert_transitions_total",
            "counter",
            "Alert and circuit-breaker transitions (rows of the alerts table).",
        );
        let alerts = self.counters.alerts.lock().expect("not poisoned");
        for ((kind, rule, state), n) in alerts.iter() {
            let _ = writeln!(
                out,
                "inferwatch_alert_transitions_total{{kind=\"{}\",rule=\"{}\",state=\"{}\"}} {n}",
                escape(kind),
                escape(rule),
                escape(state)
            );
        }
        drop(alerts);
        let delivery = self.delivery.lock().expect("not poisoned");
        let (mut delivered, mut retried, mut rejected) = (0, 0, 0);
        for s in delivery.iter().flat_map(|d| &d.slack) {
            delivered += s.delivered();
            retried += s.retries();
            rejected += s.rejected();
        }
        header(
            out,
            "inferwatch_slack_deliveries_total",
            "counter",
            "Slack webhook attempts by outcome (retried attempts are tried again).",
        );
        for (outcome, n) in [
            ("delivered", delivered),
            ("retried", retried),
            ("rejected", rejected),
        ] {
            let _ = writeln!(
                out,
                "inferwatch_slack_deliveries_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        let depth = delivery.as_ref().map_or(0, |d| d.outbox.pending_total());
        gauge(
            out,
            "inferwatch_outbox_notices",
            "Alert notices waiting in the outbox for a destination.",
            depth as f64,
        );
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {v}");
}

fn gauge(out: &mut String, name: &str, help: &str, v: f64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {v}");
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render_in_the_text_format() {
        let t = Telemetry::new(100);
        t.counters
            .dead_lettered(["empty payload", "invalid JSON: x", "empty payload"].into_iter());
        t.checkpoint_took(Duration::from_millis(30));
        t.checkpoint_took(Duration::from_secs(3));
        let text = t.render();
        assert!(text.contains("inferwatch_events_dead_lettered_total{reason=\"empty\"} 2\n"));
        assert!(text.contains("inferwatch_events_dead_lettered_total{reason=\"invalid_json\"} 1\n"));
        assert!(text.contains("inferwatch_checkpoint_duration_seconds_bucket{le=\"0.025\"} 0\n"));
        assert!(text.contains("inferwatch_checkpoint_duration_seconds_bucket{le=\"0.05\"} 1\n"));
        assert!(text.contains("inferwatch_checkpoint_duration_seconds_bucket{le=\"5\"} 2\n"));
        assert!(text.contains("inferwatch_checkpoint_duration_seconds_count 2\n"));
        assert_eq!(t.counters.dead_letters.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn ready_once_partitions_are_restored_and_caught_up() {
        let t = Telemetry::new(100);
        assert!(!t.ready(), "not before the run reports");
        let behind = |lag| {
            BTreeMap::from([(
                0,
                Some(PartitionGauges {
                    lag: Some(lag),
                    ..Default::default()
                }),
            )])
        };
        t.set_partitions(behind(101), false);
        assert!(!t.ready());
        t.set_partitions(behind(100), true);
        assert!(!t.ready(), "restoring");
        t.set_partitions(behind(100), false);
        assert!(t.ready());
    }
}
