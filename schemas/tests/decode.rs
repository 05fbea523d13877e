//! Integration tests of `EventDecoder` and `DeadLetterBuilder`: raw JSON payloads in, Arrow
//! `events` rows and `dead_letter` rows out.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampMillisecondType};
use serde_json::{json, Value};

use inferwatch_schemas::tables::{dead_letter_schema, events, events_schema};
use inferwatch_schemas::{DeadLetterBuilder, Decoded, EventDecoder, Limits, RawBatch, Reject};

/// 2026-01-01T00:00:00Z in epoch milliseconds.
const NEW_YEAR_2026_MS: i64 = 1_767_225_600_000;

const SOURCE: &str = "file:test.ndjson";
const PARTITION: i32 = 3;
const FIRST_OFFSET: i64 = 1_000;

// ---------------------------------------------------------------------------------------------
// helpers

/// A raw batch from `SOURCE`/`PARTITION`; payload `i` sits at offset `FIRST_OFFSET + 10 * i`.
fn raw_batch<P: AsRef<[u8]>>(payloads: &[P]) -> RawBatch {
    let mut raw = RawBatch::new(Arc::from(SOURCE), PARTITION);
    for (i, p) in payloads.iter().enumerate() {
        raw.push(p.as_ref(), FIRST_OFFSET + 10 * i as i64);
    }
    raw
}

fn decode_with(limits: Limits, payloads: &[&[u8]]) -> Decoded {
    EventDecoder::new(limits).decode(&raw_batch(payloads))
}

/// Checks the invariants every decode result must hold, whatever the payloads.
fn check_partition(d: &Decoded, inputs: usize) {
    assert_eq!(
        d.events.schema(),
        events_schema(),
        "events batch has the events schema"
    );
    assert_eq!(
        d.events.num_rows(),
        d.rows.len(),
        "one row index per event row"
    );
    assert_eq!(
        d.rows.len() + d.rejects.len(),
        inputs,
        "every payload is a row or a reject"
    );
    let mut seen = vec![false; inputs];
    for &r in &d.rows {
        assert!(!seen[r as usize], "index {r} reported twice");
        seen[r as usize] = true;
    }
    for rej in &d.rejects {
        assert!(!seen[rej.index], "index {} reported twice", rej.index);
        seen[rej.index] = true;
        assert!(
            !rej.reason.is_empty(),
            "reject {} has an empty reason",
            rej.index
        );
    }
    assert!(seen.iter().all(|s| *s));
    assert!(
        d.rows.windows(2).all(|w| w[0] < w[1]),
        "rows in payload order"
    );
    assert!(
        d.rejects.windows(2).all(|w| w[0].index < w[1].index),
        "rejects in payload order"
    );
}

/// Decodes one payload that must be accepted and returns its one-row batch.
fn accept(payload: &[u8]) -> RecordBatch {
    let d = decode_with(Limits::default(), &[payload]);
    check_partition(&d, 1);
    assert!(
        d.rejects.is_empty(),
        "payload {:?} was rejected: {:?}",
        String::from_utf8_lossy(payload),
        d.rejects
    );
    assert_eq!(d.rows, vec![0]);
    d.events
}

fn accept_json(v: &Value) -> RecordBatch {
    accept(v.to_string().as_bytes())
}

/// Decodes one payload that must be rejected and returns the reason.
fn reject_with(limits: Limits, payload: &[u8]) -> String {
    let d = decode_with(limits, &[payload]);
    check_partition(&d, 1);
    assert!(
        d.rows.is_empty(),
        "payload {:?} was accepted",
        String::from_utf8_lossy(payload)
    );
    assert_eq!(d.events.num_rows(), 0);
    assert_eq!(d.rejects.len(), 1);
    assert_eq!(d.rejects[0].index, 0);
    d.rejects[0].reason.clone()
}

fn reject(payload: &[u8]) -> String {
    reject_with(Limits::default(), payload)
}

fn reject_json(v: &Value) -> String {
    reject(v.to_string().as_bytes())
}

/// Rejects `v` and checks that the reason names `field` (in backticks) and contains `also`.
fn assert_rejected_naming(v: &Value, field: &str, also: &str) -> String {
    let reason = reject_json(v);
    assert!(
        reason.contains(&format!("`{field}`")),
        "reason {reason:?} for {v} does not name field `{field}`"
    );
    assert!(
        reason.contains(also),
        "reason {reason:?} for {v} does not contain {also:?}"
    );
    reason
}

/// The smallest valid event.
fn minimal() -> Value {
    json!({
        "event_id": "evt-1",
        "timestamp": "2026-01-01T00:00:00Z",
        "service": "checkout",
        "model": "gpt-x",
    })
}

/// `minimal()` with `key` set to `v`.
fn with(key: &str, v: Value) -> Value {
    let mut e = minimal();
    e[key] = v;
    e
}

/// `minimal()` without `key`.
fn without(key: &str) -> Value {
    let mut e = minimal();
    e.as_object_mut().unwrap().remove(key);
    e
}

fn strings(b: &RecordBatch, col: usize) -> &StringArray {
    b.column(col).as_string::<i32>()
}

fn str_at(b: &RecordBatch, col: usize, row: usize) -> &str {
    let a = strings(b, col);
    assert!(a.is_valid(row), "column {col} row {row} is null");
    a.value(row)
}

fn f64_at(b: &RecordBatch, col: usize, row: usize) -> f64 {
    let a = b.column(col).as_primitive::<Float64Type>();
    assert!(a.is_valid(row), "column {col} row {row} is null");
    a.value(row)
}

fn i64_at(b: &RecordBatch, col: usize, row: usize) -> i64 {
    let a = b.column(col).as_primitive::<Int64Type>();
    assert!(a.is_valid(row), "column {col} row {row} is null");
    a.value(row)
}

fn i32_at(b: &RecordBatch, col: usize, row: usize) -> i32 {
    let a = b.column(col).as_primitive::<Int32Type>();
    assert!(a.is_valid(row), "column {col} row {row} is null");
    a.value(row)
}

fn ts_at(b: &RecordBatch, row: usize) -> i64 {
    let a = b
        .column(events::TIMESTAMP)
        .as_primitive::<TimestampMillisecondType>();
    assert!(a.is_valid(row));
    a.value(row)
}

fn bool_at(b: &RecordBatch, col: usize, row: usize) -> bool {
    let a = b.column(col).as_boolean();
    assert!(a.is_valid(row), "column {col} row {row} is null");
    a.value(row)
}

fn flags_at(b: &RecordBatch, row: usize) -> Vec<String> {
    let l = b.column(events::FLAGS).as_list::<i32>();
    assert!(l.is_valid(row), "flags of row {row} is null");
    let v = l.value(row);
    let s = v.as_string::<i32>();
    (0..s.len()).map(|i| s.value(i).to_owned()).collect()
}

fn attributes_at(b: &RecordBatch, row: usize) -> Vec<(String, String)> {
    let m = b.column(events::ATTRIBUTES).as_map();
    assert!(m.is_valid(row), "attributes of row {row} is null");
    let entries = m.value(row);
    let k = entries.column(0).as_string::<i32>();
    let v = entries.column(1).as_string::<i32>();
    (0..entries.len())
        .map(|i| (k.value(i).to_owned(), v.value(i).to_owned()))
        .collect()
}

/// A small deterministic PRNG (SplitMix64), so the property test needs no dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A payload with every optional field set, with JSON escapes in several strings.
const FULL_EVENT: &str = r#"{"event_id":"evt-\"42\"","timestamp":"2026-01-01T02:00:00.250+02:00","service":"caf\u00e9-api","model":"gpt-x","model_version":"2025-06-01","route":"/v1/chat","tenant":"acme","session_id":"sess-7","status":"error","latency_ms":123.5,"tokens_in":1000,"tokens_out":250,"tokens_cached":400,"cost_usd":0.0125,"prediction":"spam","confidence":0.875,"correct":true,"quality_score":0.25,"flags":["pii","tox\u00e9\\n"],"approval":"approved","step":3,"tool":"web_search","provider":"openai","input_hash":"sha256:ab12","output_chars":512,"attributes":{"region":"eu-west-1","k\"q":"v\u00e9"},"schema_version":1}"#;

