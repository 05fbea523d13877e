//! Exact distinct counts of 64-bit hashes, for the `sessions` column
//! (`count(DISTINCT session_id)` per window and key).
//!
//! The count is exact, so its state grows with the distinct values: this keeps that at about
//! 8 bytes each. Values go to a short unsorted tail; a full tail is sorted and merged into
//! one sorted, deduplicated vector allocated to its exact length. The tail holds an eighth
//! of the merged values (at least [`MIN_TAIL`]), so the slack stays under 13 % and each value
//! is copied about eight times by merges over the state's life.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The smallest tail: a state with few values merges rarely.
const MIN_TAIL: usize = 256;

/// A set of 64-bit hashes.
#[derive(Debug, Clone, Default)]
pub struct DistinctHashes {
    /// Sorted, each value once, capacity equal to length.
    sorted: Vec<u64>,
    /// Values since the last merge, unsorted, maybe repeated.
    tail: Vec<u64>,
}

impl DistinctHashes {
    pub fn insert(&mut self, h: u64) {
        if self.tail.capacity() == 0 {
            self.tail.reserve_exact(MIN_TAIL);
        }
        self.tail.push(h);
        if self.tail.len() >= (self.sorted.len() / 8).max(MIN_TAIL) {
            self.fold();
        }
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &DistinctHashes) {
        self.tail.extend_from_slice(&other.sorted);
        self.tail.extend_from_slice(&other.tail);
        self.fold();
    }

    /// How many distinct values.
    pub fn len(&self) -> usize {
        let mut tail = self.tail.clone();
        tail.sort_unstable();
        tail.dedup();
        self.sorted.len() + self.not_sorted(&tail)
    }

    /// How many of `values` the sorted vector lacks.
    fn not_sorted(&self, values: &[u64]) -> usize {
        values
            .iter()
            .filter(|h| self.sorted.binary_search(h).is_err())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty() && self.tail.is_empty()
    }

    /// Heap bytes.
    pub fn size(&self) -> usize {
        (self.sorted.capacity() + self.tail.capacity()) * 8
    }

    /// Merges the tail into the sorted values.
    fn fold(&mut self) {
        if self.tail.is_empty() {
            return;
        }
        self.tail.sort_unstable();
        self.tail.dedup();
        let fresh = self.not_sorted(&self.tail);
        if fresh > 0 {
            let mut out = Vec::with_capacity(self.sorted.len() + fresh);
            let (mut a, mut b) = (0, 0);
            while a < self.sorted.len() && b < self.tail.len() {
                let (x, y) = (self.sorted[a], self.tail[b]);
                out.push(x.min(y));
                a += (x <= y) as usize;
                b += (y <= x) as usize;
            }
            out.extend_from_slice(&self.sorted[a..]);
            out.extend_from_slice(&self.tail[b..]);
            self.sorted = out;
        }
        self.tail.clear();
        let want = (self.sorted.len() / 8).max(MIN_TAIL);
        if self.tail.capacity() > 2 * want {
            self.tail.shrink_to(want);
        } else {
            self.tail.reserve_exact(want);
        }
    }

    fn to_sorted(&self) -> Vec<u64> {
        let mut all = self.clone();
        all.fold();
        all.sorted
    }
}

impl PartialEq for DistinctHashes {
    fn eq(&self, other: &Self) -> bool {
        self.to_sorted() == other.to_sorted()
    }
}

// Checkpoints hold the sorted values (the form older checkpoints have too).
impl Serialize for DistinctHashes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.tail.is_empty() {
            self.sorted.serialize(s)
        } else {
            self.to_sorted().serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for DistinctHashes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut sorted = Vec::<u64>::deserialize(d)?;
        sorted.sort_unstable();
        sorted.dedup();
        sorted.shrink_to_fit();
        Ok(Self {
            sorted,
            tail: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn counts_like_a_set_through_inserts_merges_and_checkpoints() {
        let mut x = 7u64;
        let (mut a, mut b) = (DistinctHashes::default(), DistinctHashes::default());
        let mut want = BTreeSet::new();
        for i in 0..20_000u64 {
            // Repeats, and values past the tail of both sides.
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let h = ((x >> 33) % 6_000).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            want.insert(h);
            if i % 3 == 0 {
                a.insert(h)
            } else {
                b.insert(h)
            }
        }
        a.merge(&b);
        assert_eq!(a.len(), want.len());
        let json = serde_json::to_string(&a).unwrap();
        let back: DistinctHashes = serde_json::from_str(&json).unwrap();
        assert_eq!(back.len(), want.len());
        assert_eq!(back.to_sorted(), want.into_iter().collect::<Vec<_>>());
        assert!(a.size() <= (a.len() + a.len() / 4 + MIN_TAIL) * 8 + 64);
    }
}
