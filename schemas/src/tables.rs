//! Arrow schemas of every table inferwatch writes. Column order is part of the contract:
//! analysts' queries and the Parquet files rely on it.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// Event time and window bounds: epoch milliseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The `attributes` column: a map of string to string.
pub fn attributes_type() -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("keys", DataType::Utf8, false),
                Field::new("values", DataType::Utf8, true),
            ])),
            false,
        )),
        false,
    )
}

/// The `flags` column: a list of guardrail flag names.
pub fn flags_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// Columns, in any table, whose values seldom repeat within a file (ids, times, measured
/// values, raw payloads). Parquet writers store them without a dictionary: there it would
/// cost a hash per value, only to be dropped once it outgrew its page (`events` encodes
/// 1.3–1.5× faster and 11 % smaller without those dictionaries).
pub const SELDOM_REPEATED: [&str; 13] = [
    "event_id",
    "timestamp",
    "session_id",
    "latency_ms",
    "cost_usd",
    "confidence",
    "quality_score",
    "input_hash",
    "output_chars",
    "source_offset",
    "raw",
    "first_seen",
    "last_seen",
];

/// Columns whose values are unique or random (ids, hashes, raw payloads): a page's minimum
/// and maximum of them prune nothing, so Parquet writers skip their statistics, which cost
/// two comparisons a value.
pub const UNORDERED: [&str; 4] = ["event_id", "session_id", "input_hash", "raw"];

/// Column indexes of the `events` table, so hot loops need no name lookups.
pub mod events {
    pub const EVENT_ID: usize = 0;
    pub const TIMESTAMP: usize = 1;
    pub const SERVICE: usize = 2;
    pub const MODEL: usize = 3;
    pub const MODEL_VERSION: usize = 4;
    pub const PROVIDER: usize = 5;
    pub const ROUTE: usize = 6;
    pub const TENANT: usize = 7;
    pub const SESSION_ID: usize = 8;
    pub const STATUS: usize = 9;
    pub const LATENCY_MS: usize = 10;
    pub const TOKENS_IN: usize = 11;
    pub const TOKENS_OUT: usize = 12;
    pub const TOKENS_CACHED: usize = 13;
    pub const COST_USD: usize = 14;
    pub const COST_SOURCE: usize = 15;
    pub const PREDICTION: usize = 16;
    pub const CONFIDENCE: usize = 17;
    pub const CORRECT: usize = 18;
    pub const QUALITY_SCORE: usize = 19;
    pub const FLAGS: usize = 20;
    pub const APPROVAL: usize = 21;
    pub const STEP: usize = 22;
    pub const TOOL: usize = 23;
    pub const INPUT_HASH: usize = 24;
    pub const OUTPUT_CHARS: usize = 25;
    pub const ATTRIBUTES: usize = 26;
    pub const SCHEMA_VERSION: usize = 27;
    pub const SOURCE: usize = 28;
    pub const SOURCE_PARTITION: usize = 29;
    pub const SOURCE_OFFSET: usize = 30;
    pub const LATE: usize = 31;
}

static EVENTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    Arc::new(Schema::new(vec![
        Field::new("event_id", Utf8, false),
        Field::new("timestamp", timestamp_type(), false),
        Field::new("service", Utf8, false),
        Field::new("model", Utf8, false),
        Field::new("model_version", Utf8, true),
        // Who serves the model (openai, anthropic, aws.bedrock, ...), when the service says.
        Field::new("provider", Utf8, true),
        Field::new("route", Utf8, true),
        Field::new("tenant", Utf8, true),
        Field::new("session_id", Utf8, true),
        Field::new("status", Utf8, false),
        Field::new("latency_ms", Float64, true),
        Field::new("tokens_in", Int64, true),
        Field::new("tokens_out", Int64, true),
        Field::new("tokens_cached", Int64, true),
        // As sent by the service, or priced from the price table by the processor.
        Field::new("cost_usd", Float64, true),
        // "event", "table", or null when the model has no price.
        Field::new("cost_source", Utf8, true),
        Field::new("prediction", Utf8, true),
        Field::new("confidence", Float64, true),
        Field::new("correct", Boolean, true),
        Field::new("quality_score", Float64, true),
        Field::new("flags", flags_type(), true),
        Field::new("approval", Utf8, true),
        Field::new("step", Int64, true),
        Field::new("tool", Utf8, true),
        Field::new("input_hash", Utf8, true),
        Field::new("output_chars", Int64, true),
        Field::new("attributes", attributes_type(), true),
        Field::new("schema_version", Int32, false),
        // Where the event came from: the source name, its partition and the offset in it.
        Field::new("source", Utf8, false),
        Field::new("source_partition", Int32, false),
        Field::new("source_offset", Int64, false),
        // True when every window the event belongs to had closed before it arrived.
        Field::new("late", Boolean, false),
    ]))
});

/// The `events` table: one row per valid inference event.
pub fn events_schema() -> SchemaRef {
    EVENTS.clone()
}

static DEAD_LETTER: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    Arc::new(Schema::new(vec![
        Field::new("source", Utf8, false),
        Field::new("source_partition", Int32, false),
        Field::new("source_offset", Int64, false),
        // The newest event time the source had shown before this payload; it files the row
        // under a date/hour partition deterministically, so a replay overwrites it.
        Field::new("stream_time", timestamp_type(), false),
        Field::new("reason", Utf8, false),
        Field::new("raw_len", Int64, false),
        Field::new("raw", Binary, false),
    ]))
});

