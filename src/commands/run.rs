//! `inferwatch run`: a file to its end, or Kafka until stopped.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use inferwatch_ingest::{FileSource, Source};
use inferwatch_runtime::jobs::Job;
use inferwatch_schemas::time::parse_duration;

use super::run_job;
use crate::{display, Common, KafkaArgs};

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
                run_job(Job::replay(&config, source, feedback)?, &config.http)?
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
                run_job(job, &config.http)?
            }
            (None, true) => {
                bail!("nothing to read: give --source file:PATH or --brokers HOST:PORT")
            }
        };
        display::run_summary(&report);
        Ok(())
    }
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
