//! JSON payloads straight into Arrow: the hot path of every source.
//!
//! Plain payloads (no escapes, known fields) are read in one pass (`scan`) straight into
//! the batch's columns (`columns`), each field checked as it comes (`row`). Every other
//! payload, and any row that breaks a rule, takes the slow path: serde_json into a borrowed
//! struct (`wire`), then the full validation, which names the field at fault; both paths
//! call the same rule functions. Bad payloads become rejects for the `dead_letter` table
//! and never stop the batch.

mod columns;
mod row;
mod scan;
#[cfg(test)]
mod scan_tests;
mod wire;

use std::sync::Arc;

use crate::raw::RawBatch;
use crate::tables::{attributes_type, events as col, events_schema, flags_type};
use crate::time::{EpochMs, Rfc3339Parser, MAX_EVENT_MS, MIN_EVENT_MS};
use crate::validate::{Limits, Status, SUPPORTED_SCHEMA_VERSION};
use arrow::array::{ArrayRef, AsArray, BooleanArray, Int32Array, RecordBatch};
use arrow::buffer::BooleanBuffer;
use arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampMillisecondType};
use columns::{Bools, Entries, Numbers, Texts};
use row::Row;
use wire::{Attributes, Flags, Text, WireEvent, WireTime};

/// A payload that did not become an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    /// Index of the payload in its [`RawBatch`].
    pub index: usize,
    /// Readable reason, naming the field at fault.
    pub reason: String,
}

/// The result of decoding one [`RawBatch`].
#[derive(Debug)]
pub struct Decoded {
    /// Valid events, in the `events` table schema (`late` false, `cost_source` "event" where
    /// the payload had `cost_usd`).
    pub events: RecordBatch,
    /// Index in the raw batch of each row of `events`.
    pub rows: Vec<u32>,
    pub rejects: Vec<Reject>,
}

/// Decodes raw JSON payloads into `events` record batches; reuses its builders across batches.
pub struct EventDecoder {
    limits: Limits,
    b: Builders,
    /// Bytes per row of each text column in the last batch: the next one's builders start
    /// that big.
    text_bytes: Vec<f64>,
    order: scan::KeyOrder,
    times: Rfc3339Parser,
    /// Tests compare the two paths: this one takes every payload the slow way.
    #[cfg(test)]
    slow_only: bool,
}

struct Builders {
    event_id: Texts,
    timestamp: Numbers<TimestampMillisecondType>,
    service: Texts,
    model: Texts,
    model_version: Texts,
    route: Texts,
    tenant: Texts,
    session_id: Texts,
    status: Texts,
    latency_ms: Numbers<Float64Type>,
    tokens_in: Numbers<Int64Type>,
    tokens_out: Numbers<Int64Type>,
    tokens_cached: Numbers<Int64Type>,
    cost_usd: Numbers<Float64Type>,
    cost_source: Texts,
    prediction: Texts,
    confidence: Numbers<Float64Type>,
    correct: Bools,
    quality_score: Numbers<Float64Type>,
    flags: Entries,
    approval: Texts,
    step: Numbers<Int64Type>,
    tool: Texts,
    provider: Texts,
    input_hash: Texts,
    output_chars: Numbers<Int64Type>,
    attributes: Entries,
    schema_version: Numbers<Int32Type>,
    source_offset: Numbers<Int64Type>,
    // `source`, `source_partition` and `late` hold one value per batch: built whole at the end.
}

impl Builders {
    /// Builders for `rows` events, with `bytes[c]` bytes for the values of string column `c`
    /// (the last batch's: sized once, they are not grown value by value).
    fn with_capacity(rows: usize, bytes: &[usize]) -> Self {
        let s = |c: usize| Texts::with_capacity(rows, bytes.get(c).map_or(0, |b| b + b / 8));
        Self {
            event_id: s(col::EVENT_ID),
            timestamp: Numbers::with_capacity(rows),
            service: s(col::SERVICE),
            model: s(col::MODEL),
            model_version: s(col::MODEL_VERSION),
            route: s(col::ROUTE),
            tenant: s(col::TENANT),
            session_id: s(col::SESSION_ID),
            status: s(col::STATUS),
            latency_ms: Numbers::with_capacity(rows),
            tokens_in: Numbers::with_capacity(rows),
            tokens_out: Numbers::with_capacity(rows),
            tokens_cached: Numbers::with_capacity(rows),
            cost_usd: Numbers::with_capacity(rows),
            cost_source: s(col::COST_SOURCE),
            prediction: s(col::PREDICTION),
            confidence: Numbers::with_capacity(rows),
            correct: Bools::with_capacity(rows),
            quality_score: Numbers::with_capacity(rows),
            flags: Entries::new(),
            approval: s(col::APPROVAL),
            step: Numbers::with_capacity(rows),
            tool: s(col::TOOL),
            provider: s(col::PROVIDER),
            input_hash: s(col::INPUT_HASH),
            output_chars: Numbers::with_capacity(rows),
            attributes: Entries::new(),
            schema_version: Numbers::with_capacity(rows),
            source_offset: Numbers::with_capacity(rows),
        }
    }

