//! The HTTP gateway: services POST events, feedback or OTLP traces instead of embedding a
//! Kafka producer. Items are validated by the processor's own decoder, stamped with the
//! tenant of the request's token, and written to Kafka (acknowledged before the reply) or,
//! in process, queued for the pipeline.
//!
//! - `body`: content encodings and how a body holds its items (object, array, NDJSON)
//! - `records`: validation, keys and tenant stamping
//! - `otlp`: OTLP/HTTP trace exports, GenAI spans as events
//! - `auth`: bearer tokens per tenant, stored hashed
//! - `outlet`: Kafka or the in-process queue, and the in-flight budget
//! - `server`: the routes; `stats`: the gateway's `/metrics`

mod auth;
pub mod body;
mod config;
pub mod otlp;
pub mod outlet;
pub mod records;
mod server;
mod stats;

pub use config::{GatewayConfig, TenantToken};
pub use outlet::KafkaOutletConfig;
pub use outlet::{KafkaOutlet, LocalQueue, LocalSource, Outlet};
pub use server::Gateway;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Config(String),
    #[error("gateway kafka producer: {0} (check [kafka] brokers and [kafka.properties])")]
    Kafka(String),
}
