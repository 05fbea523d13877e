//! From a body's items to Kafka records: each item is validated by the processor's own
//! decoder (same rules, same reasons), keyed `service/model`, and stamped with the
//! request's tenant.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use inferwatch_schemas::tables::events as col;
use inferwatch_schemas::{decode_feedback, EventDecoder, Limits, RawBatch, Reject};
use serde::Deserialize;

/// One message for the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub payload: Vec<u8>,
}

/// What became of a body's items.
#[derive(Debug, Default)]
pub struct Checked {
    pub records: Vec<Record>,
    /// Item index (in the body) and reason.
    pub rejects: Vec<Reject>,
}

fn raw_batch(body: &[u8], items: &[(usize, usize)]) -> RawBatch {
    let mut raw = RawBatch::with_capacity(Arc::from("http"), 0, items.len(), body.len());
    for (i, &(s, e)) in items.iter().enumerate() {
        raw.push(&body[s..e], i as i64);
    }
    raw
}

/// Validates events; the good ones become records carrying `tenant` when it is given.
pub fn events(
    decoder: &mut EventDecoder,
    body: &[u8],
    items: &[(usize, usize)],
    tenant: Option<&str>,
) -> Checked {
    let raw = raw_batch(body, items);
    let d = decoder.decode(&raw);
    let service = d.events.column(col::SERVICE).as_string::<i32>();
    let model = d.events.column(col::MODEL).as_string::<i32>();
    let tenants = d.events.column(col::TENANT).as_string::<i32>();
    let mut records = Vec::with_capacity(d.rows.len());
    for (row, &i) in d.rows.iter().enumerate() {
        let payload = raw.payload(i as usize);
        let has = (!tenants.is_null(row)).then(|| tenants.value(row));
        let payload = match tenant {
            Some(t) if has != Some(t) => stamp(payload, t, has.is_some()),
            _ => payload.to_vec(),
        };
        records.push(Record {
            key: format!("{}/{}", service.value(row), model.value(row)),
            payload,
        });
    }
    Checked {
        records,
        rejects: d.rejects,
    }
}

/// `payload` with `"tenant"` set to `tenant`. A payload without one gets it inserted after
/// its opening brace (it passed validation, so it is an object); one naming another tenant is
/// rewritten whole: the token decides, never the body.
fn stamp(payload: &[u8], tenant: &str, replace: bool) -> Vec<u8> {
    let quoted = serde_json::to_string(tenant).expect("a string serialises");
    if replace {
        let mut v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(payload).expect("validated payloads are objects");
        v.insert("tenant".into(), serde_json::Value::String(tenant.into()));
        return serde_json::to_vec(&v).expect("a map serialises");
    }
    let open = payload
        .iter()
        .position(|&b| b == b'{')
        .expect("validated payloads are objects");
    let mut out = Vec::with_capacity(payload.len() + quoted.len() + 12);
    out.extend_from_slice(&payload[..=open]);
    out.extend_from_slice(b"\"tenant\":");
    out.extend_from_slice(quoted.as_bytes());
    out.push(b',');
    out.extend_from_slice(&payload[open + 1..]);
    out
}

#[derive(Deserialize)]
struct FeedbackKey<'a> {
    #[serde(borrow)]
    service: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
}

/// Validates feedback. Over Kafka feedback must be keyed like its prediction, so it needs
/// the prediction's `service` and `model` (`keyed`); in process it does not.
pub fn feedback(limits: &Limits, body: &[u8], items: &[(usize, usize)], keyed: bool) -> Checked {
    let raw = raw_batch(body, items);
    let (good, mut rejects) = decode_feedback(&raw, limits);
    let mut records = Vec::with_capacity(good.len());
    for f in good {
        let i = f.offset as usize;
        let payload = raw.payload(i);
        let key = match serde_json::from_slice::<FeedbackKey>(payload) {
            Ok(FeedbackKey {
                service: Some(s),
                model: Some(m),
            }) if !s.is_empty() && !m.is_empty() => format!("{s}/{m}"),
            _ if !keyed => String::new(),
            _ => {
                rejects.push(Reject {
                    index: i,
                    reason: "feedback needs `service` and `model` (its prediction's): it is \
                             keyed like the prediction so that it reaches the same partition"
                        .into(),
                });
                continue;
            }
        };
        records.push(Record {
            key,
            payload: payload.to_vec(),
        });
    }
    rejects.sort_by_key(|r| r.index);
    Checked { records, rejects }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::body::{split, Framing};

    const GOOD: &str = r#"{"event_id":"a","timestamp":1767225600000,"service":"s","model":"m"}"#;

    fn check(body: &str, tenant: Option<&str>) -> Checked {
        let items = split(body.as_bytes(), Framing::Json).unwrap();
        events(
            &mut EventDecoder::default(),
            body.as_bytes(),
            &items,
            tenant,
        )
    }

    #[test]
    fn good_events_are_keyed_and_bad_ones_named_by_index() {
        let body = format!("{GOOD}\n{{\"event_id\":\"b\"}}\nnot json\n{GOOD}");
        let c = check(&body, None);
        assert_eq!(c.records.len(), 2);
        assert_eq!(c.records[0].key, "s/m");
        assert_eq!(c.records[0].payload, GOOD.as_bytes());
        let idx: Vec<usize> = c.rejects.iter().map(|r| r.index).collect();
        assert_eq!(idx, [1, 2]);
        assert!(c.rejects[0].reason.contains("timestamp"), "{:?}", c.rejects);
    }

    #[test]
    fn the_token_tenant_is_stamped_over_the_body() {
        let with = r#"{"event_id":"a","timestamp":1,"service":"s","model":"m","tenant":"evil"}"#;
        let body = format!("[{GOOD},{with}]");
        let c = check(&body, Some("acme \"q\""));
        for r in &c.records {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
            assert_eq!(v["tenant"], "acme \"q\"");
            assert_eq!(v["event_id"].as_str().map(|s| s.len()), Some(1));
        }
        // The stamped payloads are still valid events.
        let again: Vec<u8> = c
            .records
            .iter()
            .flat_map(|r| [&r.payload[..], b"\n"].concat())
            .collect();
        assert_eq!(
            check(std::str::from_utf8(&again).unwrap(), None)
                .records
                .len(),
            2
        );
    }

    #[test]
    fn feedback_over_kafka_needs_its_key() {
        let body = "{\"event_id\":\"a\",\"timestamp\":1,\"correct\":true,\"service\":\"s\",\"model\":\"m\"}\n\
                    {\"event_id\":\"b\",\"timestamp\":1,\"correct\":true}\n{\"event_id\":\"c\"}";
        let items = split(body.as_bytes(), Framing::Lines).unwrap();
        let c = feedback(&Limits::default(), body.as_bytes(), &items, true);
        assert_eq!(c.records.len(), 1);
        assert_eq!(c.records[0].key, "s/m");
        assert_eq!(
            c.rejects.iter().map(|r| r.index).collect::<Vec<_>>(),
            [1, 2]
        );
        let c = feedback(&Limits::default(), body.as_bytes(), &items, false);
        assert_eq!(c.records.len(), 2);
    }
}
