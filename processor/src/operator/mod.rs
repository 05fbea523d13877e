//! The window aggregate of one source partition, the middle of its chain (see
//! [`crate::chain`]): `aggregate` (a batch of priced events), `advance_watermark` (an idle
//! partition follows the others) and `finish` (end of a finite source).
//!
//! Watermarks advance event by event inside a micro-batch, and windows close the moment the
//! watermark passes them, so a window's contents and every event's `late` flag depend only on
//! the order of events — never on where micro-batch boundaries fell.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, Float64Array, RecordBatch, StringArray, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::datatypes::{Float64Type, Int64Type, Schema, SchemaRef, TimestampMillisecondType};
use inferwatch_schemas::tables::{events as col, metrics_key_fields};
use inferwatch_schemas::validate::COST_SOURCE_TABLE;
use serde::{Deserialize, Serialize};

use crate::columns::{CoreColumns, RowInputs};
use crate::config::ProcessorConfig;
use crate::custom::{CustomGroups, CustomMetrics};
use crate::drift::{Baseline, Categories, DriftState, DriftValues, Reference};
use crate::error::{ProcessorError, Result};
use crate::functions::{CalibrationFn, CalibrationValue};
use crate::labels::{LabelJoin, LabelSnapshot, LabelStats};
use crate::metrics::{Approval, BinSpec, CoreState, Observation, StatusClass};
use crate::metrics::{Calibration, CostAnomaly, CostSeries};
use crate::price::usd_to_nanos;
use crate::sessions::{Ended, SessionStats, Sessions, SessionsSnapshot};
use crate::spill::Spill;
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
    /// The newest event time of the partition: its watermark is this minus the allowed
    /// out-of-orderness.
    max_event_time: Option<i64>,
    keys: Keys,
    /// The open (pane, key) groups and their built-in state.
    groups: Groups,
    /// Start of the latest window already emitted: later events for it are late.
    emitted_through: Option<i64>,
    custom: Option<Custom>,
    /// The calibration family's update, with the configured bins.
    calibration: CalibrationFn,
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
    ended: Ended,
    /// The event time that names the last file of `sessions` rows handed out (increasing).
    sessions_at: Option<i64>,
    /// `emitted_through` when `sessions` rows were last handed out.
    sessions_cut_through: Option<i64>,
    /// The process's spill budget for the `sessions` sets, and this partition's share.
    spill: Option<SpillShare>,
}

/// A partition's part of the memory [`Spill`] budgets; given back when it goes.
#[derive(Debug)]
struct SpillShare {
    spill: Arc<Spill>,
    held: usize,
}

impl Drop for SpillShare {
    fn drop(&mut self) {
        self.spill.report(self.held, 0);
    }
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
            max_event_time: None,
            keys: Keys::default(),
            groups: Groups::default(),
            emitted_through: None,
            custom: match custom {
                Some(metrics) => Some(Custom {
                    groups: metrics.new_groups()?,
                    metrics,
                }),
                None => None,
            },
            calibration: CalibrationFn::new(CalibrationValue::Ece, bin_spec),
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
            ended: Ended::default(),
            sessions_at: None,
            sessions_cut_through: None,
            spill: None,
        })
    }

    /// Spills the `sessions` sets past `spill`'s budget (shared with other partitions)
    /// instead of holding them all in memory.
    pub fn with_spill(mut self, spill: Arc<Spill>) -> Self {
        self.spill = Some(SpillShare { spill, held: 0 });
        self
    }

    /// Reports what the `sessions` sets hold in memory to the process's budget and spills
    /// them when all partitions together are over it.
    fn keep_sessions_in_budget(&mut self) -> Result<()> {
        let Some(share) = &mut self.spill else {
            return Ok(());
        };
        let now = self.groups.sessions_bytes();
        let before = std::mem::replace(&mut share.held, now);
        if share.spill.report(before, now) {
            let written =
                (self.groups.spill_sessions(&share.spill)).map_err(ProcessorError::Spill)?;
            share.spill.wrote(written);
            let after = self.groups.sessions_bytes();
            share.spill.report(now, after);
            share.held = after;
        }
        Ok(())
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

    /// Bytes held by the open (pane × key) states of the built-in metrics.
    pub fn state_bytes(&self) -> usize {
        self.groups.state_bytes()
    }

    /// The partition's watermark: its newest event time minus the allowed
    /// out-of-orderness; `None` before its first event.
    pub fn watermark(&self) -> Option<i64> {
        self.max_event_time.map(|t| t - self.spec.out_of_orderness)
    }

    /// Open panes (a tumbling window is one pane).
    pub fn open_panes(&self) -> usize {
        self.groups.open_panes()
    }

    /// Newest event time of the partition (files dead letters deterministically).
    pub fn max_event_time(&self) -> Option<i64> {
        self.max_event_time
    }
}

/// Custom metrics and their accumulators over this partition's groups.
struct Custom {
    metrics: CustomMetrics,
    groups: CustomGroups,
}

mod batch;
mod budgets;
mod close;
mod groups;
mod keys;
mod revisions;
mod rows;
mod snapshot;

#[cfg(test)]
pub(crate) use batch::opt;
pub use budgets::BudgetConfig;
use budgets::*;
use groups::Groups;
use keys::Keys;
pub use revisions::Revisions;
use revisions::*;
use rows::*;
pub use rows::{SessionRows, SESSION_ROWS_PER_FILE};
pub(crate) use snapshot::{hex, unhex};

#[cfg(test)]
mod tests;
