//! Broker trouble, logged once per kind, and batches the client could not read.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use inferwatch_schemas::ClientProperties;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::source::SourceError;

/// Broker-level errors, logged once per kind until messages flow again rather than once per
/// retry (librdkafka alternates between kinds while a broker is down).
#[derive(Default)]
pub(super) struct ErrorLog {
    /// What the client reads, for the log lines: "kafka" or "kafka (feedback)".
    label: &'static str,
    seen: Mutex<BTreeSet<String>>,
    /// Secrets to keep out of the log lines.
    properties: ClientProperties,
    /// librdkafka's text for the last error that concerns the data itself (a batch it could
    /// not read): the consumer's poll returns only the code, this keeps the position.
    last_unreadable: Mutex<Option<String>>,
    /// The last connection-level error (TLS, SASL, unreachable brokers), for a run that
    /// never got going.
    pub(super) last: Mutex<Option<String>>,
}

impl ErrorLog {
    pub(super) fn new(label: &'static str, properties: &ClientProperties) -> Self {
        Self {
            label,
            properties: properties.clone(),
            ..Self::default()
        }
    }

    pub(super) fn report(&self, error: KafkaError, reason: &str) {
        let reason = self.properties.scrub(reason);
        if error.rdkafka_error_code().is_some_and(unreadable_code) {
            *self.last_unreadable.lock().expect("not poisoned") = Some(reason);
            return;
        }
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AutoOffsetReset) {
            // The position asked for is gone (retention deleted it, or it is past the end):
            // events between were never read. Not ours to hide.
            tracing::error!(
                "{}: {reason}: events between the checkpoint and the new position were \
                 deleted by the brokers before this processor read them",
                self.label
            );
            return;
        }
        *self.last.lock().expect("not poisoned") = Some(format!("{error}: {reason}"));
        let kind = format!("{:?}", error.rdkafka_error_code());
        if self.seen.lock().expect("not poisoned").insert(kind) {
            tracing::warn!(
                "{}: {error}: {reason} (retrying; check that the brokers are reachable and \
                 the security settings in [kafka.properties])",
                self.label
            );
        }
    }

    /// A message arrived: trouble seen before is over.
    pub(super) fn receiving(&self) {
        let mut seen = self.seen.lock().expect("not poisoned");
        if !seen.is_empty() {
            seen.clear();
            tracing::info!("{}: receiving again", self.label);
        }
    }
}

/// Error codes that concern the data rather than the connection: a batch compressed with a
/// codec the client lacks, corrupt compressed bytes, a malformed or oversized batch.
/// librdkafka reports such a batch once and moves past it, so a source that saw one stops.
pub(super) fn unreadable_code(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        BadCompression
            | NotImplemented
            | BadMessage
            | InvalidMessage
            | InvalidMessageSize
            | MessageSizeTooLarge
            | UnsupportedCompressionType
            | UnsupportedForMessageFormat
            | InvalidRecord
    )
}

/// The offset librdkafka names in its text ("... message at 1234 of 56 bytes failed",
/// "Message at offset 1234 might be too large ...").
fn offset_in(reason: &str) -> Option<i64> {
    let words: Vec<&str> = reason.split_whitespace().collect();
    words.windows(2).find_map(|w| match w[0] {
        "at" | "offset" => w[1].trim_end_matches([',', ':', ')']).parse().ok(),
        _ => None,
    })
}

/// The error for a batch the client could not read. librdkafka's poll names only the code;
/// the partition is the one whose next offset the batch covers, among `positions` (next
/// offset per partition, where known) and the current assignment.
pub(super) fn unreadable_error<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    errors: &ErrorLog,
    topic: &str,
    positions: &BTreeMap<i32, i64>,
    e: &KafkaError,
) -> SourceError {
    let reason = errors
        .last_unreadable
        .lock()
        .expect("not poisoned")
        .take()
        .unwrap_or_else(|| e.to_string());
    let offset = offset_in(&reason);
    let assigned = super::assigned(consumer, topic);
    let mut candidates: Vec<i32> = assigned
        .iter()
        .copied()
        .filter(|p| match (positions.get(p), offset) {
            (Some(&next), Some(at)) => next >= at,
            _ => true,
        })
        .collect();
    let exact: Vec<i32> = candidates
        .iter()
        .copied()
        .filter(|p| offset.is_some() && positions.get(p).copied() == offset)
        .collect();
    if exact.len() == 1 && candidates.iter().all(|p| positions.contains_key(p)) {
        candidates = exact;
    }
    SourceError::Unreadable {
        topic: topic.to_string(),
        partitions: candidates,
        offset,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_read_from_librdkafka_texts() {
        let decompress = "Decompression (codec 0x1) of message at 4096 of 812 bytes failed: \
                          Local: Not implemented";
        assert_eq!(offset_in(decompress), Some(4096));
        let large = "Message at offset 77 might be too large to fetch, try increasing \
                     receive.message.max.bytes";
        assert_eq!(offset_in(large), Some(77));
        assert_eq!(offset_in("Local: Bad compressed data"), None);
        assert!(unreadable_code(RDKafkaErrorCode::BadCompression));
        assert!(!unreadable_code(RDKafkaErrorCode::BrokerTransportFailure));
    }
}
