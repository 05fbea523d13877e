//! Hive-style `date=YYYY-MM-DD/hour=HH` partitions and safe path components.

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
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
    const HOUR: i64 = 3_600_000;
    let ts = batch
        .column(ts_col)
        .as_primitive::<TimestampMillisecondType>()
        .values();
    let Some(&first) = ts.first() else {
        return Ok(Vec::new());
    };
    // Nearly every batch lies in one hour: a min and max (one vectorised pass) prove it, and
    // the batch goes on whole, uncopied.
    let (lo, hi) = ts
        .iter()
        .fold((first, first), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    if lo.div_euclid(HOUR) == hi.div_euclid(HOUR) {
        return Ok(vec![(HivePartition::of(lo), batch.clone())]);
    }
    let hours: Vec<i64> = ts.iter().map(|t| t.div_euclid(HOUR)).collect();
    let mut distinct = hours.clone();
    distinct.sort_unstable();
    distinct.dedup();
    distinct
        .into_iter()
        .map(|hour| {
            let mask = BooleanArray::from_iter(hours.iter().map(|&h| Some(h == hour)));
            let part = filter_record_batch(batch, &mask)?;
            Ok((HivePartition::of(hour * HOUR), part))
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

    /// Rows from three hours, interleaved, land in their hours in their order; a batch
    /// inside one hour comes back whole.
    #[test]
    fn batches_split_by_hour_keep_row_order() {
        use std::sync::Arc;

        use arrow::array::{Int64Array, TimestampMillisecondArray};
        use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

        let base = 1_767_225_600_000 + 3 * 3_600_000;
        let times: Vec<i64> = (0..1_000i64)
            .map(|i| base + (i * 7_919) % 3 * 3_600_000 - 1_800_000 + i)
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("row", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampMillisecondArray::from(times.clone())),
                Arc::new(Int64Array::from_iter_values(0..1_000)),
            ],
        )
        .unwrap();
        let parts = split_by_hour(&batch, 0).unwrap();
        assert_eq!(parts.len(), 3);
        let mut seen = 0;
        for (hour, (partition, part)) in parts.iter().enumerate() {
            let expected: Vec<i64> = (0..1_000)
                .filter(|&i| {
                    times[i as usize].div_euclid(3_600_000)
                        == (base - 1_800_000) / 3_600_000 + hour as i64
                })
                .collect();
            let rows: Vec<i64> = part
                .column(1)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .values()
                .to_vec();
            assert_eq!(rows, expected);
            assert_eq!(*partition, HivePartition::of(times[expected[0] as usize]));
            seen += rows.len();
        }
        assert_eq!(seen, 1_000);

        // Out of order inside one hour: the batch comes back whole. The same first and
        // last rows with one row of another hour between them: split.
        let within = |times: Vec<i64>| {
            let n = times.len() as i64;
            RecordBatch::try_new(
                batch.schema(),
                vec![
                    Arc::new(TimestampMillisecondArray::from(times)),
                    Arc::new(Int64Array::from_iter_values(0..n)),
                ],
            )
            .unwrap()
        };
        let one_hour = within(vec![base + 500, base + 9, base + 3_599_999, base + 500]);
        let whole = split_by_hour(&one_hour, 0).unwrap();
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0].1, one_hour);
        let across = within(vec![base + 500, base + 3_600_000, base + 500]);
        let parts = split_by_hour(&across, 0).unwrap();
        assert_eq!(
            parts.iter().map(|p| p.1.num_rows()).collect::<Vec<_>>(),
            [2, 1]
        );
        assert!(split_by_hour(&batch.slice(0, 0), 0).unwrap().is_empty());
    }

    #[test]
    fn partition_paths_are_hive_style() {
        let p = HivePartition::of(1_767_225_600_000 + 5 * 3_600_000);
        assert_eq!(p.key(), "date=2026-01-01/hour=05");
    }
}
