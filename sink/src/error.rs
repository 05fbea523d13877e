//! One error type for the sinks.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint {path}: {reason} (move it away to start that partition over)")]
    Checkpoint { path: String, reason: String },
    #[error("kafka output: {0}")]
    Kafka(String),
    #[error("alert outbox {}: {reason}", path.display())]
    Outbox { path: PathBuf, reason: String },
    /// Never carries the webhook URL: it is a credential.
    #[error("slack: {0}")]
    Slack(String),
    /// The object store (or a `data_dir` it cannot be), secrets already taken out.
    #[error("{0}")]
    Store(String),
    /// An object that is not there (handled by the callers that expect it).
    #[error("{0}: no such object")]
    Missing(String),
    /// A conditional write found the object there already.
    #[error("{0}: already exists")]
    Exists(String),
    /// Another processor committed this partition's checkpoint after this one claimed it:
    /// it owns the partition now.
    #[error("partition {partition}: another processor took it over (checkpoint generation {generation} exists); this processor stops writing it")]
    Fenced { partition: i32, generation: u64 },
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
}

/// Wraps an I/O error with what was being done and where.
pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> SinkError {
    let path = path.into();
    move |source| SinkError::Io {
        action,
        path,
        source,
    }
}

pub type Result<T, E = SinkError> = std::result::Result<T, E>;
