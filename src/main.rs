//! `inferwatch`: the command line. Thin: it parses flags and wires the crates together.

mod config;
mod display;
mod pipeline;
mod query;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use inferwatch_ingest::generate::{Generator, GeneratorConfig, Scenario};
use inferwatch_ingest::{FileSource, GeneratorSource, Source};
use inferwatch_processor::config::parse_duration;

use crate::config::Config;

#[derive(Parser)]
#[command(name = "inferwatch", version, about = "Production monitor for AI inference: quality, calibration, drift, cost and loop safety from a stream of model-call events")]
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
        #[command(flatten)]
        common: Common,
    },
    /// Process a source to its end and exit.
    Run {
        /// Input: file:PATH (NDJSON, one event per line).
        #[arg(long, value_name = "file:PATH")]
        source: String,
        #[command(flatten)]
        common: Common,
    },
    /// SQL over the tables (events, metrics, dead_letter); date and hour are partition columns.
    Query {
        /// Where the Parquet tables are [default: ./inferwatch-data].
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
        out: PathBuf,
    },
}

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("INFERWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
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

/// Sets the returned flag on Ctrl-C, so a run stops cleanly and still writes what it has.
fn stop_on_ctrl_c(rt: &tokio::runtime::Runtime) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    rt.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::Relaxed);
        }
    });
    stop
}

fn real_main(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo { duration, rate, scenario, seed, mut common } => {
            if !(rate > 0.0 && rate.is_finite()) {
                bail!("--rate must be a positive number of events per second");
            }
            if common.window.is_none() && common.config.is_none() {
                // Short windows, so a 30-second demo closes several.
                common.window = Some(Duration::from_secs(10));
            }
            let config = common.load()?;
            let total = (duration.as_secs_f64() * rate).ceil() as u64;
            let gen = GeneratorConfig {
                seed,
                rate,
                start_ms: now_ms(),
                total_events: total,
                scenario,
                ..GeneratorConfig::default()
            };
            eprintln!(
                "inferwatch demo: {scenario} traffic at {rate} events/s for {}, windows of {}, writing to {}",
                humantime::format_duration(duration),
                humantime::format_duration(config.processor.window.size),
                config.data_dir.display(),
                scenario = scenario.name(),
            );
            let source = Box::new(GeneratorSource::new(gen, true));
            let report = process(source, &config, true)?;
            display::demo_summary(&report)?;
            Ok(())
        }
        Command::Run { source, common } => {
            let config = common.load()?;
            let Some(path) = source.strip_prefix("file:") else {
                bail!("--source {source:?}: expected file:PATH (Kafka sources come with --brokers)");
            };
            let source = Box::new(FileSource::open(Path::new(path))?);
            let report = process(source, &config, false)?;
            display::run_summary(&report);
            Ok(())
        }
        Command::Query { data_dir, format, sql } => {
            let rt = runtime()?;
            let batches = rt.block_on(query::run(&data_dir, &sql))?;
            let text = query::render(&batches, format)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}")?;
            Ok(())
        }
        Command::Generate { count, rate, seed, scenario, start, out } => {
            if !(rate > 0.0 && rate.is_finite()) {
                bail!("--rate must be a positive number of events per second");
            }
            let mut cfg = GeneratorConfig {
                seed,
                rate,
                total_events: count,
                scenario,
                ..GeneratorConfig::default()
            };
            if let Some(s) = start {
                cfg.start_ms = inferwatch_schemas::time::parse_rfc3339(&s)
                    .with_context(|| format!("--start {s:?} is not an RFC 3339 time such as 2026-01-01T00:00:00Z"))?;
            }
            generate(cfg, &out)
        }
    }
}

fn generate(cfg: GeneratorConfig, out: &Path) -> Result<()> {
    let to_stdout = out == Path::new("-");
    let mut w: Box<dyn Write> = if to_stdout {
        Box::new(std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock()))
    } else {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let f = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        Box::new(std::io::BufWriter::with_capacity(1 << 20, f))
    };
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
        if show && gen.produced() % 500_000 == 0 {
            eprint!("\r  {} / {} events", gen.produced(), total);
        }
    }
    w.write_all(&buf)?;
    w.flush()?;
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

fn process(source: Box<dyn Source>, config: &Config, live: bool) -> Result<pipeline::RunReport> {
    let rt = runtime()?;
    let stop = stop_on_ctrl_c(&rt);
    let tty = std::io::stderr().is_terminal();
    let mut line = display::ProgressLine::new(tty, live);
    let report = pipeline::run(
        source,
        config,
        &stop,
        |p| line.update(p),
        |_| {},
    );
    line.done();
    report
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
