//! The main loop: poll, process, feed the join, checkpoint, report progress.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use inferwatch_ingest::{Behind, Source};
use inferwatch_schemas::Notice;

use super::partitions::Shared;
use super::sink_thread::ToSink;
use super::{Pipeline, Progress, RunReport};
use crate::error::{Context, Result, RuntimeError};
use crate::fail;

impl Pipeline {
    /// Runs `source` to its end (or until `stop`, or until idle when asked), calling
    /// `on_progress` about twice a second and `on_metrics` for every batch of closed windows.
    pub fn run(
        mut self,
        mut source: Box<dyn Source>,
        stop: &AtomicBool,
        mut on_progress: impl FnMut(&Progress),
        mut on_notice: impl FnMut(&Notice),
    ) -> Result<RunReport> {
        match self.run_loop(source.as_mut(), stop, &mut on_progress, &mut on_notice) {
            Ok(report) => Ok(report),
            Err(e) => Err(self.sink_error(e)),
        }
    }

    fn run_loop(
        &mut self,
        source: &mut dyn Source,
        stop: &AtomicBool,
        on_progress: &mut impl FnMut(&Progress),
        on_notice: &mut impl FnMut(&Notice),
    ) -> Result<RunReport> {
        let started = Instant::now();
        let mut clock = self.clock();
        let mut ending = End::Stopped;
        let telemetry = self.shared().telemetry.clone();
        while !stop.load(Ordering::Relaxed) {
            telemetry.beat();
            if clock.last_gauges.elapsed() >= GAUGES_EVERY {
                clock.last_gauges = Instant::now();
                self.refresh_gauges(source);
            }
            match self.step(source, &mut clock, on_notice) {
                Ok(None) => {}
                Ok(Some(end)) => {
                    ending = end;
                    break;
                }
                // Stop as on a signal: what was read before is made durable (files,
                // checkpoints), and the error ends the run after that.
                Err(e) if clock.source_failed => {
                    ending = End::Failed(e);
                    break;
                }
                Err(e) => return Err(e),
            }
            if clock.last_report.elapsed() >= Duration::from_millis(500) {
                clock.last_report = Instant::now();
                on_progress(&self.progress(source, started));
            }
        }
        let source_error = match ending {
            End::Failed(e) => Some(e),
            End::Finished => {
                self.end_of_input(clock.batch_size, on_notice)?;
                None
            }
            End::Stopped => None,
        };
        if clock.checkpoints {
            let commits = self.shared().checkpoint_and_wait_all()?;
            source.commit(&commits);
            self.deliver_last(stop.load(Ordering::Relaxed) || source_error.is_some());
        }
        // Leaving the group checkpoints whatever is still assigned (nothing new by now).
        source.close();
        self.report(source, started, source_error, on_progress)
    }

    /// One turn of the loop: a poll, what it brought, the feedback join, checkpoints and
    /// commits. `Some`: the loop ends.
    fn step(
        &mut self,
        source: &mut dyn Source,
        clock: &mut Clock,
        on_notice: &mut impl FnMut(&Notice),
    ) -> Result<Option<End>> {
        let polled = Instant::now();
        let raw = match source.next_batch(clock.batch_size) {
            Ok(raw) => raw,
            Err(e) => {
                clock.source_failed = true;
                let name = source.name().to_string();
                return Err(RuntimeError::from(e).context(format!("reading from {name}")));
            }
        };
        let now = Instant::now();
        let mut s = self.shared();
        s.time.source += now - polled;
        if let Some(e) = s.fatal.take() {
            return Err(e);
        }
        match raw {
            None => return Ok(Some(End::Finished)),
            Some(raw) if raw.is_empty() => {
                s.tick(now)?;
                if clock.checkpoints {
                    let idle = clock.idle_for_long(now, s.rebalanced_at, s.parts.is_empty());
                    s.take_back_fenced(source, clock.fence_grace(), idle, now)?;
                }
                if clock.idle_for_long(now, s.rebalanced_at, s.parts.is_empty()) {
                    if let Some(why) = source.stalled() {
                        fail!("{why}");
                    }
                    drop(s);
                    if !clock.still_behind(source, now)? {
                        return Ok(Some(End::Finished));
                    }
                    s = self.shared();
                }
            }
            Some(raw) => {
                clock.last_payload = now;
                clock.behind_since = None;
                clock.behind_checked = None;
                s.process(raw, now)?;
            }
        }
        drop(s);
        self.feed_the_join(clock.batch_size)?;
        let mut s = self.shared();
        for n in s.take_notices() {
            on_notice(&n);
        }
        s.seek_back(source)?;
        if clock.checkpoints {
            if clock.last_roll.elapsed() >= clock.checkpoint_interval {
                clock.last_roll = Instant::now();
                let parts: Vec<i32> = s.parts.keys().copied().collect();
                for p in parts {
                    s.checkpoint(p, false, false)?;
                }
            }
        } else if !source.is_bounded() && clock.last_roll.elapsed() >= clock.roll_interval {
            clock.last_roll = Instant::now();
            s.send(ToSink::Flush)?;
        }
        drop(s);
        let acked: Vec<(i32, i64)> = self.acks.try_iter().collect();
        if !acked.is_empty() {
            source.commit(&acked);
        }
        Ok(None)
    }

