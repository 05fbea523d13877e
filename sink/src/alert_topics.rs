//! Delivers outbox entries to a Kafka topic — `inference-alerts` (every notice) and
//! `inference-control` (circuit-breaker transitions) — one at a time, in outbox order, each
//! acknowledged by the brokers before it is marked done. Keyed `service/model`, so one
//! breaker's transitions land in one partition, in order.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use crate::error::{Result, SinkError};
use crate::outbox::{Entry, SharedOutbox};

/// Where a topic delivery loop sends.
#[derive(Debug, Clone)]
pub struct TopicConfig {
    pub brokers: String,
    pub topic: String,
    /// Extra librdkafka properties (security settings).
    pub properties: Vec<(String, String)>,
}

/// Delivery counters of one loop.
#[derive(Debug, Default)]
pub struct TopicStats {
    pub delivered: AtomicU64,
    pub retries: AtomicU64,
}

/// The outcome of the message in flight.
#[derive(Default)]
struct Outcome(Mutex<Option<Result<(), String>>>);

impl ClientContext for Outcome {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        tracing::debug!(target: "librdkafka", "alerts producer {level:?} {fac}: {msg}");
    }
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!("kafka alerts producer: {error}: {reason}");
    }
}

impl ProducerContext for Outcome {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let r = result.as_ref().map(|_| ()).map_err(|(e, _)| e.to_string());
        *self.0.lock().expect("not poisoned") = Some(r);
    }
}

/// `service/model` of a notice payload: the message key.
fn key(payload: &serde_json::Value) -> String {
    let field = |k: &str| payload.get(k).and_then(|v| v.as_str()).unwrap_or("");
    format!("{}/{}", field("service"), field("model"))
}

/// Starts the loop delivering `dest`'s entries to `cfg.topic` until `stop`.
pub fn spawn_topic_delivery(
    outbox: SharedOutbox,
    dest: String,
    cfg: TopicConfig,
    stop: Arc<AtomicBool>,
) -> Result<(JoinHandle<()>, Arc<TopicStats>)> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &cfg.brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "10000");
    for (k, v) in &cfg.properties {
        cc.set(k, v);
    }
    let producer: BaseProducer<Outcome> = cc
        .set_log_level(RDKafkaLogLevel::Warning)
        .create_with_context(Outcome::default())
        .map_err(|e| SinkError::Kafka(e.to_string()))?;
    let stats = Arc::new(TopicStats::default());
    let st = stats.clone();
    let name = format!("inferwatch-{dest}");
    let handle = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || run(producer, outbox, &dest, &cfg.topic, &stop, &st))
        .map_err(|e| SinkError::Kafka(format!("cannot start thread {name}: {e}")))?;
    Ok((handle, stats))
}

fn run(
    producer: BaseProducer<Outcome>,
    outbox: SharedOutbox,
    dest: &str,
    topic: &str,
    stop: &AtomicBool,
    stats: &TopicStats,
) {
    let mut failing: Option<String> = None;
    let mut backoff = Duration::from_millis(500);
    while !stop.load(Ordering::Relaxed) {
        let Some(entry) = outbox.wait_next(dest, Duration::from_millis(200)) else {
            continue;
        };
        match send(&producer, topic, &entry) {
            Ok(()) => {
                if let Err(e) = outbox.done(&entry.id, "delivered") {
                    tracing::error!("{dest}: cannot mark a delivered alert in the outbox: {e}");
                    return;
                }
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                if failing.take().is_some() {
                    tracing::info!("{dest}: delivering again");
                }
                backoff = Duration::from_millis(500);
            }
            Err(e) => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                if failing.as_deref() != Some(e.as_str()) {
                    tracing::warn!("{dest}: {e}; alerts wait in the outbox and are retried (does topic {topic} exist?)");
                    failing = Some(e);
                }
                let until = Instant::now() + backoff;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Produces one entry and waits for the brokers' answer.
fn send(producer: &BaseProducer<Outcome>, topic: &str, entry: &Entry) -> Result<(), String> {
    let value = serde_json::to_vec(&entry.payload).map_err(|e| e.to_string())?;
    let key = key(&entry.payload);
    *producer.context().0.lock().expect("not poisoned") = None;
    producer
        .send(BaseRecord::<str, [u8]>::to(topic).key(&key).payload(&value))
        .map_err(|(e, _)| format!("producing to {topic}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        producer.poll(Duration::from_millis(50));
        if let Some(r) = producer.context().0.lock().expect("not poisoned").take() {
            return r.map_err(|e| format!("delivery to {topic} failed: {e}"));
        }
        if Instant::now() >= deadline {
            // Purge it so it cannot arrive later as a duplicate of the retry.
            producer.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
            return Err(format!("no answer from the brokers for {topic}"));
        }
    }
}
