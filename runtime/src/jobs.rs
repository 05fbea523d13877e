//! The two ways inferwatch runs: a replay of a finite or generated source, and a Kafka
//! consumer-group member with checkpoints. Each sets up the store, alert delivery and the
//! pipeline; the caller runs it and shows progress.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use inferwatch_ingest::{KafkaFollower, KafkaSource, KafkaSourceConfig, Source};
use inferwatch_schemas::Notice;
use inferwatch_sink::{KafkaOutputConfig, Store};

use crate::alerting::{AlertDelivery, AlertTopics};
use crate::config::Config;
use crate::error::Result;
use crate::pipeline::{Pipeline, Progress, RunOptions, RunReport};
use crate::telemetry::Telemetry;

/// A run set up and ready to start.
pub struct Job {
    pipeline: Pipeline,
    source: Box<dyn Source>,
    delivery: Option<AlertDelivery>,
    store: Store,
    telemetry: Arc<Telemetry>,
}

impl Job {
    /// Replays `source` (a file, the generator) from its start: no checkpoints, and the run
    /// replaces the windows an earlier run of the same source wrote.
    pub fn replay(
        config: &Config,
        source: Box<dyn Source>,
        feedback: Option<Box<dyn Source>>,
    ) -> Result<Self> {
        let store = config.open_store()?;
        let delivery = start_delivery(config, &store, source.name(), None)?;
        let telemetry = telemetry(config, &store, delivery.as_ref());
        let options = RunOptions {
            notify: delivery.as_ref().map(|d| d.enqueuer()),
            telemetry: Some(telemetry.clone()),
            ..RunOptions::default()
        };
        let mut pipeline = Pipeline::new(config, &store, source.name(), options)?;
        if let Some(f) = feedback {
            pipeline = pipeline.with_feedback(f, false);
        }
        Ok(Self {
            pipeline,
            source,
            delivery,
            store,
            telemetry,
        })
    }

    /// Consumes `[kafka] topic` as a member of `[kafka] group`, with checkpoints, the
    /// feedback topic when there is one, and the Kafka outputs.
    pub fn consume(config: &Config, stop_when_idle: Option<Duration>) -> Result<Self> {
        let k = &config.kafka;
        let topics = AlertTopics {
            brokers: k.brokers.clone(),
            alerts: k.alerts_topic.clone(),
            control: k.control_topic.clone(),
            properties: k.properties.clone(),
        };
        // Checked before anything is consumed: a wrong key or bucket stops the run here.
        let store = config.open_store()?;
        let delivery = start_delivery(config, &store, &k.topic, Some(topics))?;
        let telemetry = telemetry(config, &store, delivery.as_ref());
        let options = RunOptions {
            checkpoints: true,
            stop_when_idle,
            kafka_output: Some(KafkaOutputConfig {
                brokers: k.brokers.clone(),
                dead_letter_topic: k.dead_letter_topic.clone(),
                metrics_topic: k.metrics_topic.clone(),
                properties: k.properties.clone(),
            }),
            notify: delivery.as_ref().map(|d| d.enqueuer()),
            telemetry: Some(telemetry.clone()),
        };
        let mut pipeline = Pipeline::new(config, &store, &k.topic, options)?;
        if !k.feedback_topic.is_empty() {
            let group = format!("{}-feedback", k.group);
            let mut fc = KafkaSourceConfig::new(&k.brokers, &group, &k.feedback_topic);
            fc.properties = k.properties.clone();
            // Polled between event batches: it must not wait when there is nothing.
            fc.poll_wait = Duration::ZERO;
            pipeline = pipeline.with_feedback(Box::new(KafkaFollower::new(&fc)?), true);
        }
        let mut kc = KafkaSourceConfig::new(&k.brokers, &k.group, &k.topic);
        kc.properties = k.properties.clone();
        kc.commit_interval = config.checkpoint.interval;
        let source = Box::new(KafkaSource::new(&kc, pipeline.owner())?);
        Ok(Self {
            pipeline,
            source,
            delivery,
            store,
            telemetry,
        })
    }

    /// Where the run writes.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The run's health, for `/metrics`, `/livez` and `/readyz`.
    pub fn telemetry(&self) -> Arc<Telemetry> {
        self.telemetry.clone()
    }

    /// Runs to the end of the source, or until `stop`. Alert delivery then gets a moment
    /// to send what the last windows raised; the rest waits in the outbox for the next
    /// start (`RunReport::notices_waiting`).
    pub fn run(
        self,
        stop: &AtomicBool,
        on_progress: impl FnMut(&Progress),
        on_notice: impl FnMut(&Notice),
    ) -> Result<RunReport> {
        let report = self.pipeline.run(self.source, stop, on_progress, on_notice);
        let waiting = self.delivery.map_or(0, |d| {
            let wait = if stop.load(Ordering::Relaxed) { 2 } else { 30 };
            d.finish(Duration::from_secs(wait))
        });
        let mut report = report?;
        report.notices_waiting = waiting;
        Ok(report)
    }
}

/// The run's health, watching alert delivery when there is any.
fn telemetry(config: &Config, store: &Store, delivery: Option<&AlertDelivery>) -> Arc<Telemetry> {
    let t = Telemetry::new(config.http.ready_max_lag);
    t.watch_store(store);
    if let Some(d) = delivery {
        t.watch_delivery(d.watch());
    }
    t
}

/// Opens the alert outbox and starts delivery when there is a Slack webhook or an alert
/// topic.
fn start_delivery(
    config: &Config,
    store: &Store,
    source: &str,
    topics: Option<AlertTopics>,
) -> Result<Option<AlertDelivery>> {
    AlertDelivery::start(store, source, &config.slack.deliveries()?, topics.as_ref())
}
