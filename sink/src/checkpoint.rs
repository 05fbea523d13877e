//! Checkpoints: per source partition, a numbered series
//! `<data_dir>/_checkpoints/<source>/p<N>/g<generation>.ckpt`.
//!
//! A checkpoint says "every offset before `next_offset` is in durable files, and `state` is
//! the processor's open-window state right after them". It is written only after the files
//! it covers are durable, so after a crash the pair (files, checkpoint) is consistent.
//!
//! Each commit creates the next generation with a conditional write that fails if it
//! exists. A processor that receives a partition first *claims* it by writing the next
//! generation itself; from then on a previous owner that still believes it holds the
//! partition (a long pause, a network partition) fails its next commit and learns it lost
//! the partition ([`SinkError::Fenced`]). The latest generation is the partition's
//! checkpoint; older ones are deleted as new ones land, which frees their names, so a
//! commit also checks that no newer generation exists (one that does fences it too). Two
//! owners can never both commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Result, SinkError};
use crate::partition::sanitize_component;
use crate::store::Store;

const MAGIC: &str = "inferwatch-checkpoint v1";
/// The header of a claim made before the partition had any checkpoint.
const NONE: &str = "inferwatch-checkpoint v1 none";

/// A partition's progress and processor state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The first offset not yet covered.
    pub next_offset: i64,
    /// Opaque processor state (the window operator's snapshot).
    pub state: Vec<u8>,
    /// The first offset of the co-partitioned feedback topic not yet joined, when the run
    /// reads feedback.
    pub feedback_offset: Option<i64>,
}

/// Where one source's checkpoints live, and the generations this processor holds of each of
/// its partitions. Clones share the generations.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    store: Store,
    held: Arc<Mutex<HashMap<i32, Held>>>,
    /// Written into every generation this processor makes, so no two processors ever write
    /// the same bytes (a conditional write that finds its own bytes there took effect).
    owner: u64,
}

impl CheckpointStore {
    pub fn new(store: &Store, source: &str) -> Self {
        Self {
            store: store.child(&format!("_checkpoints/{}", sanitize_component(source))),
            held: Arc::default(),
            owner: fastrand::u64(..),
        }
    }

    fn dir(partition: i32) -> String {
        format!("p{partition:05}")
    }

    fn key(partition: i32, generation: u64) -> String {
        format!("{}/g{generation:012}.ckpt", Self::dir(partition))
    }

    /// The generations written for `partition`, oldest first. A checkpoint of the layout
    /// before generations (`p<N>.ckpt`) counts as generation 0.
    fn generations(&self, partition: i32) -> Result<Vec<(u64, String)>> {
        let mut out: Vec<(u64, String)> = self
            .store
            .list(&format!("{}/", Self::dir(partition)))?
            .into_iter()
            .filter_map(|k| {
                let name = k.rsplit('/').next()?;
                let g = name
                    .strip_prefix('g')?
                    .strip_suffix(".ckpt")?
                    .parse()
                    .ok()?;
                Some((g, k))
            })
            .collect();
        out.sort();
        if out.is_empty() {
            let legacy = format!("{}.ckpt", Self::dir(partition));
            if self.store.get(&legacy)?.is_some() {
                out.push((0, legacy));
            }
        }
        Ok(out)
    }

    /// The partition's latest checkpoint and its generation (0 when there is none).
    fn latest(&self, partition: i32) -> Result<(u64, Option<Checkpoint>)> {
        let Some((g, key)) = self.generations(partition)?.pop() else {
            return Ok((0, None));
        };
        match self.store.get(&key)? {
            Some(bytes) => Ok((g, decode(&bytes, &self.where_(&key))?)),
            // Deleted between listing and reading: a newer generation exists.
            None => self.latest(partition),
        }
    }

    fn where_(&self, key: &str) -> String {
        format!("{}/{key}", self.store.display())
    }

    /// The partition's latest checkpoint, if one was written (read only).
    pub fn load(&self, partition: i32) -> Result<Option<Checkpoint>> {
        Ok(self.latest(partition)?.1)
    }

    /// Takes the partition over: reads its latest checkpoint and writes the next generation
    /// (a copy), so that whoever held it before can no longer commit. Returns the
    /// checkpoint to resume from.
    pub fn claim(&self, partition: i32) -> Result<Option<Checkpoint>> {
        loop {
            let (g, ckpt) = self.latest(partition)?;
            let next = g + 1;
            let bytes = match &ckpt {
                Some(c) => encode(c, self.owner),
                None => format!("{NONE} owner={:016x}\n", self.owner).into_bytes(),
            };
            if self.store.put_new(&Self::key(partition, next), bytes)? {
                let held = Held {
                    claimed: next,
                    current: next,
                };
                self.held
                    .lock()
                    .expect("not poisoned")
                    .insert(partition, held);
                self.prune(self.generations(partition)?, next)?;
                if g == 0 && ckpt.is_some() {
                    // Copied from the layout before generations into generation 1.
                    self.store
                        .delete(&format!("{}.ckpt", Self::dir(partition)))?;
                }
                return Ok(ckpt);
            }
            // Another processor claimed or committed it at the same moment: read again.
        }
    }

