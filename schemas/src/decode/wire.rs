//! The event as it is on the wire: a struct that borrows its strings from the payload, read
//! by serde_json (any payload) or by [`super::scan`] (the common ones, faster).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// A string that borrows from the payload unless JSON escapes forced a copy.
#[derive(Debug)]
pub(super) struct Text<'a>(pub(super) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// `timestamp` is RFC 3339 text or epoch milliseconds.
#[derive(Debug)]
pub(super) enum WireTime<'a> {
    Text(Text<'a>),
    Millis(f64),
}

impl<'de: 'a, 'a> Deserialize<'de> for WireTime<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WireTime<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 string or epoch milliseconds")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(WireTime::Text(Text(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(WireTime::Text(Text(Cow::Owned(v.to_owned()))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(WireTime::Millis(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(WireTime::Millis(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(WireTime::Millis(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// `flags`: a list of strings, borrowed.
#[derive(Debug, Default)]
pub(super) struct Flags<'a>(pub(super) Vec<Text<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for Flags<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Flags<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(t) = seq.next_element::<Text<'de>>()? {
                    v.push(t);
                }
                Ok(Flags(v))
            }
        }
        d.deserialize_seq(V)
    }
}

/// `attributes`: an object of string to string, borrowed, in payload order.
#[derive(Debug, Default)]
pub(super) struct Attributes<'a>(pub(super) Vec<(Text<'a>, Text<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Attributes<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Attributes<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(kv) = map.next_entry::<Text<'de>, Text<'de>>()? {
                    v.push(kv);
                }
                Ok(Attributes(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// One inference event as it is on the wire. Unknown fields are ignored so that newer
/// producers do not break older processors.
#[derive(Debug, Default, Deserialize)]
pub(super) struct WireEvent<'a> {
    #[serde(borrow)]
    pub(super) event_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) timestamp: Option<WireTime<'a>>,
    #[serde(borrow)]
    pub(super) service: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) model: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) model_version: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) route: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) tenant: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) session_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) status: Option<Text<'a>>,
    pub(super) latency_ms: Option<f64>,
    pub(super) tokens_in: Option<i64>,
    pub(super) tokens_out: Option<i64>,
    pub(super) tokens_cached: Option<i64>,
    pub(super) cost_usd: Option<f64>,
    #[serde(borrow)]
    pub(super) prediction: Option<Text<'a>>,
    pub(super) confidence: Option<f64>,
    pub(super) correct: Option<bool>,
    pub(super) quality_score: Option<f64>,
    #[serde(borrow)]
    pub(super) flags: Option<Flags<'a>>,
    #[serde(borrow)]
    pub(super) approval: Option<Text<'a>>,
    pub(super) step: Option<i64>,
    #[serde(borrow)]
    pub(super) tool: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) provider: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) input_hash: Option<Text<'a>>,
    pub(super) output_chars: Option<i64>,
    #[serde(borrow)]
    pub(super) attributes: Option<Attributes<'a>>,
    pub(super) schema_version: Option<i64>,
}
