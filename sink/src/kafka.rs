//! Kafka outputs for downstream consumers: dead letters to `inference-dead-letter` (the raw
//! bytes as the value, the reason and source position in headers) and closed windows to
//! `inference-metrics` (one JSON object per metrics row, keyed `service/model`).
//!
//! These topics are at-least-once: after a crash, rows produced after the last checkpoint
//! are produced again. The Parquet tables are the exactly-once record, so a Kafka output
//! that fails (a missing topic, a broker away for long) is logged and counted, and never
//! stops or slows the pipeline for long.

use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rdkafka::client::ClientContext;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, NoCustomPartitioner, Producer, ProducerContext, ThreadedProducer,
};

use inferwatch_schemas::kafka::{client_config, Role};
use inferwatch_schemas::ClientProperties;

use crate::error::{Result, SinkError};

/// Topic names; an empty name turns that output off.
#[derive(Debug, Clone)]
pub struct KafkaOutputConfig {
    pub brokers: String,
    pub dead_letter_topic: String,
    pub metrics_topic: String,
    /// `[kafka.properties]`, applied after the settings below.
    pub properties: ClientProperties,
}

/// Logs failed deliveries once per distinct error, and counts them.
#[derive(Default)]
pub struct DeliveryLog {
    failed: AtomicU64,
    last: Mutex<Option<String>>,
}

impl ClientContext for DeliveryLog {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        // The consumer already reports broker trouble; the output producer stays quiet.
        tracing::debug!(target: "librdkafka", "output {level:?} {fac}: {msg}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!("kafka output: {error}: {reason}");
    }
}

impl ProducerContext<NoCustomPartitioner> for DeliveryLog {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let text = format!("{e} (topic {})", rdkafka::message::Message::topic(m));
            let mut last = self.last.lock().expect("not poisoned");
            if last.as_deref() != Some(text.as_str()) {
                tracing::warn!("kafka output: delivery failed: {text}; the Parquet tables are unaffected (does the topic exist?)");
                *last = Some(text);
            }
        }
    }
}

pub struct KafkaOutput {
    producer: ThreadedProducer<DeliveryLog>,
    cfg: KafkaOutputConfig,
}

/// How long a send waits for room in a full queue before dropping the message.
const QUEUE_WAIT: Duration = Duration::from_secs(2);

impl KafkaOutput {
    pub fn new(cfg: KafkaOutputConfig) -> Result<Self> {
        let extra = [
            ("linger.ms", "20"),
            // Give up on a message (and log it) after 30 s rather than librdkafka's 5 min.
            ("message.timeout.ms", "30000"),
        ];
        let cc = client_config(&cfg.brokers, Role::Producer, &extra, &cfg.properties);
        let producer = cc
            .create_with_context(DeliveryLog::default())
            .map_err(|e| SinkError::Kafka(cfg.properties.scrub(&e.to_string())))?;
        Ok(Self { producer, cfg })
    }

    fn send(
        &self,
        topic: &str,
        key: &[u8],
        value: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<()> {
        let mut rec = BaseRecord::<[u8], [u8]>::to(topic).key(key).payload(value);
        if let Some(h) = headers {
            rec = rec.headers(h);
        }
        // A full queue means the brokers are behind or away: wait a little, then drop.
        let mut waited = Duration::ZERO;
        loop {
            match self.producer.send(rec) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if waited < QUEUE_WAIT =>
                {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(5));
                    waited += Duration::from_millis(5);
                }
                Err((e, _)) => {
                    let ctx = self.producer.context();
                    if ctx.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                        tracing::warn!("kafka output to {topic}: {e}; dropping (the Parquet tables are unaffected)");
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Messages that could not be delivered so far.
    pub fn failed(&self) -> u64 {
        self.producer.context().failed.load(Ordering::Relaxed)
    }

    /// One message per `dead_letter` row.
    pub fn dead_letters(&self, batch: &RecordBatch) -> Result<()> {
        if self.cfg.dead_letter_topic.is_empty() {
            return Ok(());
        }
        let source = batch.column(0).as_string::<i32>();
        let partition = batch.column(1).as_primitive::<Int32Type>();
        let offset = batch.column(2).as_primitive::<Int64Type>();
        let reason = batch.column(4).as_string::<i32>();
        let raw = batch.column(6).as_binary::<i32>();
        for i in 0..batch.num_rows() {
            let p = partition.value(i).to_string();
            let o = offset.value(i).to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "reason",
                    value: Some(reason.value(i)),
                })
                .insert(Header {
                    key: "source",
                    value: Some(source.value(i)),
                })
                .insert(Header {
                    key: "source_partition",
                    value: Some(&p),
                })
                .insert(Header {
                    key: "source_offset",
                    value: Some(&o),
                });
            let key = format!("{}/{p}/{o}", source.value(i));
            let value = if raw.is_valid(i) { raw.value(i) } else { &[] };
            self.send(
                &self.cfg.dead_letter_topic,
                key.as_bytes(),
                value,
                Some(headers),
            )?;
        }
        Ok(())
    }

    /// One JSON object per `metrics` row, keyed `service/model`.
    pub fn metrics(&self, batch: &RecordBatch) -> Result<()> {
        if self.cfg.metrics_topic.is_empty() || batch.num_rows() == 0 {
            return Ok(());
        }
        let mut buf = Vec::new();
        {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
            w.write(batch)?;
            w.finish()?;
        }
        let service = batch.column(2).as_string::<i32>();
        let model = batch.column(3).as_string::<i32>();
        for (i, line) in buf
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let key = format!("{}/{}", service.value(i), model.value(i));
            self.send(&self.cfg.metrics_topic, key.as_bytes(), line, None)?;
        }
        Ok(())
    }

    /// Waits up to `timeout` for queued messages (at shutdown); what is left is logged.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(
                "kafka output: {} messages not delivered at shutdown ({e})",
                self.producer.in_flight_count()
            );
        }
        let failed = self.failed();
        if failed > 0 {
            tracing::warn!("kafka output: {failed} messages could not be delivered in this run");
        }
    }
}
