//! The built-in metrics as DataFusion aggregate functions.
//!
//! Each function is a [`Function`]: a state type and how rows update it, states merge and a
//! state evaluates. [`Udaf`] turns one into an `AggregateUDF` with both accumulators
//! DataFusion knows: a one-group [`Accumulator`] and a [`GroupsAccumulator`] that takes a
//! whole batch with its group indices in one call. The window operator keeps the same state
//! types per (pane, key) and evaluates them with the same code, so `SELECT ece(confidence,
//! correct) FROM events` over a window's events gives the `metrics` row's value.
//!
//! | function | state | result |
//! |---|---|---|
//! | `latency_quantile(latency_ms, q)` | HDR histogram of µs, 3 significant digits | ms |
//! | `cost_quantile(cost_usd, q)` | HDR histogram of nano-dollars | USD |
//! | `ece`, `mce`, `brier`, `auroc`, `reliability` `(confidence, correct)` | [`Calibration`] | |
//! | `psi`, `ks` `(value, is_reference)` | bucketed counts of both samples | |
//! | `js(category, is_reference)` | category counts of both samples | |

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use arrow::array::{new_empty_array, Array, ArrayRef, AsArray, BinaryBuilder, BooleanArray};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{exec_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use serde::de::DeserializeOwned;
use serde::Serialize;

mod calibration;
mod drift;
mod hdr;
mod quantile;
mod ranks;

pub use calibration::{
    calibration_bin, Bin, BinRow, BinSpec, Binning, Calibration, CalibrationFn, CalibrationValue,
};
pub use drift::{count_buckets, Categorical, CategoricalState, Drift, DriftFn, TwoSample};
pub use hdr::Hdr;
pub use quantile::Quantile;
pub use ranks::{Rank, Ranks, RANK_STEPS};

/// What the functions take from the config: the reliability bins and the drift floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FunctionParams {
    pub bins: BinSpec,
    /// Drift values are null when either sample has fewer values than this.
    pub min_samples: u64,
}

impl FunctionParams {
    /// `[calibration]` bins and `[drift] min_samples`, as the `metrics` columns use them.
    pub fn from_config(config: &crate::ProcessorConfig) -> Self {
        Self {
            bins: BinSpec {
                bins: config.calibration.bins,
                binning: config.calibration.binning,
            },
            min_samples: config.drift.min_samples,
        }
    }
}

/// The config's defaults.
impl Default for FunctionParams {
    fn default() -> Self {
        Self::from_config(&crate::ProcessorConfig::default())
    }
}

/// One aggregate function: its state and the four things done with it.
pub trait Function: Debug + Clone + PartialEq + Eq + Hash + Send + Sync + 'static {
    type State: Default + Clone + Debug + Send + Sync + Serialize + DeserializeOwned + 'static;

    fn name(&self) -> &'static str;
    /// Argument types; callers' types are coerced to these.
    fn arg_types(&self) -> Vec<DataType>;
    fn return_type(&self) -> DataType;

    /// The function with the constant arguments of one call bound (a quantile's `q`).
    fn bind(&self, _args: &[Arc<dyn PhysicalExpr>]) -> DfResult<Self> {
        Ok(self.clone())
    }

    /// Adds every row of a batch that `filter` keeps to the state of its group,
    /// `states.state(groups[row])`, in row order.
    fn update<St: States<Self::State> + ?Sized>(
        &self,
        states: &mut St,
        args: &[ArrayRef],
        groups: &[usize],
        filter: Option<&BooleanArray>,
    ) -> DfResult<()>;

    fn merge(&self, into: &mut Self::State, from: &Self::State);

    fn evaluate(&self, state: &Self::State) -> DfResult<ScalarValue>;

    /// Heap bytes of a state.
    fn size(&self, state: &Self::State) -> usize;
}

