//! The driver on a scripted source.

use super::*;
use std::sync::atomic::{AtomicBool, Ordering};

use inferwatch_schemas::RawBatch;
use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;

use inferwatch_ingest::SourceError;

/// A scripted two-partition source: batches, and pauses that show up as empty polls.
struct Script {
    steps: VecDeque<Option<RawBatch>>,
    left: Arc<AtomicUsize>,
}

impl Source for Script {
    fn name(&self) -> &str {
        "script"
    }

    fn next_batch(&mut self, _max: usize) -> Result<Option<RawBatch>, SourceError> {
        self.left.store(self.steps.len(), Ordering::SeqCst);
        match self.steps.pop_front() {
            Some(Some(b)) => Ok(Some(b)),
            Some(None) => {
                std::thread::sleep(Duration::from_millis(30));
                Ok(Some(RawBatch::new(Arc::from("script"), 0)))
            }
            None => Ok(None),
        }
    }

    fn is_bounded(&self) -> bool {
        false
    }
}

fn batch(
    partition: i32,
    service: &str,
    seconds: std::ops::Range<i64>,
    first_offset: i64,
) -> RawBatch {
    let mut raw = RawBatch::new(Arc::from("script"), partition);
    for (i, s) in seconds.enumerate() {
        let json = format!(
            r#"{{"event_id":"{service}-{s}","timestamp":{},"service":"{service}","model":"m"}}"#,
            1_767_225_600_000 + s * 1000
        );
        raw.push(json.as_bytes(), first_offset + i as i64);
    }
    raw
}

#[test]
fn an_idle_partition_follows_the_active_ones_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.processor.window.idle_timeout = Duration::from_millis(150);
    // A rule that fires on any window of "quiet": its notice says when the window closed.
    config.processor.alerts.rules = vec![toml::from_str(
        "name = 'seen'\nmetric = 'requests'\nop = '>='\nwarning = 1\nmatch = { service = 'quiet' }",
    )
    .unwrap()];
    // Partition 1 stops after its first minute; partition 0 goes on for five.
    let mut steps: VecDeque<Option<RawBatch>> = VecDeque::new();
    steps.push_back(Some(batch(1, "quiet", 0..50, 0)));
    for m in 0..5 {
        steps.push_back(Some(batch(0, "busy", m * 60..m * 60 + 60, m * 60)));
        for _ in 0..3 {
            steps.push_back(None);
        }
    }
    let left = Arc::new(AtomicUsize::new(usize::MAX));
    let source = Script {
        steps,
        left: left.clone(),
    };
    let store = Store::local(dir.path());
    let pipeline = Pipeline::new(&config, &store, "script", RunOptions::default()).unwrap();
    let mut quiet_closed_with_steps_left = None;
    let stop = AtomicBool::new(false);
    pipeline
        .run(
            Box::new(source),
            &stop,
            |_| {},
            |n| {
                if n.service == "quiet" {
                    quiet_closed_with_steps_left.get_or_insert(left.load(Ordering::SeqCst));
                }
            },
        )
        .unwrap();
    // Its window closed while the source was still running, not at the end.
    let left = quiet_closed_with_steps_left.expect("the quiet partition's window was emitted");
    assert!(left > 3, "closed with {left} steps left");
}
