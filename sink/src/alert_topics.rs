//! Delivers outbox entries to a Kafka topic — `inference-alerts` (every notice) and
//! `inference-control` (circuit-breaker transitions) — one at a time, in outbox order, each
//! acknowledged by the brokers before it is marked done. Keyed `service/model`, so one
//! breaker's transitions land in one partition, in order.
//!
//! A process killed after the brokers stored a message but before the outbox marked it
//! done would send it again. So before sending from an outbox log it has not seen yet (at
//! start, or when a partition arrives) the loop reads the topic back from a little before the
//! log's oldest pending entry and marks the ids it finds there done: exactly once on the topic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use inferwatch_schemas::kafka::{client_config, Role};
use inferwatch_schemas::ClientProperties;

use crate::error::{Result, SinkError};
use crate::outbox::{Entry, SharedOutbox};

/// Where a topic delivery loop sends.
#[derive(Debug, Clone)]
pub struct TopicConfig {
    pub brokers: String,
    pub topic: String,
    /// `[kafka.properties]` (security settings).
    pub properties: ClientProperties,
}

impl TopicConfig {
    /// A client of `role` with `extra` settings.
    fn client(&self, role: Role<'_>, extra: &[(&str, &str)]) -> ClientConfig {
        client_config(&self.brokers, role, extra, &self.properties)
    }
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
) -> Result<JoinHandle<()>> {
    let producer: BaseProducer<Outcome> = cfg
        .client(
            Role::Producer,
            &[("linger.ms", "0"), ("message.timeout.ms", "10000")],
        )
        .create_with_context(Outcome::default())
        .map_err(|e| SinkError::Kafka(cfg.properties.scrub(&e.to_string())))?;
    let name = format!("inferwatch-{dest}");
    let handle = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || run(producer, outbox, &dest, &cfg, &stop))
        .map_err(|e| SinkError::Kafka(format!("cannot start thread {name}: {e}")))?;
    Ok(handle)
}

fn run(
    producer: BaseProducer<Outcome>,
    outbox: SharedOutbox,
    dest: &str,
    cfg: &TopicConfig,
    stop: &AtomicBool,
) {
    let topic = cfg.topic.as_str();
    let mut failing: Option<String> = None;
    let mut backoff = Duration::from_millis(500);
    // Logs whose pending entries were checked against the topic.
    let mut reconciled = std::collections::HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        let Some((log, entry)) = outbox.wait_next_from(dest, Duration::from_millis(200)) else {
            continue;
        };
        if reconciled.insert(log.clone()) {
            // A log first seen here may hold entries its last writer sent but could not
            // mark done; look for them on the topic before sending anything of it.
            outbox.not_sent(&entry.id);
            reconcile(&outbox, &log, dest, cfg);
            continue;
        }
        match send(&producer, topic, &entry) {
            Ok(()) => {
                if let Err(e) = outbox.done(&entry.id, "delivered") {
                    tracing::error!("{dest}: cannot mark a delivered alert in the outbox: {e}");
                    return;
                }
                if failing.take().is_some() {
                    tracing::info!("{dest}: delivering again");
                }
                backoff = Duration::from_millis(500);
            }
            Err(e) => {
                outbox.not_sent(&entry.id);
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

/// Marks done the pending entries of `dest` that are already on the topic (sent by a
/// process that died before it could record so).
fn reconcile(outbox: &SharedOutbox, log: &str, dest: &str, cfg: &TopicConfig) {
    let pending = outbox.pending_entries_in(log, dest);
    let Some(oldest) = pending.iter().map(|e| e.at_ms).min() else {
        return;
    };
    match ids_since(cfg, oldest - 60_000) {
        Ok(found) => {
            let mut n = 0;
            let suffix = format!(":{dest}");
            let on_topic =
                |e: &&Entry| found.contains(e.id.strip_suffix(suffix.as_str()).unwrap_or(&e.id));
            for e in pending.iter().filter(on_topic) {
                if outbox.done(&e.id, "delivered (found on the topic at start)").is_ok() {
                    n += 1;
                }
            }
            if n > 0 {
                tracing::info!("{dest}: {n} alerts sent before a restart were already on {}", cfg.topic);
            }
        }
        Err(e) => tracing::warn!(
            "{dest}: cannot read {} back to skip alerts sent before a restart ({e}); they may be sent twice",
            cfg.topic
        ),
    }
}

/// The notice ids of the messages on `cfg.topic` produced at or after
/// `since_ms`.
fn ids_since(
    cfg: &TopicConfig,
    since_ms: i64,
) -> Result<std::collections::HashSet<String>, String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = cfg
        .client(
            Role::Reader {
                group: "inferwatch-outbox-reconcile",
            },
            &[("isolation.level", "read_committed")],
        )
        .create()
        .map_err(|e| cfg.properties.scrub(&e.to_string()))?;
    let timeout = Duration::from_secs(10);
    let meta = consumer
        .fetch_metadata(Some(&cfg.topic), timeout)
        .map_err(|e| e.to_string())?;
    let partitions: Vec<i32> = meta
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut times = TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    for &p in &partitions {
        let (_, high) = consumer
            .fetch_watermarks(&cfg.topic, p, timeout)
            .map_err(|e| e.to_string())?;
        ends.insert(p, high);
        times
            .add_partition_offset(&cfg.topic, p, Offset::Offset(since_ms))
            .map_err(|e| e.to_string())?;
    }
    let starts = consumer
        .offsets_for_times(times, timeout)
        .map_err(|e| e.to_string())?;
    let mut assign = TopicPartitionList::new();
    for el in starts.elements() {
        // No message at or after the time (an end offset): nothing to read there.
        let Offset::Offset(start) = el.offset() else {
            continue;
        };
        if ends.get(&el.partition()).is_some_and(|&h| h > start) {
            assign
                .add_partition_offset(&cfg.topic, el.partition(), Offset::Offset(start))
                .map_err(|e| e.to_string())?;
        }
    }
    let mut found = std::collections::HashSet::new();
    if assign.count() == 0 {
        return Ok(found);
    }
    consumer.assign(&assign).map_err(|e| e.to_string())?;
    let mut open: std::collections::HashSet<i32> =
        assign.elements().iter().map(|e| e.partition()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !open.is_empty() && Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.map_err(|e| e.to_string())?;
        if let Some(id) = m
            .payload()
            .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
            .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(String::from))
        {
            found.insert(id);
        }
        if m.offset() + 1 >= ends[&m.partition()] {
            open.remove(&m.partition());
        }
    }
    if !open.is_empty() {
        return Err("timed out reading the topic".into());
    }
    Ok(found)
}
