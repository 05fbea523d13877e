//! The built-in window metrics: a mergeable partial state per (pane, key) and the columns of
//! the `metrics` table it evaluates to.
//!
//! Every field merges exactly (counts, integer sums, HDR histograms, max), so a window's
//! value is the same whether its events came in one micro-batch or many, and memory grows
//! with keys × open panes, never with events.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, Int64Builder};
use arrow::datatypes::{DataType, Field};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::drift::{bucket, DriftState, DriftValues};

use crate::error::{config_err, ProcessorError};

/// A key's cost per request in recent windows: (window start, USD per request).
pub type CostSeries = std::collections::VecDeque<(i64, f64)>;

/// Names of the built-in metric columns, in table order (after the key columns).
pub const BUILTIN_COLUMNS: &[&str] = &[
    "window_start",
    "window_end",
    "service",
    "model",
    "model_version",
    "route",
    "requests",
    "errors",
    "error_rate",
    "timeouts",
    "refusals",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "cost_per_request_p50",
    "cost_per_request_p95",
    "cost_per_request_p99",
    "cost_unpriced",
    "cost_source_event",
    "cost_source_table",
    "quality_score_mean",
    "flagged_rate",
    "approval_rate",
    "rejection_rate",
    "late_events",
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
    "psi_confidence",
    "ks_confidence",
    "psi_quality_score",
    "ks_quality_score",
    "js_prediction",
    "sessions",
    "runaway_sessions",
    "wasted_cost_usd",
    "cost_zscore",
    "cost_robust_z",
    "budget_spent_usd",
    "budget_burn_rate",
    "revision",
];

/// AUROC and equal-mass resolution: confidences are bucketed to 1/RANK_STEPS (round to
/// nearest). Pairs of opposite labels in one bucket count as ties (½), so the error against
/// the exact AUROC is at most half the share of such pairs — below 0.005 unless scores pile
/// up within 0.0001 of each other.
pub const RANK_STEPS: f64 = 10_000.0;

/// Bin index of a confidence in [0, 1] under the equal-width (b/B, (b+1)/B] rule.
pub fn calibration_bin(c: f64, bins: usize) -> usize {
    let b = (c * bins as f64).ceil() as usize;
    b.saturating_sub(1).min(bins - 1)
}

/// How calibration is binned, from `[calibration]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinSpec {
    pub bins: usize,
    pub binning: Binning,
}

impl BinSpec {
    /// Per-bin state is kept only for equal-width bins; equal-mass bins are cut from the
    /// confidence ranks when the window closes.
    pub fn width_bins(&self) -> usize {
        match self.binning {
            Binning::EqualWidth => self.bins,
            Binning::EqualMass => 0,
        }
    }
}

/// One row of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BinRow {
    pub bin: usize,
    pub lower: f64,
    pub upper: f64,
    pub count: u64,
    pub mean_confidence: f64,
    pub accuracy: f64,
}

/// Significant digits of every HDR histogram.
const HDR_SIGFIG: u8 = 3;

fn histogram() -> Histogram<u32> {
    // Auto-resizing: memory follows the largest value seen, not a preset range.
    Histogram::new(HDR_SIGFIG).expect("3 significant digits is a valid HDR precision")
}

