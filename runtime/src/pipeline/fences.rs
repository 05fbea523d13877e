//! Fences: partitions another processor took over (its commit came after this one's claim)
//! while this one still held them. Their state here is dropped; a partition the consumer
//! still hands here is claimed back from the newest checkpoint.

use std::time::{Duration, Instant};

use inferwatch_ingest::Source;

use super::partitions::Shared;
use super::sink_thread::ToSink;
use crate::error::Result;
use crate::failed;

impl Shared {
    /// Lets `partition` be claimed again after another processor took it over. What this
    /// processor sent the sink before it learned of the takeover (outputs, a checkpoint of
    /// the old state) is handled first, while the partition still counts as fenced there:
    /// dropped, never written under the new claim.
    pub(super) fn unfence(&mut self, partition: i32) -> Result<()> {
        if !self
            .fenced
            .lock()
            .expect("not poisoned")
            .contains(&partition)
        {
            return Ok(());
        }
        self.settle()?;
        self.sink_barrier()?
            .recv()
            .map_err(|_| failed!("the Parquet writer stopped"))?;
        self.forget_fence(partition);
        Ok(())
    }

    /// `partition` counts as this processor's again, or as nobody's here.
    pub(super) fn forget_fence(&mut self, partition: i32) {
        self.fenced.lock().expect("not poisoned").remove(&partition);
        self.fenced_since.remove(&partition);
    }

    /// True when another processor took `partition` over: its state is dropped here.
    pub(super) fn is_fenced(&mut self, partition: i32) -> Result<bool> {
        if !self
            .fenced
            .lock()
            .expect("not poisoned")
            .contains(&partition)
        {
            return Ok(false);
        }
        // What its worker still holds is processed first; the sink drops it.
        self.settle()?;
        if self.parts.remove(&partition).is_some() {
            self.cursors.remove(&partition);
            self.stop_following(partition);
            self.fenced_since.insert(partition, Instant::now());
        }
        Ok(true)
    }

    /// Claims `partition` back although another processor committed it: the consumer still
    /// hands it here. Processing resumes from that processor's checkpoint, or from offset 0
    /// when nobody committed it (nothing before is durable). Returns where it resumes.
    pub(super) fn reclaim(&mut self, partition: i32, now: Instant) -> Result<i64> {
        self.unfence(partition)?;
        self.settle()?;
        match self.assign(partition, now)? {
            Some(next) => Ok(next),
            None => {
                self.send(ToSink::Start { partition, from: 0 })?;
                if let Some(c) = self.cursors.get_mut(&partition) {
                    c.next = Some(0);
                }
                Ok(0)
            }
        }
    }

    /// Fenced partitions the consumer still holds but hands nothing of (it had read them to
    /// their end): after `grace`, or at once with `now_or_never` (the run is about to stop),
    /// each is claimed back from the newest checkpoint and the consumer goes back there.
    /// Otherwise nobody would read past that checkpoint. The grace lets a rebalance that
    /// takes the partition away arrive first.
    pub(super) fn take_back_fenced(
        &mut self,
        source: &dyn Source,
        grace: Duration,
        now_or_never: bool,
        now: Instant,
    ) -> Result<()> {
        // Only partitions still held here need the worker barrier of `is_fenced`.
        let fenced: Vec<i32> = self
            .fenced
            .lock()
            .expect("not poisoned")
            .iter()
            .copied()
            .filter(|p| self.parts.contains_key(p))
            .collect();
        for p in fenced {
            self.is_fenced(p)?;
        }
        let due: Vec<i32> = self
            .fenced_since
            .iter()
            .filter(|&(_, &t)| now_or_never || now.duration_since(t) >= grace)
            .map(|(&p, _)| p)
            .collect();
        for p in due {
            if !source.still_assigned(p) {
                continue;
            }
            tracing::warn!(
                "partition {p}: another processor committed it, yet it is still assigned here \
                 and nothing of it arrives: taking it back from the newest checkpoint"
            );
            let from = self.reclaim(p, now)?;
            self.seek_requests.push((p, from));
            self.rebalanced_at = now;
        }
        Ok(())
    }
}
