//! The in-process generator source: synthetic traffic straight into the pipeline, paced in
//! real time (the demo) or as fast as possible (benchmarks).

use std::sync::Arc;
use std::time::{Duration, Instant};

use inferwatch_schemas::RawBatch;

use crate::generate::{Generator, GeneratorConfig};
use crate::source::{Source, SourceError};

pub struct GeneratorSource {
    name: String,
    source: Arc<str>,
    gen: Generator,
    total: u64,
    /// Wall-clock pacing: `Some(events per second)`; `None` runs flat out.
    pace: Option<f64>,
    started: Option<Instant>,
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
        }
    }
}

impl Source for GeneratorSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_batch(&mut self, max: usize) -> Result<Option<RawBatch>, SourceError> {
        let produced = self.gen.produced();
        if produced >= self.total {
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
        Ok(Some(batch))
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn progress(&self) -> Option<(u64, u64)> {
        Some((self.gen.produced(), self.total))
    }
}
