//! The operator's checkpoint: everything it holds, serialised, and restored exactly.

use super::*;
use crate::sessions::Session;

pub(super) const SNAPSHOT_VERSION: u32 = 2;

/// The serialised form of a [`WindowOperator`]'s state for one source partition.
#[derive(Serialize, Deserialize)]
pub(super) struct Snapshot {
    pub(super) version: u32,
    /// size, slide, lateness, out-of-orderness (ms): a checkpoint only fits the same windows.
    pub(super) window: [i64; 4],
    pub(super) custom_columns: Vec<String>,
    pub(super) keys: Vec<Key>,
    pub(super) panes: Vec<(i64, Vec<(u32, CoreState)>)>,
    /// (pane, key) of each custom-metric state, in the row order of `custom`.
    pub(super) custom_index: Vec<(i64, u32)>,
    /// One hex-encoded Arrow IPC stream per custom accumulator.
    pub(super) custom: Vec<String>,
    pub(super) emitted_through: Option<i64>,
    pub(super) max_event_time: Option<i64>,
    pub(super) stats: OperatorStats,
    /// `prediction` values by category id.
    pub(super) categories: Vec<String>,
    /// Per key: the closed panes its drift reference is built from.
    pub(super) baselines: Vec<(u32, Vec<(i64, DriftState)>)>,
    pub(super) retired_through: Option<i64>,
    pub(super) labels: Option<LabelSnapshot>,
    /// (window start, key, state) of the revisable windows.
    pub(super) revisable: Vec<(i64, u32, Revisable)>,
    /// The revisable windows' last rows, one Arrow IPC stream (hex), in `revisable` order.
    pub(super) revisable_rows: String,
    pub(super) revision_seq: u64,
    pub(super) revised_at: Option<i64>,
    /// Per key: (window start, cost per request as f64 bits).
    pub(super) cost_history: Vec<(u32, Vec<(i64, u64)>)>,
    /// Budget spend of closed panes: (service or tenant id, (day, nano-dollars)).
    pub(super) service_spend: Vec<(String, (i64, i64))>,
    pub(super) tenant_spend: Vec<(u32, (i64, i64))>,
    pub(super) sessions: SessionsSnapshot,
    pub(super) ended: Vec<(String, Session)>,
    pub(super) sessions_at: Option<i64>,
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    let d = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| {
            if p.len() == 2 {
                Some(d(p[0])? << 4 | d(p[1])?)
            } else {
                None
            }
        })
        .collect()
}

impl WindowOperator {
    /// Serialises everything this operator holds — open panes, keys, how far windows were
    /// emitted, the partition's newest event time — for a checkpoint. Restoring it with
    /// [`WindowOperator::restore`] continues exactly where this left off.
    pub fn snapshot(&mut self) -> Result<Vec<u8>> {
        let (panes, custom_index, custom) = self.snapshot_groups()?;
        let snap = Snapshot {
            version: SNAPSHOT_VERSION,
            window: [
                self.spec.size,
                self.spec.slide,
                self.spec.lateness,
                self.spec.out_of_orderness,
            ],
            custom_columns: self.custom_columns(),
            keys: self.keys.values.clone(),
            panes,
            custom_index,
            custom,
            emitted_through: self.emitted_through,
            max_event_time: self.max_event_time,
            stats: self.stats,
            categories: self.categories.names().to_vec(),
            baselines: {
                let mut b: Vec<(u32, Vec<(i64, DriftState)>)> = self
                    .baselines
                    .iter()
                    .map(|(k, b)| (*k, b.panes().cloned().collect()))
                    .filter(|(_, p): &(u32, Vec<_>)| !p.is_empty())
                    .collect();
                b.sort_by_key(|(k, _)| *k);
                b
            },
            retired_through: self.retired_through,
            labels: self.labels.as_ref().map(|l| l.snapshot()),
            revisable: self
                .revisable
                .iter()
                .map(|(&(start, key), r)| (start, key, r.clone()))
                .collect(),
            revisable_rows: self.revisable_rows()?,
            revision_seq: self.revision_seq,
            revised_at: self.revised_at,
            cost_history: {
                let mut h: Vec<(u32, Vec<(i64, u64)>)> = self
                    .cost_history
                    .iter()
                    .map(|(k, v)| (*k, v.iter().map(|(s, x)| (*s, x.to_bits())).collect()))
                    .collect();
                h.sort_by_key(|(k, _)| *k);
                h
            },
            service_spend: {
                let mut v: Vec<(String, (i64, i64))> = self
                    .budgets
                    .service_spend
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                v.sort();
                v
            },
            tenant_spend: {
                let mut v: Vec<(u32, (i64, i64))> = self
                    .budgets
                    .tenant_spend
                    .iter()
                    .map(|(k, v)| (*k, *v))
                    .collect();
                v.sort();
                v
            },
            sessions: self.sessions.snapshot(),
            ended: self
                .ended
                .iter()
                .map(|(id, s)| (id.to_string(), s.clone()))
                .collect(),
            sessions_at: self.sessions_at,
        };
        serde_json::to_vec(&snap).map_err(|e| ProcessorError::Checkpoint(e.to_string()))
    }