/// One event's contribution, read out of the Arrow columns by the operator.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observation {
    pub status: StatusClass,
    pub latency_ms: Option<f64>,
    pub tokens_in: Option<i64>,
    pub tokens_out: Option<i64>,
    /// Cost in nano-dollars, `None` when neither the event nor the price table gave one.
    pub cost_nanos: Option<i64>,
    /// The cost came from the price table (not from the event's `cost_usd`).
    pub cost_from_table: bool,
    pub quality_score: Option<f64>,
    /// (confidence, correct) when both are known: the event counts for calibration.
    pub labeled: Option<(f64, bool)>,
    pub confidence: Option<f64>,
    /// Category id of `prediction`.
    pub prediction: Option<u32>,
    /// Hash of `session_id`, and what the event did to its session.
    pub session: Option<u64>,
    pub step: crate::sessions::Step,
    pub flagged: bool,
    pub approval: Approval,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StatusClass {
    #[default]
    Ok,
    Error,
    Timeout,
    Refusal,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Approval {
    #[default]
    None,
    Approved,
    Rejected,
    Pending,
}

/// Partial aggregate of the built-in metrics for one (pane, key). Serialisable so that
/// checkpoints carry open windows across a crash or a rebalance.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CoreState {
    pub requests: u64,
    /// Failed calls: status `error` or `timeout`.
    pub errors: u64,
    pub timeouts: u64,
    /// Status `refused` or `filtered`.
    pub refusals: u64,
    /// Latency in microseconds, so sub-millisecond values keep three significant digits.
    #[serde(with = "hist_serde")]
    latency_us: Option<Box<Histogram<u32>>>,
    #[serde(with = "f64_bits")]
    latency_max_ms: f64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub cost_nanos: i64,
    #[serde(with = "hist_serde")]
    cost_hist: Option<Box<Histogram<u32>>>,
    pub cost_unpriced: u64,
    pub cost_source_event: u64,
    pub cost_source_table: u64,
    #[serde(with = "f64_bits")]
    quality_sum: f64,
    quality_n: u64,
    pub flagged: u64,
    pub approved: u64,
    pub rejected: u64,
    pub late_events: u64,
    /// Calibration: events with both `confidence` and `correct`.
    pub calibration: Option<Box<Calibration>>,
    /// Labels joined from feedback after the window was first emitted.
    pub late_labels: u64,
    /// Predictions (confidence, no `correct`) registered to wait for feedback.
    pub awaiting: u64,
    /// Distributions that drift is measured on.
    pub drift: Option<Box<DriftState>>,
    /// Cost per budgeted tenant (tenant id → nano-dollars).
    pub tenant_costs: Vec<(u32, i64)>,
    /// Hashes of the sessions with events here (sorted and deduplicated when merged).
    session_ids: Vec<u64>,
    /// `session_ids.len()` after its last deduplication: it is deduplicated again at twice
    /// that, so a key with thousands of distinct sessions does not sort on every event.
    #[serde(default)]
    session_ids_deduped: usize,
    pub runaway_sessions: u64,
    pub wasted_nanos: i64,
}

/// Mergeable calibration state: reliability bins, sums for accuracy / confidence / Brier,
/// and confidence buckets per label for AUROC.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Calibration {
    pub n: u64,
    pub correct: u64,
    #[serde(with = "f64_bits")]
    pub conf_sum: f64,
    #[serde(with = "f64_bits")]
    pub brier_sum: f64,
    /// Equal-width bins (empty with equal-mass binning).
    #[serde(default)]
    pub bins: Vec<Bin>,
    /// Confidence bucket (1/[`RANK_STEPS`]) → counts and confidence sum.
    pub ranks: std::collections::BTreeMap<u16, Rank>,
}

/// Labeled events in one confidence bucket.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Rank {
    pub correct: u64,
    pub wrong: u64,
    #[serde(with = "f64_bits")]
    pub conf_sum: f64,
}

/// One reliability bin's partial state.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Bin {
    pub n: u64,
    pub correct: u64,
    #[serde(with = "f64_bits")]
    pub conf_sum: f64,
}

