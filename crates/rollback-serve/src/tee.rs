//! One audit sink that writes to several, in order: the watch file's audit
//! log first (the durable record), then the server's own (timelines and
//! metrics, notifications, an embedder's).

use std::sync::Arc;

use async_trait::async_trait;
use rollback_core::Result;
use rollback_core::audit::{AuditRecord, AuditSink};

/// Writes each record to every sink, in order; a failing sink does not
/// keep the record from the others (the first error is returned, for the
/// engine to log).
#[derive(Debug, Clone)]
pub(crate) struct Tee(Vec<Arc<dyn AuditSink>>);

impl Tee {
    pub(crate) fn new(sinks: Vec<Arc<dyn AuditSink>>) -> Self {
        Tee(sinks)
    }
}

#[async_trait]
impl AuditSink for Tee {
    async fn record(&self, record: &AuditRecord) -> Result<()> {
        let mut first = None;
        for sink in &self.0 {
            if let Err(e) = sink.record(record).await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
