//! One error type for the runtime, with the context each layer adds on the way up.

use inferwatch_ingest::{ProducerError, SourceError};
use inferwatch_processor::ProcessorError;
use inferwatch_sink::SinkError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Processor(#[from] ProcessorError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Producer(#[from] ProducerError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A setting that cannot work, said the way the config file spells it.
    #[error("{0}")]
    Config(String),
    /// Anything else, in words that say what to do next.
    #[error("{0}")]
    Failed(String),
    /// What was being done when `source` happened. Shown as `context: source` by a caller
    /// that prints the chain (`{:#}` of `anyhow`).
    #[error("{context}")]
    Context {
        context: String,
        #[source]
        source: Box<RuntimeError>,
    },
}

impl RuntimeError {
    /// This error, with what was being done when it happened.
    pub fn context(self, context: impl Into<String>) -> Self {
        Self::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// A [`RuntimeError::Failed`] from a format string.
#[macro_export]
macro_rules! failed {
    ($($arg:tt)*) => { $crate::RuntimeError::Failed(format!($($arg)*)) };
}

/// Returns early with a [`RuntimeError::Failed`] from a format string.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => { return Err($crate::failed!($($arg)*)) };
}

/// Adds what was being done to any error the runtime passes on.
pub trait Context<T> {
    fn context(self, context: impl Into<String>) -> Result<T>;
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<RuntimeError>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| RuntimeError::Context {
            context: context.into(),
            source: Box::new(e.into()),
        })
    }

    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| RuntimeError::Context {
            context: f().into(),
            source: Box::new(e.into()),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.ok_or_else(|| RuntimeError::Failed(context.into()))
    }

    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.ok_or_else(|| RuntimeError::Failed(f().into()))
    }
}
