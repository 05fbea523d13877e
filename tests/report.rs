//! `inferwatch report` in a real browser: headless Chromium (Debian's `chromium`) loads the
//! report of a miscalibration run without console errors, draws a non-blank page, and its
//! DOM holds one reliability diagram per model with a bar per non-empty bin, the numbers
//! equal to SQL over the same tables.

mod common;

use std::path::Path;
use std::process::Command;

use common::cli::*;
use common::test_dir;

/// Runs headless Chromium on `page` with `args`; (stdout, stderr).
fn chromium(dir: &Path, page: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium").display()
        ))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium (Debian package) is installed by scripts/test.sh");
    assert!(out.status.success(), "chromium failed: {out:?}");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `<svg class="reliability" ...>` elements of `dom`, by (service, model).
fn diagrams(dom: &str) -> Vec<(String, String, &str)> {
    let attr = |tag: &str, name: &str| -> String {
        let start = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        tag[start..start + tag[start..].find('"').unwrap()].to_string()
    };
    dom.match_indices("<svg class=\"reliability\"")
        .map(|(at, _)| {
            let svg = &dom[at..at + dom[at..].find("</svg>").unwrap()];
            let tag = &svg[..svg.find('>').unwrap()];
            (attr(tag, "data-service"), attr(tag, "data-model"), svg)
        })
        .collect()
}

/// Sum of the `data-count` of the bars in `svg`.
fn bar_counts(svg: &str) -> (usize, i64) {
    let bars: Vec<&str> = svg.split("<rect class=\"bar\"").skip(1).collect();
    let sum = bars
        .iter()
        .map(|b| {
            let v = &b[b.find("data-count=\"").unwrap() + 12..];
            v[..v.find('"').unwrap()].parse::<i64>().unwrap()
        })
        .sum();
    (bars.len(), sum)
}

/// Whether a PNG holds more than one colour: its pixel data decompressed (Python's
/// standard library) has more than a handful of distinct byte values.
fn png_is_not_blank(png: &Path) -> bool {
    let script = r#"
import struct, sys, zlib
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'\x89PNG\r\n\x1a\n'
pos, idat = 8, b''
while pos < len(data):
    n, kind = struct.unpack('>I4s', data[pos:pos + 8])
    if kind == b'IDAT':
        idat += data[pos + 8:pos + 8 + n]
    pos += 12 + n
print(len(set(zlib.decompress(idat))))
"#;
    let out = Command::new("python3")
        .args(["-c", script, png.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let distinct: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    distinct > 16
}

#[test]
fn the_report_renders_in_chromium_with_the_tables_numbers() {
    let dir = test_dir();
    let input = generate(
        dir.path(),
        "in.ndjson",
        &[
            "--count",
            "60000",
            "--rate",
            "200",
            "--scenario",
            "miscalibration",
            "--recover-at",
            "0.9",
            "--seed",
            "3",
        ],
    );
    let data = dir.path().join("data");
    run(&input, &data, &["--window", "1m"]);
    let page = dir.path().join("report.html");
    let d = data.to_str().unwrap();
    ok(&["report", "--data-dir", d, "--out", page.to_str().unwrap()]);

    let (dom, log) = chromium(dir.path(), &page, &["--dump-dom"]);
    assert!(!log.contains("CONSOLE"), "console messages: {log}");
    let found = diagrams(&dom);
    let want = query(
        &data,
        "SELECT service, model, count(*) AS bins, sum(n) AS n FROM (\
           SELECT service, model, bin, sum(count) AS n FROM calibration_bins_latest \
           GROUP BY service, model, bin HAVING sum(count) > 0) \
         GROUP BY service, model ORDER BY service, model",
    );
    assert!(want.len() >= 4, "labeled models: {want:?}");
    assert_eq!(found.len(), want.len(), "one reliability diagram per model");
    for (row, (service, model, svg)) in want.iter().zip(&found) {
        assert_eq!(row["service"].as_str().unwrap(), service);
        assert_eq!(row["model"].as_str().unwrap(), model);
        let (bars, n) = bar_counts(svg);
        assert_eq!(
            bars as i64,
            row["bins"].as_i64().unwrap(),
            "{service}/{model}"
        );
        assert_eq!(n, row["n"].as_i64().unwrap(), "{service}/{model}");
    }
    // Each card's request count is the table's.
    for row in query(
        &data,
        "SELECT service, model, sum(requests) AS n FROM metrics_latest GROUP BY 1, 2",
    ) {
        let card = format!(
            "data-service=\"{}\" data-model=\"{}\"><h3>",
            row["service"].as_str().unwrap(),
            row["model"].as_str().unwrap()
        );
        let at = dom.find(&card).unwrap_or_else(|| panic!("a card {card}"));
        let said = format!("{} requests in", row["n"].as_i64().unwrap());
        assert!(dom[at..at + 400].contains(&said), "{card}: {said}");
    }
    // support-bot's calibration broke: the page says so at the top.
    let at = dom
        .find("<table class=\"changes\"")
        .expect("a what-changed table");
    let changed = &dom[at..at + dom[at..].find("</table>").unwrap()];
    assert!(
        changed
            .split("<tr")
            .any(|row| row.contains("<td>support-bot</td>") && row.contains("<td>ECE</td>")),
        "{changed}"
    );
    // Alerts fired and show on the timeline.
    let fired = count(
        &data,
        "SELECT count(*) FROM alerts WHERE state = 'firing' AND NOT renotify",
    );
    assert!(fired > 0);
    assert!(dom.contains("<svg class=\"timeline\""));

    let png = dir.path().join("report.png");
    let shot = format!("--screenshot={}", png.display());
    chromium(dir.path(), &page, &[&shot, "--window-size=1200,2400"]);
    assert!(png_is_not_blank(&png), "a blank screenshot");

    // --service keeps one service's cards.
    let one = dir.path().join("one.html");
    ok(&[
        "report",
        "--data-dir",
        d,
        "--out",
        one.to_str().unwrap(),
        "--service",
        "support-bot",
    ]);
    let text = std::fs::read_to_string(&one).unwrap();
    assert!(text.contains("data-service=\"support-bot\""));
    assert!(!text.contains("data-service=\"fraud-screen\""));
    let none = inferwatch(&["report", "--data-dir", d, "--service", "nope"]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no metrics windows for service"));
}
