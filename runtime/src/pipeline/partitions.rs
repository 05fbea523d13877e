//! The processing side: each source partition's operator, its offsets, and what it sends to
//! the sink thread.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use inferwatch_ingest::Source;
use inferwatch_processor::spill::Spill;
use inferwatch_processor::{Chain, Collector, Emitted, Watermark};
use inferwatch_schemas::{Limits, Notice, RawBatch};
use inferwatch_sink::{Checkpoint, CheckpointStore};

use super::feedback::FeedbackSide;
use super::part::{Outlet, Part};
use super::sink_thread::ToSink;
use super::workers::Workers;
use super::RunOptions;
use crate::config::Config;
use crate::error::{Context, Result, RuntimeError};
use crate::failed;
use crate::telemetry::Telemetry;

/// Where the driver stands in a partition: what it handed on, independent of how far the
/// partition's worker got.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Cursor {
    /// The first offset not yet handed on; `None` until the first payload of a partition
    /// without a checkpoint.
    pub(super) next: Option<i64>,
    /// How often the partition was sent back to `next`: batches the client had fetched
    /// before a seek can still arrive after it, so a gap is taken for real only when the
    /// broker no longer has those offsets, or after a few tries (a compacted topic).
    pub(super) seeks: u32,
}

/// Seeks back to one offset before a gap after it is taken as offsets that are gone.
const MAX_SEEKS: u32 = 3;

/// Everything the main loop and (for Kafka) the rebalance callbacks share.
pub(super) struct Shared {
    pub(super) config: Config,
    pub(super) source: Arc<str>,
    pub(super) options: RunOptions,
    pub(super) parts: BTreeMap<i32, Arc<Mutex<Part>>>,
    pub(super) cursors: BTreeMap<i32, Cursor>,
    /// (partition, offset) the source should go back to.
    pub(super) seek_requests: Vec<(i32, i64)>,
    /// The run's health; its `counters` are what every partition adds to.
    pub(super) telemetry: Arc<Telemetry>,
    /// Partitions another processor took over (a commit of theirs came after this one's
    /// claim): their state here is dropped; a batch that still arrives for one claims it
    /// anew from the latest checkpoint.
    pub(super) fenced: Arc<Mutex<BTreeSet<i32>>>,
    /// Fenced partitions whose state was dropped here, and since when: while the consumer
    /// still holds one and hands nothing of it, it is taken back after a grace period.
    pub(super) fenced_since: BTreeMap<i32, Instant>,
    pub(super) limits: Limits,
    /// Where outputs go; `None` once the run is over.
    pub(super) outlet: Option<Outlet>,
    /// The worker threads partitions run on; `None`: on the driver's thread.
    pub(super) workers: Option<Workers>,
    pub(super) store: CheckpointStore,
    pub(super) checkpoints: u64,
    pub(super) checkpoint_wait: Duration,
    pub(super) time: super::TimeSpent,
    /// The process's memory budget for `sessions` counts and where they spill past it.
    pub(super) spill: Arc<Spill>,
    /// An error raised inside a rebalance callback, reported by the main loop.
    pub(super) fatal: Option<RuntimeError>,
    /// When the assignment last changed: the idle clock of `stop_when_idle` restarts there.
    pub(super) rebalanced_at: Instant,
    /// The feedback join's side of the run, when there is a feedback source.
    pub(super) feedback: Option<FeedbackSide>,
    /// The input ended (not a stop): every window of every partition held has closed.
    pub(super) finished: bool,
}

/// Sends the revisions `part`'s operators have ready (all pending ones with `force`);
/// returns how many `metrics` rows they revise.
fn send_revisions(part: &mut Part, force: bool, out: &Outlet) -> Result<u64> {
    let mut collected = Collector::default();
    part.chain.revisions(force, &mut collected)?;
    let emitted: Vec<Emitted> = collected.drain().collect();
    let revised = emitted
        .iter()
        .map(|e| match e {
            Emitted::Revisions(r) => r.metrics.num_rows() as u64,
            _ => 0,
        })
        .sum();
    part.send(emitted, out)?;
    Ok(revised)
}

