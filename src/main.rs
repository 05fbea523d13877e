//! `inferwatch`: the command line. Thin: it parses flags and wires the crates together.

mod alerting;
mod config;
mod display;
mod pipeline;
mod query;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use inferwatch_schemas::time::now_ms;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use inferwatch_ingest::generate::{Generator, GeneratorConfig, Scenario};
use inferwatch_ingest::{
    EventProducer, FileSource, GeneratorSource, KafkaFollower, KafkaSource, KafkaSourceConfig,
    Source,
};
use inferwatch_sink::KafkaOutputConfig;

use crate::pipeline::{Pipeline, RunOptions};
use inferwatch_processor::config::parse_duration;

use crate::config::Config;

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
struct Common {
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
}

impl Common {
    fn load(&self) -> Result<Config> {
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
    Demo {
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
    },
    /// Process a file to its end, or consume Kafka until stopped (Ctrl-C / SIGTERM).
    Run {
        /// Input file: file:PATH (NDJSON, one event per line). Leave out with --brokers.
        #[arg(long, value_name = "file:PATH")]
        source: Option<String>,
        /// Feedback events (late labels joined by event_id): file:PATH, NDJSON.
        #[arg(long, value_name = "file:PATH")]
        feedback: Option<String>,
        #[command(flatten)]
        kafka: KafkaArgs,
        /// Kafka: stop once no event arrived for this long, closing every window (backfills,
        /// tests). Without it the processor runs until Ctrl-C or SIGTERM.
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        stop_when_idle: Option<Duration>,
        #[command(flatten)]
        common: Common,
    },
    /// SQL over the tables (events, metrics, metrics_latest, calibration_bins, alerts, dead_letter,
    /// feedback_unmatched); date and hour are partition columns.
    Query {
        /// Where the Parquet tables are: a directory or s3://bucket/prefix (credentials and
        /// endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL).
        #[arg(long, value_name = "DIR", default_value = "./inferwatch-data")]
        data_dir: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        format: query::Format,
        /// The query, e.g. "SELECT service, sum(requests) FROM metrics GROUP BY service".
        sql: String,
    },
    /// Write synthetic traffic as NDJSON. Same seed, same bytes.
    Generate {
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
    },
}

/// Kafka connection flags; each overrides the `[kafka]` config.
#[derive(clap::Args, Clone, Default)]
struct KafkaArgs {
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
    fn apply(&self, c: &mut Config) {
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
        .add_directive("rustls=warn".parse().expect("valid directive"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = real_main(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Sets the returned flag on Ctrl-C or SIGTERM, so a run stops cleanly: it writes what it
/// has and checkpoints before it exits.
fn stop_on_signal(rt: &tokio::runtime::Runtime) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    rt.spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        flag.store(true, Ordering::Relaxed);
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        flag.store(true, Ordering::Relaxed);
    });
    stop
}

fn real_main(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo {
            duration,
            rate,
            scenario,
            seed,
            recover_at,
            mut common,
        } => {
            if !(rate > 0.0 && rate.is_finite()) {
                bail!("--rate must be a positive number of events per second");
            }
            let defaults = common.config.is_none();
            if common.window.is_none() && defaults {
                // Short windows, so a 30-second demo closes several.
                common.window = Some(Duration::from_secs(10));
            }
            let mut config = common.load()?;
            if defaults {
                // A short demo has few events per key and window: a shorter drift baseline
                // and a lower sample gate let drift show within a minute.
                config.processor.drift.baseline_windows = 3;
                config.processor.drift.min_samples = 30;
            }
            let total = (duration.as_secs_f64() * rate).ceil() as u64;
            let gen = GeneratorConfig {
                seed,
                rate,
                start_ms: now_ms(),
                total_events: total,
                scenario,
                recover_at: recover_point(recover_at, total)?,
                // Labels for unlabeled predictions arrive two windows late: revisions.
                feedback_delay_ms: Some(2 * config.processor.window.size.as_millis() as i64),
                ..GeneratorConfig::default()
            };
            eprintln!(
                "inferwatch demo: {scenario} traffic at {rate} events/s for {}, windows of {}, writing to {}",
                humantime::format_duration(duration),
                humantime::format_duration(config.processor.window.size),
                config.data_dir.display(),
                scenario = scenario.name(),
            );
            let mut source = GeneratorSource::new(gen, true);
            let feedback: Box<dyn Source> = Box::new(source.feedback_source());
            let report = process(
                Box::new(source),
                Some(feedback),
                &config,
                RunOptions::default(),
                true,
            )?;
            let rt = runtime()?;
            display::demo_summary(&report, &rt)?;
            Ok(())
        }
        Command::Run {
            source,
            feedback,
            kafka,
            stop_when_idle,
            common,
        } => {
            let mut config = common.load()?;
            kafka.apply(&mut config);
            match (source.as_deref(), config.kafka.brokers.is_empty()) {
                (Some(source), _) => {
                    let Some(path) = source.strip_prefix("file:") else {
                        bail!("--source {source:?}: expected file:PATH (or --brokers HOST:PORT for Kafka)");
                    };
                    let source = Box::new(FileSource::open(Path::new(path))?);
                    let feedback = feedback
                        .as_deref()
                        .map(|f| -> Result<Box<dyn Source>> {
                            let Some(path) = f.strip_prefix("file:") else {
                                bail!("--feedback {f:?}: expected file:PATH");
                            };
                            Ok(Box::new(FileSource::open(Path::new(path))?))
                        })
                        .transpose()?;
                    let report = process(source, feedback, &config, RunOptions::default(), false)?;
                    display::run_summary(&report);
                }
                (None, false) => {
                    if feedback.is_some() {
                        bail!("--feedback is for file sources; with --brokers use --feedback-topic TOPIC");
                    }
                    let report = consume(&config, stop_when_idle)?;
                    display::run_summary(&report);
                }
                (None, true) => {
                    bail!("nothing to read: give --source file:PATH or --brokers HOST:PORT")
                }
            }
            Ok(())
        }
        Command::Query {
            data_dir,
            format,
            sql,
        } => {
            let rt = runtime()?;
            let options = inferwatch_sink::StoreOptions::default();
            let store = config::open_store_to_read(&data_dir, &options)?;
            let batches = rt.block_on(query::run(&store, &sql))?;
            let text = query::render(&batches, format)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}")?;
            Ok(())
        }
        Command::Generate {
            count,
            rate,
            seed,
            scenario,
            start,
            out,
            feedback_out,
            feedback_delay,
            routes,
            recover_at,
            kafka,
            config,
        } => {
            if !(rate > 0.0 && rate.is_finite()) {
                bail!("--rate must be a positive number of events per second");
            }
            let mut cfg = GeneratorConfig {
                seed,
                rate,
                total_events: count,
                scenario,
                route_spread: routes,
                recover_at: recover_point(recover_at, count)?,
                feedback_delay_ms: feedback_out
                    .is_some()
                    .then_some(feedback_delay.as_millis() as i64),
                ..GeneratorConfig::default()
            };
            if let Some(s) = start {
                cfg.start_ms = inferwatch_schemas::time::parse_rfc3339(&s).with_context(|| {
                    format!("--start {s:?} is not an RFC 3339 time such as 2026-01-01T00:00:00Z")
                })?;
            }
            let mut file_config = Config::load(config.as_deref())?;
            kafka.apply(&mut file_config);
            let k = &file_config.kafka;
            match k.brokers.is_empty() {
                false => {
                    let feedback = (!k.feedback_topic.is_empty()).then_some(&k.feedback_topic);
                    if feedback.is_some() {
                        cfg.feedback_delay_ms = Some(feedback_delay.as_millis() as i64);
                    }
                    produce(cfg, k, feedback.map(String::as_str))
                }
                true => generate(
                    cfg,
                    &out.context("--out FILE is required (or --brokers HOST:PORT)")?,
                    feedback_out.as_deref(),
                ),
            }
        }
    }
}

fn generate(cfg: GeneratorConfig, out: &Path, feedback_out: Option<&Path>) -> Result<()> {
    let to_stdout = out == Path::new("-");
    let mut w: Box<dyn Write> = if to_stdout {
        Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::io::stdout().lock(),
        ))
    } else {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let f =
            std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        Box::new(std::io::BufWriter::with_capacity(1 << 20, f))
    };
    let mut fw = feedback_out
        .map(|p| -> Result<_> {
            let f =
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
            Ok(std::io::BufWriter::with_capacity(1 << 20, f))
        })
        .transpose()?;
    let (mut fbuf, mut feedback) = (Vec::new(), 0u64);
    let total = cfg.total_events;
    let mut gen = Generator::new(cfg);
    let mut buf = Vec::with_capacity(1 << 16);
    let show = !to_stdout && std::io::stderr().is_terminal();
    while gen.next_payload(&mut buf) {
        buf.push(b'\n');
        if buf.len() >= 1 << 16 {
            w.write_all(&buf)?;
            buf.clear();
        }
        if let Some(fw) = fw.as_mut() {
            // Feedback in time order, each once the traffic has reached its time.
            let now = gen.event_time();
            while gen.next_feedback(&mut fbuf, Some(now)) {
                fbuf.push(b'\n');
                feedback += 1;
            }
            if fbuf.len() >= 1 << 16 {
                fw.write_all(&fbuf)?;
                fbuf.clear();
            }
        }
        if show && gen.produced().is_multiple_of(500_000) {
            eprint!("\r  {} / {} events", gen.produced(), total);
        }
    }
    w.write_all(&buf)?;
    w.flush()?;
    if let Some(mut fw) = fw {
        while gen.next_feedback(&mut fbuf, None) {
            fbuf.push(b'\n');
            feedback += 1;
        }
        fw.write_all(&fbuf)?;
        fw.flush()?;
        eprintln!(
            "wrote {feedback} feedback events to {}",
            feedback_out.expect("writer exists").display()
        );
    }
    if !to_stdout {
        if show {
            eprint!("\r");
        }
        eprintln!(
            "wrote {} events ({} malformed) to {}",
            gen.produced(),
            gen.malformed(),
            out.display()
        );
    }
    Ok(())
}