    /// Open groups, panes in time order and keys in id order; the custom states in the same
    /// order, which the returned (pane, key) list records.
    #[allow(clippy::type_complexity)]
    fn snapshot_groups(
        &mut self,
    ) -> Result<(
        Vec<(i64, Vec<(u32, CoreState)>)>,
        Vec<(i64, u32)>,
        Vec<String>,
    )> {
        let mut members: Vec<(i64, u32, usize)> = self.groups.in_panes(..).collect();
        members.sort_by_key(|&(p, k, _)| (p, k));
        let mut panes: Vec<(i64, Vec<(u32, CoreState)>)> = Vec::new();
        for &(p, k, g) in &members {
            if panes.last().is_none_or(|(last, _)| *last != p) {
                panes.push((p, Vec::new()));
            }
            let state = self.groups.state(g).clone();
            panes.last_mut().expect("pushed above").1.push((k, state));
        }
        let custom_index: Vec<(i64, u32)> = members.iter().map(|&(p, k, _)| (p, k)).collect();
        let total = self.groups.capacity();
        let custom = match self.custom.as_mut() {
            Some(c) => {
                let states = c.metrics.take_states(&mut c.groups, total)?;
                let rows: Vec<usize> = members.iter().map(|m| m.2).collect();
                let blobs = c.metrics.encode_states(&states, &rows)?;
                // The accumulators go on from exactly these states.
                let live: Vec<(usize, usize)> = rows.iter().map(|&g| (g, g)).collect();
                c.metrics.merge_rows(&mut c.groups, &states, &live, total)?;
                blobs.iter().map(|b| hex(b)).collect()
            }
            None => Vec::new(),
        };
        Ok((panes, custom_index, custom))
    }

