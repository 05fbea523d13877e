//! Drift of a window against a reference: PSI and KS of `confidence` and `quality_score`,
//! Jensen–Shannon distance of the `prediction` categories.
//!
//! Values in [0, 1] are counted in buckets of 1/[`DRIFT_STEPS`] (round to nearest), so state
//! per (pane, key) is at most 1,001 counts per column whatever the traffic, and a reference of
//! any length is one dense array per key. PSI and KS are exact functions of the bucketed
//! values; against the raw values KS is off by at most the largest share of either sample that
//! falls in one 0.001-wide bucket.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::error::{config_err, ProcessorError};

mod counts;
pub use counts::Counts;

/// Drift resolution: values are measured in steps of 1/1000.
pub const DRIFT_STEPS: usize = 1000;
/// PSI bins; edges are the reference's deciles.
pub const PSI_BINS: usize = 10;
/// Empty shares are floored at this before PSI's logarithm.
pub const PSI_FLOOR: f64 = 1e-4;
/// Distinct `prediction` values tracked per processor; the rest count as one "other" value.
pub const MAX_CATEGORIES: usize = 10_000;

/// Bucket of a value in [0, 1].
pub fn bucket(x: f64) -> u16 {
    crate::round::round_u64(x * DRIFT_STEPS as f64).min(DRIFT_STEPS as u64) as u16
}

/// What one (pane, key) contributes to drift.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DriftState {
    pub confidence: Counts,
    pub quality: Counts,
    /// Category id (see [`Categories`]) → count.
    pub prediction: Counts,
}

impl DriftState {
    /// Folds appended values: before reading the counts or keeping them long.
    pub fn fold(&mut self) {
        self.confidence.fold();
        self.quality.fold();
        self.prediction.fold();
        self.confidence.shrink_pending();
        self.quality.shrink_pending();
        self.prediction.shrink_pending();
    }

    /// Heap bytes.
    pub fn size(&self) -> usize {
        self.confidence.size() + self.quality.size() + self.prediction.size()
    }

    pub fn merge(&mut self, o: &DriftState) {
        self.confidence.merge(&o.confidence);
        self.quality.merge(&o.quality);
        self.prediction.merge(&o.prediction);
    }
}

/// `prediction` values interned to small ids, at most [`MAX_CATEGORIES`] of them.
#[derive(Debug, Clone, Default)]
pub struct Categories {
    index: crate::FastMap<String, u32>,
    names: Vec<String>,
}

impl Categories {
    /// Id of `name`; past the cap every new value shares the id [`MAX_CATEGORIES`].
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        if self.names.len() >= MAX_CATEGORIES {
            return MAX_CATEGORIES as u32;
        }
        let id = self.names.len() as u32;
        self.index.insert(name.to_owned(), id);
        self.names.push(name.to_owned());
        id
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn from_names(names: Vec<String>) -> Self {
        let mut c = Self::default();
        for n in names {
            c.intern(&n);
        }
        c
    }
}

/// A reference distribution kept as running sums, so adding or removing a pane costs its
/// own size.
#[derive(Debug, Clone)]
struct Dense {
    confidence: Vec<u64>,
    quality: Vec<u64>,
    prediction: BTreeMap<u32, u64>,
}

impl Default for Dense {
    fn default() -> Self {
        Self {
            confidence: vec![0; DRIFT_STEPS + 1],
            quality: vec![0; DRIFT_STEPS + 1],
            prediction: BTreeMap::new(),
        }
    }
}

impl Dense {
    fn apply(&mut self, s: &DriftState, add: bool) {
        let upd = |slot: &mut u64, n: u32| {
            if add {
                *slot += n as u64
            } else {
                *slot -= n as u64
            }
        };
        for (b, n) in s.confidence.iter() {
            upd(&mut self.confidence[b as usize], n);
        }
        for (b, n) in s.quality.iter() {
            upd(&mut self.quality[b as usize], n);
        }
        for (c, n) in s.prediction.iter() {
            let slot = self.prediction.entry(c).or_default();
            upd(slot, n);
            if *slot == 0 {
                self.prediction.remove(&c);
            }
        }
    }
}

