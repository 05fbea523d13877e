//! The window operator: `process_batch`, `handle_tick` (watermark from the clock) and
//! `finish` (end of a finite source) are its whole vocabulary.
//!
//! Watermarks advance event by event inside a micro-batch, and windows close the moment the
//! watermark passes them, so a window's contents and every event's `late` flag depend only on
//! the order of events — never on where micro-batch boundaries fell.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, BooleanBuilder, Float64Array, RecordBatch, StringArray,
    StringBuilder, TimestampMillisecondBuilder, UInt32Array,
};
use arrow::datatypes::{Float64Type, Int64Type, Schema, SchemaRef, TimestampMillisecondType};
use inferwatch_schemas::tables::{events as col, metrics_key_fields};
use inferwatch_schemas::validate::COST_SOURCE_TABLE;
use serde::{Deserialize, Serialize};

use crate::alerts::{AlertOutput, AlertSnapshot, Alerting};
use crate::config::ProcessorConfig;
use crate::custom::{BatchArgs, CustomMetrics, CustomState};
use crate::drift::{Baseline, Categories, DriftState, DriftValues, Reference};
use crate::error::{ProcessorError, Result};
use crate::labels::{LabelJoin, LabelSnapshot, LabelStats};
use crate::metrics::{Approval, BinSpec, CoreColumns, CoreState, Observation, StatusClass};
use crate::metrics::{Calibration, CostAnomaly, CostSeries, BUILTIN_COLUMNS};
use crate::price::{usd_to_nanos, PriceTable};
use crate::sessions::{Session, SessionStats, Sessions, SessionsSnapshot};
use crate::window::{SourceId, Watermarks, WindowSpec};
use inferwatch_schemas::{Feedback, Unmatched};

/// (service, model, model_version, route): what a `metrics` row is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub service: String,
    pub model: String,
    pub model_version: Option<String>,
    pub route: Option<String>,
}

#[derive(Default)]
struct Keys {
    index: HashMap<String, u32>,
    values: Vec<Key>,
    buf: String,
}

impl Keys {
    fn intern(
        &mut self,
        service: &str,
        model: &str,
        version: Option<&str>,
        route: Option<&str>,
    ) -> u32 {
        // A null and an empty string are different keys: \u{1} marks a present value.
        let b = &mut self.buf;
        b.clear();
        for part in [Some(service), Some(model), version, route] {
            if let Some(p) = part {
                b.push('\u{1}');
                b.push_str(p);
            }
            b.push('\u{1f}');
        }
        if let Some(&id) = self.index.get(b.as_str()) {
            return id;
        }
        let id = self.values.len() as u32;
        self.index.insert(b.clone(), id);
        self.values.push(Key {
            service: service.into(),
            model: model.into(),
            model_version: version.map(Into::into),
            route: route.map(Into::into),
        });
        id
    }
}

#[derive(Default)]
struct Pane {
    core: HashMap<u32, CoreState>,
    custom: HashMap<u32, CustomState>,
}

/// Counters for progress displays and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorStats {
    pub events: u64,
    pub late_events: u64,
    pub windows_closed: u64,
    pub metric_rows: u64,
}

/// What one call hands to the sinks.
#[derive(Debug)]
pub struct Output {
    /// The input events with `cost_usd`/`cost_source` priced and `late` set.
    pub events: Option<RecordBatch>,
    /// Rows for every window that closed during the call.
    pub metrics: Option<RecordBatch>,
}

pub struct WindowOperator {
    spec: WindowSpec,
    prices: PriceTable,
    watermarks: Watermarks,
    keys: Keys,
    panes: BTreeMap<i64, Pane>,
    /// Start of the latest window already emitted: later events for it are late.
    emitted_through: Option<i64>,
    custom: Option<CustomMetrics>,
    schema: SchemaRef,
    stats: OperatorStats,
    /// `calibration_bins` rows of windows closed since the last `take_calibration_bins`.
    bins: BinRows,
    bin_spec: BinSpec,
    categories: Categories,
    reference: Reference,
    min_samples: u64,
    /// Per key: the drift reference built from closed panes.
    baselines: HashMap<u32, Baseline>,
    /// Panes up to here have been handed to the baselines.
    retired_through: Option<i64>,
    /// Predictions waiting for feedback; `None` when the run has no feedback source.
    labels: Option<LabelJoin>,
    label_horizon: i64,
    /// Emitted window × key whose predictions may still get labels.
    revisable: BTreeMap<(i64, u32), Revisable>,
    /// Number of revision batches emitted so far: names revision files, so a replay from a
    /// checkpoint can remove the ones it will write again.
    revision_seq: u64,
    /// `emitted_through` when revisions were last emitted: they go out at most once per
    /// window close, so late labels make few files, at points fixed by event time.
    revised_at: Option<i64>,
    budgets: Budgets,
    /// Per key: cost per request of its recent windows, for `cost_zscore`.
    cost_history: HashMap<u32, CostSeries>,
    cost_span: i64,
    min_baseline: usize,
    sessions: Sessions,
    /// Sessions that ended, not yet handed out as `sessions` rows.
    ended: Vec<(Arc<str>, Session)>,
    /// `emitted_through` when `sessions` rows were last handed out.
    sessions_at: Option<i64>,
    /// Alert rules and circuit breakers over this partition's closed windows.
    alerts: Alerting,
}

const DAY_MS: i64 = 86_400_000;

/// Daily budgets: spend per budgeted service and tenant since the start of the UTC day,
/// from closed panes, and the `budgets` rows of closed windows.
struct Budgets {
    /// Budgets in nano-dollars.
    services: HashMap<String, i64>,
    tenant_ids: HashMap<String, u32>,
    tenants: Vec<(String, i64)>,
    /// (day, nano-dollars spent in that day's closed panes).
    service_spend: HashMap<String, (i64, i64)>,
    tenant_spend: HashMap<u32, (i64, i64)>,
    rows: Vec<(i64, i64, &'static str, String, i64, i64, i64)>,
}

impl Budgets {
    fn new(c: &crate::config::BudgetConfig) -> Self {
        let nanos = |usd: &f64| (usd * 1e9).round() as i64;
        Self {
            services: c
                .services
                .iter()
                .map(|(k, v)| (k.clone(), nanos(v)))
                .collect(),
            tenant_ids: c
                .tenants
                .keys()
                .enumerate()
                .map(|(i, k)| (k.clone(), i as u32))
                .collect(),
            tenants: c
                .tenants
                .iter()
                .map(|(k, v)| (k.clone(), nanos(v)))
                .collect(),
            service_spend: HashMap::new(),
            tenant_spend: HashMap::new(),
            rows: Vec::new(),
        }
    }

    fn add(slot: &mut (i64, i64), day: i64, nanos: i64) {
        if slot.0 < day {
            *slot = (day, 0);
        }
        if slot.0 == day {
            slot.1 += nanos;
        }
    }

    /// A closed pane's spend counts towards its day.
    fn retire(&mut self, pane: i64, service: &str, state: &CoreState) {
        let day = pane.div_euclid(DAY_MS);
        if self.services.contains_key(service) {
            let slot = self
                .service_spend
                .entry(service.to_string())
                .or_insert((day, 0));
            Self::add(slot, day, state.cost_nanos);
        }
        for &(t, c) in &state.tenant_costs {
            Self::add(self.tenant_spend.entry(t).or_insert((day, 0)), day, c);
        }
    }

