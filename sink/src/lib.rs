//! inferwatch sinks: Parquet tables with Hive-style partitions, written atomically under
//! deterministic names.

pub mod alert_topics;
pub mod checkpoint;
pub mod error;
pub mod file;
pub mod kafka;
pub mod outbox;
pub mod partition;
pub mod slack;
pub mod store;
pub mod table;

pub use checkpoint::{Checkpoint, CheckpointStore};
pub use error::{Result, SinkError};
pub use file::ParquetOptions;
pub use kafka::{KafkaOutput, KafkaOutputConfig};
pub use outbox::{Entry, Outbox, SharedOutbox};
pub use partition::{sanitize_component, HivePartition};
pub use slack::{spawn_slack, Secret, SlackConfig, SlackDelivery, SlackStats};
pub use store::{Store, StoreOptions};
pub use table::{table_files, PositionedTable, WindowTable};
