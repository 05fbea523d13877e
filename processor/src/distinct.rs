//! Exact distinct counts of 64-bit hashes, for the `sessions` column
//! (`count(DISTINCT session_id)` per window and key).
//!
//! The count is exact, so its state grows with the distinct values: this keeps that at about
//! 8 bytes each. Values go to a short unsorted tail; a full tail is sorted and merged into
//! one sorted, deduplicated vector allocated to its exact length. The tail holds an eighth
//! of the merged values (at least [`MIN_TAIL`]), so the slack stays under 13 % and each value
//! is copied about eight times by merges over the state's life. Past the process's memory
//! budget the sorted values move to a spill file as a run (see [`crate::spill`]); counting
//! reads the runs back with what stayed in memory: sorted together up to
//! [`COUNT_BY_SORTING`] values, merged a chunk of each at a time past it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::spill::SpillFile;

/// The smallest tail: a state with few values merges rarely.
const MIN_TAIL: usize = 256;
/// Values read from a run at a time when counting.
const READ_CHUNK: usize = 4096;
/// Counting a state with runs reads them all into memory up to this many values (8 MiB,
/// briefly, one state at a time, when its window closes); past it, a merge.
const COUNT_BY_SORTING: usize = 1 << 20;
/// Past this many runs a spill merges them into one, so counting reads a bounded number
/// of runs side by side (each with a chunk in memory) however long the window.
const MAX_RUNS: usize = 16;

/// A set of 64-bit hashes.
#[derive(Debug, Clone, Default)]
pub struct DistinctHashes {
    /// Sorted, each value once, capacity equal to length.
    sorted: Vec<u64>,
    /// Values since the last merge, unsorted, maybe repeated.
    tail: Vec<u64>,
    /// Sorted values spilled to disk; a value may be in several runs and in memory too.
    runs: Vec<Run>,
}