impl Calibration {
    /// Non-empty reliability bins, in bin order.
    pub fn reliability(&self, spec: BinSpec) -> Vec<BinRow> {
        match spec.binning {
            Binning::EqualWidth => {
                let b = spec.bins as f64;
                self.bins
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| x.n > 0)
                    .map(|(i, x)| BinRow {
                        bin: i,
                        lower: i as f64 / b,
                        upper: (i + 1) as f64 / b,
                        count: x.n,
                        mean_confidence: x.conf_sum / x.n as f64,
                        accuracy: x.correct as f64 / x.n as f64,
                    })
                    .collect()
            }
            Binning::EqualMass => {
                let mut rows: Vec<BinRow> = Vec::new();
                let mut conf_sums: Vec<f64> = Vec::new();
                let mut correct: Vec<u64> = Vec::new();
                let mut below = 0u64;
                for (&k, r) in &self.ranks {
                    let n = r.correct + r.wrong;
                    let bin = ((spec.bins as u64 * below) / self.n).min(spec.bins as u64 - 1);
                    below += n;
                    let v = k as f64 / RANK_STEPS;
                    match rows.last_mut() {
                        Some(row) if row.bin == bin as usize => {
                            row.upper = v;
                            row.count += n;
                            *conf_sums.last_mut().unwrap() += r.conf_sum;
                            *correct.last_mut().unwrap() += r.correct;
                        }
                        _ => {
                            rows.push(BinRow {
                                bin: bin as usize,
                                lower: v,
                                upper: v,
                                count: n,
                                mean_confidence: 0.0,
                                accuracy: 0.0,
                            });
                            conf_sums.push(r.conf_sum);
                            correct.push(r.correct);
                        }
                    }
                }
                for ((row, s), c) in rows.iter_mut().zip(conf_sums).zip(correct) {
                    row.mean_confidence = s / row.count as f64;
                    row.accuracy = c as f64 / row.count as f64;
                }
                rows
            }
        }
    }

    pub fn observe(&mut self, conf: f64, correct: bool, width_bins: usize) {
        let y = correct as u64;
        self.n += 1;
        self.correct += y;
        self.conf_sum += conf;
        self.brier_sum += (conf - y as f64) * (conf - y as f64);
        if width_bins > 0 {
            if self.bins.len() < width_bins {
                self.bins.resize(width_bins, Bin::default());
            }
            let b = &mut self.bins[calibration_bin(conf, width_bins)];
            b.n += 1;
            b.correct += y;
            b.conf_sum += conf;
        }
        let r = self
            .ranks
            .entry((conf * RANK_STEPS).round() as u16)
            .or_default();
        r.correct += y;
        r.wrong += 1 - y;
        r.conf_sum += conf;
    }

    fn merge(&mut self, o: &Calibration) {
        self.n += o.n;
        self.correct += o.correct;
        self.conf_sum += o.conf_sum;
        self.brier_sum += o.brier_sum;
        if self.bins.len() < o.bins.len() {
            self.bins.resize(o.bins.len(), Bin::default());
        }
        for (a, b) in self.bins.iter_mut().zip(&o.bins) {
            a.n += b.n;
            a.correct += b.correct;
            a.conf_sum += b.conf_sum;
        }
        for (k, x) in &o.ranks {
            let r = self.ranks.entry(*k).or_default();
            r.correct += x.correct;
            r.wrong += x.wrong;
            r.conf_sum += x.conf_sum;
        }
    }

    /// (ece, mce) over the non-empty bins.
    fn ece_mce(&self, spec: BinSpec) -> (f64, f64) {
        let n = self.n as f64;
        let (mut ece, mut mce) = (0.0, 0.0f64);
        for r in self.reliability(spec) {
            let gap = (r.accuracy - r.mean_confidence).abs();
            ece += r.count as f64 / n * gap;
            mce = mce.max(gap);
        }
        (ece, mce)
    }

    /// AUROC of confidence as a predictor of correctness; `None` with only one class.
    fn auroc(&self) -> Option<f64> {
        let pos = self.correct as f64;
        let neg = (self.n - self.correct) as f64;
        if pos == 0.0 || neg == 0.0 {
            return None;
        }
        let mut neg_below = 0.0;
        let mut sum = 0.0;
        for r in self.ranks.values() {
            sum += r.correct as f64 * (neg_below + 0.5 * r.wrong as f64);
            neg_below += r.wrong as f64;
        }
        Some(sum / (pos * neg))
    }
}

impl CoreState {
    /// The state a revision evaluates: the window's request count and its calibration
    /// with the labels joined since.
    pub fn for_revision(requests: u64, calibration: Calibration, late_labels: u64) -> Self {
        Self {
            requests,
            calibration: Some(Box::new(calibration)),
            late_labels,
            ..Default::default()
        }
    }

    /// Adds one event; `awaits`: it waits for a label from feedback.
    pub fn observe(&mut self, o: &Observation, spec: BinSpec, awaits: bool) {
        self.requests += 1;
        self.awaiting += awaits as u64;
        match o.status {
            StatusClass::Ok => {}
            StatusClass::Error => self.errors += 1,
            StatusClass::Timeout => {
                self.errors += 1;
                self.timeouts += 1;
            }
            StatusClass::Refusal => self.refusals += 1,
        }
        if let Some(ms) = o.latency_ms {
            let us = (ms * 1000.0).round() as u64;
            record(
                self.latency_us.get_or_insert_with(|| Box::new(histogram())),
                us,
            );
            if ms > self.latency_max_ms {
                self.latency_max_ms = ms;
            }
        }
        self.tokens_in += o.tokens_in.unwrap_or(0);
        self.tokens_out += o.tokens_out.unwrap_or(0);
        match o.cost_nanos {
            Some(n) => {
                if o.cost_from_table {
                    self.cost_source_table += 1;
                } else {
                    self.cost_source_event += 1;
                }
                self.cost_nanos += n;
                record(
                    self.cost_hist.get_or_insert_with(|| Box::new(histogram())),
                    n.max(0) as u64,
                );
            }
            None => self.cost_unpriced += 1,
        }
        if let Some(q) = o.quality_score {
            self.quality_sum += q;
            self.quality_n += 1;
        }
        if let Some((conf, correct)) = o.labeled {
            self.calibration
                .get_or_insert_with(Default::default)
                .observe(conf, correct, spec.width_bins());
        }
        if o.confidence.is_some() || o.quality_score.is_some() || o.prediction.is_some() {
            let d = self.drift.get_or_insert_with(Default::default);
            if let Some(c) = o.confidence {
                d.confidence.add(bucket(c) as u32);
            }
            if let Some(q) = o.quality_score {
                d.quality.add(bucket(q) as u32);
            }
            if let Some(p) = o.prediction {
                d.prediction.add(p);
            }
        }
        if let Some(h) = o.session {
            self.session_ids.push(h);
            if self.session_ids.len() >= (2 * self.session_ids_deduped).max(4096) {
                self.session_ids.sort_unstable();
                self.session_ids.dedup();
                self.session_ids_deduped = self.session_ids.len();
            }
        }
        self.runaway_sessions += o.step.became_runaway as u64;
        self.wasted_nanos += o.step.wasted_nanos;
        self.flagged += o.flagged as u64;
        match o.approval {
            Approval::Approved => self.approved += 1,
            Approval::Rejected => self.rejected += 1,
            Approval::None | Approval::Pending => {}
        }
    }

