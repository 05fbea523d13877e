//! The inferwatch processor: event-time windows with per-partition watermarks, mergeable
//! metric state per (window, key), custom SQL metrics on DataFusion accumulators.

pub mod alerts;
pub mod chain;
pub mod columns;
pub mod config;
pub mod custom;
pub mod distinct;
pub mod drift;
pub mod error;
pub mod functions;
pub mod labels;
pub mod metrics;
pub mod operator;
pub mod price;
pub mod round;
pub mod rules;
pub mod sessions;
pub mod spill;
pub mod window;

pub use alerts::{AlertOutput, Alerting};
pub use chain::{Chain, Collector, Emitted, Operator, Watermark};
pub use config::ProcessorConfig;
pub use error::{ProcessorError, Result};
pub use operator::{OperatorStats, Output, Revisions, WindowOperator};

/// The hash map of the per-event paths (keys, sessions, label waits): a fast hasher, since
/// the keys come from our own events and SipHash cost about a tenth of the aggregate.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A small deterministic generator for tests: `next(n)` is in `0..n`.
#[cfg(test)]
pub(crate) fn test_rng(mut state: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    }
}