// ---------------------------------------------------------------------------------------------
// 1. a full valid event

#[test]
fn full_event_fills_every_column() {
    let b = accept(FULL_EVENT.as_bytes());
    assert_eq!(b.num_columns(), 32);
    assert_eq!(b.num_rows(), 1);
    assert_eq!(str_at(&b, events::EVENT_ID, 0), "evt-\"42\"");
    assert_eq!(ts_at(&b, 0), NEW_YEAR_2026_MS + 250);
    assert_eq!(str_at(&b, events::SERVICE, 0), "café-api");
    assert_eq!(str_at(&b, events::MODEL, 0), "gpt-x");
    assert_eq!(str_at(&b, events::MODEL_VERSION, 0), "2025-06-01");
    assert_eq!(str_at(&b, events::PROVIDER, 0), "openai");
    assert_eq!(str_at(&b, events::ROUTE, 0), "/v1/chat");
    assert_eq!(str_at(&b, events::TENANT, 0), "acme");
    assert_eq!(str_at(&b, events::SESSION_ID, 0), "sess-7");
    assert_eq!(str_at(&b, events::STATUS, 0), "error");
    assert_eq!(f64_at(&b, events::LATENCY_MS, 0), 123.5);
    assert_eq!(i64_at(&b, events::TOKENS_IN, 0), 1000);
    assert_eq!(i64_at(&b, events::TOKENS_OUT, 0), 250);
    assert_eq!(i64_at(&b, events::TOKENS_CACHED, 0), 400);
    assert_eq!(f64_at(&b, events::COST_USD, 0), 0.0125);
    assert_eq!(str_at(&b, events::COST_SOURCE, 0), "event");
    assert_eq!(str_at(&b, events::PREDICTION, 0), "spam");
    assert_eq!(f64_at(&b, events::CONFIDENCE, 0), 0.875);
    assert!(bool_at(&b, events::CORRECT, 0));
    assert_eq!(f64_at(&b, events::QUALITY_SCORE, 0), 0.25);
    assert_eq!(
        flags_at(&b, 0),
        vec!["pii".to_owned(), "toxé\\n".to_owned()]
    );
    assert_eq!(str_at(&b, events::APPROVAL, 0), "approved");
    assert_eq!(i64_at(&b, events::STEP, 0), 3);
    assert_eq!(str_at(&b, events::TOOL, 0), "web_search");
    assert_eq!(str_at(&b, events::INPUT_HASH, 0), "sha256:ab12");
    assert_eq!(i64_at(&b, events::OUTPUT_CHARS, 0), 512);
    assert_eq!(
        attributes_at(&b, 0),
        vec![
            ("region".to_owned(), "eu-west-1".to_owned()),
            ("k\"q".to_owned(), "vé".to_owned()),
        ]
    );
    assert_eq!(i32_at(&b, events::SCHEMA_VERSION, 0), 1);
    assert_eq!(str_at(&b, events::SOURCE, 0), SOURCE);
    assert_eq!(i32_at(&b, events::SOURCE_PARTITION, 0), PARTITION);
    assert_eq!(i64_at(&b, events::SOURCE_OFFSET, 0), FIRST_OFFSET);
    assert!(!bool_at(&b, events::LATE, 0));
    // No column is null in a fully populated event.
    for (i, c) in b.columns().iter().enumerate() {
        assert_eq!(
            c.null_count(),
            0,
            "column {i} ({}) has a null",
            b.schema().field(i).name()
        );
    }
}

#[test]
fn lists_and_batch_constants_hold_for_every_row_order_and_batch() {
    // `flags`, `attributes` and `provider` first absent, then present, then absent again;
    // a batch with none; then a batch whose only ones come last. One decoder, so state
    // carries over.
    let plain = minimal().to_string();
    let flagged = with("flags", json!(["pii"])).to_string();
    let attributed = with("attributes", json!({"k": "v"})).to_string();
    let provided = with("provider", json!("openai")).to_string();
    let batches: [&[&str]; 3] = [
        &[&plain, &plain, &flagged, &attributed, &provided, &plain],
        &[&plain, &plain],
        &[&plain, &plain, &plain, &attributed, &provided],
    ];
    let mut decoder = EventDecoder::default();
    for payloads in batches {
        let d = decoder.decode(&raw_batch(payloads));
        check_partition(&d, payloads.len());
        let b = &d.events;
        let (flags, attrs) = (b.column(events::FLAGS), b.column(events::ATTRIBUTES));
        for (row, p) in payloads.iter().enumerate() {
            assert_eq!(flags.is_valid(row), *p == flagged, "flags row {row}");
            assert_eq!(
                attrs.is_valid(row),
                *p == attributed,
                "attributes row {row}"
            );
            let provider = b.column(events::PROVIDER);
            assert_eq!(provider.is_valid(row), *p == provided, "provider row {row}");
            if *p == provided {
                assert_eq!(str_at(b, events::PROVIDER, row), "openai");
            }
            assert_eq!(str_at(b, events::SOURCE, row), SOURCE);
            assert_eq!(i32_at(b, events::SOURCE_PARTITION, row), PARTITION);
            assert!(!bool_at(b, events::LATE, row));
        }
        if let Some(row) = payloads.iter().position(|p| *p == flagged) {
            assert_eq!(flags_at(b, row), ["pii"]);
        }
        if let Some(row) = payloads.iter().position(|p| *p == attributed) {
            assert_eq!(attributes_at(b, row), [("k".to_owned(), "v".to_owned())]);
        }
    }
}

#[test]
fn column_constants_match_the_schema() {
    let s = events_schema();
    for (idx, name) in [
        (events::EVENT_ID, "event_id"),
        (events::TIMESTAMP, "timestamp"),
        (events::SERVICE, "service"),
        (events::MODEL, "model"),
        (events::MODEL_VERSION, "model_version"),
        (events::PROVIDER, "provider"),
        (events::ROUTE, "route"),
        (events::TENANT, "tenant"),
        (events::SESSION_ID, "session_id"),
        (events::STATUS, "status"),
        (events::LATENCY_MS, "latency_ms"),
        (events::TOKENS_IN, "tokens_in"),
        (events::TOKENS_OUT, "tokens_out"),
        (events::TOKENS_CACHED, "tokens_cached"),
        (events::COST_USD, "cost_usd"),
        (events::COST_SOURCE, "cost_source"),
        (events::PREDICTION, "prediction"),
        (events::CONFIDENCE, "confidence"),
        (events::CORRECT, "correct"),
        (events::QUALITY_SCORE, "quality_score"),
        (events::FLAGS, "flags"),
        (events::APPROVAL, "approval"),
        (events::STEP, "step"),
        (events::TOOL, "tool"),
        (events::INPUT_HASH, "input_hash"),
        (events::OUTPUT_CHARS, "output_chars"),
        (events::ATTRIBUTES, "attributes"),
        (events::SCHEMA_VERSION, "schema_version"),
        (events::SOURCE, "source"),
        (events::SOURCE_PARTITION, "source_partition"),
        (events::SOURCE_OFFSET, "source_offset"),
        (events::LATE, "late"),
    ] {
        assert_eq!(s.field(idx).name(), name, "column index {idx}");
    }
    assert_eq!(s.fields().len(), 32);
}

