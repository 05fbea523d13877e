//! Deterministic synthetic inference traffic: one JSON event per model call.
//!
//! The generator simulates four services calling five models, with agent sessions, errors,
//! out-of-order timestamps and optional fields present at realistic rates. A [`Scenario`]
//! switches on one kind of trouble at the onset (`total_events / 2`) and keeps it on, so
//! that a monitor fed with the output should see a clean "before" and a changed "after".
//! Before the onset every scenario produces the same bytes as [`Scenario::Steady`].
//!
//! Output depends only on the [`GeneratorConfig`]: the PRNG (xoshiro256** seeded with
//! SplitMix64), the exponential, logarithm and normal quantile are implemented here with
//! plain IEEE arithmetic (no platform `libm`), and numbers are formatted by hand with fixed
//! decimals, so the same config gives byte-identical payloads on every platform and with
//! every crate version.
//!
//! Modules: [`scenario`] (what changes and the settings), `catalogue` (services, models,
//! tenants), `malformations` (broken payloads), `rng` and `format` (deterministic numbers and
//! text), `traffic` (the [`Generator`]), [`source`] (the generator as a pipeline source) and
//! [`writers`] (to an NDJSON file or a Kafka topic).

mod catalogue;
mod format;
mod malformations;
mod rng;
pub mod scenario;
pub mod source;
mod traffic;
pub mod writers;

pub use scenario::{GeneratorConfig, Scenario};
pub use source::GeneratorSource;
pub use traffic::Generator;

#[cfg(test)]
mod tests;
