//! Custom metrics: SQL aggregate expressions from the config, run by DataFusion's own
//! groups accumulators with two-phase aggregation — one `update_batch` per micro-batch with
//! the (pane, key) group of every row, `state` / `merge_batch` when a window's panes are
//! combined, `evaluate` when it closes.
//!
//! The SQL is planned once, as `SELECT <expr> FROM events`: every aggregate function inside
//! becomes one groups accumulator per partition, and whatever surrounds them (`sum(a) /
//! sum(b)`, `coalesce(...)`) is a physical expression evaluated over the aggregates' results.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{new_empty_array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::kernels::boolean::and;
use arrow::compute::take;
use arrow::datatypes::{Field, SchemaRef};
use datafusion::datasource::empty::EmptyTable;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator, LogicalPlan};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{create_physical_expr, GroupsAccumulatorAdapter, PhysicalExpr};
#[allow(deprecated)] // its replacement, LoweredAggregateBuilder, is crate-private in 55.x
use datafusion::physical_planner::create_aggregate_expr_and_maybe_filter;
use datafusion::prelude::SessionContext;

use crate::error::{config_err, ProcessorError, Result};
use crate::functions::FunctionParams;
use serde::Deserialize;

struct Aggregate {
    expr: Arc<AggregateFunctionExpr>,
    args: Vec<Arc<dyn PhysicalExpr>>,
    filter: Option<Arc<dyn PhysicalExpr>>,
}

/// One planned custom metric.
struct Planned {
    name: String,
    aggregates: Vec<Aggregate>,
    /// Schema of the aggregate results the projection reads.
    agg_schema: SchemaRef,
    projection: Arc<dyn PhysicalExpr>,
    field: Field,
}

/// All custom metrics of a processor.
pub struct CustomMetrics {
    metrics: Vec<Planned>,
    /// Every aggregate's arguments over no rows: sizes accumulators without adding to them.
    no_rows: BatchArgs,
}

fn df_err(name: &str) -> impl Fn(DataFusionError) -> ProcessorError + '_ {
    move |e| ProcessorError::CustomMetric {
        name: name.to_string(),
        source: Box::new(e),
    }
}

impl CustomMetrics {
    /// Plans every metric against the `events` schema; errors name the metric at fault.
    /// The built-in functions (`ece`, `latency_quantile`, ...) are available with `params`.
    pub fn plan(
        defs: &[CustomMetric],
        events: SchemaRef,
        params: FunctionParams,
    ) -> Result<Option<Self>> {
        if defs.is_empty() {
            return Ok(None);
        }
        let ctx = SessionContext::new();
        crate::functions::register(&ctx, params);
        ctx.register_table("events", Arc::new(EmptyTable::new(events.clone())))
            .map_err(df_err("events"))?;
        let state = ctx.state();
        let mut metrics = Vec::new();
        for def in defs {
            let err = df_err(&def.name);
            let sql = format!("SELECT {} AS \"{}\" FROM events", def.sql, def.name);
            let df = futures::executor::block_on(ctx.sql(&sql)).map_err(&err)?;
            let plan = state
                .analyzer()
                .execute_and_check(df.logical_plan().clone(), state.config_options(), |_, _| {})
                .map_err(&err)?;
            let LogicalPlan::Projection(proj) = &plan else {
                return Err(not_aggregate(def));
            };
            let LogicalPlan::Aggregate(agg) = proj.input.as_ref() else {
                return Err(not_aggregate(def));
            };
            if !agg.group_expr.is_empty()
                || !matches!(agg.input.as_ref(), LogicalPlan::TableScan(_))
            {
                return Err(not_aggregate(def));
            }
            let input_schema = agg.input.schema();
            let mut aggregates = Vec::new();
            for e in &agg.aggr_expr {
                #[allow(deprecated)]
                let (expr, filter, _order) = create_aggregate_expr_and_maybe_filter(
                    e,
                    input_schema,
                    input_schema.as_arrow(),
                    state.execution_props(),
                )
                .map_err(&err)?;
                aggregates.push(Aggregate {
                    args: expr.expressions(),
                    expr,
                    filter,
                });
            }
            let agg_schema: SchemaRef = Arc::new(agg.schema.as_arrow().clone());
            let projection = create_physical_expr(
                &proj.expr[0],
                &agg.schema,
                state.execution_props(),
                &PhysicalPlanningContext::default(),
            )
            .map_err(&err)?;
            let out = plan.schema().field(0).clone();
            metrics.push(Planned {
                name: def.name.clone(),
                aggregates,
                agg_schema,
                projection,
                field: Field::new(&def.name, out.data_type().clone(), true),
            });
        }
        let mut planned = Self {
            metrics,
            no_rows: BatchArgs {
                per_agg: Vec::new(),
            },
        };
        planned.no_rows = planned.arguments(&RecordBatch::new_empty(events))?;
        Ok(Some(planned))
    }

