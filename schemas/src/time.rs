//! Event-time parsing and calendar arithmetic, without a date library on the hot path.

/// Milliseconds since the Unix epoch, UTC.
pub type EpochMs = i64;

/// Earliest and latest accepted event times: 1970-01-01 and 9999-12-31.
pub const MIN_EVENT_MS: EpochMs = 0;
pub const MAX_EVENT_MS: EpochMs = 253_402_300_799_999;

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) for days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The Hive partition an instant falls in: `("YYYY-MM-DD", hour)`.
pub fn date_hour(ms: EpochMs) -> (String, u32) {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let hour = (secs.rem_euclid(86_400) / 3600) as u32;
    let (y, m, d) = civil_from_days(days);
    (format!("{y:04}-{m:02}-{d:02}"), hour)
}

/// Wall-clock time now, ms since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> EpochMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as EpochMs)
        .unwrap_or(0)
}

/// Formats epoch milliseconds as RFC 3339 UTC with milliseconds, e.g. `2026-01-01T00:00:00.000Z`.
pub fn format_rfc3339_ms(ms: EpochMs) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut v: u32 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

/// Parses an RFC 3339 timestamp (`2026-01-01T12:00:00Z`, `...T12:00:00.123456+02:00`,
/// `t`/space as separator, lower-case `z`) to epoch milliseconds; sub-millisecond digits are
/// truncated. Returns `None` for anything else, including impossible dates.
pub fn parse_rfc3339(s: &str) -> Option<EpochMs> {
    Rfc3339Parser::default().parse(s)
}

/// [`parse_rfc3339`] for a stream of timestamps: it remembers the last minute it read
/// (`YYYY-MM-DDTHH:MM`), which a stream's events share by the thousand, so the date checks
/// and calendar arithmetic run once a minute instead of once an event.
#[derive(Debug, Clone, Default)]
pub struct Rfc3339Parser {
    /// The first 16 bytes of the last valid timestamp, and their local seconds.
    last: Option<(u128, i64)>,
}

impl Rfc3339Parser {
    /// The same answer as [`parse_rfc3339`] for every input, whatever it read before.
    pub fn parse(&mut self, s: &str) -> Option<EpochMs> {
        let b = s.as_bytes();
        let head = u128::from_le_bytes(b.get(..16)?.try_into().expect("sixteen bytes"));
        if b.len() < 20 {
            return None;
        }
        let minute = match self.last {
            Some((h, minute)) if h == head => minute,
            _ => {
                let minute = parse_minute(b)?;
                self.last = Some((head, minute));
                minute
            }
        };
        let (seconds, millis) = parse_seconds(b)?;
        Some((minute + seconds) * 1000 + millis)
    }
}

/// `YYYY-MM-DDTHH:MM` (`t` or a space for the `T`), checked, as seconds since the epoch in
/// the timestamp's own offset. `b` holds at least 20 bytes.
fn parse_minute(b: &[u8]) -> Option<i64> {
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let year = digits(&b[0..4])? as i64;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour as i64 * 3600 + minute as i64 * 60)
}

/// `:SS[.fraction](Z|±HH:MM)` from byte 16: (seconds less the offset, milliseconds).
/// `b` holds at least 20 bytes.
fn parse_seconds(b: &[u8]) -> Option<(i64, i64)> {
    if b[16] != b':' {
        return None;
    }
    let second = digits(&b[17..19])?;
    // 60 is a leap second; it is folded into the next second, as most systems do.
    if second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis: i64 = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + (b[i] - b'0') as i64;
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_secs: i64 = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = digits(&b[i + 1..i + 3])? as i64;
            let om = digits(&b[i + 4..i + 6])? as i64;
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    Some((second as i64 - offset_secs, millis))
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses `"30s"`, `"1m"`, `"1h 30m"` into a [`Duration`](std::time::Duration): how the
/// config file and the command line write durations.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration like \"30s\", \"5m\" or \"1h\": {e}"))
}

/// `#[serde(deserialize_with = "...")]` for a duration written as text.
pub fn deserialize_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::time::Duration, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// `#[serde(deserialize_with = "...")]` for an optional duration written as text.
pub fn deserialize_opt_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::time::Duration>, D::Error> {
    let s = <Option<String> as serde::Deserialize>::deserialize(d)?;
    s.map(|s| parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_parser_answers_as_the_plain_one() {
        // Runs of one minute with varied seconds, fractions and offsets, and near-misses of
        // every kind: wrong separators, bad digits, impossible dates and times, a valid
        // minute with a bad tail and the reverse.
        let minutes = [
            "2026-01-01T00:00",
            "2026-01-01t00:00",
            "2026-01-01 00:00",
            "2024-02-29T23:59",
            "2025-02-29T23:59",
            "2026-13-01T00:00",
            "2026-01-01T24:00",
            "2026-01-01T00:60",
            "2026-01-01X00:00",
            "2026/01/01T00:00",
            "20a6-01-01T00:00",
            "9999-12-31T23:59",
        ];
        let tails = [
            ":00Z",
            ":59.999Z",
            ":60.5z",
            ":61Z",
            ":07.1+02:00",
            ":07.123456-05:30",
            ":07.+02:00",
            ":07",
            ":07Zx",
            ":07+24:00",
            ":0aZ",
            "-07Z",
            ":07.25+02:0",
        ];
        let mut stream = Rfc3339Parser::default();
        let mut seen = 0;
        for round in 0..3 {
            for (i, m) in minutes.iter().enumerate() {
                for (j, t) in tails.iter().enumerate() {
                    // Interleave minutes in later rounds, so the remembered one changes.
                    let m = if round > 0 && j % 2 == 1 {
                        minutes[(i + round) % minutes.len()]
                    } else {
                        m
                    };
                    let s = format!("{m}{t}");
                    assert_eq!(stream.parse(&s), parse_rfc3339(&s), "{s}");
                    seen += usize::from(parse_rfc3339(&s).is_some());
                }
            }
        }
        assert!(seen > 50, "the cases include valid timestamps ({seen})");
        for s in [
            "",
            "2026-01-01T00:00",
            "2026-01-01T00:00:0",
            "2026-01-01T00:00:00",
        ] {
            assert_eq!(stream.parse(s), None, "{s}");
            assert_eq!(parse_rfc3339(s), None, "{s}");
        }
    }

    #[test]
    fn civil_round_trips_over_four_centuries() {
        for days in (-200_000..200_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn parses_rfc3339_variants() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-01-01T00:00:00.250Z"),
            Some(1_767_225_600_250)
        );
        assert_eq!(
            parse_rfc3339("2026-01-01t00:00:00.2z"),
            Some(1_767_225_600_200)
        );
        assert_eq!(
            parse_rfc3339("2026-01-01 02:00:00.123999+02:00"),
            Some(1_767_225_600_123)
        );
        assert_eq!(
            parse_rfc3339("2025-12-31T19:00:00-05:00"),
            Some(1_767_225_600_000)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
    }

    #[test]
    fn rejects_malformed_timestamps() {
        for bad in [
            "yesterday",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+0200",
            "2026-01-01T00:00:00Zjunk",
            "２026-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_and_partitions() {
        assert_eq!(
            format_rfc3339_ms(1_767_225_600_250),
            "2026-01-01T00:00:00.250Z"
        );
        assert_eq!(
            date_hour(1_767_225_600_000 + 5 * 3_600_000 + 1),
            ("2026-01-01".into(), 5)
        );
        assert_eq!(date_hour(-1), ("1969-12-31".into(), 23));
    }
}
