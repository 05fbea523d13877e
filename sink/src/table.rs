//! Parquet tables under `data_dir/<table>/date=…/hour=…/`, with deterministic file names so
//! that processing the same input again replaces files instead of adding duplicates.
//!
//! - [`PositionedTable`] (`events`, `dead_letter`): files are named after the source, the
//!   partition and the range of offsets they cover, and rolled by row count.
//! - [`WindowTable`] (`metrics`): one file per window, named after the window and the source.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{SchemaRef, TimestampMillisecondType};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use crate::error::{io_err, Result};
use crate::file::{persist, write_atomic, ParquetOptions};
use crate::partition::{sanitize_component, split_by_hour, HivePartition};

/// Every Parquet file of `table`, recursively, sorted.
pub fn table_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("listing", &d)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("listing", &d))?;
            let path = entry.path();
            let ft = entry.file_type().map_err(io_err("reading", &path))?;
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A file being written: rows stream into a hidden temporary file, which is renamed to its
/// final name (which carries the offset range) when the file rolls.
struct OpenFile {
    tmp: PathBuf,
    writer: ArrowWriter<File>,
}

/// A table whose files hold a contiguous range of one source partition's offsets.
pub struct PositionedTable {
    dir: PathBuf,
    schema: SchemaRef,
    ts_col: usize,
    props: WriterProperties,
    max_rows: usize,
    prefix: String,
    open: BTreeMap<HivePartition, OpenFile>,
    rows: usize,
    range: Option<(i64, i64)>,
    files_written: u64,
}