    /// Follows the feedback partitions the events' assignment asks for, reads feedback
    /// while what is held is due, and joins what is due.
    fn feed_the_join(&mut self, batch_size: usize) -> Result<()> {
        let Some(fsrc) = self.feedback.as_mut() else {
            return Ok(());
        };
        let mut s = self.shared.lock().expect("not poisoned");
        // The join reads every partition's watermark: what the workers hold goes first.
        s.settle()?;
        let follow = s
            .feedback
            .as_mut()
            .map(|f| std::mem::take(&mut f.follow))
            .unwrap_or_default();
        for (p, start) in follow {
            match start {
                Some(offset) => fsrc.follow(p, offset),
                None => fsrc.unfollow(p),
            }
        }
        while s.wants_feedback() {
            match fsrc
                .next_batch(batch_size)
                .with_context(|| format!("reading feedback from {}", fsrc.name()))?
            {
                None => s.feedback.as_mut().expect("has feedback").done = true,
                Some(raw) if raw.is_empty() => break,
                Some(raw) => s.read_feedback(raw)?,
            }
        }
        s.release_feedback(false)
    }

    /// End of input: the rest of the feedback joins, then every open window closes and is
    /// written.
    fn end_of_input(
        &mut self,
        batch_size: usize,
        on_notice: &mut impl FnMut(&Notice),
    ) -> Result<()> {
        let mut s = self.shared.lock().expect("not poisoned");
        if let Some(fsrc) = self.feedback.as_mut() {
            // A file to its end; a topic until it has had nothing for half a second.
            let mut quiet = 0;
            while !s.feedback.as_ref().is_some_and(|f| f.done) && quiet < 10 {
                match fsrc.next_batch(batch_size)? {
                    None => s.feedback.as_mut().expect("has feedback").done = true,
                    Some(raw) if raw.is_empty() => {
                        quiet += 1;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Some(raw) => {
                        quiet = 0;
                        s.read_feedback(raw)?;
                    }
                }
            }
            s.release_feedback(true)?;
        }
        s.finish()?;
        s.emit_revisions(true)?;
        for n in s.take_notices() {
            on_notice(&n);
        }
        Ok(())
    }

    /// Delivers what the last windows raised while their partitions are still ours:
    /// leaving the group hands the outbox logs over with the partitions.
    fn deliver_last(&mut self, stopping: bool) {
        let (notify, barrier) = {
            let s = self.shared();
            let barrier = s
                .options
                .notify
                .as_ref()
                .and_then(|_| s.sink_barrier().ok());
            (s.options.notify.clone(), barrier)
        };
        // The last windows' notices are in the outbox once the writer got this far.
        if let Some(rx) = barrier {
            let _ = rx.recv();
        }
        if let Some(n) = notify {
            let wait = if stopping { 2 } else { 30 };
            n.drain(Duration::from_secs(wait));
        }
    }

    /// Stops the sink thread and reports the run.
    fn report(
        &mut self,
        source: &mut dyn Source,
        started: Instant,
        source_error: Option<RuntimeError>,
        on_progress: &mut impl FnMut(&Progress),
    ) -> Result<RunReport> {
        let (mut progress, checkpoint_wait, window_size_ms, time, spilled_bytes) = {
            let mut s = self.shared();
            if let Some(e) = s.fatal.take() {
                return Err(e);
            }
            s.close()?;
            let progress = self.progress_of(&s, source, started);
            let size = s.config.processor.window.size.as_millis() as i64;
            (
                progress,
                s.checkpoint_wait,
                size,
                s.time,
                s.spill.spilled_bytes(),
            )
        };
        self.refresh_gauges(source);
        let (files_written, checkpoint_time) = match self.sink.take() {
            Some(sink) => sink.finish().context("writing Parquet failed")?,
            None => (0, Duration::ZERO),
        };
        if let Some(e) = source_error {
            return Err(e);
        }
        progress.partitions = 0;
        on_progress(&progress);
        Ok(RunReport {
            progress,
            window_size_ms,
            files_written,
            store: self.data_dir.clone(),
            checkpoint_wait,
            checkpoint_time,
            notices_waiting: 0,
            time,
            spilled_bytes,
        })
    }

    fn clock(&self) -> Clock {
        let s = self.shared();
        let now = Instant::now();
        Clock {
            batch_size: s.config.source.batch_size,
            roll_interval: s.config.sink.roll_interval,
            checkpoint_interval: s.config.checkpoint.interval,
            checkpoints: s.options.checkpoints,
            stop_when_idle: s.options.stop_when_idle,
            last_report: now,
            last_gauges: now - GAUGES_EVERY,
            last_roll: now,
            last_payload: now,
            source_failed: false,
            behind_since: None,
            behind_checked: None,
        }
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().expect("not poisoned")
    }

    /// What each partition holds and how far behind it is, for the process's metrics.
    /// A partition busy on a worker keeps its last figures: the driver does not wait.
    fn refresh_gauges(&self, source: &dyn Source) {
        let lag = source.lag();
        let s = self.shared();
        let known: BTreeMap<i32, u64> = lag.iter().flatten().copied().collect();
        let mut gauges = BTreeMap::new();
        let mut restoring = false;
        for (&p, part) in &s.parts {
            let mut g = part.try_lock().ok().map(|part| part.gauges());
            let behind = known.get(&p).copied();
            // A source that counts lag but not yet this partition's: just assigned.
            restoring |= lag.is_some() && behind.is_none();
            if let Some(g) = g.as_mut() {
                g.lag = behind;
            }
            gauges.insert(p, g);
        }
        s.telemetry.set_partitions(gauges, restoring);
    }

    fn progress(&self, source: &dyn Source, started: Instant) -> Progress {
        self.progress_of(&self.shared(), source, started)
    }

    fn progress_of(&self, s: &Shared, source: &dyn Source, started: Instant) -> Progress {
        let counters = &s.telemetry.counters;
        let stats = counters.stats();
        Progress {
            elapsed: started.elapsed(),
            payloads: counters.payloads.load(Ordering::Relaxed),
            events: stats.events,
            dead_letters: counters.dead_letters.load(Ordering::Relaxed),
            late_events: stats.late_events,
            windows_closed: stats.windows_closed,
            metric_rows: stats.metric_rows,
            checkpoints: s.checkpoints,
            partitions: s.parts.len(),
            source_done: source.progress(),
            feedback: s.feedback_counts(),
            sessions_evicted: s.sessions_evicted(),
        }
    }
}

/// How often the partitions' gauges are refreshed for the process's metrics.
const GAUGES_EVERY: Duration = Duration::from_secs(1);

/// How often a quiet source is asked whether it is behind (a broker round trip).
const BEHIND_RECHECK: Duration = Duration::from_secs(1);

/// How the loop ended.
enum End {
    /// The source is exhausted, or quiet for `stop_when_idle`: every window closes.
    Finished,
    /// Asked to stop: open windows stay open in the checkpoints.
    Stopped,
    /// The source failed; the run ends with its error once what was read is durable.
    Failed(RuntimeError),
}

/// The loop's settings and timers.
struct Clock {
    batch_size: usize,
    roll_interval: Duration,
    checkpoint_interval: Duration,
    checkpoints: bool,
    stop_when_idle: Option<Duration>,
    last_report: Instant,
    /// When the partitions' gauges were last refreshed.
    last_gauges: Instant,
    last_roll: Instant,
    last_payload: Instant,
    source_failed: bool,
    /// Since when the source has been quiet for `stop_when_idle` with messages still
    /// unread in the partitions held.
    behind_since: Option<Instant>,
    /// When the source was last asked how far behind it is.
    behind_checked: Option<Instant>,
}

impl Clock {
    /// How long a partition fenced here (yet still assigned) waits for its revocation
    /// before it is taken back: the other processor commits at least this often while it
    /// holds the partition.
    fn fence_grace(&self) -> Duration {
        self.checkpoint_interval * 2 + Duration::from_secs(1)
    }