#[test]
fn minimal_event_gets_defaults_and_nulls() {
    let b = accept_json(&minimal());
    assert_eq!(str_at(&b, events::EVENT_ID, 0), "evt-1");
    assert_eq!(ts_at(&b, 0), NEW_YEAR_2026_MS);
    assert_eq!(str_at(&b, events::SERVICE, 0), "checkout");
    assert_eq!(str_at(&b, events::MODEL, 0), "gpt-x");
    assert_eq!(str_at(&b, events::STATUS, 0), "ok", "status defaults to ok");
    assert_eq!(
        i32_at(&b, events::SCHEMA_VERSION, 0),
        1,
        "schema_version defaults to 1"
    );
    assert!(!bool_at(&b, events::LATE, 0));
    assert_eq!(str_at(&b, events::SOURCE, 0), SOURCE);
    assert_eq!(i32_at(&b, events::SOURCE_PARTITION, 0), PARTITION);
    assert_eq!(i64_at(&b, events::SOURCE_OFFSET, 0), FIRST_OFFSET);
    for col in [
        events::MODEL_VERSION,
        events::ROUTE,
        events::TENANT,
        events::SESSION_ID,
        events::LATENCY_MS,
        events::TOKENS_IN,
        events::TOKENS_OUT,
        events::TOKENS_CACHED,
        events::COST_USD,
        events::COST_SOURCE,
        events::PREDICTION,
        events::CONFIDENCE,
        events::CORRECT,
        events::QUALITY_SCORE,
        events::FLAGS,
        events::APPROVAL,
        events::STEP,
        events::TOOL,
        events::INPUT_HASH,
        events::OUTPUT_CHARS,
        events::ATTRIBUTES,
    ] {
        assert!(
            b.column(col).is_null(0),
            "optional column {} should be null",
            b.schema().field(col).name()
        );
    }
}

#[test]
fn explicit_nulls_are_treated_as_absent() {
    let mut e = minimal();
    for k in [
        "model_version",
        "route",
        "status",
        "latency_ms",
        "tokens_in",
        "cost_usd",
        "correct",
        "flags",
        "attributes",
        "schema_version",
    ] {
        e[k] = Value::Null;
    }
    let b = accept_json(&e);
    assert!(b.column(events::MODEL_VERSION).is_null(0));
    assert!(b.column(events::ROUTE).is_null(0));
    assert_eq!(str_at(&b, events::STATUS, 0), "ok");
    assert!(b.column(events::LATENCY_MS).is_null(0));
    assert!(b.column(events::TOKENS_IN).is_null(0));
    assert!(b.column(events::COST_USD).is_null(0));
    assert!(b.column(events::COST_SOURCE).is_null(0));
    assert!(b.column(events::CORRECT).is_null(0));
    assert!(b.column(events::FLAGS).is_null(0));
    assert!(b.column(events::ATTRIBUTES).is_null(0));
    assert_eq!(i32_at(&b, events::SCHEMA_VERSION, 0), 1);
}

#[test]
fn cost_source_is_event_only_when_cost_given() {
    let b = accept_json(&with("cost_usd", json!(0)));
    assert_eq!(f64_at(&b, events::COST_USD, 0), 0.0);
    assert_eq!(str_at(&b, events::COST_SOURCE, 0), "event");
    let b = accept_json(&with("latency_ms", json!(5)));
    assert!(b.column(events::COST_USD).is_null(0));
    assert!(b.column(events::COST_SOURCE).is_null(0));
}

#[test]
fn empty_flags_and_attributes_are_empty_not_null() {
    let mut e = minimal();
    e["flags"] = json!([]);
    e["attributes"] = json!({});
    let b = accept_json(&e);
    assert_eq!(flags_at(&b, 0), Vec::<String>::new());
    assert_eq!(attributes_at(&b, 0), Vec::<(String, String)>::new());
}

#[test]
fn every_status_and_approval_value_is_accepted() {
    for s in ["ok", "error", "timeout", "refused", "filtered"] {
        let b = accept_json(&with("status", json!(s)));
        assert_eq!(str_at(&b, events::STATUS, 0), s);
    }
    for a in ["approved", "rejected", "pending"] {
        let b = accept_json(&with("approval", json!(a)));
        assert_eq!(str_at(&b, events::APPROVAL, 0), a);
    }
}

#[test]
fn boundary_values_are_accepted() {
    let mut e = minimal();
    e["confidence"] = json!(0.0);
    e["quality_score"] = json!(1.0);
    e["tokens_in"] = json!(10);
    e["tokens_cached"] = json!(10); // equal to tokens_in is fine
    e["tokens_out"] = json!(0);
    e["latency_ms"] = json!(0);
    e["step"] = json!(0);
    e["output_chars"] = json!(i64::MAX);
    e["event_id"] = json!("e".repeat(128));
    e["service"] = json!("s".repeat(256));
    let b = accept_json(&e);
    assert_eq!(f64_at(&b, events::CONFIDENCE, 0), 0.0);
    assert_eq!(f64_at(&b, events::QUALITY_SCORE, 0), 1.0);
    assert_eq!(i64_at(&b, events::TOKENS_CACHED, 0), 10);
    assert_eq!(i64_at(&b, events::OUTPUT_CHARS, 0), i64::MAX);
    assert_eq!(str_at(&b, events::EVENT_ID, 0).len(), 128);
    assert_eq!(str_at(&b, events::SERVICE, 0).len(), 256);
    // Integers are accepted where a float is expected.
    let b = accept_json(&with("confidence", json!(1)));
    assert_eq!(f64_at(&b, events::CONFIDENCE, 0), 1.0);
}

#[test]
fn event_id_length_is_counted_in_utf8_bytes() {
    // 64 two-byte characters = 128 bytes: accepted; one more character: rejected.
    let ok = "é".repeat(64);
    let b = accept_json(&with("event_id", json!(ok)));
    assert_eq!(str_at(&b, events::EVENT_ID, 0), ok);
    assert_rejected_naming(
        &with("event_id", json!("é".repeat(65))),
        "event_id",
        "130 bytes",
    );
}

#[test]
fn whitespace_around_the_object_is_allowed() {
    let payload = format!(" \t\r\n{}\n ", minimal());
    let b = accept(payload.as_bytes());
    assert_eq!(str_at(&b, events::EVENT_ID, 0), "evt-1");
}

// ---------------------------------------------------------------------------------------------
// 2. timestamps

#[test]
fn timestamp_rfc3339_with_offset() {
    let cases = [
        ("2026-01-01T00:00:00Z", NEW_YEAR_2026_MS),
        ("2026-01-01T02:00:00+02:00", NEW_YEAR_2026_MS),
        ("2025-12-31T19:00:00-05:00", NEW_YEAR_2026_MS),
        ("2026-01-01T05:30:00.123+05:30", NEW_YEAR_2026_MS + 123),
        ("2026-01-01t00:00:00.9z", NEW_YEAR_2026_MS + 900),
        ("2026-01-01 00:00:00.123999Z", NEW_YEAR_2026_MS + 123),
        ("1970-01-01T00:00:00Z", 0),
        ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
    ];
    for (text, want) in cases {
        let b = accept_json(&with("timestamp", json!(text)));
        assert_eq!(ts_at(&b, 0), want, "{text}");
    }
}

#[test]
fn timestamp_epoch_millis() {
    for ms in [NEW_YEAR_2026_MS + 7, 0, 253_402_300_799_999] {
        let b = accept_json(&with("timestamp", json!(ms)));
        assert_eq!(ts_at(&b, 0), ms);
    }
    // A whole number written as a float is still whole milliseconds.
    let payload = minimal()
        .to_string()
        .replace("\"2026-01-01T00:00:00Z\"", "1767225600000.0");
    assert!(payload.contains("1767225600000.0"));
    let b = accept(payload.as_bytes());
    assert_eq!(ts_at(&b, 0), NEW_YEAR_2026_MS);
}

