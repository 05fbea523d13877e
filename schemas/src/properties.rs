//! `[kafka.properties]`: extra librdkafka settings that every Kafka client of inferwatch
//! applies last (security, SASL, timeouts). Some values are credentials, so this type never
//! shows them: `Debug` prints their keys only, and [`ClientProperties::scrub`] takes them out
//! of any text (a client's error message) before it is logged or returned.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// Extra librdkafka properties, applied after inferwatch's own settings.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ClientProperties(BTreeMap<String, String>);

impl ClientProperties {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every (key, value), for handing to a client config only.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// True for keys whose values are credentials: passwords, secrets, tokens and private
    /// keys (`sasl.password`, `ssl.key.password`, `ssl.key.pem`, `ssl.keystore.password`,
    /// `sasl.oauthbearer.client.secret`, ...).
    pub fn is_secret(key: &str) -> bool {
        let k = key.to_ascii_lowercase();
        [
            "password",
            "secret",
            "token",
            "ssl.key.pem",
            "oauthbearer.config",
            "jaas",
        ]
        .iter()
        .any(|s| k.contains(s))
    }

    /// `text` with every secret value replaced by `(redacted)`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (k, v) in &self.0 {
            // Very short values would blank out ordinary words; they are no secret anyway.
            if Self::is_secret(k) && v.len() >= 3 {
                out = out.replace(v.as_str(), "(redacted)");
            }
        }
        out
    }
}

impl FromIterator<(String, String)> for ClientProperties {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.0 {
            if Self::is_secret(k) {
                m.entry(k, &"(redacted)");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_or_scrubbed_text() {
        let p: ClientProperties = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.username", "svc-inferwatch"),
            ("sasl.password", "hunter2-very-secret"),
            ("ssl.key.password", "k3y-pass"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let debug = format!("{p:?}");
        assert!(
            debug.contains("SASL_SSL") && debug.contains("svc-inferwatch"),
            "{debug}"
        );
        assert!(
            !debug.contains("hunter2") && !debug.contains("k3y-pass"),
            "{debug}"
        );
        let err = p.scrub("auth failed for svc-inferwatch with hunter2-very-secret / k3y-pass");
        assert_eq!(
            err,
            "auth failed for svc-inferwatch with (redacted) / (redacted)"
        );
    }
}
