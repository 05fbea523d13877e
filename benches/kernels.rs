//! Criterion benchmarks of the per-batch kernels of the pipeline, on one micro-batch of
//! 8,192 generated events:
//!
//! * `decode/8192`, `decode/malformed_8192`: JSON payloads → `events` Arrow batch
//!   ([`EventDecoder::decode`]);
//! * `aggregate/8192`: a partition's operator chain ([`Chain::process_batch`]: pricing,
//!   windows, alerts) on an already decoded batch;
//! * `decode_aggregate/8192`: both;
//! * `parquet_events/8192`: the `events` table's Parquet encoding (zstd, in memory);
//! * `alerts/<keys>`: the built-in alert rules over one closed window's `metrics` rows
//!   ([`Alerting::evaluate`]), throughput in rows (keys).
//!
//! `cargo bench --bench kernels`; every figure is per batch, throughput in events.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use inferwatch_generator::{Generator, GeneratorConfig, Scenario};
use inferwatch_processor::config::WindowConfig;
use inferwatch_processor::{Alerting, Chain, Collector, Emitted, ProcessorConfig, Watermark};
use inferwatch_schemas::{EventDecoder, RawBatch};
use inferwatch_sink::ParquetOptions;

/// Events per micro-batch.
const N: usize = 8192;

/// `n` payloads of `scenario`, skipping the first `skip` (offsets count from the start of the
/// run), packed into one [`RawBatch`] the way the generator source does it.
fn raw_batch(scenario: Scenario, total_events: u64, skip: usize, n: usize) -> RawBatch {
    let cfg = GeneratorConfig {
        scenario,
        total_events,
        ..GeneratorConfig::default()
    };
    let name = format!("generator:{}-{}", scenario.name(), cfg.seed);
    let mut gen = Generator::new(cfg);
    let mut scratch = Vec::new();
    for _ in 0..skip {
        scratch.clear();
        assert!(gen.next_payload(&mut scratch), "generator ran dry");
    }
    let mut raw = RawBatch::with_capacity(Arc::from(name.as_str()), 0, n, n * 400);
    for _ in 0..n {
        let offset = gen.produced() as i64;
        let buf = raw.buffer_mut();
        let start = buf.len();
        assert!(gen.next_payload(buf), "generator ran dry");
        raw.commit_tail(start, offset);
    }
    raw
}

/// 8,192 steady payloads.
fn steady() -> RawBatch {
    raw_batch(Scenario::Steady, N as u64, 0, N)
}

/// 8,192 malformed-scenario payloads right after the onset (~5% broken).
fn malformed() -> RawBatch {
    raw_batch(Scenario::Malformed, 2 * N as u64, N, N)
}

/// An operator whose windows never close during the benchmark: the same batch is processed
/// over and over, so its timestamps repeat, and with the default 1-minute windows the
/// first pass would close the window before the start and later passes would take the late
/// path. A 1-hour window and out-of-orderness keep every pass on the on-time path.
fn operator() -> Chain {
    let config = ProcessorConfig {
        window: WindowConfig {
            size: Duration::from_secs(3600),
            max_out_of_orderness: Duration::from_secs(3600),
            ..WindowConfig::default()
        },
        ..ProcessorConfig::default()
    };
    Chain::new(&config).expect("valid processor config")
}

fn configure<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(N as u64));
    g
}

fn bench_decode(c: &mut Criterion) {
    let mut g = configure(c, "decode");
    for (id, raw) in [("8192", steady()), ("malformed_8192", malformed())] {
        assert_eq!(raw.len(), N);
        eprintln!(
            "decode/{id}: {} payload bytes ({:.0} bytes/payload)",
            raw.bytes(),
            raw.bytes() as f64 / N as f64
        );
        let mut decoder = EventDecoder::default();
        let d = decoder.decode(&raw);
        assert_eq!(d.events.num_rows() + d.rejects.len(), N);
        if id == "8192" {
            assert!(d.rejects.is_empty(), "steady payloads all decode");
        } else {
            let share = d.rejects.len() as f64 / N as f64;
            assert!((0.02..0.08).contains(&share), "malformed share {share}");
        }
        g.bench_function(id, |b| b.iter(|| decoder.decode(black_box(&raw))));
    }
    g.finish();
}

/// Feeds `batch` through `op` a few times and checks that nothing was late and no window
/// closed: the benchmark then measures the normal on-time path.
fn assert_on_time(op: &mut Chain, batch: &RecordBatch) {
    for _ in 0..3 {
        let mut out = Collector::default();
        op.process_batch(batch.clone(), &mut out)
            .expect("process_batch");
        let closed = out.drain().any(|e| matches!(e, Emitted::Metrics(_)));
        assert!(!closed, "no window closes");
    }
    let stats = op.window().stats();
    assert_eq!(stats.late_events, 0, "{stats:?}");
    assert_eq!(stats.windows_closed, 0, "{stats:?}");
}

