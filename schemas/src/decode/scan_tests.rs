//! The fast reader against serde_json on generated payloads: wherever it answers, it must
//! answer exactly what serde_json does; on plain payloads it must answer. And the decoder's
//! two paths against each other: the same rows, the same rejects and reasons.

use std::sync::Arc;

use std::borrow::Cow;

use super::scan::{field, plain, scan, Fields, KeyOrder};
use super::wire::{Attributes, Flags, Text, WireEvent, WireTime};
use super::EventDecoder;
use crate::raw::RawBatch;

/// The struct serde_json gives, filled by the reader to compare the two.
impl<'a> Fields<'a> for WireEvent<'a> {
    fn text(&mut self, key: u8, v: Option<&'a str>) -> Option<()> {
        use field::*;
        let v = v.map(|s| Text(Cow::Borrowed(s)));
        match key {
            EVENT_ID => self.event_id = v,
            SERVICE => self.service = v,
            MODEL => self.model = v,
            MODEL_VERSION => self.model_version = v,
            ROUTE => self.route = v,
            TENANT => self.tenant = v,
            SESSION_ID => self.session_id = v,
            STATUS => self.status = v,
            PREDICTION => self.prediction = v,
            APPROVAL => self.approval = v,
            TOOL => self.tool = v,
            INPUT_HASH => self.input_hash = v,
            PROVIDER => self.provider = v,
            _ => unreachable!("{key} is not a text field"),
        }
        Some(())
    }

    fn float(&mut self, key: u8, v: Option<f64>) -> Option<()> {
        use field::*;
        match key {
            LATENCY_MS => self.latency_ms = v,
            COST_USD => self.cost_usd = v,
            CONFIDENCE => self.confidence = v,
            QUALITY_SCORE => self.quality_score = v,
            _ => unreachable!("{key} is not a float field"),
        }
        Some(())
    }

    fn int(&mut self, key: u8, v: Option<i64>) -> Option<()> {
        use field::*;
        match key {
            TOKENS_IN => self.tokens_in = v,
            TOKENS_OUT => self.tokens_out = v,
            TOKENS_CACHED => self.tokens_cached = v,
            STEP => self.step = v,
            OUTPUT_CHARS => self.output_chars = v,
            SCHEMA_VERSION => self.schema_version = v,
            _ => unreachable!("{key} is not an integer field"),
        }
        Some(())
    }

    fn boolean(&mut self, v: Option<bool>) -> Option<()> {
        self.correct = v;
        Some(())
    }

    fn time(&mut self, v: Option<WireTime<'a>>) -> Option<()> {
        self.timestamp = v;
        Some(())
    }

    fn flags(&mut self, v: Option<Flags<'a>>) -> Option<()> {
        self.flags = v;
        Some(())
    }

    fn attributes(&mut self, v: Option<Attributes<'a>>) -> Option<()> {
        self.attributes = v;
        Some(())
    }
}

/// splitmix64: a small deterministic generator, so a failure names a reproducible seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// What a field's value is on the wire.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Float,
    Int,
    Bool,
    Time,
    Flags,
    Attributes,
}

const FIELDS: &[(&str, Kind)] = &[
    ("event_id", Kind::Text),
    ("timestamp", Kind::Time),
    ("service", Kind::Text),
    ("model", Kind::Text),
    ("model_version", Kind::Text),
    ("route", Kind::Text),
    ("tenant", Kind::Text),
    ("session_id", Kind::Text),
    ("status", Kind::Text),
    ("latency_ms", Kind::Float),
    ("tokens_in", Kind::Int),
    ("tokens_out", Kind::Int),
    ("tokens_cached", Kind::Int),
    ("cost_usd", Kind::Float),
    ("prediction", Kind::Text),
    ("confidence", Kind::Float),
    ("correct", Kind::Bool),
    ("quality_score", Kind::Float),
    ("flags", Kind::Flags),
    ("approval", Kind::Text),
    ("step", Kind::Int),
    ("tool", Kind::Text),
    ("provider", Kind::Text),
    ("input_hash", Kind::Text),
    ("output_chars", Kind::Int),
    ("attributes", Kind::Attributes),
    ("schema_version", Kind::Int),
];

