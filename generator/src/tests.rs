//! The generator's output against its promises: determinism, validity, every scenario's
//! trouble.

use crate::{catalogue::*, format::*, rng::*, scenario::*, traffic::*};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

fn cfg(scenario: Scenario, total: u64) -> GeneratorConfig {
    GeneratorConfig {
        scenario,
        total_events: total,
        ..GeneratorConfig::default()
    }
}

/// Every payload of a run, in order.
fn run(c: GeneratorConfig) -> (Vec<Vec<u8>>, Generator) {
    let mut g = Generator::new(c);
    let mut all = Vec::new();
    let mut out = Vec::new();
    while g.next_payload(&mut out) {
        all.push(out.clone());
        out.clear();
    }
    (all, g)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Strict parser for the one RFC 3339 shape the generator writes.
fn parse_ts(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 24 || &b[4..5] != b"-" || b[10] != b'T' || b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, se, ms) = (n(11..13)?, n(14..16)?, n(17..19)?, n(20..23)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 59 {
        return None;
    }
    Some(((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60_000 + se * 1000 + ms)
}

/// A valid event, or why the payload is not one (rules of the event schema).
fn check(payload: &[u8]) -> Result<(Map<String, Value>, i64), &'static str> {
    if payload.is_empty() {
        return Err("empty");
    }
    let text = std::str::from_utf8(payload).map_err(|_| "utf8")?;
    let v: Value = serde_json::from_str(text).map_err(|_| "syntax")?;
    let Value::Object(m) = v else {
        return Err("not an object");
    };
    if let Some(sv) = m.get("schema_version") {
        if sv.as_i64() != Some(1) {
            return Err("schema_version");
        }
    }
    let id = m.get("event_id").ok_or("missing event_id")?;
    let id = id.as_str().ok_or("event_id type")?;
    if id.is_empty() || id.len() > 128 {
        return Err("event_id length");
    }
    let ts = match m.get("timestamp").ok_or("missing timestamp")? {
        Value::String(s) => parse_ts(s).ok_or("timestamp")?,
        Value::Number(n) => n.as_i64().ok_or("timestamp")?,
        _ => return Err("timestamp"),
    };
    for k in ["service", "model"] {
        if m.get(k)
            .is_none_or(|v| v.as_str().is_none_or(str::is_empty))
        {
            return Err("service/model");
        }
    }
    for k in [
        "model_version",
        "route",
        "tenant",
        "session_id",
        "prediction",
        "tool",
        "input_hash",
    ] {
        if m.get(k).is_some_and(|v| !v.is_string()) {
            return Err("text field type");
        }
    }
    if let Some(s) = m.get("status") {
        let ok = ["ok", "error", "timeout", "refused", "filtered"];
        if !s.as_str().is_some_and(|s| ok.contains(&s)) {
            return Err("status");
        }
    }
    if let Some(l) = m.get("latency_ms") {
        if !l.as_f64().is_some_and(|x| x >= 0.0) {
            return Err("latency_ms");
        }
    }
    for k in ["tokens_in", "tokens_out", "tokens_cached", "output_chars"] {
        if let Some(t) = m.get(k) {
            if t.as_i64().is_none_or(|x| x < 0) {
                return Err("tokens");
            }
        }
    }
    if let (Some(c), Some(i)) = (m.get("tokens_cached"), m.get("tokens_in")) {
        if c.as_i64() > i.as_i64() {
            return Err("tokens_cached > tokens_in");
        }
    }
    if let Some(s) = m.get("step") {
        if s.as_i64().is_none_or(|x| x < 1) {
            return Err("step");
        }
    }
    if let Some(c) = m.get("cost_usd") {
        if !c.as_f64().is_some_and(|x| x >= 0.0) {
            return Err("cost_usd");
        }
    }
    for k in ["confidence", "quality_score"] {
        if let Some(c) = m.get(k) {
            if !c.as_f64().is_some_and(|x| (0.0..=1.0).contains(&x)) {
                return Err("unit interval");
            }
        }
    }
    if m.get("correct").is_some_and(|c| !c.is_boolean()) {
        return Err("correct");
    }
    if let Some(f) = m.get("flags") {
        let ok = ["hallucination", "pii", "policy"];
        let f = f.as_array().ok_or("flags")?;
        if f.is_empty()
            || !f
                .iter()
                .all(|x| x.as_str().is_some_and(|s| ok.contains(&s)))
        {
            return Err("flags");
        }
    }
    if let Some(a) = m.get("approval") {
        if !a.as_str().is_some_and(|s| APPROVALS.contains(&s)) {
            return Err("approval");
        }
    }
    if let Some(a) = m.get("attributes") {
        let a = a.as_object().ok_or("attributes")?;
        if a.is_empty() || !a.values().all(|v| v.is_string()) {
            return Err("attributes");
        }
    }
    Ok((m, ts))
}

fn index_of(m: &Map<String, Value>) -> u64 {
    let id = m["event_id"].as_str().unwrap();
    id.rsplit('-').next().unwrap().parse().unwrap()
}

fn s<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

fn f(m: &Map<String, Value>, k: &str) -> Option<f64> {
    m.get(k).and_then(Value::as_f64)
}

/// Mean of `k` over the events of `service` (any service if None) before / after onset.
fn mean_split(
    events: &[(Map<String, Value>, i64)],
    onset: u64,
    service: Option<&str>,
    k: impl Fn(&Map<String, Value>) -> Option<f64>,
) -> (f64, f64) {
    let mut acc = [(0.0, 0u64); 2];
    for (m, _) in events {
        if service.is_some_and(|sv| s(m, "service") != Some(sv)) {
            continue;
        }
        if let Some(x) = k(m) {
            let a = &mut acc[(index_of(m) >= onset) as usize];
            a.0 += x;
            a.1 += 1;
        }
    }
    assert!(acc[0].1 > 100 && acc[1].1 > 100, "too few samples: {acc:?}");
    (acc[0].0 / acc[0].1 as f64, acc[1].0 / acc[1].1 as f64)
}

fn valid_events(c: GeneratorConfig) -> Vec<(Map<String, Value>, i64)> {
    let (all, g) = run(c);
    let events: Vec<_> = all.iter().filter_map(|p| check(p).ok()).collect();
    assert_eq!(events.len() as u64 + g.malformed(), g.produced());
    events
}

#[test]
fn same_config_same_bytes_other_seed_other_bytes() {
    for sc in Scenario::ALL {
        let (a, ga) = run(cfg(sc, 20_000));
        let (b, gb) = run(cfg(sc, 20_000));
        assert_eq!(a, b, "{sc}");
        assert_eq!(ga.malformed(), gb.malformed());
        let (c, _) = run(GeneratorConfig {
            seed: 43,
            ..cfg(sc, 20_000)
        });
        assert_ne!(a, c, "{sc}");
        assert_eq!(a.len(), c.len());
    }
}

#[test]
fn stops_after_total_events() {
    let mut g = Generator::new(cfg(Scenario::Malformed, 1000));
    let mut out = Vec::new();
    let mut n = 0;
    while g.next_payload(&mut out) {
        n += 1;
    }
    assert_eq!(n, 1000);
    assert_eq!(g.produced(), 1000);
    let len = out.len();
    assert!(!g.next_payload(&mut out));
    assert_eq!(out.len(), len, "nothing appended after the end");
    assert_eq!(g.produced(), 1000);
    assert!(!Generator::new(cfg(Scenario::Steady, 0)).next_payload(&mut out));
}

#[test]
fn scenarios_equal_steady_before_onset() {
    let (steady, _) = run(cfg(Scenario::Steady, 20_000));
    for sc in Scenario::ALL {
        let (other, _) = run(cfg(sc, 20_000));
        assert_eq!(steady[..10_000], other[..10_000], "{sc}");
        if sc != Scenario::Steady {
            assert_ne!(steady[10_000..], other[10_000..], "{sc}");
        }
    }
}

#[test]
fn scenario_names_round_trip() {
    for sc in Scenario::ALL {
        assert_eq!(sc.name().parse::<Scenario>(), Ok(sc));
        assert_eq!(sc.name().to_uppercase().parse::<Scenario>(), Ok(sc));
        assert!(!sc.description().is_empty() && !sc.description().contains('\n'));
    }
    assert_eq!("cost_spike".parse::<Scenario>(), Ok(Scenario::CostSpike));
    let err = "chaos".parse::<Scenario>().unwrap_err();
    for sc in Scenario::ALL {
        assert!(err.contains(sc.name()), "{err}");
    }
}

#[test]
fn every_payload_is_a_valid_event_with_bounded_jitter() {
    let c = GeneratorConfig {
        seed: 7,
        rate: 800.0,
        ..cfg(Scenario::Steady, 50_000)
    };
    let (all, g) = run(c.clone());
    assert_eq!(g.malformed(), 0);
    let mut ids = BTreeSet::new();
    let mut epoch = 0;
    let (mut with_cost, mut with_correct, mut with_status, mut flagged) = (0, 0, 0, 0);
    let mut statuses = BTreeMap::new();
    let mut pairs = BTreeSet::new();
    let (mut min_dev, mut max_dev) = (i64::MAX, i64::MIN);
    for (i, p) in all.iter().enumerate() {
        assert!(!p.contains(&b'\n'));
        let (m, ts) = check(p).unwrap_or_else(|e| {
            panic!("payload {i} invalid ({e}): {}", String::from_utf8_lossy(p))
        });
        assert!(ids.insert(s(&m, "event_id").unwrap().to_string()));
        assert_eq!(index_of(&m), i as u64);
        // Base time: start + i * 1000/rate ms, timestamps at most max_jitter_ms before it.
        let base = c.start_ms + (i as f64 * 1000.0 / c.rate).floor() as i64;
        let dev = ts - base;
        assert!(
            (-c.max_jitter_ms..=0).contains(&dev),
            "event {i}: {ts} vs base {base}"
        );
        assert!(ts >= c.start_ms - c.max_jitter_ms);
        min_dev = min_dev.min(dev);
        max_dev = max_dev.max(dev);
        epoch += m["timestamp"].is_number() as u32;
        with_cost += m.contains_key("cost_usd") as u32;
        with_correct += m.contains_key("correct") as u32;
        with_status += m.contains_key("status") as u32;
        flagged += m.contains_key("flags") as u32;
        *statuses
            .entry(s(&m, "status").unwrap_or("ok").to_string())
            .or_insert(0u32) += 1;
        pairs.insert((
            s(&m, "service").unwrap().to_string(),
            s(&m, "model").unwrap().to_string(),
        ));
    }
    let n = all.len() as f64;
    let share = |x: u32| x as f64 / n;
    assert!((0.08..0.12).contains(&share(epoch)), "epoch ms {epoch}");
    assert!((0.27..0.33).contains(&share(with_cost)), "cost {with_cost}");
    assert!((0.55..0.65).contains(&share(with_correct)));
    assert!(share(with_status) < 0.9, "status is sometimes omitted");
    assert!(share(flagged) < 0.1, "flags are usually absent");
    assert!(
        (0.01..0.02).contains(&share(statuses["error"])),
        "{statuses:?}"
    );
    assert!((0.001..0.006).contains(&share(statuses["timeout"])));
    assert!((0.003..0.008).contains(&share(statuses["refused"])));
    assert_eq!(pairs.len(), PAIRS.len());
    assert!(min_dev < -1900 && max_dev > -100, "jitter spans the range");
}

#[test]
fn zero_jitter_is_in_order() {
    let c = GeneratorConfig {
        max_jitter_ms: 0,
        rate: 333.0,
        ..cfg(Scenario::Drift, 5_000)
    };
    let ts: Vec<i64> = valid_events(c).into_iter().map(|e| e.1).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn steady_is_calibrated_and_stationary() {
    let ev = valid_events(cfg(Scenario::Steady, 60_000));
    let onset = 30_000;
    let (c0, c1) = mean_split(&ev, onset, None, |m| f(m, "confidence"));
    assert!(
        (0.75..0.85).contains(&c0) && (c0 - c1).abs() < 0.01,
        "{c0} {c1}"
    );
    let (a0, a1) = mean_split(&ev, onset, None, |m| {
        m.get("correct").map(|c| c.as_bool().unwrap() as u8 as f64)
    });
    assert!(
        (a0 - c0).abs() < 0.02 && (a1 - c1).abs() < 0.02,
        "calibrated"
    );
    // Calibrated per bin too: accuracy tracks confidence.
    let mut bins = [(0.0, 0.0, 0u32); 2];
    for (m, _) in &ev {
        if let (Some(c), Some(ok)) = (f(m, "confidence"), m.get("correct")) {
            let b = &mut bins[(c > 0.85) as usize];
            b.0 += c;
            b.1 += ok.as_bool().unwrap() as u8 as f64;
            b.2 += 1;
        }
    }
    for (c, a, n) in bins {
        assert!(n > 1000 && (c - a).abs() / (n as f64) < 0.02, "{c} {a} {n}");
    }
    let max_repeat = repeats(&ev, 0).values().copied().max().unwrap();
    assert_eq!(max_repeat, 1, "no tool call repeats in steady traffic");
}

#[test]
fn drift_shifts_confidence_quality_and_mix() {
    let ev = valid_events(cfg(Scenario::Drift, 60_000));
    let onset = 30_000;
    for svc in SERVICES.iter().map(|s| s.name) {
        let (c0, c1) = mean_split(&ev, onset, Some(svc), |m| f(m, "confidence"));
        assert!(c0 > 0.75 && c1 < 0.62, "{svc}: {c0} -> {c1}");
    }
    let (c0, c1) = mean_split(&ev, onset, None, |m| f(m, "confidence"));
    assert!(c0 - c1 > 0.2, "{c0} -> {c1}");
    let (q0, q1) = mean_split(&ev, onset, None, |m| f(m, "quality_score"));
    assert!(q0 - q1 > 0.15, "quality {q0} -> {q1}");
    let (o0, o1) = mean_split(&ev, onset, Some("support-bot"), |m| {
        s(m, "prediction").map(|p| (p == "other") as u8 as f64)
    });
    assert!(
        o0 < 0.08 && o1 > 0.3,
        "support-bot 'other' share {o0} -> {o1}"
    );
    let (f0, f1) = mean_split(&ev, onset, Some("fraud-screen"), |m| {
        s(m, "prediction").map(|p| (p == "legit") as u8 as f64)
    });
    assert!(f0 - f1 > 0.15, "fraud-screen 'legit' share {f0} -> {f1}");
}

#[test]
fn miscalibration_makes_support_bot_overconfident() {
    let ev = valid_events(cfg(Scenario::Miscalibration, 60_000));
    let onset = 30_000;
    let sb = Some("support-bot");
    let (c0, c1) = mean_split(&ev, onset, sb, |m| f(m, "confidence"));
    let (a0, a1) = mean_split(&ev, onset, sb, |m| {
        m.get("correct").map(|c| c.as_bool().unwrap() as u8 as f64)
    });
    assert!((a0 - c0).abs() < 0.03, "calibrated before: {c0} vs {a0}");
    assert!(c1 > 0.85, "still confident: {c1}");
    assert!((0.45..0.55).contains(&a1), "accuracy after onset {a1}");
    // Other services stay calibrated.
    let (_, other_c) = mean_split(&ev, onset, Some("fraud-screen"), |m| f(m, "confidence"));
    let (_, other_a) = mean_split(&ev, onset, Some("fraud-screen"), |m| {
        m.get("correct").map(|c| c.as_bool().unwrap() as u8 as f64)
    });
    assert!((other_c - other_a).abs() < 0.04, "{other_c} vs {other_a}");
}

#[test]
fn cost_spike_inflates_checkout_tokens_and_cost() {
    let ev = valid_events(cfg(Scenario::CostSpike, 60_000));
    let onset = 30_000;
    let ck = Some("checkout-assistant");
    let tok = |k: &'static str| move |m: &Map<String, Value>| f(m, k);
    let (o0, o1) = mean_split(&ev, onset, ck, tok("tokens_out"));
    let (i0, i1) = mean_split(&ev, onset, ck, tok("tokens_in"));
    let (d0, d1) = mean_split(&ev, onset, ck, tok("cost_usd"));
    assert!(o1 / o0 > 6.0 && o1 / o0 < 10.0, "tokens_out {o0} -> {o1}");
    assert!(i1 / i0 > 3.0 && i1 / i0 < 5.0, "tokens_in {i0} -> {i1}");
    assert!(d1 / d0 > 4.0, "cost {d0} -> {d1}");
    let (s0, s1) = mean_split(&ev, onset, Some("support-bot"), tok("tokens_out"));
    assert!(
        (s1 / s0 - 1.0).abs() < 0.15,
        "support-bot unchanged {s0} -> {s1}"
    );
    for (m, _) in &ev {
        if let (Some(c), Some(i)) = (m.get("tokens_cached"), m.get("tokens_in")) {
            assert!(c.as_i64() <= i.as_i64());
        }
    }
}

/// The mixed scenario: each service gets its own trouble, and only that one.
#[test]
fn mixed_gives_each_service_one_trouble() {
    let ev = valid_events(cfg(Scenario::Mixed, 80_000));
    let onset = 40_000;
    let correct =
        |m: &Map<String, Value>| m.get("correct").map(|c| c.as_bool().unwrap() as u8 as f64);
    let conf = |m: &Map<String, Value>| f(m, "confidence");
    // fraud-screen: as confident as before, right far less often.
    let fr = Some("fraud-screen");
    let ((c0, c1), (a0, a1)) = (
        mean_split(&ev, onset, fr, conf),
        mean_split(&ev, onset, fr, correct),
    );
    assert!(
        (c0 - a0).abs() < 0.04 && c1 - a1 > 0.25,
        "{c0} {a0} -> {c1} {a1}"
    );
    // search-rerank drifts: confidence falls; support-bot's does not.
    let (s0, s1) = mean_split(&ev, onset, Some("search-rerank"), conf);
    assert!(s0 - s1 > 0.1, "search-rerank confidence {s0} -> {s1}");
    let (b0, b1) = mean_split(&ev, onset, Some("support-bot"), conf);
    assert!(
        (b0 - b1).abs() < 0.03,
        "support-bot confidence {b0} -> {b1}"
    );
    // checkout-assistant's cost spikes.
    let (d0, d1) = mean_split(&ev, onset, Some("checkout-assistant"), |m| f(m, "cost_usd"));
    assert!(d1 / d0 > 4.0, "cost {d0} -> {d1}");
    // support-bot sessions loop, and only support-bot's.
    let after = repeats(&ev, onset);
    let looping: BTreeSet<&str> = after
        .iter()
        .filter(|(_, &c)| c >= 10)
        .filter_map(|((sid, _, _), _)| {
            ev.iter()
                .find(|(m, _)| s(m, "session_id") == Some(sid))
                .and_then(|(m, _)| s(m, "service"))
        })
        .collect();
    assert_eq!(looping, BTreeSet::from(["support-bot"]));
}

/// Counts of (session_id, tool, input_hash) among session events with index >= from.
fn repeats(ev: &[(Map<String, Value>, i64)], from: u64) -> BTreeMap<(String, String, String), u32> {
    let mut n = BTreeMap::new();
    for (m, _) in ev {
        if index_of(m) < from {
            continue;
        }
        if let (Some(sid), Some(t), Some(h)) =
            (s(m, "session_id"), s(m, "tool"), s(m, "input_hash"))
        {
            *n.entry((sid.into(), t.into(), h.into())).or_insert(0) += 1;
        }
    }
    n
}

#[test]
fn runaway_loop_repeats_tool_calls_in_support_bot() {
    let ev = valid_events(cfg(Scenario::RunawayLoop, 60_000));
    let onset = 30_000;
    let before: Vec<_> = ev
        .iter()
        .filter(|e| index_of(&e.0) < onset)
        .cloned()
        .collect();
    assert_eq!(repeats(&before, 0).values().max(), Some(&1));
    let after = repeats(&ev, onset);
    let loops: Vec<_> = after.iter().filter(|(_, &c)| c >= 3).collect();
    assert!(loops.len() >= 5, "{} looping sessions", loops.len());
    assert!(loops.iter().any(|(_, &c)| c >= 20));
    for ((sid, tool, hash), _) in &loops {
        // The looping calls are support-bot calls at consecutive steps.
        let mut steps: Vec<i64> = ev
            .iter()
            .filter(|(m, _)| {
                s(m, "session_id") == Some(sid)
                    && s(m, "tool") == Some(tool)
                    && s(m, "input_hash") == Some(hash)
            })
            .map(|(m, _)| {
                assert_eq!(s(m, "service"), Some("support-bot"));
                m["step"].as_i64().unwrap()
            })
            .collect();
        steps.sort_unstable();
        assert!(steps.windows(2).all(|w| w[1] == w[0] + 1), "{steps:?}");
    }
    // Sessions in general: steps 1..k without gaps, usually k <= 8.
    let mut max_step: BTreeMap<String, i64> = BTreeMap::new();
    for (m, _) in &before {
        if let Some(sid) = s(m, "session_id") {
            let st = max_step.entry(sid.into()).or_insert(0);
            *st = (*st).max(m["step"].as_i64().unwrap());
        }
    }
    let short = max_step.values().filter(|&&k| k <= 8).count();
    assert!(short as f64 / max_step.len() as f64 > 0.85);
}

#[test]
fn malformed_payloads_are_counted_and_cover_every_kind() {
    let total = 60_000;
    let (all, g) = run(cfg(Scenario::Malformed, total));
    let onset = (total / 2) as usize;
    let mut reasons = BTreeSet::new();
    let mut bad_after = 0u64;
    for (i, p) in all.iter().enumerate() {
        assert!(!p.contains(&b'\n'), "payload {i} has a newline");
        if let Err(e) = check(p) {
            assert!(i >= onset, "malformed payload {i} before the onset");
            if e == "event_id length" {
                let v: Value = serde_json::from_slice(p).unwrap();
                assert_eq!(v["event_id"].as_str().unwrap().len(), 300);
            }
            bad_after += 1;
            reasons.insert(e);
        }
    }
    assert_eq!(bad_after, g.malformed());
    let share = bad_after as f64 / (total as usize - onset) as f64;
    assert!((0.04..=0.06).contains(&share), "share {share}");
    let expected: BTreeSet<&str> = [
        "syntax",
        "empty",
        "missing event_id",
        "timestamp",
        "unit interval",
        "tokens",
        "latency_ms",
        "event_id length",
        "schema_version",
        "not an object",
        "utf8",
    ]
    .into();
    assert_eq!(reasons, expected);
    for sc in Scenario::ALL {
        if sc != Scenario::Malformed {
            let (all, g) = run(cfg(sc, 20_000));
            assert_eq!(g.malformed(), 0);
            assert!(all.iter().all(|p| check(p).is_ok()), "{sc}");
        }
    }
}

#[test]
fn numerics_match_std() {
    for i in 1..2000 {
        let x = (i as f64 - 1000.0) / 97.0;
        let rel = (exp_det(x) - x.exp()).abs() / x.exp();
        assert!(rel < 1e-14, "exp({x})");
        let y = i as f64 * 0.37 + 1e-9 * i as f64;
        assert!((ln_det(y) - y.ln()).abs() < 1e-14 * y.ln().abs().max(1.0));
    }
    assert!((norm_quantile(0.975) - 1.959_963_985).abs() < 1e-8);
    assert!((norm_quantile(0.001) + 3.090_232_306).abs() < 1e-8);
    let mut out = Vec::new();
    put_fixed(&mut out, 0.00012345, 8);
    out.push(b' ');
    put_fixed(&mut out, 812.3456, 3);
    out.push(b' ');
    put_rfc3339(&mut out, 1_767_225_601_250);
    out.push(b' ');
    put_i64(&mut out, -1234);
    put_str(&mut out, "a\"b\\\n");
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "0.00012345 812.346 \"2026-01-01T00:00:01.250Z\" -1234\"a\\\"b\\\\\\u000a\""
    );
}
