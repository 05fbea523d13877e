//! Lines of a file, read in large blocks: one copy from the kernel, one SIMD search for each
//! line's end (a buffered `read_until` paid a byte-wise search and a second copy per line).

use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;

/// How much is read at once; a longer line grows the buffer.
const BLOCK: usize = 1 << 20;

pub(crate) struct Lines {
    file: File,
    buf: Vec<u8>,
    /// The unread bytes of `buf`.
    unread: Range<usize>,
    eof: bool,
    /// Bytes handed out, line endings included.
    pub(crate) read_bytes: u64,
}

impl Lines {
    pub(crate) fn new(file: File) -> Self {
        Self {
            file,
            buf: vec![0; BLOCK],
            unread: 0..0,
            eof: false,
            read_bytes: 0,
        }
    }

    /// The next line without its ending (`\n` or `\r\n`); `None` at the end of the file.
    /// A last line without a newline counts.
    pub(crate) fn next_line(&mut self) -> io::Result<Option<&[u8]>> {
        let Some((line, newline)) = self.next_range()? else {
            return Ok(None);
        };
        let mut line = &self.buf[line];
        if let (true, [rest @ .., b'\r']) = (newline, line) {
            line = rest;
        }
        Ok(Some(line))
    }

    /// The next line's bytes, and whether a newline ended it.
    fn next_range(&mut self) -> io::Result<Option<(Range<usize>, bool)>> {
        loop {
            let Range { start, end } = self.unread;
            if let Some(n) = memchr::memchr(b'\n', &self.buf[start..end]) {
                self.unread.start = start + n + 1;
                self.read_bytes += n as u64 + 1;
                return Ok(Some((start..start + n, true)));
            }
            if self.eof {
                if start == end {
                    return Ok(None);
                }
                self.unread.start = end;
                self.read_bytes += (end - start) as u64;
                return Ok(Some((start..end, false)));
            }
            self.fill()?;
        }
    }

    /// Moves the partial line to the front and reads after it.
    fn fill(&mut self) -> io::Result<()> {
        let Range { start, end } = self.unread;
        self.buf.copy_within(start..end, 0);
        let mut end = end - start;
        if end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.file.read(&mut self.buf[end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            break;
        }
        self.unread = 0..end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines_of(text: &[u8]) -> Vec<Vec<u8>> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text).unwrap();
        let mut lines = Lines::new(File::open(f.path()).unwrap());
        let mut out = Vec::new();
        while let Some(l) = lines.next_line().unwrap() {
            out.push(l.to_vec());
        }
        assert_eq!(lines.read_bytes, text.len() as u64, "every byte counted");
        out
    }

    #[test]
    fn splits_like_read_until_across_block_ends_and_long_lines() {
        // Lines of every length around the block size, a line longer than two blocks, CRLF
        // endings, empty lines and a last line without a newline.
        let mut text = Vec::new();
        let mut want = Vec::new();
        for (i, len) in [0, 1, 7, BLOCK - 3, BLOCK, 2 * BLOCK + 5, 3, 0]
            .iter()
            .enumerate()
        {
            let line: Vec<u8> = (0..*len).map(|j| b'a' + ((i + j) % 26) as u8).collect();
            text.extend_from_slice(&line);
            text.extend_from_slice(if i % 2 == 0 { b"\n" } else { b"\r\n" });
            want.push(line);
        }
        text.extend_from_slice(b"last\r");
        want.push(b"last\r".to_vec());
        assert_eq!(lines_of(&text), want);
        assert_eq!(lines_of(b""), Vec::<Vec<u8>>::new());
        assert_eq!(lines_of(b"\n"), vec![Vec::<u8>::new()]);
    }
}