    fn spent(slot: Option<&(i64, i64)>, day: i64) -> i64 {
        slot.filter(|s| s.0 == day).map_or(0, |s| s.1)
    }
}

/// Rows of the `sessions` table, handed out when windows close.
#[derive(Debug)]
pub struct SessionRows {
    /// Names the file: the window close they were handed out at.
    pub at: i64,
    pub batch: RecordBatch,
}

/// An emitted window × key that late labels can still change. Checkpoints carry its last
/// row separately, as Arrow IPC.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Revisable {
    end: i64,
    requests: u64,
    calibration: Calibration,
    late_labels: u64,
    revision: u32,
    dirty: bool,
    /// The row as last emitted.
    #[serde(skip)]
    row: Option<RecordBatch>,
}

/// Re-emitted rows of windows whose calibration changed with late labels.
#[derive(Debug)]
pub struct Revisions {
    /// Sequence number of this batch of revisions, per source partition.
    pub seq: u64,
    pub metrics: RecordBatch,
    pub calibration_bins: Option<RecordBatch>,
}

/// Columns a revision recomputes; every other column keeps its first value.
const REVISED: &[&str] = &[
    "labeled",
    "label_coverage",
    "accuracy",
    "mean_confidence",
    "overconfidence",
    "ece",
    "mce",
    "brier",
    "auroc",
    "late_labels",
    "revision",
];

/// The leading columns of `metrics` and `calibration_bins`: window bounds and the key.
struct WindowKeyColumns {
    start: TimestampMillisecondBuilder,
    end: TimestampMillisecondBuilder,
    service: StringBuilder,
    model: StringBuilder,
    version: StringBuilder,
    route: StringBuilder,
}

impl WindowKeyColumns {
    fn new() -> Self {
        Self {
            start: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            end: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            service: StringBuilder::new(),
            model: StringBuilder::new(),
            version: StringBuilder::new(),
            route: StringBuilder::new(),
        }
    }

    fn append(&mut self, start: i64, end: i64, key: &Key) {
        self.start.append_value(start);
        self.end.append_value(end);
        self.service.append_value(&key.service);
        self.model.append_value(&key.model);
        self.version.append_option(key.model_version.as_deref());
        self.route.append_option(key.route.as_deref());
    }

    fn len(&self) -> usize {
        self.service.len()
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.start.finish()),
            Arc::new(self.end.finish()),
            Arc::new(self.service.finish()),
            Arc::new(self.model.finish()),
            Arc::new(self.version.finish()),
            Arc::new(self.route.finish()),
        ]
    }
}

/// Builders of `calibration_bins` rows.
struct BinRows {
    keys: WindowKeyColumns,
    bin: arrow::array::Int32Builder,
    lower: arrow::array::Float64Builder,
    upper: arrow::array::Float64Builder,
    count: arrow::array::Int64Builder,
    conf: arrow::array::Float64Builder,
    acc: arrow::array::Float64Builder,
    revision: arrow::array::Int64Builder,
}

impl BinRows {
    fn new() -> Self {
        Self {
            keys: WindowKeyColumns::new(),
            bin: Default::default(),
            lower: Default::default(),
            upper: Default::default(),
            count: Default::default(),
            conf: Default::default(),
            acc: Default::default(),
            revision: Default::default(),
        }
    }

    fn append(
        &mut self,
        start: i64,
        end: i64,
        key: &Key,
        cal: &crate::metrics::Calibration,
        spec: BinSpec,
        revision: u32,
    ) {
        for r in cal.reliability(spec) {
            self.keys.append(start, end, key);
            self.bin.append_value(r.bin as i32);
            self.lower.append_value(r.lower);
            self.upper.append_value(r.upper);
            self.count.append_value(r.count as i64);
            self.conf.append_value(r.mean_confidence);
            self.acc.append_value(r.accuracy);
            self.revision.append_value(revision as i64);
        }
    }

    fn finish(&mut self) -> Result<Option<RecordBatch>> {
        if self.keys.len() == 0 {
            return Ok(None);
        }
        let mut columns = self.keys.finish();
        columns.extend::<[ArrayRef; 7]>([
            Arc::new(self.bin.finish()),
            Arc::new(self.lower.finish()),
            Arc::new(self.upper.finish()),
            Arc::new(self.count.finish()),
            Arc::new(self.conf.finish()),
            Arc::new(self.acc.finish()),
            Arc::new(self.revision.finish()),
        ]);
        Ok(Some(RecordBatch::try_new(
            inferwatch_schemas::tables::calibration_bins_schema(),
            columns,
        )?))
    }
}

/// Rows for closed windows, built up during one call.
struct MetricRows {
    keys: WindowKeyColumns,
    core: CoreColumns,
    custom: Vec<CustomState>,
    /// (row, window start, key) of rows that late labels may revise.
    revisable: Vec<(usize, i64, u32)>,
}

impl MetricRows {
    fn new() -> Self {
        Self {
            keys: WindowKeyColumns::new(),
            core: CoreColumns::default(),
            custom: Vec::new(),
            revisable: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.keys.len()
    }
}

impl WindowOperator {
    pub fn new(config: &ProcessorConfig) -> Result<Self> {
        config.validate()?;
        let spec = WindowSpec::new(&config.window);
        let custom = CustomMetrics::plan(
            &config.custom_metrics,
            inferwatch_schemas::tables::events_schema(),
        )?;
        let mut fields = metrics_key_fields();
        fields.extend(CoreColumns::fields());
        if let Some(c) = &custom {
            fields.extend(c.fields());
        }
        let reference = match config.drift.pinned()? {
            Some((from, to)) => Reference::Pinned { from, to },
            None => Reference::Trailing {
                span_ms: spec.size * config.drift.baseline_windows as i64,
            },
        };
        Ok(Self {
            spec,
            prices: PriceTable::new(&config.prices)?,
            watermarks: Watermarks::new(spec.out_of_orderness, config.window.idle_timeout),
            keys: Keys::default(),
            panes: BTreeMap::new(),
            emitted_through: None,
            custom,
            alerts: Alerting::new(&config.alerts, &Schema::new(fields.clone()), spec.size)?,
            schema: Arc::new(Schema::new(fields)),
            stats: OperatorStats::default(),
            bins: BinRows::new(),
            bin_spec: BinSpec {
                bins: config.calibration.bins,
                binning: config.calibration.binning,
            },
            categories: Categories::default(),
            reference,
            min_samples: config.drift.min_samples,
            baselines: HashMap::new(),
            retired_through: None,
            labels: None,
            label_horizon: config.feedback.label_horizon.as_millis() as i64,
            revisable: BTreeMap::new(),
            revision_seq: 0,
            revised_at: None,
            budgets: Budgets::new(&config.budgets),
            cost_history: HashMap::new(),
            cost_span: spec.size * config.cost.baseline_windows as i64,
            min_baseline: config.cost.min_baseline as usize,
            sessions: Sessions::new(&config.loops),
            ended: Vec::new(),
            sessions_at: None,
        })
    }

    /// Runs the alert rules over rows of closed windows just emitted (`metrics`, and the
    /// `budgets` rows of the same windows); [`WindowOperator::take_alerts`] hands out the
    /// transitions.
    pub fn evaluate_alerts(
        &mut self,
        metrics: Option<&RecordBatch>,
        budgets: Option<&RecordBatch>,
    ) -> Result<()> {
        self.alerts.evaluate(metrics, budgets)
    }

    /// `alerts` rows and notices of the transitions since the last call.
    pub fn take_alerts(&mut self) -> Result<Option<AlertOutput>> {
        self.alerts.take()
    }

    /// (alerts firing, breakers not closed) in this partition now.
    pub fn active_alerts(&self) -> (usize, usize) {
        self.alerts.active()
    }

    /// This run has a feedback source: predictions without `correct` wait for labels.
    pub fn expect_feedback(&mut self, config: &crate::config::FeedbackConfig) {
        self.labels.get_or_insert_with(|| LabelJoin::new(config));
    }

