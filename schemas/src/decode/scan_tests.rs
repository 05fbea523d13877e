//! The fast reader against serde_json on generated payloads: wherever it answers, it must
//! answer exactly what serde_json does; on plain payloads it must answer.

use super::scan::{scan, KeyOrder};
use super::wire::WireEvent;

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

    fn event(&mut self) {
        self.blank();
        self.out.push('{');
        let mut first = true;
        let mut used = [false; FIELDS.len()];
        for _ in 0..self.rng.below(30) {
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
    w.event();
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
