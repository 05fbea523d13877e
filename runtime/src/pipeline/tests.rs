//! The driver on a scripted source.

use super::*;
use inferwatch_ingest::PartitionOwner;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use inferwatch_schemas::RawBatch;
use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;

use inferwatch_ingest::{Behind, SourceError};

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

/// What a processor under test is told to do next.
enum Step {
    Batch(RawBatch),
    End,
}

/// What a [`Fed`] source does when it leaves, as a consumer's rebalance callbacks would.
type AtClose = Arc<Mutex<Option<Box<dyn FnOnce() + Send>>>>;

/// A source fed by the test, one step at a time; quiet (empty polls) in between. Seeks
/// are recorded for the test to act on.
struct Fed(
    std::sync::mpsc::Receiver<Step>,
    Arc<Mutex<Vec<(i32, i64)>>>,
    AtClose,
);

impl Source for Fed {
    fn name(&self) -> &str {
        "script"
    }

    fn next_batch(&mut self, _max: usize) -> Result<Option<RawBatch>, SourceError> {
        match self.0.recv_timeout(Duration::from_millis(10)) {
            Ok(Step::Batch(b)) => Ok(Some(b)),
            Ok(Step::End) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Ok(None),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                Ok(Some(RawBatch::new(Arc::from("script"), 0)))
            }
        }
    }

    fn is_bounded(&self) -> bool {
        false
    }

    fn still_assigned(&self, _partition: i32) -> bool {
        true
    }

    fn seek(&mut self, partition: i32, offset: i64) -> bool {
        self.1.lock().unwrap().push((partition, offset));
        true
    }

    fn close(&mut self) {
        if let Some(f) = self.2.lock().unwrap().take() {
            f();
        }
    }
}

/// A processor with checkpoints on, running on its own thread.
struct Processor {
    feed: std::sync::mpsc::Sender<Step>,
    owner: Arc<dyn PartitionOwner>,
    run: std::thread::JoinHandle<Result<RunReport>>,
    seeks: Arc<Mutex<Vec<(i32, i64)>>>,
    at_close: AtClose,
    shared: Arc<Mutex<Shared>>,
}

impl Processor {
    fn start(config: &Config) -> Processor {
        let store = Store::local(&config.data_dir);
        let options = RunOptions {
            checkpoints: true,
            ..RunOptions::default()
        };
        let pipeline = Pipeline::new(config, &store, "script", options).unwrap();
        let owner = pipeline.owner();
        let shared = pipeline.shared.clone();
        let (feed, rx) = std::sync::mpsc::channel();
        let seeks = Arc::new(Mutex::new(Vec::new()));
        let at_close: AtClose = Arc::new(Mutex::new(None));
        let fed = Fed(rx, seeks.clone(), at_close.clone());
        let run = std::thread::spawn(move || {
            let stop = AtomicBool::new(false);
            pipeline.run(Box::new(fed), &stop, |_| {}, |_| {})
        });
        Processor {
            feed,
            owner,
            run,
            seeks,
            at_close,
            shared,
        }
    }

    /// Returns once the sink thread handled everything sent to it so far (a claim's
    /// `Start`, which removes files from the claimed offset on, among them).
    fn sink_synced(&self) {
        let done = self.shared.lock().unwrap().sink_barrier().unwrap();
        done.recv().unwrap();
    }

    fn send(&self, b: RawBatch) {
        self.feed.send(Step::Batch(b)).unwrap();
    }

    fn end(self) {
        self.feed.send(Step::End).unwrap();
        self.run.join().unwrap().unwrap();
    }
}

/// Polls until partition 0's latest checkpoint covers offsets before `next`.
fn await_checkpoint(config: &Config, next: i64) {
    let store = CheckpointStore::new(&Store::local(&config.data_dir), "script");
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.load(0).unwrap().map(|c| c.next_offset) != Some(next) {
        assert!(Instant::now() < deadline, "no checkpoint at offset {next}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every `event_id` in the `events` files, sorted.
fn event_ids(dir: &std::path::Path) -> Vec<String> {
    strings(dir, "events", "event_id")
}

/// Column `col` (strings) of every row of `table`'s files, sorted.
fn strings(dir: &std::path::Path, table: &str, col: &str) -> Vec<String> {
    use datafusion::arrow::array::{Array, StringArray};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    fn walk(dir: &std::path::Path, col: &str, ids: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, col, ids);
            } else if path.extension().is_some_and(|x| x == "parquet") {
                let file = std::fs::File::open(&path).unwrap();
                let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap();
                for batch in reader {
                    let batch = batch.unwrap();
                    let col = batch.column_by_name(col).unwrap();
                    let col = col.as_any().downcast_ref::<StringArray>().unwrap();
                    ids.extend((0..col.len()).map(|i| col.value(i).to_string()));
                }
            }
        }
    }
    let mut ids = Vec::new();
    if dir.join(table).exists() {
        walk(&dir.join(table), col, &mut ids);
    }
    ids.sort();
    ids
}