    /// The latest generation this processor wrote of `partition`, once claimed.
    pub fn generation(&self, partition: i32) -> Option<u64> {
        self.held
            .lock()
            .expect("not poisoned")
            .get(&partition)
            .map(|h| h.current)
    }

    /// The generation this processor's claim of `partition` wrote: it stays the same across
    /// the commits of one claim, and no other claim ever has it.
    pub fn claimed(&self, partition: i32) -> Option<u64> {
        self.held
            .lock()
            .expect("not poisoned")
            .get(&partition)
            .map(|h| h.claimed)
    }

    /// Forgets a partition that left this processor.
    pub fn release(&self, partition: i32) {
        self.held.lock().expect("not poisoned").remove(&partition);
    }

    /// True when another processor committed a generation of `partition` after the one
    /// this processor holds (or this one holds none): it owns the partition now.
    pub fn superseded(&self, partition: i32) -> Result<bool> {
        let latest = self.latest(partition)?.0;
        Ok(self.generation(partition).is_none_or(|held| latest > held))
    }

    /// Commits the partition's next checkpoint, atomically and durably. Fails with
    /// [`SinkError::Fenced`] when another processor claimed the partition since, or when
    /// this one holds no claim on it (it was released or lost meanwhile): a processor
    /// only ever commits the generation after the one it claimed.
    pub fn save(&self, partition: i32, ckpt: &Checkpoint) -> Result<()> {
        let Some(held) = self.generation(partition) else {
            let generation = self.latest(partition)?.0;
            return Err(SinkError::Fenced {
                partition,
                generation,
            });
        };
        let next = held + 1;
        if !self
            .store
            .put_new(&Self::key(partition, next), encode(ckpt, self.owner))?
        {
            self.release(partition);
            return Err(SinkError::Fenced {
                partition,
                generation: next,
            });
        }
        // Pruning frees old slots: a processor that lost the partition generations ago can
        // take one. The newest generation decides who owns the partition.
        let generations = self.generations(partition)?;
        let newest = generations.last().map_or(0, |(g, _)| *g);
        if newest > next {
            self.store.delete(&Self::key(partition, next))?;
            self.release(partition);
            return Err(SinkError::Fenced {
                partition,
                generation: newest,
            });
        }
        if let Some(h) = self.held.lock().expect("not poisoned").get_mut(&partition) {
            h.current = next;
        }
        self.prune(generations, next)
    }

    /// Deletes, of the listed `generations`, those older than the one before `current` (and
    /// the pre-generation file), keeping one spare.
    fn prune(&self, generations: Vec<(u64, String)>, current: u64) -> Result<()> {
        for (g, key) in generations {
            if g + 1 < current {
                self.store.delete(&key)?;
            }
        }
        Ok(())
    }
}

/// One partition's generations held by this processor.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// The generation its claim wrote: it names every file written under this claim, so a
    /// processor that lost the partition finds its own files whatever it committed since.
    claimed: u64,
    /// The latest generation it wrote (the claim or a commit): the next commit writes the
    /// one after.
    current: u64,
}

fn encode(ckpt: &Checkpoint, owner: u64) -> Vec<u8> {
    let mut header = format!("{MAGIC} next_offset={}", ckpt.next_offset);
    if let Some(f) = ckpt.feedback_offset {
        header.push_str(&format!(" feedback_offset={f}"));
    }
    header.push_str(&format!(" owner={owner:016x}\n"));
    let mut out = header.into_bytes();
    out.extend_from_slice(&ckpt.state);
    out
}

