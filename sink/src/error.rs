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
    #[error("checkpoint {}: {reason} (move it away to start that partition over)", path.display())]
    Checkpoint { path: PathBuf, reason: String },
    #[error("kafka output: {0}")]
    Kafka(String),
    #[error("alert outbox {}: {reason}", path.display())]
    Outbox { path: PathBuf, reason: String },
    /// Never carries the webhook URL: it is a credential.
    #[error("slack: {0}")]
    Slack(String),
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
