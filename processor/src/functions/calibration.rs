//! The calibration family over `(confidence, correct)`: `ece`, `mce`, `brier`, `auroc` and
//! `reliability` (the diagram's bins). One mergeable state serves all five.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray, StructArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{Result as DfResult, ScalarValue};
use serde::{Deserialize, Serialize};

use super::ranks::{bucket_of, Ranks, RANK_STEPS};
use super::{bool_arg, f64_bits, float_arg, kept, Function, States};

/// Bin index of a confidence in [0, 1] under the equal-width (b/B, (b+1)/B] rule.
pub fn calibration_bin(c: f64, bins: usize) -> usize {
    let b = (c * bins as f64).ceil() as usize;
    b.saturating_sub(1).min(bins - 1)
}

/// How reliability bins are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Binning {
    /// Bin b of B holds confidences in (b/B, (b+1)/B]; 0 is in bin 0.
    EqualWidth,
    /// Bins hold about n/B labeled events each: confidences are ranked at 0.0001
    /// resolution and a group of equal (rounded) confidences goes to bin
    /// `min(B-1, B·below/n)`, `below` being the number of labeled events with a smaller one.
    EqualMass,
}

/// How calibration is binned, from `[calibration]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BinSpec {
    pub bins: usize,
    pub binning: Binning,
}

impl BinSpec {
    /// Per-bin state is kept only for equal-width bins; equal-mass bins are cut from the
    /// confidence ranks when the window closes.
    pub fn width_bins(&self) -> usize {
        match self.binning {
            Binning::EqualWidth => self.bins,
            Binning::EqualMass => 0,
        }
    }
}

/// One row of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BinRow {
    pub bin: usize,
    pub lower: f64,
    pub upper: f64,
    pub count: u64,
    pub mean_confidence: f64,
    pub accuracy: f64,
}

/// Mergeable calibration state: reliability bins, sums for accuracy / confidence / Brier,
/// and confidence buckets per label for AUROC.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Calibration {
    pub n: u64,
    pub correct: u64,
    #[serde(with = "f64_bits")]
    pub conf_sum: f64,
    #[serde(with = "f64_bits")]
    pub brier_sum: f64,
    /// Equal-width bins (empty with equal-mass binning).
    #[serde(default)]
    pub bins: Vec<Bin>,
    /// Labeled counts per confidence bucket (1/[`RANK_STEPS`]); confidence sums too with
    /// equal-mass bins.
    pub ranks: Ranks,
}

/// One reliability bin's partial state.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Bin {
    pub n: u64,
    pub correct: u64,
    #[serde(with = "f64_bits")]
    pub conf_sum: f64,
}

impl Calibration {
    pub fn observe(&mut self, conf: f64, correct: bool, width_bins: usize) {
        let y = correct as u64;
        self.n += 1;
        self.correct += y;
        self.conf_sum += conf;
        self.brier_sum += (conf - y as f64) * (conf - y as f64);
        if width_bins > 0 {
            if self.bins.len() < width_bins {
                self.bins.resize(width_bins, Bin::default());
            }
            let b = &mut self.bins[calibration_bin(conf, width_bins)];
            b.n += 1;
            b.correct += y;
            b.conf_sum += conf;
        }
        // Equal-mass bins (no equal-width ones) take their mean confidence from the buckets.
        self.ranks
            .add(bucket_of(conf), correct, (width_bins == 0).then_some(conf));
    }

    /// Counts in what the ranks hold back (see [`Ranks::settle`]).
    pub fn settle(&mut self) {
        self.ranks.settle();
    }

    pub fn merge(&mut self, o: &Calibration) {
        self.n += o.n;
        self.correct += o.correct;
        self.conf_sum += o.conf_sum;
        self.brier_sum += o.brier_sum;
        if self.bins.len() < o.bins.len() {
            self.bins.resize(o.bins.len(), Bin::default());
        }
        for (a, b) in self.bins.iter_mut().zip(&o.bins) {
            a.n += b.n;
            a.correct += b.correct;
            a.conf_sum += b.conf_sum;
        }
        self.ranks.merge(&o.ranks);
    }

