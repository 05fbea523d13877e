//! The built-in columns of `metrics`, declared once: each column's name, type, how a
//! window's state evaluates to it, and the SQL aggregate over the window's `events` rows
//! that gives the same value. The schema, the row builders and the columns a revision
//! recomputes all derive from [`COLUMNS`].

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, Int64Builder};
use arrow::datatypes::{DataType, Field};

use crate::drift::DriftValues;
use crate::metrics::{BinSpec, CoreState, CostAnomaly};

/// What a window × key row is evaluated from.
pub struct RowInputs<'a> {
    pub state: &'a CoreState,
    pub spec: BinSpec,
    /// Drift against the key's reference (other windows), not an aggregate of this one.
    pub drift: &'a DriftValues,
    pub anomaly: CostAnomaly,
    /// (spent today in USD, burn rate) of the row's service budget.
    pub budget: Option<(f64, f64)>,
    pub revision: u32,
    /// Distinct sessions of the window (counted before: it may read spill files).
    pub sessions: usize,
}

/// How a column's value comes out of a row's inputs.
#[derive(Clone, Copy)]
pub enum Value {
    /// A non-null `Int64` column.
    Int(fn(&RowInputs) -> i64),
    /// A nullable `Float64` column.
    Float(fn(&RowInputs) -> Option<f64>),
}

/// One built-in column of `metrics`.
#[derive(Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub value: Value,
    /// The same value as an SQL aggregate over the window's `events` rows (with the
    /// built-in functions of [`crate::functions`]), for a window without late events or
    /// feedback. `None`: the value depends on more than the window's own events.
    pub sql: Option<&'static str>,
    /// Late labels change it, so a revision recomputes it.
    pub revised: bool,
}

const fn int(name: &'static str, sql: Option<&'static str>, f: fn(&RowInputs) -> i64) -> Column {
    Column {
        name,
        value: Value::Int(f),
        sql,
        revised: false,
    }
}

const fn float(
    name: &'static str,
    sql: Option<&'static str>,
    f: fn(&RowInputs) -> Option<f64>,
) -> Column {
    Column {
        name,
        value: Value::Float(f),
        sql,
        revised: false,
    }
}

const fn revised(c: Column) -> Column {
    Column { revised: true, ..c }
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

fn labeled(r: &RowInputs) -> u64 {
    r.state.calibration.as_ref().map_or(0, |c| c.n)
}

fn calibration<'a>(r: &RowInputs<'a>) -> Option<&'a crate::functions::Calibration> {
    r.state.calibration.as_deref().filter(|c| c.n > 0)
}

