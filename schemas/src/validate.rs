//! Field rules of the event schema and readable reasons for payloads that break them.

use serde_json::Value;

/// The only event `schema_version` this build reads.
pub const SUPPORTED_SCHEMA_VERSION: i64 = 1;

/// `cost_source` values in the `events` table.
pub const COST_SOURCE_EVENT: &str = "event";
pub const COST_SOURCE_TABLE: &str = "table";

/// Size limits that keep one payload from blowing up memory or a Parquet page.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_payload_bytes: usize,
    pub max_event_id_bytes: usize,
    /// service, model, route, tenant, session_id, prediction, tool, flags, attribute keys…
    pub max_name_bytes: usize,
    pub max_attribute_value_bytes: usize,
    pub max_flags: usize,
    pub max_attributes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 1 << 20,
            max_event_id_bytes: 128,
            max_name_bytes: 256,
            max_attribute_value_bytes: 1024,
            max_flags: 32,
            max_attributes: 64,
        }
    }
}

/// A required name or id: present, not empty, at most `max` bytes. (The rule itself, for
/// the decoder's fast path; [`Limits::required_id`] gives the reason when it breaks.)
#[inline]
pub(crate) fn id_fits(v: Option<&str>, max: usize) -> bool {
    v.is_some_and(|s| !s.is_empty() && s.len() <= max)
}

/// An optional text: absent, or at most `max` bytes.
#[inline]
pub(crate) fn text_fits(v: Option<&str>, max: usize) -> bool {
    v.is_none_or(|s| s.len() <= max)
}

impl Limits {
    // The checks inline into the decoder's per-event validation; the reasons are built out
    // of line (`#[cold]`), as they are seldom needed.
    #[inline]
    pub(crate) fn required_id(
        &self,
        name: &str,
        v: Option<&str>,
        max: usize,
    ) -> Result<(), String> {
        match v {
            _ if id_fits(v, max) => Ok(()),
            None => Err(missing(name)),
            Some("") => Err(empty(name)),
            Some(s) => Err(too_long(name, s.len(), max)),
        }
    }

    #[inline]
    pub(crate) fn optional_text(
        &self,
        name: &str,
        v: Option<&str>,
        max: usize,
    ) -> Result<(), String> {
        match text_fits(v, max) {
            true => Ok(()),
            false => Err(too_long(name, v.map_or(0, str::len), max)),
        }
    }
}

/// Call outcome. Anything but `ok` is counted by the volume metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Error,
    Timeout,
    Refused,
    Filtered,
}

impl Status {
    pub fn parse(s: &str) -> Result<Status, String> {
        Ok(match s {
            "ok" => Status::Ok,
            "error" => Status::Error,
            "timeout" => Status::Timeout,
            "refused" => Status::Refused,
            "filtered" => Status::Filtered,
            other => {
                return Err(format!(
                    "field `status`: {:?} is not one of ok, error, timeout, refused, filtered",
                    clip(other, 64)
                ))
            }
        })
    }
}

#[cold]
fn missing(name: &str) -> String {
    format!("missing required field `{name}`")
}

#[cold]
fn empty(name: &str) -> String {
    format!("field `{name}` is empty")
}

#[cold]
fn too_long(name: &str, len: usize, max: usize) -> String {
    format!("field `{name}` is {len} bytes, at most {max} allowed")
}

#[inline]
pub(crate) fn non_negative_f64(name: &str, v: Option<f64>) -> Result<(), String> {
    match v {
        Some(x) if !x.is_finite() || x < 0.0 => Err(not_non_negative(name, x)),
        _ => Ok(()),
    }
}

#[cold]
fn not_non_negative(name: &str, x: f64) -> String {
    format!("field `{name}`: {x} is not a finite, non-negative number")
}

#[inline]
pub(crate) fn unit_interval(name: &str, v: Option<f64>) -> Result<(), String> {
    match v {
        Some(x) if !(0.0..=1.0).contains(&x) => Err(outside_unit(name, x)),
        _ => Ok(()),
    }
}

#[cold]
fn outside_unit(name: &str, x: f64) -> String {
    format!("field `{name}`: {x} is outside [0, 1]")
}

#[inline]
pub(crate) fn non_negative_i64(name: &str, v: Option<i64>) -> Result<(), String> {
    match v {
        Some(n) if n < 0 => Err(negative(name, n)),
        _ => Ok(()),
    }
}

#[cold]
fn negative(name: &str, n: i64) -> String {
    format!("field `{name}`: {n} is negative")
}

