//! Closing windows: what the watermark allows is merged from panes and emitted as rows.

use super::*;

/// A window's cost per request against `history` (the key's windows starting at `since` or
/// later); then the window joins the history.
pub(super) fn cost_anomaly(
    history: &mut CostSeries,
    since: i64,
    min_baseline: usize,
    start: i64,
    state: &CoreState,
) -> CostAnomaly {
    while history.front().is_some_and(|(s, _)| *s < since) {
        history.pop_front();
    }
    if state.requests == 0 {
        return CostAnomaly::default();
    }
    let x = state.cost_nanos as f64 / 1e9 / state.requests as f64;
    let baseline: Vec<f64> = history.iter().map(|(_, v)| *v).collect();
    let a = CostAnomaly::of(x, &baseline, min_baseline);
    history.push_back((start, x));
    a
}

impl WindowOperator {
    /// Closes every window the watermark `wm` allows, whatever the partition's own events
    /// say: how an idle partition follows the others. Returns the rows of closed windows.
    pub fn advance_watermark(&mut self, wm: i64) -> Result<Option<RecordBatch>> {
        let through = self.spec.closable_through(wm);
        let mut out = MetricRows::new();
        if self.emitted_through.is_none_or(|e| through > e) && !self.groups.is_empty() {
            self.close_through(through, &mut out)?;
        }
        self.finish_rows(out)
    }