    /// `budgets` rows of the windows closed since the last call.
    pub fn take_budget_rows(&mut self) -> Result<Option<RecordBatch>> {
        if self.budgets.rows.is_empty() {
            return Ok(None);
        }
        let rows = std::mem::take(&mut self.budgets.rows);
        let ts = |v: Vec<i64>| {
            Arc::new(arrow::array::TimestampMillisecondArray::from(v).with_timezone("UTC"))
                as ArrayRef
        };
        let usd = |v: Vec<f64>| Arc::new(Float64Array::from(v)) as ArrayRef;
        let text = |v: Vec<&str>| Arc::new(StringArray::from(v)) as ArrayRef;
        let size = self.spec.size as f64;
        let columns = vec![
            ts(rows.iter().map(|r| r.0).collect()),
            ts(rows.iter().map(|r| r.1).collect()),
            text(rows.iter().map(|r| r.2).collect()),
            text(rows.iter().map(|r| r.3.as_str()).collect()),
            usd(rows.iter().map(|r| r.4 as f64 / 1e9).collect()),
            usd(rows.iter().map(|r| r.5 as f64 / 1e9).collect()),
            usd(rows.iter().map(|r| r.6 as f64 / 1e9).collect()),
            usd(rows
                .iter()
                .map(|r| r.6 as f64 / size * DAY_MS as f64 / r.4 as f64)
                .collect()),
        ];
        Ok(Some(RecordBatch::try_new(
            inferwatch_schemas::tables::budgets_schema(),
            columns,
        )?))
    }

    /// Start of the last window emitted (restored with a checkpoint).
    pub fn emitted_through(&self) -> Option<i64> {
        self.emitted_through
    }

    /// When `sessions` rows were last handed out (restored with a checkpoint).
    pub fn sessions_at(&self) -> Option<i64> {
        self.sessions_at
    }

    /// Counters of session tracking.
    pub fn session_stats(&self) -> SessionStats {
        self.sessions.stats()
    }

    /// `sessions` rows of the sessions that ended, handed out once a window closed since
    /// the last call (or now, with `force`), so files are cut at points fixed by event time.
    pub fn take_sessions(&mut self, force: bool) -> Result<Option<SessionRows>> {
        if self.ended.is_empty() || (!force && self.sessions_at == self.emitted_through) {
            return Ok(None);
        }
        self.sessions_at = self.emitted_through;
        let mut ended = std::mem::take(&mut self.ended);
        ended.sort_by(|a, b| (a.1.first_seen, &a.0).cmp(&(b.1.first_seen, &b.0)));
        let mut keys = WindowKeyColumns::new();
        let mut id = StringBuilder::new();
        let mut steps = arrow::array::Int64Builder::new();
        let mut repeats = arrow::array::Int64Builder::new();
        let mut cost = arrow::array::Float64Builder::new();
        let mut wasted = arrow::array::Float64Builder::new();
        let mut runaway = BooleanBuilder::new();
        let mut reason = StringBuilder::new();
        for (sid, s) in &ended {
            keys.append(s.first_seen, s.last_seen, &self.keys.values[s.key as usize]);
            id.append_value(sid);
            steps.append_value(s.steps as i64);
            repeats.append_value(s.repeats as i64);
            cost.append_value(s.cost_nanos as f64 / 1e9);
            wasted.append_value(s.wasted_nanos as f64 / 1e9);
            runaway.append_value(s.runaway.is_some());
            reason.append_option(s.runaway.as_deref());
        }
        let mut columns: Vec<ArrayRef> = vec![Arc::new(id.finish())];
        columns.extend(keys.finish());
        columns.extend::<[ArrayRef; 6]>([
            Arc::new(steps.finish()),
            Arc::new(repeats.finish()),
            Arc::new(cost.finish()),
            Arc::new(wasted.finish()),
            Arc::new(runaway.finish()),
            Arc::new(reason.finish()),
        ]);
        let batch = RecordBatch::try_new(inferwatch_schemas::tables::sessions_schema(), columns)?;
        Ok(Some(SessionRows {
            at: self.emitted_through.unwrap_or(0),
            batch,
        }))
    }

    /// Counters of the feedback join.
    pub fn label_stats(&self) -> LabelStats {
        self.labels.as_ref().map(|l| l.stats()).unwrap_or_default()
    }

    /// Revision batches emitted so far (restored with a checkpoint).
    pub fn revision_seq(&self) -> u64 {
        self.revision_seq
    }

    /// Joins one feedback event to its prediction, if this partition holds it. The label
    /// goes into the prediction's open pane and into every emitted window holding it, which
    /// [`WindowOperator::take_revisions`] then re-emits.
    pub fn join_feedback(&mut self, f: &Feedback) -> Result<(), Unmatched> {
        let Some(labels) = self.labels.as_mut() else {
            return Err(Unmatched::Unknown);
        };
        let names = self.categories.names();
        let j = labels.join(f, |c| names.get(c as usize).map(String::as_str))?;
        let pane = self.spec.pane(j.time);
        let width = self.bin_spec;
        if self.emitted_through.is_none_or(|e| pane > e) {
            if let Some(s) = self
                .panes
                .get_mut(&pane)
                .and_then(|p| p.core.get_mut(&j.key))
            {
                s.calibration.get_or_insert_with(Default::default).observe(
                    j.confidence,
                    j.correct,
                    width.width_bins(),
                );
            }
        }
        let Some(emitted) = self.emitted_through else {
            return Ok(());
        };
        let mut w = self.spec.first_window_of(pane);
        while w <= pane.min(emitted) {
            if let Some(r) = self.revisable.get_mut(&(w, j.key)) {
                r.calibration
                    .observe(j.confidence, j.correct, width.width_bins());
                r.late_labels += 1;
                r.dirty = true;
            }
            w += self.spec.slide;
        }
        Ok(())
    }

    /// New revisions of every emitted window whose calibration late labels changed since
    /// the last revisions: the whole row again with `revision` one higher (latest wins).
    /// Without `force`, only once a window closed since the last revisions.
    pub fn take_revisions(&mut self, force: bool) -> Result<Option<Revisions>> {
        if !force && self.revised_at == self.emitted_through {
            return Ok(None);
        }
        let dirty: Vec<(i64, u32)> = self
            .revisable
            .iter()
            .filter(|(_, r)| r.dirty && r.row.is_some())
            .map(|(k, _)| *k)
            .collect();
        if dirty.is_empty() {
            return Ok(None);
        }
        let mut rows = Vec::with_capacity(dirty.len());
        let mut bins = BinRows::new();
        for (start, k) in dirty {
            let r = self.revisable.get_mut(&(start, k)).expect("listed above");
            r.dirty = false;
            r.revision += 1;
            let mut core = CoreColumns::default();
            let state = CoreState::for_revision(r.requests, r.calibration.clone(), r.late_labels);
            core.append(
                &state,
                self.bin_spec,
                &DriftValues::default(),
                CostAnomaly::default(),
                None,
                r.revision,
            );
            let fresh = core.finish();
            let old = r.row.as_ref().expect("filtered above");
            let mut columns = old.columns().to_vec();
            for name in REVISED {
                let i = BUILTIN_COLUMNS
                    .iter()
                    .position(|c| c == name)
                    .expect("revised columns are built-in");
                columns[i] = fresh[i - 6].clone();
            }
            let row = RecordBatch::try_new(old.schema(), columns)?;
            r.row = Some(row.clone());
            rows.push(row);
            bins.append(
                start,
                r.end,
                &self.keys.values[k as usize],
                &r.calibration,
                self.bin_spec,
                r.revision,
            );
        }
        self.revision_seq += 1;
        self.revised_at = self.emitted_through;
        Ok(Some(Revisions {
            seq: self.revision_seq,
            metrics: arrow::compute::concat_batches(&self.schema, &rows)?,
            calibration_bins: bins.finish()?,
        }))
    }

