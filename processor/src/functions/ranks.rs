//! Labeled counts per confidence bucket (1/[`RANK_STEPS`]), for AUROC and equal-mass bins.
//!
//! A busy key fills thousands of the 10,001 buckets in one window, so the layout matters:
//! sorted (bucket, counts) pairs while few, then one slot per bucket: 4 bytes (40 KB) while
//! every count fits 16 bits, 8 bytes (80 KB) once one does not. Each bucket's confidence sum
//! is only needed for the mean confidence of equal-mass bins, so it is kept only when asked
//! for.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::f64_bits;

/// AUROC and equal-mass resolution: confidences are bucketed to 1/RANK_STEPS (round to
/// nearest). Pairs of opposite labels in one bucket count as ties (½), so the error against
/// the exact AUROC is at most half the share of such pairs — below 0.005 unless scores pile
/// up within 0.0001 of each other.
pub const RANK_STEPS: f64 = 10_000.0;
const BUCKETS: usize = RANK_STEPS as usize + 1;
/// A sparse list longer than this (12 KB of counts) becomes one slot per bucket.
const SPARSE_MAX: usize = 1024;
/// Fewest labeled events that wait before a merge into the sparse list; more wait as it
/// grows (half its length), so that each pass over it is shared by enough events.
const PENDING_MIN: usize = 32;

/// Labeled events in one confidence bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rank {
    pub correct: u64,
    pub wrong: u64,
    /// 0 unless confidence sums are kept.
    #[serde(with = "f64_bits")]
    pub conf_sum: f64,
}

/// Per-bucket values: sorted pairs while few, then a slot per bucket.
#[derive(Debug, Clone)]
enum Slots<T> {
    Sparse(Vec<(u16, T)>),
    Dense(Box<[T]>),
}

impl<T: Copy + Default> Default for Slots<T> {
    fn default() -> Self {
        Slots::Sparse(Vec::new())
    }
}

impl<T: Copy + Default> Slots<T> {
    fn get_mut(&mut self, bucket: u16) -> &mut T {
        if let Slots::Sparse(pairs) = self {
            if pairs.len() >= SPARSE_MAX && pairs.binary_search_by_key(&bucket, |p| p.0).is_err() {
                let mut dense = vec![T::default(); BUCKETS].into_boxed_slice();
                for &(b, v) in pairs.iter() {
                    dense[b as usize] = v;
                }
                *self = Slots::Dense(dense);
            }
        }
        match self {
            Slots::Dense(slots) => &mut slots[bucket as usize],
            Slots::Sparse(pairs) => {
                let i = match pairs.binary_search_by_key(&bucket, |p| p.0) {
                    Ok(i) => i,
                    Err(i) => {
                        pairs.insert(i, (bucket, T::default()));
                        i
                    }
                };
                &mut pairs[i].1
            }
        }
    }

    fn get(&self, bucket: u16) -> T {
        match self {
            Slots::Dense(slots) => slots[bucket as usize],
            Slots::Sparse(pairs) => pairs
                .binary_search_by_key(&bucket, |p| p.0)
                .map_or_else(|_| T::default(), |i| pairs[i].1),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Slots::Sparse(p) if p.is_empty())
    }

    fn size(&self) -> usize {
        match self {
            Slots::Sparse(pairs) => pairs.capacity() * size_of::<(u16, T)>(),
            Slots::Dense(slots) => slots.len() * size_of::<T>(),
        }
    }
}

/// (correct, wrong) per bucket: sorted pairs while few, then a slot per bucket, 16-bit
/// until a count outgrows it. Counts saturate at `u32::MAX`.
#[derive(Debug, Clone)]
enum Counts {
    Sparse(Vec<(u16, [u32; 2])>),
    Dense16(Box<[[u16; 2]]>),
    Dense32(Box<[[u32; 2]]>),
}

impl Default for Counts {
    fn default() -> Self {
        Counts::Sparse(Vec::new())
    }
}

impl Counts {
    fn add(&mut self, bucket: u16, add: [u32; 2]) {
        let b = bucket as usize;
        match self {
            Counts::Sparse(pairs) => match pairs.binary_search_by_key(&bucket, |p| p.0) {
                Ok(i) => pairs[i].1 = sum(pairs[i].1, add),
                Err(_) if pairs.len() >= SPARSE_MAX => {
                    self.densify();
                    self.add(bucket, add);
                }
                Err(i) => pairs.insert(i, (bucket, add)),
            },
            Counts::Dense16(slots) => {
                let [c, w] = sum(slots[b].map(u32::from), add);
                match (u16::try_from(c), u16::try_from(w)) {
                    (Ok(c), Ok(w)) => slots[b] = [c, w],
                    _ => {
                        let mut wide: Box<[[u32; 2]]> =
                            slots.iter().map(|s| s.map(u32::from)).collect();
                        wide[b] = [c, w];
                        *self = Counts::Dense32(wide);
                    }
                }
            }
            Counts::Dense32(slots) => slots[b] = sum(slots[b], add),
        }
    }

