//! Slack delivery settings, and the webhook URL as a secret: the path of an incoming-webhook
//! URL is its credential (anyone holding it can post to the channel), so it is never
//! printed, logged or put in an error message.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Result, SinkError};

/// A webhook URL. `Debug` and `Display` show only the scheme and host:
/// `https://hooks.slack.com/…(redacted)`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL itself, for the HTTP client only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `(scheme, host)` when the URL has them; the host without any `user:password@`.
    fn scheme_host(&self) -> Option<(&str, &str)> {
        let (scheme, rest) = self.0.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = authority.rsplit('@').next().unwrap_or("");
        (!scheme.is_empty() && !host.is_empty()).then_some((scheme, host))
    }

    /// What may be shown of the URL: scheme and host.
    pub fn redacted(&self) -> String {
        match self.scheme_host() {
            Some((scheme, host)) => format!("{scheme}://{host}/…(redacted)"),
            None => "(redacted webhook URL)".to_string(),
        }
    }

    /// `text` with every trace of the URL replaced: the whole URL, its path and query, and
    /// the path's last segment (the token). For error messages of the HTTP client and
    /// response bodies, which may quote the request.
    pub fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            return text.to_string();
        }
        let mut out = text.replace(&self.0, &self.redacted());
        if let Some((_, rest)) = self.0.split_once("://") {
            if let Some(i) = rest.find(['/', '?', '#']) {
                let path = &rest[i..];
                if path.len() > 1 {
                    out = out.replace(path, "/…(redacted)");
                }
                let token = path
                    .split(['?', '#'])
                    .next()
                    .unwrap_or("")
                    .rsplit('/')
                    .find(|s| !s.is_empty())
                    .unwrap_or("");
                if token.len() >= 4 {
                    out = out.replace(token, "…(redacted)");
                }
            }
            // Credentials in the authority, if any.
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            if let Some((userinfo, _)) = authority.rsplit_once('@') {
                if !userinfo.is_empty() {
                    out = out.replace(userinfo, "…(redacted)");
                }
            }
        }
        out
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.redacted())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// How one webhook is delivered to.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub webhook_url: Secret,
    /// Least time between the starts of two requests: Slack allows about one message per
    /// second per webhook.
    pub min_interval: Duration,
    /// First wait after a server error or a network failure; doubles with each failure in
    /// a row (with full jitter) up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Whole request, connect to last byte of the response.
    pub timeout: Duration,
}

impl SlackConfig {
    /// Defaults: Slack allows about one message per second per webhook.
    pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
    pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
    pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
    pub const TIMEOUT: Duration = Duration::from_secs(10);

    /// Defaults for everything but the URL, which must be `https://` (or `http://`, for
    /// tests and proxies) with a host.
    pub fn new(webhook_url: impl Into<String>) -> Result<Self> {
        let webhook_url = Secret::new(webhook_url);
        match webhook_url.scheme_host() {
            Some(("https" | "http", _)) => {}
            _ => {
                return Err(SinkError::Slack(format!(
                    "the webhook URL must look like https://hooks.slack.com/services/…, got {}",
                    webhook_url.redacted()
                )))
            }
        }
        Ok(Self {
            webhook_url,
            min_interval: Self::MIN_INTERVAL,
            initial_backoff: Self::INITIAL_BACKOFF,
            max_backoff: Self::MAX_BACKOFF,
            timeout: Self::TIMEOUT,
        })
    }
}