#[test]
fn both_timestamp_forms_agree() {
    let a = accept_json(&with("timestamp", json!("2026-03-04T05:06:07.089Z")));
    let b = accept_json(&with("timestamp", json!(1_772_600_767_089_i64)));
    assert_eq!(ts_at(&a, 0), 1_772_600_767_089);
    assert_eq!(ts_at(&a, 0), ts_at(&b, 0));
}

#[test]
fn timestamp_with_escape_is_parsed() {
    // `\u005a` is `Z`: the string is not borrowed but must still parse.
    let payload =
        br#"{"event_id":"e","timestamp":"2026-01-01T00:00:00\u005a","service":"s","model":"m"}"#;
    let b = accept(payload);
    assert_eq!(ts_at(&b, 0), NEW_YEAR_2026_MS);
}

#[test]
fn timestamp_outside_supported_range_is_rejected() {
    assert_rejected_naming(&with("timestamp", json!(-1)), "timestamp", "outside");
    assert_rejected_naming(
        &with("timestamp", json!("1969-12-31T23:59:59Z")),
        "timestamp",
        "outside",
    );
    assert_rejected_naming(
        &with("timestamp", json!(253_402_300_800_000_i64)),
        "timestamp",
        "outside",
    );
    assert_rejected_naming(&with("timestamp", json!(u64::MAX)), "timestamp", "outside");
}

// ---------------------------------------------------------------------------------------------
// 3. one test per reject reason

#[test]
fn reject_missing_event_id() {
    let r = assert_rejected_naming(&without("event_id"), "event_id", "missing required field");
    assert_eq!(r, "missing required field `event_id`");
    // null is the same as missing
    assert_rejected_naming(&with("event_id", Value::Null), "event_id", "missing");
}

#[test]
fn reject_empty_event_id() {
    let r = assert_rejected_naming(&with("event_id", json!("")), "event_id", "empty");
    assert_eq!(r, "field `event_id` is empty");
}

#[test]
fn reject_oversized_event_id() {
    let r = assert_rejected_naming(&with("event_id", json!("x".repeat(300))), "event_id", "300");
    assert_eq!(r, "field `event_id` is 300 bytes, at most 128 allowed");
    assert_rejected_naming(
        &with("event_id", json!("x".repeat(129))),
        "event_id",
        "129 bytes",
    );
}

#[test]
fn reject_missing_timestamp() {
    let r = assert_rejected_naming(&without("timestamp"), "timestamp", "missing");
    assert_eq!(r, "missing required field `timestamp`");
}

#[test]
fn reject_unparsable_timestamp() {
    let r = assert_rejected_naming(
        &with("timestamp", json!("yesterday")),
        "timestamp",
        "yesterday",
    );
    assert!(r.contains("RFC 3339"), "{r}");
    for bad in [
        "2026-01-01",
        "2026-01-01T00:00:00",
        "2026-02-30T00:00:00Z",
        "2026-01-01T00:00:00+0200",
        "1767225600000",
        "",
    ] {
        assert_rejected_naming(&with("timestamp", json!(bad)), "timestamp", "cannot parse");
    }
}

#[test]
fn reject_non_integral_epoch_millis() {
    let r = assert_rejected_naming(&with("timestamp", json!(1.5)), "timestamp", "1.5");
    assert!(r.contains("whole number"), "{r}");
    assert_rejected_naming(
        &with("timestamp", json!(1_767_225_600_000.25)),
        "timestamp",
        "whole number",
    );
}

#[test]
fn reject_timestamp_of_wrong_type() {
    for bad in [json!(true), json!([1]), json!({"ms": 1})] {
        assert_rejected_naming(&with("timestamp", bad), "timestamp", "expected");
    }
}

#[test]
fn reject_confidence_out_of_unit_interval() {
    assert_rejected_naming(
        &with("confidence", json!(1.7)),
        "confidence",
        "1.7 is outside [0, 1]",
    );
    assert_rejected_naming(
        &with("confidence", json!(-0.1)),
        "confidence",
        "-0.1 is outside [0, 1]",
    );
}

#[test]
fn reject_quality_score_out_of_unit_interval() {
    assert_rejected_naming(
        &with("quality_score", json!(2)),
        "quality_score",
        "outside [0, 1]",
    );
}

#[test]
fn reject_negative_tokens_in() {
    let r = assert_rejected_naming(&with("tokens_in", json!(-5)), "tokens_in", "negative");
    assert_eq!(r, "field `tokens_in`: -5 is negative");
}

#[test]
fn reject_other_negative_integers() {
    for field in ["tokens_out", "tokens_cached", "step", "output_chars"] {
        assert_rejected_naming(&with(field, json!(-1)), field, "-1 is negative");
    }
}

#[test]
fn reject_negative_latency_and_cost() {
    for field in ["latency_ms", "cost_usd"] {
        assert_rejected_naming(&with(field, json!(-0.5)), field, "non-negative");
    }
}

#[test]
fn reject_tokens_cached_above_tokens_in() {
    let mut e = minimal();
    e["tokens_in"] = json!(10);
    e["tokens_cached"] = json!(11);
    let r = assert_rejected_naming(&e, "tokens_cached", "exceeds tokens_in 10");
    assert!(r.contains("11"), "{r}");
}

#[test]
fn reject_latency_of_wrong_type() {
    let r = assert_rejected_naming(
        &with("latency_ms", json!("fast")),
        "latency_ms",
        "expected a number",
    );
    assert!(r.contains("fast"), "{r}");
}

#[test]
fn reject_correct_of_wrong_type() {
    assert_rejected_naming(
        &with("correct", json!("yes")),
        "correct",
        "expected true or false",
    );
    assert_rejected_naming(
        &with("correct", json!(1)),
        "correct",
        "expected true or false",
    );
}

#[test]
fn reject_fractional_tokens_out() {
    assert_rejected_naming(
        &with("tokens_out", json!(1.5)),
        "tokens_out",
        "expected an integer",
    );
    // A float that happens to be whole is still not an integer on the wire.
    assert_rejected_naming(
        &with("tokens_out", json!(2.0)),
        "tokens_out",
        "expected an integer",
    );
}

#[test]
fn reject_flags_that_are_not_a_list_of_strings() {
    assert_rejected_naming(
        &with("flags", json!("x")),
        "flags",
        "expected a list of strings",
    );
    assert_rejected_naming(
        &with("flags", json!(["a", 1])),
        "flags",
        "expected a list of strings",
    );
    assert_rejected_naming(
        &with("flags", json!(["a", null])),
        "flags",
        "expected a list of strings",
    );
}

#[test]
fn reject_attributes_with_non_string_values() {
    assert_rejected_naming(
        &with("attributes", json!({"a": 1})),
        "attributes",
        "expected an object of string values",
    );
    assert_rejected_naming(&with("attributes", json!(["a"])), "attributes", "expected");
}

#[test]
fn reject_string_fields_of_wrong_type() {
    for field in [
        "event_id", "service", "model", "route", "tenant", "status", "approval",
    ] {
        assert_rejected_naming(&with(field, json!(7)), field, "expected a string");
    }
}

#[test]
fn reject_bad_status() {
    let r = assert_rejected_naming(&with("status", json!("exploded")), "status", "exploded");
    assert!(r.contains("not one of"), "{r}");
    // Case matters.
    assert_rejected_naming(&with("status", json!("OK")), "status", "not one of");
}

#[test]
fn reject_bad_approval() {
    let r = assert_rejected_naming(&with("approval", json!("maybe")), "approval", "maybe");
    assert!(r.contains("approved, rejected, pending"), "{r}");
}