    /// Counts in `pending`, sorted (bucket << 1 | correct): one merge into sparse pairs, or
    /// into the slots.
    fn add_sorted(&mut self, pending: &[u32]) {
        let Counts::Sparse(pairs) = self else {
            pending
                .iter()
                .for_each(|&p| self.add((p >> 1) as u16, label(p)));
            return;
        };
        let mut out = Vec::with_capacity(pairs.len() + pending.len());
        let (mut i, mut j) = (0, 0);
        while let Some(&p) = pending.get(j) {
            let bucket = (p >> 1) as u16;
            let mut add = [0u32; 2];
            while let Some(&q) = pending.get(j).filter(|&&q| q >> 1 == p >> 1) {
                add[usize::from(q & 1 == 0)] += 1;
                j += 1;
            }
            while let Some(&pair) = pairs.get(i).filter(|pair| pair.0 < bucket) {
                out.push(pair);
                i += 1;
            }
            match pairs.get(i) {
                Some(&(b, counts)) if b == bucket => {
                    out.push((b, sum(counts, add)));
                    i += 1;
                }
                _ => out.push((bucket, add)),
            }
        }
        out.extend_from_slice(&pairs[i..]);
        *pairs = out;
        if pairs.len() > SPARSE_MAX {
            self.densify();
        }
    }

    /// A slot per bucket in place of the pairs: 16-bit when every count fits.
    fn densify(&mut self) {
        let Counts::Sparse(pairs) = self else {
            return;
        };
        let narrow = pairs
            .iter()
            .all(|(_, c)| c.iter().all(|&n| n <= u16::MAX as u32));
        *self = if narrow {
            let mut slots = vec![[0u16; 2]; BUCKETS].into_boxed_slice();
            for &(b, [c, w]) in pairs.iter() {
                slots[b as usize] = [c as u16, w as u16];
            }
            Counts::Dense16(slots)
        } else {
            let mut slots = vec![[0u32; 2]; BUCKETS].into_boxed_slice();
            for &(b, c) in pairs.iter() {
                slots[b as usize] = c;
            }
            Counts::Dense32(slots)
        };
    }

    /// Every (bucket, counts), by bucket (a dense layout gives every bucket).
    fn iter(&self) -> Box<dyn Iterator<Item = (u16, [u32; 2])> + '_> {
        match self {
            Counts::Sparse(pairs) => Box::new(pairs.iter().copied()),
            Counts::Dense16(slots) => Box::new(
                (0u16..)
                    .zip(slots.iter())
                    .map(|(b, s)| (b, s.map(u32::from))),
            ),
            Counts::Dense32(slots) => Box::new((0u16..).zip(slots.iter().copied())),
        }
    }

    fn size(&self) -> usize {
        match self {
            Counts::Sparse(pairs) => pairs.capacity() * size_of::<(u16, [u32; 2])>(),
            Counts::Dense16(slots) => slots.len() * size_of::<[u16; 2]>(),
            Counts::Dense32(slots) => slots.len() * size_of::<[u32; 2]>(),
        }
    }
}

/// The (correct, wrong) count of one pending entry.
fn label(p: u32) -> [u32; 2] {
    [p & 1, 1 - (p & 1)]
}

fn sum(a: [u32; 2], b: [u32; 2]) -> [u32; 2] {
    [a[0].saturating_add(b[0]), a[1].saturating_add(b[1])]
}

/// Labeled counts per confidence bucket, and optionally the confidence sum of each.
#[derive(Debug, Clone, Default)]
pub struct Ranks {
    counts: Counts,
    /// Labeled events not yet in sparse `counts`, as `bucket << 1 | correct`, unsorted;
    /// readers see them through [`Ranks::settled`].
    pending: Vec<u32>,
    /// Confidence sum per bucket; empty unless [`Ranks::add`] was given confidences.
    conf_sums: Slots<f64>,
}

/// The bucket of a confidence in [0, 1].
pub fn bucket_of(conf: f64) -> u16 {
    crate::round::round_u64(conf * RANK_STEPS).min(u16::MAX.into()) as u16
}

