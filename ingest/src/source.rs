//! The source abstraction every input implements: file replay, the in-process generator, and
//! Kafka.

use inferwatch_schemas::RawBatch;

/// How far a source is behind the end of what it can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behind {
    /// The source has no such notion (a scripted source).
    Unknown,
    /// Per partition, the messages past what was read; empty when caught up.
    Partitions(Vec<(i32, u64)>),
    /// It could not tell just now (the brokers did not answer): not idle either, since
    /// a slow broker is exactly when nothing arrives.
    Unanswered(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open {path}: {source} (check the path after `file:`)")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {path} at line {line}: {source}")]
    Read {
        path: String,
        line: i64,
        #[source]
        source: std::io::Error,
    },
    #[error("kafka: {0}")]
    Kafka(String),
    /// A record batch the client could not decompress or decode. The source stops rather
    /// than run past it: the partition's checkpoint stays before the batch.
    #[error(
        "kafka topic {topic} {}: the record batch at offset {} cannot be read: {reason}. \
         Stopped without skipping it: the partition resumes at this batch after a restart. \
         Check the producer's compression codec and the topic's data",
        partition_words(partitions),
        offset.map_or("(unknown)".to_string(), |o| o.to_string())
    )]
    Unreadable {
        topic: String,
        /// The partition, or the few it can be among when the client did not say.
        partitions: Vec<i32>,
        offset: Option<i64>,
        /// The client's own words.
        reason: String,
    },
}

fn partition_words(p: &[i32]) -> String {
    match p {
        [one] => format!("partition {one}"),
        many => format!("partition (one of {many:?})"),
    }
}

/// A stream of raw payloads. Sources are nouns and do no decoding: they hand bytes and their
/// positions to the processor.
pub trait Source: Send {
    /// Stable name, recorded in `events.source` and in file names: replaying the same input
    /// under the same name replaces earlier files.
    fn name(&self) -> &str;

    /// Up to `max` payloads from one partition. `Ok(None)`: a finite source is exhausted.
    /// An empty batch: nothing right now, ask again.
    fn next_batch(&mut self, max: usize) -> Result<Option<RawBatch>, SourceError>;

    /// True for sources that end (files, a generator with a count).
    fn is_bounded(&self) -> bool;

    /// (done, total) in the source's own unit (bytes for files, events for the generator),
    /// when the source knows its size.
    fn progress(&self) -> Option<(u64, u64)> {
        None
    }

    /// Why the source never delivered anything, when it could not reach its input at all
    /// (brokers unreachable, TLS or SASL refused): a run that stops when idle reports it
    /// instead of ending with nothing read.
    fn stalled(&self) -> Option<String> {
        None
    }

    /// The partitions held that have messages past what was read, with how many, when the
    /// source can tell (Kafka asks the brokers for their end offsets): a source that is
    /// behind is not idle, however long nothing arrived. Kafka also names partitions no
    /// member of the group is seen reading, which it is getting assigned.
    fn behind(&mut self) -> Behind {
        Behind::Unknown
    }

    /// Per partition held, the messages past what was read, from what the source already
    /// knows (no round trip: it may be a fetch old). `None`: the source has no such notion
    /// (files, the generator); a partition missing from the list: not known yet.
    fn lag(&self) -> Option<Vec<(i32, u64)>> {
        None
    }

    /// Tells the source that everything before these (partition, next offset) pairs is
    /// durable: Kafka commits them to the group as a hint for where to resume.
    fn commit(&mut self, _offsets: &[(i32, i64)]) {}

    /// The first offset of `partition` the source still has (Kafka: the log start, which
    /// retention moves), when it can tell.
    fn start_of(&mut self, _partition: i32) -> Option<i64> {
        None
    }

    /// Asks the source to deliver `partition` from `offset` again (a consumer that resumed
    /// past its checkpoint). Returns false when the source cannot seek.
    fn seek(&mut self, _partition: i32, _offset: i64) -> bool {
        false
    }

    /// Whether `partition` is still assigned to this member of a consumer group, as far as
    /// it knows. Sources outside a group say false: nobody takes their partitions over.
    fn still_assigned(&self, _partition: i32) -> bool {
        false
    }

    /// Starts reading `partition` from `offset` (`None`: from the beginning): how a
    /// co-partitioned feedback source follows the partitions the processor owns.
    fn follow(&mut self, _partition: i32, _offset: Option<i64>) {}

    /// Stops reading `partition`.
    fn unfollow(&mut self, _partition: i32) {}

    /// Stops reading; a Kafka source leaves its consumer group (after its partitions'
    /// owner checkpointed them).
    fn close(&mut self) {}
}