/// Sorted values written to a spill file, little-endian.
#[derive(Debug, Clone)]
struct Run {
    file: Arc<dyn SpillFile>,
    offset: u64,
    len: usize,
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
        self.runs.extend(other.runs.iter().cloned());
        self.fold();
    }

    /// How many distinct values; reads the spilled runs, if any.
    pub fn count(&self) -> io::Result<usize> {
        self.count_sorting_up_to(COUNT_BY_SORTING)
    }

    /// [`DistinctHashes::count`]: with runs holding at most `limit` values in all (with
    /// memory's), all of them read, merged and deduplicated (~120 instructions a value);
    /// past it the merge of [`DistinctHashes::for_each`], in bounded memory (~230).
    fn count_sorting_up_to(&self, limit: usize) -> io::Result<usize> {
        if self.runs.is_empty() {
            let mut tail = self.tail.clone();
            tail.sort_unstable();
            tail.dedup();
            return Ok(self.sorted.len() + self.not_sorted(&tail));
        }
        let held = self.runs.iter().map(|r| r.len).sum::<usize>() + self.in_memory();
        if held <= limit {
            let mut all = Vec::with_capacity(held);
            for run in &self.runs {
                let mut reader = RunReader::new(run);
                while let Some(v) = reader.next()? {
                    all.push(v);
                }
            }
            all.extend_from_slice(&self.sorted);
            all.extend_from_slice(&self.tail);
            // Sorted runs one after another: std's stable sort finds and merges them, in
            // a few passes where an unstable sort would sort them again from scratch.
            all.sort();
            all.dedup();
            return Ok(all.len());
        }
        let mut n = 0;
        self.for_each(|_| n += 1)?;
        Ok(n)
    }

    /// How many of `values` the sorted vector lacks.
    fn not_sorted(&self, values: &[u64]) -> usize {
        values
            .iter()
            .filter(|h| self.sorted.binary_search(h).is_err())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty() && self.tail.is_empty() && self.runs.is_empty()
    }

    /// Heap bytes held in memory (spilled runs cost a handle each).
    pub fn size(&self) -> usize {
        (self.sorted.capacity() + self.tail.capacity()) * 8
            + self.runs.capacity() * size_of::<Run>()
    }

    /// Values held in memory: what [`DistinctHashes::spill`] would write.
    pub fn in_memory(&self) -> usize {
        self.sorted.len() + self.tail.len()
    }

    /// Moves the values held in memory to `file` as one sorted run (all of them, merged,
    /// past [`MAX_RUNS`] runs); returns the bytes written.
    pub fn spill(&mut self, file: &Arc<dyn SpillFile>) -> io::Result<usize> {
        self.fold();
        if self.sorted.is_empty() {
            return Ok(0);
        }
        if self.runs.len() >= MAX_RUNS {
            return self.compact(file);
        }
        let bytes: Vec<u8> = self.sorted.iter().flat_map(|h| h.to_le_bytes()).collect();
        let offset = file.append(&bytes)?;
        self.runs.push(Run {
            file: file.clone(),
            offset,
            len: self.sorted.len(),
        });
        self.sorted = Vec::new();
        self.tail = Vec::new();
        Ok(bytes.len())
    }

    /// Writes every value, runs and memory merged, to `file` as the one run left.
    fn compact(&mut self, file: &Arc<dyn SpillFile>) -> io::Result<usize> {
        let (mut offset, mut len, mut chunk) = (None, 0, Vec::with_capacity(READ_CHUNK * 8));
        let mut failed = Ok(());
        let mut next = None;
        let mut flush = |chunk: &mut Vec<u8>| -> io::Result<()> {
            let at = file.append(chunk)?;
            // The run is read back as one span: its chunks must follow one another.
            if next.is_some_and(|n| n != at) {
                return Err(io::Error::other(
                    "a spill file was appended to by two writers",
                ));
            }
            offset.get_or_insert(at);
            next = Some(at + chunk.len() as u64);
            chunk.clear();
            Ok(())
        };
        self.for_each(|v| {
            if failed.is_ok() {
                chunk.extend_from_slice(&v.to_le_bytes());
                len += 1;
                if chunk.len() == chunk.capacity() {
                    failed = flush(&mut chunk);
                }
            }
        })?;
        failed?;
        if !chunk.is_empty() {
            flush(&mut chunk)?;
        }
        let offset = offset.expect("memory held values");
        self.runs = vec![Run {
            file: file.clone(),
            offset,
            len,
        }];
        self.sorted = Vec::new();
        self.tail = Vec::new();
        Ok(len * 8)
    }

    /// Merges the tail into the sorted values.
    fn fold(&mut self) {
        if self.tail.is_empty() {
            return;
        }
        self.tail.sort_unstable();
        self.tail.dedup();
        // Merged into room for every tail value, then cut to the values kept: shrinking
        // gives the end back in place, where a binary search per tail value to size the
        // merge exactly cost as much as the merge.
        let mut out = Vec::with_capacity(self.sorted.len() + self.tail.len());
        let (mut a, mut b) = (0, 0);
        while a < self.sorted.len() && b < self.tail.len() {
            let (x, y) = (self.sorted[a], self.tail[b]);
            out.push(x.min(y));
            a += (x <= y) as usize;
            b += (y <= x) as usize;
        }
        out.extend_from_slice(&self.sorted[a..]);
        out.extend_from_slice(&self.tail[b..]);
        out.shrink_to_fit();
        self.sorted = out;
        self.tail.clear();
        let want = (self.sorted.len() / 8).max(MIN_TAIL);
        if self.tail.capacity() > 2 * want {
            self.tail.shrink_to(want);
        } else {
            self.tail.reserve_exact(want);
        }
    }

    /// The values held in memory, sorted, each once.
    fn memory_sorted(&self) -> Vec<u64> {
        let mut all = Self {
            sorted: self.sorted.clone(),
            tail: self.tail.clone(),
            runs: Vec::new(),
        };
        all.fold();
        all.sorted
    }

    /// Calls `f` with each distinct value in ascending order: a merge of the runs (a chunk
    /// of each in memory at a time) and the values in memory.
    fn for_each(&self, mut f: impl FnMut(u64)) -> io::Result<()> {
        let memory = self.memory_sorted();
        let mut readers: Vec<RunReader> = self.runs.iter().map(RunReader::new).collect();
        let mut heap = BinaryHeap::with_capacity(readers.len() + 1);
        for (i, r) in readers.iter_mut().enumerate() {
            if let Some(v) = r.next()? {
                heap.push(Reverse((v, i)));
            }
        }
        let from_memory = readers.len();
        if let Some(&v) = memory.first() {
            heap.push(Reverse((v, from_memory)));
        }
        let (mut at_memory, mut last) = (0, None);
        while let Some(Reverse((v, i))) = heap.pop() {
            if last != Some(v) {
                f(v);
                last = Some(v);
            }
            let next = if i == from_memory {
                at_memory += 1;
                memory.get(at_memory).copied()
            } else {
                readers[i].next()?
            };
            if let Some(n) = next {
                heap.push(Reverse((n, i)));
            }
        }
        Ok(())
    }

    fn to_sorted(&self) -> io::Result<Vec<u64>> {
        if self.runs.is_empty() {
            return Ok(self.memory_sorted());
        }
        let mut out = Vec::new();
        self.for_each(|v| out.push(v))?;
        Ok(out)
    }
}

