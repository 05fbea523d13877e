//! The one crate every inferwatch crate shares: event types, the Arrow schema of every table,
//! validation, and decoding of raw JSON payloads straight into Arrow.

pub mod alert;
pub mod bytes;
pub mod dead_letter;
pub mod decode;
pub mod event;
pub mod feedback;
pub mod hash;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod properties;
pub mod raw;
pub mod tables;
pub mod time;
pub mod validate;

pub use alert::{Notice, NoticeKind, Severity};
pub use dead_letter::DeadLetterBuilder;
pub use decode::{Decoded, EventDecoder, Reject};
pub use event::InferenceEvent;
pub use feedback::{decode_feedback, Feedback, Unmatched};
pub use properties::ClientProperties;
pub use raw::RawBatch;
pub use validate::Limits;
