//! Writing one Parquet file so that readers never see half of it: on local disk a temporary
//! name, fsync, rename, fsync of the directory; on an object store one PUT.

use std::fs::{self, File};
use std::path::Path;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

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
            zstd_level: 3,
            row_group_rows: 128 * 1024,
        }
    }
}

impl ParquetOptions {
    pub fn writer_properties(&self) -> Result<WriterProperties> {
        Ok(WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(self.zstd_level)?))
            .set_max_row_group_row_count(Some(self.row_group_rows.max(1)))
            .build())
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
