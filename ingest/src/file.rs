//! NDJSON file replay: one payload per line, positions are line numbers (from 0). Used for
//! backfills and to measure the processor without a broker.
//!
//! A file can be read as several partitions, so that it is processed on several threads:
//! each line goes to the partition of its `service` (FNV-1a hash modulo the count), so a
//! service's events stay together and in file order, and the same file and count always
//! give the same partitions.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use inferwatch_schemas::bytes::{find, Block};
use inferwatch_schemas::hash::fnv64;
use inferwatch_schemas::RawBatch;

use crate::lines::Lines;
use crate::source::{Source, SourceError};

pub struct FileSource {
    name: String,
    path: String,
    lines: Lines,
    line: i64,
    total_bytes: u64,
    source: Arc<str>,
    done: bool,
    /// Partitions the file is read as; 1: one, holding every line.
    partitions: u32,
    /// Partitioned reading: lines gathered per partition, and batches ready to hand out.
    gathering: Vec<Option<RawBatch>>,
    /// Bytes of the lines in `gathering`.
    gathered: usize,
    /// Bytes of the lines read so far: batches reserve what `max` such lines need, since
    /// growing a batch copies it.
    line_bytes: u64,
    ready: VecDeque<RawBatch>,
}

/// Partitioned reading gathers at most this many full batches' worth of lines (at 400
/// bytes a line) over all partitions; past it the partition holding most hands out its
/// batch early. A file read as many partitions thus holds as much as 16 do, not a batch
/// each (smaller batches cost time: at 16 the default reads whole batches).
const GATHERED_BATCHES: usize = 16;

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
            lines: Lines::new(file),
            line: 0,
            total_bytes,
            done: false,
            partitions: 1,
            gathering: Vec::new(),
            gathered: 0,
            line_bytes: 0,
            ready: VecDeque::new(),
        })
    }

    /// Reads the file as `n` partitions keyed by `service` (1: one partition).
    pub fn with_partitions(mut self, n: u32) -> Self {
        self.partitions = n.max(1);
        self.gathering = (0..self.partitions).map(|_| None).collect();
        self
    }

    /// Partition `p`'s gathered lines become a batch ready to hand out.
    fn hand_out(&mut self, p: usize) {
        if let Some(batch) = self.gathering[p].take() {
            self.gathered -= batch.bytes();
            self.ready.push_back(batch);
        }
    }

    /// Partitioned reading: lines gather per partition; a partition's batch is handed out
    /// once it holds `max` lines, and at the end of the file what is left, in partition
    /// order.
    fn next_partitioned(&mut self, max: usize) -> Result<Option<RawBatch>, SourceError> {
        loop {
            if let Some(b) = self.ready.pop_front() {
                return Ok(Some(b));
            }
            if self.done {
                return Ok(self.gathering.iter_mut().find_map(Option::take));
            }
            let at = self.line;
            let Some(line) = self.lines.next_line().map_err(read_error(&self.path, at))? else {
                self.done = true;
                continue;
            };
            let p = partition_of(line, self.partitions);
            let (source, line_bytes, lines) = (&self.source, self.line_bytes, self.line);
            let batch = self.gathering[p].get_or_insert_with(|| {
                // Reserved, not touched: pages count once lines fill them.
                let bytes = batch_bytes(line_bytes, lines, max);
                RawBatch::with_capacity(source.clone(), p as i32, max, bytes)
            });
            batch.push(line, at);
            self.gathered += line.len();
            self.line_bytes += line.len() as u64;
            self.line += 1;
            if batch.len() >= max {
                self.hand_out(p);
            } else if self.gathered > GATHERED_BATCHES * max * 400 {
                let fullest = (0..self.gathering.len())
                    .max_by_key(|&q| self.gathering[q].as_ref().map_or(0, RawBatch::bytes))
                    .expect("a partition gathers");
                self.hand_out(fullest);
            }
        }
    }
}