/// Small files (they complete between commits) and a checkpoint after every batch.
fn two_owner_config(dir: &std::path::Path, interval: Duration) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.sink.max_file_rows = 10;
    config.checkpoint.interval = interval;
    config.runtime.threads = 2;
    config
}

/// The `events` table holds events `svc-0..n` each exactly once.
fn assert_each_once(dir: &std::path::Path, n: i64) {
    let ids = event_ids(dir);
    let mut twice: Vec<&String> = ids
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| &w[0])
        .collect();
    twice.dedup();
    assert!(twice.is_empty(), "written twice: {twice:?}");
    let mut want: Vec<String> = (0..n).map(|s| format!("svc-{s}")).collect();
    want.sort();
    assert_eq!(ids, want);
}

/// Processor a reads offsets 0..50 of partition 0 and commits at least once (the generation
/// it holds moves past the one it claimed); then b claims the partition from there.
fn b_takes_over_from_a_at_50(config: &Config) -> (Processor, Processor) {
    let a = Processor::start(config);
    a.owner.assigned("t", &[0]);
    a.send(batch(0, "svc", 0..50, 0));
    await_checkpoint(config, 50);
    let b = Processor::start(config);
    assert_eq!(b.owner.assigned("t", &[0]), vec![(0, Some(50))]);
    (a, b)
}

#[test]
fn a_fenced_processor_removes_the_files_it_completed_after_its_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let config = two_owner_config(dir.path(), Duration::ZERO);
    let (a, b) = b_takes_over_from_a_at_50(&config);
    // b took partition 0 over while a still believes it owns it...
    // ...and a completes files of offsets 50.. before its next commit fails.
    a.send(batch(0, "svc", 50..100, 50));
    a.end();
    b.send(batch(0, "svc", 50..100, 50));
    b.end();
    assert_each_once(dir.path(), 100);
}

#[test]
fn a_processor_that_lost_its_partition_removes_the_files_it_completed_after_its_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    // No timed checkpoints: a commits only when the partition is revoked.
    let config = two_owner_config(dir.path(), Duration::from_secs(3600));
    let a = Processor::start(&config);
    a.owner.assigned("t", &[0]);
    a.send(batch(0, "svc", 0..50, 0));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(a.owner.revoked("t", &[0], false), vec![(0, 50)]);
    a.owner.assigned("t", &[0]);
    let b = Processor::start(&config);
    assert_eq!(b.owner.assigned("t", &[0]), vec![(0, Some(50))]);
    // b's claim removes files from offset 50 on: done before a writes any, else it removes
    // a's open file and a learns of the takeover before it completes one (the other test).
    b.sink_synced();
    a.send(batch(0, "svc", 50..100, 50));
    // Wait until a completed files of offsets 50.. (10 rows each), then its session ends.
    let deadline = Instant::now() + Duration::from_secs(20);
    while event_ids(dir.path()).len() < 100 {
        assert!(Instant::now() < deadline, "a wrote no files past offset 50");
        std::thread::sleep(Duration::from_millis(10));
    }
    a.owner.revoked("t", &[0], true);
    a.end();
    b.send(batch(0, "svc", 50..100, 50));
    b.end();
    assert_each_once(dir.path(), 100);
}

/// What a lagging source says when asked how far behind it is.
#[derive(Clone, Copy)]
enum Answer {
    /// Five unread messages.
    Unread,
    /// Nothing: the brokers do not answer.
    Silent,
}

/// Quiet, yet holding partitions with unread messages until `behind_until`; `answer` is
/// what `behind` says meanwhile.
struct Lagging {
    behind_until: Instant,
    served: bool,
    answer: Answer,
}