pub(super) fn lock(part: &Mutex<Part>) -> MutexGuard<'_, Part> {
    part.lock()
        .expect("a partition's state is never left half-updated")
}

impl Shared {
    pub(super) fn outlet(&self) -> Result<&Outlet> {
        self.outlet
            .as_ref()
            .ok_or_else(|| failed!("the Parquet writer is gone"))
    }

    pub(super) fn send(&self, msg: ToSink) -> Result<()> {
        self.outlet()?.send(msg)
    }

    pub(super) fn new_operator(&self) -> Result<Chain> {
        Ok(Chain::new(&self.config.processor)?.with_spill(Some(self.spill.clone())))
    }

    /// The allowed out-of-orderness: a partition's watermark is its newest event time minus
    /// this.
    pub(super) fn out_of_orderness_ms(&self) -> i64 {
        self.config
            .processor
            .window
            .max_out_of_orderness
            .as_millis() as i64
    }

    /// Waits until the workers processed every batch handed to them: the driver may then
    /// touch any partition.
    pub(super) fn settle(&self) -> Result<()> {
        match &self.workers {
            Some(w) => w.barrier(),
            None => Ok(()),
        }
    }

    /// Runs `f` on each partition held, in partition order, once the workers are idle.
    pub(super) fn each_part(&self, mut f: impl FnMut(i32, &mut Part) -> Result<()>) -> Result<()> {
        self.settle()?;
        for (&k, part) in &self.parts {
            f(k, &mut lock(part))?;
        }
        Ok(())
    }

    /// Stops the workers (after what they hold) and lets go of the sink: the run is over.
    pub(super) fn close(&mut self) -> Result<()> {
        let stopped = match self.workers.take() {
            Some(w) => w.stop().map(|(busy, waited)| {
                self.time.processing += busy;
                self.time.waiting_for_workers += waited;
            }),
            None => Ok(()),
        };
        self.outlet = None;
        stopped
    }

    /// Asks the sink to answer once it has handled everything sent before; the receiver
    /// gets that answer.
    pub(super) fn sink_barrier(&self) -> Result<Receiver<()>> {
        let (tx, rx) = sync_channel(1);
        self.send(ToSink::Barrier(tx))?;
        Ok(rx)
    }

    /// Notices raised since the last call.
    pub(super) fn take_notices(&self) -> Vec<Notice> {
        self.outlet
            .as_ref()
            .map(|o| std::mem::take(&mut *o.notices.lock().expect("not poisoned")))
            .unwrap_or_default()
    }

    /// A partition arrives: restore its checkpoint, if any. Returns where to resume.
    pub(super) fn assign(&mut self, partition: i32, now: Instant) -> Result<Option<i64>> {
        let mut op = self.new_operator()?;
        if self.feedback.is_some() {
            op.window_mut()
                .expect_feedback(&self.config.processor.feedback);
        }
        let ckpt = if self.options.checkpoints {
            // Claimed, not just read: a previous owner that still writes can commit no more.
            self.store.claim(partition)?
        } else {
            None
        };
        let next = match ckpt {
            Some(c) => {
                op.restore(&c.state).with_context(|| {
                    format!("restoring partition {partition} of {}", self.source)
                })?;
                self.send(ToSink::RevisionsFrom {
                    partition,
                    seq: op.window().revision_seq(),
                    sessions_at: op.window().sessions_at(),
                    emitted_through: op.window().emitted_through(),
                })?;
                if let Some(fb) = self.feedback.as_mut().filter(|f| f.co_partitioned) {
                    fb.follow.push((partition, Some(c.feedback_offset)));
                    fb.held.remove(&partition);
                    match c.feedback_offset {
                        Some(o) => fb.next_read.insert(partition, o),
                        None => fb.next_read.remove(&partition),
                    };
                    let msg = ToSink::FeedbackStart {
                        source: fb.source.clone(),
                        partition,
                        from: c.feedback_offset.unwrap_or(0),
                    };
                    self.send(msg)?;
                }
                self.send(ToSink::Start {
                    partition,
                    from: c.next_offset,
                })?;
                tracing::info!(
                    "partition {partition}: resuming from checkpoint at offset {}",
                    c.next_offset
                );
                Some(c.next_offset)
            }
            None => {
                if let Some(fb) = self.feedback.as_mut().filter(|f| f.co_partitioned) {
                    fb.follow.push((partition, Some(None)));
                    fb.held.remove(&partition);
                    fb.next_read.remove(&partition);
                    let msg = ToSink::FeedbackStart {
                        source: fb.source.clone(),
                        partition,
                        from: 0,
                    };
                    self.send(msg)?;
                }
                None
            }
        };
        let part = Part::new(partition, op, next, self.limits.clone(), now);
        self.parts.insert(partition, Arc::new(Mutex::new(part)));
        self.cursors.insert(partition, Cursor { next, seeks: 0 });
        Ok(next)
    }

