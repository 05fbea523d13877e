//! The messages the processing side sends the sink, in the order it must handle them, and
//! the two ways they travel: to the sink thread, or handled in place.

use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use inferwatch_schemas::Notice;
use inferwatch_sink::Checkpoint;

use super::SinkThread;
use crate::error::Result;
use crate::failed;

pub(crate) enum ToSink {
    /// Processing of `partition` (re)starts at offset `from`: its files from `from` on go.
    Start {
        partition: i32,
        from: i64,
    },
    Events {
        partition: i32,
        events: RecordBatch,
        dead: Option<RecordBatch>,
        first: i64,
        last: i64,
    },
    Metrics {
        partition: i32,
        batch: RecordBatch,
    },
    CalibrationBins {
        partition: i32,
        batch: RecordBatch,
    },
    /// `alerts` rows of closed windows, and the notices among them to deliver.
    Alerts {
        partition: i32,
        rows: RecordBatch,
        notices: Vec<Notice>,
    },
    /// Metric and reliability-bin rows re-emitted after late labels.
    Revisions {
        partition: i32,
        seq: u64,
        metrics: RecordBatch,
        bins: Option<RecordBatch>,
    },
    /// A checkpoint restored `partition` at revision `seq`, session cut `sessions_at` and
    /// windows emitted through `emitted_through`: later revision, session and alert files go.
    RevisionsFrom {
        partition: i32,
        seq: u64,
        sessions_at: Option<i64>,
        emitted_through: Option<i64>,
    },
    /// `budgets` rows of closed windows.
    Budgets {
        partition: i32,
        batch: RecordBatch,
    },
    /// `sessions` rows of sessions that ended, cut at window close `at`.
    Sessions {
        partition: i32,
        at: i64,
        batch: RecordBatch,
    },
    /// Reading feedback partition `partition` of `source` (re)starts at `from`: its
    /// `dead_letter` and `feedback_unmatched` files from there on go.
    FeedbackStart {
        source: Arc<str>,
        partition: i32,
        from: i64,
    },
    /// Rows about feedback events of `source`'s `partition`: bad payloads and feedback that
    /// joined nothing.
    Feedback {
        source: Arc<str>,
        partition: i32,
        dead: Option<RecordBatch>,
        unmatched: Option<RecordBatch>,
        first: i64,
        last: i64,
    },
    /// Complete every open file (time-based roll for sources without checkpoints).
    Flush,
    /// Answer once everything sent before has been handled.
    Barrier(SyncSender<()>),
    /// Complete the partition's files, then write its checkpoint. `release`: the partition
    /// leaves this processor. `done` gets the result when someone waits for it.
    Checkpoint {
        partition: i32,
        ckpt: Checkpoint,
        release: bool,
        done: Option<SyncSender<Result<()>>>,
    },
    /// The partition was lost to another processor: drop its open files, write nothing.
    Abort {
        partition: i32,
    },
}

/// How the processing side hands messages to the sink: over a bounded channel to the sink
/// thread, or (one thread for everything) by handling them in place.
#[derive(Clone)]
pub(crate) enum SinkSender {
    Thread(SyncSender<ToSink>),
    Inline(Arc<Mutex<SinkThread>>),
}

impl SinkSender {
    pub(crate) fn send(&self, msg: ToSink) -> Result<()> {
        match self {
            SinkSender::Thread(tx) => tx
                .send(msg)
                .map_err(|_| failed!("the Parquet writer stopped")),
            SinkSender::Inline(sink) => sink
                .lock()
                .map_err(|_| failed!("the Parquet writer panicked"))?
                .receive(msg),
        }
    }
}

/// The sink of a running pipeline: its thread, or the state it handles messages with in
/// place.
pub(crate) enum SinkRun {
    Thread(JoinHandle<Result<(u64, Duration)>>),
    Inline(Arc<Mutex<SinkThread>>),
}

impl SinkRun {
    /// Completes every open file; (files written, time spent checkpointing). Every sender
    /// must be gone by now.
    pub(crate) fn finish(self) -> Result<(u64, Duration)> {
        match self {
            SinkRun::Thread(h) => h
                .join()
                .map_err(|_| failed!("the Parquet writer panicked"))?,
            SinkRun::Inline(sink) => Arc::try_unwrap(sink)
                .map_err(|_| failed!("the Parquet writer is still in use"))?
                .into_inner()
                .map_err(|_| failed!("the Parquet writer panicked"))?
                .finish(),
        }
    }
}

impl ToSink {
    /// The events partition the message is about, if it is about one.
    pub(crate) fn partition(&self) -> Option<i32> {
        match self {
            ToSink::Start { partition, .. }
            | ToSink::Events { partition, .. }
            | ToSink::Metrics { partition, .. }
            | ToSink::CalibrationBins { partition, .. }
            | ToSink::Alerts { partition, .. }
            | ToSink::Revisions { partition, .. }
            | ToSink::RevisionsFrom { partition, .. }
            | ToSink::Budgets { partition, .. }
            | ToSink::Sessions { partition, .. }
            | ToSink::Checkpoint { partition, .. }
            | ToSink::Abort { partition } => Some(*partition),
            ToSink::FeedbackStart { .. }
            | ToSink::Feedback { .. }
            | ToSink::Flush
            | ToSink::Barrier(_) => None,
        }
    }
}
