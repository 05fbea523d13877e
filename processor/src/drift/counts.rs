//! Sparse counts of small values (drift buckets, category ids), sorted by value.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};

/// Sparse counts, sorted by bucket (or category id). New values are appended unsorted and
/// folded in in batches: a sorted insert per event would shift the vector every time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    sorted: Vec<(u32, u32)>,
    pending: Vec<u32>,
}

/// Values appended before they are folded into the sorted counts.
const PENDING: usize = 512;

/// Values below this are folded by counting them in a dense array, not by sorting: every
/// value drift counts is (1,001 buckets, at most 10,001 category ids). Sorting 512 values
/// costs ~50 instructions each; counting them and then reading the array back in order,
/// eight slots at a time, costs a few per value and per slot.
const DENSE_SPAN: usize = 1 << 14;

thread_local! {
    /// The dense array of [`Counts::fold`], all zeros between folds (64 KiB at most).
    static SCRATCH: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

impl Counts {
    pub fn add(&mut self, k: u32) {
        self.pending.push(k);
        if self.pending.len() >= PENDING {
            self.fold();
        }
    }

    /// Folds the appended values into the sorted counts.
    pub fn fold(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let top = self.pending.iter().copied().max().unwrap_or(0);
        let top = top.max(self.sorted.last().map_or(0, |e| e.0));
        if (top as usize) < DENSE_SPAN {
            SCRATCH.with_borrow_mut(|scratch| self.fold_dense(scratch, top as usize + 1));
        } else {
            self.fold_sorting();
        }
    }

    /// Counts the sorted entries and the pending values into `scratch` (zeros, grown to
    /// `span`), then reads them back in order, leaving zeros behind.
    fn fold_dense(&mut self, scratch: &mut Vec<u32>, span: usize) {
        if scratch.len() < span {
            scratch.resize(span, 0);
        }
        let slots = &mut scratch[..span];
        for &(k, n) in &self.sorted {
            slots[k as usize] = n;
        }
        for &k in &self.pending {
            slots[k as usize] += 1;
        }
        self.pending.clear();
        self.sorted.clear();
        let (blocks, rest) = slots.as_chunks_mut::<8>();
        for (b, block) in blocks.iter_mut().enumerate() {
            if block.iter().fold(0, |a, &n| a | n) != 0 {
                take_counts(&mut self.sorted, b * 8, block);
            }
        }
        take_counts(&mut self.sorted, blocks.len() * 8, rest);
        // Pushing grew it by doubling, up to twice what it holds: cut to its length
        // (shrinking gives the end back in place). The sorting fold's merge allocates at
        // most the pending values more than it keeps.
        self.sorted.shrink_to_fit();
    }

    /// The general fold, for values too large for the dense array.
    fn fold_sorting(&mut self) {
        let mut p = std::mem::take(&mut self.pending);
        p.sort_unstable();
        let mut run: Vec<(u32, u32)> = Vec::new();
        for k in p.drain(..) {
            match run.last_mut() {
                Some(last) if last.0 == k => last.1 += 1,
                _ => run.push((k, 1)),
            }
        }
        self.pending = p; // keeps its capacity
        self.merge_sorted(&run);
    }

    fn merge_sorted(&mut self, o: &[(u32, u32)]) {
        if o.is_empty() {
            return;
        }
        if self.sorted.is_empty() {
            self.sorted.extend_from_slice(o);
            return;
        }
        let mut out = Vec::with_capacity(self.sorted.len() + o.len());
        let (mut a, mut b) = (self.sorted.iter().peekable(), o.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.0 == y.0 => {
                    out.push((x.0, x.1 + y.1));
                    a.next();
                    b.next();
                }
                (Some(x), Some(y)) if x.0 < y.0 => out.push(*a.next().unwrap()),
                (Some(_), Some(_)) | (None, Some(_)) => out.push(*b.next().unwrap()),
                (Some(_), None) => out.push(*a.next().unwrap()),
                (None, None) => break,
            }
        }
        self.sorted = out;
    }

    pub fn merge(&mut self, o: &Counts) {
        self.merge_sorted(&o.sorted);
        for &k in &o.pending {
            self.add(k);
        }
    }

    /// Counts already sorted by value, each value once.
    pub fn from_sorted(sorted: Vec<(u32, u32)>) -> Self {
        debug_assert!(sorted.windows(2).all(|w| w[0].0 < w[1].0));
        Self {
            sorted,
            pending: Vec::new(),
        }
    }

    /// Heap bytes.
    pub fn size(&self) -> usize {
        self.sorted.capacity() * 8 + self.pending.capacity() * 4
    }

    pub fn total(&self) -> u64 {
        self.sorted.iter().map(|e| e.1 as u64).sum::<u64>() + self.pending.len() as u64
    }

    /// (value, count) in value order; [`Counts::fold`] first.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        debug_assert!(self.pending.is_empty(), "fold before reading counts");
        self.sorted.iter().copied()
    }

    /// Gives back memory the pending values no longer need.
    pub(super) fn shrink_pending(&mut self) {
        self.pending.shrink_to_fit();
    }
}