    /// The revisable windows' last rows as one Arrow IPC stream (hex).
    fn revisable_rows(&self) -> Result<String> {
        let rows: Vec<RecordBatch> = self
            .revisable
            .values()
            .filter_map(|r| r.row.clone())
            .collect();
        if rows.is_empty() {
            return Ok(String::new());
        }
        let batch = arrow::compute::concat_batches(&self.schema, &rows)?;
        let mut buf = Vec::new();
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &self.schema)?;
        w.write(&batch)?;
        w.finish()?;
        drop(w);
        Ok(hex(&buf))
    }

    /// Replaces this operator's state with a [`WindowOperator::snapshot`]. Fails, naming
    /// what differs, when the window or custom metrics changed since.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let snap: Snapshot = serde_json::from_slice(bytes)
            .map_err(|e| ProcessorError::Checkpoint(format!("unreadable: {e}")))?;
        self.check_fits(&snap)?;
        self.keys = Keys::default();
        for k in &snap.keys {
            self.keys.intern(
                &k.service,
                &k.model,
                k.model_version.as_deref(),
                k.route.as_deref(),
            );
        }
        self.restore_groups(snap.panes, &snap.custom_index, &snap.custom)?;
        self.emitted_through = snap.emitted_through;
        self.categories = Categories::from_names(snap.categories);
        self.baselines = snap
            .baselines
            .into_iter()
            .map(|(k, panes)| (k, Baseline::from_panes(panes)))
            .collect();
        self.retired_through = snap.retired_through;
        if let (Some(l), Some(s)) = (self.labels.as_mut(), snap.labels) {
            l.restore(s);
        }
        self.revisable = self.revisable_from(snap.revisable, &snap.revisable_rows)?;
        self.revision_seq = snap.revision_seq;
        self.revised_at = snap.revised_at;
        self.cost_history = snap
            .cost_history
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    v.into_iter().map(|(s, x)| (s, f64::from_bits(x))).collect(),
                )
            })
            .collect();
        self.budgets.service_spend = snap.service_spend.into_iter().collect();
        self.budgets.tenant_spend = snap.tenant_spend.into_iter().collect();
        self.sessions.restore(snap.sessions);
        self.ended.clear();
        for (id, s) in snap.ended {
            self.ended.push(&id, s);
        }
        self.sessions_at = snap.sessions_at;
        // Rows are handed out in the batch that closes a window, so none are due at a
        // checkpoint for a window already closed.
        self.sessions_cut_through = snap.emitted_through;
        self.max_event_time = snap.max_event_time;
        self.stats = snap.stats;
        Ok(())
    }

    /// Refuses a checkpoint written in another format or for other windows or custom
    /// metrics, saying what to do.
    fn check_fits(&self, snap: &Snapshot) -> Result<()> {
        if snap.version != SNAPSHOT_VERSION {
            return Err(ProcessorError::Checkpoint(format!(
                "it has format version {}, this inferwatch reads version {SNAPSHOT_VERSION}; \
                 run the inferwatch that wrote it to drain the topic, or start over with a new \
                 data dir (the consumer group then resumes from its committed offsets)",
                snap.version
            )));
        }
        let window = [
            self.spec.size,
            self.spec.slide,
            self.spec.lateness,
            self.spec.out_of_orderness,
        ];
        if snap.window != window {
            return Err(ProcessorError::Checkpoint(format!(
                "it was written with window (size, slide, lateness, out-of-orderness) = {:?} ms, \
                 the config now says {window:?} ms; restore the old [window] settings or start \
                 over with a new data dir",
                snap.window
            )));
        }
        if snap.custom_columns != self.custom_columns() {
            return Err(ProcessorError::Checkpoint(format!(
                "it was written with custom metrics {:?}, the config now has {:?}",
                snap.custom_columns,
                self.custom_columns()
            )));
        }
        Ok(())
    }

    /// The open (pane, key) groups and their custom-metric states.
    fn restore_groups(
        &mut self,
        panes: Vec<(i64, Vec<(u32, CoreState)>)>,
        custom_index: &[(i64, u32)],
        custom: &[String],
    ) -> Result<()> {
        self.groups = Groups::default();
        for (start, core) in panes {
            for (k, state) in core {
                let g = self.groups.group(start, k);
                *self.groups.state_mut(g) = state;
            }
        }
        if let Some(c) = self.custom.as_mut() {
            let blobs: Vec<Vec<u8>> = custom
                .iter()
                .map(|h| {
                    unhex(h)
                        .ok_or_else(|| ProcessorError::Checkpoint("custom state is not hex".into()))
                })
                .collect::<Result<_>>()?;
            let states = c.metrics.decode_states(&blobs, custom_index.len())?;
            let pairs: Vec<(usize, usize)> = custom_index
                .iter()
                .enumerate()
                .map(|(row, &(pane, key))| (row, self.groups.group(pane, key)))
                .collect();
            c.groups = c.metrics.new_groups()?;
            let total = self.groups.capacity();
            c.metrics
                .merge_rows(&mut c.groups, &states, &pairs, total)?;
        }
        Ok(())
    }

    /// The revisable windows, with their last rows when those fit today's schema.
    fn revisable_from(
        &self,
        revisable: Vec<(i64, u32, Revisable)>,
        revisable_rows: &str,
    ) -> Result<BTreeMap<(i64, u32), Revisable>> {
        let mut rows = if revisable_rows.is_empty() {
            None
        } else {
            let bytes = unhex(revisable_rows)
                .ok_or_else(|| ProcessorError::Checkpoint("revisable rows are not hex".into()))?;
            let mut r =
                arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
            r.next().transpose()?
        };
        if rows
            .as_ref()
            .is_some_and(|b| b.schema().fields() != self.schema.fields())
        {
            rows = None;
        }
        Ok(revisable
            .into_iter()
            .enumerate()
            .map(|(i, (start, key, r))| {
                let row = rows.as_ref().map(|b| b.slice(i, 1));
                ((start, key), Revisable { row, ..r })
            })
            .collect())
    }

    pub(super) fn custom_columns(&self) -> Vec<String> {
        self.custom
            .as_ref()
            .map(|c| {
                c.metrics
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}