impl Source for Lagging {
    fn name(&self) -> &str {
        "script"
    }

    fn next_batch(&mut self, _max: usize) -> Result<Option<RawBatch>, SourceError> {
        std::thread::sleep(Duration::from_millis(5));
        // The unread messages arrive once the broker stops lagging.
        if Instant::now() >= self.behind_until && !self.served {
            self.served = true;
            return Ok(Some(batch(0, "late", 0..5, 0)));
        }
        Ok(Some(RawBatch::new(Arc::from("script"), 0)))
    }

    fn is_bounded(&self) -> bool {
        false
    }

    fn behind(&mut self) -> Behind {
        if self.served {
            return Behind::Partitions(Vec::new());
        }
        match self.answer {
            Answer::Unread => Behind::Partitions(vec![(0, 5)]),
            Answer::Silent => Behind::Unanswered("no answer".into()),
        }
    }
}

fn run_idle(behind_for: Duration, answer: Answer) -> (Result<RunReport>, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let options = RunOptions {
        stop_when_idle: Some(Duration::from_millis(200)),
        ..RunOptions::default()
    };
    let store = Store::local(dir.path());
    let pipeline = Pipeline::new(&config, &store, "script", options).unwrap();
    let source = Lagging {
        behind_until: Instant::now() + behind_for,
        served: false,
        answer,
    };
    let started = Instant::now();
    let stop = AtomicBool::new(false);
    let r = pipeline.run(Box::new(source), &stop, |_| {}, |_| {});
    (r, started.elapsed())
}

#[test]
fn a_quiet_source_that_is_behind_is_waited_for() {
    for answer in [Answer::Unread, Answer::Silent] {
        let (r, took) = run_idle(Duration::from_millis(700), answer);
        let report = r.unwrap();
        assert_eq!(
            report.progress.events, 5,
            "the messages that came late were read"
        );
        assert!(took >= Duration::from_millis(700), "{took:?}");
    }
}

#[test]
fn a_source_that_stays_behind_fails_the_run_instead_of_stopping_quietly() {
    for (answer, says) in [
        (Answer::Unread, "hold 5 unread messages"),
        (Answer::Silent, "no answer"),
    ] {
        let (r, took) = run_idle(Duration::from_secs(60), answer);
        let err = r.unwrap_err().to_string();
        assert!(err.contains(says), "{err}");
        // Six times `stop_when_idle` past the first quiet spell, not the whole minute.
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
}

#[test]
fn a_partition_taken_back_before_any_commit_starts_over_from_the_beginning() {
    let dir = tempfile::tempdir().unwrap();
    let config = two_owner_config(dir.path(), Duration::ZERO);
    let a = Processor::start(&config);
    a.owner.assigned("t", &[0]);
    // b claims the partition before a committed anything...
    let b = Processor::start(&config);
    assert_eq!(b.owner.assigned("t", &[0]), vec![(0, None)]);
    // ...so a's first commit fails: it is fenced and removes what it wrote (0..50).
    a.send(batch(0, "svc", 0..50, 0));
    // The consumer still hands a the partition, mid-stream: a claims it back, and with no
    // checkpoint anywhere it must go back to offset 0, not start at 50. (Offsets 50.. go
    // again until a learned of the fence: before, they were just the next batch.)
    let deadline = Instant::now() + Duration::from_secs(20);
    while !a.seeks.lock().unwrap().contains(&(0, 0)) {
        assert!(Instant::now() < deadline, "a did not go back to offset 0");
        a.send(batch(0, "svc", 50..100, 50));
        std::thread::sleep(Duration::from_millis(50));
    }
    a.send(batch(0, "svc", 0..100, 0));
    a.end();
    b.end();
    assert_each_once(dir.path(), 100);
}

/// A processor that reads offsets 0..30 of partition 1 ("orphan") and gives the partition
/// up in a rebalance: its window stays open in the checkpoint for the next owner.
fn read_and_give_up(config: &Config) -> Processor {
    let b = Processor::start(config);
    b.owner.assigned("t", &[1]);
    b.send(batch(1, "orphan", 0..30, 0));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(b.owner.revoked("t", &[1], false), vec![(1, 30)]);
    b
}

/// When `a` leaves the group, the coordinator hands it partition 1 (which ends at `end`),
/// and takes it back.
fn handed_partition_1_on_leaving(a: &Processor, end: i64) {
    let owner = a.owner.clone();
    *a.at_close.lock().unwrap() = Some(Box::new(move || {
        owner.assigned("t", &[1]);
        owner.assigned_while_leaving("t", &[(1, end)]);
        owner.revoked("t", &[1], false);
    }));
}

#[test]
fn a_partition_handed_over_while_leaving_at_the_end_closes_its_windows() {
    let dir = tempfile::tempdir().unwrap();
    let config = two_owner_config(dir.path(), Duration::from_secs(3600));
    let b = read_and_give_up(&config);
    // No member gets it until a reaches the end of its input and leaves.
    let a = Processor::start(&config);
    a.owner.assigned("t", &[0]);
    a.send(batch(0, "busy", 0..30, 0));
    handed_partition_1_on_leaving(&a, 30);
    a.end();
    b.end();
    let services = strings(dir.path(), "metrics", "service");
    assert!(services.contains(&"busy".to_string()), "{services:?}");
    assert!(
        services.contains(&"orphan".to_string()),
        "the orphan's window stayed open: {services:?}"
    );
}

#[test]
fn a_partition_handed_over_while_leaving_with_unread_messages_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let config = two_owner_config(dir.path(), Duration::from_secs(3600));
    read_and_give_up(&config).end();
    // Offsets 30..40 were never read: the windows wait for them in the checkpoint.
    let a = Processor::start(&config);
    handed_partition_1_on_leaving(&a, 40);
    a.end();
    let services = strings(dir.path(), "metrics", "service");
    assert!(services.is_empty(), "{services:?}");
    let store = CheckpointStore::new(&Store::local(&config.data_dir), "script");
    assert_eq!(store.load(1).unwrap().map(|c| c.next_offset), Some(30));
}

