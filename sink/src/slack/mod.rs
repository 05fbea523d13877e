//! Slack delivery: alert notices as Block Kit messages posted to an incoming webhook from
//! the durable outbox.
//!
//! * [`config`]: the webhook URL (a [`Secret`]) and the pacing.
//! * [`message`]: notices to message payloads, within Slack's limits.
//! * [`service`]: the delivery loop with rate limiting, retries and backoff.

pub mod config;
pub mod message;
pub mod service;

#[cfg(test)]
mod tests;

pub use config::{Secret, SlackConfig};
pub use message::messages;
pub use service::{drain, spawn_slack, SlackDelivery, SlackStats};