    /// Folds another partial state into this one.
    pub fn merge(&mut self, o: &CoreState) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.timeouts += o.timeouts;
        self.refusals += o.refusals;
        merge_hist(&mut self.latency_us, &o.latency_us);
        self.latency_max_ms = self.latency_max_ms.max(o.latency_max_ms);
        self.tokens_in += o.tokens_in;
        self.tokens_out += o.tokens_out;
        self.cost_nanos += o.cost_nanos;
        merge_hist(&mut self.cost_hist, &o.cost_hist);
        self.cost_unpriced += o.cost_unpriced;
        self.cost_source_event += o.cost_source_event;
        self.cost_source_table += o.cost_source_table;
        self.quality_sum += o.quality_sum;
        self.quality_n += o.quality_n;
        self.flagged += o.flagged;
        self.approved += o.approved;
        self.rejected += o.rejected;
        self.late_events += o.late_events;
        if let Some(c) = &o.calibration {
            self.calibration
                .get_or_insert_with(Default::default)
                .merge(c);
        }
        self.late_labels += o.late_labels;
        self.awaiting += o.awaiting;
        if !o.session_ids.is_empty() {
            self.session_ids.extend_from_slice(&o.session_ids);
            self.session_ids.sort_unstable();
            self.session_ids.dedup();
            self.session_ids_deduped = self.session_ids.len();
        }
        self.runaway_sessions += o.runaway_sessions;
        self.wasted_nanos += o.wasted_nanos;
        for &(t, c) in &o.tenant_costs {
            self.add_tenant_cost(t, c);
        }
        if let Some(d) = &o.drift {
            self.drift.get_or_insert_with(Default::default).merge(d);
        }
    }

    pub fn add_tenant_cost(&mut self, tenant: u32, nanos: i64) {
        match self.tenant_costs.iter_mut().find(|(t, _)| *t == tenant) {
            Some(e) => e.1 += nanos,
            None => self.tenant_costs.push((tenant, nanos)),
        }
    }

    /// Distinct sessions with events in this state.
    pub fn distinct_sessions(&self) -> usize {
        let mut ids = self.session_ids.clone();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }
}

/// Records into an auto-resizing histogram; only values beyond HDR's range (> 2^62) clamp.
fn record(h: &mut Histogram<u32>, v: u64) {
    if h.record(v).is_err() {
        h.saturating_record(v);
    }
}

fn merge_hist(into: &mut Option<Box<Histogram<u32>>>, from: &Option<Box<Histogram<u32>>>) {
    if let Some(f) = from {
        match into {
            Some(h) => h
                .add(f.as_ref())
                .expect("auto-resizing histograms always merge"),
            None => *into = Some(f.clone()),
        }
    }
}

/// Floats in checkpoints as their bit patterns: a decimal round trip may move the last bit,
/// and a restored window must equal an uninterrupted one exactly.
mod f64_bits {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(v.to_bits())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(f64::from_bits(u64::deserialize(d)?))
    }
}

