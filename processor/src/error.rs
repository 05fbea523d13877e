//! One error type for the processor.

use datafusion::error::DataFusionError;

#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// The configuration cannot work; the message says which key and how to fix it.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A custom metric's SQL failed to plan or to run.
    #[error("custom metric `{name}`: {source}")]
    CustomMetric {
        name: String,
        #[source]
        source: Box<DataFusionError>,
    },
    /// A checkpoint cannot be read or does not fit this processor.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A built-in aggregate function failed on a batch.
    #[error("built-in metric: {0}")]
    Function(#[from] DataFusionError),
    /// A spill file (the `sessions` counts past `window.sessions_memory_mb`) failed.
    #[error("spill file: {0}; check that runtime.spill_dir exists, is writable and has room")]
    Spill(std::io::Error),
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
}

/// Builds a [`ProcessorError::Config`] from a format string.
macro_rules! config_err {
    ($($arg:tt)*) => { $crate::error::ProcessorError::Config(format!($($arg)*)) };
}
pub(crate) use config_err;

pub type Result<T, E = ProcessorError> = std::result::Result<T, E>;
