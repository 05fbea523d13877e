//! `[gateway]`: the HTTP gateway's settings (`inferwatch ingest`, and `run`/`demo --listen`).

use std::time::Duration;

use inferwatch_schemas::time::deserialize_duration as duration;
use serde::Deserialize;

/// `[gateway]`: where services POST events, feedback and OTLP traces.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Address `inferwatch ingest` listens on (flag: --listen). 4318 is OTLP/HTTP's port, so
    /// an OpenTelemetry exporter's default endpoint reaches it. `run` and `demo` listen only
    /// when given `--listen ADDR`.
    pub listen: String,
    /// Largest request body, in bytes, after decompression: larger ones get 413.
    pub max_body_bytes: usize,
    /// Events accepted but not yet acknowledged by Kafka (or not yet taken by the in-process
    /// pipeline), all requests together. A request that would pass it gets 429 with
    /// `Retry-After` and nothing of it is sent: memory stays bounded under overload.
    pub max_in_flight_events: usize,
    /// How long a request waits for Kafka's acknowledgement before it gets 503 (its events
    /// may then be on the topic or not: send them again).
    #[serde(deserialize_with = "duration")]
    pub delivery_timeout: Duration,
    /// `Retry-After` of 429 and 503 replies.
    #[serde(deserialize_with = "duration")]
    pub retry_after: Duration,
    /// Who may send. Empty: anyone, and an event's own `tenant` is kept. Otherwise every
    /// request needs `Authorization: Bearer <token>` of one of these, and its events'
    /// `tenant` is that entry's, whatever the body says.
    pub tenants: Vec<TenantToken>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:4318".into(),
            max_body_bytes: 16 << 20,
            max_in_flight_events: 200_000,
            delivery_timeout: Duration::from_secs(10),
            retry_after: Duration::from_secs(2),
            tenants: Vec::new(),
        }
    }
}

/// One `[[gateway.tenants]]` entry: a tenant and the SHA-256 of its bearer token (hex), so
/// the config file holds no secret. `printf %s "$TOKEN" | sha256sum` gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantToken {
    pub tenant: String,
    pub token_sha256: String,
}