    /// Output columns, in config order.
    pub fn fields(&self) -> Vec<Field> {
        self.metrics.iter().map(|m| m.field.clone()).collect()
    }

    /// Fresh accumulators, no groups yet.
    pub fn new_groups(&self) -> Result<CustomGroups> {
        let mut accs = Vec::new();
        for m in &self.metrics {
            for a in &m.aggregates {
                // Aggregates without a groups accumulator of their own run one
                // accumulator per group behind DataFusion's adapter; so do DISTINCT ones,
                // which keep a set per group either way: rebuilt one group at a time, a
                // set lists its values in the same order after a checkpoint round trip, so
                // checkpoint bytes depend only on what they hold.
                let acc = if a.expr.groups_accumulator_supported() && !a.expr.is_distinct() {
                    a.expr.create_groups_accumulator()
                } else {
                    let expr = a.expr.clone();
                    Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                        expr.create_accumulator()
                    })) as Box<dyn GroupsAccumulator>)
                };
                accs.push(acc.map_err(df_err(&m.name))?);
            }
        }
        Ok(CustomGroups { accs })
    }

    /// Evaluates every aggregate's arguments over a whole micro-batch once.
    pub fn arguments(&self, batch: &RecordBatch) -> Result<BatchArgs> {
        let mut out = Vec::new();
        for m in &self.metrics {
            for a in &m.aggregates {
                let mut args = Vec::new();
                for e in &a.args {
                    let v = e.evaluate(batch).map_err(df_err(&m.name))?;
                    args.push(v.into_array(batch.num_rows()).map_err(df_err(&m.name))?);
                }
                let mask = match &a.filter {
                    Some(f) => {
                        let v = f.evaluate(batch).map_err(df_err(&m.name))?;
                        let arr = v.into_array(batch.num_rows()).map_err(df_err(&m.name))?;
                        Some(arr.as_boolean_opt().cloned().ok_or_else(|| {
                            ProcessorError::Config(format!(
                                "custom metric `{}`: FILTER must be boolean",
                                m.name
                            ))
                        })?)
                    }
                    None => None,
                };
                out.push((args, mask));
            }
        }
        Ok(BatchArgs { per_agg: out })
    }

    /// Feeds rows `rows` of a micro-batch to the groups `groups` (one per row), skipping
    /// the rows `keep` rejects: one call per aggregate, whatever the number of groups.
    pub fn update(
        &self,
        state: &mut CustomGroups,
        args: &BatchArgs,
        rows: Range<usize>,
        groups: &[usize],
        keep: &BooleanArray,
        total_groups: usize,
    ) -> Result<()> {
        let len = rows.end - rows.start;
        for (i, (acc, (cols, mask))) in state.accs.iter_mut().zip(&args.per_agg).enumerate() {
            let values: Vec<ArrayRef> = cols.iter().map(|c| c.slice(rows.start, len)).collect();
            let filter = match mask {
                Some(m) => and(keep, &m.slice(rows.start, len))?,
                None => keep.clone(),
            };
            acc.update_batch(&values, groups, Some(&filter), total_groups)
                .map_err(df_err(self.name_of(i)))?;
        }
        Ok(())
    }

    /// The state of every group below `total_groups`, leaving `state` with fresh, empty
    /// accumulators.
    pub fn take_states(&self, state: &mut CustomGroups, total_groups: usize) -> Result<States> {
        let keep = BooleanArray::from(Vec::<bool>::new());
        self.update(state, &self.no_rows, 0..0, &[], &keep, total_groups)?;
        let mut out = Vec::with_capacity(state.accs.len());
        for (i, acc) in state.accs.iter_mut().enumerate() {
            out.push(acc.state(EmitTo::All).map_err(df_err(self.name_of(i)))?);
        }
        *state = self.new_groups()?;
        Ok(States { per_agg: out })
    }

    /// Merges state rows into groups: `pairs` are (row of `states`, group), each group's
    /// rows in the order they are to be combined.
    pub fn merge_rows(
        &self,
        state: &mut CustomGroups,
        states: &States,
        pairs: &[(usize, usize)],
        total_groups: usize,
    ) -> Result<()> {
        if pairs.is_empty() {
            // (DataFusion's adapter emits no state columns at all for no groups.)
            return Ok(());
        }
        let rows = UInt32Array::from_iter_values(pairs.iter().map(|p| p.0 as u32));
        let groups: Vec<usize> = pairs.iter().map(|p| p.1).collect();
        for (i, (acc, cols)) in state.accs.iter_mut().zip(&states.per_agg).enumerate() {
            let taken: Vec<ArrayRef> = cols
                .iter()
                .map(|c| take(c.as_ref(), &rows, None))
                .collect::<Result<_, _>>()?;
            acc.merge_batch(&taken, &groups, total_groups)
                .map_err(df_err(self.name_of(i)))?;
        }
        Ok(())
    }

    /// Final values of every metric for `n` output rows, each the merge of the state rows
    /// `pairs` assign to it ((state row, output row), in merge order): one array per metric.
    pub fn evaluate_rows(
        &self,
        states: &States,
        pairs: &[(usize, usize)],
        n: usize,
    ) -> Result<Vec<ArrayRef>> {
        let mut merged = self.new_groups()?;
        self.merge_rows(&mut merged, states, pairs, n)?;
        let mut out = Vec::new();
        let mut accs = merged.accs.iter_mut();
        for m in &self.metrics {
            let mut cols: Vec<ArrayRef> = Vec::new();
            for f in m.agg_schema.fields().iter() {
                let acc = accs.next().expect("one accumulator per aggregate");
                let arr = if n == 0 {
                    new_empty_array(f.data_type())
                } else {
                    acc.evaluate(EmitTo::All).map_err(df_err(&m.name))?
                };
                cols.push(arr);
            }
            let batch = RecordBatch::try_new_with_options(
                m.agg_schema.clone(),
                cols,
                &arrow::array::RecordBatchOptions::new().with_row_count(Some(n)),
            )?;
            let v = m.projection.evaluate(&batch).map_err(df_err(&m.name))?;
            let arr = v.into_array(n).map_err(df_err(&m.name))?;
            out.push(arrow::compute::cast(&arr, m.field.data_type())?);
        }
        Ok(out)
    }

    fn name_of(&self, aggregate: usize) -> &str {
        let mut i = aggregate;
        for m in &self.metrics {
            if i < m.aggregates.len() {
                return &m.name;
            }
            i -= m.aggregates.len();
        }
        "custom metric"
    }

    /// Serialises the state rows `rows` for a checkpoint: one Arrow IPC stream per
    /// aggregate, one row per state, the columns being the aggregate's own state fields.
    pub fn encode_states(&self, states: &States, rows: &[usize]) -> Result<Vec<Vec<u8>>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let idx = UInt32Array::from_iter_values(rows.iter().map(|&r| r as u32));
        let mut blobs = Vec::with_capacity(states.per_agg.len());
        for cols in &states.per_agg {
            let cols: Vec<ArrayRef> = cols
                .iter()
                .map(|c| take(c.as_ref(), &idx, None))
                .collect::<Result<_, _>>()?;
            let fields: Vec<Field> = cols
                .iter()
                .enumerate()
                .map(|(j, c)| Field::new(format!("s{j}"), c.data_type().clone(), true))
                .collect();
            let batch =
                RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), cols)?;
            let mut buf = Vec::new();
            let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &batch.schema())?;
            w.write(&batch)?;
            w.finish()?;
            drop(w);
            blobs.push(buf);
        }
        Ok(blobs)
    }

    /// Reads `n` state rows written by [`CustomMetrics::encode_states`].
    pub fn decode_states(&self, blobs: &[Vec<u8>], n: usize) -> Result<States> {
        let n_accs = self.new_groups()?.accs.len();
        if n == 0 {
            return Ok(States {
                per_agg: vec![Vec::new(); n_accs],
            });
        }
        if blobs.len() != n_accs {
            return Err(ProcessorError::Checkpoint(format!(
                "the checkpoint holds {} custom-metric accumulators, the config has {n_accs}: \
                 custom metrics changed since it was written",
                blobs.len()
            )));
        }
        let mut per_agg = Vec::with_capacity(n_accs);
        for (i, blob) in blobs.iter().enumerate() {
            let reader =
                arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(blob), None)?;
            let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>()?;
            let batch = arrow::compute::concat_batches(
                &batches
                    .first()
                    .map(|b| b.schema())
                    .unwrap_or_else(|| Arc::new(arrow::datatypes::Schema::empty())),
                &batches,
            )?;
            if batch.num_rows() != n {
                return Err(ProcessorError::Checkpoint(format!(
                    "custom-metric state {i} has {} rows, expected {n}",
                    batch.num_rows()
                )));
            }
            per_agg.push(batch.columns().to_vec());
        }
        Ok(States { per_agg })
    }
}

