//! The local-disk side of [`super::Store`]: temporary names, fsync, rename (or link, for a
//! write that must not replace), an fsync of the directory.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{io_err, Result};

/// Creates `path`'s directory and a hidden temporary file beside it (a leading dot and a
/// `.tmp` suffix hide it from DataFusion, DuckDB and pyarrow).
pub(crate) fn create_tmp(path: &Path) -> Result<(PathBuf, File)> {
    let dir = path.parent().expect("files live in a directory");
    fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let name = path.file_name().expect("file name").to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let file = File::create(&tmp).map_err(io_err("creating", &tmp))?;
    Ok((tmp, file))
}

pub(super) fn write_all(mut file: File, tmp: &Path, bytes: &[u8]) -> Result<File> {
    file.write_all(bytes).map_err(io_err("writing", tmp))?;
    Ok(file)
}

pub(super) fn sync_dir(path: &Path) -> Result<()> {
    let dir = path.parent().expect("files live in a directory");
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing directory", dir))
}

pub(super) fn list_local(root: &Path, prefix: &str) -> Result<Vec<String>> {
    let start = root.join(prefix.trim_end_matches('/'));
    let mut out = Vec::new();
    let mut stack = vec![start];
    while let Some(d) = stack.pop() {
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => continue,
            Err(e) => return Err(io_err("listing", &d)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("listing", &d))?;
            let path = entry.path();
            let ft = entry.file_type().map_err(io_err("reading", &path))?;
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                if let Ok(rel) = path.strip_prefix(root) {
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}
