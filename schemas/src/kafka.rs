//! The one place every Kafka client is configured: the event consumers, the feedback
//! follower, the dead-letter and metrics producer, the alert producers and their read-back
//! consumer, and the producer services embed. Settings come in three layers, later ones
//! winning: what every client of its role needs, what the call site adds, and the user's
//! `[kafka.properties]` (security, tuning).

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};

use crate::ClientProperties;

/// What a client does.
#[derive(Debug, Clone, Copy)]
pub enum Role<'a> {
    /// A consumer-group member that stores and commits its own offsets, from the earliest
    /// offset when the group has none.
    Consumer { group: &'a str },
    /// A consumer that reads without ever committing.
    Reader { group: &'a str },
    /// An idempotent producer.
    Producer,
}

/// The client settings of `role` at `brokers`, then `extra`, then `properties`.
pub fn client_config(
    brokers: &str,
    role: Role<'_>,
    extra: &[(&str, &str)],
    properties: &ClientProperties,
) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", brokers)
        .set_log_level(RDKafkaLogLevel::Warning);
    match role {
        Role::Consumer { group } => {
            cc.set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest")
                // Bounded prefetch: at most this much per partition waits in librdkafka.
                .set("queued.max.messages.kbytes", "32768")
                // Fetch messages up to 16 MiB whole, so an oversized payload reaches
                // dead_letter instead of stalling its partition (not every broker returns
                // a partial batch).
                .set("fetch.message.max.bytes", "16777216")
                // A topic created after the processor started is found within seconds.
                .set("topic.metadata.refresh.interval.ms", "5000");
        }
        Role::Reader { group } => {
            cc.set("group.id", group).set("enable.auto.commit", "false");
        }
        Role::Producer => {
            cc.set("enable.idempotence", "true")
                .set("message.max.bytes", "10485760");
        }
    }
    for (k, v) in extra {
        cc.set(*k, *v);
    }
    for (k, v) in properties.iter() {
        cc.set(k, v);
    }
    cc
}