#[test]
fn a_fenced_partition_still_assigned_but_read_to_its_end_is_taken_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = two_owner_config(dir.path(), Duration::ZERO);
    let (a, b) = b_takes_over_from_a_at_50(&config);
    // b reads on and gives the partition up...
    b.send(batch(0, "svc", 50..80, 50));
    await_checkpoint(&config, 80);
    assert_eq!(b.owner.revoked("t", &[0], false), vec![(0, 80)]);
    b.end();
    // ...yet the consumer keeps it with a: a's next commit fails (it is fenced), and a
    // has read to the end and gets nothing more.
    a.send(batch(0, "svc", 50..60, 50));
    // a claims it back from b's checkpoint and asks the consumer to go back there.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !a.seeks.lock().unwrap().contains(&(0, 80)) {
        assert!(Instant::now() < deadline, "a did not take partition 0 back");
        std::thread::sleep(Duration::from_millis(50));
    }
    a.send(batch(0, "svc", 80..100, 80));
    a.end();
    assert_each_once(dir.path(), 100);
}

/// A bounded source that takes 20 ms to hand out each of its ten batches.
struct Slow {
    served: i64,
}

impl Source for Slow {
    fn name(&self) -> &str {
        "script"
    }

    fn next_batch(&mut self, _max: usize) -> Result<Option<RawBatch>, SourceError> {
        if self.served == 10 {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
        let s = self.served * 100;
        self.served += 1;
        Ok(Some(batch((s / 100 % 2) as i32, "slow", s..s + 100, s)))
    }

    fn is_bounded(&self) -> bool {
        true
    }
}

#[test]
fn a_run_reports_the_time_its_source_took_apart_from_processing() {
    for threads in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.runtime.threads = threads;
        let store = Store::local(dir.path());
        let pipeline = Pipeline::new(&config, &store, "script", RunOptions::default()).unwrap();
        let stop = AtomicBool::new(false);
        let r = pipeline
            .run(Box::new(Slow { served: 0 }), &stop, |_| {}, |_| {})
            .unwrap();
        assert_eq!(r.progress.events, 1000);
        let t = r.time;
        assert_eq!(t.workers, if threads == 1 { 0 } else { 2 });
        // Ten polls of 20 ms each, within the run; 1,000 events processed in less.
        assert!(t.source >= Duration::from_millis(200), "{t:?}");
        assert!(t.source <= r.progress.elapsed, "{t:?}");
        assert!(
            t.processing > Duration::ZERO && t.processing < t.source,
            "{t:?}"
        );
    }
}