    /// Non-empty reliability bins, in bin order.
    pub fn reliability(&self, spec: BinSpec) -> Vec<BinRow> {
        match spec.binning {
            Binning::EqualWidth => self.width_rows(spec.bins),
            Binning::EqualMass => self.mass_rows(spec.bins),
        }
    }

    fn width_rows(&self, bins: usize) -> Vec<BinRow> {
        let b = bins as f64;
        self.bins
            .iter()
            .enumerate()
            .filter(|(_, x)| x.n > 0)
            .map(|(i, x)| BinRow {
                bin: i,
                lower: i as f64 / b,
                upper: (i + 1) as f64 / b,
                count: x.n,
                mean_confidence: x.conf_sum / x.n as f64,
                accuracy: x.correct as f64 / x.n as f64,
            })
            .collect()
    }

    fn mass_rows(&self, bins: usize) -> Vec<BinRow> {
        let mut rows: Vec<BinRow> = Vec::new();
        let mut conf_sums: Vec<f64> = Vec::new();
        let mut correct: Vec<u64> = Vec::new();
        let mut below = 0u64;
        for (k, r) in self.ranks.iter() {
            let n = r.correct + r.wrong;
            let bin = ((bins as u64 * below) / self.n).min(bins as u64 - 1);
            below += n;
            let v = k as f64 / RANK_STEPS;
            match rows.last_mut() {
                Some(row) if row.bin == bin as usize => {
                    row.upper = v;
                    row.count += n;
                    *conf_sums.last_mut().unwrap() += r.conf_sum;
                    *correct.last_mut().unwrap() += r.correct;
                }
                _ => {
                    rows.push(BinRow {
                        bin: bin as usize,
                        lower: v,
                        upper: v,
                        count: n,
                        mean_confidence: 0.0,
                        accuracy: 0.0,
                    });
                    conf_sums.push(r.conf_sum);
                    correct.push(r.correct);
                }
            }
        }
        for ((row, s), c) in rows.iter_mut().zip(conf_sums).zip(correct) {
            row.mean_confidence = s / row.count as f64;
            row.accuracy = c as f64 / row.count as f64;
        }
        rows
    }

    /// (ece, mce) over the non-empty bins; `None` without labeled events.
    pub fn ece_mce(&self, spec: BinSpec) -> Option<(f64, f64)> {
        if self.n == 0 {
            return None;
        }
        let n = self.n as f64;
        let (mut ece, mut mce) = (0.0, 0.0f64);
        for r in self.reliability(spec) {
            let gap = (r.accuracy - r.mean_confidence).abs();
            ece += r.count as f64 / n * gap;
            mce = mce.max(gap);
        }
        Some((ece, mce))
    }

    /// Mean squared gap between confidence and outcome.
    pub fn brier(&self) -> Option<f64> {
        (self.n > 0).then(|| self.brier_sum / self.n as f64)
    }

    pub fn accuracy(&self) -> Option<f64> {
        (self.n > 0).then(|| self.correct as f64 / self.n as f64)
    }

    pub fn mean_confidence(&self) -> Option<f64> {
        (self.n > 0).then(|| self.conf_sum / self.n as f64)
    }

    /// AUROC of confidence as a predictor of correctness; `None` with only one class.
    pub fn auroc(&self) -> Option<f64> {
        let pos = self.correct as f64;
        let neg = (self.n - self.correct) as f64;
        if pos == 0.0 || neg == 0.0 {
            return None;
        }
        let mut neg_below = 0.0;
        let mut sum = 0.0;
        for (_, r) in self.ranks.iter() {
            sum += r.correct as f64 * (neg_below + 0.5 * r.wrong as f64);
            neg_below += r.wrong as f64;
        }
        Some(sum / (pos * neg))
    }

    pub fn size(&self) -> usize {
        self.bins.capacity() * size_of::<Bin>() + self.ranks.size()
    }
}

