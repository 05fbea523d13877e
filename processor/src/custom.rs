//! Custom metrics: SQL aggregate expressions from the config, run by DataFusion's own
//! accumulators with two-phase aggregation — `update_batch` per micro-batch and pane,
//! `state` / `merge_batch` when a window's panes are combined, `evaluate` when it closes.
//!
//! The SQL is planned once, as `SELECT <expr> FROM events`: every aggregate function inside
//! becomes one accumulator per (pane, key), and whatever surrounds them (`sum(a) / sum(b)`,
//! `coalesce(...)`) is a physical expression evaluated over the accumulators' results.

use std::sync::Arc;

use arrow::array::{new_empty_array, Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{filter, take};
use arrow::datatypes::{Field, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::datasource::empty::EmptyTable;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Accumulator, LogicalPlan};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{create_physical_expr, PhysicalExpr};
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

/// Accumulators of every custom metric for one (pane, key).
pub struct CustomState {
    accs: Vec<Box<dyn Accumulator>>,
}

/// All custom metrics of a processor.
pub struct CustomMetrics {
    metrics: Vec<Planned>,
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
        Ok(Some(Self { metrics }))
    }

    /// Output columns, in config order.
    pub fn fields(&self) -> Vec<Field> {
        self.metrics.iter().map(|m| m.field.clone()).collect()
    }

    /// Fresh accumulators for a new (pane, key).
    pub fn new_state(&self) -> Result<CustomState> {
        let mut accs = Vec::new();
        for m in &self.metrics {
            for a in &m.aggregates {
                accs.push(a.expr.create_accumulator().map_err(df_err(&m.name))?);
            }
        }
        Ok(CustomState { accs })
    }

    /// Evaluates every aggregate's arguments over a whole micro-batch once; groups then take
    /// their rows out of these arrays.
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
                        Some(
                            arr.as_any()
                                .downcast_ref::<BooleanArray>()
                                .cloned()
                                .ok_or_else(|| {
                                    ProcessorError::Config(format!(
                                        "custom metric `{}`: FILTER must be boolean",
                                        m.name
                                    ))
                                })?,
                        )
                    }
                    None => None,
                };
                out.push((args, mask));
            }
        }
        Ok(BatchArgs { per_agg: out })
    }

    /// Feeds the rows `rows` of a micro-batch to one (pane, key)'s accumulators.
    pub fn update(
        &self,
        state: &mut CustomState,
        args: &BatchArgs,
        rows: &UInt32Array,
    ) -> Result<()> {
        let mut i = 0;
        for m in &self.metrics {
            for _ in &m.aggregates {
                let (cols, mask) = &args.per_agg[i];
                let mut taken: Vec<ArrayRef> = cols
                    .iter()
                    .map(|c| take(c.as_ref(), rows, None))
                    .collect::<Result<_, _>>()?;
                if let Some(mask) = mask {
                    let m = take(mask, rows, None)?;
                    let m = m
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .expect("boolean take");
                    taken = taken
                        .iter()
                        .map(|c| filter(c.as_ref(), m))
                        .collect::<Result<_, _>>()?;
                }
                state.accs[i]
                    .update_batch(&taken)
                    .map_err(df_err(&m.name))?;
                i += 1;
            }
        }
        Ok(())
    }

    /// Combines the states of a window's panes into fresh accumulators, leaving the panes'
    /// own accumulators usable for the next windows they belong to.
    pub fn merge(&self, parts: &mut [&mut CustomState]) -> Result<CustomState> {
        let mut merged = self.new_state()?;
        for (i, acc) in merged.accs.iter_mut().enumerate() {
            for part in parts.iter_mut() {
                let state = part.accs[i].state().map_err(df_err("merge"))?;
                let arrays: Vec<ArrayRef> = state
                    .iter()
                    .map(|s| s.to_array())
                    .collect::<Result<_, _>>()
                    .map_err(df_err("merge"))?;
                acc.merge_batch(&arrays).map_err(df_err("merge"))?;
                // `state` may leave an accumulator drained; rebuild it from what it returned.
                let mut fresh = self.new_state()?.accs.swap_remove(i);
                fresh.merge_batch(&arrays).map_err(df_err("merge"))?;
                part.accs[i] = fresh;
            }
        }
        Ok(merged)
    }

    /// Final values of every metric for many (window, key) rows, one array per metric.
    pub fn evaluate(&self, rows: &mut [CustomState]) -> Result<Vec<ArrayRef>> {
        let mut out = Vec::new();
        let mut base = 0;
        for m in &self.metrics {
            let mut cols: Vec<ArrayRef> = Vec::new();
            for (j, f) in m.agg_schema.fields().iter().enumerate() {
                let values: Vec<ScalarValue> = rows
                    .iter_mut()
                    .map(|r| r.accs[base + j].evaluate())
                    .collect::<Result<_, _>>()
                    .map_err(df_err(&m.name))?;
                let arr = if values.is_empty() {
                    new_empty_array(f.data_type())
                } else {
                    ScalarValue::iter_to_array(values).map_err(df_err(&m.name))?
                };
                cols.push(arr);
            }
            base += m.aggregates.len();
            let batch = RecordBatch::try_new_with_options(
                m.agg_schema.clone(),
                cols,
                &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len())),
            )?;
            let v = m.projection.evaluate(&batch).map_err(df_err(&m.name))?;
            let arr = v.into_array(rows.len()).map_err(df_err(&m.name))?;
            let arr = arrow::compute::cast(&arr, m.field.data_type())?;
            out.push(arr);
        }
        Ok(out)
    }
}

