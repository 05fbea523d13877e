//! Two-sample drift as aggregates: `psi(value, is_reference)` and `ks(value, is_reference)`
//! over values in [0, 1], `js(category, is_reference)` over categories. The boolean splits
//! the rows into the reference and the sample compared with it, so the reference is any
//! predicate: `psi(confidence, timestamp < TIMESTAMP '2026-06-01T00:00:00Z')`.
//!
//! Values are bucketed exactly as the `metrics` columns are (see [`crate::drift`]).

use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array};
use arrow::compute::kernels::boolean::{and, not};
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result as DfResult, ScalarValue};
use serde::{Deserialize, Serialize};

use super::{bool_arg, float_arg, kept, Function, States};
use crate::drift::{bucket, js, ks, psi, Categories, Counts, DRIFT_STEPS};

/// Both samples of a continuous value, bucketed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TwoSample {
    pub reference: Counts,
    pub current: Counts,
}

/// Counts the bucket of every valid value `filter` keeps into its group's counts: the one
/// loop behind `psi`, `ks` and the window operator's drift state.
pub fn count_buckets<St: States<Counts> + ?Sized>(
    states: &mut St,
    x: &Float64Array,
    groups: &[usize],
    filter: Option<&BooleanArray>,
) {
    for (row, &g) in groups.iter().enumerate() {
        if x.is_valid(row) && kept(filter, row) {
            states.state(g).add(bucket(x.value(row)) as u32);
        }
    }
}

/// One sample of each group's [`TwoSample`].
struct Side<'a, St: ?Sized> {
    states: &'a mut St,
    reference: bool,
}

impl<St: States<TwoSample> + ?Sized> States<Counts> for Side<'_, St> {
    fn state(&mut self, group: usize) -> &mut Counts {
        let s = self.states.state(group);
        if self.reference {
            &mut s.reference
        } else {
            &mut s.current
        }
    }
}

/// Which statistic of two bucketed samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Drift {
    Psi,
    Ks,
}

impl Drift {
    pub const ALL: [Drift; 2] = [Drift::Psi, Drift::Ks];
}

/// `psi` or `ks`; null while either sample has fewer than `min_samples` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DriftFn {
    drift: Drift,
    min_samples: u64,
}

impl DriftFn {
    pub fn new(drift: Drift, min_samples: u64) -> Self {
        Self { drift, min_samples }
    }
}

fn enough(min_samples: u64, r: u64, c: u64) -> bool {
    r >= min_samples.max(1) && c >= min_samples.max(1)
}

impl Function for DriftFn {
    type State = TwoSample;

    fn name(&self) -> &'static str {
        match self.drift {
            Drift::Psi => "psi",
            Drift::Ks => "ks",
        }
    }

    fn arg_types(&self) -> Vec<DataType> {
        vec![DataType::Float64, DataType::Boolean]
    }

    fn return_type(&self) -> DataType {
        DataType::Float64
    }

    fn update<St: States<TwoSample> + ?Sized>(
        &self,
        states: &mut St,
        args: &[ArrayRef],
        groups: &[usize],
        filter: Option<&BooleanArray>,
    ) -> DfResult<()> {
        let x = float_arg(self.name(), args, 0)?;
        let is_ref = bool_arg(self.name(), args, 1)?;
        // A null `is_reference` (or filter) rejects the row on both sides.
        let (reference, current) = match filter {
            Some(f) => (and(f, is_ref)?, and(f, &not(is_ref)?)?),
            None => (is_ref.clone(), not(is_ref)?),
        };
        for (side, keep) in [(true, &reference), (false, &current)] {
            let mut side = Side {
                states: &mut *states,
                reference: side,
            };
            count_buckets(&mut side, x, groups, Some(keep));
        }
        Ok(())
    }

    fn merge(&self, into: &mut TwoSample, from: &TwoSample) {
        into.reference.merge(&from.reference);
        into.current.merge(&from.current);
    }

    fn evaluate(&self, s: &TwoSample) -> DfResult<ScalarValue> {
        let (rt, ct) = (s.reference.total(), s.current.total());
        if !enough(self.min_samples, rt, ct) {
            return Ok(ScalarValue::Float64(None));
        }
        let mut s = s.clone();
        s.reference.fold();
        s.current.fold();
        let mut reference = vec![0u64; DRIFT_STEPS + 1];
        for (b, n) in s.reference.iter() {
            reference[b as usize] += n as u64;
        }
        let v = match self.drift {
            Drift::Psi => psi(&reference, rt, &s.current, ct),
            Drift::Ks => ks(&reference, rt, &s.current, ct),
        };
        Ok(ScalarValue::Float64(Some(v)))
    }

    fn size(&self, s: &TwoSample) -> usize {
        s.reference.size() + s.current.size()
    }
}

