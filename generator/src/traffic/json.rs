//! An event as one line of JSON, written straight into the output buffer, with the
//! malformations a run asks for.

use super::{Event, Generator};
use crate::{catalogue::*, format::*, malformations::*};

impl Generator {
    /// Event `index` as one line of JSON (without the newline); `bad` breaks it on purpose.
    pub(crate) fn write(&self, out: &mut Vec<u8>, index: u64, ev: &Event, bad: Option<Malform>) {
        if bad == Some(Malform::JsonArray) {
            out.push(b'[');
        }
        out.push(b'{');
        self.write_envelope(out, index, ev, bad);
        self.write_session(out, ev);
        write_call(out, ev, bad);
        write_judgement(out, ev, bad);
        out.push(b'}');
        if bad == Some(Malform::JsonArray) {
            out.push(b']');
        }
    }

    /// `event_id`, `timestamp`, `schema_version`, the key fields and `tenant`.
    fn write_envelope(&self, out: &mut Vec<u8>, index: u64, ev: &Event, bad: Option<Malform>) {
        let p = &PAIRS[ev.pair];
        let svc = &SERVICES[p.service];
        let model = &MODELS[p.model as usize];
        if bad != Some(Malform::MissingEventId) {
            out.extend_from_slice(b"\"event_id\":\"");
            out.extend_from_slice(&self.id_prefix);
            put_u64(out, index);
            if bad == Some(Malform::OversizedEventId) {
                out.push(b'-');
                let len = self.id_prefix.len() + 1 + decimal_len(index);
                out.resize(out.len() + 300 - len.min(300), b'x');
            }
            out.extend_from_slice(b"\",");
        }
        out.extend_from_slice(b"\"timestamp\":");
        if bad == Some(Malform::BadTimestamp) {
            out.extend_from_slice(b"\"yesterday\"");
        } else if ev.ts_epoch {
            put_i64(out, ev.ts_ms);
        } else {
            put_rfc3339(out, ev.ts_ms);
        }
        if bad == Some(Malform::UnknownSchemaVersion) {
            out.extend_from_slice(b",\"schema_version\":99");
        } else if ev.schema_version {
            out.extend_from_slice(b",\"schema_version\":1");
        }
        out.extend_from_slice(b",\"service\":");
        put_str(out, svc.name);
        out.extend_from_slice(b",\"model\":");
        put_str(out, model.name);
        if ev.model_version {
            out.extend_from_slice(b",\"model_version\":");
            put_str(out, model.version);
        }
        if self.cfg.route_spread > 1 {
            // Many keys for memory benchmarks: every event gets one of `route_spread` routes.
            out.extend_from_slice(b",\"route\":\"");
            out.extend_from_slice(p.route.as_bytes());
            out.push(b'/');
            put_u64(
                out,
                index.wrapping_mul(0x9E37_79B9_7F4A_7C15) % self.cfg.route_spread as u64,
            );
            out.push(b'"');
        } else if ev.route {
            out.extend_from_slice(b",\"route\":");
            put_str(out, p.route);
        }
        if bad == Some(Malform::InvalidUtf8) {
            // "acme" followed by a lone continuation byte and an invalid lead byte.
            out.extend_from_slice(b",\"tenant\":\"acme\x80\xff\"");
        } else if let Some(t) = ev.tenant {
            out.extend_from_slice(b",\"tenant\":");
            put_str(out, TENANTS[t as usize]);
        }
    }

    /// `session_id`, `step`, `tool` and `input_hash` of an agent step.
    fn write_session(&self, out: &mut Vec<u8>, ev: &Event) {
        let svc = &SERVICES[PAIRS[ev.pair].service];
        if let Some((id, step)) = ev.session {
            out.extend_from_slice(b",\"session_id\":\"");
            out.extend_from_slice(&self.session_prefix);
            put_u64(out, id);
            out.extend_from_slice(b"\",\"step\":");
            put_u64(out, step as u64);
            if let Some(t) = ev.tool {
                out.extend_from_slice(b",\"tool\":");
                put_str(out, svc.tools[t as usize]);
            }
            out.extend_from_slice(b",\"input_hash\":\"");
            put_hex16(out, ev.input_hash);
            out.push(b'"');
        }
    }
}

/// `status`, `latency_ms`, the token counts and `cost_usd`.
fn write_call(out: &mut Vec<u8>, ev: &Event, bad: Option<Malform>) {
    if ev.status_explicit {
        out.extend_from_slice(b",\"status\":");
        put_str(out, ev.status.as_str());
    }
    if bad == Some(Malform::WrongType) {
        out.extend_from_slice(b",\"latency_ms\":\"fast\"");
    } else {
        out.extend_from_slice(b",\"latency_ms\":");
        put_fixed(out, ev.latency_ms, 3);
    }
    out.extend_from_slice(b",\"tokens_in\":");
    if bad == Some(Malform::NegativeTokens) {
        out.extend_from_slice(b"-5");
    } else {
        put_i64(out, ev.tokens_in);
    }
    if let Some(t) = ev.tokens_out {
        out.extend_from_slice(b",\"tokens_out\":");
        put_i64(out, t);
    }
    if let Some(t) = ev.tokens_cached {
        out.extend_from_slice(b",\"tokens_cached\":");
        put_i64(out, t);
    }
    if let Some(c) = ev.cost_usd {
        out.extend_from_slice(b",\"cost_usd\":");
        put_fixed(out, c, 8);
    }
}

/// `prediction`, `confidence`, `correct`, `quality_score`, `flags`, `approval`,
/// `output_chars` and `attributes`.
fn write_judgement(out: &mut Vec<u8>, ev: &Event, bad: Option<Malform>) {
    let svc = &SERVICES[PAIRS[ev.pair].service];
    if let Some(k) = ev.prediction {
        out.extend_from_slice(b",\"prediction\":");
        put_str(out, svc.categories[k as usize]);
    }
    if bad == Some(Malform::ConfidenceOutOfRange) {
        out.extend_from_slice(b",\"confidence\":1.7");
    } else if let Some(c) = ev.confidence {
        out.extend_from_slice(b",\"confidence\":");
        put_fixed(out, c, 4);
    }
    if let Some(c) = ev.correct {
        out.extend_from_slice(if c {
            b",\"correct\":true"
        } else {
            b",\"correct\":false"
        });
    }
    if let Some(q) = ev.quality {
        out.extend_from_slice(b",\"quality_score\":");
        put_fixed(out, q, 3);
    }
    if ev.flags != 0 {
        out.extend_from_slice(b",\"flags\":[");
        let mut first = true;
        for (bit, name) in [
            (FLAG_HALLUCINATION, "hallucination"),
            (FLAG_PII, "pii"),
            (FLAG_POLICY, "policy"),
        ] {
            if ev.flags & bit != 0 {
                if !first {
                    out.push(b',');
                }
                first = false;
                put_str(out, name);
            }
        }
        out.push(b']');
    }
    if let Some(a) = ev.approval {
        out.extend_from_slice(b",\"approval\":");
        put_str(out, APPROVALS[a as usize]);
    }
    if let Some(c) = ev.output_chars {
        out.extend_from_slice(b",\"output_chars\":");
        put_i64(out, c);
    }
    if ev.attrs != 0 {
        out.extend_from_slice(b",\"attributes\":{\"region\":");
        put_str(out, REGIONS[ev.region as usize]);
        if ev.attrs & 2 != 0 {
            out.extend_from_slice(b",\"client\":");
            put_str(out, CLIENTS[ev.client as usize]);
        }
        out.push(b'}');
    }
}
