//! Request bodies: `Content-Encoding` (gzip, zstd) undone within the size limit, and a JSON
//! body cut into its events — one object, an array of objects, or NDJSON.

use std::io::Read;

/// Why a body was not read; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// 413: past `gateway.max_body_bytes` (after decompression).
    TooLarge { limit: usize },
    /// 415: an encoding or content type this endpoint does not take.
    Unsupported(String),
    /// 400: the bytes are not what they claim to be.
    Malformed(String),
}

/// The body as sent, decompressed per `Content-Encoding` to at most `limit` bytes.
pub fn decode(encoding: Option<&str>, body: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    let encoding = encoding.unwrap_or("identity").trim().to_ascii_lowercase();
    let too_large = BodyError::TooLarge { limit };
    match encoding.as_str() {
        "" | "identity" => {
            if body.len() > limit {
                return Err(too_large);
            }
            Ok(body.to_vec())
        }
        "gzip" | "x-gzip" => read_limited(flate2::read::MultiGzDecoder::new(body), limit, "gzip"),
        "zstd" => {
            let d = zstd::stream::read::Decoder::new(body)
                .map_err(|e| BodyError::Malformed(format!("zstd body: {e}")))?;
            read_limited(d, limit, "zstd")
        }
        other => Err(BodyError::Unsupported(format!(
            "Content-Encoding {other:?} is not supported: send gzip, zstd or none"
        ))),
    }
}

/// Reads at most `limit` bytes, so a small compressed body cannot expand without bound.
fn read_limited(r: impl Read, limit: usize, what: &str) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    r.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Malformed(format!("{what} body: {e}")))?;
    if out.len() > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(out)
}

/// How a JSON body holds its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `application/json`: one value or an array of them (NDJSON is recognised too).
    Json,
    /// `application/x-ndjson`: one value per line.
    Lines,
}

/// The framing a `Content-Type` announces; `None` is taken as JSON.
pub fn framing(content_type: Option<&str>) -> Result<Framing, BodyError> {
    let Some(ct) = content_type else {
        return Ok(Framing::Json);
    };
    match mime(ct).as_str() {
        "application/json" | "text/json" => Ok(Framing::Json),
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines"
        | "application/jsonlines" => Ok(Framing::Lines),
        other => Err(BodyError::Unsupported(format!(
            "Content-Type {other:?} is not accepted here: send application/json or \
             application/x-ndjson"
        ))),
    }
}

/// The media type of a `Content-Type` value, lowercase, without parameters.
pub fn mime(content_type: &str) -> String {
    let m = content_type.split(';').next().unwrap_or("");
    m.trim().to_ascii_lowercase()
}

/// The byte ranges of the body's items, in order. Item `i` of the reply is range `i`.
pub fn split(body: &[u8], framing: Framing) -> Result<Vec<(usize, usize)>, BodyError> {
    let start = body.len() - trim_start(body).len();
    match (framing, body.get(start)) {
        (_, None) => Ok(Vec::new()),
        (Framing::Json, Some(b'[')) => split_array(body, start),
        (Framing::Json, Some(_)) if is_one_value(&body[start..]) => {
            Ok(vec![(start, body.len() - trailing_ws(body))])
        }
        _ => Ok(split_lines(body)),
    }
}

fn is_one_value(b: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(b).is_ok()
}

fn split_lines(body: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    for line in body.split(|&b| b == b'\n') {
        let (s, e) = (at, at + line.len());
        at = e + 1;
        let t = line.trim_ascii();
        if !t.is_empty() {
            let lead = line.len() - line.trim_ascii_start().len();
            out.push((s + lead, s + lead + t.len()));
        }
    }
    out
}

