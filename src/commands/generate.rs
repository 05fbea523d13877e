//! `inferwatch generate`: synthetic traffic to an NDJSON file or a Kafka topic.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use inferwatch_generator::writers::{self, KafkaTarget};
use inferwatch_generator::{GeneratorConfig, Scenario};
use inferwatch_runtime::Config;
use inferwatch_schemas::time::parse_duration;

use super::{check_rate, recover_point};
use crate::progress::CountProgress;
use crate::KafkaArgs;

#[derive(clap::Args)]
pub struct GenerateArgs {
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Events per second of event time.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// steady, drift, miscalibration, cost-spike, runaway-loop, malformed.
    #[arg(long, default_value = "steady")]
    scenario: Scenario,
    /// Event time of the first event (RFC 3339) [default: 2026-01-01T00:00:00Z].
    #[arg(long)]
    start: Option<String>,
    /// Output file ("-" for standard output).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Also write feedback events here: a label for every prediction sent without
    /// `correct`, --feedback-delay after it.
    #[arg(long, value_name = "FILE")]
    feedback_out: Option<PathBuf>,
    /// How long after its prediction each feedback event comes.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    feedback_delay: Duration,
    /// Spread traffic over this many routes per service and model (many keys, for
    /// memory benchmarks).
    #[arg(long, default_value_t = 0)]
    routes: u32,
    /// End the scenario's trouble at this share of the run (e.g. 0.75: trouble from the
    /// middle to three quarters, steady after), so alerts resolve.
    #[arg(long, value_name = "SHARE")]
    recover_at: Option<f64>,
    /// Produce to Kafka instead of a file (keyed service/model).
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Config file whose [kafka] section (brokers, topic, properties such as TLS and
    /// SASL settings) the producer uses; flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl GenerateArgs {
    pub fn run(self) -> Result<()> {
        check_rate(self.rate)?;
        let mut cfg = GeneratorConfig {
            seed: self.seed,
            rate: self.rate,
            total_events: self.count,
            scenario: self.scenario,
            route_spread: self.routes,
            recover_at: recover_point(self.recover_at, self.count)?,
            feedback_delay_ms: self
                .feedback_out
                .is_some()
                .then_some(self.feedback_delay.as_millis() as i64),
            ..GeneratorConfig::default()
        };
        if let Some(s) = &self.start {
            cfg.start_ms = inferwatch_schemas::time::parse_rfc3339(s).with_context(|| {
                format!("--start {s:?} is not an RFC 3339 time such as 2026-01-01T00:00:00Z")
            })?;
        }
        let mut file_config = Config::load(self.config.as_deref())?;
        self.kafka.apply(&mut file_config);
        let k = &file_config.kafka;
        if k.brokers.is_empty() {
            let out = self
                .out
                .as_deref()
                .context("--out FILE is required (or --brokers HOST:PORT)")?;
            return to_file(cfg, out, self.feedback_out.as_deref());
        }
        let feedback_topic = (!k.feedback_topic.is_empty()).then_some(k.feedback_topic.as_str());
        if feedback_topic.is_some() {
            cfg.feedback_delay_ms = Some(self.feedback_delay.as_millis() as i64);
        }
        let target = KafkaTarget {
            brokers: &k.brokers,
            topic: &k.topic,
            feedback_topic,
            properties: &k.properties,
        };
        let mut progress = CountProgress::new(is_tty(), cfg.total_events, "events");
        let w = writers::produce(cfg, target, |n| progress.update(n))?;
        progress.done();
        if let Some(t) = feedback_topic {
            eprintln!("produced {} feedback events to {t}", w.feedback);
        }
        eprintln!(
            "produced {} events ({} malformed) to {} at {} in {:.1}s",
            w.events,
            w.malformed,
            k.topic,
            k.brokers,
            w.elapsed.as_secs_f64()
        );
        Ok(())
    }
}

fn create(path: &Path) -> Result<std::io::BufWriter<std::fs::File>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(std::io::BufWriter::with_capacity(1 << 20, f))
}

fn to_file(cfg: GeneratorConfig, out: &Path, feedback_out: Option<&Path>) -> Result<()> {
    let to_stdout = out == Path::new("-");
    let mut w: Box<dyn Write> = if to_stdout {
        Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::io::stdout().lock(),
        ))
    } else {
        Box::new(create(out)?)
    };
    let mut fw = feedback_out.map(create).transpose()?;
    // Progress goes to stderr, so it shows even when the events go to stdout.
    let mut progress = CountProgress::new(is_tty(), cfg.total_events, "events");
    let written =
        writers::write_ndjson(cfg, &mut w, fw.as_mut().map(|f| f as &mut dyn Write), |n| {
            progress.update(n)
        })?;
    progress.done();
    if let Some(p) = feedback_out {
        eprintln!(
            "wrote {} feedback events to {}",
            written.feedback,
            p.display()
        );
    }
    if !to_stdout {
        eprintln!(
            "wrote {} events ({} malformed) to {}",
            written.events,
            written.malformed,
            out.display()
        );
    }
    Ok(())
}

fn is_tty() -> bool {
    std::io::stderr().is_terminal()
}