    /// The part of `raw` that continues the partition where the driver stands in it:
    /// offsets a checkpoint covers are dropped, and a gap after one seeks back once. `None`:
    /// nothing to process now.
    fn resume(&mut self, raw: RawBatch) -> Result<Option<RawBatch>> {
        let partition = raw.partition;
        let checkpoints = self.options.checkpoints;
        let cursor = *self.cursors.entry(partition).or_default();
        let first = raw.offset(0);
        let kept = match cursor.next {
            // Offsets the checkpoint already covers (the committed offset can lag it).
            Some(next) if first < next => {
                let mut kept = RawBatch::new(raw.source.clone(), partition);
                for i in (0..raw.len()).filter(|&i| raw.offset(i) >= next) {
                    kept.push(raw.payload(i), raw.offset(i));
                }
                if kept.is_empty() {
                    return Ok(None);
                }
                kept
            }
            Some(next) if first > next && checkpoints && cursor.seeks < MAX_SEEKS => {
                // The consumer is past where the partition stands (after a broker restart,
                // or a claim taken back mid-stream): go back. The driver asks the broker
                // whether those offsets still exist first.
                tracing::warn!(
                    "partition {partition}: expected offset {next}, got {first}; seeking back"
                );
                if let Some(c) = self.cursors.get_mut(&partition) {
                    c.seeks += 1;
                }
                self.seek_requests.push((partition, next));
                return Ok(None);
            }
            Some(next) if first > next && checkpoints => {
                tracing::warn!(
                    "partition {partition}: offsets {next}..{first} are not on the broker (retention or compaction?); going on"
                );
                raw
            }
            Some(_) => raw,
            None => {
                // No checkpoint: processing starts here, and earlier files from here on go.
                self.send(ToSink::Start {
                    partition,
                    from: first,
                })?;
                raw
            }
        };
        let last = kept.last_offset().unwrap_or(first);
        if let Some(c) = self.cursors.get_mut(&partition) {
            c.next = Some(last + 1);
            c.seeks = 0;
        }
        Ok(Some(kept))
    }

    /// The broker's first offset of `partition` is `low`, past where the partition stands:
    /// the offsets before it are gone (retention), and processing goes on from `low`.
    pub(super) fn skip_gone(&mut self, partition: i32, low: i64) {
        if let Some(c) = self.cursors.get_mut(&partition) {
            if let Some(next) = c.next.filter(|&n| n < low) {
                tracing::warn!(
                    "partition {partition}: offsets {next}..{low} are no longer on the broker \
                     (retention?); going on from {low}"
                );
                c.next = Some(low);
                c.seeks = 0;
            }
        }
    }