/// Both samples of a categorical value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CategoricalState {
    pub reference: BTreeMap<String, u64>,
    pub current: BTreeMap<String, u64>,
}

/// `js(category, is_reference)`: Jensen–Shannon distance, base 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Categorical {
    min_samples: u64,
}

impl Categorical {
    pub fn new(min_samples: u64) -> Self {
        Self { min_samples }
    }
}

impl Function for Categorical {
    type State = CategoricalState;

    fn name(&self) -> &'static str {
        "js"
    }

    fn arg_types(&self) -> Vec<DataType> {
        vec![DataType::Utf8, DataType::Boolean]
    }

    fn return_type(&self) -> DataType {
        DataType::Float64
    }

    fn update<St: States<CategoricalState> + ?Sized>(
        &self,
        states: &mut St,
        args: &[ArrayRef],
        groups: &[usize],
        filter: Option<&BooleanArray>,
    ) -> DfResult<()> {
        let Some(cat) = args.first().and_then(|a| a.as_string_opt::<i32>()) else {
            return exec_err!("js: argument 1 must be a string");
        };
        let is_ref = bool_arg("js", args, 1)?;
        for (row, &g) in groups.iter().enumerate() {
            if cat.is_valid(row) && is_ref.is_valid(row) && kept(filter, row) {
                let s = states.state(g);
                let side = if is_ref.values().value(row) {
                    &mut s.reference
                } else {
                    &mut s.current
                };
                let v = cat.value(row);
                match side.get_mut(v) {
                    Some(n) => *n += 1,
                    None => {
                        side.insert(v.to_owned(), 1);
                    }
                }
            }
        }
        Ok(())
    }

    fn merge(&self, into: &mut CategoricalState, from: &CategoricalState) {
        for (k, n) in &from.reference {
            *into.reference.entry(k.clone()).or_default() += n;
        }
        for (k, n) in &from.current {
            *into.current.entry(k.clone()).or_default() += n;
        }
    }

    fn evaluate(&self, s: &CategoricalState) -> DfResult<ScalarValue> {
        let rt: u64 = s.reference.values().sum();
        let ct: u64 = s.current.values().sum();
        if !enough(self.min_samples, rt, ct) {
            return Ok(ScalarValue::Float64(None));
        }
        let mut names: Vec<String> = s
            .reference
            .keys()
            .chain(s.current.keys())
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        let categories = Categories::from_names(names);
        let mut ids = categories.clone();
        let reference: BTreeMap<u32, u64> = s
            .reference
            .iter()
            .map(|(k, &n)| (ids.intern(k), n))
            .collect();
        let current = Counts::from_sorted(
            s.current
                .iter()
                .map(|(k, &n)| (ids.intern(k), n as u32))
                .collect(),
        );
        Ok(ScalarValue::Float64(Some(js(
            &reference,
            rt,
            &current,
            ct,
            &categories,
        ))))
    }

    fn size(&self, s: &CategoricalState) -> usize {
        let entry = |(k, _): (&String, &u64)| k.capacity() + 48;
        s.reference.iter().map(entry).sum::<usize>() + s.current.iter().map(entry).sum::<usize>()
    }
}
