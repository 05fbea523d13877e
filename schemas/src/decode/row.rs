//! The fast path's row: the reader's fields go straight into the batch's columns, each
//! checked as it comes against the rules [`EventDecoder::validate`] applies. A field out of
//! them, or a required one missing, makes the row give up: the decoder then drops what the
//! row wrote and takes the slow path, which names the reason. So this path needs no struct
//! in between and no second pass over the fields, and can only accept what the slow path
//! accepts, writing what it would write.
//!
//! [`EventDecoder::validate`]: super::EventDecoder

use arrow::datatypes::{Float64Type, Int64Type};

use super::columns::{Numbers, Texts};
use super::scan::{field::*, Fields};
use super::wire::{Attributes, Flags, WireTime};
use super::Builders;
use crate::time::{Rfc3339Parser, MAX_EVENT_MS, MIN_EVENT_MS};
use crate::validate::{Limits, Status, COST_SOURCE_EVENT, SUPPORTED_SCHEMA_VERSION};

/// One event being written into `b`.
pub(super) struct Row<'b> {
    pub(super) b: &'b mut Builders,
    pub(super) limits: &'b Limits,
    pub(super) times: &'b mut Rfc3339Parser,
    /// A bit for each field written, by its index in the reader's keys.
    written: u32,
    tokens_in: Option<i64>,
    tokens_cached: Option<i64>,
}

impl<'b> Row<'b> {
    pub(super) fn new(
        b: &'b mut Builders,
        limits: &'b Limits,
        times: &'b mut Rfc3339Parser,
    ) -> Self {
        Self {
            b,
            limits,
            times,
            written: 0,
            tokens_in: None,
            tokens_cached: None,
        }
    }

    /// Completes the row once the reader is through: the checks across fields, then defaults
    /// and nulls for the fields the payload left out, and the position in the source. `None`
    /// when a required field is missing or the checks fail.
    pub(super) fn finish(self, offset: i64) -> Option<()> {
        const REQUIRED: u32 = 1 << EVENT_ID | 1 << TIMESTAMP | 1 << SERVICE | 1 << MODEL;
        if self.written & REQUIRED != REQUIRED {
            return None;
        }
        if let (Some(cached), Some(input)) = (self.tokens_cached, self.tokens_in) {
            if cached > input {
                return None;
            }
        }
        let b = self.b;
        let mut missing = ALL & !self.written;
        while missing != 0 {
            let key = missing.trailing_zeros() as u8;
            missing &= missing - 1;
            match key {
                EVENT_ID | TIMESTAMP | SERVICE | MODEL => unreachable!("checked above"),
                STATUS => b.status.push("ok"),
                SCHEMA_VERSION => b.schema_version.push(SUPPORTED_SCHEMA_VERSION as i32),
                COST_USD => {
                    b.cost_usd.push_option(None);
                    b.cost_source.push_null();
                }
                CORRECT => b.correct.push_option(None),
                PROVIDER => lazy_null(&mut b.provider_nulls, || b.provider.push_null()),
                FLAGS => lazy_null(&mut b.flags_nulls, || b.flags.push_null()),
                ATTRIBUTES => lazy_null(&mut b.attributes_nulls, || b.attributes.push_null()),
                LATENCY_MS | CONFIDENCE | QUALITY_SCORE => b.floats(key).push_option(None),
                TOKENS_IN | TOKENS_OUT | TOKENS_CACHED | STEP | OUTPUT_CHARS => {
                    b.ints(key).push_option(None)
                }
                _ => b.texts(key).push_null(),
            }
        }
        b.source_offset.push(offset);
        Some(())
    }
}

/// A null for a column whose nulls wait until it sees a value.
#[inline]
fn lazy_null(nulls: &mut super::LazyNulls, push: impl FnOnce()) {
    if nulls.null() {
        push();
    }
}

/// A required name or id: present, not empty, at most `max` bytes.
#[inline]
fn required(v: Option<&str>, max: usize) -> Option<&str> {
    v.filter(|s| !s.is_empty() && s.len() <= max)
}