/// Bytes to reserve for `max` lines: their mean length so far and an eighth more (400 a
/// line before any was read).
fn batch_bytes(line_bytes: u64, lines: i64, max: usize) -> usize {
    let mean = match lines {
        0 => 400,
        n => (line_bytes / n as u64) as usize,
    };
    max * (mean + mean / 8 + 1)
}

fn read_error(path: &str, line: i64) -> impl FnOnce(std::io::Error) -> SourceError + '_ {
    move |source| SourceError::Read {
        path: path.to_owned(),
        line,
        source,
    }
}

/// The partition of a line: by its `service` (lines without one go to partition 0).
fn partition_of(line: &[u8], partitions: u32) -> usize {
    let hash = match scan_service(line) {
        Scan::Found(s) => Some(fnv64(s)),
        Scan::Missing => None,
        Scan::Unsure => parse_service(line).map(|s| fnv64(s.as_bytes())),
    };
    hash.map_or(0, |h| (h % partitions as u64) as usize)
}

/// A full parse: for the lines the scan leaves to it (escapes, not an object).
fn parse_service(line: &[u8]) -> Option<Cow<'_, str>> {
    #[derive(serde::Deserialize)]
    struct Key<'a> {
        #[serde(borrow, default)]
        service: Option<Cow<'a, str>>,
    }
    serde_json::from_slice::<Key>(line)
        .ok()
        .and_then(|k| k.service)
}

/// What a scan of a line found of its top-level `service`.
#[derive(Debug, PartialEq)]
enum Scan<'a> {
    /// The name's bytes, valid UTF-8.
    Found(&'a [u8]),
    /// No top-level `service` string before the line ends.
    Missing,
    /// Escapes or an unexpected shape: a full parse decides.
    Unsure,
}

/// Finds the top-level `"service": "..."` without parsing the line: the reader runs on one
/// thread ahead of every worker, so it must cost a fraction of a parse.
fn scan_service(line: &[u8]) -> Scan<'_> {
    quick_service(line).unwrap_or_else(|| walk_service(line))
}

/// The key with its quotes.
const SERVICE_KEY: &[u8] = b"\"service\"";

/// The common case in a few block masks: the line is one flat object up to its key (no
/// nesting, no escapes), so that the quotes alternate opening and closing strings, and a
/// string opened after `{` or `,` is a key. Only quotes followed by an `s` are looked at.
/// `None` leaves the line to [`walk_service`].
fn quick_service(line: &[u8]) -> Option<Scan<'_>> {
    let open = skip_ws(line, 0);
    if line.get(open) != Some(&b'{') {
        return None;
    }
    // Whether the block starts inside a string.
    let mut inside = false;
    let mut at = open + 1;
    while at < line.len() {
        let block = Block::new(&block_at(line, at));
        let (quotes, nested) = (block.mask(*b"\""), block.mask(*b"{[\\"));
        // A block's last quote may have its `s` in the next block: the compare decides.
        let mut candidates = quotes & (block.mask(*b"s") >> 1 | 1 << 15);
        while candidates != 0 {
            let i = candidates.trailing_zeros();
            let before = (1u32 << i) - 1;
            if nested & before != 0 {
                return None;
            }
            let opens = !(inside ^ ((quotes & before).count_ones() & 1 == 1));
            let pos = at + i as usize;
            if opens && line[pos..].starts_with(SERVICE_KEY) {
                let prev = line[..pos].iter().rev().find(|c| !c.is_ascii_whitespace());
                if matches!(prev, Some(b'{' | b',')) {
                    return Some(service_value(line, pos + SERVICE_KEY.len()));
                }
            }
            candidates &= candidates - 1;
        }
        if nested != 0 {
            return None;
        }
        inside ^= quotes.count_ones() & 1 == 1;
        at += 16;
    }
    None
}

