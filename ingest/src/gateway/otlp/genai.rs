//! An OpenTelemetry GenAI span as an inference event (semantic conventions for generative
//! AI: current names first, then the older ones OpenLIT and OpenLLMetry still emit).

use std::collections::BTreeMap;

use inferwatch_schemas::validate::clip;
use inferwatch_schemas::{InferenceEvent, Limits};
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Span};

/// Marks a GenAI span: spans without it are counted and skipped.
pub const OPERATION: &str = "gen_ai.operation.name";

/// Attributes that become event fields, each in order of preference.
const MODEL: &[&str] = &["gen_ai.response.model", "gen_ai.request.model"];
const TOKENS_IN: &[&str] = &["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"];
const TOKENS_OUT: &[&str] = &[
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
];
const TOKENS_CACHED: &[&str] = &[
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
];
const PROVIDER: &[&str] = &["gen_ai.provider.name", "gen_ai.system"];
const SESSION: &[&str] = &[
    "gen_ai.conversation.id",
    "session.id",
    "traceloop.association.properties.session_id",
];
const TOOL: &[&str] = &["gen_ai.tool.name"];
const COST: &[&str] = &["gen_ai.usage.cost"];
const FINISH: &[&str] = &[
    "gen_ai.response.finish_reasons",
    "gen_ai.response.finish_reason",
];
const ERROR_TYPE: &[&str] = &["error.type"];

/// Message contents are not metrics and may hold personal data: never copied.
const CONTENT_PREFIXES: &[&str] = &[
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.content.",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "gen_ai.tool.definitions",
    "llm.prompts",
    "llm.completions",
    "traceloop.entity.input",
    "traceloop.entity.output",
];

/// Model name of spans that name none (a tool call, an agent step).
pub const NO_MODEL: &str = "unknown";

fn mapped(key: &str) -> bool {
    [
        MODEL,
        TOKENS_IN,
        TOKENS_OUT,
        TOKENS_CACHED,
        PROVIDER,
        SESSION,
        TOOL,
        COST,
        FINISH,
        ERROR_TYPE,
        &[OPERATION],
    ]
    .iter()
    .any(|names| names.contains(&key))
}

struct Attrs<'a>(&'a [KeyValue]);

impl<'a> Attrs<'a> {
    fn value(&self, key: &str) -> Option<&'a Value> {
        self.0
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    fn first(&self, keys: &[&str]) -> Option<&'a Value> {
        keys.iter().find_map(|k| self.value(k))
    }

    fn text(&self, keys: &[&str]) -> Option<String> {
        match self.first(keys)? {
            Value::StringValue(s) if !s.is_empty() => Some(s.clone()),
            Value::IntValue(i) => Some(i.to_string()),
            _ => None,
        }
    }

    fn int(&self, keys: &[&str]) -> Option<i64> {
        match self.first(keys)? {
            Value::IntValue(i) => Some(*i),
            Value::DoubleValue(d) if d.fract() == 0.0 => Some(*d as i64),
            Value::StringValue(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn float(&self, keys: &[&str]) -> Option<f64> {
        match self.first(keys)? {
            Value::DoubleValue(d) => Some(*d),
            Value::IntValue(i) => Some(*i as f64),
            Value::StringValue(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn texts(&self, keys: &[&str]) -> Vec<String> {
        match self.first(keys) {
            Some(Value::StringValue(s)) => vec![s.clone()],
            Some(Value::ArrayValue(a)) => a
                .values
                .iter()
                .filter_map(|v| match v.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// `None`: not a GenAI span (no `gen_ai.operation.name`). `Some(Err)`: a GenAI span that
/// cannot be an event, with the reason.
pub fn to_event(
    service: &str,
    span: &Span,
    limits: &Limits,
) -> Option<Result<InferenceEvent, String>> {
    let a = Attrs(&span.attributes);
    let operation = a.text(&[OPERATION])?;
    Some(build(service, span, &a, operation, limits))
}

fn build(
    service: &str,
    span: &Span,
    a: &Attrs<'_>,
    operation: String,
    limits: &Limits,
) -> Result<InferenceEvent, String> {
    if span.trace_id.len() != 16 || span.span_id.len() != 8 {
        return Err("the span has no valid trace and span id".into());
    }
    if span.start_time_unix_nano == 0 {
        return Err("the span has no start time".into());
    }
    let id = format!("{}-{}", hex(&span.trace_id), hex(&span.span_id));
    let start_ms = (span.start_time_unix_nano / 1_000_000) as i64;
    let model = a.text(MODEL).unwrap_or_else(|| NO_MODEL.into());
    let mut ev = InferenceEvent::new(&id, start_ms, service, &model);
    ev.route = Some(operation);
    ev.provider = a.text(PROVIDER);
    ev.session_id = a.text(SESSION);
    ev.tool = a.text(TOOL);
    ev.tokens_in = a.int(TOKENS_IN);
    ev.tokens_out = a.int(TOKENS_OUT);
    ev.tokens_cached = a.int(TOKENS_CACHED);
    ev.cost_usd = a.float(COST);
    if span.end_time_unix_nano >= span.start_time_unix_nano {
        ev.latency_ms =
            Some((span.end_time_unix_nano - span.start_time_unix_nano) as f64 / 1_000_000.0);
    }
    ev.status = Some(status(span, a).into());
    ev.flags = a
        .texts(FINISH)
        .into_iter()
        .filter(|r| r == "length" || r == "content_filter")
        .collect();
    ev.attributes = others(&span.attributes, limits);
    Ok(ev)
}

fn status(span: &Span, a: &Attrs<'_>) -> &'static str {
    let error_type = a.text(ERROR_TYPE);
    let failed = span
        .status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32);
    match error_type {
        Some(t) if t.to_ascii_lowercase().contains("timeout") => "timeout",
        Some(_) => "error",
        None if failed => "error",
        None => "ok",
    }
}

/// The attributes no field took, as text, within the event's limits (values clipped,
/// at most `max_attributes`, in the span's order).
fn others(attrs: &[KeyValue], limits: &Limits) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for kv in attrs {
        if out.len() == limits.max_attributes {
            break;
        }
        let k = kv.key.as_str();
        if k.is_empty()
            || k.len() > limits.max_name_bytes
            || mapped(k)
            || CONTENT_PREFIXES.iter().any(|p| k.starts_with(p))
        {
            continue;
        }
        if let Some(v) = kv.value.as_ref().and_then(text_of) {
            out.insert(
                k.to_string(),
                clip(&v, limits.max_attribute_value_bytes).to_string(),
            );
        }
    }
    out
}

fn text_of(v: &AnyValue) -> Option<String> {
    Some(match v.value.as_ref()? {
        Value::StringValue(s) => s.clone(),
        Value::BoolValue(b) => b.to_string(),
        Value::IntValue(i) => i.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        Value::ArrayValue(a) => {
            let items: Vec<String> = a.values.iter().filter_map(text_of).collect();
            serde_json::to_string(&items).ok()?
        }
        _ => return None,
    })
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}
