//! `inferwatch ingest`: the HTTP gateway in front of Kafka. Services POST events, feedback
//! or OTLP traces; each reply comes once Kafka acknowledged what it accepted.

use std::path::PathBuf;

use anyhow::{bail, Result};
use inferwatch_ingest::gateway::{Gateway, KafkaOutlet, KafkaOutletConfig, Outlet};
use inferwatch_runtime::Config;

use super::{on_signals, tokio_runtime};
use crate::gateway::{banner, serve};

#[derive(clap::Args)]
pub struct IngestArgs {
    /// Address to listen on [config: gateway.listen; default 127.0.0.1:4318, OTLP/HTTP's port].
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Kafka bootstrap servers, host:port [config: kafka.brokers].
    #[arg(long, value_name = "HOST:PORT")]
    brokers: Option<String>,
    /// Events topic [config: kafka.topic; default inference-events].
    #[arg(long)]
    topic: Option<String>,
    /// Feedback topic; without one, /v1/feedback answers 404 [config: kafka.feedback_topic].
    #[arg(long)]
    feedback_topic: Option<String>,
    /// Config file (TOML): [gateway] (tokens, limits) and [kafka] (brokers, topics,
    /// properties for TLS and SASL).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl IngestArgs {
    pub fn run(self) -> Result<()> {
        let mut c = Config::load(self.config.as_deref())?;
        for (flag, field) in [
            (self.listen, &mut c.gateway.listen),
            (self.brokers, &mut c.kafka.brokers),
            (self.topic, &mut c.kafka.topic),
            (self.feedback_topic, &mut c.kafka.feedback_topic),
        ] {
            if let Some(v) = flag {
                *field = v;
            }
        }
        c.validate()?;
        if c.kafka.brokers.is_empty() {
            bail!(
                "inferwatch ingest writes to Kafka: give --brokers HOST:PORT (or [kafka] brokers). \
                 Without Kafka, `inferwatch run --listen ADDR` takes the same requests in process"
            );
        }
        let rt = tokio_runtime()?;
        let (stopped, stop) = std::sync::mpsc::channel();
        on_signals(
            &rt,
            "stopping: answering the requests in flight",
            move || {
                let _ = stopped.send(());
            },
        )?;
        let k = &c.kafka;
        let served = serve(&c.gateway.listen, || {
            let outlet = KafkaOutlet::new(&KafkaOutletConfig {
                brokers: &k.brokers,
                events_topic: &k.topic,
                feedback_topic: &k.feedback_topic,
                properties: &k.properties,
                delivery_timeout: c.gateway.delivery_timeout,
                max_in_flight: c.gateway.max_in_flight_events,
            })?;
            Ok(Gateway::new(
                c.gateway.clone(),
                c.limits(),
                Outlet::Kafka(outlet),
            )?)
        })?;
        let feedback = if k.feedback_topic.is_empty() {
            String::new()
        } else {
            format!(", feedback to {}", k.feedback_topic)
        };
        let into = format!(
            "events to Kafka topic {}{feedback} at {}",
            k.topic, k.brokers
        );
        eprintln!("inferwatch ingest: {}", banner(served.addr, &into));
        let _ = stop.recv();
        served.shutdown()
    }
}
