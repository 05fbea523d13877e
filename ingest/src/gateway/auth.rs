//! Bearer tokens per tenant. The config holds SHA-256 digests only; a request's token is
//! hashed and looked up, so neither the file nor a log line ever holds a usable token.

use std::collections::HashMap;
use std::sync::Arc;

use ring::digest::{digest, SHA256};

use super::config::TenantToken;
use super::GatewayError;

/// Why a request was not let in (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Malformed,
    Unknown,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "missing bearer token: send `Authorization: Bearer <token>`",
            Refusal::Malformed => "the Authorization header is not `Bearer <token>`",
            Refusal::Unknown => "unknown bearer token",
        }
    }
}

/// The tenants that may send, by the digest of their token.
#[derive(Debug, Default)]
pub struct Tenants {
    by_digest: HashMap<[u8; 32], Arc<str>>,
}

impl Tenants {
    pub fn new(list: &[TenantToken]) -> Result<Self, GatewayError> {
        let mut by_digest = HashMap::new();
        for (i, t) in list.iter().enumerate() {
            let bad = |why: &str| GatewayError::Config(format!("gateway.tenants[{i}]: {why}"));
            if t.tenant.is_empty() || t.tenant.len() > 256 {
                return Err(bad("`tenant` must be 1 to 256 bytes"));
            }
            let d = parse_hex32(&t.token_sha256).ok_or_else(|| {
                bad("`token_sha256` must be 64 hex digits (printf %s \"$TOKEN\" | sha256sum)")
            })?;
            if by_digest.insert(d, Arc::from(t.tenant.as_str())).is_some() {
                return Err(bad("the same token is given twice"));
            }
        }
        Ok(Self { by_digest })
    }

    /// No tenants configured: anyone may send and events keep their own `tenant`.
    pub fn is_open(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The tenant of the request's `Authorization` header; `Ok(None)` when open.
    pub fn authorize(&self, header: Option<&[u8]>) -> Result<Option<Arc<str>>, Refusal> {
        if self.is_open() {
            return Ok(None);
        }
        let h = header.ok_or(Refusal::Missing)?;
        let token = strip_bearer(h).ok_or(Refusal::Malformed)?;
        let d = digest(&SHA256, token);
        let key: [u8; 32] = d.as_ref().try_into().expect("SHA-256 is 32 bytes");
        self.by_digest
            .get(&key)
            .cloned()
            .map(Some)
            .ok_or(Refusal::Unknown)
    }
}

fn strip_bearer(h: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = h.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim().as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants() -> Tenants {
        // sha256("secret-a")
        let hex = digest(&SHA256, b"secret-a")
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        Tenants::new(&[TenantToken {
            tenant: "acme".into(),
            token_sha256: hex,
        }])
        .unwrap()
    }

    #[test]
    fn a_known_token_names_its_tenant() {
        let t = tenants();
        assert_eq!(
            t.authorize(Some(b"Bearer secret-a")).unwrap().as_deref(),
            Some("acme")
        );
        assert_eq!(
            t.authorize(Some(b"bearer  secret-a ")).unwrap().as_deref(),
            Some("acme")
        );
    }

    #[test]
    fn missing_malformed_and_unknown_tokens_are_refused() {
        let t = tenants();
        assert_eq!(t.authorize(None), Err(Refusal::Missing));
        assert_eq!(t.authorize(Some(b"Basic abc")), Err(Refusal::Malformed));
        assert_eq!(t.authorize(Some(b"Bearer ")), Err(Refusal::Malformed));
        assert_eq!(t.authorize(Some(b"Bearer secret-b")), Err(Refusal::Unknown));
    }

    #[test]
    fn open_without_tenants_and_bad_digests_are_config_errors() {
        assert_eq!(Tenants::default().authorize(None), Ok(None));
        let bad = Tenants::new(&[TenantToken {
            tenant: "acme".into(),
            token_sha256: "abc".into(),
        }]);
        assert!(bad.unwrap_err().to_string().contains("64 hex digits"));
    }
}