/// The built-in columns, in table order after the key columns.
pub const COLUMNS: &[Column] = &[
    int("requests", Some("count(*)"), |r| r.state.requests as i64),
    int(
        "errors",
        Some("count(*) FILTER (WHERE status IN ('error', 'timeout'))"),
        |r| r.state.errors as i64,
    ),
    float(
        "error_rate",
        Some("avg(CASE WHEN status IN ('error', 'timeout') THEN 1.0 ELSE 0.0 END)"),
        |r| ratio(r.state.errors, r.state.requests),
    ),
    int(
        "timeouts",
        Some("count(*) FILTER (WHERE status = 'timeout')"),
        |r| r.state.timeouts as i64,
    ),
    int(
        "refusals",
        Some("count(*) FILTER (WHERE status IN ('refused', 'filtered'))"),
        |r| r.state.refusals as i64,
    ),
    float(
        "latency_p50_ms",
        Some("latency_quantile(latency_ms, 0.5)"),
        |r| r.state.latency_us.quantile(0.50, 1000.0),
    ),
    float(
        "latency_p95_ms",
        Some("latency_quantile(latency_ms, 0.95)"),
        |r| r.state.latency_us.quantile(0.95, 1000.0),
    ),
    float(
        "latency_p99_ms",
        Some("latency_quantile(latency_ms, 0.99)"),
        |r| r.state.latency_us.quantile(0.99, 1000.0),
    ),
    float("latency_max_ms", Some("max(latency_ms)"), |r| {
        (!r.state.latency_us.is_empty()).then_some(r.state.latency_max_ms)
    }),
    int("tokens_in", Some("coalesce(sum(tokens_in), 0)"), |r| {
        r.state.tokens_in
    }),
    int("tokens_out", Some("coalesce(sum(tokens_out), 0)"), |r| {
        r.state.tokens_out
    }),
    float(
        "cost_usd",
        Some("coalesce(sum(CAST(round(cost_usd * 1e9) AS BIGINT)), 0) / 1e9"),
        |r| Some(r.state.cost_nanos as f64 / 1e9),
    ),
    float(
        "cost_per_request_p50",
        Some("cost_quantile(cost_usd, 0.5)"),
        |r| r.state.cost_hist.quantile(0.50, 1e9),
    ),
    float(
        "cost_per_request_p95",
        Some("cost_quantile(cost_usd, 0.95)"),
        |r| r.state.cost_hist.quantile(0.95, 1e9),
    ),
    float(
        "cost_per_request_p99",
        Some("cost_quantile(cost_usd, 0.99)"),
        |r| r.state.cost_hist.quantile(0.99, 1e9),
    ),
    int(
        "cost_unpriced",
        Some("count(*) FILTER (WHERE cost_usd IS NULL)"),
        |r| r.state.cost_unpriced as i64,
    ),
    int(
        "cost_source_event",
        Some("count(cost_usd) FILTER (WHERE cost_source IS DISTINCT FROM 'table')"),
        |r| r.state.cost_source_event as i64,
    ),
    int(
        "cost_source_table",
        Some("count(cost_usd) FILTER (WHERE cost_source = 'table')"),
        |r| r.state.cost_source_table as i64,
    ),
    float("quality_score_mean", Some("avg(quality_score)"), |r| {
        (r.state.quality_n > 0).then(|| r.state.quality_sum / r.state.quality_n as f64)
    }),
    float(
        "flagged_rate",
        // Without DataFusion's nested functions a list is tested by its text form.
        Some("avg(CASE WHEN coalesce(CAST(flags AS VARCHAR), '[]') = '[]' THEN 0.0 ELSE 1.0 END)"),
        |r| ratio(r.state.flagged, r.state.requests),
    ),
    float(
        "approval_rate",
        Some(
            "CAST(count(*) FILTER (WHERE approval = 'approved') AS DOUBLE) \
             / nullif(count(*) FILTER (WHERE approval IN ('approved', 'rejected')), 0)",
        ),
        |r| ratio(r.state.approved, r.state.approved + r.state.rejected),
    ),
    float(
        "rejection_rate",
        Some(
            "CAST(count(*) FILTER (WHERE approval = 'rejected') AS DOUBLE) \
             / nullif(count(*) FILTER (WHERE approval IN ('approved', 'rejected')), 0)",
        ),
        |r| ratio(r.state.rejected, r.state.approved + r.state.rejected),
    ),
    int("late_events", None, |r| r.state.late_events as i64),
    revised(int(
        "labeled",
        Some("count(*) FILTER (WHERE confidence IS NOT NULL AND correct IS NOT NULL)"),
        |r| labeled(r) as i64,
    )),
    revised(float(
        "label_coverage",
        Some(
            "CAST(count(*) FILTER (WHERE confidence IS NOT NULL AND correct IS NOT NULL) \
             AS DOUBLE) / count(*)",
        ),
        |r| ratio(labeled(r), r.state.requests),
    )),
    revised(float(
        "accuracy",
        Some("avg(CASE WHEN correct THEN 1.0 ELSE 0.0 END) FILTER (WHERE confidence IS NOT NULL AND correct IS NOT NULL)"),
        |r| calibration(r).and_then(|c| c.accuracy()),
    )),
    revised(float(
        "mean_confidence",
        Some("avg(confidence) FILTER (WHERE correct IS NOT NULL)"),
        |r| calibration(r).and_then(|c| c.mean_confidence()),
    )),
    revised(float("overconfidence", None, |r| {
        let c = calibration(r)?;
        Some(c.mean_confidence()? - c.accuracy()?)
    })),
    revised(float("ece", Some("ece(confidence, correct)"), |r| {
        calibration(r).and_then(|c| c.ece_mce(r.spec)).map(|v| v.0)
    })),
    revised(float("mce", Some("mce(confidence, correct)"), |r| {
        calibration(r).and_then(|c| c.ece_mce(r.spec)).map(|v| v.1)
    })),
    revised(float("brier", Some("brier(confidence, correct)"), |r| {
        calibration(r).and_then(|c| c.brier())
    })),
    revised(float("auroc", Some("auroc(confidence, correct)"), |r| {
        calibration(r).and_then(|c| c.auroc())
    })),
    revised(int("late_labels", None, |r| r.state.late_labels as i64)),
    float("psi_confidence", None, |r| r.drift.psi_confidence),
    float("ks_confidence", None, |r| r.drift.ks_confidence),
    float("psi_quality_score", None, |r| r.drift.psi_quality),
    float("ks_quality_score", None, |r| r.drift.ks_quality),
    float("js_prediction", None, |r| r.drift.js_prediction),
    int("sessions", Some("count(DISTINCT session_id)"), |r| {
        r.sessions as i64
    }),
    int("runaway_sessions", None, |r| r.state.runaway_sessions as i64),
    float("wasted_cost_usd", None, |r| {
        Some(r.state.wasted_nanos as f64 / 1e9)
    }),
    float("cost_zscore", None, |r| r.anomaly.zscore),
    float("cost_robust_z", None, |r| r.anomaly.robust_z),
    float("budget_spent_usd", None, |r| r.budget.map(|b| b.0)),
    float("budget_burn_rate", None, |r| r.budget.map(|b| b.1)),
    revised(int("revision", None, |r| r.revision as i64)),
];

