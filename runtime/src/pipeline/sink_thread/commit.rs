//! Commits: completing a partition's files and writing its checkpoint generation; and
//! fencing, when another processor took the partition over.

use std::sync::mpsc::SyncSender;
use std::time::Instant;

use inferwatch_sink::{Checkpoint, SinkError};

use super::SinkThread;
use crate::error::{Result, RuntimeError};

impl SinkThread {
    pub(crate) fn checkpoint_and_ack(
        &mut self,
        partition: i32,
        ckpt: Checkpoint,
        release: bool,
        done: Option<SyncSender<Result<()>>>,
    ) -> Result<()> {
        let r = self.checkpoint(partition, &ckpt, release);
        let ok = matches!(r, Ok(true));
        let r = r.map(|_| ());
        match done {
            Some(done) => {
                let _ = done.send(r);
            }
            None => r?,
        }
        if ok {
            let _ = self.acks.send((partition, ckpt.next_offset));
        }
        Ok(())
    }

    /// Kafka says the partition was lost (this processor's session ended): what this one
    /// wrote after its last commit goes, as when it is fenced; the next owner rewrites it.
    pub(crate) fn abort(&mut self, partition: i32) -> Result<()> {
        let claimed = self.store.claimed(partition);
        let (from, removed) = self.discard(partition, claimed)?;
        self.store.release(partition);
        tracing::warn!(
            "partition {partition} was lost: removed the {removed} files this processor \
             wrote after its last checkpoint (offset {from})"
        );
        Ok(())
    }

    /// Completes the partition's files and commits its checkpoint. `Ok(false)`: another
    /// processor took the partition over; this one wrote it no more.
    pub(crate) fn checkpoint(
        &mut self,
        partition: i32,
        ckpt: &Checkpoint,
        release: bool,
    ) -> Result<bool> {
        let started = Instant::now();
        let claimed = self.store.claimed(partition);
        if !self.complete(partition)? {
            return Ok(false);
        }
        match self.store.save(partition, ckpt) {
            Ok(()) => {}
            Err(SinkError::Fenced { .. }) => {
                self.fence(partition, claimed)?;
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
        self.committed
            .insert(partition, (ckpt.next_offset, ckpt.feedback_offset));
        if release {
            self.events.remove(&partition);
            self.feedback.remove(&partition);
            self.committed.remove(&partition);
            self.store.release(partition);
            if let Some(n) = &self.notify {
                n.release(partition);
            }
        }
        self.checkpoint_time += started.elapsed();
        self.telemetry.checkpoint_took(started.elapsed());
        Ok(true)
    }

    /// Completes the partition's open files. `Ok(false)`: they were gone because another
    /// processor took the partition over (a later claim removes the unfinished files of
    /// earlier ones); this one is fenced.
    pub(crate) fn complete(&mut self, partition: i32) -> Result<bool> {
        let claimed = self.store.claimed(partition);
        match self.flush(partition) {
            Ok(()) => Ok(true),
            Err(e) => self
                .fence_if_taken_over(partition, claimed, e)
                .map(|()| false),
        }
    }

    /// A write of `partition` failed with `e`. When another processor took the partition
    /// over (its claim removes this one's unfinished files), that is why: this one, which
    /// held the claim of generation `claimed`, is fenced. Otherwise `e` is the error.
    pub(crate) fn fence_if_taken_over(
        &mut self,
        partition: i32,
        claimed: Option<u64>,
        e: RuntimeError,
    ) -> Result<()> {
        if !(self.claims && self.store.superseded(partition)?) {
            return Err(e);
        }
        tracing::warn!("partition {partition}: {e}; another processor took it over");
        self.fence(partition, claimed)
    }

    /// Another processor owns `partition` now: this one drops its state of it, deletes what
    /// it wrote since its last commit under the claim of generation `claimed`, and stops
    /// writing it.
    pub(crate) fn fence(&mut self, partition: i32, claimed: Option<u64>) -> Result<()> {
        let (from, removed) = self.discard(partition, claimed)?;
        self.store.release(partition);
        self.fenced.lock().expect("not poisoned").insert(partition);
        if claimed.is_some() {
            tracing::error!(
                "partition {partition} was taken over by another processor: removed the \
                 {removed} files this one wrote after its last checkpoint (offset {from}); it \
                 writes the partition no more"
            );
        }
        Ok(())
    }

    /// Drops `partition`'s open files and pending notices; when this processor claimed it
    /// at generation `claimed`, also deletes the files of that claim from its last commit
    /// on (named with that generation, so never another owner's). Returns (that commit's
    /// offset, files deleted).
    fn discard(&mut self, partition: i32, claimed: Option<u64>) -> Result<(i64, usize)> {
        let (from, feedback_from) = self.committed.remove(&partition).unwrap_or_default();
        let mut removed = 0;
        if let Some((mut e, mut d)) = self.events.remove(&partition) {
            e.abort()?;
            d.abort()?;
            if let Some(g) = claimed {
                removed +=
                    e.remove_generation_from(g, from)? + d.remove_generation_from(g, from)?;
            }
        }
        if let Some((mut d, mut u)) = self.feedback.remove(&partition) {
            d.abort()?;
            u.abort()?;
            if let (Some(g), Some(f)) = (claimed, feedback_from) {
                removed += d.remove_generation_from(g, f)? + u.remove_generation_from(g, f)?;
            }
        }
        if let Some(n) = &self.notify {
            n.release(partition);
        }
        Ok((from, removed))
    }
}