fn process(
    source: Box<dyn Source>,
    feedback: Option<Box<dyn Source>>,
    config: &Config,
    options: RunOptions,
    live: bool,
) -> Result<pipeline::RunReport> {
    let store = config.open_store()?;
    let delivery = start_delivery(config, &store, source.name(), None)?;
    let options = RunOptions {
        notify: delivery.as_ref().map(|d| d.enqueuer()),
        ..options
    };
    let mut pipeline = Pipeline::new(config, &store, source.name(), options)?;
    if let Some(f) = feedback {
        pipeline = pipeline.with_feedback(f, false);
    }
    run_pipeline(pipeline, source, live, delivery)
}

/// Opens the alert outbox and starts delivery when there is a Slack webhook or an alert
/// topic.
fn start_delivery(
    config: &Config,
    store: &inferwatch_sink::Store,
    source: &str,
    topics: Option<alerting::AlertTopics>,
) -> Result<Option<alerting::AlertDelivery>> {
    alerting::AlertDelivery::start(store, source, &config.slack.deliveries()?, topics.as_ref())
}

fn run_pipeline(
    pipeline: Pipeline,
    source: Box<dyn Source>,
    live: bool,
    delivery: Option<alerting::AlertDelivery>,
) -> Result<pipeline::RunReport> {
    let rt = runtime()?;
    let stop = stop_on_signal(&rt);
    let tty = std::io::stderr().is_terminal();
    let line = std::cell::RefCell::new(display::ProgressLine::new(tty, live));
    let report = pipeline.run(
        source,
        &stop,
        |p| line.borrow_mut().update(p),
        |n| line.borrow_mut().print(&display::notice_line(n)),
    );
    line.borrow_mut().done();
    if let Some(d) = delivery {
        // Give the loops a moment to send what the last windows raised; the rest waits in
        // the outbox for the next start.
        let wait = if stop.load(Ordering::Relaxed) { 2 } else { 30 };
        let left = d.finish(Duration::from_secs(wait));
        if left > 0 {
            eprintln!(
                "alerts: {left} notices wait in the outbox; they are delivered on the next start"
            );
        }
    }
    report
}

