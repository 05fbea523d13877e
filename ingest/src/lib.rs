//! Getting events in: sources (Kafka, file replay, in-process generator), the producer library
//! services use to publish events, and the synthetic traffic generator behind
//! `inferwatch generate` and the demo.

pub mod file;
pub mod generate;
pub mod generator;
pub mod kafka;
pub mod producer;
pub mod source;

pub use file::FileSource;
pub use generator::GeneratorSource;
pub use kafka::{KafkaFollower, KafkaSource, KafkaSourceConfig, PartitionOwner};
pub use producer::{EventProducer, ProducerError};
pub use source::{Source, SourceError};