    /// Quiet means: nothing arrived for `stop_when_idle` while holding partitions, and not
    /// just after a rebalance. A member without partitions waits longer, in case the group
    /// is still settling.
    fn idle_for_long(&self, now: Instant, rebalanced_at: Instant, no_partitions: bool) -> bool {
        let Some(d) = self.stop_when_idle else {
            return false;
        };
        let since = self.last_payload.max(rebalanced_at);
        let limit = if no_partitions { d * 3 } else { d };
        now.duration_since(since) >= limit
    }

    /// Quiet, yet is the source behind? Then the run waits (broker slow, a rebalance
    /// settling), up to six times `stop_when_idle`, and fails after that: stopping would
    /// leave those messages unread although the run was asked to read everything.
    fn still_behind(&mut self, source: &mut dyn Source, now: Instant) -> Result<bool> {
        let d = self.stop_when_idle.unwrap_or_default();
        if self
            .behind_checked
            .is_some_and(|t| now.duration_since(t) < BEHIND_RECHECK)
        {
            return Ok(true);
        }
        self.behind_checked = Some(now);
        let why = match source.behind() {
            Behind::Unknown => return Ok(false),
            Behind::Partitions(behind) if behind.is_empty() => return Ok(false),
            Behind::Partitions(behind) => {
                let unread: u64 = behind.iter().map(|(_, n)| n).sum();
                let parts: Vec<i32> = behind.iter().map(|(p, _)| *p).collect();
                format!("partitions {parts:?} hold {unread} unread messages")
            }
            Behind::Unanswered(why) => format!("{why} (so there may be unread messages)"),
        };
        let since = *self.behind_since.get_or_insert_with(|| {
            tracing::warn!("nothing arrived for {d:?}, yet {why}: waiting");
            now
        });
        if now.duration_since(since) >= d * 6 {
            fail!(
                "{why}, but nothing arrived for {:?}: stopping without them. Check the \
                 brokers; a restart resumes from the last checkpoints",
                now.duration_since(self.last_payload)
            );
        }
        Ok(true)
    }
}