/// The 16 bytes of `line` from `at`, padded with blanks past its end.
fn block_at(line: &[u8], at: usize) -> [u8; 16] {
    match line.get(at..at + 16) {
        Some(block) => block.try_into().expect("sixteen bytes"),
        None => {
            let mut block = [b' '; 16];
            let rest = &line[at..];
            block[..rest.len()].copy_from_slice(rest);
            block
        }
    }
}

/// Walks the line's strings and brackets to the top-level key: any shape, stopping at the
/// key, which producers write near the front.
fn walk_service(line: &[u8]) -> Scan<'_> {
    let mut i = skip_ws(line, 0);
    if line.get(i) != Some(&b'{') {
        return Scan::Unsure;
    }
    i += 1;
    let (mut depth, mut expect_key) = (1usize, true);
    while i < line.len() {
        match line[i] {
            b'"' => {
                let Some((end, escaped)) = string_end(line, i + 1) else {
                    return Scan::Missing;
                };
                let is_key = depth == 1 && expect_key;
                if is_key && escaped {
                    return Scan::Unsure;
                }
                if is_key && &line[i + 1..end] == b"service" {
                    return service_value(line, end + 1);
                }
                expect_key = false;
                i = end + 1;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expect_key = true,
            _ => {}
        }
        i += 1;
    }
    Scan::Missing
}

/// What follows the top-level key `service` whose closing quote ends before `after`.
// Inlined into the scan: called, its three-word result went through the stack and the
// caller's wide load of it waited on the narrower stores (the reader thread spent a fifth
// of its time at that load).
#[inline(always)]
fn service_value(line: &[u8], after: usize) -> Scan<'_> {
    if line.get(after..after + 2) == Some(b":\"") {
        // The usual `"service":"name"`: a name that ends in the block after its quote,
        // ASCII, is found from that block's masks alone.
        let start = after + 2;
        let block = Block::new(&block_at(line, start));
        let end = block.mask(*b"\"\\");
        if end != 0 {
            let n = end.trailing_zeros() as usize;
            let ascii = block.high() & ((1 << n) - 1) == 0;
            let e = start + n;
            if ascii && line.get(e) == Some(&b'"') {
                return Scan::Found(&line[start..e]);
            }
        }
    }
    let v = skip_ws(line, after);
    if line.get(v) != Some(&b':') {
        return Scan::Unsure;
    }
    let v = skip_ws(line, v + 1);
    if line.get(v) != Some(&b'"') {
        // A number, null, an object: not a service name.
        return Scan::Missing;
    }
    match find(line, v + 1, *b"\"\\").map(|e| (e, line[e] == b'\\')) {
        Some((e, false)) => {
            // Names are short and nearly always ASCII: checked a word at a time, where a
            // UTF-8 check costs more than the scan.
            let name = &line[v + 1..e];
            match name.is_ascii() || std::str::from_utf8(name).is_ok() {
                true => Scan::Found(name),
                false => Scan::Unsure,
            }
        }
        Some((_, true)) => Scan::Unsure,
        None => Scan::Missing,
    }
}