fn bench_aggregate(c: &mut Criterion) {
    let raw = steady();
    let events = EventDecoder::default().decode(&raw).events;
    assert_eq!(events.num_rows(), N);
    let mut op = operator();
    assert_on_time(&mut op, &events);

    let mut g = configure(c, "aggregate");
    g.bench_function("8192", |b| {
        let mut out = Collector::default();
        b.iter(|| {
            op.process_batch(black_box(events.clone()), &mut out)
                .expect("process_batch");
            out.drain().count()
        })
    });
    g.finish();
    let stats = op.window().stats();
    assert_eq!(stats.late_events, 0, "{stats:?}");
}

fn bench_decode_aggregate(c: &mut Criterion) {
    let raw = steady();
    let mut decoder = EventDecoder::default();
    let mut op = operator();
    let events = decoder.decode(&raw).events;
    assert_on_time(&mut op, &events);

    let mut g = configure(c, "decode_aggregate");
    g.bench_function("8192", |b| {
        let mut out = Collector::default();
        b.iter(|| {
            let d = decoder.decode(black_box(&raw));
            op.process_batch(d.events, &mut out).expect("process_batch");
            out.drain().count()
        })
    });
    g.finish();
    let stats = op.window().stats();
    assert_eq!(stats.late_events, 0, "{stats:?}");
}

fn bench_parquet(c: &mut Criterion) {
    let raw = steady();
    let decoded = EventDecoder::default().decode(&raw).events;
    // What the sink writes: the operator's output, priced and with `late` set.
    let mut out = Collector::default();
    operator()
        .process_batch(decoded, &mut out)
        .expect("process_batch");
    let events = out
        .drain()
        .find_map(|e| match e {
            Emitted::Events(b) => Some(b),
            _ => None,
        })
        .expect("events");
    let schema = events.schema();
    let props = ParquetOptions::default()
        .writer_properties(&schema)
        .expect("default parquet options");
    let encode = |events: &RecordBatch| -> Vec<u8> {
        let mut w = ArrowWriter::try_new(
            Vec::with_capacity(1 << 20),
            schema.clone(),
            Some(props.clone()),
        )
        .expect("ArrowWriter");
        w.write(events).expect("write");
        w.into_inner().expect("close")
    };
    let bytes = encode(&events).len();
    assert!(bytes > 0);
    eprintln!(
        "parquet_events/8192: {bytes} bytes ({:.1} bytes/event, {} in-memory Arrow bytes)",
        bytes as f64 / N as f64,
        events.get_array_memory_size()
    );

    let mut g = configure(c, "parquet_events");
    g.bench_function("8192", |b| b.iter(|| encode(black_box(&events))));
    g.finish();
}

/// The synthetic traffic generator (`inferwatch generate`, the demo source).
fn bench_generate(c: &mut Criterion) {
    let mut g = configure(c, "generate");
    for (id, sc) in [
        ("steady", Scenario::Steady),
        ("malformed", Scenario::Malformed),
    ] {
        let cfg = GeneratorConfig {
            scenario: sc,
            total_events: u64::MAX,
            ..GeneratorConfig::default()
        };
        let mut gen = Generator::new(cfg);
        let mut out = Vec::with_capacity(N * 400);
        g.bench_function(id, |b| {
            b.iter(|| {
                out.clear();
                for _ in 0..N {
                    gen.next_payload(&mut out);
                    out.push(b'\n');
                }
                black_box(out.len())
            })
        });
    }
    g.finish();
}

/// The built-in rules over one window of ~2,000 keys (the replay benchmark's key count).
fn bench_alerts(c: &mut Criterion) {
    let cfg = GeneratorConfig {
        total_events: 400_000,
        rate: 100_000.0,
        route_spread: 50,
        ..GeneratorConfig::default()
    };
    let mut gen = Generator::new(cfg);
    let mut op = operator();
    let mut decoder = EventDecoder::default();
    loop {
        let mut raw = RawBatch::with_capacity(Arc::from("bench"), 0, N, N * 400);
        while raw.len() < N {
            let offset = gen.produced() as i64;
            let buf = raw.buffer_mut();
            let start = buf.len();
            if !gen.next_payload(buf) {
                break;
            }
            raw.commit_tail(start, offset);
        }
        if raw.is_empty() {
            break;
        }
        let events = decoder.decode(&raw).events;
        let mut out = Collector::default();
        op.process_batch(events, &mut out).expect("process_batch");
    }
    let mut out = Collector::default();
    op.handle_watermark(Watermark::End, &mut out)
        .expect("finish");
    let metrics = out
        .drain()
        .find_map(|e| match e {
            Emitted::Metrics(b) => Some(b),
            _ => None,
        })
        .expect("rows");
    let rows = metrics.num_rows() as u64;
    let config = ProcessorConfig::default();
    let mut alerting = Alerting::new(&config.alerts, &op.window().metrics_schema(), 3_600_000)
        .expect("built-in rules");
    let mut g = c.benchmark_group("alerts");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(rows));
    g.bench_function(rows.to_string(), |b| {
        b.iter(|| {
            alerting
                .evaluate(Some(black_box(&metrics)), None)
                .expect("evaluate");
            alerting.take().expect("take")
        })
    });
    g.finish();
}

criterion_group!(
    kernels,
    bench_alerts,
    bench_generate,
    bench_decode,
    bench_aggregate,
    bench_decode_aggregate,
    bench_parquet
);
criterion_main!(kernels);
