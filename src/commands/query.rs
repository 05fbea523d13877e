//! `inferwatch query`: SQL over the Parquet tables with DataFusion, `date` and `hour` as
//! partition columns.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use inferwatch_sink::Store;

#[derive(clap::Args)]
pub struct QueryArgs {
    /// Where the Parquet tables are: a directory or s3://bucket/prefix (credentials and
    /// endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL).
    #[arg(long, value_name = "DIR", default_value = "./inferwatch-data")]
    data_dir: PathBuf,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// The query, e.g. "SELECT service, sum(requests) FROM metrics GROUP BY service".
    sql: String,
}

impl QueryArgs {
    pub fn run(self) -> Result<()> {
        let rt = super::tokio_runtime()?;
        let options = inferwatch_sink::StoreOptions::default();
        let store = inferwatch_runtime::config::open_store_to_read(&self.data_dir, &options)?;
        let batches = rt.block_on(run(&store, &self.sql))?;
        let text = render(&batches, self.format)?;
        writeln!(std::io::stdout().lock(), "{text}")?;
        Ok(())
    }
}

/// Tables inferwatch writes, in the order `query` registers them.
pub const TABLES: &[&str] = &[
    "events",
    "metrics",
    "calibration_bins",
    "dead_letter",
    "feedback_unmatched",
    "sessions",
    "budgets",
    "alerts",
];

/// Views over tables whose rows have revisions: only the latest revision of each window × key.
pub const VIEWS: &[(&str, &str)] = &[
    ("metrics_latest", "metrics"),
    ("calibration_bins_latest", "calibration_bins"),
];

/// The URL of `table`'s directory for DataFusion, registering the object store first.
fn table_url(ctx: &SessionContext, data_dir: &Store, table: &str) -> Result<ListingTableUrl> {
    if let Some((store, root)) = data_dir.object_store() {
        // One store per bucket; the prefix is part of the table URL.
        let bucket = root.split('/').take(3).collect::<Vec<_>>().join("/");
        let bucket_url = url::Url::parse(&bucket).with_context(|| format!("data_dir {root}"))?;
        ctx.register_object_store(&bucket_url, store);
        return Ok(ListingTableUrl::parse(format!("{root}/{table}/"))?);
    }
    let dir = data_dir.local_dir().expect("a local store").join(table);
    let dir = std::fs::canonicalize(&dir).with_context(|| format!("reading {}", dir.display()))?;
    Ok(ListingTableUrl::parse(format!("{}/", dir.display()))?)
}

/// A session with every table and view, and whether any table under `data_dir` has a file
/// (none: probably the wrong directory). Listing an object store is blocking work: it runs
/// off the async threads.
pub async fn session(data_dir: &Store) -> Result<(SessionContext, Vec<&'static str>, bool)> {
    let ctx = SessionContext::new();
    // The built-in metrics as SQL functions, with the config's default bins and floors.
    inferwatch_processor::functions::register(&ctx, Default::default());
    let mut registered = Vec::new();
    let mut any_files = false;
    for table in TABLES {
        let store = data_dir.clone();
        let has_files = tokio::task::spawn_blocking(move || {
            inferwatch_sink::table_files(&store, table).map(|f| !f.is_empty())
        })
        .await??;
        any_files |= has_files;
        if !has_files {
            // Queryable all the same: `SELECT count(*) FROM dead_letter` after a clean run
            // is a question with an answer (0), not an error.
            ctx.register_table(*table, empty_table(table)?)?;
            registered.push(*table);
            continue;
        }
        let url = table_url(&ctx, data_dir, table)?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![
                ("date".to_string(), DataType::Utf8),
                ("hour".to_string(), DataType::Utf8),
            ]);
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .infer_schema(&ctx.state())
            .await
            .with_context(|| format!("reading the schema of table {table}"))?;
        ctx.register_table(*table, Arc::new(ListingTable::try_new(config)?))?;
        registered.push(*table);
    }
    for (view, table) in VIEWS {
        if !registered.contains(table) {
            continue;
        }
        let sql = format!(
            "CREATE VIEW {view} AS SELECT * EXCLUDE (latest_revision) FROM (\
             SELECT *, max(revision) OVER (PARTITION BY window_start, window_end, service, model, \
             model_version, route) AS latest_revision FROM {table}) WHERE revision = latest_revision"
        );
        ctx.sql(&sql).await?;
        registered.push(*view);
    }
    Ok((ctx, registered, any_files))
}

/// A table with no rows and the columns `table` has when written, partition columns
/// included. `metrics` has the built-in columns (custom metrics appear once written).
fn empty_table(table: &str) -> Result<Arc<MemTable>> {
    use inferwatch_schemas::tables;
    let schema = match table {
        "events" => tables::events_schema(),
        "metrics" => {
            inferwatch_processor::WindowOperator::new(&Default::default())?.metrics_schema()
        }
        "calibration_bins" => tables::calibration_bins_schema(),
        "dead_letter" => tables::dead_letter_schema(),
        "feedback_unmatched" => tables::feedback_unmatched_schema(),
        "sessions" => tables::sessions_schema(),
        "budgets" => tables::budgets_schema(),
        "alerts" => tables::alerts_schema(),
        other => anyhow::bail!("no schema for table {other}"),
    };
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("date", DataType::Utf8, false));
    fields.push(Field::new("hour", DataType::Utf8, false));
    let schema = Arc::new(Schema::new(fields));
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?))
}

/// Runs `sql` and returns all rows.
pub async fn run(data_dir: &Store, sql: &str) -> Result<Vec<RecordBatch>> {
    let (ctx, registered, any_files) = session(data_dir).await?;
    if !any_files {
        anyhow::bail!(
            "no tables under {}: run `inferwatch demo` or `inferwatch run --source file:PATH` first, or pass --data-dir",
            data_dir.display()
        );
    }
    let df = ctx
        .sql(sql)
        .await
        .map_err(|e| query_error(&e, &registered))?;
    df.collect().await.map_err(|e| query_error(&e, &registered))
}

/// A query's error once: DataFusion nests an error in its own context, each level
/// repeating the message below it (an unknown column listed the valid ones three times).
fn query_error(e: &datafusion::error::DataFusionError, tables: &[&str]) -> anyhow::Error {
    let root = e.find_root().to_string();
    let root = root.strip_prefix("Schema error: ").unwrap_or(&root);
    anyhow::anyhow!("in query: {root}\n(tables: {})", tables.join(", "))
}

/// Output format of `query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// Renders rows: an aligned table, CSV with a header, or one JSON array of row objects.
pub fn render(batches: &[RecordBatch], format: Format) -> Result<String> {
    match format {
        Format::Table => {
            Ok(datafusion::arrow::util::pretty::pretty_format_batches(batches)?.to_string())
        }
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut w = datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for b in batches {
                    w.write(b)?;
                }
            }
            Ok(String::from_utf8(out)?)
        }
        Format::Json => {
            let mut out = Vec::new();
            {
                // Explicit nulls: every row object has every column.
                let mut w = datafusion::arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, datafusion::arrow::json::writer::JsonArray>(&mut out);
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                w.write_batches(&refs)?;
                w.finish()?;
            }
            let mut s = String::from_utf8(out)?;
            if s.is_empty() {
                s.push_str("[]");
            }
            Ok(s)
        }
    }
}