/// The accumulators of every custom aggregate over all of a partition's open groups.
pub struct CustomGroups {
    accs: Vec<Box<dyn GroupsAccumulator>>,
}

/// Emitted states of every aggregate: one row per group.
pub struct States {
    per_agg: Vec<Vec<ArrayRef>>,
}

impl States {
    /// An empty set of states: no aggregates.
    pub fn none() -> Self {
        Self {
            per_agg: Vec::new(),
        }
    }
}

/// Arguments of every aggregate, evaluated over one micro-batch.
pub struct BatchArgs {
    per_agg: Vec<(Vec<ArrayRef>, Option<BooleanArray>)>,
}

fn not_aggregate(def: &CustomMetric) -> ProcessorError {
    ProcessorError::Config(format!(
        "custom metric `{}`: {:?} must be an aggregate over events, such as avg(latency_ms) or sum(tokens_out) / count(*)",
        def.name, def.sql
    ))
}

/// `[[custom_metrics]]`: an SQL aggregate over the `events` columns that becomes a column of
/// `metrics`, e.g. `avg(CASE WHEN status = 'ok' THEN 1.0 ELSE 0.0 END)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomMetric {
    /// Column name in `metrics`: lower-case letters, digits and `_`.
    pub name: String,
    /// One SQL aggregate expression (DataFusion dialect).
    pub sql: String,
}

/// Names are lower-case identifiers, unique, and not already a column of `metrics`
/// (`taken`).
pub fn validate_custom(metrics: &[CustomMetric], taken: &[String]) -> Result<(), ProcessorError> {
    let mut seen = std::collections::BTreeSet::new();
    for m in metrics {
        let ok = !m.name.is_empty()
            && m.name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase())
            && m.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(config_err!(
                "custom_metrics: name {:?} must start with a lower-case letter and hold only a-z, 0-9 and _",
                m.name
            ));
        }
        if taken.contains(&m.name) || !seen.insert(&m.name) {
            return Err(config_err!(
                "custom_metrics: the name {:?} is already a column of `metrics`",
                m.name
            ));
        }
    }
    Ok(())
}
