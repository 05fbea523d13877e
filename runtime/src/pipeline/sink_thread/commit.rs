//! Commits: completing a partition's files and writing its checkpoint generation; and
//! fencing, when another processor took the partition over.

use std::sync::mpsc::SyncSender;
use std::time::Instant;

use inferwatch_sink::{Checkpoint, SinkError};

use super::SinkThread;
use crate::error::Result;

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

    /// The partition was lost to another processor: drop its open files, write nothing.
    pub(crate) fn abort(&mut self, partition: i32) -> Result<()> {
        self.store.release(partition);
        self.committed.remove(&partition);
        if let Some(n) = &self.notify {
            n.release(partition);
        }
        if let Some((mut e, mut d)) = self.events.remove(&partition) {
            e.abort()?;
            d.abort()?;
        }
        if let Some((mut d, mut u)) = self.feedback.remove(&partition) {
            d.abort()?;
            u.abort()?;
        }
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
        let held = self.store.generation(partition);
        if let Err(e) = self.flush(partition) {
            // Another processor that took the partition over removes this one's open files.
            if self.claims && self.store.superseded(partition)? {
                tracing::warn!("partition {partition}: {e}; another processor took it over");
                self.fence(partition, held)?;
                return Ok(false);
            }
            return Err(e);
        }
        match self.store.save(partition, ckpt) {
            Ok(()) => {}
            Err(SinkError::Fenced { .. }) => {
                self.fence(partition, held)?;
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
        Ok(true)
    }

    /// Another processor owns `partition` now: this one drops its state of it, deletes what
    /// it wrote since its last commit when it held generation `held`, and stops writing it.
    pub(crate) fn fence(&mut self, partition: i32, held: Option<u64>) -> Result<()> {
        match held {
            Some(g) => self.drop_fenced(partition, g)?,
            None => {
                // Released or lost before: nothing of this processor's is left to delete.
                self.committed.remove(&partition);
                for (mut a, mut b) in self
                    .events
                    .remove(&partition)
                    .into_iter()
                    .chain(self.feedback.remove(&partition))
                {
                    a.abort()?;
                    b.abort()?;
                }
            }
        }
        self.store.release(partition);
        self.fenced.lock().expect("not poisoned").insert(partition);
        Ok(())
    }

    /// Another processor took `partition` over while this one held generation `g`: delete
    /// what this one wrote after its last commit (files named with `g`, so never the new
    /// owner's) and stop writing the partition.
    pub(crate) fn drop_fenced(&mut self, partition: i32, g: u64) -> Result<()> {
        let (from, feedback_from) = self.committed.remove(&partition).unwrap_or_default();
        let mut removed = 0;
        if let Some((mut e, mut d)) = self.events.remove(&partition) {
            e.abort()?;
            d.abort()?;
            removed += e.remove_generation_from(g, from)? + d.remove_generation_from(g, from)?;
        }
        if let Some((mut d, mut u)) = self.feedback.remove(&partition) {
            d.abort()?;
            u.abort()?;
            if let Some(f) = feedback_from {
                removed += d.remove_generation_from(g, f)? + u.remove_generation_from(g, f)?;
            }
        }
        if let Some(n) = &self.notify {
            n.release(partition);
        }
        tracing::error!(
            "partition {partition} was taken over by another processor: removed the {removed} \
             files this one wrote after its last checkpoint (offset {from}); it writes the \
             partition no more"
        );
        Ok(())
    }
}