/// Where the reference comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// The `n` window lengths right before the window: `[start − n·size, start)`.
    Trailing { span_ms: i64 },
    /// A fixed period `[from, to)`; windows starting before `to` get no drift values.
    Pinned { from: i64, to: i64 },
}

/// One key's reference: the panes it is built from and their running sums.
#[derive(Debug, Default)]
pub struct Baseline {
    panes: VecDeque<(i64, DriftState)>,
    sums: Dense,
}

impl Baseline {
    /// Takes a closed pane into the reference (panes arrive in time order).
    pub fn retire(&mut self, reference: Reference, pane: i64, slide: i64, mut state: DriftState) {
        state.fold();
        match reference {
            Reference::Trailing { span_ms } => {
                // The next window to read this baseline starts at pane + slide or later.
                self.evict_before(pane + slide - span_ms);
                self.sums.apply(&state, true);
                self.panes.push_back((pane, state));
            }
            Reference::Pinned { from, to } => {
                if (from..to).contains(&pane) {
                    self.sums.apply(&state, true);
                    self.panes.push_back((pane, state));
                }
            }
        }
    }

    fn evict_before(&mut self, t: i64) {
        while self.panes.front().is_some_and(|(p, _)| *p < t) {
            let (_, s) = self.panes.pop_front().expect("front exists");
            self.sums.apply(&s, false);
        }
    }

    /// Drift of `current` (the window starting at `start`) against this reference; `None`
    /// values where either side has fewer than `min_samples` values.
    pub fn evaluate(
        &mut self,
        reference: Reference,
        start: i64,
        current: Option<&DriftState>,
        min_samples: u64,
        categories: &Categories,
    ) -> DriftValues {
        let ready = match reference {
            Reference::Trailing { span_ms } => {
                self.evict_before(start - span_ms);
                true
            }
            Reference::Pinned { to, .. } => start >= to,
        };
        let (Some(cur), true) = (current, ready) else {
            return DriftValues::default();
        };
        let mut cur = cur.clone();
        cur.fold();
        let cur = &cur;
        let enough = |r: u64, c: u64| r >= min_samples.max(1) && c >= min_samples.max(1);
        let continuous = |r: &[u64], c: &Counts| {
            let (rt, ct) = (r.iter().sum::<u64>(), c.total());
            if enough(rt, ct) {
                (Some(psi(r, rt, c, ct)), Some(ks(r, rt, c, ct)))
            } else {
                (None, None)
            }
        };
        let (psi_confidence, ks_confidence) = continuous(&self.sums.confidence, &cur.confidence);
        let (psi_quality, ks_quality) = continuous(&self.sums.quality, &cur.quality);
        let rt: u64 = self.sums.prediction.values().sum();
        let ct = cur.prediction.total();
        let js_prediction =
            enough(rt, ct).then(|| js(&self.sums.prediction, rt, &cur.prediction, ct, categories));
        DriftValues {
            psi_confidence,
            ks_confidence,
            psi_quality,
            ks_quality,
            js_prediction,
        }
    }

    /// The panes held, for checkpoints.
    pub fn panes(&self) -> impl Iterator<Item = &(i64, DriftState)> {
        self.panes.iter()
    }

    /// Rebuilds a baseline from checkpointed panes.
    pub fn from_panes(panes: Vec<(i64, DriftState)>) -> Self {
        let mut b = Baseline::default();
        for (p, s) in panes {
            b.sums.apply(&s, true);
            b.panes.push_back((p, s));
        }
        b
    }
}

/// The drift columns of one `metrics` row.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DriftValues {
    pub psi_confidence: Option<f64>,
    pub ks_confidence: Option<f64>,
    pub psi_quality: Option<f64>,
    pub ks_quality: Option<f64>,
    pub js_prediction: Option<f64>,
}