    /// End of a finite source: closes and emits every open window, ends every session.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>> {
        self.sessions.end_idle(i64::MAX, &mut self.ended);
        let mut out = MetricRows::new();
        if let Some(last) = self.groups.last_pane() {
            self.close_through(last, &mut out)?;
        }
        self.finish_rows(out)
    }

    /// Emits every window starting at or before `through` that holds data, then drops the
    /// panes no open window needs.
    pub(super) fn close_through(&mut self, through: i64, out: &mut MetricRows) -> Result<()> {
        let (size, slide) = (self.spec.size, self.spec.slide);
        let first = self.emitted_through.map(|e| e + slide);
        let mut starts = BTreeSet::new();
        for p in self
            .groups
            .pane_starts(..=through.saturating_add(size - slide))
        {
            let lo = first.map_or(self.spec.first_window_of(p), |f| {
                f.max(self.spec.first_window_of(p))
            });
            let mut s = lo;
            while s <= p.min(through) {
                starts.insert(s);
                s += slide;
            }
        }
        // Custom metrics: every group's state leaves its accumulators once; windows merge
        // from it, and the groups still open go back.
        let total = self.groups.capacity();
        let custom = match self.custom.as_mut() {
            Some(c) => Some(c.metrics.take_states(&mut c.groups, total)?),
            None => None,
        };
        for s in starts {
            self.retire_before(s);
            self.emit_window(s, out, custom.as_ref())?;
        }
        self.retire_before(through + 1);
        self.groups.drop_through(through);
        if let (Some(c), Some(states)) = (self.custom.as_mut(), custom) {
            let live: Vec<(usize, usize)> = self.groups.live().iter().map(|&g| (g, g)).collect();
            c.metrics.merge_rows(&mut c.groups, &states, &live, total)?;
        }
        self.emitted_through = Some(self.emitted_through.map_or(through, |e| e.max(through)));
        Ok(())
    }

    /// Hands the drift state of every pane before `t` to its key's baseline, in time order.
    pub(super) fn retire_before(&mut self, t: i64) {
        let from = self.retired_through.map_or(i64::MIN, |r| r + 1);
        if from >= t {
            return;
        }
        let slide = self.spec.slide;
        let retiring: Vec<(i64, u32, usize)> = self.groups.in_panes(from..t).collect();
        for (p, k, g) in retiring {
            let state = self.groups.state_mut(g);
            self.budgets
                .retire(p, &self.keys.values[k as usize].service, state);
            if let Some(d) = state.drift.take() {
                self.baselines
                    .entry(k)
                    .or_default()
                    .retire(self.reference, p, slide, *d);
            }
        }
        self.retired_through = Some(t - 1);
    }

    pub(super) fn emit_window(
        &mut self,
        start: i64,
        out: &mut MetricRows,
        custom: Option<&crate::custom::States>,
    ) -> Result<()> {
        let end = start + self.spec.size;
        let members: Vec<(i64, u32, usize)> = self.groups.in_panes(start..end).collect();
        // Each key's groups, in time order; a key's state is merged only when the window
        // has more than one pane of it, and one key at a time: closing a window must not
        // hold a second copy of all its state.
        let mut panes: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for &(_, k, g) in &members {
            panes.entry(k).or_default().push(g);
        }
        if panes.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<u32> = panes.keys().copied().collect();
        keys.sort_by(|a, b| self.keys.values[*a as usize].cmp(&self.keys.values[*b as usize]));
        if let (Some(c), Some(states)) = (&self.custom, custom) {
            // Each key's row merges its panes' states in time order (`members` is).
            let row: HashMap<u32, usize> = keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
            let pairs: Vec<(usize, usize)> =
                members.iter().map(|&(_, k, g)| (g, row[&k])).collect();
            out.custom
                .push(c.metrics.evaluate_rows(states, &pairs, keys.len())?);
        }
        let service_budget = self.window_budgets(start, end, &members);
        for &(_, _, g) in &members {
            self.groups.state_mut(g).settle();
        }
        for k in keys {
            self.emit_key(start, k, &panes[&k], &service_budget, out)?;
        }
        self.stats.windows_closed += 1;
        Ok(())
    }

    /// One key's row of the window at `start`: its panes' states merged (in time order),
    /// drift against its baseline, the cost anomaly, and its calibration bins; held for
    /// late labels when some of its events still await theirs.
    fn emit_key(
        &mut self,
        start: i64,
        k: u32,
        panes: &[usize],
        service_budget: &HashMap<String, (f64, f64)>,
        out: &mut MetricRows,
    ) -> Result<()> {
        let end = start + self.spec.size;
        let key = &self.keys.values[k as usize];
        let merged;
        let state = match panes[..] {
            [g] => self.groups.state(g),
            ref groups => {
                let mut m = CoreState::default();
                for &g in groups {
                    m.merge(self.groups.state(g));
                }
                merged = m;
                &merged
            }
        };
        let drift = self.baselines.entry(k).or_default().evaluate(
            self.reference,
            start,
            state.drift.as_deref(),
            self.min_samples,
            &self.categories,
        );
        if self.labels.is_some() && state.awaiting > 0 {
            out.revisable.push((out.len(), start, k));
            self.revisable.insert(
                (start, k),
                Revisable {
                    end,
                    requests: state.requests,
                    calibration: state.calibration.as_deref().cloned().unwrap_or_default(),
                    late_labels: 0,
                    revision: 0,
                    dirty: false,
                    row: None,
                },
            );
        }
        let anomaly = cost_anomaly(
            self.cost_history.entry(k).or_default(),
            start - self.cost_span,
            self.min_baseline,
            start,
            state,
        );
        out.keys.append(start, end, key);
        let budget = service_budget.get(&key.service).copied();
        out.core.append(&RowInputs {
            state,
            spec: self.bin_spec,
            drift: &drift,
            anomaly,
            budget,
            revision: 0,
            sessions: state.distinct_sessions().map_err(ProcessorError::Spill)?,
        });
        if let Some(cal) = &state.calibration {
            self.bins.append(start, end, key, cal, self.bin_spec, 0);
        }
        Ok(())
    }

    pub(super) fn finish_rows(&mut self, mut out: MetricRows) -> Result<Option<RecordBatch>> {
        let rows = out.len();
        if rows == 0 {
            return Ok(None);
        }
        let mut columns = out.keys.finish();
        columns.extend(out.core.finish());
        if let Some(c) = &self.custom {
            for m in 0..c.metrics.fields().len() {
                let parts: Vec<&dyn Array> = out.custom.iter().map(|w| w[m].as_ref()).collect();
                columns.push(arrow::compute::concat(&parts)?);
            }
        }
        self.stats.metric_rows += rows as u64;
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        for (i, start, k) in out.revisable {
            if let Some(r) = self.revisable.get_mut(&(start, k)) {
                r.row = Some(batch.slice(i, 1));
            }
        }
        Ok(Some(batch))
    }
}