    /// Moves the source back to where each partition that asked for it must read again
    /// (`seek_requests`), or past it when the broker no longer has those offsets.
    pub(super) fn seek_back(&mut self, source: &mut dyn Source) -> Result<()> {
        for (p, mut off) in std::mem::take(&mut self.seek_requests) {
            if let Some(low) = source.start_of(p).filter(|&low| low > off) {
                self.skip_gone(p, low);
                off = low;
            }
            if !source.seek(p, off) {
                if !self.parts.contains_key(&p) {
                    // Revoked meanwhile: its next owner resumes it from the checkpoint.
                    tracing::warn!("partition {p}: no longer assigned here; not seeking back");
                    continue;
                }
                // The batch past the checkpoint was dropped; restarting replays it.
                return Err(failed!(
                    "partition {p}: cannot seek back to offset {off}; restart the processor \
                     to resume from its checkpoint"
                ));
            }
        }
        Ok(())
    }

    /// Hands one batch to its partition: claimed first when it is new here, then
    /// processed on the partition's worker (or here, without workers).
    pub(super) fn process(&mut self, raw: RawBatch, now: Instant) -> Result<()> {
        let partition = raw.partition;
        if self.is_fenced(partition)? {
            // Another processor committed it, yet the consumer still hands it to this one:
            // take it back from that commit (a gap in offsets seeks).
            tracing::warn!(
                "partition {partition}: still assigned here after another processor committed \
                 it; resuming from that processor's checkpoint"
            );
            self.reclaim(partition, now)?;
        } else if !self.parts.contains_key(&partition) {
            if self.options.checkpoints {
                // Polled before its revocation: the partition's next owner reads it.
                tracing::debug!("partition {partition}: not assigned here; batch dropped");
                return Ok(());
            }
            self.settle()?;
            self.assign(partition, now)?;
        }
        let Some(raw) = self.resume(raw)? else {
            return Ok(());
        };
        let part = self.parts[&partition].clone();
        match self.workers.as_mut() {
            Some(w) => w.dispatch(part, raw, now),
            None => {
                let out = self.outlet()?;
                let started = Instant::now();
                let r = lock(&part).process(raw, now, out);
                self.time.processing += started.elapsed();
                r
            }
        }
    }

    /// Sends the revisions the operators have ready (all pending ones with `force`).
    pub(super) fn emit_revisions(&mut self, force: bool) -> Result<()> {
        let mut revised = 0;
        let out = self.outlet()?;
        self.each_part(|_, part| {
            revised += send_revisions(part, force, out)?;
            Ok(())
        })?;
        self.count_revised(revised);
        Ok(())
    }

    fn count_revised(&mut self, rows: u64) {
        if let Some(fb) = self.feedback.as_mut() {
            fb.counts.revised_rows += rows;
        }
    }

    /// Sessions ended early past `loops.max_sessions`, over the partitions held.
    pub(super) fn sessions_evicted(&self) -> u64 {
        self.parts
            .values()
            .map(|p| lock(p).chain.window().session_stats().evicted)
            .sum()
    }

    /// Nothing arrived: partitions idle for `idle_timeout` follow the active ones' watermark.
    pub(super) fn tick(&mut self, now: Instant) -> Result<()> {
        let idle = self.config.processor.window.idle_timeout;
        let ooo = self.out_of_orderness_ms();
        let mut active_wm: Option<i64> = None;
        self.each_part(|_, p| {
            if now.duration_since(p.last_active) < idle {
                if let Some(t) = p.chain.window().max_event_time() {
                    active_wm = Some(active_wm.map_or(t - ooo, |w| w.min(t - ooo)));
                }
            }
            Ok(())
        })?;
        let Some(wm) = active_wm else {
            return Ok(());
        };
        let out = self.outlet()?;
        self.each_part(|_, part| {
            if now.duration_since(part.last_active) < idle {
                return Ok(());
            }
            part.watermark(Watermark::At(wm), out)
        })
    }

    /// Closes every open window and ends every session of every partition (end of a
    /// finite source).
    pub(super) fn finish(&mut self) -> Result<()> {
        self.finished = true;
        let out = self.outlet()?;
        self.each_part(|_, part| part.watermark(Watermark::End, out))
    }

