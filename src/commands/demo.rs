//! `inferwatch demo`: generated traffic through the whole pipeline in one process.

use std::time::Duration;

use anyhow::Result;
use inferwatch_generator::{GeneratorConfig, GeneratorSource, Scenario};
use inferwatch_ingest::Source;
use inferwatch_runtime::jobs::Job;
use inferwatch_schemas::time::{now_ms, parse_duration};

use super::{check_rate, recover_point, run_job, tokio_runtime, OnSignal};
use crate::gateway::{banner, serve_in_process};
use crate::{display, Common};
use inferwatch_ingest::gateway::{LocalQueue, LocalSource, Outlet};
use inferwatch_ingest::merge::Merged;
use inferwatch_runtime::Config;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// How long to run (wall clock).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Events per second.
    #[arg(long, default_value_t = 4000.0)]
    rate: f64,
    /// Traffic scenario. The default, mixed, gives each service its own trouble halfway
    /// through (fraud-screen overconfident, search-rerank drifting, checkout-assistant's cost
    /// spiking, support-bot sessions looping) and recovers at 0.75 of the run.
    #[arg(long, default_value = "mixed")]
    scenario: Scenario,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// End the trouble at this share of the run (e.g. 0.75), so its alerts resolve
    /// [default: 0.75 for mixed, none for the others].
    #[arg(long, value_name = "SHARE")]
    recover_at: Option<f64>,
    /// Also take events over HTTP into the same pipeline (POST /v1/events, /v1/traces:
    /// JSON, NDJSON, OTLP/HTTP), beside the generated traffic, until the demo ends.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    #[command(flatten)]
    common: Common,
}

impl DemoArgs {
    pub fn run(mut self) -> Result<()> {
        check_rate(self.rate)?;
        let defaults = self.common.config.is_none();
        if self.common.window.is_none() && defaults {
            // Short windows, so that 30 seconds hold a baseline, trouble lasting the
            // windows alert rules wait for (`for`), and a recovery as long.
            self.common.window = Some(Duration::from_secs(2));
        }
        let mut config = self.common.load()?;
        if defaults {
            // A short demo has few events per key and window: shorter drift and cost
            // baselines and a lower sample gate let trouble show within seconds, and a
            // breaker tries again after two windows instead of five minutes.
            config.processor.drift.baseline_windows = 3;
            config.processor.drift.min_samples = 30;
            config.processor.cost.min_baseline = 3;
            config.processor.alerts.breaker_cooldown = 2 * config.processor.window.size;
        }
        let total = (self.duration.as_secs_f64() * self.rate).ceil() as u64;
        let gen = GeneratorConfig {
            seed: self.seed,
            rate: self.rate,
            start_ms: now_ms(),
            total_events: total,
            scenario: self.scenario,
            recover_at: recover_point(
                self.recover_at
                    .or((self.scenario == Scenario::Mixed).then_some(0.75)),
                total,
            )?,
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
        let mut source: Box<dyn Source> = Box::new(source);
        if let Some(addr) = &self.listen {
            source = with_gateway(source, addr, &config)?;
        }
        let job = Job::replay(&config, source, Some(feedback))?;
        let report = run_job(job, &config.http, OnSignal::Stop)?;
        let rt = tokio_runtime()?;
        display::demo_summary(&report, &rt)?;
        // Beside the tables when they are on this disk; here when they are in a bucket.
        let out = report
            .store
            .local_dir()
            .map_or_else(|| "report.html".into(), |d| d.join("report.html"));
        let scope = crate::report::Scope {
            since: None,
            service: None,
        };
        if crate::report::write(&rt, &report.store, &scope, &out)?.is_some() {
            println!("\nthe report, with pictures: {}", out.display());
        }
        Ok(())
    }
}

/// `demo --listen`: the gateway's events join the generated ones (their own partition);
/// when the generator ends, the gateway stops accepting and what it took is processed.
fn with_gateway(
    generated: Box<dyn Source>,
    addr: &str,
    config: &Config,
) -> Result<Box<dyn Source>> {
    let queue = LocalQueue::new(1);
    let outlet = Outlet::Local {
        events: queue.clone(),
        feedback: None,
    };
    let served = serve_in_process(addr, config, outlet)?;
    eprintln!(
        "inferwatch demo: {}",
        banner(served.addr, "beside the generated traffic")
    );
    let http = LocalSource::new(generated.name(), queue.clone()).with_wait(Duration::ZERO);
    let end = move || {
        if let Err(e) = served.shutdown() {
            eprintln!("error: {e:#}");
        }
        queue.close();
    };
    Ok(Box::new(Merged::new(
        generated,
        Box::new(http),
        Box::new(end),
    )))
}
