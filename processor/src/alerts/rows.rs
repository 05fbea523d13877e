//! Rows of the `alerts` table.

use super::*;

#[derive(Default)]
pub(super) struct Rows {
    pub(super) len: usize,
    start: TimestampMillisecondBuilder,
    end: TimestampMillisecondBuilder,
    kind: StringBuilder,
    rule: StringBuilder,
    state: StringBuilder,
    previous: StringBuilder,
    severity: StringBuilder,
    service: StringBuilder,
    model: StringBuilder,
    model_version: StringBuilder,
    route: StringBuilder,
    tenant: StringBuilder,
    metric: StringBuilder,
    value: Float64Builder,
    op: StringBuilder,
    threshold: Float64Builder,
    samples: Int64Builder,
    notified: BooleanBuilder,
    renotify: BooleanBuilder,
    id: StringBuilder,
    summary: StringBuilder,
}

impl Rows {
    pub(super) fn push(&mut self, t: &Transition, rule: &Rule, id: Option<&str>) {
        self.len += 1;
        self.start.append_value(t.start);
        self.end.append_value(t.end);
        self.kind.append_value(match t.kind {
            NoticeKind::Alert => "alert",
            NoticeKind::Breaker => "breaker",
        });
        self.rule.append_value(&rule.name);
        self.state.append_value(t.state);
        self.previous.append_value(t.previous);
        self.severity.append_option(t.severity.map(|s| s.as_str()));
        self.service
            .append_option(Some(t.key.service.as_str()).filter(|s| !s.is_empty()));
        self.model.append_option(t.key.model.as_deref());
        self.model_version
            .append_option(t.key.model_version.as_deref());
        self.route.append_option(t.key.route.as_deref());
        self.tenant.append_option(t.key.tenant.as_deref());
        self.metric.append_value(&rule.metric);
        self.value.append_option(t.value);
        self.op.append_value(rule.op.as_str());
        self.threshold.append_option(t.threshold);
        self.samples.append_option(t.samples.map(|s| s as i64));
        self.notified.append_value(t.notified);
        self.renotify.append_value(t.renotify);
        self.id.append_option(id);
        self.summary.append_value(&t.summary);
    }

    pub(super) fn finish(mut self) -> Result<RecordBatch> {
        let schema: SchemaRef = alerts_schema();
        let utc = Some(Arc::from("UTC"));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.start.finish().with_timezone_opt(utc.clone())),
            Arc::new(self.end.finish().with_timezone_opt(utc)),
            Arc::new(self.kind.finish()),
            Arc::new(self.rule.finish()),
            Arc::new(self.state.finish()),
            Arc::new(self.previous.finish()),
            Arc::new(self.severity.finish()),
            Arc::new(self.service.finish()),
            Arc::new(self.model.finish()),
            Arc::new(self.model_version.finish()),
            Arc::new(self.route.finish()),
            Arc::new(self.tenant.finish()),
            Arc::new(self.metric.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.op.finish()),
            Arc::new(self.threshold.finish()),
            Arc::new(self.samples.finish()),
            Arc::new(self.notified.finish()),
            Arc::new(self.renotify.finish()),
            Arc::new(self.id.finish()),
            Arc::new(self.summary.finish()),
        ];
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}