/// An optional text: `None` when it is longer than `max` bytes.
#[inline]
fn optional(v: Option<&str>, max: usize) -> Option<Option<&str>> {
    match v {
        Some(s) if s.len() > max => None,
        v => Some(v),
    }
}

impl<'a> Fields<'a> for Row<'_> {
    #[inline]
    fn text(&mut self, key: u8, v: Option<&'a str>) -> Option<()> {
        let (l, b) = (self.limits, &mut *self.b);
        match key {
            EVENT_ID => b.event_id.push(required(v, l.max_event_id_bytes)?),
            SERVICE => b.service.push(required(v, l.max_name_bytes)?),
            MODEL => b.model.push(required(v, l.max_name_bytes)?),
            STATUS => b.status.push(match v {
                Some(s) => Status::parse(s).ok().map(|_| s)?,
                None => "ok",
            }),
            APPROVAL => {
                let ok = v.is_none_or(|a| matches!(a, "approved" | "rejected" | "pending"));
                ok.then(|| b.approval.push_option(v))?
            }
            PROVIDER => match optional(v, l.max_name_bytes)? {
                Some(p) => {
                    for _ in 0..b.provider_nulls.value() {
                        b.provider.push_null();
                    }
                    b.provider.push(p);
                }
                None => lazy_null(&mut b.provider_nulls, || b.provider.push_null()),
            },
            _ => b.texts(key).push_option(optional(v, l.max_name_bytes)?),
        }
        self.written |= 1 << key;
        Some(())
    }

    #[inline]
    fn float(&mut self, key: u8, v: Option<f64>) -> Option<()> {
        let b = &mut *self.b;
        match key {
            LATENCY_MS | COST_USD => {
                if v.is_some_and(|x| !x.is_finite() || x < 0.0) {
                    return None;
                }
            }
            _ => {
                if v.is_some_and(|x| !(0.0..=1.0).contains(&x)) {
                    return None;
                }
            }
        }
        if key == COST_USD {
            b.cost_source.push_option(v.map(|_| COST_SOURCE_EVENT));
        }
        b.floats(key).push_option(v);
        self.written |= 1 << key;
        Some(())
    }

    #[inline]
    fn int(&mut self, key: u8, v: Option<i64>) -> Option<()> {
        if v.is_some_and(|n| n < 0) {
            return None;
        }
        match key {
            SCHEMA_VERSION => match v {
                Some(n) if n != SUPPORTED_SCHEMA_VERSION => return None,
                n => self
                    .b
                    .schema_version
                    .push(n.unwrap_or(SUPPORTED_SCHEMA_VERSION) as i32),
            },
            _ => {
                match key {
                    TOKENS_IN => self.tokens_in = v,
                    TOKENS_CACHED => self.tokens_cached = v,
                    _ => {}
                }
                self.b.ints(key).push_option(v);
            }
        }
        self.written |= 1 << key;
        Some(())
    }

    #[inline]
    fn boolean(&mut self, v: Option<bool>) -> Option<()> {
        self.b.correct.push_option(v);
        self.written |= 1 << CORRECT;
        Some(())
    }

    #[inline]
    fn time(&mut self, v: Option<WireTime<'a>>) -> Option<()> {
        let ms = match v? {
            WireTime::Text(t) => self.times.parse(&t.0)?,
            WireTime::Millis(ms) if ms.fract() == 0.0 && ms.is_finite() => ms as i64,
            WireTime::Millis(_) => return None,
        };
        if !(MIN_EVENT_MS..=MAX_EVENT_MS).contains(&ms) {
            return None;
        }
        self.b.timestamp.push(ms);
        self.written |= 1 << TIMESTAMP;
        Some(())
    }

    #[inline]
    fn flags(&mut self, v: Option<Flags<'a>>) -> Option<()> {
        let (l, b) = (self.limits, &mut *self.b);
        match v {
            Some(f) => {
                let fits =
                    f.0.len() <= l.max_flags && f.0.iter().all(|t| t.0.len() <= l.max_name_bytes);
                if !fits {
                    return None;
                }
                for _ in 0..b.flags_nulls.value() {
                    b.flags.push_null();
                }
                b.flags.push_list(f.0.iter().map(|t| t.0.as_ref()));
            }
            None => lazy_null(&mut b.flags_nulls, || b.flags.push_null()),
        }
        self.written |= 1 << FLAGS;
        Some(())
    }

    #[inline]
    fn attributes(&mut self, v: Option<Attributes<'a>>) -> Option<()> {
        let (l, b) = (self.limits, &mut *self.b);
        match v {
            Some(a) => {
                let fits = a.0.len() <= l.max_attributes
                    && a.0.iter().all(|(k, v)| {
                        k.0.len() <= l.max_name_bytes && v.0.len() <= l.max_attribute_value_bytes
                    });
                if !fits {
                    return None;
                }
                for _ in 0..b.attributes_nulls.value() {
                    b.attributes.push_null();
                }
                let pairs = a.0.iter().map(|(k, v)| (k.0.as_ref(), v.0.as_ref()));
                b.attributes.push_map(pairs);
            }
            None => lazy_null(&mut b.attributes_nulls, || b.attributes.push_null()),
        }
        self.written |= 1 << ATTRIBUTES;
        Some(())
    }
}

