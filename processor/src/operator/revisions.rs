//! Late labels: joining feedback to predictions and re-emitting the windows it changed.

use super::*;

/// An emitted window × key that late labels can still change. Checkpoints carry its last
/// row separately, as Arrow IPC.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Revisable {
    pub(super) end: i64,
    pub(super) requests: u64,
    pub(super) calibration: Calibration,
    pub(super) late_labels: u64,
    pub(super) revision: u32,
    pub(super) dirty: bool,
    /// The row as last emitted.
    #[serde(skip)]
    pub(super) row: Option<RecordBatch>,
}

/// Re-emitted rows of windows whose calibration changed with late labels.
#[derive(Debug)]
pub struct Revisions {
    /// Sequence number of this batch of revisions, per source partition.
    pub seq: u64,
    pub metrics: RecordBatch,
    pub calibration_bins: Option<RecordBatch>,
}

impl WindowOperator {
    /// Counters of the feedback join.
    pub fn label_stats(&self) -> LabelStats {
        self.labels.as_ref().map(|l| l.stats()).unwrap_or_default()
    }

    /// Revision batches emitted so far (restored with a checkpoint).
    pub fn revision_seq(&self) -> u64 {
        self.revision_seq
    }

    /// Joins one feedback event to its prediction, if this partition holds it. The label
    /// goes into the prediction's open pane and into every emitted window holding it, which
    /// [`WindowOperator::take_revisions`] then re-emits.
    pub fn join_feedback(&mut self, f: &Feedback) -> Result<(), Unmatched> {
        let Some(labels) = self.labels.as_mut() else {
            return Err(Unmatched::Unknown);
        };
        let names = self.categories.names();
        let j = labels.join(f, |c| names.get(c as usize).map(String::as_str))?;
        let pane = self.spec.pane(j.time);
        let width = self.bin_spec;
        if self.emitted_through.is_none_or(|e| pane > e) {
            if let Some(s) = self.groups.get_mut(pane, j.key) {
                s.calibration.get_or_insert_with(Default::default).observe(
                    j.confidence,
                    j.correct,
                    width.width_bins(),
                );
            }
        }
        let Some(emitted) = self.emitted_through else {
            return Ok(());
        };
        let mut w = self.spec.first_window_of(pane);
        while w <= pane.min(emitted) {
            if let Some(r) = self.revisable.get_mut(&(w, j.key)) {
                r.calibration
                    .observe(j.confidence, j.correct, width.width_bins());
                r.late_labels += 1;
                r.dirty = true;
            }
            w += self.spec.slide;
        }
        Ok(())
    }

    /// New revisions of every emitted window whose calibration late labels changed since
    /// the last revisions: the whole row again with `revision` one higher (latest wins).
    /// Without `force`, only once a window closed since the last revisions.
    pub fn take_revisions(&mut self, force: bool) -> Result<Option<Revisions>> {
        if !force && self.revised_at == self.emitted_through {
            return Ok(None);
        }
        let dirty: Vec<(i64, u32)> = self
            .revisable
            .iter()
            .filter(|(_, r)| r.dirty && r.row.is_some())
            .map(|(k, _)| *k)
            .collect();
        if dirty.is_empty() {
            return Ok(None);
        }
        let mut rows = Vec::with_capacity(dirty.len());
        let mut bins = BinRows::new();
        for (start, k) in dirty {
            let r = self.revisable.get_mut(&(start, k)).expect("listed above");
            r.dirty = false;
            r.revision += 1;
            let mut core = CoreColumns::default();
            let state = CoreState::for_revision(r.requests, r.calibration.clone(), r.late_labels);
            core.append(&RowInputs {
                state: &state,
                spec: self.bin_spec,
                drift: &DriftValues::default(),
                anomaly: CostAnomaly::default(),
                budget: None,
                revision: r.revision,
                sessions: 0,
            });
            let fresh = core.finish();
            let old = r.row.as_ref().expect("filtered above");
            let mut columns = old.columns().to_vec();
            // Columns a revision recomputes; every other column keeps its first value.
            let keys = metrics_key_fields().len();
            for (i, c) in crate::columns::COLUMNS.iter().enumerate() {
                if c.revised {
                    columns[keys + i] = fresh[i].clone();
                }
            }
            let row = RecordBatch::try_new(old.schema(), columns)?;
            r.row = Some(row.clone());
            rows.push(row);
            bins.append(
                start,
                r.end,
                &self.keys.values[k as usize],
                &r.calibration,
                self.bin_spec,
                r.revision,
            );
        }
        self.revision_seq += 1;
        self.revised_at = self.emitted_through;
        Ok(Some(Revisions {
            seq: self.revision_seq,
            metrics: arrow::compute::concat_batches(&self.schema, &rows)?,
            calibration_bins: bins.finish()?,
        }))
    }

    /// Forgets what no feedback can reach any more at watermark `wm`.
    pub(super) fn expire_labels(&mut self, wm: i64) {
        if let Some(l) = self.labels.as_mut() {
            l.expire(wm);
        }
        let horizon = self.label_horizon;
        self.revisable
            .retain(|_, r| r.dirty || r.end + horizon >= wm);
    }
}