/// `inferwatch run --brokers`: a consumer-group member with checkpoints.
fn consume(config: &Config, stop_when_idle: Option<Duration>) -> Result<pipeline::RunReport> {
    let k = &config.kafka;
    let options = RunOptions {
        checkpoints: true,
        stop_when_idle,
        kafka_output: Some(KafkaOutputConfig {
            brokers: k.brokers.clone(),
            dead_letter_topic: k.dead_letter_topic.clone(),
            metrics_topic: k.metrics_topic.clone(),
            properties: k.properties.clone(),
        }),
        notify: None,
    };
    let topics = alerting::AlertTopics {
        brokers: k.brokers.clone(),
        alerts: k.alerts_topic.clone(),
        control: k.control_topic.clone(),
        properties: k.properties.clone(),
    };
    // Checked before anything is consumed: a wrong key or bucket stops the run here.
    let store = config.open_store()?;
    let delivery = start_delivery(config, &store, &k.topic, Some(topics))?;
    let options = RunOptions {
        notify: delivery.as_ref().map(|d| d.enqueuer()),
        ..options
    };
    let mut pipeline = Pipeline::new(config, &store, &k.topic, options)?;
    if !k.feedback_topic.is_empty() {
        let mut fc = KafkaSourceConfig::new(
            &k.brokers,
            &format!("{}-feedback", k.group),
            &k.feedback_topic,
        );
        fc.properties = k.properties.clone();
        // Polled between event batches: it must not wait when there is nothing.
        fc.poll_wait = Duration::ZERO;
        pipeline = pipeline.with_feedback(Box::new(KafkaFollower::new(&fc)?), true);
    }
    let mut kc = KafkaSourceConfig::new(&k.brokers, &k.group, &k.topic);
    kc.properties = k.properties.clone();
    let source = KafkaSource::new(&kc, pipeline.owner())?;
    eprintln!(
        "inferwatch: consuming {} from {} as group {}, writing to {}",
        k.topic,
        k.brokers,
        k.group,
        store.display()
    );
    run_pipeline(pipeline, Box::new(source), true, delivery)
}

