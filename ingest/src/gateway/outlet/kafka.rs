//! The Kafka outlet: an idempotent producer (acks=all) whose deliveries a request awaits,
//! and a watch on whether the brokers answer, so that requests get 503 at once while they
//! do not instead of waiting out the delivery timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use inferwatch_schemas::kafka::{client_config, Role};
use inferwatch_schemas::ClientProperties;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::AsyncRuntime;

use super::{Stream, Unavailable};
use crate::gateway::records::Record;
use crate::gateway::GatewayError;

/// Broker health as the client sees it.
#[derive(Default)]
struct Health {
    reachable: AtomicBool,
    /// The client's last error, secrets scrubbed.
    last_error: Mutex<Option<String>>,
    properties: ClientProperties,
}

impl Health {
    fn down(&self, why: String) {
        if self.reachable.swap(false, Ordering::AcqRel) {
            tracing::warn!("kafka unreachable, answering 503: {why}");
        }
        *self.last_error.lock().expect("not poisoned") = Some(why);
    }

    fn up(&self) {
        if !self.reachable.swap(true, Ordering::AcqRel) {
            tracing::info!("kafka reachable");
        }
    }
}

/// The producer's timers and tasks run on the gateway's tokio runtime (rdkafka's own tokio
/// support is a feature every other client would be built with).
struct Tokio;

impl AsyncRuntime for Tokio {
    type Delay = tokio::time::Sleep;

    fn spawn<T>(task: T)
    where
        T: std::future::Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(task);
    }

    fn delay_for(duration: Duration) -> Self::Delay {
        tokio::time::sleep(duration)
    }
}

type Client = FutureProducer<Context, Tokio>;

struct Context(Arc<Health>);

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        tracing::debug!(target: "librdkafka", "gateway producer {level:?} {fac}: {msg}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let text = self.0.properties.scrub(&format!("{error}: {reason}"));
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.0.down(text);
        } else {
            tracing::debug!("gateway producer: {text}");
        }
    }
}

pub struct KafkaOutlet {
    producer: Client,
    health: Arc<Health>,
    events_topic: String,
    feedback_topic: String,
}

/// What the outlet needs to know.
pub struct KafkaOutletConfig<'a> {
    pub brokers: &'a str,
    pub events_topic: &'a str,
    /// "" refuses feedback.
    pub feedback_topic: &'a str,
    pub properties: &'a ClientProperties,
    pub delivery_timeout: Duration,
    /// Events that may wait in the client at once (the gateway's in-flight bound).
    pub max_in_flight: usize,
}

impl KafkaOutlet {
    pub fn new(c: &KafkaOutletConfig<'_>) -> Result<Arc<Self>, GatewayError> {
        let timeout = c.delivery_timeout.as_millis().max(1).to_string();
        // The client's queue holds more than the gateway lets in, so it is never full:
        // a request is refused whole (429) before any of it is queued.
        let queue = (c.max_in_flight + 10_000).to_string();
        let extra = [
            ("acks", "all"),
            // Each reply waits for its batch: a short linger keeps single events quick, and
            // concurrent requests still share batches.
            ("linger.ms", "1"),
            ("batch.num.messages", "10000"),
            ("compression.type", "lz4"),
            ("message.timeout.ms", timeout.as_str()),
            ("queue.buffering.max.messages", queue.as_str()),
            ("queue.buffering.max.kbytes", "1048576"),
        ];
        let cc = client_config(c.brokers, Role::Producer, &extra, c.properties);
        let health = Arc::new(Health {
            properties: c.properties.clone(),
            ..Health::default()
        });
        let producer: Client = cc
            .create_with_context(Context(health.clone()))
            .map_err(|e| GatewayError::Kafka(c.properties.scrub(&e.to_string())))?;
        let outlet = Arc::new(Self {
            producer,
            health,
            events_topic: c.events_topic.to_string(),
            feedback_topic: c.feedback_topic.to_string(),
        });
        // Asked once before the first request: a gateway whose brokers are up starts ready.
        outlet.probe(Duration::from_secs(5));
        watch(Arc::downgrade(&outlet));
        Ok(outlet)
    }

    /// Asks the brokers for the events topic's metadata: are they there?
    fn probe(&self, timeout: Duration) {
        let answer = self
            .producer
            .client()
            .fetch_metadata(Some(&self.events_topic), timeout);
        match answer {
            Ok(_) => self.health.up(),
            Err(e) => self
                .health
                .down(self.health.properties.scrub(&e.to_string())),
        }
    }

    pub fn takes_feedback(&self) -> bool {
        !self.feedback_topic.is_empty()
    }

    pub fn unavailable(&self) -> Option<Unavailable> {
        if self.health.reachable.load(Ordering::Acquire) {
            return None;
        }
        let why = self.health.last_error.lock().expect("not poisoned").clone();
        Some(Unavailable(match why {
            Some(w) => format!("Kafka is unreachable ({w}); nothing was written, send again"),
            None => "Kafka has not answered yet; nothing was written, send again".into(),
        }))
    }

    pub async fn send(&self, stream: Stream, records: Vec<Record>) -> Result<(), Unavailable> {
        let topic = match stream {
            Stream::Events => &self.events_topic,
            Stream::Feedback if self.feedback_topic.is_empty() => {
                return Err(Unavailable(
                    "no feedback topic is configured ([kafka] feedback_topic)".into(),
                ))
            }
            Stream::Feedback => &self.feedback_topic,
        };
        let mut pending = Vec::with_capacity(records.len());
        let mut failed = None;
        for r in &records {
            let record = FutureRecord::to(topic).key(&r.key).payload(&r.payload);
            match self.producer.send_result(record) {
                Ok(f) => pending.push(f),
                Err((e, _)) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        // Every queued record is awaited, even after a failure: the reply must not come
        // before the client has settled what it queued.
        for f in pending {
            match f.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(RDKafkaErrorCode::MessageTimedOut)
                    ) {
                        self.health.down(e.to_string());
                    }
                    failed.get_or_insert_with(|| e.to_string());
                }
                Err(_) => {
                    failed.get_or_insert_with(|| "the producer closed".into());
                }
            }
        }
        match failed {
            None => Ok(()),
            Some(e) => Err(Unavailable(format!(
                "Kafka did not acknowledge every event ({}); some may be written, send again",
                self.health.properties.scrub(&e)
            ))),
        }
    }
}

/// Asks the brokers for the topic's metadata every second, on its own thread (the call
/// blocks), while the outlet lives.
fn watch(outlet: Weak<KafkaOutlet>) {
    std::thread::Builder::new()
        .name("gateway-kafka-watch".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            let Some(o) = outlet.upgrade() else { return };
            o.probe(Duration::from_secs(2));
        })
        .expect("a thread starts");
}

impl Drop for KafkaOutlet {
    fn drop(&mut self) {
        let _ = self.producer.flush(Duration::from_secs(10));
    }
}
