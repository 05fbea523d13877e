//! The producer library for services: publish one event per model call, keyed by
//! `service/model` so that a key's events stay in one partition (per-key window state is
//! partition-local in the processor).
//!
//! ```no_run
//! use inferwatch_ingest::EventProducer;
//! use inferwatch_schemas::{ClientProperties, InferenceEvent};
//!
//! let producer = EventProducer::new("localhost:9092", "inference-events")?;
//! let mut ev = InferenceEvent::new("req-1", 1_767_225_600_000, "search", "gpt-4o-mini");
//! ev.latency_ms = Some(212.0);
//! producer.send(&ev)?;
//! producer.flush(std::time::Duration::from_secs(5))?;
//! # Ok::<(), inferwatch_ingest::ProducerError>(())
//! ```

use std::time::Duration;

use inferwatch_schemas::kafka::{client_config, Role};
use inferwatch_schemas::{ClientProperties, InferenceEvent};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rdkafka::client::ClientContext;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, NoCustomPartitioner, Producer, ProducerContext, ThreadedProducer,
};

#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    #[error("kafka producer: {0}")]
    Kafka(#[from] KafkaError),
    /// The client could not be created from its settings (secrets already taken out).
    #[error("kafka producer: {0} (check [kafka.properties])")]
    Settings(String),
    #[error("serialising the event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{pending} messages not delivered within {timeout:?}: are the brokers reachable?{}",
        cause.as_ref().map(|c| format!(" (last broker error: {c})")).unwrap_or_default())]
    Undelivered {
        pending: i32,
        timeout: Duration,
        /// The last connection or authentication error the client reported, if any.
        cause: Option<String>,
    },
    #[error("{failed} messages were rejected by the brokers, e.g.: {example}")]
    Failed { failed: u64, example: String },
}

/// Counts deliveries that failed for good (after librdkafka's own retries).
#[derive(Default)]
pub struct DeliveryCounter {
    failed: AtomicU64,
    example: Mutex<Option<String>>,
    /// The last client-level error (TLS, SASL, connection), secrets scrubbed.
    last_error: Mutex<Option<String>>,
    properties: ClientProperties,
}

impl ClientContext for DeliveryCounter {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        tracing::debug!(target: "librdkafka", "producer {level:?} {fac}: {msg}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Retried by librdkafka; a delivery that fails for good is reported by `flush`.
        let text = self.properties.scrub(&format!("{error}: {reason}"));
        tracing::debug!("kafka producer: {text}");
        *self.last_error.lock().expect("not poisoned") = Some(text);
    }
}

impl ProducerContext<NoCustomPartitioner> for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!("delivery failed: {e}");
            }
            self.example
                .lock()
                .expect("not poisoned")
                .get_or_insert_with(|| e.to_string());
        }
    }
}

/// Publishes events to one topic. Idempotent (no duplicates from retries), batched
/// (`linger.ms` 5), compressed; `send` blocks briefly when the local queue is full, so a
/// producer never grows without bound.
pub struct EventProducer {
    producer: ThreadedProducer<DeliveryCounter>,
    topic: String,
}

impl EventProducer {
    pub fn new(brokers: &str, topic: &str) -> Result<Self, ProducerError> {
        Self::with_properties(brokers, topic, &ClientProperties::new())
    }

    /// `properties` are extra librdkafka settings (`security.protocol`, `sasl.*`, ...).
    pub fn with_properties(
        brokers: &str,
        topic: &str,
        properties: &ClientProperties,
    ) -> Result<Self, ProducerError> {
        let extra = [
            ("linger.ms", "5"),
            ("batch.num.messages", "10000"),
            ("queue.buffering.max.messages", "200000"),
        ];
        let cc = client_config(brokers, Role::Producer, &extra, properties);
        let context = DeliveryCounter {
            properties: properties.clone(),
            ..DeliveryCounter::default()
        };
        let producer = cc
            .create_with_context(context)
            .map_err(|e| ProducerError::Settings(properties.scrub(&e.to_string())))?;
        Ok(Self {
            producer,
            topic: topic.to_string(),
        })
    }

    /// Queues one event, keyed `service/model`.
    pub fn send(&self, event: &InferenceEvent) -> Result<(), ProducerError> {
        let payload = serde_json::to_vec(event)?;
        self.send_raw(Some(event.key().as_bytes()), &payload)
    }

    /// Queues a payload as it is (already JSON, or deliberately broken in tests).
    pub fn send_raw(&self, key: Option<&[u8]>, payload: &[u8]) -> Result<(), ProducerError> {
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.topic).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // Backpressure: the background thread drains the queue as the broker acks.
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    /// Waits until every queued message is acknowledged; fails if any was rejected.
    pub fn flush(&self, timeout: Duration) -> Result<(), ProducerError> {
        match self.producer.flush(timeout) {
            Ok(()) => {
                let ctx = self.producer.context();
                match ctx.failed.load(Ordering::Relaxed) {
                    0 => Ok(()),
                    failed => Err(ProducerError::Failed {
                        failed,
                        example: ctx
                            .example
                            .lock()
                            .expect("not poisoned")
                            .clone()
                            .unwrap_or_default(),
                    }),
                }
            }
            Err(KafkaError::Flush(_)) => Err(ProducerError::Undelivered {
                pending: self.producer.in_flight_count(),
                timeout,
                cause: self
                    .producer
                    .context()
                    .last_error
                    .lock()
                    .expect("not poisoned")
                    .clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }
}

/// Best effort: messages still queued are delivered before the producer goes.
impl Drop for EventProducer {
    fn drop(&mut self) {
        let _ = self.producer.flush(Duration::from_secs(10));
    }
}