impl CustomMetrics {
    /// Serialises many (pane, key) states for a checkpoint: one Arrow IPC stream per
    /// accumulator, one row per state, the columns being the accumulator's own `state()`.
    pub fn encode_states(&self, states: &mut [&mut CustomState]) -> Result<Vec<Vec<u8>>> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let n_accs = states[0].accs.len();
        let mut blobs = Vec::with_capacity(n_accs);
        for i in 0..n_accs {
            let mut rows: Vec<Vec<ScalarValue>> = Vec::with_capacity(states.len());
            for part in states.iter_mut() {
                let state = part.accs[i].state().map_err(df_err("checkpoint"))?;
                // `state` may leave an accumulator drained; rebuild it from what it returned.
                let arrays: Vec<ArrayRef> = state
                    .iter()
                    .map(|s| s.to_array())
                    .collect::<Result<_, _>>()
                    .map_err(df_err("checkpoint"))?;
                let mut fresh = self.new_state()?.accs.swap_remove(i);
                fresh.merge_batch(&arrays).map_err(df_err("checkpoint"))?;
                part.accs[i] = fresh;
                rows.push(state);
            }
            let width = rows[0].len();
            let mut cols = Vec::with_capacity(width);
            for j in 0..width {
                let values = rows.iter().map(|r| r[j].clone());
                cols.push(ScalarValue::iter_to_array(values).map_err(df_err("checkpoint"))?);
            }
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

    /// Rebuilds `n` states written by [`CustomMetrics::encode_states`].
    pub fn decode_states(&self, blobs: &[Vec<u8>], n: usize) -> Result<Vec<CustomState>> {
        let mut out: Vec<CustomState> = (0..n).map(|_| self.new_state()).collect::<Result<_>>()?;
        if n == 0 {
            return Ok(out);
        }
        let n_accs = out[0].accs.len();
        if blobs.len() != n_accs {
            return Err(ProcessorError::Checkpoint(format!(
                "the checkpoint holds {} custom-metric accumulators, the config has {n_accs}: \
                 custom metrics changed since it was written",
                blobs.len()
            )));
        }
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
            for (r, state) in out.iter_mut().enumerate() {
                let arrays: Vec<ArrayRef> = batch.columns().iter().map(|c| c.slice(r, 1)).collect();
                state.accs[i]
                    .merge_batch(&arrays)
                    .map_err(df_err("restore"))?;
            }
        }
        Ok(out)
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
