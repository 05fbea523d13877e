//! `latency_quantile(latency_ms, q)` and `cost_quantile(cost_usd, q)`: quantiles from an HDR
//! histogram with three significant digits ([`Hdr`]), so a state is a few KB whatever the
//! traffic and merges exactly.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray};
use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::DataType;
use arrow::datatypes::Schema;
use datafusion::common::{exec_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;

use super::{float_arg, kept, Function, Hdr, States};

/// A quantile of values recorded in `unit`s per output unit (µs per ms, nano-dollars per
/// dollar).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantile {
    name: &'static str,
    unit: f64,
    /// Bound per call from the literal second argument.
    q: f64,
}

impl Eq for Quantile {}

impl std::hash::Hash for Quantile {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.unit.to_bits().hash(state);
        self.q.to_bits().hash(state);
    }
}

impl Quantile {
    /// `latency_quantile(latency_ms, q)`: recorded in µs, so sub-millisecond latencies keep
    /// three significant digits.
    pub fn latency() -> Self {
        Self {
            name: "latency_quantile",
            unit: 1000.0,
            q: 0.5,
        }
    }

    /// `cost_quantile(cost_usd, q)`: recorded in nano-dollars.
    pub fn cost() -> Self {
        Self {
            name: "cost_quantile",
            unit: 1e9,
            q: 0.5,
        }
    }

    /// The value recorded for `x` (negative values count as 0).
    pub fn to_units(&self, x: f64) -> u64 {
        crate::round::round_u64(x * self.unit)
    }

    pub fn unit(&self) -> f64 {
        self.unit
    }

    pub fn with_q(self, q: f64) -> Self {
        Self { q, ..self }
    }
}

/// The value of an argument that reads no column (a literal, or a cast of one).
fn constant(e: &dyn PhysicalExpr) -> Option<f64> {
    let one_row = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )
    .ok()?;
    match e.evaluate(&one_row).ok()? {
        ColumnarValue::Scalar(ScalarValue::Float64(Some(q))) => Some(q),
        _ => None,
    }
}

impl Function for Quantile {
    type State = Hdr;

    fn name(&self) -> &'static str {
        self.name
    }

    fn arg_types(&self) -> Vec<DataType> {
        vec![DataType::Float64, DataType::Float64]
    }

    fn return_type(&self) -> DataType {
        DataType::Float64
    }

    fn bind(&self, args: &[Arc<dyn PhysicalExpr>]) -> DfResult<Self> {
        let q = args.get(1).and_then(|e| constant(e.as_ref()));
        match q {
            Some(q) if (0.0..=1.0).contains(&q) => Ok(self.with_q(q)),
            _ => exec_err!(
                "{}: the second argument is the quantile, a number from 0 to 1 such as 0.99",
                self.name
            ),
        }
    }

    fn update<St: States<Hdr> + ?Sized>(
        &self,
        states: &mut St,
        args: &[ArrayRef],
        groups: &[usize],
        filter: Option<&BooleanArray>,
    ) -> DfResult<()> {
        let x = float_arg(self.name, args, 0)?;
        for (row, &g) in groups.iter().enumerate() {
            if x.is_valid(row) && kept(filter, row) {
                states.state(g).record(self.to_units(x.value(row)));
            }
        }
        Ok(())
    }

    fn merge(&self, into: &mut Hdr, from: &Hdr) {
        into.merge(from);
    }

    fn evaluate(&self, state: &Hdr) -> DfResult<ScalarValue> {
        Ok(ScalarValue::Float64(state.quantile(self.q, self.unit)))
    }

    fn size(&self, state: &Hdr) -> usize {
        state.size()
    }
}