const PLAIN_TEXT: &[&str] = &[
    "\"\"",
    "\"checkout-assistant\"",
    "\"ev-2a-0\"",
    "\"caf\u{e9} \u{2713} \u{1f600}\"",
    "\"/v1/chat/35\"",
    "\"2025-12-31T23:59:59.242Z\"",
    "\"a string long enough to cross several eight-byte words of the scan\"",
];
/// Strings the fast reader leaves to serde_json (escapes, control characters).
const ODD_TEXT: &[&str] = &[
    "\"tab\\there\"",
    "\"\\u00e9t\\u00e9\"",
    "\"quote \\\" inside\"",
    "\"raw \u{1} control\"",
    "\"new\nline\"",
    "\"x\\\"",
    "\"\\ud800\"",
];
const PLAIN_FLOAT: &[&str] = &[
    "0",
    "7",
    "928.483",
    "0.00899500",
    "0.7649",
    "1e3",
    "2.5E-7",
    "1e+22",
    "123456789012345678",
    "0.1234567890123456789",
    "9007199254740993",
    "4.35e-15",
    "1.7976931348623157",
    "18446744073709551615",
];
/// Numbers the fast reader leaves to serde_json (negative, long, far exponents, bad forms).
const ODD_NUMBER: &[&str] = &[
    "-1",
    "-0",
    "-0.0",
    "1e23",
    "1e-300",
    "1.7976931348623157e308",
    "2e400",
    "18446744073709551616",
    "0.12345678901234567890123",
    "01",
    "1.",
    ".5",
    "1e",
    "1e+",
    "+1",
    "1.5.2",
    "NaN",
    "Infinity",
    "0x10",
];
const PLAIN_INT: &[&str] = &["0", "1", "2710", "9223372036854775807"];
const ODD_INT: &[&str] = &[
    "9223372036854775808",
    "1.0",
    "1e2",
    "-3",
    "18446744073709551615",
];
const WRONG: &[&str] = &[
    "true",
    "false",
    "[]",
    "{}",
    "\"5\"",
    "12",
    "[1,2]",
    "{\"a\":1}",
];
const BLANKS: &[&str] = &["", "", "", " ", "  "];
const ODD_BLANKS: &[&str] = &["\n", "\t \r\n ", "\u{a0}"];

/// A generated payload and whether the fast reader must take it.
struct Payload {
    text: String,
    plain: bool,
}

struct Writer<'r> {
    rng: &'r mut Rng,
    out: String,
    plain: bool,
}

