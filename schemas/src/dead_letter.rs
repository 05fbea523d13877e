//! The `dead_letter` table: every payload that did not become an event, with its reason and
//! raw bytes, so that nothing sent is lost.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};

use crate::decode::Reject;
use crate::raw::RawBatch;
use crate::tables::dead_letter_schema;
use crate::time::EpochMs;

/// Builds `dead_letter` record batches.
pub struct DeadLetterBuilder {
    source: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    stream_time: TimestampMillisecondBuilder,
    reason: StringBuilder,
    raw_len: Int64Builder,
    raw: BinaryBuilder,
}

impl Default for DeadLetterBuilder {
    fn default() -> Self {
        Self {
            source: StringBuilder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            stream_time: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            reason: StringBuilder::new(),
            raw_len: Int64Builder::new(),
            raw: BinaryBuilder::new(),
        }
    }
}

impl DeadLetterBuilder {
    /// Adds every reject of a decoded batch, filed at `stream_time`.
    pub fn append_rejects(&mut self, raw: &RawBatch, rejects: &[Reject], stream_time: EpochMs) {
        for r in rejects {
            let payload = raw.payload(r.index);
            self.source.append_value(&raw.source);
            self.partition.append_value(raw.partition);
            self.offset.append_value(raw.offset(r.index));
            self.stream_time.append_value(stream_time);
            self.reason.append_value(&r.reason);
            self.raw_len.append_value(payload.len() as i64);
            self.raw.append_value(payload);
        }
    }

    pub fn len(&self) -> usize {
        self.source.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn finish(&mut self) -> RecordBatch {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.source.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.stream_time.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.raw_len.finish()),
            Arc::new(self.raw.finish()),
        ];
        RecordBatch::try_new(dead_letter_schema(), cols).expect("dead letter schema")
    }
}

/// The class of a dead letter's reason, as a short stable name: a bounded set of values for
/// counting (Prometheus labels), where the reason itself names values and offsets.
pub fn reason_class(reason: &str) -> &'static str {
    const CLASSES: [(&str, &str); 11] = [
        ("empty payload", "empty"),
        ("payload is not valid UTF-8", "not_utf8"),
        ("invalid JSON", "invalid_json"),
        ("payload is an", "not_an_object"),
        ("payload is a ", "not_an_object"),
        ("payload is null", "not_an_object"),
        ("payload is ", "too_large"),
        ("missing required field", "missing_field"),
        ("unknown schema_version", "schema_version"),
        ("field `", "invalid_field"),
        ("invalid event", "invalid_event"),
    ];
    CLASSES
        .iter()
        .find(|(prefix, _)| reason.starts_with(prefix))
        .map_or("other", |(_, class)| class)
}
