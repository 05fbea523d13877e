//! An HDR histogram with three significant digits that only keeps the counters it uses.
//!
//! A full HDR histogram holds a counter for every value step from 0 to the largest value
//! seen: about 60 KB for latencies up to a few seconds in µs, the same again for costs in
//! nano-dollars, per open (window × key). Most keys see a few hundred distinct steps, so the
//! counters are kept sparse (sorted (index, count) pairs) until that list grows past
//! [`SPARSE_MAX`], then in blocks of 256 counters allocated as values land in them (16-bit
//! counters, 512 bytes, until one passes 65,535). Both give exactly
//! the quantiles the `hdrhistogram` crate gives for the same values (the test checks).
//!
//! While sparse, recorded values wait unsorted in a short list and are counted in by one sort
//! and one merge (see [`Hdr::settle`]): a binary search and an insert for each value cost
//! about three times as much, most of it moving the pairs after the insert.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Sub-buckets per bucket half: 2^10 ≥ 2 × 10^3 / 2, three significant digits.
const HALF_MAGNITUDE: u32 = 10;
const HALF: u32 = 1 << HALF_MAGNITUDE;
/// Values below this (2^11) have unit resolution (bucket 0).
const MASK: u64 = (2 * HALF as u64) - 1;
/// 64 − log2(sub-bucket count).
const LEADING_ZERO_BASE: u32 = 64 - (HALF_MAGNITUDE + 1);
/// Larger values are recorded as this (beyond 2^62 the steps no longer fit HDR's range).
const LARGEST: u64 = 1 << 62;
/// A sparse list longer than this (4 KB) becomes blocks.
const SPARSE_MAX: usize = 512;
/// Fewest values that wait before a merge; more wait as the pairs grow (half as many as
/// there are pairs), so that a merge's pass over the pairs is shared by enough values.
const PENDING_MIN: usize = 32;
const BLOCK_MAGNITUDE: u32 = 8;
const BLOCK: usize = 1 << BLOCK_MAGNITUDE;

/// The counter index of `v`, as `hdrhistogram` computes it.
#[inline]
fn index_of(v: u64) -> u32 {
    let bucket = LEADING_ZERO_BASE - (v | MASK).leading_zeros();
    let sub = (v >> bucket) as u32;
    ((bucket + 1) << HALF_MAGNITUDE) + sub - HALF
}

/// The lowest value counted at `index`, and the width of its step.
fn step_of(index: u32) -> (u64, u64) {
    let bucket = (index >> HALF_MAGNITUDE) as i64 - 1;
    let mut sub = (index & (HALF - 1)) + HALF;
    let bucket = if bucket < 0 {
        sub -= HALF;
        0
    } else {
        bucket as u32
    };
    (u64::from(sub) << bucket, 1 << bucket)
}

/// The highest value counted at `index`: what a quantile reports.
fn highest_at(index: u32) -> u64 {
    let (low, width) = step_of(index);
    low + (width - 1)
}

#[derive(Debug, Clone, Default)]
enum Counts {
    #[default]
    Empty,
    /// Sorted by index.
    Sparse(Vec<(u32, u32)>),
    /// Block `i` counts indices `i × BLOCK ..`.
    Blocks(Vec<Option<Block>>),
}

/// [`BLOCK`] counters: 16-bit until one passes 65,535 (most blocks never do), then 32-bit.
#[derive(Debug, Clone)]
enum Block {
    Narrow(Box<[u16; BLOCK]>),
    Wide(Box<[u32; BLOCK]>),
}

impl Block {
    fn add(&mut self, j: usize, n: u32) {
        if let Block::Narrow(c) = self {
            let sum = u32::from(c[j]).saturating_add(n);
            if let Ok(narrow) = u16::try_from(sum) {
                c[j] = narrow;
                return;
            }
            let mut wide = Box::new([0u32; BLOCK]);
            for (w, &n) in wide.iter_mut().zip(c.iter()) {
                *w = u32::from(n);
            }
            *self = Block::Wide(wide);
        }
        if let Block::Wide(c) = self {
            c[j] = c[j].saturating_add(n);
        }
    }

    fn count(&self, j: usize) -> u32 {
        match self {
            Block::Narrow(c) => u32::from(c[j]),
            Block::Wide(c) => c[j],
        }
    }

    fn counts(&self) -> impl Iterator<Item = u32> + '_ {
        (0..BLOCK).map(|j| self.count(j))
    }

    fn bytes(&self) -> usize {
        match self {
            Block::Narrow(_) => size_of::<[u16; BLOCK]>(),
            Block::Wide(_) => size_of::<[u32; BLOCK]>(),
        }
    }
}

