//! inferwatch sinks: Parquet tables with Hive-style partitions, written atomically under
//! deterministic names.

pub mod error;
pub mod file;
pub mod partition;
pub mod table;

pub use error::{Result, SinkError};
pub use file::ParquetOptions;
pub use partition::{sanitize_component, HivePartition};
pub use table::{table_files, PositionedTable, WindowTable};