    /// Forgets what no feedback can reach any more at watermark `wm`.
    fn expire_labels(&mut self, wm: i64) {
        if let Some(l) = self.labels.as_mut() {
            l.expire(wm);
        }
        let horizon = self.label_horizon;
        self.revisable
            .retain(|_, r| r.dirty || r.end + horizon >= wm);
    }

    /// Schema of the `metrics` rows this operator emits.
    pub fn metrics_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub fn stats(&self) -> OperatorStats {
        self.stats
    }

    /// The processor's watermark, if any event was seen.
    pub fn watermark(&self, now: Instant) -> Option<i64> {
        self.watermarks.current(now)
    }

    /// Newest event time seen from a source partition (files dead letters deterministically).
    pub fn max_event_time(&self, source: &SourceId) -> Option<i64> {
        self.watermarks.max_event_time(source)
    }

    /// Number of (pane, key) states held: what memory grows with.
    pub fn open_states(&self) -> usize {
        self.panes.values().map(|p| p.core.len()).sum()
    }

    /// Reliability-bin rows (`calibration_bins`) of the windows closed since the last call.
    pub fn take_calibration_bins(&mut self) -> Result<Option<RecordBatch>> {
        self.bins.finish()
    }

    /// Serialises everything this operator holds about `source` — open panes, keys, how far
    /// windows were emitted, the partition's newest event time — for a checkpoint. Restoring
    /// it with [`WindowOperator::restore`] continues exactly where this left off.
    pub fn snapshot(&mut self, source: &SourceId) -> Result<Vec<u8>> {
        let mut panes = Vec::with_capacity(self.panes.len());
        // Custom states in (pane, key) order, with that order recorded in `custom_index`.
        let mut custom_states: Vec<&mut CustomState> = Vec::new();
        let mut custom_index: Vec<(i64, u32)> = Vec::new();
        for (&start, pane) in self.panes.iter_mut() {
            let mut core: Vec<(u32, CoreState)> =
                pane.core.iter().map(|(k, s)| (*k, s.clone())).collect();
            core.sort_by_key(|(k, _)| *k);
            panes.push((start, core));
            let mut custom: Vec<(u32, &mut CustomState)> =
                pane.custom.iter_mut().map(|(k, s)| (*k, s)).collect();
            custom.sort_by_key(|(k, _)| *k);
            for (k, state) in custom {
                custom_index.push((start, k));
                custom_states.push(state);
            }
        }
        let custom = match &self.custom {
            Some(c) => c
                .encode_states(&mut custom_states)?
                .iter()
                .map(|b| hex(b))
                .collect(),
            None => Vec::new(),
        };
        let snap = Snapshot {
            version: SNAPSHOT_VERSION,
            window: [
                self.spec.size,
                self.spec.slide,
                self.spec.lateness,
                self.spec.out_of_orderness,
            ],
            custom_columns: self.custom_columns(),
            keys: self.keys.values.clone(),
            panes,
            custom_index,
            custom,
            emitted_through: self.emitted_through,
            max_event_time: self.watermarks.max_event_time(source),
            stats: self.stats,
            categories: self.categories.names().to_vec(),
            baselines: {
                let mut b: Vec<(u32, Vec<(i64, DriftState)>)> = self
                    .baselines
                    .iter()
                    .map(|(k, b)| (*k, b.panes().cloned().collect()))
                    .filter(|(_, p): &(u32, Vec<_>)| !p.is_empty())
                    .collect();
                b.sort_by_key(|(k, _)| *k);
                b
            },
            retired_through: self.retired_through,
            labels: self.labels.as_ref().map(|l| l.snapshot()),
            revisable: self
                .revisable
                .iter()
                .map(|(&(start, key), r)| (start, key, r.clone()))
                .collect(),
            revisable_rows: {
                let rows: Vec<RecordBatch> = self
                    .revisable
                    .values()
                    .filter_map(|r| r.row.clone())
                    .collect();
                if rows.is_empty() {
                    String::new()
                } else {
                    let batch = arrow::compute::concat_batches(&self.schema, &rows)?;
                    let mut buf = Vec::new();
                    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &self.schema)?;
                    w.write(&batch)?;
                    w.finish()?;
                    drop(w);
                    hex(&buf)
                }
            },
            revision_seq: self.revision_seq,
            revised_at: self.revised_at,
            cost_history: {
                let mut h: Vec<(u32, Vec<(i64, u64)>)> = self
                    .cost_history
                    .iter()
                    .map(|(k, v)| (*k, v.iter().map(|(s, x)| (*s, x.to_bits())).collect()))
                    .collect();
                h.sort_by_key(|(k, _)| *k);
                h
            },
            service_spend: {
                let mut v: Vec<(String, (i64, i64))> = self
                    .budgets
                    .service_spend
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                v.sort();
                v
            },
            tenant_spend: {
                let mut v: Vec<(u32, (i64, i64))> = self
                    .budgets
                    .tenant_spend
                    .iter()
                    .map(|(k, v)| (*k, *v))
                    .collect();
                v.sort();
                v
            },
            sessions: self.sessions.snapshot(),
            ended: self
                .ended
                .iter()
                .map(|(id, s)| (id.to_string(), s.clone()))
                .collect(),
            sessions_at: self.sessions_at,
            alerts: self.alerts.snapshot(),
        };
        serde_json::to_vec(&snap).map_err(|e| ProcessorError::Checkpoint(e.to_string()))
    }

