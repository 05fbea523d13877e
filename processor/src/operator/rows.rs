//! Arrow builders of the rows closed windows hand out: `metrics`, `calibration_bins`, `sessions`.

use super::*;
use crate::sessions::{Ended, Session};
use arrow::array::{BooleanArray, Int64Array, TimestampMillisecondArray, UInt32Array};

/// Ended sessions held at most before they are handed out as a file of `sessions` rows.
pub const SESSION_ROWS_PER_FILE: usize = 32_768;

/// Rows of the `sessions` table, handed out when windows close.
#[derive(Debug)]
pub struct SessionRows {
    /// Names the file: the window close they were handed out at, or the event time reached
    /// when [`SESSION_ROWS_PER_FILE`] ended before a window closed (names increase).
    pub at: i64,
    pub batch: RecordBatch,
}

/// The leading columns of `metrics` and `calibration_bins`: window bounds and the key.
pub(super) struct WindowKeyColumns {
    pub(super) start: TimestampMillisecondBuilder,
    pub(super) end: TimestampMillisecondBuilder,
    pub(super) service: StringBuilder,
    pub(super) model: StringBuilder,
    pub(super) version: StringBuilder,
    pub(super) route: StringBuilder,
}

impl WindowKeyColumns {
    pub(super) fn new() -> Self {
        Self {
            start: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            end: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            service: StringBuilder::new(),
            model: StringBuilder::new(),
            version: StringBuilder::new(),
            route: StringBuilder::new(),
        }
    }

    pub(super) fn append(&mut self, start: i64, end: i64, key: &Key) {
        self.start.append_value(start);
        self.end.append_value(end);
        self.service.append_value(&key.service);
        self.model.append_value(&key.model);
        self.version.append_option(key.model_version.as_deref());
        self.route.append_option(key.route.as_deref());
    }

    pub(super) fn len(&self) -> usize {
        self.service.len()
    }

    pub(super) fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.start.finish()),
            Arc::new(self.end.finish()),
            Arc::new(self.service.finish()),
            Arc::new(self.model.finish()),
            Arc::new(self.version.finish()),
            Arc::new(self.route.finish()),
        ]
    }
}

/// Builders of `calibration_bins` rows.
pub(super) struct BinRows {
    pub(super) keys: WindowKeyColumns,
    pub(super) bin: arrow::array::Int32Builder,
    pub(super) lower: arrow::array::Float64Builder,
    pub(super) upper: arrow::array::Float64Builder,
    pub(super) count: arrow::array::Int64Builder,
    pub(super) conf: arrow::array::Float64Builder,
    pub(super) acc: arrow::array::Float64Builder,
    pub(super) revision: arrow::array::Int64Builder,
}

impl BinRows {
    pub(super) fn new() -> Self {
        Self {
            keys: WindowKeyColumns::new(),
            bin: Default::default(),
            lower: Default::default(),
            upper: Default::default(),
            count: Default::default(),
            conf: Default::default(),
            acc: Default::default(),
            revision: Default::default(),
        }
    }

    pub(super) fn append(
        &mut self,
        start: i64,
        end: i64,
        key: &Key,
        cal: &crate::metrics::Calibration,
        spec: BinSpec,
        revision: u32,
    ) {
        for r in cal.reliability(spec) {
            self.keys.append(start, end, key);
            self.bin.append_value(r.bin as i32);
            self.lower.append_value(r.lower);
            self.upper.append_value(r.upper);
            self.count.append_value(r.count as i64);
            self.conf.append_value(r.mean_confidence);
            self.acc.append_value(r.accuracy);
            self.revision.append_value(revision as i64);
        }
    }

    pub(super) fn finish(&mut self) -> Result<Option<RecordBatch>> {
        if self.keys.len() == 0 {
            return Ok(None);
        }
        let mut columns = self.keys.finish();
        columns.extend::<[ArrayRef; 7]>([
            Arc::new(self.bin.finish()),
            Arc::new(self.lower.finish()),
            Arc::new(self.upper.finish()),
            Arc::new(self.count.finish()),
            Arc::new(self.conf.finish()),
            Arc::new(self.acc.finish()),
            Arc::new(self.revision.finish()),
        ]);
        Ok(Some(RecordBatch::try_new(
            inferwatch_schemas::tables::calibration_bins_schema(),
            columns,
        )?))
    }
}

/// Rows for closed windows, built up during one call.
pub(super) struct MetricRows {
    pub(super) keys: WindowKeyColumns,
    pub(super) core: CoreColumns,
    /// Custom metric columns of each closed window's rows, one array per metric.
    pub(super) custom: Vec<Vec<ArrayRef>>,
    /// (row, window start, key) of rows that late labels may revise.
    pub(super) revisable: Vec<(usize, i64, u32)>,
}