/// Which value of the calibration family a function returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CalibrationValue {
    Ece,
    Mce,
    Brier,
    Auroc,
    Reliability,
}

impl CalibrationValue {
    pub const ALL: [CalibrationValue; 5] = [
        Self::Ece,
        Self::Mce,
        Self::Brier,
        Self::Auroc,
        Self::Reliability,
    ];
}

/// `ece(confidence, correct)` and its siblings, with the configured bins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CalibrationFn {
    value: CalibrationValue,
    spec: BinSpec,
}

impl CalibrationFn {
    pub fn new(value: CalibrationValue, spec: BinSpec) -> Self {
        Self { value, spec }
    }

    /// Fields of one `reliability` element: the `calibration_bins` columns after the keys,
    /// without `revision`.
    fn bin_fields() -> Fields {
        let schema = inferwatch_schemas::tables::calibration_bins_schema();
        let keys = inferwatch_schemas::tables::metrics_key_fields().len();
        let fields = schema.fields();
        Fields::from(fields[keys..fields.len() - 1].to_vec())
    }

    fn reliability(&self, c: &Calibration) -> ScalarValue {
        let rows = c.reliability(self.spec);
        let col =
            |f: fn(&BinRow) -> f64| Arc::new(Float64Array::from_iter_values(rows.iter().map(f)));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.bin as i32),
            )),
            col(|r| r.lower),
            col(|r| r.upper),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.count as i64),
            )),
            col(|r| r.mean_confidence),
            col(|r| r.accuracy),
        ];
        let bins = StructArray::new(Self::bin_fields(), columns, None);
        let field = Arc::new(Field::new_list_field(bins.data_type().clone(), false));
        let offsets = OffsetBuffer::from_lengths([rows.len()]);
        ScalarValue::List(Arc::new(ListArray::new(
            field,
            offsets,
            Arc::new(bins),
            None,
        )))
    }
}

impl Function for CalibrationFn {
    type State = Calibration;

    fn name(&self) -> &'static str {
        match self.value {
            CalibrationValue::Ece => "ece",
            CalibrationValue::Mce => "mce",
            CalibrationValue::Brier => "brier",
            CalibrationValue::Auroc => "auroc",
            CalibrationValue::Reliability => "reliability",
        }
    }

    fn arg_types(&self) -> Vec<DataType> {
        vec![DataType::Float64, DataType::Boolean]
    }

    fn return_type(&self) -> DataType {
        match self.value {
            CalibrationValue::Reliability => DataType::List(Arc::new(Field::new_list_field(
                DataType::Struct(Self::bin_fields()),
                false,
            ))),
            _ => DataType::Float64,
        }
    }

    fn update<St: States<Calibration> + ?Sized>(
        &self,
        states: &mut St,
        args: &[ArrayRef],
        groups: &[usize],
        filter: Option<&BooleanArray>,
    ) -> DfResult<()> {
        let conf = float_arg(self.name(), args, 0)?;
        let correct = bool_arg(self.name(), args, 1)?;
        let width = self.spec.width_bins();
        for (row, &g) in groups.iter().enumerate() {
            if conf.is_valid(row) && correct.is_valid(row) && kept(filter, row) {
                states
                    .state(g)
                    .observe(conf.value(row), correct.values().value(row), width);
            }
        }
        Ok(())
    }

    fn merge(&self, into: &mut Calibration, from: &Calibration) {
        into.merge(from);
    }

    fn evaluate(&self, c: &Calibration) -> DfResult<ScalarValue> {
        let v = match self.value {
            CalibrationValue::Ece => c.ece_mce(self.spec).map(|v| v.0),
            CalibrationValue::Mce => c.ece_mce(self.spec).map(|v| v.1),
            CalibrationValue::Brier => c.brier(),
            CalibrationValue::Auroc => c.auroc(),
            CalibrationValue::Reliability => return Ok(self.reliability(c)),
        };
        Ok(ScalarValue::Float64(v))
    }

    fn size(&self, c: &Calibration) -> usize {
        c.size()
    }
}