/// Where [`Function::update`] finds a group's state: a slice of states (the accumulators
/// here), or one field of each record of a slice (the window operator's per-(pane, key)
/// state, which holds several functions' states side by side).
pub trait States<S> {
    fn state(&mut self, group: usize) -> &mut S;
}

impl<S> States<S> for [S] {
    fn state(&mut self, group: usize) -> &mut S {
        &mut self[group]
    }
}

/// The state `get` finds in each record of `records`; `get` may create it on first use.
pub struct FieldOf<'a, T, S> {
    pub records: &'a mut [T],
    pub get: fn(&mut T) -> &mut S,
}

impl<T, S> States<S> for FieldOf<'_, T, S> {
    fn state(&mut self, group: usize) -> &mut S {
        (self.get)(&mut self.records[group])
    }
}

/// Rows `update` takes: kept by the filter (null counts as rejected).
#[inline]
pub(crate) fn kept(filter: Option<&BooleanArray>, row: usize) -> bool {
    // The bit buffer's `value` inlines; the array's is a call per row.
    filter.is_none_or(|f| f.is_valid(row) && f.values().value(row))
}

/// A [`Function`] as a DataFusion aggregate function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Udaf<F: Function> {
    function: F,
    signature: Signature,
}

impl<F: Function> Udaf<F> {
    pub fn new(function: F) -> Self {
        let signature = Signature::exact(function.arg_types(), Volatility::Immutable);
        Self {
            function,
            signature,
        }
    }

    pub fn udf(function: F) -> AggregateUDF {
        AggregateUDF::new_from_impl(Self::new(function))
    }
}

impl<F: Function> AggregateUDFImpl for Udaf<F> {
    fn name(&self) -> &str {
        self.function.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(self.function.return_type())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(One {
            function: self.function.bind(args.exprs)?,
            state: F::State::default(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        let name = format!("{}[state]", args.name);
        Ok(vec![Arc::new(Field::new(name, DataType::Binary, true))])
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> DfResult<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Groups::new(self.function.bind(args.exprs)?)))
    }
}

/// States travel between accumulators as JSON bytes; floats as their bit patterns, so a
/// merged state equals one built in a single pass.
fn encode<S: Serialize>(s: &S) -> DfResult<Vec<u8>> {
    serde_json::to_vec(s).map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
}

fn decode<S: DeserializeOwned>(bytes: &[u8]) -> DfResult<S> {
    serde_json::from_slice(bytes)
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
}

/// The one-group accumulator.
#[derive(Debug)]
struct One<F: Function> {
    function: F,
    state: F::State,
}

impl<F: Function> Accumulator for One<F> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let n = values.first().map_or(0, |v| v.len());
        let groups = vec![0; n];
        let states = std::slice::from_mut(&mut self.state);
        self.function.update(states, values, &groups, None)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let Some(bytes) = states.first().and_then(|s| s.as_binary_opt::<i32>()) else {
            return exec_err!("{}: state is not binary", self.function.name());
        };
        for b in bytes.iter().flatten() {
            self.function.merge(&mut self.state, &decode(b)?);
        }
        Ok(())
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(encode(&self.state)?))])
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        self.function.evaluate(&self.state)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.function.size(&self.state)
    }
}

/// The many-group accumulator: one state per group index, a batch per call.
pub struct Groups<F: Function> {
    function: F,
    states: Vec<F::State>,
}

impl<F: Function> Groups<F> {
    pub fn new(function: F) -> Self {
        Self {
            function,
            states: Vec::new(),
        }
    }
}

impl<F: Function> GroupsAccumulator for Groups<F> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> DfResult<()> {
        self.states.resize_with(total_num_groups, Default::default);
        self.function.update(
            self.states.as_mut_slice(),
            values,
            group_indices,
            opt_filter,
        )
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> DfResult<ArrayRef> {
        let states = emit_to.take_needed(&mut self.states);
        if states.is_empty() {
            return Ok(new_empty_array(&self.function.return_type()));
        }
        let values: Vec<ScalarValue> = states
            .iter()
            .map(|s| self.function.evaluate(s))
            .collect::<DfResult<_>>()?;
        ScalarValue::iter_to_array(values)
    }