impl MetricRows {
    pub(super) fn new() -> Self {
        Self {
            keys: WindowKeyColumns::new(),
            core: CoreColumns::default(),
            custom: Vec::new(),
            revisable: Vec::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }
}

impl WindowOperator {
    /// Start of the last window emitted (restored with a checkpoint).
    pub fn emitted_through(&self) -> Option<i64> {
        self.emitted_through
    }

    /// When `sessions` rows were last handed out (restored with a checkpoint).
    pub fn sessions_at(&self) -> Option<i64> {
        self.sessions_at
    }

    /// Counters of session tracking.
    pub fn session_stats(&self) -> SessionStats {
        self.sessions.stats()
    }

    /// `sessions` rows of the sessions that ended, handed out once a window closed since
    /// the last call (or now, with `force`), so files are cut at points fixed by event time;
    /// also whenever [`SESSION_ROWS_PER_FILE`] have ended, so that a long window with many
    /// sessions does not hold them all in memory.
    pub fn take_sessions(&mut self, force: bool) -> Result<Option<SessionRows>> {
        let closed = self.sessions_cut_through != self.emitted_through;
        let full = self.ended.len() >= SESSION_ROWS_PER_FILE;
        if self.ended.is_empty() || !(force || closed || full) {
            return Ok(None);
        }
        self.sessions_cut_through = self.emitted_through;
        let named = if closed || force {
            self.emitted_through
        } else {
            self.max_event_time
        };
        // A restore removes the files named after its checkpoint's `sessions_at`: names
        // must increase.
        let at = match self.sessions_at {
            Some(prev) => named.unwrap_or(prev).max(prev + 1),
            None => named.unwrap_or(0),
        };
        self.sessions_at = Some(at);
        // Taken, not cleared: sixteen partitions each keeping room for a file of rows held
        // 12 MiB more at the peak.
        let ended = std::mem::take(&mut self.ended);
        let batch = session_rows(&ended, &self.keys.values)?;
        Ok(Some(SessionRows { at, batch }))
    }

    /// Reliability-bin rows (`calibration_bins`) of the windows closed since the last call.
    pub fn take_calibration_bins(&mut self) -> Result<Option<RecordBatch>> {
        self.bins.finish()
    }
}

/// `sessions` rows of `ended`, by (first seen, id). Built column by column in that order;
/// the key columns are taken from one row per key.
fn session_rows(ended: &Ended, keys: &[Key]) -> Result<RecordBatch> {
    let order = ended.order();
    let rows = || order.iter().map(|&i| ended.get(i as usize));
    let timestamps = |at: fn(&Session) -> i64| {
        let values: Vec<i64> = rows().map(|(_, s)| at(s)).collect();
        Arc::new(TimestampMillisecondArray::from(values).with_timezone("UTC")) as ArrayRef
    };
    // Each key used, once, and each row's index among them.
    let mut local = vec![u32::MAX; keys.len()];
    let mut used = WindowKeyColumns::new();
    let mut key_rows = Vec::with_capacity(order.len());
    for (_, s) in rows() {
        let slot = &mut local[s.key as usize];
        if *slot == u32::MAX {
            *slot = used.len() as u32;
            used.append(0, 0, &keys[s.key as usize]);
        }
        key_rows.push(*slot);
    }
    let key_rows = UInt32Array::from(key_rows);
    let [_, _, service, model, version, route] =
        <[ArrayRef; 6]>::try_from(used.finish()).expect("six key columns");
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows().map(|(id, _)| id))),
        timestamps(|s| s.first_seen),
        timestamps(|s| s.last_seen),
    ];
    for keyed in [service, model, version, route] {
        columns.push(arrow::compute::take(&keyed, &key_rows, None)?);
    }
    let float = |f: fn(&Session) -> f64| {
        Arc::new(Float64Array::from_iter_values(rows().map(|(_, s)| f(s)))) as ArrayRef
    };
    let int = |f: fn(&Session) -> u64| {
        Arc::new(Int64Array::from_iter_values(
            rows().map(|(_, s)| f(s) as i64),
        )) as ArrayRef
    };
    columns.extend([
        int(|s| s.steps),
        int(|s| s.repeats),
        float(|s| s.cost_nanos as f64 / 1e9),
        float(|s| s.wasted_nanos as f64 / 1e9),
        Arc::new(BooleanArray::from(
            rows().map(|(_, s)| s.runaway.is_some()).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from_iter(
            rows().map(|(_, s)| s.runaway.as_deref()),
        )),
    ]);
    Ok(RecordBatch::try_new(
        inferwatch_schemas::tables::sessions_schema(),
        columns,
    )?)
}
