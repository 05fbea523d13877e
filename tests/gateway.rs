//! The HTTP gateway in process (`run --listen`, `demo --listen`) with real clients: the
//! official OpenTelemetry Python SDK's OTLP/HTTP protobuf exporter and curl. Its Kafka side
//! is in `gateway_kafka.rs`.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::cli::query;
use common::http::{get, post, Answer, Listening};
use common::test_dir;
use serde_json::Value;

fn python(script: &str, args: &[&str]) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(script);
    let out = Command::new("python3")
        .arg(path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(out.stdout.split(|&b| b == b'\n').next().unwrap()).unwrap()
}

const EVENT_COLUMNS: &str = "event_id, timestamp, service, model, provider, route, tenant, \
    session_id, status, latency_ms, tokens_in, tokens_out, tokens_cached, cost_usd, cost_source, \
    tool, flags, attributes";

fn events(data: &Path) -> Vec<serde_json::Map<String, Value>> {
    query(
        data,
        &format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY timestamp"),
    )
}

#[test]
fn otel_sdk_spans_become_events_and_otlp_json_gives_the_same_rows() {
    let dir = test_dir();
    let (a, b) = (dir.path().join("proto"), dir.path().join("json"));
    let run = |d: &Path, log: &str| {
        Listening::start(
            &["run", "--data-dir", d.to_str().unwrap()],
            dir.path().join(log),
        )
    };
    let proto = run(&a, "proto.log");
    let json_file = dir.path().join("export.json");
    let exported = python(
        "otel_genai.py",
        &[
            "--endpoint",
            &format!("{}/v1/traces", proto.url),
            "--json-out",
            json_file.to_str().unwrap(),
        ],
    );
    assert_eq!(exported["export"], "SUCCESS", "{exported}");
    assert_eq!(exported["spans"], 6);
    let metrics = get(&format!("{}/metrics", proto.url));
    assert!(
        metrics.contains("inferwatch_gateway_spans_skipped_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("inferwatch_gateway_items_accepted_total{route=\"/v1/traces\"} 5\n"),
        "{metrics}"
    );
    proto.stop();

    let json = run(&b, "json.log");
    let body = std::fs::read(&json_file).unwrap();
    let answer = post(
        &format!("{}/v1/traces", json.url),
        &["Content-Type: application/json"],
        &body,
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        answer.json(),
        serde_json::json!({}),
        "full success has no partial_success"
    );
    json.stop();

    let rows = events(&a);
    assert_eq!(
        rows,
        events(&b),
        "the JSON encoding gives the same rows as protobuf"
    );
    assert_eq!(
        rows.len(),
        5,
        "five GenAI spans, the HTTP span skipped: {rows:#?}"
    );
    let by_route: BTreeMap<String, Vec<&serde_json::Map<String, Value>>> =
        rows.iter().fold(BTreeMap::new(), |mut m, r| {
            m.entry(r["route"].as_str().unwrap().to_string())
                .or_default()
                .push(r);
            m
        });
    for r in &rows {
        assert_eq!(r["service"], "support-bot");
        let id = r["event_id"].as_str().unwrap();
        assert!(
            id.len() == 49 && id.as_bytes()[32] == b'-',
            "trace-span id: {id}"
        );
        let attributes = r["attributes"].as_object().cloned().unwrap_or_default();
        for content in [
            "gen_ai.prompt",
            "gen_ai.input.messages",
            "gen_ai.tool.call.arguments",
        ] {
            assert!(
                !attributes.contains_key(content),
                "message contents are never kept: {r:?}"
            );
        }
    }
    // OpenLIT-shaped chat: current names, its own cost, the response model, a cut answer.
    let lit = by_route["chat"][0];
    assert_eq!(lit["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(lit["provider"], "openai");
    assert_eq!(
        (&lit["tokens_in"], &lit["tokens_out"], &lit["tokens_cached"]),
        (&Value::from(120), &Value::from(45), &Value::from(20))
    );
    assert_eq!(lit["cost_usd"], 0.0021);
    assert_eq!(lit["cost_source"], "event");
    assert_eq!(lit["session_id"], "conv-1");
    assert_eq!(lit["flags"], serde_json::json!(["length"]));
    assert_eq!(lit["status"], "ok");
    assert_eq!(lit["latency_ms"], 812.5);
    assert_eq!(
        lit["attributes"],
        serde_json::json!({"gen_ai.request.temperature": "0.2"})
    );
    assert!(lit["timestamp"]
        .as_str()
        .unwrap()
        .starts_with("2026-01-01T00:00:00"));
    // OpenLLMetry-shaped chat: gen_ai.system, prompt/completion tokens, traceloop session.
    let llm = by_route["chat"][1];
    assert_eq!(llm["model"], "claude-3-5-haiku");
    assert_eq!(llm["provider"], "anthropic");
    assert_eq!(
        (&llm["tokens_in"], &llm["tokens_out"], &llm["tokens_cached"]),
        (&Value::from(300), &Value::from(80), &Value::from(100))
    );
    assert_eq!(llm["session_id"], "sess-9");
    assert_eq!(llm["flags"], serde_json::json!(["content_filter"]));
    assert_eq!(llm["latency_ms"], 2000.0);
    // A chat that timed out.
    let slow = by_route["chat"][2];
    assert_eq!(
        (&slow["status"], &slow["latency_ms"]),
        (&Value::from("timeout"), &Value::from(30000.0))
    );
    // A tool call names no model.
    let tool = by_route["execute_tool"][0];
    assert_eq!(
        (&tool["tool"], &tool["model"], &tool["session_id"]),
        (
            &Value::from("search"),
            &Value::from("unknown"),
            &Value::from("sess-9")
        )
    );
    assert_eq!(tool["latency_ms"], 50.0);
    // A failed agent step keeps its other attributes.
    let agent = by_route["invoke_agent"][0];
    assert_eq!(
        (
            &agent["status"],
            &agent["model"],
            &agent["attributes"]["gen_ai.agent.name"]
        ),
        (
            &Value::from("error"),
            &Value::from("gpt-4o"),
            &Value::from("planner")
        )
    );
}

fn sha256_hex(s: &str) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(s.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn event(id: &str, extra: &str) -> String {
    format!(
        r#"{{"event_id":"{id}","timestamp":1767225600000,"service":"checkout","model":"m1"{extra}}}"#
    )
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut c = Command::new("gzip")
        .args(["-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let data = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = c.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out.stdout
}

#[test]
fn bad_requests_get_the_right_status_and_a_reason_and_the_gateway_keeps_serving() {
    let dir = test_dir();
    let data = dir.path().join("data");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nmax_body_bytes = 4096\n[[gateway.tenants]]\ntenant = \"acme\"\n\
             token_sha256 = \"{}\"\n",
            sha256_hex("s3cret-acme")
        ),
    )
    .unwrap();
    let gw = Listening::start(
        &[
            "run",
            "--data-dir",
            data.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        dir.path().join("run.log"),
    );
    let events = format!("{}/v1/events", gw.url);
    let traces = format!("{}/v1/traces", gw.url);
    let (json, auth) = (
        "Content-Type: application/json",
        "Authorization: Bearer s3cret-acme",
    );
    let good = event("e1", r#","tenant":"someone-else""#);
    let expect = |a: Answer, status: u16, words: &str| {
        let text = String::from_utf8_lossy(&a.body).to_string();
        assert_eq!(a.status, status, "{text}");
        assert!(
            text.contains(words),
            "{status}: {text:?} should say {words:?}"
        );
        a
    };

    let a = expect(
        post(&events, &[json], good.as_bytes()),
        401,
        "missing bearer token",
    );
    assert_eq!(a.header("www-authenticate").as_deref(), Some("Bearer"));
    expect(
        post(
            &events,
            &[json, "Authorization: Bearer nope"],
            good.as_bytes(),
        ),
        401,
        "unknown bearer token",
    );
    expect(
        post(&events, &["Content-Type: text/xml", auth], b"<e/>"),
        415,
        "application/x-ndjson",
    );
    expect(
        post(&events, &[auth], good.as_bytes()),
        415,
        "x-www-form-urlencoded",
    );
    expect(
        post(&events, &[json, auth], b"[{\"a\":1}"),
        400,
        "not a JSON array",
    );
    let a = expect(
        post(&events, &[json, auth], b"[{\"event_id\":1}, 7]"),
        400,
        "event_id",
    );
    assert_eq!(a.json()["errors"].as_array().map(Vec::len), Some(2));
    expect(
        post(&events, &[json, auth], &vec![b' '; 5000]),
        413,
        "gateway.max_body_bytes",
    );
    let bomb = gzip(&vec![b' '; 1 << 20]);
    assert!(bomb.len() < 4096, "the compressed body itself is small");
    expect(
        post(&events, &[json, auth, "Content-Encoding: gzip"], &bomb),
        413,
        "after decompression",
    );
    expect(
        post(
            &events,
            &[json, auth, "Content-Encoding: gzip"],
            b"not gzip",
        ),
        400,
        "gzip",
    );
    expect(
        post(
            &events,
            &[json, auth, "Content-Encoding: br"],
            good.as_bytes(),
        ),
        415,
        "gzip, zstd",
    );

    // OTLP: errors come as google.rpc.Status in the request's encoding.
    let a = expect(
        post(
            &traces,
            &[auth, "Content-Type: application/x-protobuf"],
            b"\x0a\x10\x0a\x05",
        ),
        400,
        "not an OTLP protobuf",
    );
    assert_eq!(
        a.header("content-type").as_deref(),
        Some("application/x-protobuf")
    );
    let a = expect(
        post(&traces, &[auth, json], b"{\"resourceSpans\": 5}"),
        400,
        "not an OTLP JSON",
    );
    assert_eq!(a.json()["code"], 3);
    expect(
        post(&traces, &[auth, "Content-Type: text/plain"], b"x"),
        415,
        "OTLP/HTTP",
    );
    expect(
        post(&traces, &["Content-Type: application/json"], b"{}"),
        401,
        "bearer",
    );

    // A GenAI span that cannot be an event is named in OTLP's partial success; the others pass.
    let spans = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
      "scopeSpans":[{"spans":[
        {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"chat",
         "startTimeUnixNano":"1767225600000000000","endTimeUnixNano":"1767225601000000000",
         "attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},
                       {"key":"gen_ai.request.model","value":{"stringValue":"m"}},
                       {"key":"gen_ai.usage.input_tokens","value":{"intValue":"-5"}}]},
        {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060709","name":"chat",
         "startTimeUnixNano":"1767225600000000000","endTimeUnixNano":"1767225601000000000",
         "attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},
                       {"key":"gen_ai.request.model","value":{"stringValue":"m"}}]}]}]}]}"#;
    let a = expect(
        post(&traces, &[auth, json], spans.as_bytes()),
        200,
        "tokens_in",
    );
    let partial = &a.json()["partialSuccess"];
    assert_eq!(
        partial["rejectedSpans"].to_string().trim_matches('"'),
        "1",
        "{partial}"
    );
    assert!(
        partial["errorMessage"]
            .as_str()
            .unwrap()
            .contains("span 0102030405060708"),
        "{partial}"
    );

    // After all that, it still serves; the tenant comes from the token, not the body.
    let body = format!("{good}\n{}\n{{\"event_id\":\"e3\"}}", event("e2", ""));
    let gz = gzip(body.as_bytes());
    let a = expect(
        post(
            &events,
            &[
                "Content-Type: application/x-ndjson",
                auth,
                "Content-Encoding: gzip",
            ],
            &gz,
        ),
        200,
        "accepted",
    );
    let reply = a.json();
    assert_eq!(
        (&reply["accepted"], &reply["rejected"]),
        (&Value::from(2), &Value::from(1)),
        "{reply}"
    );
    assert_eq!(reply["errors"][0]["index"], 2);
    assert!(
        reply["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("timestamp"),
        "{reply}"
    );
    let fb = r#"{"event_id":"e1","timestamp":1767225601000,"correct":true}"#;
    expect(
        post(
            &format!("{}/v1/feedback", gw.url),
            &[json, auth],
            fb.as_bytes(),
        ),
        200,
        "\"accepted\":1",
    );
    let metrics = get(&format!("{}/metrics", gw.url));
    for line in [
        "inferwatch_gateway_requests_total{route=\"/v1/events\",code=\"401\"} 2",
        "inferwatch_gateway_requests_total{route=\"/v1/events\",code=\"413\"} 2",
        "inferwatch_gateway_items_accepted_total{route=\"/v1/events\"} 2",
        "inferwatch_gateway_items_rejected_total{route=\"/v1/events\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    gw.stop();

    let rows = query(
        &data,
        "SELECT event_id, tenant FROM events ORDER BY event_id",
    );
    let got: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["event_id"].as_str().unwrap().into(),
                r["tenant"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "0102030405060708090a0b0c0d0e0f10-0102030405060709".into(),
                "acme".into()
            ),
            ("e1".into(), "acme".into()),
            ("e2".into(), "acme".into())
        ]
    );
    assert_eq!(
        common::cli::count(&data, "SELECT count(*) FROM dead_letter"),
        0,
        "rejected items are the client's, named in the reply"
    );
}

#[test]
fn the_demo_takes_posted_events_beside_its_generated_traffic() {
    let dir = test_dir();
    let data = dir.path().join("data");
    let demo = Listening::start(
        &[
            "demo",
            "--duration",
            "4s",
            "--rate",
            "500",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        dir.path().join("demo.log"),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let body: String = (0..3)
        .map(|i| format!("{{\"event_id\":\"posted-{i}\",\"timestamp\":{now},\"service\":\"posted\",\"model\":\"m\"}}\n"))
        .collect();
    let a = post(
        &format!("{}/v1/events", demo.url),
        &["Content-Type: application/x-ndjson"],
        body.as_bytes(),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json()["accepted"], 3);
    let fb = post(
        &format!("{}/v1/feedback", demo.url),
        &["Content-Type: application/json"],
        b"{}",
    );
    assert_eq!(fb.status, 404, "the demo takes no feedback over HTTP");
    demo.wait();
    let posted = query(
        &data,
        "SELECT event_id, source_partition FROM events WHERE service = 'posted' ORDER BY event_id",
    );
    assert_eq!(posted.len(), 3, "{posted:?}");
    assert_eq!(posted[0]["event_id"], "posted-0");
    assert_eq!(
        common::cli::count(
            &data,
            "SELECT count(*) FROM events WHERE service <> 'posted'"
        ),
        2000,
        "the generated traffic as without --listen"
    );
}
