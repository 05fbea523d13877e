//! One micro-batch: each event is judged in order (watermark, late flag, key, session,
//! counters), and the aggregate functions then take the batch in one call each, with the
//! (pane, key) group of every row. A window that closes mid-batch first gets the rows
//! before it.

use arrow::array::BooleanArray;

use super::*;
use crate::functions::{count_buckets, FieldOf, Function, Quantile};
use crate::sessions::session_hash;

/// The `events` columns the operator reads, typed once per batch.
struct Cols<'a> {
    ts: &'a arrow::array::TimestampMillisecondArray,
    service: &'a StringArray,
    model: &'a StringArray,
    version: &'a StringArray,
    route: &'a StringArray,
    status: &'a StringArray,
    latency: &'a Float64Array,
    tokens_in: &'a arrow::array::Int64Array,
    tokens_out: &'a arrow::array::Int64Array,
    quality: &'a Float64Array,
    confidence: &'a Float64Array,
    correct: &'a arrow::array::BooleanArray,
    prediction: &'a StringArray,
    event_id: &'a StringArray,
    session_id: &'a StringArray,
    tenant: &'a StringArray,
    tool: &'a StringArray,
    input_hash: &'a StringArray,
    flags: &'a arrow::array::ListArray,
    approval: &'a StringArray,
    cost_source: &'a StringArray,
}

impl<'a> Cols<'a> {
    fn of(e: &'a RecordBatch) -> Self {
        let s = |i: usize| e.column(i).as_string::<i32>();
        Self {
            ts: e
                .column(col::TIMESTAMP)
                .as_primitive::<TimestampMillisecondType>(),
            service: s(col::SERVICE),
            model: s(col::MODEL),
            version: s(col::MODEL_VERSION),
            route: s(col::ROUTE),
            status: s(col::STATUS),
            latency: e.column(col::LATENCY_MS).as_primitive::<Float64Type>(),
            tokens_in: e.column(col::TOKENS_IN).as_primitive::<Int64Type>(),
            tokens_out: e.column(col::TOKENS_OUT).as_primitive::<Int64Type>(),
            quality: e.column(col::QUALITY_SCORE).as_primitive::<Float64Type>(),
            confidence: e.column(col::CONFIDENCE).as_primitive::<Float64Type>(),
            correct: e.column(col::CORRECT).as_boolean(),
            prediction: s(col::PREDICTION),
            event_id: s(col::EVENT_ID),
            session_id: s(col::SESSION_ID),
            tenant: s(col::TENANT),
            tool: s(col::TOOL),
            input_hash: s(col::INPUT_HASH),
            flags: e.column(col::FLAGS).as_list::<i32>(),
            approval: s(col::APPROVAL),
            cost_source: s(col::COST_SOURCE),
        }
    }
}

/// Rows of the batch not yet handed to the aggregate functions, and the group of each row
/// (`keep` false: the row is fully late and counts nowhere).
struct Pending {
    from: usize,
    groups: Vec<usize>,
    keep: Vec<bool>,
}

impl WindowOperator {
    /// Aggregates one micro-batch of the partition's priced events into its panes, closing
    /// windows as the watermark passes them.
    pub fn aggregate(&mut self, events: RecordBatch) -> Result<Output> {
        let n = events.num_rows();
        if n == 0 {
            return Ok(Output {
                events: None,
                metrics: None,
            });
        }
        let cost_usd = events.column(col::COST_USD).as_primitive::<Float64Type>();
        let costs: Vec<Option<i64>> = (0..n)
            .map(|i| {
                cost_usd
                    .is_valid(i)
                    .then(|| usd_to_nanos(cost_usd.value(i)))
            })
            .collect();
        let cols = Cols::of(&events);
        let args = match &self.custom {
            Some(c) => Some(c.metrics.arguments(&events)?),
            None => None,
        };
        let mut pending = Pending {
            from: 0,
            groups: Vec::with_capacity(n),
            keep: Vec::with_capacity(n),
        };
        let mut out = MetricRows::new();
        // Flags pushed to a plain vector (the builder's append is a call a row).
        let mut late = Vec::with_capacity(n);
        let ooo = self.spec.out_of_orderness;
        let mut max_ts = self.max_event_time.unwrap_or(i64::MIN / 2);
        for (i, &cost) in costs.iter().enumerate() {
            let t = cols.ts.value(i);
            if t > max_ts {
                max_ts = t;
                let through = self.spec.closable_through(t - ooo);
                if self.emitted_through.is_none_or(|e| through > e) {
                    self.flush(&events, &mut pending, args.as_ref())?;
                    self.close_through(through, &mut out)?;
                }
            }
            let (group, is_late) = self.observe_row(&cols, cost, i, max_ts);
            late.push(is_late);
            pending.groups.push(group.unwrap_or(0));
            pending.keep.push(group.is_some());
        }
        self.flush(&events, &mut pending, args.as_ref())?;
        self.max_event_time = Some(self.max_event_time.map_or(max_ts, |m| m.max(max_ts)));
        self.expire_labels(max_ts - ooo);
        self.sessions.end_idle(max_ts - ooo, &mut self.ended);
        self.stats.events += n as u64;
        self.keep_sessions_in_budget()?;

        let mut columns = events.columns().to_vec();
        columns[col::LATE] = Arc::new(BooleanArray::from(late));
        let events = RecordBatch::try_new(events.schema(), columns)?;
        Ok(Output {
            events: Some(events),
            metrics: self.finish_rows(out)?,
        })
    }

