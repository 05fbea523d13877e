//! Getting events in: the [`Source`] trait, Kafka and file replay sources, and the producer
//! library services use to publish events, the HTTP gateway (`gateway`), and `merge` (two
//! sources as one). (The traffic generator is its own crate.)

pub mod file;
pub mod gateway;
pub mod kafka;
mod lines;
pub mod merge;
pub mod producer;
pub mod source;

pub use file::FileSource;
pub use kafka::{KafkaFollower, KafkaSource, KafkaSourceConfig, PartitionOwner};
pub use producer::{EventProducer, ProducerError};
pub use source::{Behind, Source, SourceError};