/// Reads a run back a chunk at a time.
struct RunReader<'a> {
    run: &'a Run,
    /// Values of the run read so far.
    read: usize,
    chunk: Vec<u64>,
    at: usize,
}

impl<'a> RunReader<'a> {
    fn new(run: &'a Run) -> Self {
        Self {
            run,
            read: 0,
            chunk: Vec::new(),
            at: 0,
        }
    }

    fn next(&mut self) -> io::Result<Option<u64>> {
        if self.at == self.chunk.len() {
            let n = READ_CHUNK.min(self.run.len - self.read);
            if n == 0 {
                return Ok(None);
            }
            let mut bytes = vec![0u8; n * 8];
            self.run
                .file
                .read_at(&mut bytes, self.run.offset + self.read as u64 * 8)?;
            self.chunk.clear();
            self.chunk.extend(
                bytes
                    .chunks_exact(8)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("eight bytes"))),
            );
            self.read += n;
            self.at = 0;
        }
        self.at += 1;
        Ok(Some(self.chunk[self.at - 1]))
    }
}

impl PartialEq for DistinctHashes {
    fn eq(&self, other: &Self) -> bool {
        // Equality is for tests; a spill file that cannot be read is equal to nothing.
        match (self.to_sorted(), other.to_sorted()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

// Checkpoints hold the sorted values (the form older checkpoints have too), spilled ones
// included: a restored state starts in memory.
impl Serialize for DistinctHashes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.tail.is_empty() && self.runs.is_empty() {
            self.sorted.serialize(s)
        } else {
            self.to_sorted()
                .map_err(|e| serde::ser::Error::custom(format!("reading a spill file: {e}")))?
                .serialize(s)
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
            runs: Vec::new(),
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
        assert_eq!(a.count().unwrap(), want.len());
        let json = serde_json::to_string(&a).unwrap();
        let back: DistinctHashes = serde_json::from_str(&json).unwrap();
        assert_eq!(back.count().unwrap(), want.len());
        let n = want.len();
        assert_eq!(
            back.to_sorted().unwrap(),
            want.into_iter().collect::<Vec<_>>()
        );
        assert!(a.size() <= (n + n / 4 + MIN_TAIL) * 8 + 64);
    }

    #[test]
    fn spilled_runs_count_exactly_with_what_stayed_in_memory() {
        use crate::spill::{MemorySpillDir, SpillDir};
        let dir = MemorySpillDir::default();
        let mut x = 11u64;
        let mut next = || {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            x >> 20
        };
        let (mut a, mut b) = (DistinctHashes::default(), DistinctHashes::default());
        let mut want = BTreeSet::new();
        for round in 0..(MAX_RUNS + 4) {
            // Values repeated across runs, memory and sides; past MAX_RUNS runs a spill
            // compacts them into one longer than a read chunk.
            for _ in 0..3_000 {
                let h = next() % 40_000;
                want.insert(h);
                if h % 3 == 0 {
                    b.insert(h)
                } else {
                    a.insert(h)
                }
            }
            let file = dir.create().unwrap();
            let (held, before) = (a.in_memory(), a.count().unwrap());
            let written = a.spill(&file).unwrap();
            let compacted = a.runs.len() == 1 && round > 0;
            assert!(
                written > 0 && (written <= held * 8 || compacted),
                "{written} of {held}"
            );
            assert_eq!(a.count().unwrap(), before);
            assert_eq!(a.count_sorting_up_to(0).unwrap(), before, "by the merge");
            assert_eq!(a.in_memory(), 0);
            if round % 2 == 0 {
                b.spill(&file).unwrap();
            }
            assert_eq!(a.count().unwrap(), a.to_sorted().unwrap().len());
            assert!(a.runs.len() <= MAX_RUNS);
        }
        assert!(a.runs.len() < MAX_RUNS, "compacted");
        // Memory holds handles to the runs, not their values.
        assert!(a.size() <= 8 * size_of::<Run>(), "{} bytes", a.size());
        a.merge(&b);
        assert_eq!(a.count().unwrap(), want.len());
        assert_eq!(
            a.count_sorting_up_to(0).unwrap(),
            want.len(),
            "by the merge"
        );
        assert_eq!(
            a.to_sorted().unwrap(),
            want.iter().copied().collect::<Vec<_>>()
        );
        // A checkpoint holds every value, and restores in memory.
        let back: DistinctHashes =
            serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert!(back.runs.is_empty());
        assert_eq!(back.count().unwrap(), want.len());
        assert!(back == a);
    }
}
