//! Hive-style `date=YYYY-MM-DD/hour=HH` partitions and safe path components.

use std::collections::BTreeMap;

use arrow::array::{AsArray, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::TimestampMillisecondType;
use inferwatch_schemas::hash::fnv64;
use inferwatch_schemas::time::date_hour;

use crate::error::Result;

/// One `date=/hour=` partition. Its values come from timestamps only, so no event field can
/// steer a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HivePartition {
    pub date: String,
    pub hour: u32,
}

impl HivePartition {
    pub fn of(ms: i64) -> Self {
        let (date, hour) = date_hour(ms);
        Self { date, hour }
    }

    /// `date=2026-01-01/hour=05`, as a store key.
    pub fn key(&self) -> String {
        format!("date={}/hour={:02}", self.date, self.hour)
    }
}

/// Splits a batch by the hour of timestamp column `ts_col`, keeping row order inside each
/// partition.
pub fn split_by_hour(
    batch: &RecordBatch,
    ts_col: usize,
) -> Result<Vec<(HivePartition, RecordBatch)>> {
    let ts = batch
        .column(ts_col)
        .as_primitive::<TimestampMillisecondType>();
    let mut rows: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
    for i in 0..batch.num_rows() {
        let hour = ts.value(i).div_euclid(3_600_000);
        rows.entry(hour).or_default().push(i as u32);
    }
    if rows.len() == 1 {
        let (&hour, _) = rows.iter().next().expect("one partition");
        return Ok(vec![(HivePartition::of(hour * 3_600_000), batch.clone())]);
    }
    rows.into_iter()
        .map(|(hour, idx)| {
            let part = take_record_batch(batch, &UInt32Array::from(idx))?;
            Ok((HivePartition::of(hour * 3_600_000), part))
        })
        .collect()
}

/// Makes any text safe as one path component: keeps `[A-Za-z0-9_-]`, maps the rest to `_`,
/// caps the length, and appends a hash of the original when anything changed, so two
/// different names never collide.
pub fn sanitize_component(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    if out != s || out.is_empty() {
        out.push('-');
        out.push_str(&format!("{:08x}", fnv64(s.as_bytes()) as u32));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitized_components_cannot_climb_or_collide() {
        for bad in [
            "../../x",
            "/etc/passwd",
            "..",
            ".",
            "",
            "a/b",
            "a\\b",
            "x\0y",
        ] {
            let s = sanitize_component(bad);
            assert!(
                !s.contains('/') && !s.contains('\\') && !s.contains('.') && !s.is_empty(),
                "{bad} -> {s}"
            );
        }
        assert_ne!(sanitize_component("a/b"), sanitize_component("a_b"));
        assert_eq!(sanitize_component("traffic_1"), "traffic_1");
    }

    #[test]
    fn partition_paths_are_hive_style() {
        let p = HivePartition::of(1_767_225_600_000 + 5 * 3_600_000);
        assert_eq!(p.key(), "date=2026-01-01/hour=05");
    }
}
