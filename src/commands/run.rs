//! `inferwatch run`: a file to its end, or Kafka until stopped.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use inferwatch_ingest::{FileSource, Source};
use inferwatch_runtime::jobs::Job;
use inferwatch_schemas::time::parse_duration;

use super::{run_job, OnSignal};
use crate::gateway::{banner, serve_in_process};
use crate::{display, Common, KafkaArgs};
use inferwatch_ingest::gateway::{LocalQueue, LocalSource, Outlet};
use inferwatch_runtime::{Config, RunReport};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Input file: file:PATH (NDJSON, one event per line). Leave out with --brokers.
    #[arg(long, value_name = "file:PATH")]
    source: Option<String>,
    /// Feedback events (late labels joined by event_id): file:PATH, NDJSON.
    #[arg(long, value_name = "file:PATH")]
    feedback: Option<String>,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Take events over HTTP instead, straight into this process without Kafka: POST
    /// /v1/events, /v1/feedback (JSON, NDJSON) and /v1/traces (OTLP/HTTP). Ctrl-C stops
    /// accepting, then everything accepted is processed, every window closes and is written.
    #[arg(long, value_name = "HOST:PORT", conflicts_with_all = ["source", "feedback"])]
    listen: Option<String>,
    /// Kafka: stop once no event arrived for this long and the partitions held have nothing
    /// unread, closing every window (backfills, tests). Still behind after six times this
    /// long: the run fails, naming the partitions. Without it the processor runs until
    /// Ctrl-C or SIGTERM.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    stop_when_idle: Option<Duration>,
    #[command(flatten)]
    common: Common,
}

impl RunArgs {
    pub fn run(self) -> Result<()> {
        let mut config = self.common.load()?;
        self.kafka.apply(&mut config);
        let report = match (self.source.as_deref(), config.kafka.brokers.is_empty()) {
            _ if self.listen.is_some() => {
                let addr = self.listen.as_deref().unwrap_or_default();
                run_listening(&config, addr)?
            }
            (Some(source), _) => {
                let partitions = config.file_partitions(self.feedback.is_some());
                let file = FileSource::open(file_path("--source", source)?)?;
                let source = Box::new(file.with_partitions(partitions));
                let feedback = self
                    .feedback
                    .as_deref()
                    .map(|f| -> Result<Box<dyn Source>> {
                        Ok(Box::new(FileSource::open(file_path("--feedback", f)?)?))
                    })
                    .transpose()?;
                run_job(
                    Job::replay(&config, source, feedback)?,
                    &config.http,
                    OnSignal::Stop,
                )?
            }
            (None, false) => {
                if self.feedback.is_some() {
                    bail!(
                        "--feedback is for file sources; with --brokers use --feedback-topic TOPIC"
                    );
                }
                let job = Job::consume(&config, self.stop_when_idle)?;
                let k = &config.kafka;
                eprintln!(
                    "inferwatch: consuming {} from {} as group {}, writing to {}",
                    k.topic,
                    k.brokers,
                    k.group,
                    job.store().display()
                );
                run_job(job, &config.http, OnSignal::Stop)?
            }
            (None, true) => {
                bail!("nothing to read: give --source file:PATH or --brokers HOST:PORT")
            }
        };
        display::run_summary(&report);
        Ok(())
    }
}

/// `run --listen`: the gateway feeds the pipeline through in-process queues (one partition,
/// so feedback joins as from a file). The source is named after the start time: a second
/// run never replaces what an earlier one wrote.
fn run_listening(config: &Config, addr: &str) -> Result<RunReport> {
    let events = LocalQueue::new(1);
    let feedback = LocalQueue::new(1);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let name = format!("http-{started}");
    let source = Box::new(LocalSource::new(&name, events.clone()));
    let fsrc = LocalSource::new(&format!("{name}-feedback"), feedback.clone());
    let fsrc: Box<dyn Source> = Box::new(fsrc.with_wait(Duration::ZERO));
    let job = Job::replay(config, source, Some(fsrc))?;
    let outlet = Outlet::Local {
        events: events.clone(),
        feedback: Some(feedback.clone()),
    };
    let served = serve_in_process(addr, config, outlet)?;
    let into = format!("into this process, writing to {}", job.store().display());
    eprintln!("inferwatch run: {}", banner(served.addr, &into));
    let end = move || {
        if let Err(e) = served.shutdown() {
            eprintln!("error: {e:#}");
        }
        events.close();
        feedback.close();
    };
    run_job(job, &config.http, OnSignal::EndInput(Box::new(end)))
}

/// The path of a `file:PATH` argument.
fn file_path<'a>(flag: &str, arg: &'a str) -> Result<&'a Path> {
    match arg.strip_prefix("file:") {
        Some(path) => Ok(Path::new(path)),
        None if flag == "--source" => {
            bail!("--source {arg:?}: expected file:PATH (or --brokers HOST:PORT for Kafka)")
        }
        None => bail!("{flag} {arg:?}: expected file:PATH"),
    }
}