/// The non-zero slots of `slots` (value `first` on) onto `out`, each slot zeroed.
fn take_counts(out: &mut Vec<(u32, u32)>, first: usize, slots: &mut [u32]) {
    for (i, n) in slots.iter_mut().enumerate() {
        if *n != 0 {
            out.push(((first + i) as u32, std::mem::take(n)));
        }
    }
}

// Checkpoints hold the folded form.
impl Serialize for Counts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.pending.is_empty() {
            self.sorted.serialize(s)
        } else {
            let mut c = self.clone();
            c.fold();
            c.sorted.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Counts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Counts {
            sorted: Vec::deserialize(d)?,
            pending: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn counts_merge_in_order() {
        let mut a = Counts::default();
        for k in [5, 1, 5, 9] {
            a.add(k);
        }
        let mut b = Counts::default();
        for k in [0, 5, 10] {
            b.add(k);
        }
        a.merge(&b);
        a.fold();
        assert_eq!(a.sorted, vec![(0, 1), (1, 1), (5, 3), (9, 1), (10, 1)]);
        assert_eq!(a.total(), 7);
    }

    /// Both folds against a map, over value ranges on either side of the dense span, with
    /// merges of other counts between; the scratch must be all zeros after each fold.
    #[test]
    fn folds_count_like_a_map() {
        let mut rng = crate::test_rng(0x5eed_c0de);
        for (case, range) in [8u64, 1_001, 10_001, DENSE_SPAN as u64, 1 << 20]
            .into_iter()
            .enumerate()
        {
            let (mut counts, mut model) = (Counts::default(), BTreeMap::<u32, u32>::new());
            for i in 0..5_000 {
                let k = rng(range) as u32;
                counts.add(k);
                *model.entry(k).or_default() += 1;
                if i % 1_700 == case {
                    let mut other = Counts::default();
                    for _ in 0..rng(700) {
                        let k = rng(range) as u32;
                        other.add(k);
                        *model.entry(k).or_default() += 1;
                    }
                    if rng(2) == 0 {
                        other.fold();
                    }
                    counts.merge(&other);
                }
            }
            counts.fold();
            let want: Vec<(u32, u32)> = model.into_iter().collect();
            assert_eq!(
                counts.iter().collect::<Vec<_>>(),
                want,
                "values below {range}"
            );
            let (len, capacity) = (counts.sorted.len(), counts.sorted.capacity());
            let slack = if range <= DENSE_SPAN as u64 {
                0
            } else {
                PENDING
            };
            assert!(
                capacity <= len + slack,
                "{capacity} for {len}, values below {range}"
            );
            let total: u64 = want.iter().map(|e| u64::from(e.1)).sum();
            assert_eq!(counts.total(), total);
            SCRATCH.with_borrow(|s| assert!(s.iter().all(|&n| n == 0), "scratch left dirty"));
        }
    }
}
