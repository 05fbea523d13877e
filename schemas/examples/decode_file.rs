//! Decodes an NDJSON file in batches of 8,192 lines: the decoder alone, for profiles
//! (`cargo build --profile profiling -p inferwatch-schemas --example decode_file`).
use std::sync::Arc;

use inferwatch_schemas::decode::EventDecoder;
use inferwatch_schemas::raw::RawBatch;

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: decode_file FILE.ndjson");
    let text = std::fs::read(path).expect("readable file");
    let mut decoder = EventDecoder::default();
    let (mut rows, mut rejects) = (0, 0);
    let mut batch = RawBatch::new(Arc::from("file"), 0);
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        batch.push(line, i as i64);
        if batch.len() == 8192 {
            let d = decoder.decode(&batch);
            (rows, rejects) = (rows + d.rows.len(), rejects + d.rejects.len());
            batch.clear();
        }
    }
    let d = decoder.decode(&batch);
    println!(
        "{} rows, {} rejects",
        rows + d.rows.len(),
        rejects + d.rejects.len()
    );
}