/// Histograms in checkpoints: the (bucket value, count) pairs that were recorded. Recording
/// each bucket's highest equivalent value again lands in the same bucket, so the restored
/// histogram answers every quantile exactly as the original did.
mod hist_serde {
    use hdrhistogram::Histogram;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        h: &Option<Box<Histogram<u32>>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let pairs: Option<Vec<(u64, u32)>> = h.as_ref().map(|h| {
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect()
        });
        pairs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Box<Histogram<u32>>>, D::Error> {
        let pairs = Option::<Vec<(u64, u32)>>::deserialize(d)?;
        Ok(pairs.map(|pairs| {
            let mut h = Box::new(super::histogram());
            for (v, n) in pairs {
                if h.record_n(v, n).is_err() {
                    h.saturating_record_n(v, n);
                }
            }
            h
        }))
    }
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

/// A window's cost per request against the key's recent windows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CostAnomaly {
    pub zscore: Option<f64>,
    pub robust_z: Option<f64>,
}

impl CostAnomaly {
    /// z = (x − mean)/std (population std) and robust z = (x − median)/(1.4826·MAD) of `x`
    /// against `baseline`; null below `min_baseline` values or when the spread is 0.
    pub fn of(x: f64, baseline: &[f64], min_baseline: usize) -> Self {
        let n = baseline.len();
        if n < min_baseline.max(1) {
            return Self::default();
        }
        let mean = baseline.iter().sum::<f64>() / n as f64;
        let var = baseline
            .iter()
            .map(|y| (y - mean) * (y - mean))
            .sum::<f64>()
            / n as f64;
        let std = var.sqrt();
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            let m = v.len() / 2;
            if v.len() % 2 == 1 {
                v[m]
            } else {
                (v[m - 1] + v[m]) / 2.0
            }
        };
        let mut sorted = baseline.to_vec();
        let med = median(&mut sorted);
        let mut dev: Vec<f64> = baseline.iter().map(|y| (y - med).abs()).collect();
        let mad = median(&mut dev);
        Self {
            zscore: (std > 0.0).then(|| (x - mean) / std),
            robust_z: (mad > 0.0).then(|| (x - med) / (1.4826 * mad)),
        }
    }
}

/// Column builders for the built-in metrics of many windows × keys.
pub struct CoreColumns {
    ints: Vec<Int64Builder>,
    floats: Vec<Float64Builder>,
}

const INT_COLS: &[&str] = &[
    "requests",
    "errors",
    "timeouts",
    "refusals",
    "tokens_in",
    "tokens_out",
    "cost_unpriced",
    "cost_source_event",
    "cost_source_table",
    "late_events",
    "labeled",
    "late_labels",
    "sessions",
    "runaway_sessions",
    "revision",
];

impl Default for CoreColumns {
    fn default() -> Self {
        Self {
            ints: (0..INT_COLS.len()).map(|_| Int64Builder::new()).collect(),
            floats: (0..BUILTIN_COLUMNS.len() - 6 - INT_COLS.len())
                .map(|_| Float64Builder::new())
                .collect(),
        }
    }
}

impl CoreColumns {
    /// Fields of the built-in metric columns, in [`BUILTIN_COLUMNS`] order.
    pub fn fields() -> Vec<Field> {
        BUILTIN_COLUMNS[6..]
            .iter()
            .map(|name| {
                if INT_COLS.contains(name) {
                    Field::new(*name, DataType::Int64, false)
                } else {
                    Field::new(*name, DataType::Float64, true)
                }
            })
            .collect()
    }