impl Ranks {
    /// One labeled event; `conf` when bucket confidence sums are kept.
    #[inline]
    pub fn add(&mut self, bucket: u16, correct: bool, conf: Option<f64>) {
        match &mut self.counts {
            Counts::Sparse(pairs) => {
                self.pending
                    .push(u32::from(bucket) << 1 | u32::from(correct));
                if self.pending.len() >= PENDING_MIN.max(pairs.len() / 2) {
                    self.settle();
                }
            }
            dense => dense.add(bucket, [u32::from(correct), u32::from(!correct)]),
        }
        if let Some(conf) = conf {
            *self.conf_sums.get_mut(bucket) += conf;
        }
    }

    fn add_rank(&mut self, bucket: u16, r: &Rank) {
        let narrow = |n: u64| n.min(u32::MAX as u64) as u32;
        self.counts
            .add(bucket, [narrow(r.correct), narrow(r.wrong)]);
        if r.conf_sum != 0.0 {
            *self.conf_sums.get_mut(bucket) += r.conf_sum;
        }
    }

    pub fn merge(&mut self, o: &Ranks) {
        self.settle();
        for (b, r) in o.iter() {
            self.add_rank(b, &r);
        }
    }

    /// Counts the pending events in (see [`Counts::add_sorted`]).
    pub fn settle(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.pending.sort_unstable();
        self.counts.add_sorted(&self.pending);
        self.pending.clear();
        if !matches!(self.counts, Counts::Sparse(_)) {
            // Slots count events as they come: the list is not needed again.
            self.pending = Vec::new();
        }
    }

    /// These counts with every pending event counted in: themselves when none is.
    fn settled(&self) -> Cow<'_, Counts> {
        if self.pending.is_empty() {
            return Cow::Borrowed(&self.counts);
        }
        let mut pending = self.pending.clone();
        pending.sort_unstable();
        let mut counts = self.counts.clone();
        counts.add_sorted(&pending);
        Cow::Owned(counts)
    }

    /// Every bucket with labeled events, by bucket.
    pub fn iter(&self) -> impl Iterator<Item = (u16, Rank)> + '_ {
        let sums = !self.conf_sums.is_empty();
        let counts: Box<dyn Iterator<Item = (u16, [u32; 2])> + '_> = match self.settled() {
            Cow::Borrowed(counts) => counts.iter(),
            Cow::Owned(counts) => Box::new(counts.iter().collect::<Vec<_>>().into_iter()),
        };
        counts
            .filter(|(_, [c, w])| c + w > 0)
            .map(move |(b, [c, w])| {
                let conf_sum = if sums { self.conf_sums.get(b) } else { 0.0 };
                (
                    b,
                    Rank {
                        correct: u64::from(c),
                        wrong: u64::from(w),
                        conf_sum,
                    },
                )
            })
    }

    pub fn size(&self) -> usize {
        self.counts.size() + self.pending.capacity() * size_of::<u32>() + self.conf_sums.size()
    }
}

