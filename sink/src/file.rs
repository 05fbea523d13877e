//! Writing one Parquet file so that readers never see half of it: on local disk a temporary
//! name, fsync, rename, fsync of the directory; on an object store one PUT.

use std::fs::{self, File};
use std::path::Path;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use inferwatch_schemas::tables::{SELDOM_REPEATED, UNORDERED};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
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
    /// The writer settings for a file of `schema`: dictionaries only where values repeat,
    /// integers and times without one delta-encoded (times and offsets mostly grow by a
    /// little: zstd then gets a tenth of the bytes), no statistics where they prune nothing.
    pub fn writer_properties(&self, schema: &Schema) -> Result<WriterProperties> {
        let mut b = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(self.zstd_level)?))
            .set_max_row_group_row_count(Some(self.row_group_rows.max(1)));
        for field in schema.fields() {
            let name = field.name().as_str();
            if SELDOM_REPEATED.contains(&name) {
                b = b.set_column_dictionary_enabled(ColumnPath::from(name), false);
                if is_integer(field.data_type()) {
                    b = b
                        .set_column_encoding(ColumnPath::from(name), Encoding::DELTA_BINARY_PACKED);
                }
            }
            if UNORDERED.contains(&name) {
                b = b
                    .set_column_statistics_enabled(ColumnPath::from(name), EnabledStatistics::None);
            }
        }
        Ok(b.build())
    }
}

/// Whether Parquet stores `t` as INT32 or INT64, the physical types delta encoding takes.
fn is_integer(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int32 | DataType::Int64 | DataType::Timestamp(_, _) | DataType::Date32
    )
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

    use arrow::array::{ArrayRef, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    /// Unique ids go without a dictionary (the writer would drop it anyway, after hashing
    /// every value) and without statistics; a repeated name keeps both; times go
    /// delta-encoded, with statistics. Every column reads back unchanged.
    #[test]
    fn each_column_gets_the_encoding_and_statistics_its_values_call_for() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("service", DataType::Utf8, false),
            Field::new(
                "timestamp",
                inferwatch_schemas::tables::timestamp_type(),
                false,
            ),
        ]));
        let ids: Vec<String> = (0..20_000).map(|i| format!("ev-{i:08}")).collect();
        let services: Vec<&str> = (0..20_000).map(|i| ["a", "b", "c"][i % 3]).collect();
        let times = TimestampMillisecondArray::from_iter_values(
            (0..20_000).map(|i| 1_767_225_600_000 + i * 7 + i % 5),
        )
        .with_timezone("UTC");
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(StringArray::from(services)),
            Arc::new(times),
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
        let (id, service, time) = (group.column(0), group.column(1), group.column(2));
        assert!(id.dictionary_page_offset().is_none());
        assert!(id.statistics().is_none());
        assert!(service.dictionary_page_offset().is_some());
        assert!(service
            .statistics()
            .is_some_and(|s| s.min_bytes_opt() == Some(b"a")));
        assert!(time.dictionary_page_offset().is_none());
        assert!(time.encodings().any(|e| e == Encoding::DELTA_BINARY_PACKED));
        assert!(!time.encodings().any(|e| e == Encoding::PLAIN));
        // 20,000 times in steps of 7 or so: a few bits each where plain takes 64.
        assert!(
            time.uncompressed_size() < 20_000,
            "{}",
            time.uncompressed_size()
        );
        assert!(time.statistics().is_some_and(
            |s| s.min_bytes_opt() == Some(1_767_225_600_000i64.to_le_bytes().as_slice())
        ));
        let read: Vec<RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 8192)
                .unwrap()
                .collect::<std::result::Result<_, _>>()
                .unwrap();
        let back = arrow::compute::concat_batches(&batch.schema(), &read).unwrap();
        assert_eq!(back, batch);
    }
}