#[test]
fn reject_unknown_schema_version() {
    let r = reject_json(&with("schema_version", json!(99)));
    assert!(r.contains("schema_version"), "{r}");
    assert!(r.contains("99"), "{r}");
    for v in [0, 2, -1] {
        let r = reject_json(&with("schema_version", json!(v)));
        assert!(r.starts_with("unknown schema_version"), "{r}");
    }
    assert_rejected_naming(
        &with("schema_version", json!("1")),
        "schema_version",
        "integer",
    );
}

#[test]
fn reject_not_json() {
    let r = reject(b"this is not json");
    assert!(r.starts_with("invalid JSON"), "{r}");
    let r = reject(br#"{"event_id":"e","timestamp":0,"service":"s","model":"m""#);
    assert!(r.starts_with("invalid JSON"), "truncated object: {r}");
    let r = reject(br#"{"event_id":"e",}"#);
    assert!(r.starts_with("invalid JSON"), "trailing comma: {r}");
    let payload = format!("{} {}", minimal(), minimal());
    let r = reject(payload.as_bytes());
    assert!(r.starts_with("invalid JSON"), "two objects: {r}");
}

#[test]
fn reject_empty_payload() {
    assert_eq!(reject(b""), "empty payload");
}

#[test]
fn reject_whitespace_only_payload() {
    assert_eq!(reject(b" \t\r\n  "), "empty payload");
}

#[test]
fn reject_json_array() {
    assert_eq!(reject(b"[]"), "payload is an array, expected a JSON object");
    let arr = json!([minimal()]);
    assert_eq!(
        reject_json(&arr),
        "payload is an array, expected a JSON object"
    );
    let arr = json!(["evt-1", "2026-01-01T00:00:00Z", "checkout", "gpt-x"]);
    assert_eq!(
        reject_json(&arr),
        "payload is an array, expected a JSON object"
    );
}

#[test]
fn reject_other_json_scalars() {
    assert_eq!(
        reject(br#""hello""#),
        "payload is a string, expected a JSON object"
    );
    assert_eq!(reject(b"42"), "payload is a number, expected a JSON object");
    assert_eq!(
        reject(b"true"),
        "payload is a boolean, expected a JSON object"
    );
    assert_eq!(reject(b"null"), "payload is null, expected a JSON object");
}

#[test]
fn reject_invalid_utf8_inside_a_string() {
    let mut payload = br#"{"event_id":"e"#.to_vec();
    assert_eq!(payload.len(), 14);
    payload.push(0xFF);
    payload.extend_from_slice(br#"1","timestamp":0,"service":"s","model":"m"}"#);
    let r = reject(&payload);
    assert_eq!(r, "payload is not valid UTF-8 (invalid byte at offset 14)");
    // A truncated multi-byte sequence in a known field.
    let mut payload = br#"{"event_id":"e","timestamp":0,"service":"caf"#.to_vec();
    let at = payload.len();
    payload.push(0xC3);
    payload.extend_from_slice(br#"","model":"m"}"#);
    let r = reject(&payload);
    assert_eq!(
        r,
        format!("payload is not valid UTF-8 (invalid byte at offset {at})")
    );
}

#[test]
fn reject_lone_surrogate_escape() {
    let r = reject(br#"{"event_id":"\ud800","timestamp":0,"service":"s","model":"m"}"#);
    assert!(r.starts_with("invalid JSON"), "{r}");
}

#[test]
fn reject_payload_over_size_limit() {
    let limits = Limits {
        max_payload_bytes: 80,
        ..Limits::default()
    };
    // Grow event_id until the payload is exactly at the limit: accepted.
    let make = |n: usize| {
        format!(
            r#"{{"event_id":"{}","timestamp":0,"service":"s","model":"m"}}"#,
            "x".repeat(n)
        )
    };
    let base = make(0).len();
    assert!(base < 80);
    let at_limit = make(80 - base);
    assert_eq!(at_limit.len(), 80);
    let d = decode_with(limits.clone(), &[at_limit.as_bytes()]);
    check_partition(&d, 1);
    assert_eq!(d.rows, vec![0], "{:?}", d.rejects);

    let over = make(81 - base);
    let r = reject_with(limits.clone(), over.as_bytes());
    assert_eq!(r, "payload is 81 bytes, at most 80 allowed");
    // The same payload passes with the default limits.
    accept(over.as_bytes());
    assert_eq!(EventDecoder::new(limits).limits().max_payload_bytes, 80);
}

#[test]
fn reject_nan_like_numbers() {
    for lit in ["NaN", "Infinity", "-Infinity", "1e999", "nan", "+1"] {
        let payload = format!(
            r#"{{"event_id":"e","timestamp":0,"service":"s","model":"m","latency_ms":{lit}}}"#
        );
        let r = reject(payload.as_bytes());
        assert!(r.starts_with("invalid JSON"), "{lit}: {r}");
    }
}

#[test]
fn reject_oversized_service() {
    let r = assert_rejected_naming(
        &with("service", json!("s".repeat(300))),
        "service",
        "300 bytes",
    );
    assert_eq!(r, "field `service` is 300 bytes, at most 256 allowed");
}

#[test]
fn reject_missing_or_empty_service_and_model() {
    for field in ["service", "model"] {
        assert_rejected_naming(&without(field), field, "missing required field");
        assert_rejected_naming(&with(field, json!("")), field, "is empty");
    }
}

#[test]
fn reject_oversized_optional_text_fields() {
    for field in [
        "model",
        "model_version",
        "route",
        "tenant",
        "session_id",
        "prediction",
        "tool",
        "provider",
        "input_hash",
    ] {
        assert_rejected_naming(&with(field, json!("y".repeat(257))), field, "257 bytes");
    }
}

#[test]
fn reject_flags_and_attributes_over_limits() {
    let limits = Limits {
        max_flags: 2,
        max_attributes: 1,
        max_name_bytes: 8,
        max_attribute_value_bytes: 4,
        ..Limits::default()
    };
    let rej = |v: Value| reject_with(limits.clone(), v.to_string().as_bytes());
    let r = rej(with("flags", json!(["a", "b", "c"])));
    assert_eq!(r, "field `flags`: 3 entries, at most 2 allowed");
    let r = rej(with("flags", json!(["a", "123456789"])));
    assert_eq!(r, "field `flags` is 9 bytes, at most 8 allowed");
    let r = rej(with("attributes", json!({"a": "1", "b": "2"})));
    assert_eq!(r, "field `attributes`: 2 entries, at most 1 allowed");
    let r = rej(with("attributes", json!({"123456789": "1"})));
    assert!(r.contains("`attributes key`"), "{r}");
    let r = rej(with("attributes", json!({"a": "12345"})));
    assert!(r.contains("`attributes value`"), "{r}");
    // Exactly at the limits is fine.
    let mut e = minimal();
    e["flags"] = json!(["a", "12345678"]);
    e["attributes"] = json!({"12345678": "1234"});
    let d = decode_with(limits, &[e.to_string().as_bytes()]);
    assert_eq!(d.rows, vec![0], "{:?}", d.rejects);
}

#[test]
fn reject_duplicate_known_field() {
    let payload = br#"{"event_id":"a","event_id":"b","timestamp":0,"service":"s","model":"m"}"#;
    let r = reject(payload);
    assert!(r.contains("duplicate field `event_id`"), "{r}");
}

// ---------------------------------------------------------------------------------------------
// 4. mixed batches and decoder reuse

#[test]
fn mixed_batch_maps_rows_and_rejects_to_raw_indexes() {
    let payloads: Vec<Vec<u8>> = vec![
        with("event_id", json!("v0")).to_string().into_bytes(),
        b"not json".to_vec(),
        with("event_id", json!("v2")).to_string().into_bytes(),
        without("model").to_string().into_bytes(),
        with("event_id", json!("v4")).to_string().into_bytes(),
        Vec::new(),
        b"[1,2]".to_vec(),
        FULL_EVENT.as_bytes().to_vec(),
        with("confidence", json!(3)).to_string().into_bytes(),
    ];
    let raw = raw_batch(&payloads);
    let mut dec = EventDecoder::default();
    let d = dec.decode(&raw);
    check_partition(&d, payloads.len());
    assert_eq!(d.rows, vec![0, 2, 4, 7]);
    let idx: Vec<usize> = d.rejects.iter().map(|r| r.index).collect();
    assert_eq!(idx, vec![1, 3, 5, 6, 8]);
    assert!(d.rejects[1].reason.contains("`model`"));
    assert_eq!(d.rejects[2].reason, "empty payload");
    assert!(d.rejects[4].reason.contains("`confidence`"));
    let ids: Vec<&str> = (0..4)
        .map(|r| str_at(&d.events, events::EVENT_ID, r))
        .collect();
    assert_eq!(ids, vec!["v0", "v2", "v4", "evt-\"42\""]);
    for (row, &i) in d.rows.iter().enumerate() {
        assert_eq!(
            i64_at(&d.events, events::SOURCE_OFFSET, row),
            raw.offset(i as usize),
            "row {row} carries the offset of raw payload {i}"
        );
        assert_eq!(str_at(&d.events, events::SOURCE, row), SOURCE);
        assert_eq!(i32_at(&d.events, events::SOURCE_PARTITION, row), PARTITION);
    }
    // Optional columns line up per row: only the full event has flags.
    let flags = d.events.column(events::FLAGS);
    assert_eq!(
        (0..4).map(|r| flags.is_null(r)).collect::<Vec<_>>(),
        vec![true, true, true, false]
    );
    assert_eq!(
        flags_at(&d.events, 3),
        vec!["pii".to_owned(), "toxé\\n".to_owned()]
    );
}

#[test]
fn decoder_is_reusable_across_batches() {
    let mut dec = EventDecoder::default();

    let mut a0 = with("event_id", json!("a0"));
    a0["flags"] = json!(["f1", "f2"]);
    a0["attributes"] = json!({"k1": "v1", "k2": "v2"});
    a0["cost_usd"] = json!(0.5);
    let first = [
        a0.to_string(),
        "garbage".to_owned(),
        with("event_id", json!("a2")).to_string(),
    ];
    let raw1 = raw_batch(&first);
    let d1 = dec.decode(&raw1);
    check_partition(&d1, 3);
    assert_eq!(d1.rows, vec![0, 2]);
    assert_eq!(
        flags_at(&d1.events, 0),
        vec!["f1".to_owned(), "f2".to_owned()]
    );

    let mut b0 = with("event_id", json!("b0"));
    b0["flags"] = json!(["g"]);
    b0["attributes"] = json!({"z": "9"});
    let second = [
        "{}".to_owned(),
        b0.to_string(),
        with("timestamp", json!(42)).to_string(),
    ];
    let mut raw2 = RawBatch::new(Arc::from("kafka:events"), 7);
    for (i, p) in second.iter().enumerate() {
        raw2.push(p.as_bytes(), 500 + i as i64);
    }
    let d2 = dec.decode(&raw2);
    check_partition(&d2, 3);
    assert_eq!(d2.rows, vec![1, 2]);
    assert_eq!(d2.rejects.len(), 1);
    assert_eq!(d2.rejects[0].index, 0);
    assert!(
        d2.rejects[0].reason.contains("`event_id`"),
        "{}",
        d2.rejects[0].reason
    );

    let e = &d2.events;
    assert_eq!(e.num_rows(), 2, "builders were reset between batches");
    assert_eq!(str_at(e, events::EVENT_ID, 0), "b0");
    assert_eq!(str_at(e, events::EVENT_ID, 1), "evt-1");
    assert_eq!(ts_at(e, 1), 42);
    assert_eq!(
        flags_at(e, 0),
        vec!["g".to_owned()],
        "no flags leak from batch 1"
    );
    assert!(e.column(events::FLAGS).is_null(1));
    assert_eq!(attributes_at(e, 0), vec![("z".to_owned(), "9".to_owned())]);
    assert!(e.column(events::ATTRIBUTES).is_null(1));
    assert!(e.column(events::COST_SOURCE).is_null(0));
    for row in 0..2 {
        assert_eq!(str_at(e, events::SOURCE, row), "kafka:events");
        assert_eq!(i32_at(e, events::SOURCE_PARTITION, row), 7);
        assert_eq!(i64_at(e, events::SOURCE_OFFSET, row), 501 + row as i64);
    }
    // The first batch is unaffected by the second decode.
    assert_eq!(d1.events.num_rows(), 2);
    assert_eq!(str_at(&d1.events, events::EVENT_ID, 1), "a2");
    assert_eq!(str_at(&d1.events, events::COST_SOURCE, 0), "event");
}

#[test]
fn flags_and_attributes_stay_in_their_own_rows() {
    let rows = [
        (json!(["a", "b"]), json!({"k1": "v1", "k2": "v2"})),
        (json!([]), json!({})),
        (json!(["c"]), json!({"k3": "v3"})),
        (Value::Null, Value::Null),
        (json!(["d", "e", "f"]), json!({"k4": "v4"})),
    ];
    let payloads: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, (f, a))| {
            let mut e = with("event_id", json!(format!("r{i}")));
            e["flags"] = f.clone();
            e["attributes"] = a.clone();
            e.to_string()
        })
        .collect();
    let d = EventDecoder::default().decode(&raw_batch(&payloads));
    check_partition(&d, rows.len());
    assert_eq!(d.rows, vec![0, 1, 2, 3, 4]);
    let b = &d.events;
    for (row, (f, a)) in rows.iter().enumerate() {
        if f.is_null() {
            assert!(b.column(events::FLAGS).is_null(row));
            assert!(b.column(events::ATTRIBUTES).is_null(row));
            continue;
        }
        let want_flags: Vec<String> = f
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(flags_at(b, row), want_flags, "flags of row {row}");
        let want_attrs: Vec<(String, String)> = a
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(attributes_at(b, row), want_attrs, "attributes of row {row}");
    }
    // The child arrays hold exactly the entries of the rows, nothing more.
    let flags = b.column(events::FLAGS).as_list::<i32>();
    assert_eq!(flags.values().len(), 6);
    let attrs = b.column(events::ATTRIBUTES).as_map();
    assert_eq!(attrs.keys().len(), 4);
}

#[test]
fn empty_batch_decodes_to_empty_events() {
    let mut dec = EventDecoder::default();
    let d = dec.decode(&RawBatch::new(Arc::from(SOURCE), 0));
    check_partition(&d, 0);
    assert_eq!(d.events.num_rows(), 0);
    assert!(d.rows.is_empty() && d.rejects.is_empty());
    // and a real batch after an empty one still works
    let d = dec.decode(&raw_batch(&[minimal().to_string()]));
    assert_eq!(d.rows, vec![0]);
}

#[test]
fn all_invalid_batch_has_no_rows() {
    let d = decode_with(Limits::default(), &[b"x", b"", b"{}", b"[]"]);
    check_partition(&d, 4);
    assert!(d.rows.is_empty());
    assert_eq!(
        d.rejects.iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
}

#[test]
fn raw_batch_written_in_place_decodes() {
    let mut raw = RawBatch::with_capacity(Arc::from(SOURCE), 1, 2, 256);
    for (i, id) in ["p0", "p1"].iter().enumerate() {
        let start = raw.bytes();
        raw.buffer_mut()
            .extend_from_slice(with("event_id", json!(id)).to_string().as_bytes());
        raw.commit_tail(start, 90 + i as i64);
    }
    let d = EventDecoder::default().decode(&raw);
    check_partition(&d, 2);
    assert_eq!(str_at(&d.events, events::EVENT_ID, 0), "p0");
    assert_eq!(str_at(&d.events, events::EVENT_ID, 1), "p1");
    assert_eq!(i64_at(&d.events, events::SOURCE_OFFSET, 1), 91);
}

// ---------------------------------------------------------------------------------------------
// 5. dead letters

#[test]
fn dead_letter_rows_keep_raw_bytes_and_reasons() {
    let mut bad_utf8 = br#"{"event_id":"e"#.to_vec();
    bad_utf8.push(0xFE);
    bad_utf8.extend_from_slice(br#"","timestamp":0,"service":"s","model":"m"}"#);
    let payloads: Vec<Vec<u8>> = vec![
        minimal().to_string().into_bytes(),
        b"not json at all".to_vec(),
        bad_utf8.clone(),
        Vec::new(),
        with("status", json!("exploded")).to_string().into_bytes(),
    ];
    let raw = raw_batch(&payloads);
    let d = EventDecoder::default().decode(&raw);
    check_partition(&d, payloads.len());
    assert_eq!(d.rejects.len(), 4);

    let mut dl = DeadLetterBuilder::default();
    assert!(dl.is_empty());
    let stream_time = NEW_YEAR_2026_MS + 3_600_000;
    dl.append_rejects(&raw, &d.rejects, stream_time);
    assert_eq!(dl.len(), 4);
    assert!(!dl.is_empty());
    let b = dl.finish();
    assert_eq!(b.schema(), dead_letter_schema());
    assert_eq!(b.num_rows(), 4);

    let source = b.column(0).as_string::<i32>();
    let partition = b.column(1).as_primitive::<Int32Type>();
    let offset = b.column(2).as_primitive::<Int64Type>();
    let st = b.column(3).as_primitive::<TimestampMillisecondType>();
    let reason = b.column(4).as_string::<i32>();
    let raw_len = b.column(5).as_primitive::<Int64Type>();
    let bytes = b.column(6).as_binary::<i32>();
    for (row, Reject { index, reason: why }) in d.rejects.iter().enumerate() {
        assert_eq!(source.value(row), SOURCE);
        assert_eq!(partition.value(row), PARTITION);
        assert_eq!(offset.value(row), raw.offset(*index));
        assert_eq!(st.value(row), stream_time);
        assert_eq!(reason.value(row), why);
        assert_eq!(raw_len.value(row), payloads[*index].len() as i64);
        assert_eq!(
            bytes.value(row),
            payloads[*index].as_slice(),
            "raw bytes of row {row}"
        );
    }
    assert_eq!(bytes.value(1), bad_utf8.as_slice());
    assert_eq!(raw_len.value(2), 0);
    assert!(reason.value(1).contains("UTF-8"));
    for c in b.columns() {
        assert_eq!(c.null_count(), 0);
    }

    // finish resets the builder.
    assert!(dl.is_empty());
    assert_eq!(dl.finish().num_rows(), 0);
}

#[test]
fn dead_letter_accumulates_across_batches() {
    let mut dec = EventDecoder::default();
    let mut dl = DeadLetterBuilder::default();
    let raw1 = raw_batch(&["x", "y"]);
    let d1 = dec.decode(&raw1);
    dl.append_rejects(&raw1, &d1.rejects, 10);
    let mut raw2 = RawBatch::new(Arc::from("other"), 2);
    raw2.push(b"z", 77);
    let d2 = dec.decode(&raw2);
    dl.append_rejects(&raw2, &d2.rejects, 20);
    // No rejects: nothing appended.
    let raw3 = raw_batch(&[minimal().to_string()]);
    let d3 = dec.decode(&raw3);
    assert!(d3.rejects.is_empty());
    dl.append_rejects(&raw3, &d3.rejects, 30);
    assert_eq!(dl.len(), 3);
    let b = dl.finish();
    let src = b.column(0).as_string::<i32>();
    assert_eq!(
        (0..3).map(|i| src.value(i)).collect::<Vec<_>>(),
        vec![SOURCE, SOURCE, "other"]
    );
    let off = b.column(2).as_primitive::<Int64Type>();
    assert_eq!(
        off.values().to_vec(),
        vec![FIRST_OFFSET, FIRST_OFFSET + 10, 77]
    );
    let st = b.column(3).as_primitive::<TimestampMillisecondType>();
    assert_eq!(st.values().to_vec(), vec![10, 10, 20]);
    let raw = b.column(6).as_binary::<i32>();
    assert_eq!(raw.value(2), b"z");
}

// ---------------------------------------------------------------------------------------------
// 6. forward compatibility

#[test]
fn unknown_fields_are_ignored() {
    let mut e = minimal();
    e["new_field"] = json!("hello");
    e["nested"] = json!({"a": [1, 2, {"b": null}], "c": {"d": true}});
    e["numbers"] = json!([1.5, -2, 1e300]);
    e["nothing"] = Value::Null;
    e["EVENT_ID"] = json!(5); // field names are case-sensitive
    e["tokens"] = json!("many");
    let b = accept_json(&e);
    assert_eq!(str_at(&b, events::EVENT_ID, 0), "evt-1");
    assert_eq!(ts_at(&b, 0), NEW_YEAR_2026_MS);
    assert_eq!(str_at(&b, events::SERVICE, 0), "checkout");
    assert_eq!(str_at(&b, events::STATUS, 0), "ok");
    assert_eq!(b.num_columns(), 32);
}

#[test]
fn unknown_field_before_known_fields_is_ignored() {
    let payload = br#"{"v2_extra":{"x":[{"y":"z"}]},"event_id":"e9","timestamp":5,"service":"s","model":"m","trailing":[]}"#;
    let b = accept(payload);
    assert_eq!(str_at(&b, events::EVENT_ID, 0), "e9");
    assert_eq!(ts_at(&b, 0), 5);
}

// ---------------------------------------------------------------------------------------------
// 7. property-style: mutations never panic, every payload is accounted for

/// Duplicates one `"field":value` pair of `base` (a JSON object) right after its `{`.
fn duplicate_field(base: &Value, rng: &mut SplitMix) -> (Vec<u8>, String) {
    let obj = base.as_object().unwrap();
    let keys: Vec<&String> = obj.keys().collect();
    let key = keys[rng.below(keys.len())];
    let pair = format!("{}:{},", Value::from(key.as_str()), obj[key]);
    let s = base.to_string();
    let out = format!("{{{pair}{}", &s[1..]);
    (out.into_bytes(), key.clone())
}

#[test]
fn random_mutations_never_panic_and_are_all_accounted_for() {
    let full: Value = serde_json::from_str(FULL_EVENT).unwrap();
    let epoch = with("timestamp", json!(NEW_YEAR_2026_MS));
    let bases: Vec<(Vec<u8>, Value)> = vec![
        (FULL_EVENT.as_bytes().to_vec(), full.clone()),
        (full.to_string().into_bytes(), full),
        (minimal().to_string().into_bytes(), minimal()),
        (epoch.to_string().into_bytes(), epoch),
    ];
    for (bytes, _) in &bases {
        accept(bytes);
    }

    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Kind {
        Truncate,
        Flip,
        Duplicate,
    }

    let mut rng = SplitMix(0x1F2E_3D4C_5B6A_7988);
    let mut dec = EventDecoder::default();
    let mut dl = DeadLetterBuilder::default();
    let (mut total, mut accepted, mut rejected) = (0usize, 0usize, 0usize);
    let mut kinds_seen = [0usize; 3];
    // 20 batches of 100 mutations = 2,000 payloads, decoded by one reused decoder.
    for batch in 0..20 {
        let mut payloads: Vec<Vec<u8>> = Vec::new();
        let mut kinds: Vec<(Kind, Option<String>)> = Vec::new();
        for _ in 0..100 {
            let (base, base_value) = &bases[rng.below(bases.len())];
            let (payload, kind, dup) = match rng.below(3) {
                0 => {
                    let cut = rng.below(base.len()); // strict prefix, may be empty
                    (base[..cut].to_vec(), Kind::Truncate, None)
                }
                1 => {
                    let mut p = base.clone();
                    let at = rng.below(p.len());
                    p[at] ^= (1 + rng.below(255)) as u8; // never a no-op
                    (p, Kind::Flip, None)
                }
                _ => {
                    let (p, key) = duplicate_field(base_value, &mut rng);
                    (p, Kind::Duplicate, Some(key))
                }
            };
            kinds_seen[kind as usize] += 1;
            payloads.push(payload);
            kinds.push((kind, dup));
        }
        let raw = raw_batch(&payloads);
        let d = dec.decode(&raw);
        check_partition(&d, payloads.len());
        total += payloads.len();
        accepted += d.rows.len();
        rejected += d.rejects.len();

        for rej in &d.rejects {
            assert!(
                !rej.reason.is_empty() && rej.reason.len() < 400,
                "batch {batch}: reason of unexpected size: {:?}",
                rej.reason
            );
        }
        for (row, &i) in d.rows.iter().enumerate() {
            let i = i as usize;
            let (kind, _) = &kinds[i];
            assert_eq!(
                *kind,
                Kind::Flip,
                "batch {batch}: a {kind:?} payload was accepted: {:?}",
                String::from_utf8_lossy(&payloads[i])
            );
            // An accepted single-byte flip cannot have broken UTF-8: the flipped byte would
            // sit in a string the decoder validates or in the JSON structure.
            assert!(
                std::str::from_utf8(&payloads[i]).is_ok(),
                "batch {batch}: accepted invalid UTF-8 {:?}",
                String::from_utf8_lossy(&payloads[i])
            );
            assert!(!str_at(&d.events, events::EVENT_ID, row).is_empty());
            assert_eq!(i64_at(&d.events, events::SOURCE_OFFSET, row), raw.offset(i));
        }
        for rej in &d.rejects {
            if let (Kind::Duplicate, Some(key)) = &kinds[rej.index] {
                assert!(
                    rej.reason.contains(&format!("duplicate field `{key}`")),
                    "batch {batch}: duplicate `{key}` rejected with {:?}",
                    rej.reason
                );
            }
        }
        // Every truncation and duplicate is a reject.
        for (i, (kind, _)) in kinds.iter().enumerate() {
            if *kind != Kind::Flip {
                assert!(
                    d.rejects.iter().any(|r| r.index == i),
                    "batch {batch}: {kind:?} payload {i} not rejected"
                );
            }
        }
        dl.append_rejects(&raw, &d.rejects, 0);
    }
    assert_eq!(total, 2_000);
    assert_eq!(accepted + rejected, total);
    assert!(kinds_seen.iter().all(|&n| n > 400), "{kinds_seen:?}");
    assert!(rejected > 1_000, "most mutations are rejects: {rejected}");
    assert!(
        accepted > 0,
        "some byte flips (e.g. inside a value) stay valid"
    );
    let dead = dl.finish();
    assert_eq!(dead.num_rows(), rejected);
}

#[test]
fn every_prefix_of_a_valid_payload_is_rejected() {
    let mut dec = EventDecoder::default();
    let full = FULL_EVENT.as_bytes();
    let prefixes: Vec<&[u8]> = (0..full.len()).map(|n| &full[..n]).collect();
    let d = dec.decode(&raw_batch(&prefixes));
    check_partition(&d, prefixes.len());
    assert!(
        d.rows.is_empty(),
        "a strict prefix was accepted: rows {:?}",
        d.rows
    );
    // The whole payload still decodes with the same decoder.
    let d = dec.decode(&raw_batch(&[full]));
    assert_eq!(d.rows, vec![0]);
}

// ---------------------------------------------------------------------------------------------
// bugs found by this suite, fixed: they stay as regression tests

/// `diagnose` treats any u64 as a valid integer, but the fast path reads integers as i64, so a
/// value above i64::MAX gets a generic serde reason that never names the field.
#[test]
fn reject_integer_above_i64_max_names_the_field() {
    let payload = br#"{"event_id":"e","timestamp":0,"service":"s","model":"m","tokens_in":18446744073709551615}"#;
    let r = reject(payload);
    assert!(r.contains("`tokens_in`"), "{r}");
}

/// serde's derived `Deserialize` for a struct also accepts a JSON array in field order, so a
/// positional array of 26 elements becomes an event although the payload is not an object.
#[test]
fn reject_positional_json_array() {
    let mut items = vec![
        json!("evt-arr"),
        json!("2026-01-01T00:00:00Z"),
        json!("svc"),
        json!("m"),
    ];
    items.resize(26, Value::Null);
    let r = reject_json(&Value::Array(items));
    assert_eq!(r, "payload is an array, expected a JSON object");
}

/// serde_json skips unknown fields without validating their UTF-8; the decoder must still
/// reject a payload whose only bad bytes sit in an ignored field.
#[test]
fn reject_invalid_utf8_in_unknown_field() {
    let mut payload = br#"{"event_id":"e","timestamp":0,"service":"s","model":"m","x":""#.to_vec();
    payload.push(0xFF);
    payload.extend_from_slice(br#""}"#);
    let r = reject(&payload);
    assert!(r.contains("UTF-8"), "{r}");
}

#[test]
fn rejected_payloads_leave_no_trace_in_the_columns() {
    let e = |extra: Value| {
        let mut v = minimal();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::to_vec(&v).unwrap()
    };
    // Each bad payload fails after some of its fields were written: mid-row (a value out of
    // its range, after provider, flags and attributes got their first values of the batch)
    // or once read through (tokens, a missing required field).
    let payloads: Vec<(Vec<u8>, bool)> = vec![
        (e(json!({"route": "/a"})), true),
        // serde_json writes keys in order: the nulls come before the bad status.
        (
            e(json!({"attributes": null, "flags": null, "provider": null, "status": "sideways"})),
            false,
        ),
        (
            e(json!({"provider": "p", "flags": ["f"], "attributes": {"k": "v"}, "confidence": 2})),
            false,
        ),
        (
            e(json!({"tokens_in": 1, "tokens_cached": 5, "latency_ms": 3.5})),
            false,
        ),
        (
            br#"{"event_id":"x","timestamp":"2026-01-01T00:00:00Z","service":"s","route":"/r"}"#
                .to_vec(),
            false,
        ),
        (e(json!({"status": "sideways", "tenant": "t"})), false),
        (e(json!({"provider": "openai", "cost_usd": 0.5})), true),
        (e(json!({"flags": ["a", "b"], "quality_score": -1})), false),
        (
            e(json!({"attributes": {"a": "1"}, "session_id": "s1"})),
            true,
        ),
        (
            e(json!({"schema_version": 1, "correct": true, "approval": "nope"})),
            false,
        ),
        (e(json!({})), true),
    ];
    let all: Vec<&[u8]> = payloads.iter().map(|p| p.0.as_slice()).collect();
    let good: Vec<&[u8]> = payloads
        .iter()
        .filter(|p| p.1)
        .map(|p| p.0.as_slice())
        .collect();
    let mixed = decode_with(Limits::default(), &all);
    check_partition(&mixed, all.len());
    let want: Vec<u32> = (0..payloads.len() as u32)
        .filter(|&i| payloads[i as usize].1)
        .collect();
    assert_eq!(mixed.rows, want);
    let alone = decode_with(Limits::default(), &good);
    for c in 0..events_schema().fields().len() {
        if c != events::SOURCE_OFFSET {
            let name = events_schema().field(c).name().clone();
            assert_eq!(
                mixed.events.column(c),
                alone.events.column(c),
                "column {name}"
            );
        }
    }
}
