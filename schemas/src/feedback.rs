//! Feedback events (topic `inference-feedback`): a label for an earlier prediction, joined to
//! it by `event_id`.
//!
//! `{"event_id": "...", "timestamp": "2026-01-01T00:10:00Z", "correct": true}` — with
//! `correct`, `label` (compared with the prediction's `prediction`) or `score` (in [0, 1],
//! compared with a threshold), in that order of preference, and an optional `source`.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMillisecondBuilder,
};
use serde::Deserialize;

use crate::decode::Reject;
use crate::raw::RawBatch;
use crate::tables::feedback_unmatched_schema;
use crate::time::{parse_rfc3339, MAX_EVENT_MS, MIN_EVENT_MS};
use crate::validate::Limits;

/// One decoded feedback event.
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    pub event_id: String,
    /// When the feedback was given, epoch milliseconds.
    pub timestamp: i64,
    pub correct: Option<bool>,
    pub label: Option<String>,
    pub score: Option<f64>,
    /// Who gave it (`human`, `user_thumbs`, …), as sent.
    pub source: Option<String>,
    /// Where it came from: source partition and offset.
    pub partition: i32,
    pub offset: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    event_id: Option<String>,
    timestamp: Option<serde_json::Value>,
    correct: Option<bool>,
    label: Option<String>,
    score: Option<f64>,
    source: Option<String>,
    /// The prediction's `service` and `model`: how a producer (the HTTP gateway) keys the
    /// feedback like its prediction. Not used by the join, which goes by `event_id`.
    service: Option<String>,
    model: Option<String>,
}

/// Decodes a batch of feedback payloads; bad ones become rejects naming what is wrong.
pub fn decode_feedback(raw: &RawBatch, limits: &Limits) -> (Vec<Feedback>, Vec<Reject>) {
    let mut good = Vec::with_capacity(raw.len());
    let mut bad = Vec::new();
    for i in 0..raw.len() {
        match decode_one(raw.payload(i), limits) {
            Ok(mut f) => {
                f.partition = raw.partition;
                f.offset = raw.offset(i);
                good.push(f);
            }
            Err(reason) => bad.push(Reject {
                index: i,
                reason: format!("feedback: {reason}"),
            }),
        }
    }
    (good, bad)
}

fn decode_one(payload: &[u8], limits: &Limits) -> Result<Feedback, String> {
    if payload.len() > limits.max_payload_bytes {
        return Err(format!(
            "payload of {} bytes is over the {} byte limit",
            payload.len(),
            limits.max_payload_bytes
        ));
    }
    let w: Wire = serde_json::from_slice(payload).map_err(|e| {
        let e = e.to_string();
        format!(
            "not a feedback JSON object: {}",
            crate::validate::clip(&e, 200)
        )
    })?;
    let event_id = w
        .event_id
        .filter(|s| !s.is_empty())
        .ok_or("missing required field `event_id`")?;
    if event_id.len() > limits.max_event_id_bytes {
        return Err(format!(
            "field `event_id` is longer than {} bytes",
            limits.max_event_id_bytes
        ));
    }
    let timestamp = match w.timestamp {
        None => return Err("missing required field `timestamp`".into()),
        Some(serde_json::Value::String(s)) => parse_rfc3339(&s).ok_or_else(|| {
            format!(
                "field `timestamp`: cannot parse {:?} as RFC 3339 or epoch milliseconds",
                crate::validate::clip(&s, 64)
            )
        })?,
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .ok_or("field `timestamp`: not a whole number of epoch milliseconds")?,
        Some(_) => return Err("field `timestamp`: expected RFC 3339 text or epoch ms".into()),
    };
    if !(MIN_EVENT_MS..=MAX_EVENT_MS).contains(&timestamp) {
        return Err(format!(
            "field `timestamp`: {timestamp} ms is outside 1970-01-01 .. 9999-12-31"
        ));
    }
    if let Some(s) = w.score {
        if !(0.0..=1.0).contains(&s) {
            return Err(format!("field `score`: {s} is outside [0, 1]"));
        }
    }
    for (name, v) in [
        ("label", &w.label),
        ("source", &w.source),
        ("service", &w.service),
        ("model", &w.model),
    ] {
        if v.as_ref().is_some_and(|v| v.len() > limits.max_name_bytes) {
            return Err(format!(
                "field `{name}` is longer than {} bytes",
                limits.max_name_bytes
            ));
        }
    }
    if w.correct.is_none() && w.label.is_none() && w.score.is_none() {
        return Err("feedback needs `correct`, `label` or `score`".into());
    }
    Ok(Feedback {
        event_id,
        timestamp,
        correct: w.correct,
        label: w.label,
        score: w.score,
        source: w.source,
        partition: 0,
        offset: 0,
    })
}

