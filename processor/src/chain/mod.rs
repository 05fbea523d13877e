//! A partition's operators, chained: pricing → window aggregate (windows, sessions, budgets,
//! the label join) → alerts and breakers. Every operator speaks one vocabulary, the
//! [`Operator`] trait: a batch in, the batch for the next operator out, and the rows of
//! every table it produces into the [`Collector`]. A checkpoint is the list of the
//! operators' states, each written and read by its own operator.
//!
//! Sessions, budgets and the label join live inside the window aggregate, not as operators
//! of their own: each feeds the open (pane, key) state event by event (a session's step
//! counts in the pane of the event that made it, a budget's tenant cost too, a label lands
//! in the pane of its prediction), so splitting them out would pass per-event side tables
//! between operators for no gain.

use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::alerts::AlertOutput;
use crate::config::ProcessorConfig;
use crate::error::{ProcessorError, Result};
use crate::operator::{Revisions, SessionRows, WindowOperator};

mod alerting;
mod pricing;
mod window;

pub use pricing::Pricing;

/// What moved a partition's watermark without events of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watermark {
    /// An idle partition follows the others to this event time.
    At(i64),
    /// The source ended: every window closes, every session ends.
    End,
}

/// One step of a partition's chain.
pub trait Operator: Send {
    /// Names the operator's state in checkpoints.
    fn name(&self) -> &'static str;

    /// One micro-batch from the operator before; returns what goes to the next one.
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Collector) -> Result<RecordBatch>;

    /// The watermark moved without events; returns what goes to the next operator.
    fn handle_watermark(&mut self, _wm: Watermark, _out: &mut Collector) -> Result<RecordBatch> {
        Ok(RecordBatch::new_empty(std::sync::Arc::new(
            arrow::datatypes::Schema::empty(),
        )))
    }

    /// The operator's state for a checkpoint (empty: stateless).
    fn snapshot(&mut self) -> Result<Vec<u8>> {
        Ok(Vec::new())
    }

    fn restore(&mut self, _state: &[u8]) -> Result<()> {
        Ok(())
    }
}

/// A table's rows, as an operator hands them to the sinks.
pub enum Emitted {
    /// `events`: the input, priced, with `late` set.
    Events(RecordBatch),
    /// `metrics` rows of closed windows.
    Metrics(RecordBatch),
    /// `budgets` rows of the same windows.
    Budgets(RecordBatch),
    CalibrationBins(RecordBatch),
    /// Ended sessions, cut at the window close `at`.
    Sessions(SessionRows),
    /// `alerts` rows and the notices to deliver.
    Alerts(AlertOutput),
    /// Windows re-emitted because late labels changed them.
    Revisions(Revisions),
}

/// Where a chain's outputs gather during one call, in the order they were produced.
#[derive(Default)]
pub struct Collector {
    emitted: Vec<Emitted>,
}

impl Collector {
    pub fn emit(&mut self, rows: Emitted) {
        self.emitted.push(rows);
    }

    /// Everything emitted since the last drain.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Emitted> {
        self.emitted.drain(..)
    }

    /// The `budgets` rows emitted so far in this call.
    fn budgets(&self) -> Option<&RecordBatch> {
        self.emitted.iter().rev().find_map(|e| match e {
            Emitted::Budgets(b) => Some(b),
            _ => None,
        })
    }
}

/// The checkpoint of a chain: each operator's state by name.
#[derive(Serialize, Deserialize)]
struct ChainSnapshot {
    chain: u32,
    /// (operator name, its state: hex of its own bytes).
    operators: Vec<(String, String)>,
}

const CHAIN_VERSION: u32 = 1;

/// A partition's operators, in order.
pub struct Chain {
    pricing: Pricing,
    window: WindowOperator,
    alerts: crate::alerts::Alerting,
}

impl Chain {
    pub fn new(config: &ProcessorConfig) -> Result<Self> {
        let window = WindowOperator::new(config)?;
        let alerts = crate::alerts::Alerting::new(
            &config.alerts,
            window.metrics_schema().as_ref(),
            config.window.size.as_millis() as i64,
        )?;
        Ok(Self {
            pricing: Pricing::new(&config.prices)?,
            window,
            alerts,
        })
    }

