//! `POST /v1/traces`: OTLP/HTTP in its protobuf and JSON encodings. GenAI spans become
//! inference events (`genai`); the reply is the OTLP `ExportTraceServiceResponse`, with
//! `partial_success` naming how many spans were rejected and why.

pub mod genai;

use inferwatch_schemas::Limits;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

use super::body::BodyError;

/// The two OTLP/HTTP encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub fn from_content_type(ct: Option<&str>) -> Result<Self, BodyError> {
        let mime = super::body::mime(ct.unwrap_or(""));
        match mime.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
            "application/json" => Ok(Encoding::Json),
            _ => Err(BodyError::Unsupported(format!(
                "Content-Type {mime:?} is not OTLP/HTTP: send application/x-protobuf or \
                 application/json"
            ))),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

pub fn decode(body: &[u8], enc: Encoding) -> Result<ExportTraceServiceRequest, BodyError> {
    match enc {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body)
            .map_err(|e| BodyError::Malformed(format!("not an OTLP protobuf trace export: {e}"))),
        Encoding::Json => serde_json::from_slice(body)
            .map_err(|e| BodyError::Malformed(format!("not an OTLP JSON trace export: {e}"))),
    }
}

/// A request's spans as event payloads (JSON, ready for validation), with what was left.
#[derive(Debug, Default)]
pub struct Spans {
    /// One JSON event per GenAI span, newline separated.
    pub ndjson: Vec<u8>,
    pub items: Vec<(usize, usize)>,
    /// For each item, the span it came from (hex span id), to name it in a reason.
    pub span_ids: Vec<String>,
    /// GenAI spans that could not be events, with why.
    pub rejected: Vec<String>,
    /// Spans without `gen_ai.operation.name`.
    pub skipped: u64,
}

pub fn spans(req: &ExportTraceServiceRequest, limits: &Limits) -> Spans {
    let mut out = Spans::default();
    for rs in &req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) if !s.is_empty() => Some(s.as_str()),
                _ => None,
            })
            .unwrap_or("unknown_service");
        for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
            let id = genai::hex(&span.span_id);
            match genai::to_event(service, span, limits) {
                None => out.skipped += 1,
                Some(Err(why)) => out.rejected.push(format!("span {id}: {why}")),
                Some(Ok(ev)) => {
                    let start = out.ndjson.len();
                    serde_json::to_writer(&mut out.ndjson, &ev).expect("an event serialises");
                    out.items.push((start, out.ndjson.len()));
                    out.ndjson.push(b'\n');
                    out.span_ids.push(id);
                }
            }
        }
    }
    out
}

/// The export reply: empty on full success, else the rejected count and the first reasons.
pub fn reply(enc: Encoding, rejected: &[String]) -> Vec<u8> {
    let partial_success = (!rejected.is_empty()).then(|| {
        let mut message = rejected
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if rejected.len() > 5 {
            message.push_str(&format!("; and {} more", rejected.len() - 5));
        }
        ExportTracePartialSuccess {
            rejected_spans: rejected.len() as i64,
            error_message: message,
        }
    });
    let r = ExportTraceServiceResponse { partial_success };
    match enc {
        Encoding::Protobuf => r.encode_to_vec(),
        // A full success is `{}`: the field is left out, not null.
        Encoding::Json if r.partial_success.is_none() => b"{}".to_vec(),
        Encoding::Json => serde_json::to_vec(&r).expect("a reply serialises"),
    }
}

/// google.rpc.Status, the body OTLP/HTTP gives with a 4xx or 5xx.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// An error body in the request's encoding. `code` is the gRPC code (3: invalid argument,
/// 8: resource exhausted, 14: unavailable, 16: unauthenticated).
pub fn error_body(enc: Encoding, code: i32, message: &str) -> Vec<u8> {
    match enc {
        Encoding::Protobuf => RpcStatus {
            code,
            message: message.into(),
        }
        .encode_to_vec(),
        Encoding::Json => {
            serde_json::to_vec(&serde_json::json!({"code": code, "message": message}))
                .expect("an error serialises")
        }
    }
}