/// The elements of a top-level array, found by depth and string state. Elements are not
/// parsed here: each is validated like any payload and rejected on its own.
fn split_array(body: &[u8], open: usize) -> Result<Vec<(usize, usize)>, BodyError> {
    let mut out = Vec::new();
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    let mut item: Option<usize> = None;
    let mut i = open + 1;
    while i < body.len() {
        let c = body[i];
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b',' if depth == 0 => {
                let s = item.take().ok_or_else(|| empty_element(out.len()))?;
                out.push((s, i - trailing_ws(&body[s..i])));
            }
            b']' | b'}' if depth == 0 => {
                if c == b'}' {
                    return Err(not_array(format!("unexpected `}}` at byte {i}")));
                }
                match item.take() {
                    Some(s) => out.push((s, i - trailing_ws(&body[s..i]))),
                    None if !out.is_empty() => return Err(empty_element(out.len())),
                    None => {}
                }
                if !body[i + 1..].trim_ascii().is_empty() {
                    return Err(not_array(format!("bytes after the closing `]` at {i}")));
                }
                return Ok(out);
            }
            _ => {
                item.get_or_insert(i);
                match c {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => depth -= 1,
                    _ => {}
                }
            }
        }
        i += 1;
    }
    Err(not_array(
        "the array is not closed (truncated body?)".into(),
    ))
}

fn not_array(why: String) -> BodyError {
    BodyError::Malformed(format!("body is not a JSON array: {why}"))
}

fn empty_element(index: usize) -> BodyError {
    not_array(format!("element {index} is empty"))
}

fn trim_start(b: &[u8]) -> &[u8] {
    let b = b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b);
    b.trim_ascii_start()
}

fn trailing_ws(b: &[u8]) -> usize {
    b.len() - b.trim_ascii_end().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(body: &str, f: Framing) -> Vec<String> {
        split(body.as_bytes(), f)
            .unwrap()
            .into_iter()
            .map(|(s, e)| body[s..e].to_string())
            .collect()
    }

    #[test]
    fn one_object_an_array_and_ndjson() {
        let pretty = "{\n  \"a\": 1,\n  \"b\": [1, 2]\n}\n";
        assert_eq!(items(pretty, Framing::Json), [pretty.trim()]);
        assert_eq!(
            items(" [ {\"a\":\"],\\\"\"} , {\"b\":[{}]},3 ] ", Framing::Json),
            ["{\"a\":\"],\\\"\"}", "{\"b\":[{}]}", "3"]
        );
        assert_eq!(items("[]", Framing::Json), Vec::<String>::new());
        let nd = "{\"a\":1}\n\n  {\"b\":2}  \r\n{bad\n";
        assert_eq!(items(nd, Framing::Json), ["{\"a\":1}", "{\"b\":2}", "{bad"]);
        assert_eq!(items("{\"a\":1}", Framing::Lines), ["{\"a\":1}"]);
        assert_eq!(items("  \n", Framing::Json), Vec::<String>::new());
    }

    #[test]
    fn broken_arrays_say_why() {
        for bad in ["[{\"a\":1}", "[1,,2]", "[1,]", "[1] x", "[\"unterminated]"] {
            let e = split(bad.as_bytes(), Framing::Json).unwrap_err();
            assert!(
                matches!(e, BodyError::Malformed(ref m) if m.contains("not a JSON array")),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn compressed_bodies_are_limited_after_decompression() {
        use std::io::Write;
        let plain = vec![b'x'; 10_000];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decode(Some("gzip"), &gz, 10_000).unwrap(), plain);
        assert_eq!(
            decode(Some("gzip"), &gz, 9_999),
            Err(BodyError::TooLarge { limit: 9_999 })
        );
        let zs = zstd::encode_all(&plain[..], 3).unwrap();
        assert_eq!(decode(Some("zstd"), &zs, 10_000).unwrap(), plain);
        assert!(matches!(
            decode(Some("gzip"), b"not gzip", 100),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            decode(Some("br"), b"x", 100),
            Err(BodyError::Unsupported(_))
        ));
        assert_eq!(
            decode(None, b"abc", 2),
            Err(BodyError::TooLarge { limit: 2 })
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(framing(None), Ok(Framing::Json));
        assert_eq!(
            framing(Some("application/json; charset=utf-8")),
            Ok(Framing::Json)
        );
        assert_eq!(framing(Some("application/x-ndjson")), Ok(Framing::Lines));
        assert!(framing(Some("application/x-www-form-urlencoded")).is_err());
    }
}
