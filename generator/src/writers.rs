//! Where generated traffic goes outside a pipeline: an NDJSON file (or any writer), or a
//! Kafka topic keyed `service/model` like a real service would key it.

use std::io::Write;
use std::time::{Duration, Instant};

use inferwatch_ingest::{EventProducer, ProducerError};
use inferwatch_schemas::ClientProperties;

use crate::{Generator, GeneratorConfig};

/// What a run of the generator wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub events: u64,
    /// Of `events`, payloads broken on purpose (the malformed scenario).
    pub malformed: u64,
    pub feedback: u64,
    pub elapsed: Duration,
}

/// Where a Kafka run goes.
#[derive(Debug, Clone, Copy)]
pub struct KafkaTarget<'a> {
    pub brokers: &'a str,
    pub topic: &'a str,
    /// Feedback events (late labels) go here, keyed like their predictions.
    pub feedback_topic: Option<&'a str>,
    /// `[kafka.properties]`: security and tuning.
    pub properties: &'a ClientProperties,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("writing the generated traffic: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Kafka(#[from] ProducerError),
    #[error("waiting for the brokers to acknowledge {what}: {source}")]
    Unacknowledged {
        what: &'static str,
        #[source]
        source: ProducerError,
    },
}

/// Writes every event as one NDJSON line to `events`, and each feedback event (when
/// `feedback` is given) once the traffic has reached its time. `progress(produced)` is
/// called every 500,000 events.
pub fn write_ndjson(
    cfg: GeneratorConfig,
    events: &mut dyn Write,
    mut feedback: Option<&mut dyn Write>,
    mut progress: impl FnMut(u64),
) -> Result<Written, WriteError> {
    let started = Instant::now();
    let mut gen = Generator::new(cfg);
    let (mut buf, mut fbuf) = (Vec::with_capacity(1 << 16), Vec::new());
    let mut feedback_n = 0u64;
    while gen.next_payload(&mut buf) {
        buf.push(b'\n');
        if buf.len() >= 1 << 16 {
            events.write_all(&buf)?;
            buf.clear();
        }
        if let Some(fw) = feedback.as_mut() {
            // Feedback in time order, each once the traffic has reached its time.
            let now = gen.event_time();
            while gen.next_feedback(&mut fbuf, Some(now)) {
                fbuf.push(b'\n');
                feedback_n += 1;
            }
            if fbuf.len() >= 1 << 16 {
                fw.write_all(&fbuf)?;
                fbuf.clear();
            }
        }
        if gen.produced().is_multiple_of(500_000) {
            progress(gen.produced());
        }
    }
    events.write_all(&buf)?;
    events.flush()?;
    if let Some(fw) = feedback {
        while gen.next_feedback(&mut fbuf, None) {
            fbuf.push(b'\n');
            feedback_n += 1;
        }
        fw.write_all(&fbuf)?;
        fw.flush()?;
    }
    Ok(Written {
        events: gen.produced(),
        malformed: gen.malformed(),
        feedback: feedback_n,
        elapsed: started.elapsed(),
    })
}

/// Produces every event to `target.topic`, keyed `service/model` (broken payloads go
/// unkeyed), and feedback to `target.feedback_topic`; returns once the brokers acknowledged
/// everything. `progress(produced)` is called every 100,000 events.
pub fn produce(
    cfg: GeneratorConfig,
    target: KafkaTarget<'_>,
    mut progress: impl FnMut(u64),
) -> Result<Written, WriteError> {
    let started = Instant::now();
    let KafkaTarget {
        brokers,
        topic,
        feedback_topic,
        properties,
    } = target;
    let producer = EventProducer::with_properties(brokers, topic, properties)?;
    let feedback = feedback_topic
        .map(|t| EventProducer::with_properties(brokers, t, properties))
        .transpose()?;
    let mut gen = Generator::new(cfg);
    let (mut buf, mut fbuf) = (Vec::with_capacity(4096), Vec::new());
    let mut feedback_n = 0u64;
    loop {
        buf.clear();
        if !gen.next_payload(&mut buf) {
            break;
        }
        let key = key_of(&buf);
        producer.send_raw(key.as_deref().map(str::as_bytes), &buf)?;
        if let Some(f) = &feedback {
            let now = gen.event_time();
            while let Some(key) = gen.next_feedback_keyed(&mut fbuf, Some(now)) {
                f.send_raw(Some(key.as_bytes()), &fbuf)?;
                fbuf.clear();
                feedback_n += 1;
            }
        }
        if gen.produced().is_multiple_of(100_000) {
            progress(gen.produced());
        }
    }
    let acked = |what, r: Result<(), ProducerError>| {
        r.map_err(|source| WriteError::Unacknowledged { what, source })
    };
    acked("the events", producer.flush(Duration::from_secs(60)))?;
    if let Some(f) = &feedback {
        while let Some(key) = gen.next_feedback_keyed(&mut fbuf, None) {
            f.send_raw(Some(key.as_bytes()), &fbuf)?;
            fbuf.clear();
            feedback_n += 1;
        }
        acked("the feedback", f.flush(Duration::from_secs(60)))?;
    }
    Ok(Written {
        events: gen.produced(),
        malformed: gen.malformed(),
        feedback: feedback_n,
        elapsed: started.elapsed(),
    })
}

/// `service/model` of a payload, as the Kafka key; `None` for a payload without them.
fn key_of(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct KeyFields<'a> {
        #[serde(borrow)]
        service: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        model: std::borrow::Cow<'a, str>,
    }
    serde_json::from_slice::<KeyFields>(payload)
        .ok()
        .map(|k| format!("{}/{}", k.service, k.model))
}
