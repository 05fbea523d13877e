//! Reading closed windows' rows into what each rule says about each key.

use super::*;

impl Alerting {
    pub(super) fn read(&self, table: Table, batch: &RecordBatch, out: &mut Readings) -> Result<()> {
        let starts = batch.column(0).as_primitive::<TimestampMillisecondType>();
        let ends = batch.column(1).as_primitive::<TimestampMillisecondType>();
        let keys = row_keys(table, batch);
        let mut columns: HashMap<String, Float64Array> = HashMap::new();
        let mut column = |name: &str| -> Result<()> {
            if !columns.contains_key(name) {
                if let Some(c) = batch.column_by_name(name) {
                    let f = cast(c, &DataType::Float64)?;
                    columns.insert(
                        name.to_string(),
                        f.as_primitive::<arrow::datatypes::Float64Type>().clone(),
                    );
                }
            }
            Ok(())
        };
        for rule in self.rules.iter().filter(|r| r.table == table) {
            column(&rule.metric)?;
            if let Some(s) = &rule.samples {
                column(s)?;
            }
        }
        for (i, key) in keys.into_iter().enumerate() {
            let readings = out.entry((starts.value(i), ends.value(i))).or_default();
            for (r, rule) in self.rules.iter().enumerate() {
                if rule.table != table || !rule.matches(&key) {
                    continue;
                }
                let get = |name: &str| {
                    columns
                        .get(name)
                        .filter(|c| c.is_valid(i))
                        .map(|c| c.value(i))
                        .filter(|v| v.is_finite())
                };
                readings.push((
                    r,
                    key.clone(),
                    Reading {
                        value: get(&rule.metric),
                        samples: rule.samples.as_deref().and_then(get).map(|s| s as u64),
                    },
                ));
            }
        }
        Ok(())
    }
}

/// The key each row of a `metrics` or `budgets` batch is about.
fn row_keys(table: Table, batch: &RecordBatch) -> Vec<AlertKey> {
    let text = |name: &str| -> Option<&StringArray> {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
    };
    let opt = |a: Option<&StringArray>, i: usize| {
        a.filter(|a| a.is_valid(i)).map(|a| a.value(i).to_string())
    };
    match table {
        Table::Metrics => {
            let (s, m, v, r) = (
                text("service"),
                text("model"),
                text("model_version"),
                text("route"),
            );
            (0..batch.num_rows())
                .map(|i| AlertKey {
                    service: opt(s, i).unwrap_or_default(),
                    model: opt(m, i),
                    model_version: opt(v, i),
                    route: opt(r, i),
                    tenant: None,
                })
                .collect()
        }
        Table::Budgets => {
            let (scope, name) = (text("scope"), text("name"));
            (0..batch.num_rows())
                .map(|i| {
                    let n = opt(name, i).unwrap_or_default();
                    let tenant = opt(scope, i).as_deref() == Some("tenant");
                    AlertKey {
                        service: if tenant { String::new() } else { n.clone() },
                        model: None,
                        model_version: None,
                        route: None,
                        tenant: tenant.then_some(n),
                    }
                })
                .collect()
        }
    }
}
