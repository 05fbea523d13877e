//! Getting events in: sources (file replay, in-process generator) and the synthetic traffic
//! generator behind `inferwatch generate` and the demo.

pub mod file;
pub mod generate;
pub mod generator;
pub mod source;

pub use file::FileSource;
pub use generator::GeneratorSource;
pub use source::{Source, SourceError};