impl Writer<'_> {
    fn blank(&mut self) {
        // Blanks other than spaces (control characters, or not JSON's) go to serde_json.
        self.token(BLANKS, ODD_BLANKS, 2);
    }

    fn token(&mut self, plain: &[&str], odd: &[&str], odd_percent: usize) {
        let v = if self.rng.chance(odd_percent) {
            self.plain = false;
            self.rng.pick(odd)
        } else {
            self.rng.pick(plain)
        };
        self.out.push_str(v);
    }

    fn value(&mut self, kind: Kind) {
        if self.rng.chance(5) {
            self.out.push_str("null");
            return;
        }
        if self.rng.chance(3) {
            self.plain = false;
            self.out.push_str(self.rng.pick(WRONG));
            return;
        }
        match kind {
            Kind::Text => self.token(PLAIN_TEXT, ODD_TEXT, 10),
            Kind::Float => self.token(PLAIN_FLOAT, ODD_NUMBER, 15),
            Kind::Int => self.token(PLAIN_INT, ODD_INT, 10),
            Kind::Bool => self.token(&["true", "false"], &["tru", "nul", "True"], 5),
            Kind::Time => match self.rng.below(3) {
                0 => self.token(PLAIN_TEXT, ODD_TEXT, 10),
                _ => self.token(PLAIN_FLOAT, ODD_NUMBER, 10),
            },
            Kind::Flags => self.list('[', ']', false),
            Kind::Attributes => self.list('{', '}', true),
        }
    }

    fn list(&mut self, open: char, close: char, keyed: bool) {
        self.out.push(open);
        let n = self.rng.below(4);
        for i in 0..n {
            self.blank();
            if keyed {
                self.token(PLAIN_TEXT, ODD_TEXT, 5);
                self.blank();
                self.out.push(':');
                self.blank();
            }
            if self.rng.chance(4) {
                self.plain = false;
                self.out.push_str(self.rng.pick(&["null", "1", "[]"]));
            } else {
                self.token(PLAIN_TEXT, ODD_TEXT, 5);
            }
            self.blank();
            if i + 1 < n {
                self.out.push(',');
            }
        }
        if n > 0 && self.rng.chance(3) {
            self.plain = false;
            self.out.push(',');
        }
        self.out.push(close);
    }

    fn event(&mut self, max_fields: usize) {
        self.blank();
        self.out.push('{');
        let mut first = true;
        let mut used = [false; FIELDS.len()];
        for _ in 0..self.rng.below(max_fields) {
            self.blank();
            if !first {
                self.out.push(',');
                self.blank();
            }
            first = false;
            if self.rng.chance(8) {
                // An unknown field: scalars are skipped, nested values left to serde_json.
                self.out
                    .push_str(self.rng.pick(&["\"extra\"", "\"x\\u0041\"", "\"\""]));
                self.blank();
                self.out.push(':');
                self.blank();
                if self.rng.chance(30) {
                    self.plain = false;
                    self.out
                        .push_str(self.rng.pick(&["[1, {\"a\": []}]", "{\"k\": \"v\"}"]));
                } else {
                    self.token(PLAIN_TEXT, ODD_TEXT, 10);
                }
                continue;
            }
            let f = self.rng.below(FIELDS.len());
            if used[f] {
                self.plain = false;
            }
            used[f] = true;
            let (name, kind) = FIELDS[f];
            self.out.push('"');
            self.out.push_str(name);
            self.out.push('"');
            self.blank();
            self.out.push(':');
            self.blank();
            self.value(kind);
        }
        self.blank();
        self.out.push('}');
        self.blank();
        if self.out.contains("\"x\\u0041\"") {
            self.plain = false;
        }
    }
}

fn payload(rng: &mut Rng) -> Payload {
    let mut w = Writer {
        rng,
        out: String::new(),
        plain: true,
    };
    w.event(30);
    let Writer { mut out, plain, .. } = w;
    if !rng.chance(15) {
        return Payload { text: out, plain };
    }
    // Damage: cut it short, or put a JSON-significant byte somewhere.
    let mut cut = rng.below(out.len() + 1);
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    if rng.chance(50) {
        out.truncate(cut);
    } else {
        out.insert_str(
            cut,
            rng.pick(&["\"", ",", "}", "{", ":", "]", "x", "0", "\\", " "]),
        );
    }
    Payload {
        text: out,
        plain: false,
    }
}

#[test]
fn the_fast_reader_agrees_with_serde_json_wherever_it_answers() {
    let mut rng = Rng(0x1f2e_3d4c_5b6a_7988);
    let (mut fast, mut plain, mut serde_ok) = (0, 0, 0);
    let mut order = KeyOrder::default();
    for case in 0..200_000 {
        let p = payload(&mut rng);
        let slow = serde_json::from_str::<WireEvent>(&p.text);
        serde_ok += usize::from(slow.is_ok());
        let mut ev = WireEvent::default();
        match scan(&p.text, &mut ev, &mut order).then_some(ev) {
            Some(ev) => {
                fast += 1;
                let slow = slow.unwrap_or_else(|e| {
                    panic!(
                        "case {case}: fast reader took what serde_json rejects ({e}): {}",
                        p.text
                    )
                });
                assert_eq!(
                    format!("{ev:?}"),
                    format!("{slow:?}"),
                    "case {case}: {}",
                    p.text
                );
            }
            None => assert!(
                !p.plain,
                "case {case}: a plain payload was left to serde_json: {}",
                p.text
            ),
        }
        plain += usize::from(p.plain);
    }
    // Both sides of the fence were exercised.
    assert!(plain > 10_000, "{plain} plain payloads");
    assert!(fast >= plain, "{fast} read fast, {plain} plain");
    assert!(
        serde_ok > fast,
        "{serde_ok} accepted by serde_json, {fast} read fast"
    );
}