/// Why a feedback event joined no prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// No prediction with this `event_id` is waiting for a label: never seen, sent with
    /// `correct` already, or dropped past `feedback.max_pending`.
    Unknown,
    /// The prediction is older than `label_horizon` at the feedback's time.
    Expired,
    /// The prediction already got its label from earlier feedback.
    Duplicate,
    /// Only a `label`, and the prediction has no `prediction` to compare it with.
    Unusable,
}

impl Unmatched {
    pub fn as_str(self) -> &'static str {
        match self {
            Unmatched::Unknown => "unknown",
            Unmatched::Expired => "expired",
            Unmatched::Duplicate => "duplicate",
            Unmatched::Unusable => "unusable",
        }
    }
}

/// Rows of the `feedback_unmatched` table.
#[derive(Default)]
pub struct UnmatchedBuilder {
    event_id: StringBuilder,
    timestamp: TimestampMillisecondBuilder,
    reason: StringBuilder,
    correct: BooleanBuilder,
    label: StringBuilder,
    score: Float64Builder,
    source: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    rows: usize,
}

impl UnmatchedBuilder {
    pub fn append(&mut self, f: &Feedback, why: Unmatched) {
        self.event_id.append_value(&f.event_id);
        self.timestamp.append_value(f.timestamp);
        self.reason.append_value(why.as_str());
        self.correct.append_option(f.correct);
        self.label.append_option(f.label.as_deref());
        self.score.append_option(f.score);
        self.source.append_option(f.source.as_deref());
        self.partition.append_value(f.partition);
        self.offset.append_value(f.offset);
        self.rows += 1;
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn finish(&mut self) -> RecordBatch {
        self.rows = 0;
        let ts = self.timestamp.finish().with_timezone("UTC");
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(ts),
            Arc::new(self.reason.finish()),
            Arc::new(self.correct.finish()),
            Arc::new(self.label.finish()),
            Arc::new(self.score.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
        ];
        RecordBatch::try_new(feedback_unmatched_schema(), columns)
            .expect("builders match the feedback_unmatched schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(lines: &[&str]) -> (Vec<Feedback>, Vec<Reject>) {
        let mut raw = RawBatch::new(Arc::from("fb"), 2);
        for (i, l) in lines.iter().enumerate() {
            raw.push(l.as_bytes(), 100 + i as i64);
        }
        decode_feedback(&raw, &Limits::default())
    }

    #[test]
    fn good_feedback_decodes_and_bad_feedback_says_why() {
        let (good, bad) = decode(&[
            r#"{"event_id":"a","timestamp":"2026-01-01T00:10:00Z","correct":true,"source":"human"}"#,
            r#"{"event_id":"b","timestamp":1767226200000,"label":"refund"}"#,
            r#"{"event_id":"c","timestamp":1767226200000,"score":0.7}"#,
            r#"{"event_id":"d","timestamp":1767226200000}"#,
            r#"{"timestamp":1767226200000,"correct":true}"#,
            r#"{"event_id":"e","timestamp":1767226200000,"score":3}"#,
            r#"{"event_id":"f","timestamp":"yesterday","correct":false}"#,
            r#"not json"#,
        ]);
        assert_eq!(good.len(), 3);
        assert_eq!(good[0].timestamp, 1_767_226_200_000);
        assert_eq!(good[0].correct, Some(true));
        assert_eq!((good[1].partition, good[1].offset), (2, 101));
        assert_eq!(good[1].label.as_deref(), Some("refund"));
        let reasons: Vec<_> = bad.iter().map(|r| (r.index, r.reason.as_str())).collect();
        assert_eq!(reasons.len(), 5);
        assert!(
            reasons[0].1.contains("`correct`, `label` or `score`"),
            "{reasons:?}"
        );
        assert!(reasons[1].1.contains("event_id"), "{reasons:?}");
        assert!(reasons[2].1.contains("score"), "{reasons:?}");
        assert!(reasons[3].1.contains("timestamp"), "{reasons:?}");
        assert!(
            reasons[4]
                .1
                .starts_with("feedback: not a feedback JSON object"),
            "{reasons:?}"
        );
    }
}
