//! Alert rules and circuit breakers in the chain: the `metrics` rows of closed windows in
//! (with the `budgets` rows of the same windows from the collector), `alerts` rows and
//! notices out.

use arrow::array::RecordBatch;

use super::{Collector, Emitted, Operator};
use crate::alerts::Alerting;
use crate::error::{ProcessorError, Result};

impl Operator for Alerting {
    fn name(&self) -> &'static str {
        "alerts"
    }

    fn process_batch(&mut self, metrics: RecordBatch, out: &mut Collector) -> Result<RecordBatch> {
        let budgets = out.budgets().cloned();
        let rows = (metrics.num_rows() > 0).then_some(&metrics);
        self.evaluate(rows, budgets.as_ref())?;
        if let Some(a) = self.take()? {
            out.emit(Emitted::Alerts(a));
        }
        Ok(RecordBatch::new_empty(metrics.schema()))
    }

    fn snapshot(&mut self) -> Result<Vec<u8>> {
        serde_json::to_vec(&Alerting::snapshot(self))
            .map_err(|e| ProcessorError::Checkpoint(e.to_string()))
    }

    fn restore(&mut self, state: &[u8]) -> Result<()> {
        let snap = serde_json::from_slice(state)
            .map_err(|e| ProcessorError::Checkpoint(format!("alerts: {e}")))?;
        Alerting::restore(self, snap);
        Ok(())
    }
}
