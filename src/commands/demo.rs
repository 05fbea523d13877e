//! `inferwatch demo`: generated traffic through the whole pipeline in one process.

use std::time::Duration;

use anyhow::Result;
use inferwatch_generator::{GeneratorConfig, GeneratorSource, Scenario};
use inferwatch_ingest::Source;
use inferwatch_runtime::jobs::Job;
use inferwatch_schemas::time::{now_ms, parse_duration};

use super::{check_rate, recover_point, run_job, tokio_runtime};
use crate::{display, Common};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// How long to run (wall clock).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Events per second.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Traffic scenario.
    #[arg(long, default_value = "steady")]
    scenario: Scenario,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// End the trouble at this share of the run (e.g. 0.75), so its alerts resolve.
    #[arg(long, value_name = "SHARE")]
    recover_at: Option<f64>,
    #[command(flatten)]
    common: Common,
}

impl DemoArgs {
    pub fn run(mut self) -> Result<()> {
        check_rate(self.rate)?;
        let defaults = self.common.config.is_none();
        if self.common.window.is_none() && defaults {
            // Short windows, so a 30-second demo closes several.
            self.common.window = Some(Duration::from_secs(10));
        }
        let mut config = self.common.load()?;
        if defaults {
            // A short demo has few events per key and window: a shorter drift baseline
            // and a lower sample gate let drift show within a minute.
            config.processor.drift.baseline_windows = 3;
            config.processor.drift.min_samples = 30;
        }
        let total = (self.duration.as_secs_f64() * self.rate).ceil() as u64;
        let gen = GeneratorConfig {
            seed: self.seed,
            rate: self.rate,
            start_ms: now_ms(),
            total_events: total,
            scenario: self.scenario,
            recover_at: recover_point(self.recover_at, total)?,
            // Labels for unlabeled predictions arrive two windows late: revisions.
            feedback_delay_ms: Some(2 * config.processor.window.size.as_millis() as i64),
            ..GeneratorConfig::default()
        };
        eprintln!(
            "inferwatch demo: {scenario} traffic at {rate} events/s for {}, windows of {}, writing to {}",
            humantime::format_duration(self.duration),
            humantime::format_duration(config.processor.window.size),
            config.data_dir.display(),
            scenario = self.scenario.name(),
            rate = self.rate,
        );
        let mut source = GeneratorSource::new(gen, true);
        let feedback: Box<dyn Source> = Box::new(source.feedback_source());
        let job = Job::replay(&config, Box::new(source), Some(feedback))?;
        let report = run_job(job, &config.http)?;
        display::demo_summary(&report, &tokio_runtime()?)?;
        Ok(())
    }
}
