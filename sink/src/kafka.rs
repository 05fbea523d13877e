//! Kafka outputs for downstream consumers: dead letters to `inference-dead-letter` (the raw
//! bytes as the value, the reason and source position in headers) and closed windows to
//! `inference-metrics` (one JSON object per metrics row, keyed `service/model`).
//!
//! These topics are at-least-once: after a crash, rows produced after the last checkpoint
//! are produced again. The Parquet tables are the exactly-once record.

use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::error::{Result, SinkError};

/// Topic names; an empty name turns that output off.
#[derive(Debug, Clone)]
pub struct KafkaOutputConfig {
    pub brokers: String,
    pub dead_letter_topic: String,
    pub metrics_topic: String,
}

pub struct KafkaOutput {
    producer: ThreadedProducer<DefaultProducerContext>,
    cfg: KafkaOutputConfig,
}

fn kafka(e: KafkaError) -> SinkError {
    SinkError::Kafka(e.to_string())
}

impl KafkaOutput {
    pub fn new(cfg: KafkaOutputConfig) -> Result<Self> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &cfg.brokers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .set("message.max.bytes", "10485760")
            .set_log_level(RDKafkaLogLevel::Warning)
            .create()
            .map_err(kafka)?;
        Ok(Self { producer, cfg })
    }

    fn send(&self, topic: &str, key: &[u8], value: &[u8], headers: Option<OwnedHeaders>) -> Result<()> {
        let mut rec = BaseRecord::<[u8], [u8]>::to(topic).key(key).payload(value);
        if let Some(h) = headers {
            rec = rec.headers(h);
        }
        loop {
            match self.producer.send(rec) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(kafka(e)),
            }
        }
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
                .insert(Header { key: "reason", value: Some(reason.value(i)) })
                .insert(Header { key: "source", value: Some(source.value(i)) })
                .insert(Header { key: "source_partition", value: Some(&p) })
                .insert(Header { key: "source_offset", value: Some(&o) });
            let key = format!("{}/{p}/{o}", source.value(i));
            let value = if raw.is_valid(i) { raw.value(i) } else { &[] };
            self.send(&self.cfg.dead_letter_topic, key.as_bytes(), value, Some(headers))?;
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
        for (i, line) in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()).enumerate() {
            let key = format!("{}/{}", service.value(i), model.value(i));
            self.send(&self.cfg.metrics_topic, key.as_bytes(), line, None)?;
        }
        Ok(())
    }

    /// Waits for queued messages (at shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.producer.flush(timeout).map_err(kafka)
    }
}
