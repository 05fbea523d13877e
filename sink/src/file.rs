//! Writing one Parquet file so that readers never see half of it: on local disk a temporary
//! name, fsync, rename, fsync of the directory; on an object store one PUT.

use std::fs::{self, File};
use std::path::Path;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use inferwatch_schemas::tables::SELDOM_REPEATED;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::error::{io_err, Result};
use crate::store::Store;

/// Parquet settings shared by every table.
#[derive(Debug, Clone)]
pub struct ParquetOptions {
    /// zstd level, 1 (fast) to 22 (small).
    pub zstd_level: i32,
    /// Rows per row group.
    pub row_group_rows: usize,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        Self {
            zstd_level: 1,
            row_group_rows: 128 * 1024,
        }
    }
}

impl ParquetOptions {
    /// The writer settings for a file of `schema`: dictionaries only where values repeat.
    pub fn writer_properties(&self, schema: &Schema) -> Result<WriterProperties> {
        let mut b = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(self.zstd_level)?))
            .set_max_row_group_row_count(Some(self.row_group_rows.max(1)));
        for field in schema.fields() {
            if SELDOM_REPEATED.contains(&field.name().as_str()) {
                b = b.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
            }
        }
        Ok(b.build())
    }
}

/// Writes `batches` as the Parquet file `key` of `store`, atomically: readers see the old
/// file or the whole new one. An existing file of that name is replaced.
pub fn write_atomic(
    store: &Store,
    key: &str,
    schema: SchemaRef,
    batches: &[RecordBatch],
    props: WriterProperties,
) -> Result<()> {
    let mut writer = ArrowWriter::try_new(store.create(key)?, schema, Some(props))?;
    for b in batches {
        writer.write(b)?;
    }
    store.finish(writer.into_inner()?, key)
}

/// Makes a fully written temporary file durable under its final name: fsync, rename over
/// `path`, fsync of the directory (so the rename itself survives a crash).
pub(crate) fn persist(file: File, tmp: &Path, path: &Path) -> Result<()> {
    file.sync_all().map_err(io_err("syncing", tmp))?;
    drop(file);
    fs::rename(tmp, path).map_err(io_err("renaming into place", path))?;
    let dir = path.parent().expect("files live in a directory");
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing directory", dir))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, StringArray};
    use arrow::datatypes::{DataType, Field};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    /// Unique ids go without a dictionary (the writer would drop it anyway, after hashing
    /// every value); a repeated name keeps one, and both read back unchanged.
    #[test]
    fn only_columns_whose_values_repeat_get_a_dictionary() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("service", DataType::Utf8, false),
        ]));
        let ids: Vec<String> = (0..20_000).map(|i| format!("ev-{i:08}")).collect();
        let services: Vec<&str> = (0..20_000).map(|i| ["a", "b", "c"][i % 3]).collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(StringArray::from(services)),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let props = ParquetOptions::default()
            .writer_properties(&schema)
            .unwrap();
        let file = tempfile::tempfile().unwrap();
        let mut writer = ArrowWriter::try_new(file, schema, Some(props)).unwrap();
        writer.write(&batch).unwrap();
        let file = writer.into_inner().unwrap();

        let reader = SerializedFileReader::new(file.try_clone().unwrap()).unwrap();
        let group = reader.metadata().row_group(0);
        assert!(group.column(0).dictionary_page_offset().is_none());
        assert!(group.column(1).dictionary_page_offset().is_some());
        let read: Vec<RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 8192)
                .unwrap()
                .collect::<std::result::Result<_, _>>()
                .unwrap();
        let back = arrow::compute::concat_batches(&batch.schema(), &read).unwrap();
        assert_eq!(back, batch);
    }
}
