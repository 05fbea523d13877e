//! The window operator of one source partition: `process_batch`, `advance_watermark` (an
//! idle partition follows the others) and `finish` (end of a finite source) are its whole
//! vocabulary.
//!
//! Watermarks advance event by event inside a micro-batch, and windows close the moment the
//! watermark passes them, so a window's contents and every event's `late` flag depend only on
//! the order of events — never on where micro-batch boundaries fell.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, BooleanBuilder, Float64Array, RecordBatch, StringArray,
    StringBuilder, TimestampMillisecondBuilder, UInt32Array,
};
use arrow::datatypes::{Float64Type, Int64Type, Schema, SchemaRef, TimestampMillisecondType};
use inferwatch_schemas::tables::{events as col, metrics_key_fields};
use inferwatch_schemas::validate::COST_SOURCE_TABLE;
use serde::{Deserialize, Serialize};

use crate::alerts::{AlertOutput, AlertSnapshot, Alerting};
use crate::columns::{CoreColumns, RowInputs};
use crate::config::ProcessorConfig;
use crate::custom::{BatchArgs, CustomMetrics, CustomState};
use crate::drift::{Baseline, Categories, DriftState, DriftValues, Reference};
use crate::error::{ProcessorError, Result};
use crate::labels::{LabelJoin, LabelSnapshot, LabelStats};
use crate::metrics::{Approval, BinSpec, CoreState, Observation, StatusClass};
use crate::metrics::{Calibration, CostAnomaly, CostSeries};
use crate::price::{usd_to_nanos, PriceTable};
use crate::sessions::{Session, SessionStats, Sessions, SessionsSnapshot};
use crate::window::WindowSpec;
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
    /// The newest event time of the partition: its watermark is this minus the allowed
    /// out-of-orderness.
    max_event_time: Option<i64>,
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

impl WindowOperator {
    pub fn new(config: &ProcessorConfig) -> Result<Self> {
        config.validate()?;
        let spec = WindowSpec::new(&config.window);
        let params = crate::functions::FunctionParams::from_config(config);
        let bin_spec = params.bins;
        let custom = CustomMetrics::plan(
            &config.custom_metrics,
            inferwatch_schemas::tables::events_schema(),
            params,
        )?;
        let mut fields = metrics_key_fields();
        fields.extend(crate::columns::fields());
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
            max_event_time: None,
            keys: Keys::default(),
            panes: BTreeMap::new(),
            emitted_through: None,
            custom,
            alerts: Alerting::new(&config.alerts, &Schema::new(fields.clone()), spec.size)?,
            schema: Arc::new(Schema::new(fields)),
            stats: OperatorStats::default(),
            bins: BinRows::new(),
            bin_spec,
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

    /// This run has a feedback source: predictions without `correct` wait for labels.
    pub fn expect_feedback(&mut self, config: &crate::labels::FeedbackConfig) {
        self.labels.get_or_insert_with(|| LabelJoin::new(config));
    }

    /// Schema of the `metrics` rows this operator emits.
    pub fn metrics_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub fn stats(&self) -> OperatorStats {
        self.stats
    }

    /// Newest event time of the partition (files dead letters deterministically).
    pub fn max_event_time(&self) -> Option<i64> {
        self.max_event_time
    }

    /// Aggregates one micro-batch of the partition's decoded events into its panes, closing
    /// windows as the watermark passes them.
    pub fn process_batch(&mut self, events: RecordBatch) -> Result<Output> {
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
        let ooo = self.spec.out_of_orderness;
        let mut max_ts = self.max_event_time.unwrap_or(i64::MIN / 2);

        // `i` indexes a dozen Arrow columns in lockstep; an iterator over one would not help.
        #[allow(clippy::needless_range_loop)]
        for i in 0..n {
            let t = ts.value(i);
            if t > max_ts {
                max_ts = t;
                let through = self.spec.closable_through(t - ooo);
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
                let now_pane = self.spec.pane(max_ts - ooo);
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
        self.max_event_time = Some(self.max_event_time.map_or(max_ts, |m| m.max(max_ts)));
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
}

/// A stable 64-bit hash of a session id (FNV-1a), for counting distinct sessions.
fn session_hash(id: &str) -> u64 {
    inferwatch_schemas::hash::fnv64(id.as_bytes())
}

fn opt(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

mod budgets;
mod close;
mod revisions;
mod rows;
mod snapshot;

pub use budgets::BudgetConfig;
use budgets::*;
pub use revisions::Revisions;
use revisions::*;
pub use rows::SessionRows;
use rows::*;

#[cfg(test)]
mod tests;