fn decode(bytes: &[u8], path: &str) -> Result<Option<Checkpoint>> {
    let bad = |why: &str| SinkError::Checkpoint {
        path: path.into(),
        reason: why.to_string(),
    };
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| bad("no header line"))?;
    let header = std::str::from_utf8(&bytes[..nl]).map_err(|_| bad("header is not UTF-8"))?;
    if header == NONE || header.starts_with(&format!("{NONE} ")) {
        return Ok(None);
    }
    let mut fields = header
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("header does not start with `inferwatch-checkpoint v1`"))?
        .split_whitespace();
    let next_offset = fields
        .next()
        .and_then(|f| f.strip_prefix("next_offset="))
        .and_then(|n| n.parse::<i64>().ok())
        .ok_or_else(|| bad("header is not `inferwatch-checkpoint v1 next_offset=N`"))?;
    let mut feedback_offset = None;
    for f in fields {
        if let Some(n) = f.strip_prefix("feedback_offset=") {
            let n = n.parse::<i64>();
            feedback_offset = Some(n.map_err(|_| bad("unreadable feedback_offset in the header"))?);
        } else if !f.starts_with("owner=") {
            return Err(bad(&format!("unknown header field {f:?}")));
        }
    }
    Ok(Some(Checkpoint {
        next_offset,
        state: bytes[nl + 1..].to_vec(),
        feedback_offset,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn checkpoints_round_trip_and_missing_ones_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(&Store::local(dir.path()), "inference-events");
        assert_eq!(store.claim(3).unwrap(), None);
        let c = Checkpoint {
            next_offset: 12_345,
            state: b"{\"x\":1}\n\0binary".to_vec(),
            feedback_offset: None,
        };
        store.save(3, &c).unwrap();
        assert_eq!(store.load(3).unwrap(), Some(c.clone()));
        let newer = Checkpoint {
            next_offset: 20_000,
            feedback_offset: Some(77),
            ..c
        };
        store.save(3, &newer).unwrap();
        assert_eq!(store.load(3).unwrap(), Some(newer.clone()));
        assert_eq!(store.load(4).unwrap(), None);
        // Only the latest generation and one spare are kept.
        let left = fs::read_dir(dir.path().join("_checkpoints/inference-events/p00003"))
            .unwrap()
            .count();
        assert_eq!(left, 2);
    }

    #[test]
    fn a_claim_fences_the_previous_owner() {
        let dir = tempfile::tempdir().unwrap();
        let a = CheckpointStore::new(&Store::local(dir.path()), "t");
        let b = CheckpointStore::new(&Store::local(dir.path()), "t");
        let c = |n| Checkpoint {
            next_offset: n,
            state: vec![1, 2, 3],
            feedback_offset: None,
        };
        a.claim(0).unwrap();
        a.save(0, &c(10)).unwrap();
        assert_eq!((a.claimed(0), a.generation(0)), (Some(1), Some(2)));
        // b takes partition 0 over while a still believes it owns it.
        assert_eq!(b.claim(0).unwrap(), Some(c(10)));
        let err = a.save(0, &c(20)).unwrap_err();
        assert!(
            matches!(err, SinkError::Fenced { partition: 0, .. }),
            "{err}"
        );
        b.save(0, &c(30)).unwrap();
        assert_eq!((b.claimed(0), b.generation(0)), (Some(3), Some(4)));
        assert_eq!(b.load(0).unwrap(), Some(c(30)));
        assert!(a.superseded(0).unwrap());
        assert!(!b.superseded(0).unwrap());
    }

    #[test]
    fn a_slot_freed_by_pruning_does_not_let_a_fenced_owner_commit() {
        let dir = tempfile::tempdir().unwrap();
        let a = CheckpointStore::new(&Store::local(dir.path()), "t");
        let b = CheckpointStore::new(&Store::local(dir.path()), "t");
        let c = |n| Checkpoint {
            next_offset: n,
            state: vec![7],
            feedback_offset: None,
        };
        a.claim(0).unwrap();
        a.save(0, &c(10)).unwrap();
        b.claim(0).unwrap();
        b.save(0, &c(20)).unwrap();
        b.save(0, &c(30)).unwrap();
        // Generations 1 to 3 are pruned: the one after a's (3) is free again.
        let err = a.save(0, &c(15)).unwrap_err();
        assert!(
            matches!(err, SinkError::Fenced { partition: 0, .. }),
            "{err}"
        );
        assert_eq!(a.load(0).unwrap(), Some(c(30)));
        assert!(a.superseded(0).unwrap());
        b.save(0, &c(40)).unwrap();
        assert_eq!(b.load(0).unwrap(), Some(c(40)));
    }

    #[test]
    fn a_partition_no_longer_held_is_never_committed() {
        let dir = tempfile::tempdir().unwrap();
        let a = CheckpointStore::new(&Store::local(dir.path()), "t");
        let c = |n| Checkpoint {
            next_offset: n,
            state: vec![1],
            feedback_offset: None,
        };
        // Never claimed, or released after a revocation: a late checkpoint of stale state
        // must not become the newest generation.
        assert!(matches!(a.save(0, &c(5)), Err(SinkError::Fenced { .. })));
        a.claim(0).unwrap();
        a.save(0, &c(10)).unwrap();
        a.release(0);
        assert!(matches!(a.save(0, &c(20)), Err(SinkError::Fenced { .. })));
        assert_eq!(a.load(0).unwrap(), Some(c(10)));
    }

    #[test]
    fn a_checkpoint_of_the_old_layout_is_generation_zero() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("_checkpoints/t")).unwrap();
        let old = Checkpoint {
            next_offset: 5,
            state: b"s".to_vec(),
            feedback_offset: Some(2),
        };
        let legacy = b"inferwatch-checkpoint v1 next_offset=5 feedback_offset=2\ns";
        fs::write(dir.path().join("_checkpoints/t/p00001.ckpt"), legacy).unwrap();
        let store = CheckpointStore::new(&Store::local(dir.path()), "t");
        assert_eq!(store.claim(1).unwrap(), Some(old));
        assert!(!dir.path().join("_checkpoints/t/p00001.ckpt").exists());
    }

    #[test]
    fn a_damaged_checkpoint_is_an_error_that_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(&Store::local(dir.path()), "t");
        fs::create_dir_all(dir.path().join("_checkpoints/t/p00000")).unwrap();
        fs::write(
            dir.path().join("_checkpoints/t/p00000/g000000000001.ckpt"),
            b"garbage",
        )
        .unwrap();
        let err = store.load(0).unwrap_err().to_string();
        assert!(err.contains("g000000000001.ckpt"), "{err}");
    }
}