    /// The columns of the rows appended, with `raw`'s source and partition.
    fn finish(&mut self, raw: &RawBatch) -> Vec<ArrayRef> {
        let rows = self.timestamp.len();
        self.pad(rows);
        let flags = Arc::new(self.flags.finish_list(&flags_type()));
        let attributes = Arc::new(self.attributes.finish_map(&attributes_type()));
        vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.timestamp.finish().with_timezone("UTC")),
            Arc::new(self.service.finish()),
            Arc::new(self.model.finish()),
            Arc::new(self.model_version.finish()),
            Arc::new(self.provider.finish()),
            Arc::new(self.route.finish()),
            Arc::new(self.tenant.finish()),
            Arc::new(self.session_id.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.latency_ms.finish()),
            Arc::new(self.tokens_in.finish()),
            Arc::new(self.tokens_out.finish()),
            Arc::new(self.tokens_cached.finish()),
            Arc::new(self.cost_usd.finish()),
            Arc::new(self.cost_source.finish()),
            Arc::new(self.prediction.finish()),
            Arc::new(self.confidence.finish()),
            Arc::new(self.correct.finish()),
            Arc::new(self.quality_score.finish()),
            flags,
            Arc::new(self.approval.finish()),
            Arc::new(self.step.finish()),
            Arc::new(self.tool.finish()),
            Arc::new(self.input_hash.finish()),
            Arc::new(self.output_chars.finish()),
            attributes,
            Arc::new(self.schema_version.finish()),
            Arc::new(columns::repeated(&raw.source, rows)),
            Arc::new(Int32Array::from_value(raw.partition, rows)),
            Arc::new(self.source_offset.finish()),
            Arc::new(BooleanArray::new(BooleanBuffer::new_unset(rows), None)),
        ]
    }
}

fn text<'a>(t: &'a Option<Text<'_>>) -> Option<&'a str> {
    t.as_ref().map(|t| t.0.as_ref())
}

impl Default for EventDecoder {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl EventDecoder {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            b: Builders::with_capacity(0, &[]),
            text_bytes: Vec::new(),
            order: scan::KeyOrder::default(),
            times: Rfc3339Parser::default(),
            #[cfg(test)]
            slow_only: false,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Decodes every payload of `raw`: each becomes either a row of `events` or a [`Reject`].
    pub fn decode(&mut self, raw: &RawBatch) -> Decoded {
        // Sized here, not when the last batch finished: a decoder per partition would
        // otherwise hold a batch's worth of buffers while its partition waits.
        let bytes: Vec<usize> = self
            .text_bytes
            .iter()
            .map(|b| (b * raw.len() as f64) as usize)
            .collect();
        self.b = Builders::with_capacity(raw.len(), &bytes);
        let mut rows = Vec::with_capacity(raw.len());
        let mut rejects = Vec::new();
        for i in 0..raw.len() {
            let payload = raw.payload(i);
            if self.read_row(payload, raw.offset(i)) {
                rows.push(i as u32);
                continue;
            }
            // Filled in place: the struct is large, and moving it per event showed in profiles.
            let mut ev = WireEvent::default();
            match self.decode_one(payload, &mut ev) {
                Ok(ts) => {
                    self.append(&ev, ts, raw, i);
                    rows.push(i as u32);
                }
                Err(reason) => rejects.push(Reject { index: i, reason }),
            }
        }
        // `finish` leaves the builders empty: nothing is held until the next batch.
        let columns = self.b.finish(raw);
        let n = raw.len().max(1) as f64;
        self.text_bytes = columns
            .iter()
            .map(|c| {
                c.as_string_opt::<i32>()
                    .map_or(0.0, |s| s.values().len() as f64 / n)
            })
            .collect();
        let events = RecordBatch::try_new(events_schema(), columns)
            .expect("decoder builders match the events schema");
        Decoded {
            events,
            rows,
            rejects,
        }
    }

