//! Driving the `inferwatch` binary from tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The binary under test: this build's, or the one `INFERWATCH_TEST_BIN` names (to run a
/// copied test binary against a fixed build while the tree changes, as a stress loop does).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| match std::env::var("INFERWATCH_TEST_BIN") {
        Ok(b) if !b.is_empty() => b,
        _ => env!("CARGO_BIN_EXE_inferwatch").to_string(),
    })
}

/// Environment every `inferwatch` child of this test binary gets (object-store credentials),
/// set once before the first child starts; the process's own environment is not touched.
static CHILD_ENV: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

/// Sets [`CHILD_ENV`]; later calls must pass the same variables.
pub fn child_env(vars: Vec<(String, String)>) {
    let set = CHILD_ENV.get_or_init(|| vars.clone());
    assert_eq!(set, &vars, "one environment per test binary");
}

/// The binary, with [`CHILD_ENV`].
pub fn command() -> Command {
    let mut c = Command::new(bin());
    for (k, v) in CHILD_ENV.get().into_iter().flatten() {
        c.env(k, v);
    }
    c
}

pub fn inferwatch(args: &[&str]) -> Output {
    let out = command().args(args).output().expect("inferwatch runs");
    out
}

pub fn ok(args: &[&str]) -> String {
    let out = inferwatch(args);
    assert!(
        out.status.success(),
        "inferwatch {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap() + &String::from_utf8_lossy(&out.stderr)
}

pub fn generate(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut all = vec!["generate", "--out", path.to_str().unwrap()];
    all.extend_from_slice(args);
    ok(&all);
    path
}

pub fn run(input: &Path, data: &Path, extra: &[&str]) -> String {
    let source = format!("file:{}", input.display());
    let mut all = vec![
        "run",
        "--source",
        &source,
        "--data-dir",
        data.to_str().unwrap(),
    ];
    all.extend_from_slice(extra);
    ok(&all)
}

/// Rows of a query, as JSON objects.
pub fn query(data: &Path, sql: &str) -> Vec<serde_json::Map<String, Value>> {
    let out = ok(&[
        "query",
        "--data-dir",
        data.to_str().unwrap(),
        "--format",
        "json",
        sql,
    ]);
    let json = out.lines().next().unwrap_or("[]");
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    v.as_array()
        .expect("one JSON array")
        .iter()
        .map(|r| r.as_object().expect("row objects").clone())
        .collect()
}

pub fn count(data: &Path, sql: &str) -> i64 {
    query(data, sql)[0]
        .values()
        .next()
        .unwrap()
        .as_i64()
        .unwrap()
}

pub fn lines(path: &Path) -> i64 {
    fs::read(path)
        .unwrap()
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as i64
}

pub fn python_check(input: &Path, data: &Path, size_ms: i64, slide_ms: i64) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(root.join("tests/reference/check_metrics.py"))
        .args([input.to_str().unwrap(), data.to_str().unwrap()])
        .args([size_ms.to_string(), slide_ms.to_string()])
        .arg(root.join("processor/prices.toml"))
        .output()
        .expect("python3 runs (./scripts/test.sh installs pyarrow, duckdb)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "reference check failed:\n{text}");
    assert!(text.contains("checked"), "{text}");
}

/// Checks the calibration columns and `calibration_bins` of tumbling windows of `size_ms`
/// against scikit-learn and numpy (tests/reference/check_calibration.py).
pub fn calibration_check(input: &Path, data: &Path, size_ms: i64) {
    calibration_check_bins(input, data, size_ms, 10, "equal_width")
}

/// [`calibration_check`] for `[calibration] bins` and `binning`.
pub fn calibration_check_bins(input: &Path, data: &Path, size_ms: i64, bins: usize, binning: &str) {
    calibration_check_with(input, data, size_ms, bins, binning, None)
}

/// [`calibration_check`] with labels joined from a feedback file, on the latest revisions.
pub fn calibration_check_with(
    input: &Path,
    data: &Path,
    size_ms: i64,
    bins: usize,
    binning: &str,
    feedback: Option<&Path>,
) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(root.join("tests/reference/check_calibration.py"))
        .args([
            input.to_str().unwrap(),
            data.to_str().unwrap(),
            &size_ms.to_string(),
            &bins.to_string(),
            binning,
        ])
        .args(feedback.map(|f| f.to_str().unwrap()))
        .output()
        .expect("python3 runs (./scripts/test.sh installs numpy, scikit-learn)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "calibration check failed:\n{text}");
    assert!(text.contains("checked"), "{text}");
}

/// Checks the drift columns of tumbling windows of `size_ms` against scipy and numpy
/// (tests/reference/check_drift.py); `pinned` is the baseline period in epoch ms.
pub fn drift_check(
    input: &Path,
    data: &Path,
    size_ms: i64,
    baseline_windows: u32,
    min_samples: u64,
    pinned: Option<(i64, i64)>,
) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut args = vec![
        input.to_str().unwrap().to_string(),
        data.to_str().unwrap().to_string(),
        size_ms.to_string(),
        baseline_windows.to_string(),
        min_samples.to_string(),
    ];
    if let Some((from, to)) = pinned {
        args.extend([from.to_string(), to.to_string()]);
    }
    let out = Command::new("python3")
        .arg(root.join("tests/reference/check_drift.py"))
        .args(&args)
        .output()
        .expect("python3 runs (./scripts/test.sh installs numpy, scipy)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "drift check failed:\n{text}");
    assert!(text.contains("checked"), "{text}");
    text
}

/// 12345 as "12,345", as the CLI prints counts.
pub fn thousands(n: i64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Checks `sessions` and the session columns of `metrics` (tumbling windows of `size_ms`)
/// against tests/reference/check_sessions.py.
pub fn sessions_check(
    input: &Path,
    data: &Path,
    size_ms: i64,
    max_steps: u64,
    max_repeats: u32,
) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(root.join("tests/reference/check_sessions.py"))
        .args([input.to_str().unwrap(), data.to_str().unwrap()])
        .args([
            size_ms.to_string(),
            max_steps.to_string(),
            max_repeats.to_string(),
        ])
        .output()
        .expect("python3 runs (./scripts/test.sh installs pyarrow)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sessions check failed:\n{text}");
    assert!(text.contains("checked"), "{text}");
    text
}