    /// Replaces this operator's state with a [`WindowOperator::snapshot`] of `source`.
    /// Fails, naming what differs, when the window or custom metrics changed since.
    pub fn restore(&mut self, source: &SourceId, bytes: &[u8], now: Instant) -> Result<()> {
        let snap: Snapshot = serde_json::from_slice(bytes)
            .map_err(|e| ProcessorError::Checkpoint(format!("unreadable: {e}")))?;
        if snap.version != SNAPSHOT_VERSION {
            return Err(ProcessorError::Checkpoint(format!(
                "it has format version {}, this inferwatch reads version {SNAPSHOT_VERSION}; \
                 run the inferwatch that wrote it to drain the topic, or start over with a new \
                 data dir (the consumer group then resumes from its committed offsets)",
                snap.version
            )));
        }
        let window = [
            self.spec.size,
            self.spec.slide,
            self.spec.lateness,
            self.spec.out_of_orderness,
        ];
        if snap.window != window {
            return Err(ProcessorError::Checkpoint(format!(
                "it was written with window (size, slide, lateness, out-of-orderness) = {:?} ms, \
                 the config now says {window:?} ms; restore the old [window] settings or start \
                 over with a new data dir",
                snap.window
            )));
        }
        if snap.custom_columns != self.custom_columns() {
            return Err(ProcessorError::Checkpoint(format!(
                "it was written with custom metrics {:?}, the config now has {:?}",
                snap.custom_columns,
                self.custom_columns()
            )));
        }
        self.keys = Keys::default();
        for k in &snap.keys {
            self.keys.intern(
                &k.service,
                &k.model,
                k.model_version.as_deref(),
                k.route.as_deref(),
            );
        }
        self.panes = snap
            .panes
            .into_iter()
            .map(|(start, core)| {
                (
                    start,
                    Pane {
                        core: core.into_iter().collect(),
                        custom: HashMap::new(),
                    },
                )
            })
            .collect();
        if let Some(c) = &self.custom {
            let blobs: Vec<Vec<u8>> = snap
                .custom
                .iter()
                .map(|h| {
                    unhex(h)
                        .ok_or_else(|| ProcessorError::Checkpoint("custom state is not hex".into()))
                })
                .collect::<Result<_>>()?;
            let states = c.decode_states(&blobs, snap.custom_index.len())?;
            for ((pane, key), state) in snap.custom_index.into_iter().zip(states) {
                self.panes
                    .entry(pane)
                    .or_default()
                    .custom
                    .insert(key, state);
            }
        }
        self.emitted_through = snap.emitted_through;
        self.categories = Categories::from_names(snap.categories);
        self.baselines = snap
            .baselines
            .into_iter()
            .map(|(k, panes)| (k, Baseline::from_panes(panes)))
            .collect();
        self.retired_through = snap.retired_through;
        if let (Some(l), Some(s)) = (self.labels.as_mut(), snap.labels) {
            l.restore(s);
        }
        let mut rows = if snap.revisable_rows.is_empty() {
            None
        } else {
            let bytes = unhex(&snap.revisable_rows)
                .ok_or_else(|| ProcessorError::Checkpoint("revisable rows are not hex".into()))?;
            let mut r =
                arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
            r.next().transpose()?
        };
        if rows
            .as_ref()
            .is_some_and(|b| b.schema().fields() != self.schema.fields())
        {
            rows = None;
        }
        self.revisable = snap
            .revisable
            .into_iter()
            .enumerate()
            .map(|(i, (start, key, r))| {
                let row = rows.as_ref().map(|b| b.slice(i, 1));
                ((start, key), Revisable { row, ..r })
            })
            .collect();
        self.revision_seq = snap.revision_seq;
        self.revised_at = snap.revised_at;
        self.cost_history = snap
            .cost_history
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    v.into_iter().map(|(s, x)| (s, f64::from_bits(x))).collect(),
                )
            })
            .collect();
        self.budgets.service_spend = snap.service_spend.into_iter().collect();
        self.budgets.tenant_spend = snap.tenant_spend.into_iter().collect();
        self.sessions.restore(snap.sessions);
        self.ended = snap
            .ended
            .into_iter()
            .map(|(id, s)| (Arc::from(id), s))
            .collect();
        self.sessions_at = snap.sessions_at;
        self.alerts.restore(snap.alerts);
        if let Some(t) = snap.max_event_time {
            self.watermarks.advance(source, t, now);
        }
        self.stats = snap.stats;
        Ok(())
    }

    fn custom_columns(&self) -> Vec<String> {
        self.custom
            .as_ref()
            .map(|c| c.fields().iter().map(|f| f.name().clone()).collect())
            .unwrap_or_default()
    }

    /// Closes every window the watermark `wm` allows, whatever the partition's own events
    /// say: how an idle partition follows the others. Returns the rows of closed windows.
    pub fn advance_watermark(&mut self, wm: i64) -> Result<Option<RecordBatch>> {
        let through = self.spec.closable_through(wm);
        let mut out = MetricRows::new();
        if self.emitted_through.is_none_or(|e| through > e) && !self.panes.is_empty() {
            self.close_through(through, &mut out)?;
        }
        self.finish_rows(out)
    }

    /// Aggregates one micro-batch of decoded events from `source` into its panes, closing
    /// windows as the watermark passes them.
    pub fn process_batch(
        &mut self,
        source: &SourceId,
        events: RecordBatch,
        now: Instant,
    ) -> Result<Output> {
        let n = events.num_rows();
        if n == 0 {
            return Ok(Output {
                events: None,
                metrics: None,
            });
        }
        let (events, costs) = self.price(events)?;
        let cost_source = events.column(col::COST_SOURCE).as_string::<i32>().clone();
        let ts = events
            .column(col::TIMESTAMP)
            .as_primitive::<TimestampMillisecondType>();
        let service = events.column(col::SERVICE).as_string::<i32>();
        let model = events.column(col::MODEL).as_string::<i32>();
        let version = events.column(col::MODEL_VERSION).as_string::<i32>();
        let route = events.column(col::ROUTE).as_string::<i32>();
        let status = events.column(col::STATUS).as_string::<i32>();
        let latency = events.column(col::LATENCY_MS).as_primitive::<Float64Type>();
        let tokens_in = events.column(col::TOKENS_IN).as_primitive::<Int64Type>();
        let tokens_out = events.column(col::TOKENS_OUT).as_primitive::<Int64Type>();
        let quality = events
            .column(col::QUALITY_SCORE)
            .as_primitive::<Float64Type>();
        let confidence = events.column(col::CONFIDENCE).as_primitive::<Float64Type>();
        let correct = events.column(col::CORRECT).as_boolean();
        let prediction = events.column(col::PREDICTION).as_string::<i32>();
        let event_id = events.column(col::EVENT_ID).as_string::<i32>();
        let session_id = events.column(col::SESSION_ID).as_string::<i32>();
        let tenant = events.column(col::TENANT).as_string::<i32>();
        let tool = events.column(col::TOOL).as_string::<i32>();
        let input_hash = events.column(col::INPUT_HASH).as_string::<i32>();
        let flags = events.column(col::FLAGS).as_list::<i32>();
        let approval = events.column(col::APPROVAL).as_string::<i32>();

        let args = match &self.custom {
            Some(c) => Some(c.arguments(&events)?),
            None => None,
        };
        let mut groups: HashMap<(i64, u32), Vec<u32>> = HashMap::new();
        let mut out = MetricRows::new();
        let mut late = BooleanBuilder::with_capacity(n);
        let others = self.watermarks.others(source, now);
        let ooo = self.spec.out_of_orderness;
        let mut max_ts = self
            .watermarks
            .max_event_time(source)
            .unwrap_or(i64::MIN / 2);

        // `i` indexes a dozen Arrow columns in lockstep; an iterator over one would not help.
        #[allow(clippy::needless_range_loop)]
        for i in 0..n {
            let t = ts.value(i);
            if t > max_ts {
                max_ts = t;
                let wm = others.map_or(t - ooo, |o| o.min(t - ooo));
                let through = self.spec.closable_through(wm);
                if self.emitted_through.is_none_or(|e| through > e) {
                    self.flush_custom(&mut groups, args.as_ref())?;
                    self.close_through(through, &mut out)?;
                }
            }
            let key = self.keys.intern(
                service.value(i),
                model.value(i),
                opt(version, i),
                opt(route, i),
            );
            let pane = self.spec.pane(t);
            let fully_late = self.emitted_through.is_some_and(|e| pane <= e);
            let is_late = self
                .emitted_through
                .is_some_and(|e| self.spec.first_window_of(pane) <= e);
            late.append_value(is_late);
            if is_late {
                self.stats.late_events += 1;
                let wm = others.map_or(max_ts - ooo, |o| o.min(max_ts - ooo));
                let now_pane = self.spec.pane(wm);
                let p = self.panes.entry(now_pane).or_default();
                p.core.entry(key).or_default().late_events += 1;
            }
            if fully_late {
                continue;
            }
            let obs = Observation {
                status: match status.value(i) {
                    "error" => StatusClass::Error,
                    "timeout" => StatusClass::Timeout,
                    "refused" | "filtered" => StatusClass::Refusal,
                    _ => StatusClass::Ok,
                },
                latency_ms: latency.is_valid(i).then(|| latency.value(i)),
                tokens_in: tokens_in.is_valid(i).then(|| tokens_in.value(i)),
                tokens_out: tokens_out.is_valid(i).then(|| tokens_out.value(i)),
                cost_nanos: costs[i],
                cost_from_table: cost_source.is_valid(i)
                    && cost_source.value(i) == COST_SOURCE_TABLE,
                quality_score: quality.is_valid(i).then(|| quality.value(i)),
                labeled: (confidence.is_valid(i) && correct.is_valid(i))
                    .then(|| (confidence.value(i), correct.value(i))),
                confidence: confidence.is_valid(i).then(|| confidence.value(i)),
                prediction: opt(prediction, i).map(|p| self.categories.intern(p)),
                session: None,
                step: Default::default(),
                flagged: flags.is_valid(i) && flags.value_length(i) > 0,
                approval: match opt(approval, i) {
                    Some("approved") => Approval::Approved,
                    Some("rejected") => Approval::Rejected,
                    Some("pending") => Approval::Pending,
                    _ => Approval::None,
                },
            };
            let mut obs = obs;
            if let Some(sid) = opt(session_id, i) {
                obs.step = self.sessions.observe(
                    sid,
                    key,
                    t,
                    opt(tool, i),
                    opt(input_hash, i),
                    costs[i],
                    &mut self.ended,
                );
                obs.session = Some(session_hash(sid));
            }
            let awaits = match self.labels.as_mut() {
                Some(l) if confidence.is_valid(i) && !correct.is_valid(i) => {
                    l.wait(
                        event_id.value(i),
                        key,
                        t,
                        confidence.value(i),
                        obs.prediction,
                    );
                    true
                }
                _ => false,
            };
            self.panes
                .entry(pane)
                .or_default()
                .core
                .entry(key)
                .or_default()
                .observe(&obs, self.bin_spec, awaits);
            if let (Some(t), Some(c)) = (opt(tenant, i), costs[i]) {
                if let Some(&id) = self.budgets.tenant_ids.get(t) {
                    let state = self.panes.get_mut(&pane).and_then(|p| p.core.get_mut(&key));
                    state.expect("observed above").add_tenant_cost(id, c);
                }
            }
            if self.custom.is_some() {
                groups.entry((pane, key)).or_default().push(i as u32);
            }
        }
        self.flush_custom(&mut groups, args.as_ref())?;
        self.watermarks.advance(source, max_ts, now);
        self.expire_labels(max_ts - ooo);
        self.sessions.end_idle(max_ts - ooo, &mut self.ended);
        self.stats.events += n as u64;

        let mut columns = events.columns().to_vec();
        columns[col::LATE] = Arc::new(late.finish());
        let events = RecordBatch::try_new(events.schema(), columns)?;
        Ok(Output {
            events: Some(events),
            metrics: self.finish_rows(out)?,
        })
    }

    /// Closes what the clock allows: partitions idle for `idle_timeout` stop holding the
    /// watermark back.
    pub fn handle_tick(&mut self, now: Instant) -> Result<Option<RecordBatch>> {
        let Some(wm) = self.watermarks.current(now) else {
            return Ok(None);
        };
        let through = self.spec.closable_through(wm);
        let mut out = MetricRows::new();
        if self.emitted_through.is_none_or(|e| through > e) {
            self.close_through(through, &mut out)?;
        }
        self.finish_rows(out)
    }

    /// End of a finite source: closes and emits every open window, ends every session.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>> {
        self.sessions.end_idle(i64::MAX, &mut self.ended);
        let mut out = MetricRows::new();
        if let Some((&last, _)) = self.panes.iter().next_back() {
            self.close_through(last, &mut out)?;
        }
        self.finish_rows(out)
    }

    /// Prices events without `cost_usd` from the price table; returns each row's cost in
    /// nano-dollars (`None`: unpriced).
    fn price(&self, events: RecordBatch) -> Result<(RecordBatch, Vec<Option<i64>>)> {
        let n = events.num_rows();
        let cost = events.column(col::COST_USD).as_primitive::<Float64Type>();
        let mut nanos: Vec<Option<i64>> = (0..n)
            .map(|i| cost.is_valid(i).then(|| usd_to_nanos(cost.value(i))))
            .collect();
        if self.prices.is_empty() || cost.null_count() == 0 {
            return Ok((events, nanos));
        }
        let model = events.column(col::MODEL).as_string::<i32>();
        let tin = events.column(col::TOKENS_IN).as_primitive::<Int64Type>();
        let tout = events.column(col::TOKENS_OUT).as_primitive::<Int64Type>();
        let tcached = events
            .column(col::TOKENS_CACHED)
            .as_primitive::<Int64Type>();
        let source = events.column(col::COST_SOURCE).as_string::<i32>();
        let ts = events
            .column(col::TIMESTAMP)
            .as_primitive::<TimestampMillisecondType>();
        let get =
            |a: &arrow::array::Int64Array, i: usize| if a.is_valid(i) { a.value(i) } else { 0 };
        let mut usd = Vec::with_capacity(n);
        let mut src = StringBuilder::with_capacity(n, n * 5);
        for (i, slot) in nanos.iter_mut().enumerate() {
            if slot.is_none() {
                *slot = self.prices.cost_nanos(
                    model.value(i),
                    ts.value(i),
                    get(tin, i),
                    get(tout, i),
                    get(tcached, i),
                );
                src.append_option(slot.map(|_| COST_SOURCE_TABLE));
                usd.push(slot.map(|c| c as f64 / 1e9));
            } else {
                src.append_option(opt(source, i));
                usd.push(Some(cost.value(i)));
            }
        }
        let mut columns = events.columns().to_vec();
        columns[col::COST_USD] = Arc::new(Float64Array::from(usd)) as ArrayRef;
        columns[col::COST_SOURCE] = Arc::new(src.finish());
        Ok((RecordBatch::try_new(events.schema(), columns)?, nanos))
    }

    fn flush_custom(
        &mut self,
        groups: &mut HashMap<(i64, u32), Vec<u32>>,
        args: Option<&BatchArgs>,
    ) -> Result<()> {
        let (Some(custom), Some(args)) = (&self.custom, args) else {
            return Ok(());
        };
        for ((pane, key), rows) in groups.drain() {
            let p = self.panes.entry(pane).or_default();
            let state = match p.custom.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(custom.new_state()?),
            };
            custom.update(state, args, &UInt32Array::from(rows))?;
        }
        Ok(())
    }

    /// Emits every window starting at or before `through` that holds data, then drops the
    /// panes no open window needs.
    fn close_through(&mut self, through: i64, out: &mut MetricRows) -> Result<()> {
        let (size, slide) = (self.spec.size, self.spec.slide);
        let first = self.emitted_through.map(|e| e + slide);
        let mut starts = BTreeSet::new();
        for &p in self
            .panes
            .range(..=through.saturating_add(size - slide))
            .map(|(p, _)| p)
        {
            let lo = first.map_or(self.spec.first_window_of(p), |f| {
                f.max(self.spec.first_window_of(p))
            });
            let mut s = lo;
            while s <= p.min(through) {
                starts.insert(s);
                s += slide;
            }
        }
        for s in starts {
            self.retire_before(s);
            self.emit_window(s, out)?;
        }
        self.retire_before(through + 1);
        self.panes = self.panes.split_off(&(through + 1));
        self.emitted_through = Some(self.emitted_through.map_or(through, |e| e.max(through)));
        Ok(())
    }

    /// Hands the drift state of every pane before `t` to its key's baseline, in time order.
    fn retire_before(&mut self, t: i64) {
        let from = self.retired_through.map_or(i64::MIN, |r| r + 1);
        if from >= t {
            return;
        }
        let slide = self.spec.slide;
        for (&p, pane) in self.panes.range_mut(from..t) {
            for (k, state) in pane.core.iter_mut() {
                self.budgets
                    .retire(p, &self.keys.values[*k as usize].service, state);
                if let Some(d) = state.drift.take() {
                    self.baselines
                        .entry(*k)
                        .or_default()
                        .retire(self.reference, p, slide, *d);
                }
            }
        }
        self.retired_through = Some(t - 1);
    }

    fn emit_window(&mut self, start: i64, out: &mut MetricRows) -> Result<()> {
        let end = start + self.spec.size;
        let mut core: BTreeMap<u32, CoreState> = BTreeMap::new();
        for pane in self.panes.range(start..end).map(|(_, p)| p) {
            for (k, s) in &pane.core {
                core.entry(*k).or_default().merge(s);
            }
        }
        if core.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<u32> = core.keys().copied().collect();
        keys.sort_by(|a, b| self.keys.values[*a as usize].cmp(&self.keys.values[*b as usize]));
        // Budgets: the window's cost per budgeted service and tenant, over all its keys.
        let day = start.div_euclid(DAY_MS);
        let mut service_cost: BTreeMap<&str, i64> = BTreeMap::new();
        let mut tenant_cost: BTreeMap<u32, i64> = BTreeMap::new();
        for (k, st) in &core {
            let service = self.keys.values[*k as usize].service.as_str();
            if self.budgets.services.contains_key(service) {
                *service_cost.entry(service).or_default() += st.cost_nanos;
            }
            for &(t, c) in &st.tenant_costs {
                *tenant_cost.entry(t).or_default() += c;
            }
        }
        let size = self.spec.size;
        let burn =
            |cost: i64, budget: i64| cost as f64 / size as f64 * DAY_MS as f64 / budget as f64;
        let mut service_budget: HashMap<String, (f64, f64)> = HashMap::new();
        for (service, &cost) in &service_cost {
            let budget = self.budgets.services[*service];
            let spent = Budgets::spent(self.budgets.service_spend.get(*service), day) + cost;
            service_budget.insert(
                service.to_string(),
                (spent as f64 / 1e9, burn(cost, budget)),
            );
            self.budgets.rows.push((
                start,
                end,
                "service",
                service.to_string(),
                budget,
                spent,
                cost,
            ));
        }
        for (&t, &cost) in &tenant_cost {
            let (name, budget) = self.budgets.tenants[t as usize].clone();
            let spent = Budgets::spent(self.budgets.tenant_spend.get(&t), day) + cost;
            self.budgets
                .rows
                .push((start, end, "tenant", name, budget, spent, cost));
        }
        for k in keys {
            let key = &self.keys.values[k as usize];
            let state = &core[&k];
            let drift = self.baselines.entry(k).or_default().evaluate(
                self.reference,
                start,
                state.drift.as_deref(),
                self.min_samples,
                &self.categories,
            );
            if self.labels.is_some() && state.awaiting > 0 {
                out.revisable.push((out.len(), start, k));
                self.revisable.insert(
                    (start, k),
                    Revisable {
                        end,
                        requests: state.requests,
                        calibration: state.calibration.as_deref().cloned().unwrap_or_default(),
                        late_labels: 0,
                        revision: 0,
                        dirty: false,
                        row: None,
                    },
                );
            }
            let anomaly = cost_anomaly(
                self.cost_history.entry(k).or_default(),
                start - self.cost_span,
                self.min_baseline,
                start,
                state,
            );
            out.keys.append(start, end, key);
            let budget = service_budget.get(&key.service).copied();
            out.core
                .append(state, self.bin_spec, &drift, anomaly, budget, 0);
            if let Some(cal) = &state.calibration {
                self.bins.append(start, end, key, cal, self.bin_spec, 0);
            }
            if let Some(custom) = &self.custom {
                let mut parts: Vec<&mut CustomState> = self
                    .panes
                    .range_mut(start..end)
                    .filter_map(|(_, p)| p.custom.get_mut(&k))
                    .collect();
                out.custom.push(custom.merge(&mut parts)?);
            }
        }
        self.stats.windows_closed += 1;
        Ok(())
    }

    fn finish_rows(&mut self, mut out: MetricRows) -> Result<Option<RecordBatch>> {
        let rows = out.len();
        if rows == 0 {
            return Ok(None);
        }
        let mut columns = out.keys.finish();
        columns.extend(out.core.finish());
        if let Some(custom) = &self.custom {
            columns.extend(custom.evaluate(&mut out.custom)?);
        }
        self.stats.metric_rows += rows as u64;
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        for (i, start, k) in out.revisable {
            if let Some(r) = self.revisable.get_mut(&(start, k)) {
                r.row = Some(batch.slice(i, 1));
            }
        }
        Ok(Some(batch))
    }
}