    /// The window aggregate spills its `sessions` sets past `spill`'s budget.
    pub fn with_spill(mut self, spill: Option<std::sync::Arc<crate::spill::Spill>>) -> Self {
        if let Some(s) = spill {
            self.window = self.window.with_spill(s);
        }
        self
    }

    fn operators(&mut self) -> [&mut dyn Operator; 3] {
        [&mut self.pricing, &mut self.window, &mut self.alerts]
    }

    /// Runs a micro-batch of decoded events through every operator; an operator with
    /// nothing to pass on ends the walk.
    pub fn process_batch(&mut self, events: RecordBatch, out: &mut Collector) -> Result<()> {
        let mut batch = events;
        for (i, op) in self.operators().into_iter().enumerate() {
            if i > 0 && batch.num_rows() == 0 {
                break;
            }
            batch = op.process_batch(batch, out)?;
        }
        Ok(())
    }

    /// Moves the watermark down the chain: each operator first takes what the one before
    /// produced for it (as a batch), then the watermark itself.
    pub fn handle_watermark(&mut self, wm: Watermark, out: &mut Collector) -> Result<()> {
        let mut passed: Vec<RecordBatch> = Vec::new();
        for op in self.operators() {
            let mut produced = Vec::new();
            for batch in passed.drain(..) {
                produced.push(op.process_batch(batch, out)?);
            }
            produced.push(op.handle_watermark(wm, out)?);
            passed = produced.into_iter().filter(|b| b.num_rows() > 0).collect();
        }
        Ok(())
    }

    /// Every operator's state, by name.
    pub fn snapshot(&mut self) -> Result<Vec<u8>> {
        let mut operators = Vec::new();
        for op in self.operators() {
            let state = op.snapshot()?;
            if !state.is_empty() {
                operators.push((op.name().to_string(), crate::operator::hex(&state)));
            }
        }
        let snap = ChainSnapshot {
            chain: CHAIN_VERSION,
            operators,
        };
        serde_json::to_vec(&snap).map_err(|e| ProcessorError::Checkpoint(e.to_string()))
    }

    /// Restores each operator from its part of a checkpoint. A checkpoint written before
    /// operators were chained (one window-operator state holding the alert states too) is
    /// read as such.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let snap: ChainSnapshot = match serde_json::from_slice(bytes) {
            Ok(s) => s,
            Err(_) => return self.restore_unchained(bytes),
        };
        if snap.chain != CHAIN_VERSION {
            return Err(ProcessorError::Checkpoint(format!(
                "it was written by a newer inferwatch (chain format {}); run that version, or start from an empty data_dir",
                snap.chain
            )));
        }
        for (name, hex) in snap.operators {
            let state = crate::operator::unhex(&hex)
                .ok_or_else(|| ProcessorError::Checkpoint(format!("{name}: state is not hex")))?;
            let op = self
                .operators()
                .into_iter()
                .find(|op| op.name() == name)
                .ok_or_else(|| {
                    ProcessorError::Checkpoint(format!(
                        "it holds state of an operator `{name}` this inferwatch does not have"
                    ))
                })?;
            op.restore(&state)?;
        }
        Ok(())
    }

    fn restore_unchained(&mut self, bytes: &[u8]) -> Result<()> {
        #[derive(Deserialize)]
        struct Unchained {
            #[serde(default)]
            alerts: crate::alerts::AlertSnapshot,
        }
        self.window.restore(bytes)?;
        let old: Unchained =
            serde_json::from_slice(bytes).map_err(|e| ProcessorError::Checkpoint(e.to_string()))?;
        self.alerts.restore(old.alerts);
        Ok(())
    }

    /// Re-emits the windows late labels changed (all pending ones with `force`; else only
    /// once a window closed since the last revisions).
    pub fn revisions(&mut self, force: bool, out: &mut Collector) -> Result<()> {
        if let Some(r) = self.window.take_revisions(force)? {
            out.emit(Emitted::Revisions(r));
        }
        Ok(())
    }

    /// The window aggregate: the label join, revisions and counters live there.
    pub fn window(&self) -> &WindowOperator {
        &self.window
    }

    pub fn window_mut(&mut self) -> &mut WindowOperator {
        &mut self.window
    }
}

#[cfg(test)]
mod tests;
