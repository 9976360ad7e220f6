//! How reports are written: times as RFC 3339 in JSON, durations in words
//! in text.

use std::time::Duration;

use rollback_core::Timestamp;

pub(crate) fn rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

pub(crate) fn rfc3339_option<S: serde::Serializer>(
    t: &Option<Timestamp>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.collect_str(t),
        None => s.serialize_none(),
    }
}

/// Seconds as a policy writes a duration: `1m 30s`, `250ms`.
pub(crate) fn secs(s: f64) -> String {
    rollback_core::time::format_duration(Duration::from_millis((s * 1000.0).round() as u64))
}