/// Population stability index with [`PSI_BINS`] bins whose edges are the reference's
/// deciles: edge j (1..=9) is the smallest value v with `count(ref ≤ v) ≥ j·n/10`; a value x
/// falls in bin `#{j : edge_j < x}`. PSI = Σ (q − p)·ln(q / p) over the bins, with p the
/// reference's and q the window's share, each floored at [`PSI_FLOOR`].
pub(crate) fn psi(reference: &[u64], rt: u64, current: &Counts, ct: u64) -> f64 {
    let mut edges = [0u32; PSI_BINS - 1];
    let (mut cum, mut j) = (0u64, 1usize);
    for (b, &n) in reference.iter().enumerate() {
        cum += n;
        while j < PSI_BINS && cum * PSI_BINS as u64 >= j as u64 * rt {
            edges[j - 1] = b as u32;
            j += 1;
        }
    }
    let bin = |x: u32| edges.iter().filter(|&&e| e < x).count();
    let mut p = [0u64; PSI_BINS];
    for (b, &n) in reference.iter().enumerate() {
        p[bin(b as u32)] += n;
    }
    let mut q = [0u64; PSI_BINS];
    for (b, n) in current.iter() {
        q[bin(b)] += n as u64;
    }
    p.iter()
        .zip(&q)
        .map(|(&p, &q)| {
            let p = (p as f64 / rt as f64).max(PSI_FLOOR);
            let q = (q as f64 / ct as f64).max(PSI_FLOOR);
            (q - p) * (q / p).ln()
        })
        .sum()
}

/// Two-sample Kolmogorov–Smirnov statistic: the largest gap between the empirical CDFs.
pub(crate) fn ks(reference: &[u64], rt: u64, current: &Counts, ct: u64) -> f64 {
    let mut cur = current.iter().peekable();
    let (mut cr, mut cc) = (0u64, 0u64);
    let mut d = 0.0f64;
    for (b, &n) in reference.iter().enumerate() {
        cr += n;
        while let Some(&(cb, cn)) = cur.peek() {
            if cb as usize > b {
                break;
            }
            cc += cn as u64;
            cur.next();
        }
        d = d.max((cr as f64 / rt as f64 - cc as f64 / ct as f64).abs());
    }
    d
}

/// Jensen–Shannon distance, base 2: √(½·KL(p‖m) + ½·KL(q‖m)) with m = (p + q)/2; 0 for equal
/// distributions, 1 for disjoint ones. Summed in category-name order, so the result does not
/// depend on the order in which a processor first saw the categories.
pub(crate) fn js(
    reference: &BTreeMap<u32, u64>,
    rt: u64,
    current: &Counts,
    ct: u64,
    categories: &Categories,
) -> f64 {
    let mut cur: BTreeMap<u32, u64> = BTreeMap::new();
    for (c, n) in current.iter() {
        cur.insert(c, n as u64);
    }
    let mut keys: Vec<u32> = reference.keys().chain(cur.keys()).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    let names = categories.names();
    keys.sort_by(|a, b| names.get(*a as usize).cmp(&names.get(*b as usize)));
    let mut div = 0.0;
    for k in keys {
        let p = reference.get(&k).map_or(0.0, |&n| n as f64 / rt as f64);
        let q = cur.get(&k).map_or(0.0, |&n| n as f64 / ct as f64);
        let m = (p + q) / 2.0;
        if p > 0.0 {
            div += p * (p / m).ln();
        }
        if q > 0.0 {
            div += q * (q / m).ln();
        }
    }
    (div / 2.0 / std::f64::consts::LN_2).max(0.0).sqrt()
}

/// `[drift]`: the reference that `psi_*`, `ks_*` and `js_prediction` compare a window with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftConfig {
    /// Trailing reference: the events of the `baseline_windows` window lengths right before
    /// the window (for tumbling windows, the previous `baseline_windows` windows).
    pub baseline_windows: u32,
    /// Pinned reference instead: events in [`baseline_from`, `baseline_to`) (RFC 3339). Both
    /// or neither. Windows that start before `baseline_to` get no drift values.
    pub baseline_from: Option<String>,
    pub baseline_to: Option<String>,
    /// A drift value is null when the window or the reference has fewer values than this.
    pub min_samples: u64,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            baseline_windows: 60,
            baseline_from: None,
            baseline_to: None,
            min_samples: 100,
        }
    }
}

