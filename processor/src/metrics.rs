//! The built-in window metrics: a mergeable partial state per (pane, key) and the columns of
//! the `metrics` table it evaluates to.
//!
//! Every field merges exactly (counts, integer sums, HDR histograms, max), so a window's
//! value is the same whether its events came in one micro-batch or many, and memory grows
//! with keys × open panes, never with events.

use serde::{Deserialize, Serialize};

use crate::distinct::DistinctHashes;
use crate::drift::DriftState;
use crate::functions::f64_bits;
pub use crate::functions::{
    calibration_bin, Bin, BinRow, BinSpec, Binning, Calibration, Hdr, Rank, RANK_STEPS,
};

use crate::error::{config_err, ProcessorError};

/// A key's cost per request in recent windows: (window start, USD per request).
pub type CostSeries = std::collections::VecDeque<(i64, f64)>;

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
    pub(crate) latency_us: Hdr,
    #[serde(with = "f64_bits")]
    pub(crate) latency_max_ms: f64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub cost_nanos: i64,
    pub(crate) cost_hist: Hdr,
    pub cost_unpriced: u64,
    pub cost_source_event: u64,
    pub cost_source_table: u64,
    #[serde(with = "f64_bits")]
    pub(crate) quality_sum: f64,
    pub(crate) quality_n: u64,
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
    /// Hashes of the sessions with events here.
    session_ids: DistinctHashes,
    pub runaway_sessions: u64,
    pub wasted_nanos: i64,
}

impl CoreState {
    /// Bytes this state holds, itself included: what one open (pane × key) costs.
    pub fn size(&self) -> usize {
        // `Hdr::size` counts the histogram itself, which `Self` already holds.
        size_of::<Self>() + self.latency_us.size() + self.cost_hist.size() - 2 * size_of::<Hdr>()
            + self
                .calibration
                .as_ref()
                .map_or(0, |c| size_of::<Calibration>() + c.size())
            + self
                .drift
                .as_ref()
                .map_or(0, |d| size_of::<DriftState>() + d.size())
            + self.tenant_costs.capacity() * size_of::<(u32, i64)>()
            + self.session_ids.size()
    }

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
    /// Adds one event's counters; the aggregate functions' states (latency and cost
    /// histograms, calibration, drift buckets) take whole batches in the operator.
    pub fn observe(&mut self, o: &Observation, awaits: bool) {
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
            }
            None => self.cost_unpriced += 1,
        }
        if let Some(q) = o.quality_score {
            self.quality_sum += q;
            self.quality_n += 1;
        }
        if let Some(p) = o.prediction {
            self.drift
                .get_or_insert_with(Default::default)
                .prediction
                .add(p);
        }
        if let Some(h) = o.session {
            self.session_ids.insert(h);
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

    /// Counts in the values the histograms and ranks hold back, so that reading them
    /// copies nothing.
    pub fn settle(&mut self) {
        self.latency_us.settle();
        self.cost_hist.settle();
        if let Some(c) = &mut self.calibration {
            c.settle();
        }
    }

    /// Folds another partial state into this one.
    pub fn merge(&mut self, o: &CoreState) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.timeouts += o.timeouts;
        self.refusals += o.refusals;
        self.latency_us.merge(&o.latency_us);
        self.latency_max_ms = self.latency_max_ms.max(o.latency_max_ms);
        self.tokens_in += o.tokens_in;
        self.tokens_out += o.tokens_out;
        self.cost_nanos += o.cost_nanos;
        self.cost_hist.merge(&o.cost_hist);
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
            self.session_ids.merge(&o.session_ids);
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

    /// Distinct sessions with events in this state; reads its spilled runs, if any.
    pub fn distinct_sessions(&self) -> std::io::Result<usize> {
        self.session_ids.count()
    }

    /// Values of the `sessions` set held in memory, and its bytes there.
    pub(crate) fn sessions_in_memory(&self) -> (usize, usize) {
        (self.session_ids.in_memory(), self.session_ids.size())
    }

    /// Moves the `sessions` set's values held in memory to `file`; returns bytes written.
    pub(crate) fn spill_sessions(
        &mut self,
        file: &std::sync::Arc<dyn crate::spill::SpillFile>,
    ) -> std::io::Result<usize> {
        self.session_ids.spill(file)
    }
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
