//! Alertmanager's webhook payload (version 4): its types, and the checks a
//! body passes before any of its alerts is handled.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use rollback_core::Timestamp;
use serde::Deserialize;

use super::PAYLOAD_VERSION;
use super::http::Refusal;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Payload {
    pub(super) version: String,
    #[serde(default)]
    pub(super) group_key: String,
    #[serde(default)]
    pub(super) truncated_alerts: u64,
    #[serde(default)]
    pub(super) receiver: String,
    pub(super) alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Alert {
    pub(super) status: String,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) annotations: BTreeMap<String, String>,
    pub(super) starts_at: String,
    pub(super) fingerprint: String,
}

impl Payload {
    /// Parse and check a request body: 400 if it is not JSON (nor UTF-8),
    /// 422 if it is JSON but not a version-4 payload or one of its alerts is
    /// invalid (unknown status, empty fingerprint or one with a control
    /// character, `startsAt` not a time).
    pub(super) fn parse(body: &[u8]) -> Result<Payload, Refusal> {
        // JSON is UTF-8 throughout (RFC 8259), also in the fields this
        // payload does not read and the parser would skip unchecked.
        if let Err(e) = std::str::from_utf8(body) {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body is not valid JSON: it is not UTF-8 (invalid byte at offset {})",
                    e.valid_up_to()
                ),
            ));
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        let parsed: Result<Payload, _> = serde_path_to_error::deserialize(&mut de);
        let payload = match parsed.map(|p| de.end().map(|()| p)) {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                return Err(Refusal(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not valid JSON: {e}"),
                ));
            }
            Err(e) => {
                // Syntax first: a body that is not JSON at all is 400 even if
                // its start already missed a field.
                if let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                    return Err(Refusal(
                        StatusCode::BAD_REQUEST,
                        format!("the body is not valid JSON: {syntax}"),
                    ));
                }
                let path = e.path().to_string();
                return Err(Refusal(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "not an Alertmanager webhook payload: at `{path}`: {}",
                        e.into_inner()
                    ),
                ));
            }
        };
        if payload.version != PAYLOAD_VERSION {
            return Err(Refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "webhook payload version {:?} is not supported; this receiver reads version {PAYLOAD_VERSION:?}",
                    payload.version
                ),
            ));
        }
        for (i, a) in payload.alerts.iter().enumerate() {
            a.check(i)?;
        }
        Ok(payload)
    }
}

impl Alert {
    /// The checks of `alerts[i]`.
    fn check(&self, i: usize) -> Result<(), Refusal> {
        if self.status != "firing" && self.status != "resolved" {
            return Err(Refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "`alerts[{i}].status` is {:?}; expected \"firing\" or \"resolved\"",
                    self.status
                ),
            ));
        }
        if self.fingerprint.trim().is_empty() {
            return Err(Refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("`alerts[{i}].fingerprint` is empty"),
            ));
        }
        // The fingerprint is part of the trigger's key, which timelines print.
        if self.fingerprint.chars().any(char::is_control) {
            return Err(Refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "`alerts[{i}].fingerprint` is {:?}, which holds a control character; Alertmanager's fingerprints are hexadecimal",
                    self.fingerprint
                ),
            ));
        }
        if Timestamp::parse(&self.starts_at).is_none() {
            return Err(Refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "`alerts[{i}].startsAt` is {:?}, not an RFC 3339 time",
                    self.starts_at
                ),
            ));
        }
        Ok(())
    }
}