/// An HDR histogram of non-negative integers (three significant digits), empty until the
/// first value.
#[derive(Debug, Clone, Default)]
pub struct Hdr {
    /// Every value recorded, `pending` ones included.
    total: u64,
    counts: Counts,
    /// Indices of values recorded while `counts` is not in blocks and not yet counted in
    /// it, unsorted; readers see them through [`Hdr::settled`].
    pending: Vec<u32>,
}

impl Hdr {
    #[inline]
    pub fn record(&mut self, v: u64) {
        let index = index_of(v.min(LARGEST));
        self.total += 1;
        if let Counts::Blocks(blocks) = &mut self.counts {
            add_to_block(blocks, index, 1);
            return;
        }
        self.pending.push(index);
        let sparse = match &self.counts {
            Counts::Sparse(pairs) => pairs.len(),
            _ => 0,
        };
        if self.pending.len() >= PENDING_MIN.max(sparse / 2) {
            self.settle();
        }
    }

    /// Counts the pending values in: one sort, one merge into the sparse pairs, which
    /// become blocks once past [`SPARSE_MAX`].
    pub fn settle(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.pending.sort_unstable();
        let merged = match &mut self.counts {
            Counts::Empty => merge_indices(&[], &self.pending),
            Counts::Sparse(pairs) => merge_indices(pairs, &self.pending),
            Counts::Blocks(blocks) => {
                self.pending
                    .iter()
                    .for_each(|&i| add_to_block(blocks, i, 1));
                self.pending = Vec::new();
                return;
            }
        };
        self.pending.clear();
        self.counts = if merged.len() > SPARSE_MAX {
            // Blocks count values as they come: the list is not needed again.
            self.pending = Vec::new();
            Counts::Blocks(to_blocks(&merged))
        } else {
            Counts::Sparse(merged)
        };
    }

