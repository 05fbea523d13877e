//! `latency_quantile(latency_ms, q)` and `cost_quantile(cost_usd, q)`: quantiles from an HDR
//! histogram with three significant digits, so a state is a few KB whatever the traffic and
//! merges exactly.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray};
use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::DataType;
use arrow::datatypes::Schema;
use datafusion::common::{exec_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use hdrhistogram::Histogram;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{float_arg, kept, Function, States};

/// Significant digits of every HDR histogram.
const HDR_SIGFIG: u8 = 3;

fn histogram() -> Box<Histogram<u32>> {
    // Auto-resizing: memory follows the largest value seen, not a preset range.
    Box::new(Histogram::new(HDR_SIGFIG).expect("3 significant digits is a valid HDR precision"))
}

/// An HDR histogram of non-negative integers, empty until the first value.
#[derive(Debug, Clone, Default)]
pub struct Hdr(Option<Box<Histogram<u32>>>);

impl Hdr {
    pub fn record(&mut self, v: u64) {
        let h = self.0.get_or_insert_with(histogram);
        // Only values beyond HDR's range (> 2^62) clamp.
        if h.record(v).is_err() {
            h.saturating_record(v);
        }
    }

    pub fn merge(&mut self, from: &Hdr) {
        if let Some(f) = &from.0 {
            match &mut self.0 {
                Some(h) => h
                    .add(f.as_ref())
                    .expect("auto-resizing histograms always merge"),
                None => self.0 = Some(f.clone()),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|h| h.is_empty())
    }

    /// The `q` quantile divided by `unit`; `None` when empty.
    pub fn quantile(&self, q: f64, unit: f64) -> Option<f64> {
        self.0
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(q) as f64 / unit)
    }

    pub fn size(&self) -> usize {
        self.0.as_ref().map_or(0, |h| {
            size_of::<Histogram<u32>>() + h.distinct_values() * size_of::<u32>()
        })
    }
}

/// The (bucket value, count) pairs that were recorded. Recording each bucket's highest
/// equivalent value again lands in the same bucket, so the restored histogram answers every
/// quantile exactly as the original did.
impl Serialize for Hdr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let pairs: Option<Vec<(u64, u32)>> = self.0.as_ref().map(|h| {
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect()
        });
        pairs.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Hdr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs = Option::<Vec<(u64, u32)>>::deserialize(d)?;
        Ok(Hdr(pairs.map(|pairs| {
            let mut h = histogram();
            for (v, n) in pairs {
                if h.record_n(v, n).is_err() {
                    h.saturating_record_n(v, n);
                }
            }
            h
        })))
    }
}

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
        (x * self.unit).round().max(0.0) as u64
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