/// `inferwatch generate --brokers`: the same traffic as the file, produced to Kafka.
fn produce(
    cfg: GeneratorConfig,
    kafka: &config::KafkaConfig,
    feedback_topic: Option<&str>,
) -> Result<()> {
    let (brokers, topic) = (kafka.brokers.as_str(), kafka.topic.as_str());
    #[derive(serde::Deserialize)]
    struct KeyFields<'a> {
        #[serde(borrow)]
        service: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        model: std::borrow::Cow<'a, str>,
    }
    let producer = EventProducer::with_properties(brokers, topic, &kafka.properties)?;
    let feedback = feedback_topic
        .map(|t| EventProducer::with_properties(brokers, t, &kafka.properties))
        .transpose()?;
    let mut fbuf = Vec::new();
    let mut feedback_sent = 0u64;
    let total = cfg.total_events;
    let mut gen = Generator::new(cfg);
    let mut buf = Vec::with_capacity(4096);
    let show = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    loop {
        buf.clear();
        if !gen.next_payload(&mut buf) {
            break;
        }
        // Keyed service/model like any service would; broken payloads go unkeyed.
        let key = serde_json::from_slice::<KeyFields>(&buf)
            .ok()
            .map(|k| format!("{}/{}", k.service, k.model));
        producer.send_raw(key.as_deref().map(str::as_bytes), &buf)?;
        if let Some(f) = &feedback {
            let now = gen.event_time();
            while let Some(key) = gen.next_feedback_keyed(&mut fbuf, Some(now)) {
                f.send_raw(Some(key.as_bytes()), &fbuf)?;
                fbuf.clear();
                feedback_sent += 1;
            }
        }
        if show && gen.produced().is_multiple_of(100_000) {
            eprint!("\r  {} / {} events", gen.produced(), total);
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .context("waiting for the brokers to acknowledge")?;
    if let Some(f) = &feedback {
        while let Some(key) = gen.next_feedback_keyed(&mut fbuf, None) {
            f.send_raw(Some(key.as_bytes()), &fbuf)?;
            fbuf.clear();
            feedback_sent += 1;
        }
        f.flush(Duration::from_secs(60))
            .context("waiting for the brokers to acknowledge the feedback")?;
        eprintln!(
            "produced {feedback_sent} feedback events to {}",
            feedback_topic.unwrap_or_default()
        );
    }
    if show {
        eprint!("\r");
    }
    eprintln!(
        "produced {} events ({} malformed) to {topic} at {brokers} in {:.1}s",
        gen.produced(),
        gen.malformed(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `--recover-at SHARE` as an event index.
fn recover_point(share: Option<f64>, total: u64) -> Result<Option<u64>> {
    match share {
        None => Ok(None),
        Some(s) if s > 0.5 && s <= 1.0 => Ok(Some((s * total as f64) as u64)),
        Some(s) => {
            bail!("--recover-at {s}: give a share of the run after the onset (0.5), e.g. 0.75")
        }
    }
}