/// `approval`, when given, one of its three values.
#[inline]
pub(crate) fn approval(v: Option<&str>) -> Result<(), String> {
    match v {
        None | Some("approved" | "rejected" | "pending") => Ok(()),
        Some(a) => Err(not_an_approval(a)),
    }
}

#[cold]
fn not_an_approval(a: &str) -> String {
    format!(
        "field `approval`: {:?} is not one of approved, rejected, pending",
        clip(a, 64)
    )
}

/// `schema_version`, when given, the one this build reads.
#[inline]
pub(crate) fn schema_version(v: Option<i64>) -> Result<(), String> {
    match v {
        Some(v) if v != SUPPORTED_SCHEMA_VERSION => Err(unknown_version(v)),
        _ => Ok(()),
    }
}

#[cold]
fn unknown_version(v: i64) -> String {
    format!("unknown schema_version {v} (this build reads {SUPPORTED_SCHEMA_VERSION})")
}

/// Cached tokens are part of the input.
#[inline]
pub(crate) fn cached_tokens(cached: Option<i64>, input: Option<i64>) -> Result<(), String> {
    match (cached, input) {
        (Some(c), Some(i)) if c > i => Err(cached_above_input(c, i)),
        _ => Ok(()),
    }
}

#[cold]
fn cached_above_input(c: i64, i: i64) -> String {
    format!(
        "field `tokens_cached`: {c} exceeds tokens_in {i} (cached tokens are part of the input)"
    )
}

/// At most `max` bytes of `s`, cut on a character boundary, so reasons stay short.
pub fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[derive(Clone, Copy)]
enum Expect {
    Text,
    Number,
    Integer,
    Bool,
    Time,
    TextList,
    TextMap,
}

const FIELDS: &[(&str, Expect)] = &[
    ("event_id", Expect::Text),
    ("timestamp", Expect::Time),
    ("service", Expect::Text),
    ("model", Expect::Text),
    ("model_version", Expect::Text),
    ("route", Expect::Text),
    ("tenant", Expect::Text),
    ("session_id", Expect::Text),
    ("status", Expect::Text),
    ("latency_ms", Expect::Number),
    ("tokens_in", Expect::Integer),
    ("tokens_out", Expect::Integer),
    ("tokens_cached", Expect::Integer),
    ("cost_usd", Expect::Number),
    ("prediction", Expect::Text),
    ("confidence", Expect::Number),
    ("correct", Expect::Bool),
    ("quality_score", Expect::Number),
    ("flags", Expect::TextList),
    ("approval", Expect::Text),
    ("step", Expect::Integer),
    ("tool", Expect::Text),
    ("provider", Expect::Text),
    ("input_hash", Expect::Text),
    ("output_chars", Expect::Integer),
    ("attributes", Expect::TextMap),
    ("schema_version", Expect::Integer),
];

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {:?}", clip(s, 40)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Explains why a payload failed the fast decode. Only bad payloads come here, so it may
/// re-parse them as a `Value` tree.
pub fn diagnose(payload: &[u8], err: &serde_json::Error) -> String {
    if let Err(e) = std::str::from_utf8(payload) {
        return format!(
            "payload is not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        );
    }
    let value: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => return format!("invalid JSON: {e}"),
    };
    let Value::Object(map) = &value else {
        let what = match value {
            Value::Array(_) => "an array",
            Value::String(_) => "a string",
            Value::Number(_) => "a number",
            Value::Bool(_) => "a boolean",
            _ => "null",
        };
        return format!("payload is {what}, expected a JSON object");
    };
    for (name, expect) in FIELDS {
        let Some(v) = map.get(*name) else { continue };
        if v.is_null() {
            continue;
        }
        let ok = match expect {
            Expect::Text => v.is_string(),
            Expect::Number => v.is_number(),
            // Integers are stored as Int64: a u64 above i64::MAX does not fit.
            Expect::Integer => v.is_i64(),
            Expect::Bool => v.is_boolean(),
            Expect::Time => v.is_string() || v.is_number(),
            Expect::TextList => v
                .as_array()
                .is_some_and(|a| a.iter().all(|x| x.is_string())),
            Expect::TextMap => v
                .as_object()
                .is_some_and(|o| o.values().all(|x| x.is_string())),
        };
        if !ok {
            let wanted = match expect {
                Expect::Text => "a string",
                Expect::Number => "a number",
                Expect::Integer => "an integer",
                Expect::Bool => "true or false",
                Expect::Time => "an RFC 3339 string or epoch milliseconds",
                Expect::TextList => "a list of strings",
                Expect::TextMap => "an object of string values",
            };
            return format!("field `{name}`: expected {wanted}, got {}", kind(v));
        }
    }
    format!("invalid event: {err}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("abc", 10), "abc");
    }
}