    /// After the end of input, `partition` arrived with `end` as the broker's end offset:
    /// read to that end (by an earlier owner), it finishes as the others did.
    pub(super) fn finish_late(&mut self, partition: i32, end: i64) -> Result<()> {
        if !self.finished {
            return Ok(());
        }
        self.settle()?;
        let Some(part) = self.parts.get(&partition) else {
            return Ok(());
        };
        let mut part = lock(part);
        if part.next_offset.is_none_or(|n| n < end) {
            return Ok(());
        }
        tracing::info!(
            "partition {partition}: arrived after the end of input; closing its windows"
        );
        let out = self.outlet()?;
        part.watermark(Watermark::End, out)?;
        let revised = send_revisions(&mut part, true, out)?;
        drop(part);
        self.count_revised(revised);
        Ok(())
    }

    /// Queues a checkpoint of `partition`; returns the receiver to wait on when `wait`.
    pub(super) fn checkpoint(
        &mut self,
        partition: i32,
        release: bool,
        wait: bool,
    ) -> Result<Option<Receiver<Result<()>>>> {
        if self.is_fenced(partition)? {
            return Ok(None);
        }
        self.settle()?;
        let Some(part) = self.parts.get(&partition) else {
            return Ok(None);
        };
        let mut part = lock(part);
        let Some(next_offset) = part.next_offset else {
            return Ok(None);
        };
        if part.checkpointed == Some(next_offset) && !release {
            return Ok(None);
        }
        let state = part.chain.snapshot()?;
        part.checkpointed = Some(next_offset);
        drop(part);
        let feedback_offset = self
            .feedback
            .as_ref()
            .filter(|f| f.co_partitioned)
            .and_then(|f| f.position(partition));
        let (done, rx) = if wait {
            let (s, r) = sync_channel(1);
            (Some(s), Some(r))
        } else {
            (None, None)
        };
        self.checkpoints += 1;
        self.send(ToSink::Checkpoint {
            partition,
            ckpt: Checkpoint {
                next_offset,
                state,
                feedback_offset,
            },
            release,
            done,
        })?;
        Ok(rx)
    }

    /// Checkpoints `partitions`, waits until they are durable, and returns the offsets to
    /// commit. `release` drops them from this processor afterwards.
    pub(super) fn checkpoint_and_wait(
        &mut self,
        partitions: &[i32],
        release: bool,
    ) -> Result<Vec<(i32, i64)>> {
        let started = Instant::now();
        self.settle()?;
        let mut waits = Vec::new();
        for &p in partitions {
            if let Some(rx) = self.checkpoint(p, release, true)? {
                waits.push(rx);
            }
        }
        for rx in waits {
            rx.recv()
                .map_err(|_| failed!("the Parquet writer stopped"))??;
        }
        self.checkpoint_wait += started.elapsed();
        let mut commits = Vec::new();
        for &p in partitions {
            let fenced = self.is_fenced(p)?;
            if release {
                // Kafka takes it away (or gives it back later): either way, start afresh.
                self.forget_fence(p);
            }
            if fenced {
                continue;
            }
            if let Some(next) = self.parts.get(&p).and_then(|part| lock(part).next_offset) {
                commits.push((p, next));
            }
            if release {
                self.parts.remove(&p);
                self.cursors.remove(&p);
                self.stop_following(p);
            }
        }
        Ok(commits)
    }

    /// Checkpoints every partition held and waits until they are durable; returns the
    /// offsets to commit.
    pub(super) fn checkpoint_and_wait_all(&mut self) -> Result<Vec<(i32, i64)>> {
        let parts: Vec<i32> = self.parts.keys().copied().collect();
        self.checkpoint_and_wait(&parts, false)
    }

    /// Events partition `p` left: its feedback partition is no longer ours either.
    pub(super) fn stop_following(&mut self, p: i32) {
        if let Some(fb) = self.feedback.as_mut().filter(|f| f.co_partitioned) {
            fb.follow.push((p, None));
            fb.held.remove(&p);
            fb.next_read.remove(&p);
        }
    }
}
