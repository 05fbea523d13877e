//! `inferwatch`: the command line. It parses flags, calls the runtime and prints; each
//! subcommand is a module of `commands`.

mod commands;
mod display;
mod gateway;
mod http;
mod progress;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use inferwatch_runtime::Config;
use inferwatch_schemas::time::parse_duration;

use commands::{
    demo::DemoArgs, generate::GenerateArgs, ingest::IngestArgs, query::QueryArgs,
    report::ReportArgs, run::RunArgs,
};

#[derive(Parser)]
#[command(
    name = "inferwatch",
    version,
    about = "Production monitor for AI inference: quality, calibration, drift, cost and loop safety from a stream of model-call events"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
pub struct Common {
    /// Config file (TOML); see config.example.toml. Flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the Parquet tables go [default: ./inferwatch-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Window size, e.g. 1m [config: window.size].
    #[arg(long, value_parser = parse_duration)]
    window: Option<Duration>,
    /// Window slide for hopping windows, e.g. 30s; must divide --window [config: window.slide].
    #[arg(long, value_parser = parse_duration)]
    slide: Option<Duration>,
    /// Also post alerts to this Slack incoming webhook (a secret: never printed or logged)
    /// [config: slack.webhooks].
    #[arg(
        long,
        value_name = "URL",
        env = "INFERWATCH_SLACK_WEBHOOK",
        hide_env_values = true
    )]
    slack_webhook: Option<String>,
    /// Threads that decode and aggregate (0: one per core; 1: one thread does everything)
    /// [config: runtime.threads].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Serve /metrics (Prometheus), /livez and /readyz on this address, e.g.
    /// 127.0.0.1:9464 [config: http.listen].
    #[arg(long, value_name = "HOST:PORT")]
    http: Option<String>,
}

impl Common {
    pub fn load(&self) -> Result<Config> {
        let mut c = Config::load(self.config.as_deref())?;
        if let Some(d) = &self.data_dir {
            c.data_dir = d.clone();
        }
        if let Some(w) = self.window {
            c.processor.window.size = w;
            if self.slide.is_none() {
                c.processor.window.slide = None;
            }
        }
        if let Some(s) = self.slide {
            c.processor.window.slide = Some(s);
        }
        if let Some(n) = self.threads {
            c.runtime.threads = n;
        }
        if let Some(a) = &self.http {
            c.http.listen = a.clone();
        }
        if let Some(w) = &self.slack_webhook {
            c.slack.webhooks.push(w.clone());
        }
        let dir = c.data_dir.display().to_string();
        let plain = dir
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "/._-".contains(ch));
        c.processor.alerts.query_command = if plain {
            format!("inferwatch query --data-dir {dir}")
        } else {
            format!(
                "inferwatch query --data-dir '{}'",
                dir.replace('\'', "'\\''")
            )
        };
        c.validate()?;
        Ok(c)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Generated traffic through the whole pipeline in one process: Parquet out, live progress,
    /// a summary of the last windows.
    Demo(DemoArgs),
    /// Process a file to its end, or consume Kafka until stopped (Ctrl-C / SIGTERM).
    Run(RunArgs),
    /// SQL over the tables (events, metrics, metrics_latest, calibration_bins, alerts, dead_letter,
    /// feedback_unmatched); date and hour are partition columns.
    Query(QueryArgs),
    /// Write synthetic traffic as NDJSON. Same seed, same bytes.
    Generate(GenerateArgs),
    /// An HTTP gateway into Kafka: POST /v1/events and /v1/feedback (JSON, NDJSON) and
    /// /v1/traces (OTLP/HTTP, GenAI spans become events); replies once Kafka acknowledged.
    Ingest(IngestArgs),
    /// One self-contained HTML report from the tables: reliability diagrams, metrics over
    /// time, alerts, dead letters.
    Report(ReportArgs),
}

/// Kafka connection flags; each overrides the `[kafka]` config.
#[derive(clap::Args, Clone, Default)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, host:port [config: kafka.brokers].
    #[arg(long, value_name = "HOST:PORT")]
    brokers: Option<String>,
    /// Consumer group [config: kafka.group; default inferwatch].
    #[arg(long)]
    group: Option<String>,
    /// Events topic [config: kafka.topic; default inference-events].
    #[arg(long)]
    topic: Option<String>,
    /// Feedback topic, keyed and partitioned like the events [config: kafka.feedback_topic].
    #[arg(long)]
    feedback_topic: Option<String>,
}

impl KafkaArgs {
    pub fn apply(&self, c: &mut Config) {
        if let Some(b) = &self.brokers {
            c.kafka.brokers = b.clone();
        }
        if let Some(g) = &self.group {
            c.kafka.group = g.clone();
        }
        if let Some(t) = &self.topic {
            c.kafka.topic = t.clone();
        }
        if let Some(t) = &self.feedback_topic {
            c.kafka.feedback_topic = t.clone();
        }
    }
}

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("INFERWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
        // The HTTP client logs request URLs at debug/trace, and a Slack webhook URL is a
        // secret: its logs stay at warn whatever INFERWATCH_LOG says.
        .add_directive("ureq=warn".parse().expect("valid directive"))
        .add_directive("ureq_proto=warn".parse().expect("valid directive"))
        .add_directive("rustls=warn".parse().expect("valid directive"))
        // The Kafka source closes its consumer itself, so that the callbacks of leaving the
        // group run while the pipeline still writes; the client's drop then closes it again
        // and logs that second close failing, as an ERROR an operator should not see.
        .add_directive(
            "rdkafka::consumer::base_consumer=off"
                .parse()
                .expect("valid directive"),
        );
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = real_main(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo(args) => args.run(),
        Command::Run(args) => args.run(),
        Command::Query(args) => args.run(),
        Command::Generate(args) => args.run(),
        Command::Report(args) => args.run(),
        Command::Ingest(args) => args.run(),
    }
}