    /// This histogram with every pending value counted in: itself when none is.
    fn settled(&self) -> Cow<'_, Hdr> {
        if self.pending.is_empty() {
            Cow::Borrowed(self)
        } else {
            let mut h = self.clone();
            h.settle();
            Cow::Owned(h)
        }
    }

    fn add(&mut self, index: u32, n: u32) {
        self.total += u64::from(n);
        match &mut self.counts {
            Counts::Blocks(blocks) => add_to_block(blocks, index, n),
            Counts::Sparse(pairs) => match pairs.binary_search_by_key(&index, |p| p.0) {
                Ok(i) => pairs[i].1 = pairs[i].1.saturating_add(n),
                Err(i) => {
                    pairs.insert(i, (index, n));
                    if pairs.len() > SPARSE_MAX {
                        self.counts = Counts::Blocks(to_blocks(pairs));
                    }
                }
            },
            Counts::Empty => self.counts = Counts::Sparse(vec![(index, n)]),
        }
    }

    pub fn merge(&mut self, from: &Hdr) {
        self.settle();
        let from = from.settled();
        match (&mut self.counts, &from.counts) {
            (_, Counts::Empty) => {}
            (Counts::Empty, _) => *self = from.into_owned(),
            (Counts::Sparse(a), Counts::Sparse(b)) if a.len() + b.len() <= SPARSE_MAX => {
                *a = merge_sorted(a, b);
                self.total += from.total;
            }
            _ => from.for_each(|index, n| self.add(index, n)),
        }
    }

    /// Every (index, count) with a count, by index; pending values not included.
    fn for_each(&self, mut f: impl FnMut(u32, u32)) {
        match &self.counts {
            Counts::Empty => {}
            Counts::Sparse(pairs) => pairs.iter().for_each(|&(i, n)| f(i, n)),
            Counts::Blocks(blocks) => {
                for (b, block) in blocks.iter().enumerate() {
                    let Some(block) = block else { continue };
                    let base = (b << BLOCK_MAGNITUDE) as u32;
                    for (j, n) in block.counts().enumerate() {
                        if n > 0 {
                            f(base + j as u32, n);
                        }
                    }
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The `q` quantile divided by `unit`; `None` when empty. As HDR answers it: the highest
    /// value of the step where the count reaches ⌈q × total⌉ (at least 1), the lowest for
    /// `q = 0`.
    pub fn quantile(&self, q: f64, unit: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let settled = self.settled();
        let q = q.min(1.0);
        let target = ((q * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        let mut found = None;
        match &settled.counts {
            Counts::Empty => {}
            Counts::Sparse(pairs) => {
                found = pairs.iter().find_map(|&(i, n)| {
                    seen += u64::from(n);
                    (seen >= target).then_some(i)
                })
            }
            Counts::Blocks(blocks) => {
                for (b, block) in blocks.iter().enumerate() {
                    let Some(block) = block else { continue };
                    let sum: u64 = block.counts().map(u64::from).sum();
                    if seen + sum < target {
                        seen += sum;
                        continue;
                    }
                    found = block
                        .counts()
                        .position(|n| {
                            seen += u64::from(n);
                            seen >= target
                        })
                        .map(|j| ((b << BLOCK_MAGNITUDE) + j) as u32);
                    break;
                }
            }
        }
        let index = found?;
        let value = if q == 0.0 {
            step_of(index).0
        } else {
            highest_at(index)
        };
        Some(value as f64 / unit)
    }

    /// Bytes held.
    pub fn size(&self) -> usize {
        size_of::<Self>()
            + self.pending.capacity() * size_of::<u32>()
            + match &self.counts {
                Counts::Empty => 0,
                Counts::Sparse(pairs) => pairs.capacity() * size_of::<(u32, u32)>(),
                Counts::Blocks(blocks) => {
                    blocks.capacity() * size_of::<Option<Block>>()
                        + blocks.iter().flatten().map(Block::bytes).sum::<usize>()
                }
            }
    }
}

fn add_to_block(blocks: &mut Vec<Option<Block>>, index: u32, n: u32) {
    let b = (index >> BLOCK_MAGNITUDE) as usize;
    if b >= blocks.len() {
        blocks.resize_with(b + 1, || None);
    }
    let block = blocks[b].get_or_insert_with(|| Block::Narrow(Box::new([0; BLOCK])));
    block.add(index as usize & (BLOCK - 1), n);
}

fn to_blocks(pairs: &[(u32, u32)]) -> Vec<Option<Block>> {
    let mut blocks = Vec::new();
    for &(i, n) in pairs {
        add_to_block(&mut blocks, i, n);
    }
    blocks
}

/// `pairs` with the sorted `indices` counted in.
fn merge_indices(pairs: &[(u32, u32)], indices: &[u32]) -> Vec<(u32, u32)> {
    let mut out = Vec::with_capacity(pairs.len() + indices.len());
    let (mut i, mut j) = (0, 0);
    while let Some(&x) = indices.get(j) {
        let run = indices[j..].iter().take_while(|&&y| y == x).count();
        j += run;
        while let Some(&p) = pairs.get(i).filter(|p| p.0 < x) {
            out.push(p);
            i += 1;
        }
        let n = run as u32;
        match pairs.get(i) {
            Some(&(k, m)) if k == x => {
                out.push((x, m.saturating_add(n)));
                i += 1;
            }
            _ => out.push((x, n)),
        }
    }
    out.extend_from_slice(&pairs[i..]);
    out
}

fn merge_sorted(a: &[(u32, u32)], b: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push((a[i].0, a[i].1.saturating_add(b[j].1)));
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// The (highest value of the step, count) pairs recorded, `None` when nothing was: the form
/// checkpoints have always had. Recording a step's highest value lands in the same step.
impl Serialize for Hdr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let h = self.settled();
        let pairs = (!matches!(h.counts, Counts::Empty)).then(|| {
            let mut pairs: Vec<(u64, u32)> = Vec::new();
            h.for_each(|i, n| pairs.push((highest_at(i), n)));
            pairs
        });
        pairs.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Hdr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs = Option::<Vec<(u64, u32)>>::deserialize(d)?;
        let mut h = Hdr::default();
        for (v, n) in pairs.into_iter().flatten().filter(|p| p.1 > 0) {
            h.add(index_of(v.min(LARGEST)), n);
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::Histogram;

    /// A deterministic spread of values: log-normal-ish over many decades, with repeats.
    fn values(seed: u64, n: usize, scale: f64) -> Vec<u64> {
        super::super::uniforms(seed, n)
            .map(|(u, _)| (scale * (8.0 * u).exp2()) as u64)
            .collect()
    }

    const QS: [f64; 9] = [0.0, 0.001, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0];

    fn assert_same(ours: &Hdr, theirs: &Histogram<u32>, what: &str) {
        assert_eq!(ours.total, theirs.len(), "{what}: total");
        for q in QS {
            let want = theirs.value_at_quantile(q) as f64;
            assert_eq!(ours.quantile(q, 1.0), Some(want), "{what}: q {q}");
        }
    }

    #[test]
    fn quantiles_equal_the_hdrhistogram_crate_sparse_and_in_blocks_recorded_and_merged() {
        for (seed, n, scale) in [(1, 1, 3.0), (2, 50, 0.3), (3, 400, 900.0), (4, 20_000, 5e4)] {
            for (k, &extra) in [0u64, 1 << 40, LARGEST - 1].iter().enumerate() {
                let mut vs = values(seed, n, scale);
                vs.push(extra);
                let mut ours = Hdr::default();
                let mut theirs = Histogram::<u32>::new(3).unwrap();
                for &v in &vs {
                    ours.record(v);
                    theirs.record(v).unwrap();
                }
                let what = format!("seed {seed}, {n} values, extra {k}");
                assert_same(&ours, &theirs, &what);
                // Merging halves, both ways round, gives the same.
                let (a, b) = vs.split_at(vs.len() / 3);
                let (mut x, mut y) = (Hdr::default(), Hdr::default());
                a.iter().for_each(|&v| x.record(v));
                b.iter().for_each(|&v| y.record(v));
                let mut xy = x.clone();
                xy.merge(&y);
                y.merge(&x);
                assert_same(&xy, &theirs, &format!("{what}, merged"));
                assert_same(&y, &theirs, &format!("{what}, merged the other way"));
                // A checkpoint round trip keeps every answer.
                let back: Hdr =
                    serde_json::from_str(&serde_json::to_string(&ours).unwrap()).unwrap();
                assert_same(&back, &theirs, &format!("{what}, restored"));
            }
        }
    }

    #[test]
    fn values_held_back_give_the_same_answers_before_and_after_they_are_counted_in() {
        let (mut ours, mut theirs) = (Hdr::default(), Histogram::<u32>::new(3).unwrap());
        let mut waiting = 0;
        for (i, &v) in values(6, 3_000, 40.0).iter().enumerate() {
            ours.record(v);
            theirs.record(v).unwrap();
            if i % 31 != 0 {
                continue;
            }
            let what = format!("after {} values", i + 1);
            waiting += usize::from(!ours.pending.is_empty());
            assert_same(&ours, &theirs, &what);
            let mut settled = ours.clone();
            settled.settle();
            assert!(settled.pending.is_empty(), "{what}: settled");
            assert_same(&settled, &theirs, &format!("{what}, settled"));
            let json = |h: &Hdr| serde_json::to_string(h).unwrap();
            assert_eq!(json(&settled), json(&ours), "{what}: checkpoint");
            // Merging into a histogram with values waiting counts both.
            let mut twice = ours.clone();
            twice.merge(&ours);
            assert_eq!(twice.total, 2 * ours.total, "{what}: merged");
            assert_eq!(
                twice.quantile(0.5, 1.0),
                ours.quantile(0.5, 1.0),
                "{what}: merged"
            );
        }
        assert!(waiting > 10, "values were waiting at {waiting} checks");
        assert!(matches!(ours.counts, Counts::Blocks(_)));
        assert_eq!(ours.pending.capacity(), 0, "blocks keep no list");
    }

    #[test]
    fn a_counter_past_65535_widens_its_block_and_every_answer_stays_exact() {
        let mut vs = values(5, 5_000, 50.0);
        vs.extend(std::iter::repeat_n(777, 70_000));
        let (mut ours, mut theirs) = (Hdr::default(), Histogram::<u32>::new(3).unwrap());
        for &v in &vs {
            ours.record(v);
            theirs.record(v).unwrap();
        }
        let Counts::Blocks(blocks) = &ours.counts else {
            panic!("5,000 spread values are kept in blocks");
        };
        let wide = blocks
            .iter()
            .flatten()
            .filter(|b| matches!(b, Block::Wide(_)));
        assert_eq!(wide.count(), 1, "only the busy step's block widens");
        assert_same(&ours, &theirs, "one busy step");
        let mut twice = ours.clone();
        twice.merge(&ours);
        theirs.add(theirs.clone()).unwrap();
        assert_same(&twice, &theirs, "merged with itself");
        let back: Hdr = serde_json::from_str(&serde_json::to_string(&twice).unwrap()).unwrap();
        assert_same(&back, &theirs, "restored");
    }

    #[test]
    fn an_empty_histogram_answers_nothing_and_costs_nothing_but_itself() {
        let h = Hdr::default();
        assert!(h.is_empty());
        assert_eq!(h.quantile(0.5, 1.0), None);
        assert_eq!(h.size(), size_of::<Hdr>());
        assert_eq!(serde_json::to_string(&h).unwrap(), "null");
        let mut few = Hdr::default();
        (0..100u64).for_each(|v| few.record(v * 1000));
        assert!(few.size() < 2_000, "100 values take {} bytes", few.size());
    }
}
