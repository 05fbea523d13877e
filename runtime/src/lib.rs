//! The inferwatch runtime: runs a source through the processor's operators into the sinks.
//! It owns the driver loop, the partitions and who owns them, checkpoint coordination, the
//! feedback follower, the sink thread and the config file. The `inferwatch` binary parses
//! the command line, calls this crate and prints.

pub mod alerting;
pub mod config;
pub mod error;
pub mod jobs;
pub mod pipeline;
pub mod spill;
pub mod telemetry;

pub use config::Config;
pub use error::{Context, Result, RuntimeError};
pub use pipeline::{FeedbackCounts, Pipeline, Progress, RunOptions, RunReport, TimeSpent};
pub use telemetry::Telemetry;
