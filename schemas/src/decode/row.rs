//! The fast path's row: the reader's fields go straight into the batch's columns, each
//! checked as it comes by the same rule functions [`EventDecoder::validate`] calls. A field out of
//! them, or a required one missing, makes the row give up: the decoder then drops what the
//! row wrote and takes the slow path, which names the reason. So this path needs no struct
//! in between and no second pass over the fields, and can only accept what the slow path
//! accepts, writing what it would write.
//!
//! [`EventDecoder::validate`]: super::EventDecoder

use arrow::datatypes::{Float64Type, Int64Type};

use super::columns::{Column, Numbers, Texts};
use super::scan::{field::*, Fields};
use super::wire::{Attributes, Flags, WireTime};
use super::{attributes_fit, event_time, flags_fit, Builders};
use crate::time::Rfc3339Parser;
use crate::validate::{approval, cached_tokens, id_fits, non_negative_f64, non_negative_i64};
use crate::validate::{schema_version, text_fits, unit_interval, Limits, Status};
use crate::validate::{COST_SOURCE_EVENT, SUPPORTED_SCHEMA_VERSION};

/// One event being written into `b` as row `row`. A field the event leaves out is left
/// out of its column too, which fills the gap with a null at its next value.
pub(super) struct Row<'b> {
    b: &'b mut Builders,
    limits: &'b Limits,
    times: &'b mut Rfc3339Parser,
    row: usize,
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
            row: b.timestamp.len(),
            b,
            limits,
            times,
            written: 0,
            tokens_in: None,
            tokens_cached: None,
        }
    }

    /// Completes the row once the reader is through: the checks across fields, the
    /// defaults of the fields left out that have one, the position in the source. `None`
    /// when a required field is missing or the checks fail.
    pub(super) fn finish(self, offset: i64) -> Option<()> {
        const REQUIRED: u32 = 1 << EVENT_ID | 1 << TIMESTAMP | 1 << SERVICE | 1 << MODEL;
        if self.written & REQUIRED != REQUIRED {
            return None;
        }
        cached_tokens(self.tokens_cached, self.tokens_in).ok()?;
        let b = self.b;
        if self.written & 1 << STATUS == 0 {
            b.status.push("ok");
        }
        if self.written & 1 << SCHEMA_VERSION == 0 {
            b.schema_version.push(SUPPORTED_SCHEMA_VERSION as i32);
        }
        b.source_offset.push(offset);
        Some(())
    }
}

/// The field name the rules put in their reasons: none here, where a broken rule only sends
/// the payload to the slow path, which runs the same rules again and keeps the reason.
const UNNAMED: &str = "";

impl<'a> Fields<'a> for Row<'_> {
    #[inline]
    fn text(&mut self, key: u8, v: Option<&'a str>) -> Option<()> {
        let (l, b, row) = (self.limits, &mut *self.b, self.row);
        match key {
            EVENT_ID => {
                id_fits(v, l.max_event_id_bytes).then_some(())?;
                b.event_id.push(v?);
            }
            SERVICE => {
                id_fits(v, l.max_name_bytes).then_some(())?;
                b.service.push(v?);
            }
            MODEL => {
                id_fits(v, l.max_name_bytes).then_some(())?;
                b.model.push(v?);
            }
            STATUS => b.status.push(match v {
                Some(s) => Status::parse(s).ok().map(|_| s)?,
                None => "ok",
            }),
            _ => {
                match key {
                    APPROVAL => approval(v).ok()?,
                    _ => text_fits(v, l.max_name_bytes).then_some(())?,
                }
                if let Some(s) = v {
                    b.texts(key).push_at(row, s);
                }
            }
        }
        self.written |= 1 << key;
        Some(())
    }

    #[inline]
    fn float(&mut self, key: u8, v: Option<f64>) -> Option<()> {
        let b = &mut *self.b;
        match key {
            LATENCY_MS | COST_USD => non_negative_f64(UNNAMED, v).ok()?,
            _ => unit_interval(UNNAMED, v).ok()?,
        }
        if let Some(x) = v {
            if key == COST_USD {
                b.cost_source.push_at(self.row, COST_SOURCE_EVENT);
            }
            b.floats(key).push_at(self.row, x);
        }
        self.written |= 1 << key;
        Some(())
    }

    #[inline]
    fn int(&mut self, key: u8, v: Option<i64>) -> Option<()> {
        non_negative_i64(UNNAMED, v).ok()?;
        match key {
            SCHEMA_VERSION => {
                schema_version(v).ok()?;
                let n = v.unwrap_or(SUPPORTED_SCHEMA_VERSION);
                self.b.schema_version.push(n as i32);
            }
            _ => {
                match key {
                    TOKENS_IN => self.tokens_in = v,
                    TOKENS_CACHED => self.tokens_cached = v,
                    _ => {}
                }
                if let Some(n) = v {
                    self.b.ints(key).push_at(self.row, n);
                }
            }
        }
        self.written |= 1 << key;
        Some(())
    }

    #[inline]
    fn boolean(&mut self, v: Option<bool>) -> Option<()> {
        if let Some(v) = v {
            self.b.correct.push_at(self.row, v);
        }
        self.written |= 1 << CORRECT;
        Some(())
    }

    #[inline]
    fn time(&mut self, v: Option<WireTime<'a>>) -> Option<()> {
        let ms = event_time(v.as_ref(), self.times).ok()?;
        self.b.timestamp.push(ms);
        self.written |= 1 << TIMESTAMP;
        Some(())
    }

    #[inline]
    fn flags(&mut self, v: Option<Flags<'a>>) -> Option<()> {
        let (l, b) = (self.limits, &mut *self.b);
        if let Some(f) = v {
            flags_fit(l, &f).ok()?;
            b.flags.pad(self.row);
            b.flags.push_list(f.0.iter().map(|t| t.0.as_ref()));
        }
        self.written |= 1 << FLAGS;
        Some(())
    }

    #[inline]
    fn attributes(&mut self, v: Option<Attributes<'a>>) -> Option<()> {
        let (l, b) = (self.limits, &mut *self.b);
        if let Some(a) = v {
            attributes_fit(l, &a).ok()?;
            b.attributes.pad(self.row);
            let pairs = a.0.iter().map(|(k, v)| (k.0.as_ref(), v.0.as_ref()));
            b.attributes.push_map(pairs);
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
            PROVIDER => &mut self.provider,
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
        self.columns().into_iter().for_each(|c| c.truncate(rows));
    }

    /// Nulls in every column up to `rows` rows.
    pub(super) fn pad(&mut self, rows: usize) {
        self.columns().into_iter().for_each(|c| c.pad(rows));
    }

    fn columns(&mut self) -> [&mut dyn Column; 29] {
        [
            &mut self.event_id,
            &mut self.timestamp,
            &mut self.service,
            &mut self.model,
            &mut self.model_version,
            &mut self.route,
            &mut self.tenant,
            &mut self.session_id,
            &mut self.status,
            &mut self.latency_ms,
            &mut self.tokens_in,
            &mut self.tokens_out,
            &mut self.tokens_cached,
            &mut self.cost_usd,
            &mut self.cost_source,
            &mut self.prediction,
            &mut self.confidence,
            &mut self.correct,
            &mut self.quality_score,
            &mut self.flags,
            &mut self.approval,
            &mut self.step,
            &mut self.tool,
            &mut self.provider,
            &mut self.input_hash,
            &mut self.output_chars,
            &mut self.attributes,
            &mut self.schema_version,
            &mut self.source_offset,
        ]
    }
}
