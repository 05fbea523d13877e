//! The in-process generator source: synthetic traffic straight into the pipeline, paced in
//! real time (the demo) or as fast as possible (benchmarks).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inferwatch_schemas::RawBatch;

use inferwatch_ingest::{Source, SourceError};

use crate::{Generator, GeneratorConfig};

pub struct GeneratorSource {
    name: String,
    source: Arc<str>,
    gen: Generator,
    total: u64,
    /// Wall-clock pacing: `Some(events per second)`; `None` runs flat out.
    pace: Option<f64>,
    started: Option<Instant>,
    feedback: Option<Arc<Mutex<FeedbackQueue>>>,
}

/// Feedback payloads on their way from a [`GeneratorSource`] to its [`GeneratedFeedback`].
#[derive(Default)]
struct FeedbackQueue {
    items: VecDeque<Vec<u8>>,
    done: bool,
}

/// The feedback stream of a generated run (`GeneratorConfig::feedback_delay_ms`): each
/// payload is handed out once the generated traffic has reached its time.
pub struct GeneratedFeedback {
    name: String,
    source: Arc<str>,
    queue: Arc<Mutex<FeedbackQueue>>,
    next_offset: i64,
}

impl GeneratorSource {
    pub fn new(cfg: GeneratorConfig, paced: bool) -> Self {
        let name = format!("generator:{}-{}", cfg.scenario.name(), cfg.seed);
        Self {
            source: Arc::from(name.as_str()),
            name,
            total: cfg.total_events,
            pace: paced.then_some(cfg.rate),
            gen: Generator::new(cfg),
            started: None,
            feedback: None,
        }
    }

    /// The feedback stream of this run; only generators with `feedback_delay_ms` fill it.
    pub fn feedback_source(&mut self) -> GeneratedFeedback {
        let queue = self.feedback.get_or_insert_with(Default::default).clone();
        let name = format!("{}-feedback", self.name);
        GeneratedFeedback {
            source: Arc::from(name.as_str()),
            name,
            queue,
            next_offset: 0,
        }
    }

    /// Moves feedback that is due into the queue (all of it once traffic ended).
    fn hand_over_feedback(&mut self, ended: bool) {
        let Some(q) = &self.feedback else { return };
        let up_to = (!ended).then(|| self.gen.event_time());
        let mut q = q.lock().expect("not poisoned");
        let mut buf = Vec::new();
        while self.gen.next_feedback(&mut buf, up_to) {
            q.items.push_back(std::mem::take(&mut buf));
        }
        q.done |= ended;
    }
}

impl Source for GeneratedFeedback {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_batch(&mut self, max: usize) -> Result<Option<RawBatch>, SourceError> {
        let mut q = self.queue.lock().expect("not poisoned");
        if q.items.is_empty() && q.done {
            return Ok(None);
        }
        let mut batch = RawBatch::new(self.source.clone(), 0);
        while batch.len() < max {
            let Some(item) = q.items.pop_front() else {
                break;
            };
            batch.push(&item, self.next_offset);
            self.next_offset += 1;
        }
        Ok(Some(batch))
    }

    fn is_bounded(&self) -> bool {
        true
    }
}

impl Source for GeneratorSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_batch(&mut self, max: usize) -> Result<Option<RawBatch>, SourceError> {
        let produced = self.gen.produced();
        if produced >= self.total {
            self.hand_over_feedback(true);
            return Ok(None);
        }
        let mut want = max as u64;
        if let Some(rate) = self.pace {
            let started = *self.started.get_or_insert_with(Instant::now);
            let due = (started.elapsed().as_secs_f64() * rate) as u64;
            want = want.min(due.saturating_sub(produced));
            if want == 0 {
                std::thread::sleep(Duration::from_millis(20));
                return Ok(Some(RawBatch::new(self.source.clone(), 0)));
            }
        }
        let mut batch =
            RawBatch::with_capacity(self.source.clone(), 0, want as usize, want as usize * 400);
        for _ in 0..want {
            let offset = self.gen.produced() as i64;
            let buf = batch.buffer_mut();
            let start = buf.len();
            if !self.gen.next_payload(buf) {
                break;
            }
            batch.commit_tail(start, offset);
        }
        self.hand_over_feedback(false);
        Ok(Some(batch))
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn progress(&self) -> Option<(u64, u64)> {
        Some((self.gen.produced(), self.total))
    }
}