    /// The fast path: a plain payload read straight into the columns, true when it became a
    /// row. Otherwise the columns are as they were, and the slow path decides.
    fn read_row(&mut self, payload: &[u8], offset: i64) -> bool {
        #[cfg(test)]
        if self.slow_only {
            return false;
        }
        if payload.len() > self.limits.max_payload_bytes {
            return false;
        }
        // One UTF-8 check of the whole payload beats a check per string.
        let Ok(text) = simdutf8::basic::from_utf8(payload) else {
            return false;
        };
        let rows = self.b.timestamp.len();
        let mut row = Row::new(&mut self.b, &self.limits, &mut self.times);
        if scan::scan(text, &mut row, &mut self.order) && row.finish(offset).is_some() {
            return true;
        }
        self.b.truncate(rows);
        false
    }

    /// The slow path: any payload, through serde_json, with the reason when it is not an
    /// event.
    fn decode_one<'p>(
        &mut self,
        payload: &'p [u8],
        ev: &mut WireEvent<'p>,
    ) -> Result<EpochMs, String> {
        if payload.is_empty() || payload.iter().all(|b| b.is_ascii_whitespace()) {
            return Err("empty payload".into());
        }
        if payload.len() > self.limits.max_payload_bytes {
            return Err(format!(
                "payload is {} bytes, at most {} allowed",
                payload.len(),
                self.limits.max_payload_bytes
            ));
        }
        // One UTF-8 check of the whole payload beats serde_json's per string; std's says where
        // a bad one breaks.
        let Ok(text) = simdutf8::basic::from_utf8(payload) else {
            let at = std::str::from_utf8(payload).map_or_else(|e| e.valid_up_to(), |_| 0);
            return Err(format!(
                "payload is not valid UTF-8 (invalid byte at offset {at})"
            ));
        };
        // serde's derived struct visitor also accepts a positional array: only objects are events.
        if text.trim_start().as_bytes().first() != Some(&b'{') {
            let e = serde_json::from_str::<serde::de::IgnoredAny>(text).err();
            return Err(match e {
                Some(e) => format!("invalid JSON: {e}"),
                None => crate::validate::diagnose(
                    payload,
                    &serde_json::Error::io(std::io::Error::other("not an object")),
                ),
            });
        }
        *ev = match serde_json::from_str(text) {
            Ok(ev) => ev,
            Err(e) => return Err(crate::validate::diagnose(payload, &e)),
        };
        self.validate(ev)
    }

    /// Checks every field against the event schema; returns the event time.
    fn validate(&mut self, ev: &WireEvent) -> Result<EpochMs, String> {
        let l = &self.limits;
        crate::validate::schema_version(ev.schema_version)?;
        l.required_id("event_id", text(&ev.event_id), l.max_event_id_bytes)?;
        let ts = event_time(ev.timestamp.as_ref(), &mut self.times)?;
        l.required_id("service", text(&ev.service), l.max_name_bytes)?;
        l.required_id("model", text(&ev.model), l.max_name_bytes)?;
        for (name, v) in [
            ("model_version", &ev.model_version),
            ("route", &ev.route),
            ("tenant", &ev.tenant),
            ("session_id", &ev.session_id),
            ("prediction", &ev.prediction),
            ("tool", &ev.tool),
            ("provider", &ev.provider),
            ("input_hash", &ev.input_hash),
        ] {
            l.optional_text(name, text(v), l.max_name_bytes)?;
        }
        if let Some(s) = text(&ev.status) {
            Status::parse(s)?;
        }
        crate::validate::approval(text(&ev.approval))?;
        numbers(ev)?;
        if let Some(f) = &ev.flags {
            flags_fit(l, f)?;
        }
        if let Some(a) = &ev.attributes {
            attributes_fit(l, a)?;
        }
        Ok(ts)
    }

