//! Raw payloads as they come off a source, before decoding.

use std::sync::Arc;

/// A batch of raw payloads from one source partition, stored in one buffer so that reading a
/// file or a Kafka poll does not allocate per message.
#[derive(Debug, Clone)]
pub struct RawBatch {
    /// Source name, e.g. `file:traffic.ndjson` or a Kafka topic.
    pub source: Arc<str>,
    /// Partition within the source (0 for files and the generator).
    pub partition: i32,
    data: Vec<u8>,
    spans: Vec<(usize, usize)>,
    offsets: Vec<i64>,
}

impl RawBatch {
    pub fn new(source: Arc<str>, partition: i32) -> Self {
        Self::with_capacity(source, partition, 0, 0)
    }

    pub fn with_capacity(source: Arc<str>, partition: i32, payloads: usize, bytes: usize) -> Self {
        Self {
            source,
            partition,
            data: Vec::with_capacity(bytes),
            spans: Vec::with_capacity(payloads),
            offsets: Vec::with_capacity(payloads),
        }
    }

    /// Appends one payload found at `offset` in the source. (The per-payload methods are
    /// inline across crates: the build has no LTO, and sources call them per message.)
    #[inline]
    pub fn push(&mut self, payload: &[u8], offset: i64) {
        let start = self.data.len();
        self.data.extend_from_slice(payload);
        self.spans.push((start, self.data.len()));
        self.offsets.push(offset);
    }

    /// Appends a payload that the caller has already written to the end of the buffer
    /// (see [`RawBatch::buffer_mut`]), starting at byte `start`.
    pub fn commit_tail(&mut self, start: usize, offset: i64) {
        self.spans.push((start, self.data.len()));
        self.offsets.push(offset);
    }

    /// The payload buffer, for writers that append in place before [`RawBatch::commit_tail`].
    pub fn buffer_mut(&mut self) -> &mut Vec<u8> {
        &mut self.data
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    #[inline]
    pub fn payload(&self, i: usize) -> &[u8] {
        let (s, e) = self.spans[i];
        &self.data[s..e]
    }

    #[inline]
    pub fn offset(&self, i: usize) -> i64 {
        self.offsets[i]
    }

    /// Offset of the last payload, if any.
    pub fn last_offset(&self) -> Option<i64> {
        self.offsets.last().copied()
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.spans.clear();
        self.offsets.clear();
    }
}
