//! Owned event types for producers (Rust services, tests). The processor does not use them on
//! its hot path: it decodes payloads straight into Arrow (see [`crate::decode`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `timestamp`: RFC 3339 text or epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Timestamp {
    Millis(i64),
    Rfc3339(String),
}

/// One model call, as a service publishes it to `inference-events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferenceEvent {
    pub event_id: String,
    pub timestamp: Timestamp,
    pub service: String,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// `ok` (default), `error`, `timeout`, `refused`, `filtered`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_in: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_out: Option<i64>,
    /// Part of `tokens_in` served from the provider's prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_cached: Option<i64>,
    /// Wins over the price table when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// `approved`, `rejected`, `pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Who serves the model: `openai`, `anthropic`, `aws.bedrock`, ... (OpenTelemetry's
    /// `gen_ai.provider.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_chars: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i64>,
}

impl InferenceEvent {
    /// A minimal valid event; fill in the rest with struct update syntax.
    pub fn new(event_id: &str, timestamp_ms: i64, service: &str, model: &str) -> Self {
        Self {
            event_id: event_id.into(),
            timestamp: Timestamp::Millis(timestamp_ms),
            service: service.into(),
            model: model.into(),
            model_version: None,
            route: None,
            tenant: None,
            session_id: None,
            status: None,
            latency_ms: None,
            tokens_in: None,
            tokens_out: None,
            tokens_cached: None,
            cost_usd: None,
            prediction: None,
            confidence: None,
            correct: None,
            quality_score: None,
            flags: Vec::new(),
            approval: None,
            step: None,
            tool: None,
            provider: None,
            input_hash: None,
            output_chars: None,
            attributes: BTreeMap::new(),
            schema_version: None,
        }
    }

    /// The Kafka key: `service/model`, so a key's events stay in one partition.
    pub fn key(&self) -> String {
        format!("{}/{}", self.service, self.model)
    }
}