impl PositionedTable {
    /// `ts_col` is the timestamp column that picks each row's `date=/hour=` partition.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        data_dir: &Path,
        table: &str,
        schema: SchemaRef,
        ts_col: usize,
        source: &str,
        partition: i32,
        max_rows: usize,
        parquet: &ParquetOptions,
    ) -> Result<Self> {
        Ok(Self {
            dir: data_dir.join(table),
            schema,
            ts_col,
            props: parquet.writer_properties()?,
            max_rows: max_rows.max(1),
            prefix: format!("{}-p{partition:05}", sanitize_component(source)),
            open: BTreeMap::new(),
            rows: 0,
            range: None,
            files_written: 0,
        })
    }

    /// Writes `batch`, which covers source offsets `first..=last` (it may be empty: the range
    /// still counts). Rolls the files when they reach `max_rows`; returns the files completed.
    pub fn append(&mut self, batch: &RecordBatch, first: i64, last: i64) -> Result<Vec<PathBuf>> {
        let start = self.range.map_or(first, |(f, _)| f.min(first));
        self.range = Some((start, self.range.map_or(last, |(_, l)| l.max(last))));
        if batch.num_rows() > 0 {
            for (part, rows) in split_by_hour(batch, self.ts_col)? {
                let file = match self.open.entry(part) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        let dir = self.dir.join(e.key().path());
                        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
                        let tmp = dir.join(format!(".{}-{start:020}.parquet.tmp", self.prefix));
                        let f = File::create(&tmp).map_err(io_err("creating", &tmp))?;
                        let writer =
                            ArrowWriter::try_new(f, self.schema.clone(), Some(self.props.clone()))?;
                        e.insert(OpenFile { tmp, writer })
                    }
                };
                file.writer.write(&rows)?;
            }
            self.rows += batch.num_rows();
        }
        if self.rows >= self.max_rows {
            return self.flush();
        }
        Ok(Vec::new())
    }

    /// Rows written to files that are not yet complete.
    pub fn buffered_rows(&self) -> usize {
        self.rows
    }

    /// Offsets covered by files not yet complete.
    pub fn pending_range(&self) -> Option<(i64, i64)> {
        self.range
    }

    pub fn files_written(&self) -> u64 {
        self.files_written
    }

    /// Completes every open file: footer, fsync, rename to its final name, fsync of the
    /// directory. Afterwards the rows are durable.
    pub fn flush(&mut self) -> Result<Vec<PathBuf>> {
        let Some((first, last)) = self.range.take() else {
            return Ok(Vec::new());
        };
        let name = format!("{}-{first:020}-{last:020}.parquet", self.prefix);
        let mut written = Vec::new();
        for (_, open) in std::mem::take(&mut self.open) {
            let path = open.tmp.with_file_name(&name);
            persist(open.writer.into_inner()?, &open.tmp, &path)?;
            written.push(path);
        }
        self.rows = 0;
        self.files_written += written.len() as u64;
        Ok(written)
    }

    /// Drops the open files without completing them (the partition moved to another
    /// processor, which rewrites those rows): their temporary files are removed.
    pub fn abort(&mut self) -> Result<()> {
        for (_, open) in std::mem::take(&mut self.open) {
            drop(open.writer);
            match fs::remove_file(&open.tmp) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("removing", &open.tmp)(e)),
            }
        }
        self.range = None;
        self.rows = 0;
        Ok(())
    }

    /// Deletes this source partition's files whose first offset is at or after `from`, and
    /// any temporary files a crash left: processing restarts at `from` and rewrites them,
    /// perhaps with other boundaries. Returns how many files were removed.
    pub fn remove_from(&self, from: i64) -> Result<usize> {
        let mut removed = 0;
        for path in table_files(&self.dir)? {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let stale_tmp =
                name.starts_with(&format!(".{}-", self.prefix)) && name.ends_with(".tmp");
            let covered = name
                .strip_prefix(&format!("{}-", self.prefix))
                .and_then(|rest| rest.split('-').next())
                .and_then(|first| first.parse::<i64>().ok())
                .is_some_and(|first| first >= from);
            if stale_tmp || covered {
                fs::remove_file(&path).map_err(io_err("removing", &path))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The `metrics` table: one file per window and source partition, partitioned by window start.
pub struct WindowTable {
    dir: PathBuf,
    schema: SchemaRef,
    props: WriterProperties,
    suffix: String,
    files_written: u64,
}

impl WindowTable {
    pub fn new(
        data_dir: &Path,
        table: &str,
        schema: SchemaRef,
        source: &str,
        parquet: &ParquetOptions,
    ) -> Result<Self> {
        Ok(Self {
            dir: data_dir.join(table),
            schema,
            props: parquet.writer_properties()?,
            suffix: sanitize_component(source),
            files_written: 0,
        })
    }

    pub fn files_written(&self) -> u64 {
        self.files_written
    }

    /// Writes rows of one source partition (columns 0 and 1 are `window_start`,
    /// `window_end`), one file per window: a replay of the partition overwrites them.
    pub fn write(&mut self, batch: &RecordBatch, partition: i32) -> Result<Vec<PathBuf>> {
        self.write_named(batch, partition, "")
    }

    /// Writes revised rows (late labels): one file per window named after the partition's
    /// revision sequence number `seq`, next to the window's first file.
    pub fn write_revision(
        &mut self,
        batch: &RecordBatch,
        partition: i32,
        seq: u64,
    ) -> Result<Vec<PathBuf>> {
        self.write_named(batch, partition, &format!("-r{seq:09}"))
    }

    /// Deletes the partition's revision files numbered above `seq`: a replay from a
    /// checkpoint taken at `seq` writes them again, perhaps cut differently.
    pub fn remove_revisions_after(&self, partition: i32, seq: u64) -> Result<usize> {
        let infix = format!("-{}-p{partition:05}-r", self.suffix);
        self.remove_where(|name| {
            let n: Option<u64> = name
                .find(&infix)
                .and_then(|at| name[at + infix.len()..].strip_suffix(".parquet"))
                .and_then(|n| n.parse().ok());
            n.is_some_and(|n| n > seq)
        })
    }

    /// Writes `batch` whole as the partition's file for event time `at` (tables whose rows
    /// are cut at window closes, such as `sessions`): a replay overwrites it.
    pub fn write_at(&mut self, batch: &RecordBatch, partition: i32, at: i64) -> Result<PathBuf> {
        let name = format!("s{at:013}-{}-p{partition:05}.parquet", self.suffix);
        let path = self.dir.join(HivePartition::of(at).path()).join(name);
        write_atomic(
            &path,
            self.schema.clone(),
            std::slice::from_ref(batch),
            self.props.clone(),
        )?;
        self.files_written += 1;
        Ok(path)
    }

    /// Deletes the partition's [`WindowTable::write_at`] files for times after `at`.
    pub fn remove_at_after(&self, partition: i32, at: i64) -> Result<usize> {
        let tail = format!("-{}-p{partition:05}.parquet", self.suffix);
        self.remove_where(|name| {
            let t: Option<i64> = name
                .strip_prefix('s')
                .and_then(|n| n.strip_suffix(tail.as_str()))
                .and_then(|n| n.parse().ok());
            t.is_some_and(|t| t > at)
        })
    }

    fn write_named(
        &mut self,
        batch: &RecordBatch,
        partition: i32,
        tag: &str,
    ) -> Result<Vec<PathBuf>> {
        let starts = batch.column(0).as_primitive::<TimestampMillisecondType>();
        let ends = batch.column(1).as_primitive::<TimestampMillisecondType>();
        let mut windows: BTreeMap<(i64, i64), ()> = BTreeMap::new();
        for i in 0..batch.num_rows() {
            windows.insert((starts.value(i), ends.value(i)), ());
        }
        let mut written = Vec::new();
        for (start, end) in windows.into_keys() {
            let mask = arrow::array::BooleanArray::from_iter(
                (0..batch.num_rows())
                    .map(|i| Some(starts.value(i) == start && ends.value(i) == end)),
            );
            let rows = filter_record_batch(batch, &mask)?;
            let name = format!(
                "w{start:013}-{end:013}-{}-p{partition:05}{tag}.parquet",
                self.suffix
            );
            let path = self.dir.join(HivePartition::of(start).path()).join(name);
            write_atomic(&path, self.schema.clone(), &[rows], self.props.clone())?;
            written.push(path);
        }
        self.files_written += written.len() as u64;
        Ok(written)
    }

    /// Deletes the partition's window files of windows starting after `start`: a replay from a
    /// checkpoint that emitted windows through `start` writes them again.
    pub fn remove_windows_after(&self, partition: i32, start: i64) -> Result<usize> {
        let tail = format!("-{}-p{partition:05}.parquet", self.suffix);
        self.remove_where(|name| {
            let s: Option<i64> = name
                .strip_suffix(tail.as_str())
                .and_then(|n| n.strip_prefix('w'))
                .and_then(|n| n.split('-').next())
                .and_then(|n| n.parse().ok());
            s.is_some_and(|s| s > start)
        })
    }

    /// Deletes every window file of this source (a replay from the start rewrites them).
    pub fn remove_all(&self) -> Result<usize> {
        let infix = format!("-{}-p", self.suffix);
        self.remove_where(|name| {
            (name.starts_with('w') || name.starts_with('s'))
                && name.contains(&infix)
                && name.ends_with(".parquet")
        })
    }

    /// Deletes the table's files whose name `doomed` picks; returns how many.
    fn remove_where(&self, doomed: impl Fn(&str) -> bool) -> Result<usize> {
        let mut removed = 0;
        for path in table_files(&self.dir)? {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if doomed(name) {
                fs::remove_file(&path).map_err(io_err("removing", &path))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