/// The `dead_letter` table: every payload that could not become an event, with why.
pub fn dead_letter_schema() -> SchemaRef {
    DEAD_LETTER.clone()
}

/// The `calibration_bins` table: one row per window × key × non-empty reliability bin, for
/// reliability diagrams. Bin `bin` holds confidences in (`lower`, `upper`] (0 is in bin 0).
pub fn calibration_bins_schema() -> SchemaRef {
    let mut fields = metrics_key_fields();
    fields.extend([
        Field::new("bin", DataType::Int32, false),
        Field::new("lower", DataType::Float64, false),
        Field::new("upper", DataType::Float64, false),
        Field::new("count", DataType::Int64, false),
        Field::new("mean_confidence", DataType::Float64, false),
        Field::new("accuracy", DataType::Float64, false),
        // Bumped each time late feedback changes the window; the highest revision is current.
        Field::new("revision", DataType::Int64, false),
    ]);
    Arc::new(Schema::new(fields))
}

static FEEDBACK_UNMATCHED: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    Arc::new(Schema::new(vec![
        Field::new("event_id", Utf8, false),
        // When the feedback was given.
        Field::new("timestamp", timestamp_type(), false),
        // unknown, expired, duplicate or unusable.
        Field::new("reason", Utf8, false),
        Field::new("correct", Boolean, true),
        Field::new("label", Utf8, true),
        Field::new("score", Float64, true),
        Field::new("feedback_source", Utf8, true),
        Field::new("source_partition", Int32, false),
        Field::new("source_offset", Int64, false),
    ]))
});

/// The `feedback_unmatched` table: feedback that joined no prediction, and why.
pub fn feedback_unmatched_schema() -> SchemaRef {
    FEEDBACK_UNMATCHED.clone()
}

/// The `sessions` table: one row per ended session (per source partition), with the key of
/// its events.
pub fn sessions_schema() -> SchemaRef {
    let mut fields = vec![Field::new("session_id", DataType::Utf8, false)];
    let mut keys = metrics_key_fields();
    keys[0] = Field::new("first_seen", timestamp_type(), false);
    keys[1] = Field::new("last_seen", timestamp_type(), false);
    fields.extend(keys);
    fields.extend([
        Field::new("steps", DataType::Int64, false),
        Field::new("repeats", DataType::Int64, false),
        Field::new("cost_usd", DataType::Float64, false),
        Field::new("wasted_cost_usd", DataType::Float64, false),
        Field::new("runaway", DataType::Boolean, false),
        Field::new("reason", DataType::Utf8, true),
    ]);
    Arc::new(Schema::new(fields))
}

/// The `budgets` table: per window and budgeted service or tenant with spend in it.
pub fn budgets_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("window_start", timestamp_type(), false),
        Field::new("window_end", timestamp_type(), false),
        // "service" or "tenant".
        Field::new("scope", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("budget_usd", DataType::Float64, false),
        // Since the start of the window's UTC day, through the window's end.
        Field::new("spent_usd", DataType::Float64, false),
        Field::new("window_cost_usd", DataType::Float64, false),
        // The window's spend rate projected over a day, over the budget.
        Field::new("burn_rate", DataType::Float64, false),
    ]))
}

/// The `alerts` table: every transition of a rule's alert (`pending`, `firing`, `ok`,
/// `resolved`, with reminders as `firing` rows marked `renotify`) and of a circuit breaker
/// (`open`, `half_open`, `closed`), per window in which it happened.
pub fn alerts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("window_start", timestamp_type(), false),
        Field::new("window_end", timestamp_type(), false),
        // "alert" or "breaker".
        Field::new("kind", DataType::Utf8, false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("previous", DataType::Utf8, false),
        // "info", "warning" or "critical"; null on rows back to `ok`.
        Field::new("severity", DataType::Utf8, true),
        // Null on tenant budget rows.
        Field::new("service", DataType::Utf8, true),
        Field::new("model", DataType::Utf8, true),
        Field::new("model_version", DataType::Utf8, true),
        Field::new("route", DataType::Utf8, true),
        Field::new("tenant", DataType::Utf8, true),
        Field::new("metric", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
        Field::new("op", DataType::Utf8, false),
        Field::new("threshold", DataType::Float64, true),
        Field::new("samples", DataType::Int64, true),
        // Whether the transition was sent (Slack, `inference-alerts` / `inference-control`).
        Field::new("notified", DataType::Boolean, false),
        Field::new("renotify", DataType::Boolean, false),
        // The notice id (outbox and Kafka), null when not notified.
        Field::new("id", DataType::Utf8, true),
        Field::new("summary", DataType::Utf8, false),
    ]))
}

/// Key columns of the `metrics` table; metric columns follow them.
pub fn metrics_key_fields() -> Vec<Field> {
    vec![
        Field::new("window_start", timestamp_type(), false),
        Field::new("window_end", timestamp_type(), false),
        Field::new("service", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("model_version", DataType::Utf8, true),
        Field::new("route", DataType::Utf8, true),
    ]
}
