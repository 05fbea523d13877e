//! NDJSON file replay: one payload per line, positions are line numbers (from 0). Used for
//! backfills and to measure the processor without a broker.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use inferwatch_schemas::RawBatch;

use crate::source::{Source, SourceError};

pub struct FileSource {
    name: String,
    path: String,
    reader: BufReader<File>,
    line: i64,
    read_bytes: u64,
    total_bytes: u64,
    source: Arc<str>,
    done: bool,
}

impl FileSource {
    /// Opens `path`; the source is named `file:<file name>`.
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let display = path.display().to_string();
        let file = File::open(path).map_err(|source| SourceError::Open {
            path: display.clone(),
            source,
        })?;
        let total_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| display.clone());
        let name = format!("file:{file_name}");
        Ok(Self {
            source: Arc::from(name.as_str()),
            name,
            path: display,
            reader: BufReader::with_capacity(1 << 20, file),
            line: 0,
            read_bytes: 0,
            total_bytes,
            done: false,
        })
    }
}

impl Source for FileSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_batch(&mut self, max: usize) -> Result<Option<RawBatch>, SourceError> {
        if self.done {
            return Ok(None);
        }
        let mut batch = RawBatch::with_capacity(self.source.clone(), 0, max, max * 400);
        while batch.len() < max {
            let buf = batch.buffer_mut();
            let start = buf.len();
            let n = self
                .reader
                .read_until(b'\n', buf)
                .map_err(|source| SourceError::Read {
                    path: self.path.clone(),
                    line: self.line,
                    source,
                })?;
            if n == 0 {
                self.done = true;
                break;
            }
            self.read_bytes += n as u64;
            // Strip the line ending (\n or \r\n); the payload is what is between.
            if buf.last() == Some(&b'\n') {
                buf.pop();
                if buf.len() > start && buf.last() == Some(&b'\r') {
                    buf.pop();
                }
            }
            batch.commit_tail(start, self.line);
            self.line += 1;
        }
        if batch.is_empty() {
            return Ok(None);
        }
        Ok(Some(batch))
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn progress(&self) -> Option<(u64, u64)> {
        Some((self.read_bytes, self.total_bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn lines_become_payloads_with_line_numbers() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"{\"a\":1}\r\n\n{\"b\":2}\nlast-without-newline")
            .unwrap();
        let mut src = FileSource::open(f.path()).unwrap();
        let b = src.next_batch(2).unwrap().unwrap();
        assert_eq!(
            (b.len(), b.payload(0), b.payload(1)),
            (2, &b"{\"a\":1}"[..], &b""[..])
        );
        let b = src.next_batch(10).unwrap().unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!((b.offset(0), b.offset(1)), (2, 3));
        assert_eq!(b.payload(1), b"last-without-newline");
        assert!(src.next_batch(10).unwrap().is_none());
    }

    #[test]
    fn missing_file_says_which() {
        let err = FileSource::open(Path::new("/nonexistent/x.ndjson"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/x.ndjson"), "{err}");
    }
}