    /// Judges row `i`: its late flag, and the group it counts in (`None`: fully late). Its
    /// counters, session and label wait are recorded here.
    fn observe_row(
        &mut self,
        c: &Cols,
        cost: Option<i64>,
        i: usize,
        max_ts: i64,
    ) -> (Option<usize>, bool) {
        let t = c.ts.value(i);
        let key = self.keys.intern(
            c.service.value(i),
            c.model.value(i),
            opt(c.version, i),
            opt(c.route, i),
        );
        let pane = self.spec.pane(t);
        let emitted = self.emitted_through;
        let fully_late = emitted.is_some_and(|e| pane <= e);
        let is_late = emitted.is_some_and(|e| self.spec.first_window_of(pane) <= e);
        if is_late {
            self.stats.late_events += 1;
            let now_pane = self.spec.pane(max_ts - self.spec.out_of_orderness);
            let g = self.groups.group(now_pane, key);
            self.groups.state_mut(g).late_events += 1;
        }
        if fully_late {
            return (None, is_late);
        }
        let mut obs = Observation {
            status: match c.status.value(i) {
                "error" => StatusClass::Error,
                "timeout" => StatusClass::Timeout,
                "refused" | "filtered" => StatusClass::Refusal,
                _ => StatusClass::Ok,
            },
            latency_ms: c.latency.is_valid(i).then(|| c.latency.value(i)),
            tokens_in: c.tokens_in.is_valid(i).then(|| c.tokens_in.value(i)),
            tokens_out: c.tokens_out.is_valid(i).then(|| c.tokens_out.value(i)),
            cost_nanos: cost,
            cost_from_table: c.cost_source.is_valid(i)
                && c.cost_source.value(i) == COST_SOURCE_TABLE,
            quality_score: c.quality.is_valid(i).then(|| c.quality.value(i)),
            prediction: opt(c.prediction, i).map(|p| self.categories.intern(p)),
            session: None,
            step: Default::default(),
            flagged: c.flags.is_valid(i) && c.flags.value_length(i) > 0,
            approval: match opt(c.approval, i) {
                Some("approved") => Approval::Approved,
                Some("rejected") => Approval::Rejected,
                Some("pending") => Approval::Pending,
                _ => Approval::None,
            },
        };
        if let Some(sid) = opt(c.session_id, i) {
            let (tool, input) = (opt(c.tool, i), opt(c.input_hash, i));
            let hash = session_hash(sid);
            obs.step = self
                .sessions
                .observe(sid, hash, key, t, tool, input, cost, &mut self.ended);
            obs.session = Some(hash);
        }
        let awaits = match self.labels.as_mut() {
            Some(l) if c.confidence.is_valid(i) && !c.correct.is_valid(i) => {
                let conf = c.confidence.value(i);
                l.wait(c.event_id.value(i), key, t, conf, obs.prediction);
                true
            }
            _ => false,
        };
        let g = self.groups.group(pane, key);
        let state = self.groups.state_mut(g);
        state.observe(&obs, awaits);
        if let (Some(tenant), Some(cost)) = (opt(c.tenant, i), cost) {
            if let Some(&id) = self.budgets.tenant_ids.get(tenant) {
                state.add_tenant_cost(id, cost);
            }
        }
        (Some(g), is_late)
    }

    /// Hands the pending rows to every aggregate function: one call each, with the group of
    /// every row.
    fn flush(
        &mut self,
        events: &RecordBatch,
        pending: &mut Pending,
        args: Option<&crate::custom::BatchArgs>,
    ) -> Result<()> {
        let (from, to) = (pending.from, pending.groups.len());
        pending.from = to;
        if !pending.keep[from..to].iter().any(|k| *k) {
            return Ok(());
        }
        let len = to - from;
        let groups = &pending.groups[from..to];
        let keep = BooleanArray::from(pending.keep[from..to].to_vec());
        let column = |i: usize| events.column(i).slice(from, len);
        let (latency, cost) = (column(col::LATENCY_MS), column(col::COST_USD));
        let (confidence, correct) = (column(col::CONFIDENCE), column(col::CORRECT));
        let quality = column(col::QUALITY_SCORE);
        let total = self.groups.capacity();
        let states = self.groups.states_mut();
        let mut hist = FieldOf {
            records: &mut *states,
            get: |s: &mut CoreState| &mut s.latency_us,
        };
        Quantile::latency().update(&mut hist, &[latency], groups, Some(&keep))?;
        hist.get = |s: &mut CoreState| &mut s.cost_hist;
        Quantile::cost().update(&mut hist, &[cost], groups, Some(&keep))?;
        let mut calibration = FieldOf {
            records: &mut *states,
            get: |s: &mut CoreState| s.calibration.get_or_insert_with(Default::default).as_mut(),
        };
        self.calibration.update(
            &mut calibration,
            &[confidence.clone(), correct],
            groups,
            Some(&keep),
        )?;
        let mut drift = FieldOf {
            records: &mut *states,
            get: |s: &mut CoreState| &mut s.drift.get_or_insert_with(Default::default).confidence,
        };
        count_buckets(&mut drift, confidence.as_primitive(), groups, Some(&keep));
        drift.get = |s: &mut CoreState| &mut s.drift.get_or_insert_with(Default::default).quality;
        count_buckets(&mut drift, quality.as_primitive(), groups, Some(&keep));
        if let (Some(custom), Some(args)) = (self.custom.as_mut(), args) {
            let c = &custom.metrics;
            c.update(&mut custom.groups, args, from..to, groups, &keep, total)?;
        }
        Ok(())
    }
}

/// Row `i` of a string column, `None` when null.
#[inline]
pub(crate) fn opt(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}