impl Builders {
    /// The column of an optional text field without a rule of its own.
    #[inline]
    fn texts(&mut self, key: u8) -> &mut Texts {
        match key {
            MODEL_VERSION => &mut self.model_version,
            ROUTE => &mut self.route,
            TENANT => &mut self.tenant,
            SESSION_ID => &mut self.session_id,
            PREDICTION => &mut self.prediction,
            APPROVAL => &mut self.approval,
            TOOL => &mut self.tool,
            INPUT_HASH => &mut self.input_hash,
            _ => unreachable!("{key} is not a plain text field"),
        }
    }

    #[inline]
    fn floats(&mut self, key: u8) -> &mut Numbers<Float64Type> {
        match key {
            LATENCY_MS => &mut self.latency_ms,
            COST_USD => &mut self.cost_usd,
            CONFIDENCE => &mut self.confidence,
            QUALITY_SCORE => &mut self.quality_score,
            _ => unreachable!("{key} is not a float field"),
        }
    }

    #[inline]
    fn ints(&mut self, key: u8) -> &mut Numbers<Int64Type> {
        match key {
            TOKENS_IN => &mut self.tokens_in,
            TOKENS_OUT => &mut self.tokens_out,
            TOKENS_CACHED => &mut self.tokens_cached,
            STEP => &mut self.step,
            OUTPUT_CHARS => &mut self.output_chars,
            _ => unreachable!("{key} is not an integer field"),
        }
    }

    /// Keeps the first `rows` rows of every column: drops what a row that gave up wrote.
    pub(super) fn truncate(&mut self, rows: usize) {
        for t in [
            &mut self.event_id,
            &mut self.service,
            &mut self.model,
            &mut self.model_version,
            &mut self.route,
            &mut self.tenant,
            &mut self.session_id,
            &mut self.status,
            &mut self.cost_source,
            &mut self.prediction,
            &mut self.approval,
            &mut self.tool,
            &mut self.provider,
            &mut self.input_hash,
        ] {
            t.truncate(rows);
        }
        for f in [
            &mut self.latency_ms,
            &mut self.cost_usd,
            &mut self.confidence,
            &mut self.quality_score,
        ] {
            f.truncate(rows);
        }
        for i in [
            &mut self.tokens_in,
            &mut self.tokens_out,
            &mut self.tokens_cached,
            &mut self.step,
            &mut self.output_chars,
            &mut self.source_offset,
        ] {
            i.truncate(rows);
        }
        self.timestamp.truncate(rows);
        self.schema_version.truncate(rows);
        self.correct.truncate(rows);
        self.flags.truncate(rows);
        self.attributes.truncate(rows);
        // A column still waiting for its first value waits with a null for every row.
        for lazy in [
            &mut self.provider_nulls,
            &mut self.flags_nulls,
            &mut self.attributes_nulls,
        ] {
            if !lazy.active {
                lazy.waiting = rows;
            }
        }
    }
}