    fn state(&mut self, emit_to: EmitTo) -> DfResult<Vec<ArrayRef>> {
        let states = emit_to.take_needed(&mut self.states);
        let mut b = BinaryBuilder::with_capacity(states.len(), states.len() * 64);
        for s in &states {
            b.append_value(encode(s)?);
        }
        Ok(vec![Arc::new(b.finish())])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> DfResult<()> {
        self.states.resize_with(total_num_groups, Default::default);
        let Some(bytes) = values.first().and_then(|s| s.as_binary_opt::<i32>()) else {
            return exec_err!("{}: state is not binary", self.function.name());
        };
        for (b, &g) in bytes.iter().zip(group_indices) {
            if let Some(b) = b {
                let other: F::State = decode(b)?;
                self.function.merge(&mut self.states[g], &other);
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> DfResult<Vec<ArrayRef>> {
        let n = values.first().map_or(0, |v| v.len());
        let mut states = vec![F::State::default(); n];
        let groups: Vec<usize> = (0..n).collect();
        self.function
            .update(states.as_mut_slice(), values, &groups, opt_filter)?;
        let mut b = BinaryBuilder::with_capacity(n, n * 64);
        for s in &states {
            b.append_value(encode(s)?);
        }
        Ok(vec![Arc::new(b.finish())])
    }

    fn size(&self) -> usize {
        let heap: usize = self.states.iter().map(|s| self.function.size(s)).sum();
        std::mem::size_of_val(self) + self.states.capacity() * size_of::<F::State>() + heap
    }
}

/// Every built-in aggregate function, with `params` from the config.
pub fn all(params: FunctionParams) -> Vec<AggregateUDF> {
    let mut out = vec![Udaf::udf(Quantile::latency()), Udaf::udf(Quantile::cost())];
    for value in CalibrationValue::ALL {
        out.push(Udaf::udf(CalibrationFn::new(value, params.bins)));
    }
    for drift in Drift::ALL {
        out.push(Udaf::udf(DriftFn::new(drift, params.min_samples)));
    }
    out.push(Udaf::udf(Categorical::new(params.min_samples)));
    out
}

/// Registers every built-in aggregate function in `ctx`.
pub fn register(ctx: &SessionContext, params: FunctionParams) {
    for f in all(params) {
        ctx.register_udaf(f);
    }
}

/// The argument as a Float64 array (callers' types are coerced before a batch arrives).
pub(crate) fn float_arg<'a>(
    name: &str,
    args: &'a [ArrayRef],
    i: usize,
) -> DfResult<&'a arrow::array::Float64Array> {
    match args.get(i).and_then(|a| a.as_primitive_opt()) {
        Some(a) => Ok(a),
        None => exec_err!("{name}: argument {} must be a number", i + 1),
    }
}

pub(crate) fn bool_arg<'a>(
    name: &str,
    args: &'a [ArrayRef],
    i: usize,
) -> DfResult<&'a BooleanArray> {
    match args.get(i).and_then(|a| a.as_boolean_opt()) {
        Some(a) => Ok(a),
        None => exec_err!("{name}: argument {} must be a boolean", i + 1),
    }
}

/// Floats in states as their bit patterns: a decimal round trip may move the last bit, and
/// a restored or merged state must equal one built in one pass.
pub(crate) mod f64_bits {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(v.to_bits())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(f64::from_bits(u64::deserialize(d)?))
    }
}

/// A deterministic stream of (uniform in [0, 1), the raw 64 bits) for tests: an LCG.
#[cfg(test)]
fn uniforms(seed: u64, n: usize) -> impl Iterator<Item = (f64, u64)> {
    let mut x = seed;
    (0..n).map(move |_| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 11) as f64 / (1u64 << 53) as f64, x)
    })
}

#[cfg(test)]
mod tests;