impl Column {
    pub fn field(&self) -> Field {
        match self.value {
            Value::Int(_) => Field::new(self.name, DataType::Int64, false),
            Value::Float(_) => Field::new(self.name, DataType::Float64, true),
        }
    }
}

/// Fields of the built-in columns, in table order.
pub fn fields() -> Vec<Field> {
    COLUMNS.iter().map(Column::field).collect()
}

/// Every column name `metrics` has before custom metrics: the keys, then [`COLUMNS`].
pub fn names() -> Vec<String> {
    let keys = inferwatch_schemas::tables::metrics_key_fields();
    keys.iter()
        .map(|f| f.name().clone())
        .chain(COLUMNS.iter().map(|c| c.name.to_string()))
        .collect()
}

enum Builder {
    Int(Int64Builder),
    Float(Float64Builder),
}

/// Builders of the built-in columns for many window × key rows.
pub struct CoreColumns {
    builders: Vec<Builder>,
}

impl Default for CoreColumns {
    fn default() -> Self {
        let builders = COLUMNS
            .iter()
            .map(|c| match c.value {
                Value::Int(_) => Builder::Int(Int64Builder::new()),
                Value::Float(_) => Builder::Float(Float64Builder::new()),
            })
            .collect();
        Self { builders }
    }
}

impl CoreColumns {
    pub fn append(&mut self, row: &RowInputs) {
        for (b, c) in self.builders.iter_mut().zip(COLUMNS) {
            match (b, c.value) {
                (Builder::Int(b), Value::Int(f)) => b.append_value(f(row)),
                (Builder::Float(b), Value::Float(f)) => b.append_option(f(row)),
                _ => unreachable!("builders are made from COLUMNS"),
            }
        }
    }

    /// Finished arrays in [`COLUMNS`] order.
    pub fn finish(&mut self) -> Vec<ArrayRef> {
        self.builders
            .iter_mut()
            .map(|b| match b {
                Builder::Int(b) => Arc::new(b.finish()) as ArrayRef,
                Builder::Float(b) => Arc::new(b.finish()) as ArrayRef,
            })
            .collect()
    }
}