impl DriftConfig {
    /// The pinned baseline period in epoch milliseconds, if one is set.
    pub fn pinned(&self) -> Result<Option<(i64, i64)>, ProcessorError> {
        let parse = |key: &str, v: &str| {
            inferwatch_schemas::time::parse_rfc3339(v).ok_or_else(|| {
                config_err!(
                    "drift.{key} = {v:?} is not an RFC 3339 time like \"2026-01-01T00:00:00Z\""
                )
            })
        };
        match (&self.baseline_from, &self.baseline_to) {
            (None, None) => Ok(None),
            (Some(f), Some(t)) => {
                let (f, t) = (parse("baseline_from", f)?, parse("baseline_to", t)?);
                if f >= t {
                    return Err(config_err!("drift.baseline_from must be before drift.baseline_to"));
                }
                Ok(Some((f, t)))
            }
            _ => Err(config_err!(
                "set both drift.baseline_from and drift.baseline_to for a pinned baseline, or neither for a trailing one"
            )),
        }
    }

    pub fn validate(&self) -> Result<(), ProcessorError> {
        if self.baseline_windows == 0 {
            return Err(config_err!("drift.baseline_windows must be at least 1"));
        }
        self.pinned().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cats() -> Categories {
        Categories::from_names(vec!["a".into(), "b".into(), "c".into(), "d".into()])
    }

    fn state(conf: &[f64], preds: &[u32]) -> DriftState {
        let mut s = DriftState::default();
        for &c in conf {
            s.confidence.add(bucket(c) as u32);
        }
        for &p in preds {
            s.prediction.add(p);
        }
        s
    }

    #[test]
    fn identical_distributions_do_not_drift_and_disjoint_ones_do() {
        let xs: Vec<f64> = (0..500).map(|i| i as f64 / 1000.0).collect();
        let mut b = Baseline::default();
        let r = Reference::Trailing { span_ms: 100 };
        b.retire(r, 0, 10, state(&xs, &[1, 2]));
        let same = b.evaluate(r, 10, Some(&state(&xs, &[1, 2])), 1, &cats());
        assert_eq!(same.psi_confidence, Some(0.0));
        assert_eq!(same.ks_confidence, Some(0.0));
        assert_eq!(same.js_prediction, Some(0.0));
        let ys: Vec<f64> = xs.iter().map(|x| x + 0.5).collect();
        let apart = b.evaluate(r, 10, Some(&state(&ys, &[3])), 1, &cats());
        assert_eq!(apart.ks_confidence, Some(1.0));
        assert!((apart.js_prediction.unwrap() - 1.0).abs() < 1e-12);
        assert!(apart.psi_confidence.unwrap() > 1.0);
        // Too few values on either side: null, not 0.
        assert_eq!(
            b.evaluate(r, 10, Some(&state(&xs, &[])), 501, &cats())
                .psi_confidence,
            None
        );
        assert_eq!(
            b.evaluate(r, 10, Some(&state(&xs, &[1])), 1, &cats())
                .psi_quality,
            None
        );
    }

    #[test]
    fn trailing_references_forget_old_panes_and_pinned_ones_wait_for_their_end() {
        let r = Reference::Trailing { span_ms: 20 };
        let mut b = Baseline::default();
        b.retire(r, 0, 10, state(&[0.1; 50], &[]));
        b.retire(r, 10, 10, state(&[0.9; 50], &[]));
        b.retire(r, 20, 10, state(&[0.9; 50], &[]));
        // Window 30 reads panes 10 and 20 only.
        let v = b.evaluate(r, 30, Some(&state(&[0.9; 50], &[])), 10, &cats());
        assert_eq!(v.ks_confidence, Some(0.0));
        let p = Reference::Pinned { from: 0, to: 20 };
        let mut b = Baseline::default();
        b.retire(p, 0, 10, state(&[0.1; 50], &[]));
        b.retire(p, 10, 10, state(&[0.1; 50], &[]));
        b.retire(p, 20, 10, state(&[0.9; 50], &[]));
        assert_eq!(
            b.evaluate(p, 10, Some(&state(&[0.1; 50], &[])), 10, &cats()),
            DriftValues::default()
        );
        assert_eq!(
            b.evaluate(p, 30, Some(&state(&[0.9; 50], &[])), 10, &cats())
                .ks_confidence,
            Some(1.0)
        );
    }
}