const SNAPSHOT_VERSION: u32 = 2;

/// The serialised form of a [`WindowOperator`]'s state for one source partition.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    /// size, slide, lateness, out-of-orderness (ms): a checkpoint only fits the same windows.
    window: [i64; 4],
    custom_columns: Vec<String>,
    keys: Vec<Key>,
    panes: Vec<(i64, Vec<(u32, CoreState)>)>,
    /// (pane, key) of each custom-metric state, in the row order of `custom`.
    custom_index: Vec<(i64, u32)>,
    /// One hex-encoded Arrow IPC stream per custom accumulator.
    custom: Vec<String>,
    emitted_through: Option<i64>,
    max_event_time: Option<i64>,
    stats: OperatorStats,
    /// `prediction` values by category id.
    categories: Vec<String>,
    /// Per key: the closed panes its drift reference is built from.
    baselines: Vec<(u32, Vec<(i64, DriftState)>)>,
    retired_through: Option<i64>,
    labels: Option<LabelSnapshot>,
    /// (window start, key, state) of the revisable windows.
    revisable: Vec<(i64, u32, Revisable)>,
    /// The revisable windows' last rows, one Arrow IPC stream (hex), in `revisable` order.
    revisable_rows: String,
    revision_seq: u64,
    revised_at: Option<i64>,
    /// Per key: (window start, cost per request as f64 bits).
    cost_history: Vec<(u32, Vec<(i64, u64)>)>,
    /// Budget spend of closed panes: (service or tenant id, (day, nano-dollars)).
    service_spend: Vec<(String, (i64, i64))>,
    tenant_spend: Vec<(u32, (i64, i64))>,
    sessions: SessionsSnapshot,
    ended: Vec<(String, Session)>,
    sessions_at: Option<i64>,
    /// Alert and breaker states (absent in checkpoints written before alerting: all ok).
    #[serde(default)]
    alerts: AlertSnapshot,
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let d = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| {
            if p.len() == 2 {
                Some(d(p[0])? << 4 | d(p[1])?)
            } else {
                None
            }
        })
        .collect()
}