/// A payload with fewer fields, the required ones added where it lacks them: events the
/// decoder often accepts.
fn event_payload(rng: &mut Rng) -> String {
    let mut w = Writer {
        rng,
        out: String::new(),
        plain: true,
    };
    w.event(8);
    let Writer { mut out, rng, .. } = w;
    let time = rng.pick(&[
        "\"2025-12-31T23:59:59.242Z\"",
        "1767225600000",
        "\"2026-01-01T00:00:00+02:00\"",
    ]);
    let core = [
        ("event_id", "\"ev-1\""),
        ("timestamp", time),
        ("service", "\"checkout\""),
        ("model", "\"gpt-4o\""),
    ];
    for (name, value) in core {
        let Some(open) = out.find('{') else { break };
        if !out.contains(&format!("\"{name}\"")) {
            let empty = out[open + 1..].trim_start().starts_with('}');
            let comma = if empty { "" } else { "," };
            out.insert_str(open + 1, &format!("\"{name}\":{value}{comma}"));
        }
    }
    out
}

#[test]
fn the_fast_path_writes_what_the_slow_path_writes() {
    let mut rng = Rng(0x005e_ed0f_fa57_5104);
    let (mut fast, mut slow) = (EventDecoder::default(), EventDecoder::default());
    slow.slow_only = true;
    let (mut rows, mut rejects) = (0, 0);
    for batch in 0..1_000 {
        let mut raw = RawBatch::new(Arc::from("test"), 0);
        for i in 0..100 {
            let text = match i % 4 {
                0 => payload(&mut rng).text,
                _ => event_payload(&mut rng),
            };
            raw.push(text.as_bytes(), i);
        }
        let (a, b) = (fast.decode(&raw), slow.decode(&raw));
        assert_eq!(a.rows, b.rows, "batch {batch}");
        assert_eq!(a.rejects, b.rejects, "batch {batch}");
        for (c, (x, y)) in a
            .events
            .columns()
            .iter()
            .zip(b.events.columns())
            .enumerate()
        {
            assert_eq!(x, y, "batch {batch}, column {c}");
        }
        (rows, rejects) = (rows + a.rows.len(), rejects + a.rejects.len());
    }
    // Both outcomes were exercised.
    assert!(
        rows > 10_000 && rejects > 10_000,
        "{rows} rows, {rejects} rejects"
    );
}

#[test]
fn generator_payloads_take_the_fast_path() {
    for text in [
        r#"{"event_id":"ev-2a-0","timestamp":"2025-12-31T23:59:59.242Z","service":"checkout-assistant","model":"gpt-4o","route":"/v1/chat/0","tenant":"stark-industries","session_id":"sess-2a-0","step":1,"input_hash":"2d4c891f541ba651","status":"ok","latency_ms":928.483,"tokens_in":2710,"tokens_out":222,"cost_usd":0.00899500,"prediction":"recommend","confidence":0.7649,"correct":true,"approval":"approved"}"#,
        r#"{"event_id":"e","timestamp":1767225600000,"service":"s","model":"m","flags":["length","retry"],"attributes":{"region":"eu","tier":"gold"},"schema_version":1}"#,
    ] {
        let mut ev = WireEvent::default();
        assert!(
            scan(text, &mut ev, &mut KeyOrder::default()),
            "read fast: {text}"
        );
        let slow: WireEvent = serde_json::from_str(text).expect("valid");
        assert_eq!(format!("{ev:?}"), format!("{slow:?}"));
    }
}

/// The check that sends escapes and control bytes to serde_json, against a byte search,
/// with one odd byte (a control byte, a backslash, or non-ASCII bytes, which pass) at every
/// position of payloads either side of its 64-byte blocks.
#[test]
fn plain_finds_every_escape_and_control_byte() {
    let want = |b: &[u8]| !b.iter().any(|&c| c < 0x20 || c == b'\\');
    let odd: [&[u8]; 6] = [b"\x01", b"\t", b"\x1f", b"\\", "é".as_bytes(), b"\x7f\xff"];
    for len in [0, 1, 15, 63, 64, 65, 127, 128, 130] {
        let base = vec![b'a'; len];
        assert!(plain(&base));
        for put in &odd {
            for at in 0..=len {
                let mut b = base.clone();
                b.splice(at..at, put.iter().copied());
                assert_eq!(plain(&b), want(&b), "{b:?}");
            }
        }
    }
}