    fn append(&mut self, ev: &WireEvent, ts: EpochMs, raw: &RawBatch, i: usize) {
        let b = &mut self.b;
        // The fast path leaves a column without a value in its rows until the next one.
        b.pad(b.timestamp.len());
        b.event_id.push(text(&ev.event_id).unwrap_or_default());
        b.timestamp.push(ts);
        b.service.push(text(&ev.service).unwrap_or_default());
        b.model.push(text(&ev.model).unwrap_or_default());
        b.model_version.push_option(text(&ev.model_version));
        b.route.push_option(text(&ev.route));
        b.tenant.push_option(text(&ev.tenant));
        b.session_id.push_option(text(&ev.session_id));
        b.status.push(text(&ev.status).unwrap_or("ok"));
        b.latency_ms.push_option(ev.latency_ms);
        b.tokens_in.push_option(ev.tokens_in);
        b.tokens_out.push_option(ev.tokens_out);
        b.tokens_cached.push_option(ev.tokens_cached);
        b.cost_usd.push_option(ev.cost_usd);
        b.cost_source
            .push_option(ev.cost_usd.map(|_| crate::validate::COST_SOURCE_EVENT));
        b.prediction.push_option(text(&ev.prediction));
        b.confidence.push_option(ev.confidence);
        b.correct.push_option(ev.correct);
        b.quality_score.push_option(ev.quality_score);
        match &ev.flags {
            Some(f) => b.flags.push_list(f.0.iter().map(|t| t.0.as_ref())),
            None => b.flags.push_null(),
        }
        b.approval.push_option(text(&ev.approval));
        b.step.push_option(ev.step);
        b.tool.push_option(text(&ev.tool));
        b.provider.push_option(text(&ev.provider));
        b.input_hash.push_option(text(&ev.input_hash));
        b.output_chars.push_option(ev.output_chars);
        match &ev.attributes {
            Some(a) => b
                .attributes
                .push_map(a.0.iter().map(|(k, v)| (k.0.as_ref(), v.0.as_ref()))),
            None => b.attributes.push_null(),
        }
        b.schema_version
            .push(ev.schema_version.unwrap_or(SUPPORTED_SCHEMA_VERSION) as i32);
        b.source_offset.push(raw.offset(i));
    }
}

/// The event time: RFC 3339 or whole epoch milliseconds, within years 1970 to 9999.
#[inline]
fn event_time(t: Option<&WireTime>, times: &mut Rfc3339Parser) -> Result<EpochMs, String> {
    let ts = match t {
        None => return Err("missing required field `timestamp`".into()),
        Some(WireTime::Text(t)) => times.parse(&t.0).ok_or_else(|| {
            format!(
                "field `timestamp`: cannot parse {:?} as RFC 3339 or epoch milliseconds",
                crate::validate::clip(&t.0, 64)
            )
        })?,
        Some(WireTime::Millis(ms)) => {
            if ms.fract() != 0.0 || !ms.is_finite() {
                return Err(format!(
                    "field `timestamp`: {ms} is not a whole number of epoch milliseconds"
                ));
            }
            *ms as i64
        }
    };
    if !(MIN_EVENT_MS..=MAX_EVENT_MS).contains(&ts) {
        return Err(format!(
            "field `timestamp`: {ts} ms is outside 1970-01-01 .. 9999-12-31"
        ));
    }
    Ok(ts)
}

/// Durations and costs non-negative, scores in [0, 1], counts non-negative, cached tokens
/// part of the input.
fn numbers(ev: &WireEvent) -> Result<(), String> {
    use crate::validate::{non_negative_f64, non_negative_i64, unit_interval};
    non_negative_f64("latency_ms", ev.latency_ms)?;
    non_negative_f64("cost_usd", ev.cost_usd)?;
    unit_interval("confidence", ev.confidence)?;
    unit_interval("quality_score", ev.quality_score)?;
    for (name, v) in [
        ("tokens_in", ev.tokens_in),
        ("tokens_out", ev.tokens_out),
        ("tokens_cached", ev.tokens_cached),
        ("step", ev.step),
        ("output_chars", ev.output_chars),
    ] {
        non_negative_i64(name, v)?;
    }
    crate::validate::cached_tokens(ev.tokens_cached, ev.tokens_in)
}

/// A list or map field of `n` entries, at most `max`.
#[inline]
fn entries_fit(field: &str, n: usize, max: usize) -> Result<(), String> {
    match n > max {
        true => Err(format!(
            "field `{field}`: {n} entries, at most {max} allowed"
        )),
        false => Ok(()),
    }
}

/// `flags` within their limits.
#[inline]
fn flags_fit(l: &Limits, f: &Flags) -> Result<(), String> {
    entries_fit("flags", f.0.len(), l.max_flags)?;
    for t in &f.0 {
        l.optional_text("flags", Some(&t.0), l.max_name_bytes)?;
    }
    Ok(())
}

/// `attributes` within their limits.
#[inline]
fn attributes_fit(l: &Limits, a: &Attributes) -> Result<(), String> {
    entries_fit("attributes", a.0.len(), l.max_attributes)?;
    for (k, v) in &a.0 {
        l.optional_text("attributes key", Some(&k.0), l.max_name_bytes)?;
        l.optional_text("attributes value", Some(&v.0), l.max_attribute_value_bytes)?;
    }
    Ok(())
}