fn skip_ws(line: &[u8], mut i: usize) -> usize {
    while line.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// The index of the quote that closes the string starting at `from`, and whether it held
/// escapes; `None` when the line ends first.
fn string_end(line: &[u8], mut from: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    while let Some(n) = memchr::memchr2(b'"', b'\\', line.get(from..)?) {
        from += n;
        if line[from] == b'"' {
            return Some((from, escaped));
        }
        escaped = true;
        from += 2;
    }
    None
}

impl Source for FileSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_batch(&mut self, max: usize) -> Result<Option<RawBatch>, SourceError> {
        if self.partitions > 1 {
            return self.next_partitioned(max);
        }
        if self.done {
            return Ok(None);
        }
        let bytes = batch_bytes(self.line_bytes, self.line, max);
        let mut batch = RawBatch::with_capacity(self.source.clone(), 0, max, bytes);
        while batch.len() < max {
            let at = self.line;
            let Some(line) = self.lines.next_line().map_err(read_error(&self.path, at))? else {
                self.done = true;
                break;
            };
            batch.push(line, at);
            self.line_bytes += line.len() as u64;
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
        Some((self.lines.read_bytes, self.total_bytes))
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
    fn partitions_keep_each_service_together_and_in_order() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut text = String::new();
        for i in 0..40 {
            let service = ["a", "b", "c", "d", "e"][i % 5];
            text += &format!("{{\"service\":\"{service}\",\"i\":{i}}}\n");
        }
        text += "not json\n";
        f.write_all(text.as_bytes()).unwrap();
        let read = |n| {
            let mut src = FileSource::open(f.path()).unwrap().with_partitions(n);
            let mut batches = Vec::new();
            while let Some(b) = src.next_batch(3).unwrap() {
                batches.push(b);
            }
            batches
        };
        let batches = read(4);
        let mut seen = Vec::new();
        for b in &batches {
            assert!(b.len() <= 3);
            for i in 0..b.len() {
                let line = std::str::from_utf8(b.payload(i)).unwrap();
                assert_eq!(partition_of(b.payload(i), 4) as i32, b.partition, "{line}");
                seen.push((b.partition, b.offset(i)));
            }
        }
        // Every line once, with its line number; within a partition in file order.
        let mut offsets: Vec<i64> = seen.iter().map(|s| s.1).collect();
        offsets.sort();
        assert_eq!(offsets, (0..41).collect::<Vec<_>>());
        for p in 0..4 {
            let o: Vec<i64> = seen.iter().filter(|s| s.0 == p).map(|s| s.1).collect();
            assert!(o.windows(2).all(|w| w[0] < w[1]), "partition {p}: {o:?}");
        }
        // The same file and count give the same batches.
        let again: Vec<(i32, i64)> = read(4).iter().map(|b| (b.partition, b.offset(0))).collect();
        let first: Vec<(i32, i64)> = batches.iter().map(|b| (b.partition, b.offset(0))).collect();
        assert_eq!(again, first);
    }

    #[test]
    fn many_partitions_gather_a_few_batches_not_one_each() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let pad = "x".repeat(380);
        let mut text = String::new();
        for i in 0..20_000 {
            text += &format!("{{\"service\":\"s{}\",\"pad\":\"{pad}\"}}\n", i % 97);
        }
        f.write_all(text.as_bytes()).unwrap();
        let (max, partitions) = (20, 64);
        let mut src = FileSource::open(f.path())
            .unwrap()
            .with_partitions(partitions);
        let mut seen = vec![Vec::new(); partitions as usize];
        let mut early = 0;
        while let Some(b) = src.next_batch(max).unwrap() {
            // Gathering holds its budget and at most one line over it.
            assert!(src.gathered <= GATHERED_BATCHES * max * 400 + 420);
            early += usize::from(b.len() < max);
            for i in 0..b.len() {
                seen[b.partition as usize].push(b.offset(i));
            }
        }
        assert!(early > 100, "{early} batches handed out early");
        let mut all: Vec<i64> = seen.iter().flatten().copied().collect();
        for o in &seen {
            assert!(o.windows(2).all(|w| w[0] < w[1]));
        }
        all.sort();
        assert_eq!(all, (0..20_000).collect::<Vec<_>>());
    }

    /// The service the scan finds (with the parse when it is unsure) is the parse's.
    fn scan_agrees_with_parse(line: &str) {
        let scanned = match scan_service(line.as_bytes()) {
            Scan::Found(s) => Some(String::from_utf8(s.to_vec()).unwrap()),
            Scan::Missing => None,
            Scan::Unsure => parse_service(line.as_bytes()).map(|s| s.into_owned()),
        };
        let parsed = parse_service(line.as_bytes()).map(|s| s.into_owned());
        assert_eq!(scanned, parsed, "{line}");
    }

    #[test]
    fn the_scan_finds_the_service_a_parse_finds() {
        let lines: &[&str] = &[
            r#"{"service":"a","model":"m"}"#,
            r#"  { "event_id" : "x" , "service" : "b" }"#,
            r#"{"attributes":{"service":"nested"},"service":"top"}"#,
            r#"{"flags":["service",{"service":"deep"}],"service":"c"}"#,
            r#"{"note":"a \"service\": \"fake\"","service":"d"}"#,
            r#"{"service":"with \"escapes\""}"#,
            r#"{"ser\u0076ice":"escaped key"}"#,
            r#"{"service":null}"#,
            r#"{"service":42}"#,
            r#"{"model":"m"}"#,
            r#"["service","x"]"#,
            r#"{"service":"#,
            r#"{"service":"ünïcode"}"#,
            // The quick search's first match is a value, or sits after nesting or escapes.
            r#"{"a":"service","service":"t"}"#,
            r#"{"a" : "service" , "service" : "u"}"#,
            r#"{"a":{"b":1},"service":"v"}"#,
            r#"{"a":"x\"y","service":"w"}"#,
            r#"{"a":"service:","service":"x"}"#,
            r#"{"service" "y"}"#,
        ];
        for line in lines {
            scan_agrees_with_parse(line);
        }
        assert_eq!(scan_service(br#"{"a":1,"service":"s"}"#), Scan::Found(b"s"));
        assert_eq!(scan_service(br#"{"service":"with \"q\""}"#), Scan::Unsure);
        // The quick search answers flat lines itself and leaves the others to the walk.
        assert_eq!(
            quick_service(br#"{"a":1,"service":"s"}"#),
            Some(Scan::Found(b"s"))
        );
        assert_eq!(
            quick_service(br#"{"a":"service","service":"t"}"#),
            Some(Scan::Found(b"t"))
        );
        assert_eq!(quick_service(br#"{"a":[1],"service":"s"}"#), None);
        assert_eq!(quick_service(br#"{"model":"m"}"#), None);
    }

    #[test]
    fn the_scan_agrees_with_a_parse_wherever_the_key_falls_in_a_block() {
        // Prefixes of every length before the key (so it opens at every offset of a
        // 16-byte block), of each shape the quick scan takes or leaves to the walk.
        // Each with whether the quick scan answers it itself.
        let shapes = [
            (r#"{"a":"PAD","service":"s1"}"#, true),
            (
                r#"{"a":"PAD","service":"a-service-name-longer-than-a-block"}"#,
                true,
            ),
            (r#"{"a":"PAD","service":"nämé"}"#, true),
            (
                r#"{"s":"sss","ss":"PAD","sservice":1,"service":"s9"}"#,
                true,
            ),
            (r#"{"a":"service","b":"PAD","service":"s2"}"#, true),
            (r#"{ "a" : "PAD" , "service" : "s3" }"#, true),
            (r#"{"a":"PAD","service":"with \"q\""}"#, true),
            (r#"{"a":"PAD","service":"#, true),
            (r#"{"a":"P{A[D","service":"s4"}"#, false),
            (r#"{"a":"PAD\"","service":"s5"}"#, false),
            (r#"{"a":{"service":"PAD"},"service":"s6"}"#, false),
            (r#"{"a":["PAD"],"service":"s7"}"#, false),
            (r#"{"a":"PAD","b":1}"#, false),
        ];
        for (shape, quick) in shapes {
            for n in 0..40 {
                let line = shape.replace("PAD", &"x".repeat(n));
                scan_agrees_with_parse(&line);
                assert_eq!(quick_service(line.as_bytes()).is_some(), quick, "{line}");
            }
        }
    }

    #[test]
    fn missing_file_says_which() {
        let err = FileSource::open(Path::new("/nonexistent/x.ndjson"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/x.ndjson"), "{err}");
    }
}