/// A window's cost per request against `history` (the key's windows starting at `since` or
/// later); then the window joins the history.
fn cost_anomaly(
    history: &mut CostSeries,
    since: i64,
    min_baseline: usize,
    start: i64,
    state: &CoreState,
) -> CostAnomaly {
    while history.front().is_some_and(|(s, _)| *s < since) {
        history.pop_front();
    }
    if state.requests == 0 {
        return CostAnomaly::default();
    }
    let x = state.cost_nanos as f64 / 1e9 / state.requests as f64;
    let baseline: Vec<f64> = history.iter().map(|(_, v)| *v).collect();
    let a = CostAnomaly::of(x, &baseline, min_baseline);
    history.push_back((start, x));
    a
}

/// A stable 64-bit hash of a session id (FNV-1a), for counting distinct sessions.
fn session_hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn opt(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CustomMetric;
    use arrow::util::pretty::pretty_format_batches;
    use inferwatch_schemas::{EventDecoder, Limits, RawBatch};

    /// Events over ~3 minutes for three keys, out of order within 2 s, with latencies, costs
    /// and qualities that exercise every state field.
    fn events(range: std::ops::Range<i64>) -> RecordBatch {
        let mut raw = RawBatch::new(Arc::from("t"), 0);
        for i in range {
            let ts = 1_767_225_600_000 + i * 150 - (i * 7919 % 2000);
            let json = format!(
                r#"{{"event_id":"e{i}","timestamp":{ts},"service":"s{}","model":"m","latency_ms":{},"tokens_in":{},"tokens_out":5,"quality_score":{},"status":"{}","cost_usd":{}}}"#,
                i % 3,
                (i * 37 % 1000) as f64 / 3.0,
                i % 50,
                (i % 10) as f64 / 10.0,
                if i % 13 == 0 { "error" } else { "ok" },
                (i % 7) as f64 * 0.0001,
            );
            raw.push(json.as_bytes(), i);
        }
        EventDecoder::new(Limits::default()).decode(&raw).events
    }

    fn config() -> ProcessorConfig {
        let mut c = ProcessorConfig::default();
        c.window.size = std::time::Duration::from_secs(60);
        c.window.slide = Some(std::time::Duration::from_secs(20));
        c.custom_metrics = vec![
            CustomMetric {
                name: "slow_share".into(),
                sql: "avg(CASE WHEN latency_ms > 100 THEN 1.0 ELSE 0.0 END)".into(),
            },
            CustomMetric {
                name: "distinct_tokens".into(),
                sql: "count(DISTINCT tokens_in)".into(),
            },
        ];
        c
    }

    fn rows(batches: &[RecordBatch]) -> String {
        pretty_format_batches(batches).unwrap().to_string()
    }

    #[test]
    fn a_restored_snapshot_continues_exactly_where_it_left_off() {
        let id: SourceId = (Arc::from("t"), 0);
        let now = Instant::now();
        let mut whole = WindowOperator::new(&config()).unwrap();
        let mut expected = Vec::new();
        expected.extend(
            whole
                .process_batch(&id, events(0..1200), now)
                .unwrap()
                .metrics,
        );
        expected.extend(whole.finish().unwrap());

        let mut first = WindowOperator::new(&config()).unwrap();
        let mut got = Vec::new();
        got.extend(
            first
                .process_batch(&id, events(0..700), now)
                .unwrap()
                .metrics,
        );
        let snap = first.snapshot(&id).unwrap();
        // The snapshot leaves the operator usable.
        assert_eq!(first.snapshot(&id).unwrap(), snap);
        let mut second = WindowOperator::new(&config()).unwrap();
        second.restore(&id, &snap, now).unwrap();
        got.extend(
            second
                .process_batch(&id, events(700..1200), now)
                .unwrap()
                .metrics,
        );
        got.extend(second.finish().unwrap());
        assert!(expected.iter().map(|b| b.num_rows()).sum::<usize>() > 20);
        assert_eq!(rows(&got), rows(&expected));
        assert_eq!(second.stats(), whole.stats());
    }

    /// Predictions without labels for 3 minutes, then traffic with inline labels up to
    /// minute `until`; prediction i has confidence (i % 10)/10 + 0.05.
    fn predictions(until: i64) -> RecordBatch {
        let t0 = 1_767_225_600_000i64;
        let mut raw = RawBatch::new(Arc::from("t"), 0);
        for i in 0..180 {
            let json = format!(
                r#"{{"event_id":"p{i}","timestamp":{},"service":"s","model":"m","confidence":{}}}"#,
                t0 + i * 1000,
                (i % 10) as f64 / 10.0 + 0.05
            );
            raw.push(json.as_bytes(), i);
        }
        for j in 0..until * 6 {
            let json = format!(
                r#"{{"event_id":"q{j}","timestamp":{},"service":"s","model":"m","confidence":0.5,"correct":true}}"#,
                t0 + 180_000 + j * 10_000
            );
            raw.push(json.as_bytes(), 180 + j);
        }
        EventDecoder::new(Limits::default()).decode(&raw).events
    }

    fn feedback(i: i64, delay_ms: i64) -> Feedback {
        Feedback {
            event_id: format!("p{i}"),
            timestamp: 1_767_225_600_000 + i * 1000 + delay_ms,
            correct: Some(i % 3 == 0),
            label: None,
            score: None,
            source: None,
            partition: 0,
            offset: i,
        }
    }

    #[test]
    fn feedback_ten_minutes_late_lands_in_the_latest_revision_of_its_window() {
        let id: SourceId = (Arc::from("t"), 0);
        let mut c = ProcessorConfig::default();
        c.window.size = std::time::Duration::from_secs(60);
        let mut op = WindowOperator::new(&c).unwrap();
        op.expect_feedback(&c.feedback);
        let first = op
            .process_batch(&id, predictions(12), Instant::now())
            .unwrap()
            .metrics
            .unwrap();
        // The first window went out without labels.
        assert_eq!(
            first
                .column_by_name("labeled")
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(0),
            0
        );
        for i in 0..60 {
            op.join_feedback(&feedback(i, 600_000)).unwrap();
        }
        let r = op.take_revisions(true).unwrap().unwrap();
        assert_eq!(r.seq, 1);
        assert_eq!(r.metrics.num_rows(), 1);
        let get = |name: &str| r.metrics.column_by_name(name).unwrap().clone();
        assert_eq!(get("revision").as_primitive::<Int64Type>().value(0), 1);
        assert_eq!(get("labeled").as_primitive::<Int64Type>().value(0), 60);
        assert_eq!(get("late_labels").as_primitive::<Int64Type>().value(0), 60);
        assert_eq!(get("requests").as_primitive::<Int64Type>().value(0), 60);
        let acc = get("accuracy").as_primitive::<Float64Type>().value(0);
        assert!((acc - 20.0 / 60.0).abs() < 1e-12, "{acc}");
        // Reliability bins of the revision: ten bins of six, tagged with the revision.
        let bins = r.calibration_bins.unwrap();
        assert_eq!(bins.num_rows(), 10);
        // Nothing changed since: no new revision. A duplicate changes nothing.
        assert!(op.take_revisions(true).unwrap().is_none());
        assert_eq!(
            op.join_feedback(&feedback(0, 700_000)),
            Err(Unmatched::Duplicate)
        );
        // Past the horizon: expired, and no revision.
        assert_eq!(
            op.join_feedback(&feedback(61, 3_600_001)),
            Err(Unmatched::Expired)
        );
        assert_eq!(op.join_feedback(&feedback(999, 0)), Err(Unmatched::Unknown));
        // A label for window 2, checkpointed and restored: the revision continues from there.
        op.join_feedback(&feedback(130, 600_000)).unwrap();
        let snap = op.snapshot(&id).unwrap();
        let mut back = WindowOperator::new(&c).unwrap();
        back.expect_feedback(&c.feedback);
        back.restore(&id, &snap, Instant::now()).unwrap();
        let r = back.take_revisions(true).unwrap().unwrap();
        assert_eq!(r.seq, 2);
        let rev = r
            .metrics
            .column_by_name("revision")
            .unwrap()
            .as_primitive::<Int64Type>()
            .value(0);
        let labeled = r
            .metrics
            .column_by_name("labeled")
            .unwrap()
            .as_primitive::<Int64Type>()
            .value(0);
        assert_eq!((rev, labeled), (1, 1));
        let s = back.label_stats();
        assert_eq!((s.joined, s.duplicate, s.expired), (61, 1, 1));
    }

    #[test]
    fn a_snapshot_does_not_fit_other_windows() {
        let id: SourceId = (Arc::from("t"), 0);
        let mut op = WindowOperator::new(&config()).unwrap();
        op.process_batch(&id, events(0..100), Instant::now())
            .unwrap();
        let snap = op.snapshot(&id).unwrap();
        let mut other = config();
        other.window.slide = None;
        let err = WindowOperator::new(&other)
            .unwrap()
            .restore(&id, &snap, Instant::now())
            .unwrap_err();
        assert!(err.to_string().contains("[window]"), "{err}");
    }
}
