//! Parquet tables under `data_dir/<table>/date=…/hour=…/`, with deterministic file names so
//! that processing the same input again replaces files instead of adding duplicates.
//!
//! - [`PositionedTable`] (`events`, `dead_letter`): files are named after the source, the
//!   partition and the range of offsets they cover, and rolled by row count.
//! - [`WindowTable`] (`metrics`): one file per window, named after the window and the source.

use std::collections::BTreeMap;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{SchemaRef, TimestampMillisecondType};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use crate::error::Result;
use crate::file::{write_atomic, ParquetOptions};
use crate::partition::{sanitize_component, split_by_hour, HivePartition};
use crate::store::{NewObject, Store};

/// Every Parquet file of `table` in `store` (keys), sorted; hidden temporary files are left
/// out.
pub fn table_files(store: &Store, table: &str) -> Result<Vec<String>> {
    Ok(store
        .list(&format!("{table}/"))?
        .into_iter()
        .filter(|k| {
            let name = file_name(k);
            name.ends_with(".parquet") && !name.starts_with('.')
        })
        .collect())
}

/// Deletes every file any partition of `source` wrote to `table` (a positioned table such
/// as `events`): a replay from the start of a source replaces them all, however the source
/// was partitioned before. Returns how many.
pub fn remove_source(store: &Store, table: &str, source: &str) -> Result<usize> {
    let prefix = format!("{}-p", sanitize_component(source));
    let tmp = format!(".{prefix}");
    let mut removed = 0;
    for key in table_files(store, table)? {
        let name = file_name(&key);
        if name.starts_with(&prefix) || name.starts_with(&tmp) {
            store.delete(&key)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The last component of a key.
fn file_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// A file being written: rows stream into a hidden temporary file (or memory, for an object
/// store), which gets its final name (which carries the offset range) when the file rolls.
struct OpenFile {
    /// The directory key: `<table>/date=…/hour=…`.
    dir: String,
    writer: ArrowWriter<NewObject>,
}

/// A table whose files hold a contiguous range of one source partition's offsets.
pub struct PositionedTable {
    store: Store,
    table: String,
    schema: SchemaRef,
    ts_col: usize,
    props: WriterProperties,
    max_rows: usize,
    prefix: String,
    open: BTreeMap<HivePartition, OpenFile>,
    rows: usize,
    range: Option<(i64, i64)>,
    files_written: u64,
    /// Appended to file names as `-g<N>`: the checkpoint generation of the owner writing
    /// them, so files of two owners of one partition never share a name.
    generation: Option<u64>,
}

impl PositionedTable {
    /// `ts_col` is the timestamp column that picks each row's `date=/hour=` partition.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: &Store,
        table: &str,
        schema: SchemaRef,
        ts_col: usize,
        source: &str,
        partition: i32,
        max_rows: usize,
        parquet: &ParquetOptions,
    ) -> Result<Self> {
        Ok(Self {
            store: store.clone(),
            table: table.to_string(),
            props: parquet.writer_properties(&schema)?,
            schema,
            ts_col,
            max_rows: max_rows.max(1),
            prefix: format!("{}-p{partition:05}", sanitize_component(source)),
            open: BTreeMap::new(),
            rows: 0,
            range: None,
            files_written: 0,
            generation: None,
        })
    }

    /// Names the files completed from now on after checkpoint generation `g`.
    pub fn set_generation(&mut self, g: Option<u64>) {
        self.generation = g;
    }

    /// Writes `batch`, which covers source offsets `first..=last` (it may be empty: the range
    /// still counts). Rolls the files when they reach `max_rows`; returns the files completed.
    pub fn append(&mut self, batch: &RecordBatch, first: i64, last: i64) -> Result<Vec<String>> {
        let start = self.range.map_or(first, |(f, _)| f.min(first));
        self.range = Some((start, self.range.map_or(last, |(_, l)| l.max(last))));
        if batch.num_rows() > 0 {
            for (part, rows) in split_by_hour(batch, self.ts_col)? {
                let file = match self.open.entry(part) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        let dir = format!("{}/{}", self.table, e.key().key());
                        // The generation in the name keeps two owners of the partition that
                        // start at the same offset off each other's temporary file.
                        let tag = generation_tag(self.generation);
                        let obj = self
                            .store
                            .create(&format!("{dir}/{}-{start:020}{tag}.parquet", self.prefix))?;
                        let writer = ArrowWriter::try_new(
                            obj,
                            self.schema.clone(),
                            Some(self.props.clone()),
                        )?;
                        e.insert(OpenFile { dir, writer })
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
    pub fn flush(&mut self) -> Result<Vec<String>> {
        let Some((first, last)) = self.range.take() else {
            return Ok(Vec::new());
        };
        let tag = generation_tag(self.generation);
        let name = format!("{}-{first:020}-{last:020}{tag}.parquet", self.prefix);
        let mut written = Vec::new();
        for (_, open) in std::mem::take(&mut self.open) {
            let key = format!("{}/{name}", open.dir);
            self.store.finish(open.writer.into_inner()?, &key)?;
            written.push(key);
        }
        self.rows = 0;
        self.files_written += written.len() as u64;
        Ok(written)
    }

    /// Drops the open files without completing them (the partition moved to another
    /// processor, which rewrites those rows): their temporary files are removed.
    pub fn abort(&mut self) -> Result<()> {
        for (_, open) in std::mem::take(&mut self.open) {
            self.store.discard(open.writer.inner())?;
        }
        self.range = None;
        self.rows = 0;
        Ok(())
    }

    /// Deletes this source partition's files whose first offset is at or after `from`, and
    /// any temporary files a crash left: processing restarts at `from` and rewrites them,
    /// perhaps with other boundaries. Returns how many files were removed.
    ///
    /// Under a claim (a generation is set), only files of earlier claims go: a processor
    /// that claimed the partition after this one owns its files, even while this one's
    /// late start runs.
    pub fn remove_from(&self, from: i64) -> Result<usize> {
        let rule = match self.generation {
            Some(g) => Owners::Before(g),
            None => Owners::Any,
        };
        self.remove_where(from, rule)
    }

    /// Deletes this partition's files of checkpoint generation `g` whose first offset is at
    /// or after `from`: what this processor wrote after its last commit, once it learned
    /// another one took the partition over. Files of other generations are not touched.
    pub fn remove_generation_from(&self, g: u64, from: i64) -> Result<usize> {
        self.remove_where(from, Owners::Exactly(g))
    }

    fn remove_where(&self, from: i64, owners: Owners) -> Result<usize> {
        let mut removed = 0;
        for key in self.store.list(&format!("{}/", self.table))? {
            let Some(file) = PositionedName::parse(file_name(&key), &self.prefix) else {
                continue;
            };
            // A temporary file is an unfinished write: whatever its offsets, it is stale
            // once its writer is gone.
            let covered = file.temporary || file.first >= from;
            if covered && owners.include(file.generation) {
                self.store.delete(&key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// `-g<N>` in file names, when files are written under a claim.
fn generation_tag(g: Option<u64>) -> String {
    g.map(|g| format!("-g{g:06}")).unwrap_or_default()
}

/// Whose files a removal takes, by the claim generation in their names.
#[derive(Debug, Clone, Copy)]
enum Owners {
    /// Every file (runs without claims).
    Any,
    /// Files of earlier claims, and files written without one.
    Before(u64),
    /// The files of one claim.
    Exactly(u64),
}

impl Owners {
    fn include(self, generation: Option<u64>) -> bool {
        match (self, generation) {
            (Owners::Any, _) => true,
            (Owners::Before(_), None) => true,
            (Owners::Before(g), Some(h)) => h < g,
            (Owners::Exactly(g), h) => h == Some(g),
        }
    }
}

/// What a positioned table's file name says: `<prefix>-<first>-<last>[-g<N>].parquet`, or
/// `.<prefix>-<first>[-g<N>].parquet.tmp` while it is written.
#[derive(Debug, PartialEq)]
struct PositionedName {
    first: i64,
    generation: Option<u64>,
    temporary: bool,
}

impl PositionedName {
    fn parse(name: &str, prefix: &str) -> Option<Self> {
        let (rest, temporary) = match name.strip_prefix('.') {
            Some(hidden) => (hidden.strip_suffix(".parquet.tmp")?, true),
            None => (name.strip_suffix(".parquet")?, false),
        };
        let rest = rest.strip_prefix(prefix)?.strip_prefix('-')?;
        let mut parts = rest.split('-');
        let first = parts.next()?.parse().ok()?;
        let generation = match parts.next_back() {
            Some(last) if last.starts_with('g') => Some(last[1..].parse().ok()?),
            _ => None,
        };
        Some(Self {
            first,
            generation,
            temporary,
        })
    }
}

/// The `metrics` table: one file per window and source partition, partitioned by window start.
pub struct WindowTable {
    store: Store,
    table: String,
    schema: SchemaRef,
    props: WriterProperties,
    suffix: String,
    files_written: u64,
}

impl WindowTable {
    pub fn new(
        store: &Store,
        table: &str,
        schema: SchemaRef,
        source: &str,
        parquet: &ParquetOptions,
    ) -> Result<Self> {
        Ok(Self {
            store: store.clone(),
            table: table.to_string(),
            props: parquet.writer_properties(&schema)?,
            schema,
            suffix: sanitize_component(source),
            files_written: 0,
        })
    }

    pub fn files_written(&self) -> u64 {
        self.files_written
    }

    /// Writes rows of one source partition (columns 0 and 1 are `window_start`,
    /// `window_end`), one file per window: a replay of the partition overwrites them.
    pub fn write(&mut self, batch: &RecordBatch, partition: i32) -> Result<Vec<String>> {
        self.write_named(batch, partition, "")
    }

    /// Writes revised rows (late labels): one file per window named after the partition's
    /// revision sequence number `seq`, next to the window's first file.
    pub fn write_revision(
        &mut self,
        batch: &RecordBatch,
        partition: i32,
        seq: u64,
    ) -> Result<Vec<String>> {
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
    pub fn write_at(&mut self, batch: &RecordBatch, partition: i32, at: i64) -> Result<String> {
        let name = format!("s{at:013}-{}-p{partition:05}.parquet", self.suffix);
        let key = format!("{}/{}/{name}", self.table, HivePartition::of(at).key());
        write_atomic(
            &self.store,
            &key,
            self.schema.clone(),
            std::slice::from_ref(batch),
            self.props.clone(),
        )?;
        self.files_written += 1;
        Ok(key)
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
    ) -> Result<Vec<String>> {
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
            let key = format!("{}/{}/{name}", self.table, HivePartition::of(start).key());
            write_atomic(
                &self.store,
                &key,
                self.schema.clone(),
                &[rows],
                self.props.clone(),
            )?;
            written.push(key);
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
        for key in table_files(&self.store, &self.table)? {
            if doomed(file_name(&key)) {
                self.store.delete(&key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(first: i64, generation: Option<u64>, temporary: bool) -> Option<PositionedName> {
        Some(PositionedName {
            first,
            generation,
            temporary,
        })
    }

    #[test]
    fn positioned_file_names_are_read_back() {
        let p = "group-8196-0-1-p00003";
        let parse = |n: &str| PositionedName::parse(n, p);
        let done = "group-8196-0-1-p00003-00000000000000000100-00000000000000000199.parquet";
        assert_eq!(parse(done), name(100, None, false));
        let tagged =
            "group-8196-0-1-p00003-00000000000000000100-00000000000000000199-g000012.parquet";
        assert_eq!(parse(tagged), name(100, Some(12), false));
        let tmp = ".group-8196-0-1-p00003-00000000000000000100-g000012.parquet.tmp";
        assert_eq!(parse(tmp), name(100, Some(12), true));
        let old_tmp = ".group-8196-0-1-p00003-00000000000000000100.parquet.tmp";
        assert_eq!(parse(old_tmp), name(100, None, true));
        // Another partition, another table's file, a stray name.
        assert_eq!(PositionedName::parse(done, "group-8196-0-1-p00013"), None);
        assert_eq!(parse("part-0.parquet"), None);
        assert_eq!(parse(".group-8196-0-1-p00003-x.parquet.tmp"), None);
    }

    #[test]
    fn a_start_under_a_claim_leaves_later_claims_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path());
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new(
                "ts",
                arrow::datatypes::DataType::Timestamp(
                    arrow::datatypes::TimeUnit::Millisecond,
                    None,
                ),
                false,
            ),
        ]));
        let table = |g: Option<u64>| {
            let mut t = PositionedTable::new(
                &store,
                "events",
                schema.clone(),
                0,
                "topic",
                0,
                1_000,
                &ParquetOptions::default(),
            )
            .unwrap();
            t.set_generation(g);
            t
        };
        let rows = |n: i64| {
            let ts = arrow::array::TimestampMillisecondArray::from_iter_values(0..n);
            RecordBatch::try_new(schema.clone(), vec![std::sync::Arc::new(ts)]).unwrap()
        };
        let files = || {
            let mut n: Vec<String> = store
                .list("events/")
                .unwrap()
                .iter()
                .map(|k| file_name(k).to_string())
                .collect();
            n.sort();
            n
        };
        // Claim 3 completed 0..=9 and 10..=19; claim 5 completed 10..=19 and is writing 20..
        let mut old = table(Some(3));
        old.append(&rows(10), 0, 9).unwrap();
        old.flush().unwrap();
        old.append(&rows(10), 10, 19).unwrap();
        old.flush().unwrap();
        let mut new = table(Some(5));
        new.append(&rows(10), 10, 19).unwrap();
        new.flush().unwrap();
        new.append(&rows(5), 20, 24).unwrap();
        // Claim 4 starts late, at offset 10: only claim 3's file from 10 on goes.
        assert_eq!(table(Some(4)).remove_from(10).unwrap(), 1);
        let left = files();
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(left
            .iter()
            .any(|n| n.ends_with("-00000000000000000009-g000003.parquet")));
        assert!(left
            .iter()
            .any(|n| n.ends_with("-00000000000000000019-g000005.parquet")));
        assert!(left.iter().any(|n| n.ends_with("-g000005.parquet.tmp")));
        // Claim 5's write completes undisturbed.
        new.flush().unwrap();
        // Claim 5 fenced: only its own files from 10 on go.
        assert_eq!(new.remove_generation_from(5, 10).unwrap(), 2);
        // Without claims (a replay), everything from 0 goes.
        assert_eq!(table(None).remove_from(0).unwrap(), 1);
        assert!(files().is_empty());
    }
}