/// A map of bucket → [`Rank`]: the form checkpoints have always had.
impl Serialize for Ranks {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Ranks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<u16, Rank>::deserialize(d)?;
        let mut r = Ranks::default();
        for (b, rank) in &map {
            r.add_rank(*b, rank);
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The map the ranks stood for before they were compact.
    fn reference(events: &[(f64, bool)], sums: bool) -> BTreeMap<u16, Rank> {
        let mut m = BTreeMap::<u16, Rank>::new();
        for &(conf, correct) in events {
            let r = m.entry(bucket_of(conf)).or_default();
            r.correct += u64::from(correct);
            r.wrong += u64::from(!correct);
            if sums {
                r.conf_sum += conf;
            }
        }
        m
    }

    fn events(n: usize, seed: u64) -> Vec<(f64, bool)> {
        super::super::uniforms(seed, n)
            .map(|(conf, x)| (conf, (x & 0b111) != 0))
            .collect()
    }

    #[test]
    fn sparse_and_dense_ranks_hold_what_a_map_would_recorded_merged_and_restored() {
        for (n, sums) in [(10, false), (900, true), (5_000, false), (30_000, true)] {
            let evs = events(n, n as u64);
            let want: Vec<(u16, Rank)> = reference(&evs, sums).into_iter().collect();
            let mut whole = Ranks::default();
            for &(conf, correct) in &evs {
                whole.add(bucket_of(conf), correct, sums.then_some(conf));
            }
            assert_eq!(
                whole.iter().collect::<Vec<_>>(),
                want,
                "{n} events, recorded"
            );
            // Merged from two parts, in both orders: same buckets, same counts.
            let (a, b) = evs.split_at(n / 4);
            let mut parts = [Ranks::default(), Ranks::default()];
            for (part, evs) in parts.iter_mut().zip([a, b]) {
                for &(conf, correct) in evs {
                    part.add(bucket_of(conf), correct, sums.then_some(conf));
                }
            }
            let mut ab = parts[0].clone();
            ab.merge(&parts[1]);
            let counts = |r: &Ranks| -> Vec<(u16, u64, u64)> {
                r.iter().map(|(b, r)| (b, r.correct, r.wrong)).collect()
            };
            assert_eq!(counts(&ab), counts(&whole), "{n} events, merged");
            let json = serde_json::to_string(&whole).unwrap();
            let back: Ranks = serde_json::from_str(&json).unwrap();
            assert_eq!(
                back.iter().collect::<Vec<_>>(),
                want,
                "{n} events, restored"
            );
            // The old checkpoint form (a map) restores too.
            let old: Ranks =
                serde_json::from_str(&serde_json::to_string(&reference(&evs, sums)).unwrap())
                    .unwrap();
            assert_eq!(old.iter().collect::<Vec<_>>(), want, "{n} events, old form");
        }
    }

    #[test]
    fn events_held_back_are_seen_by_every_reader_and_settling_changes_nothing() {
        let evs = events(3_000, 7);
        let mut r = Ranks::default();
        let mut waiting = 0;
        for (i, &(conf, correct)) in evs.iter().enumerate() {
            r.add(bucket_of(conf), correct, None);
            if i % 89 != 0 {
                continue;
            }
            let want: Vec<(u16, Rank)> = reference(&evs[..=i], false).into_iter().collect();
            waiting += usize::from(!r.pending.is_empty());
            assert_eq!(r.iter().collect::<Vec<_>>(), want, "after {} events", i + 1);
            let mut settled = r.clone();
            settled.settle();
            assert!(settled.pending.is_empty());
            assert_eq!(settled.iter().collect::<Vec<_>>(), want, "settled");
            let mut twice = r.clone();
            twice.merge(&r);
            let doubled: Vec<(u16, u64, u64)> = want
                .iter()
                .map(|(b, x)| (*b, 2 * x.correct, 2 * x.wrong))
                .collect();
            let got: Vec<(u16, u64, u64)> =
                twice.iter().map(|(b, x)| (b, x.correct, x.wrong)).collect();
            assert_eq!(got, doubled, "merged with itself");
        }
        assert!(waiting > 10, "events were waiting at {waiting} checks");
        assert!(matches!(r.counts, Counts::Dense16(_)));
        assert_eq!(r.pending.capacity(), 0, "slots keep no list");
    }

    #[test]
    fn a_busy_key_costs_one_slot_per_bucket_and_a_quiet_one_little() {
        let mut quiet = Ranks::default();
        events(100, 1)
            .iter()
            .for_each(|&(c, y)| quiet.add(bucket_of(c), y, None));
        assert!(quiet.size() <= 2 * 100 * 12, "{} bytes", quiet.size());
        let mut busy = Ranks::default();
        events(100_000, 2)
            .iter()
            .for_each(|&(c, y)| busy.add(bucket_of(c), y, None));
        assert_eq!(busy.size(), BUCKETS * 4);
    }

    #[test]
    fn a_count_past_16_bits_widens_every_slot_and_loses_nothing() {
        let mut r = Ranks::default();
        for b in 0..=SPARSE_MAX as u16 {
            r.add(b, true, None);
        }
        r.settle();
        assert_eq!(r.size(), BUCKETS * 4, "dense, 16-bit");
        for _ in 0..70_000 {
            r.add(5, false, None);
        }
        assert_eq!(r.size(), BUCKETS * 8, "dense, 32-bit");
        let got: Vec<(u16, u64, u64)> = r.iter().map(|(b, r)| (b, r.correct, r.wrong)).collect();
        assert_eq!(got.len(), SPARSE_MAX + 1);
        assert_eq!(got[5], (5, 1, 70_000));
        assert!(got.iter().all(|&(b, c, w)| c == 1 && (w == 0) == (b != 5)));
        // Sparse counts already past 16 bits go straight to 32-bit slots.
        let mut big = Ranks::default();
        big.merge(&r);
        assert_eq!(big.size(), BUCKETS * 8);
        assert_eq!(big.iter().collect::<Vec<_>>(), r.iter().collect::<Vec<_>>());
    }
}
