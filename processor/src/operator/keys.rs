//! The keys (service, model, model_version, route) of a partition, each given a dense id
//! the first time it is seen.

use super::Key;
use crate::FastMap;

/// A key's parts as an event carries them.
type Parts<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>);

#[derive(Default)]
pub(super) struct Keys {
    /// Key id by the key's parts written out by [`encode`].
    index: FastMap<Box<[u8]>, u32>,
    buf: Vec<u8>,
    pub(super) values: Vec<Key>,
}

/// Writes `parts` into `buf` so that different keys differ: the four lengths first (a
/// null as `u32::MAX`), then the bytes, since a value may hold any byte.
fn encode(buf: &mut Vec<u8>, (service, model, version, route): Parts) {
    let len = |p: Option<&str>| p.map_or(u32::MAX, |p| p.len() as u32);
    let lengths = [Some(service), Some(model), version, route].map(len);
    let mut header = [0u8; 16];
    for (at, n) in header.chunks_exact_mut(4).zip(lengths) {
        at.copy_from_slice(&n.to_le_bytes());
    }
    buf.clear();
    buf.extend_from_slice(&header);
    for part in [service, model, version.unwrap_or(""), route.unwrap_or("")] {
        inferwatch_schemas::bytes::append(buf, part.as_bytes());
    }
}

impl Keys {
    pub(super) fn intern(
        &mut self,
        service: &str,
        model: &str,
        version: Option<&str>,
        route: Option<&str>,
    ) -> u32 {
        encode(&mut self.buf, (service, model, version, route));
        if let Some(&id) = self.index.get(self.buf.as_slice()) {
            return id;
        }
        let id = self.values.len() as u32;
        self.index.insert(self.buf.as_slice().into(), id);
        self.values.push(Key {
            service: service.into(),
            model: model.into(),
            model_version: version.map(Into::into),
            route: route.map(Into::into),
        });
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_get_one_id_each_however_their_parts_split() {
        // Null against empty, and parts whose bytes joined run the same.
        let parts: [Parts; 9] = [
            ("svc", "m", None, None),
            ("svc", "m", Some(""), None),
            ("svc", "m", None, Some("")),
            ("svc", "m", Some("v1"), Some("/a")),
            ("svc", "m", Some("v1/a"), None),
            ("svcm", "", None, None),
            ("", "svcm", None, None),
            ("a\u{1f}\u{1}b", "c", None, None),
            ("a", "b\u{1f}\u{1}c", None, None),
        ];
        let mut keys = Keys::default();
        let ids: Vec<u32> = parts
            .iter()
            .map(|&(s, m, v, r)| keys.intern(s, m, v, r))
            .collect();
        assert_eq!(ids, (0..parts.len() as u32).collect::<Vec<_>>());
        for (id, &(s, m, v, r)) in parts.iter().enumerate().rev() {
            assert_eq!(keys.intern(s, m, v, r), id as u32);
            let k = &keys.values[id];
            let got = (k.service.as_str(), k.model.as_str());
            let got = (got.0, got.1, k.model_version.as_deref(), k.route.as_deref());
            assert_eq!(got, (s, m, v, r));
        }
        assert_eq!(keys.values.len(), parts.len());
    }
}