    /// Appends one row: `s` evaluated with `spec`'s bins, the window's drift and cost
    /// anomaly, and its revision.
    pub fn append(
        &mut self,
        s: &CoreState,
        spec: BinSpec,
        drift: &DriftValues,
        anomaly: CostAnomaly,
        budget: Option<(f64, f64)>,
        revision: u32,
    ) {
        let q = |h: &Option<Box<Histogram<u32>>>, q: f64, scale: f64| {
            h.as_ref()
                .filter(|h| !h.is_empty())
                .map(|h| h.value_at_quantile(q) as f64 / scale)
        };
        let ints = [
            s.requests as i64,
            s.errors as i64,
            s.timeouts as i64,
            s.refusals as i64,
            s.tokens_in,
            s.tokens_out,
            s.cost_unpriced as i64,
            s.cost_source_event as i64,
            s.cost_source_table as i64,
            s.late_events as i64,
            s.calibration.as_ref().map_or(0, |c| c.n as i64),
            s.late_labels as i64,
            s.distinct_sessions() as i64,
            s.runaway_sessions as i64,
            revision as i64,
        ];
        for (b, v) in self.ints.iter_mut().zip(ints) {
            b.append_value(v);
        }
        let has_latency = s.latency_us.as_ref().is_some_and(|h| !h.is_empty());
        let floats = [
            ratio(s.errors, s.requests),
            q(&s.latency_us, 0.50, 1000.0),
            q(&s.latency_us, 0.95, 1000.0),
            q(&s.latency_us, 0.99, 1000.0),
            has_latency.then_some(s.latency_max_ms),
            Some(s.cost_nanos as f64 / 1e9),
            q(&s.cost_hist, 0.50, 1e9),
            q(&s.cost_hist, 0.95, 1e9),
            q(&s.cost_hist, 0.99, 1e9),
            (s.quality_n > 0).then(|| s.quality_sum / s.quality_n as f64),
            ratio(s.flagged, s.requests),
            ratio(s.approved, s.approved + s.rejected),
            ratio(s.rejected, s.approved + s.rejected),
        ];
        let cal = s.calibration.as_deref().filter(|c| c.n > 0);
        let (ece, mce) = cal.map(|c| c.ece_mce(spec)).unzip();
        let acc = cal.map(|c| c.correct as f64 / c.n as f64);
        let conf = cal.map(|c| c.conf_sum / c.n as f64);
        let calibration = [
            ratio(cal.map_or(0, |c| c.n), s.requests),
            acc,
            conf,
            conf.zip(acc).map(|(c, a)| c - a),
            ece,
            mce,
            cal.map(|c| c.brier_sum / c.n as f64),
            cal.and_then(|c| c.auroc()),
            drift.psi_confidence,
            drift.ks_confidence,
            drift.psi_quality,
            drift.ks_quality,
            drift.js_prediction,
            Some(s.wasted_nanos as f64 / 1e9),
            anomaly.zscore,
            anomaly.robust_z,
            budget.map(|b| b.0),
            budget.map(|b| b.1),
        ];
        let floats = floats.into_iter().chain(calibration);
        for (b, v) in self.floats.iter_mut().zip(floats) {
            b.append_option(v);
        }
    }

    /// Finished arrays in [`BUILTIN_COLUMNS`] order (after the keys).
    pub fn finish(&mut self) -> Vec<ArrayRef> {
        let mut ints = self
            .ints
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef);
        let mut floats = self
            .floats
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef);
        BUILTIN_COLUMNS[6..]
            .iter()
            .map(|name| {
                if INT_COLS.contains(name) {
                    ints.next().unwrap()
                } else {
                    floats.next().unwrap()
                }
            })
            .collect()
    }
}

/// How reliability bins are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Binning {
    /// Bin b of B holds confidences in (b/B, (b+1)/B]; 0 is in bin 0.
    EqualWidth,
    /// Bins hold about n/B labeled events each: confidences are ranked at 0.0001
    /// resolution and a group of equal (rounded) confidences goes to bin
    /// `min(B-1, B·below/n)`, `below` being the number of labeled events with a smaller one.
    EqualMass,
}

/// `[calibration]`: reliability bins behind `ece`, `mce` and the `calibration_bins` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalibrationConfig {
    /// Number of reliability bins, 1 to 100.
    pub bins: usize,
    /// `equal_width` or `equal_mass`.
    pub binning: Binning,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        Self {
            bins: 10,
            binning: Binning::EqualWidth,
        }
    }
}

/// `[cost]`: cost anomalies against the key's own recent windows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostConfig {
    /// `cost_zscore` and `cost_robust_z` compare a window's cost per request with the key's
    /// windows that started in the `baseline_windows` window lengths before it.
    pub baseline_windows: u32,
    /// Both are null until the baseline holds this many windows.
    pub min_baseline: u32,
}

impl Default for CostConfig {
    fn default() -> Self {
        Self {
            baseline_windows: 60,
            min_baseline: 10,
        }
    }
}

impl CalibrationConfig {
    pub fn validate(&self) -> Result<(), ProcessorError> {
        if !(1..=100).contains(&self.bins) {
            return Err(config_err!(
                "calibration.bins is {}; use 1 to 100 (10 is usual)",
                self.bins
            ));
        }
        Ok(())
    }
}

impl CostConfig {
    pub fn validate(&self) -> Result<(), ProcessorError> {
        if self.baseline_windows == 0 || self.min_baseline < 2 {
            return Err(config_err!(
                "cost.baseline_windows must be at least 1 and cost.min_baseline at least 2"
            ));
        }
        Ok(())
    }
}
