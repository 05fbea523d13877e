//! The window aggregate in the chain: events in, `events` rows and the tables of closed
//! windows out; the `metrics` rows go on to the alerts.

use arrow::array::RecordBatch;

use super::{Collector, Emitted, Operator, Watermark};
use crate::error::Result;
use crate::operator::WindowOperator;

impl WindowOperator {
    /// Emits what closing windows produced besides their `metrics` rows: budgets,
    /// reliability bins, ended sessions (all of them at the end of the source).
    fn emit_closed(
        &mut self,
        metrics: Option<RecordBatch>,
        end: bool,
        out: &mut Collector,
    ) -> Result<RecordBatch> {
        let metrics = metrics.unwrap_or_else(|| RecordBatch::new_empty(self.metrics_schema()));
        if metrics.num_rows() > 0 {
            out.emit(Emitted::Metrics(metrics.clone()));
        }
        if let Some(b) = self.take_budget_rows()? {
            out.emit(Emitted::Budgets(b));
        }
        if let Some(b) = self.take_calibration_bins()? {
            out.emit(Emitted::CalibrationBins(b));
        }
        if let Some(s) = self.take_sessions(end)? {
            out.emit(Emitted::Sessions(s));
        }
        Ok(metrics)
    }
}

impl Operator for WindowOperator {
    fn name(&self) -> &'static str {
        "window"
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Collector) -> Result<RecordBatch> {
        let o = self.aggregate(batch)?;
        if let Some(events) = o.events {
            out.emit(Emitted::Events(events));
        }
        self.emit_closed(o.metrics, false, out)
    }

    fn handle_watermark(&mut self, wm: Watermark, out: &mut Collector) -> Result<RecordBatch> {
        match wm {
            Watermark::At(t) => {
                let rows = self.advance_watermark(t)?;
                self.emit_closed(rows, false, out)
            }
            Watermark::End => {
                let rows = self.finish()?;
                self.emit_closed(rows, true, out)
            }
        }
    }

    fn snapshot(&mut self) -> Result<Vec<u8>> {
        WindowOperator::snapshot(self)
    }

    fn restore(&mut self, state: &[u8]) -> Result<()> {
        WindowOperator::restore(self, state)
    }
}
