//! The kinds of broken payload the malformed scenario writes, one per dead-letter reason.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malform {
    NotJson,
    Empty,
    MissingEventId,
    BadTimestamp,
    ConfidenceOutOfRange,
    NegativeTokens,
    WrongType,
    OversizedEventId,
    UnknownSchemaVersion,
    JsonArray,
    InvalidUtf8,
}

pub(crate) const MALFORMS: [Malform; 11] = [
    Malform::NotJson,
    Malform::Empty,
    Malform::MissingEventId,
    Malform::BadTimestamp,
    Malform::ConfidenceOutOfRange,
    Malform::NegativeTokens,
    Malform::WrongType,
    Malform::OversizedEventId,
    Malform::UnknownSchemaVersion,
    Malform::JsonArray,
    Malform::InvalidUtf8,
];

/// Share of broken payloads after the onset of [`Scenario::Malformed`].
pub(crate) const MALFORMED_SHARE: f64 = 0.05;
