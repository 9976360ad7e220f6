//! The webhook over HTTP: the request checks, the refusals and the answers.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::payload::Payload;
use super::{AlertOutcome, AlertStatus, AlertmanagerReceiver, Printable, ReceiverStats, lock};

/// A refusal: status and message.
pub(super) struct Refusal(pub(super) StatusCode, pub(super) String);

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    if status == StatusCode::REQUEST_TIMEOUT {
        // The rest of the body may still come; the connection cannot be reused.
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"rollback\""),
        );
    }
    r
}

pub(super) async fn webhook(
    State(receiver): State<AlertmanagerReceiver>,
    request: Request,
) -> Response {
    receiver.handle(request).await
}

impl AlertmanagerReceiver {
    /// Authentication and content type, checked before the body is read.
    fn check_headers(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        // Which of two would count is a guess a proxy and this receiver could
        // make differently: judge neither.
        let count = headers.get_all(header::AUTHORIZATION).iter().count();
        if count > 1 {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                format!(
                    "the request has {count} Authorization headers; send one, `Authorization: Bearer <token>`"
                ),
            ));
        }
        let auth = headers.get(header::AUTHORIZATION).ok_or_else(|| {
            Refusal(
                StatusCode::UNAUTHORIZED,
                "missing `Authorization: Bearer <token>` header".into(),
            )
        })?;
        let auth = auth.as_bytes();
        let token = match auth.iter().position(|&b| b == b' ') {
            Some(i) if auth[..i].eq_ignore_ascii_case(b"bearer") => auth[i + 1..].trim_ascii(),
            _ => {
                return Err(Refusal(
                    StatusCode::UNAUTHORIZED,
                    "the Authorization header is not a bearer token (`Authorization: Bearer <token>`)".into(),
                ));
            }
        };
        if !bool::from(token.ct_eq(self.shared.token.expose().as_bytes())) {
            return Err(Refusal(
                StatusCode::UNAUTHORIZED,
                "invalid bearer token".into(),
            ));
        }
        let content_type = match headers.get(header::CONTENT_TYPE) {
            None => "",
            Some(v) => v.to_str().map_err(|_| {
                Refusal(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "Content-Type must be application/json; the Content-Type header is not ASCII: \"{}\"",
                        v.as_bytes().escape_ascii()
                    ),
                )
            })?,
        };
        let mime = content_type.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            let shown = if content_type.is_empty() {
                "none".to_owned()
            } else {
                format!("{content_type:?}")
            };
            return Err(Refusal(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type must be application/json, got {shown}"),
            ));
        }
        Ok(())
    }

    /// Read and check the payload.
    fn parse_body(&self, body: Result<Bytes, BytesRejection>) -> Result<Payload, Refusal> {
        let body = body.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Refusal(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "request body larger than the limit of {} bytes",
                        self.shared.max_body_bytes
                    ),
                )
            } else {
                Refusal(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the request body: {rejection}"),
                )
            }
        })?;
        Payload::parse(&body)
    }

    async fn handle(&self, request: Request) -> Response {
        // Headers first: an unauthenticated request is refused before its
        // body is read at all.
        let checked = match self.check_headers(request.headers()) {
            Ok(()) => {
                let timeout = self.shared.body_read_timeout;
                match tokio::time::timeout(timeout, Bytes::from_request(request, &())).await {
                    Ok(body) => self.parse_body(body),
                    Err(_) => Err(Refusal(
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "the request body did not arrive within {} (body_read_timeout)",
                            humantime::format_duration(timeout)
                        ),
                    )),
                }
            }
            Err(refusal) => Err(refusal),
        };
        let payload = match checked {
            Ok(p) => p,
            Err(Refusal(status, message)) => {
                lock(&self.shared.stats).rejected += 1;
                tracing::warn!(status = status.as_u16(), message = %Printable(&message), "refused an Alertmanager webhook request");
                return json_response(status, serde_json::json!({ "error": message }));
            }
        };
        if payload.truncated_alerts > 0 {
            tracing::warn!(
                truncated = payload.truncated_alerts,
                group_key = %Printable(&payload.group_key),
                "Alertmanager truncated the alerts of this notification (max_alerts); the missing ones were not seen"
            );
        }
        let mut counts = ReceiverStats::default();
        let mut sink_errors = Vec::new();
        for alert in payload.alerts {
            let record = self.handle_alert(&payload.receiver, alert).await;
            match (&record.status, &record.outcome) {
                (AlertStatus::Resolved, _) => counts.resolved += 1,
                (AlertStatus::Firing, outcome) => {
                    counts.firing += 1;
                    match outcome {
                        AlertOutcome::Triggered { .. } => counts.triggered += 1,
                        AlertOutcome::Duplicate => counts.duplicates += 1,
                        AlertOutcome::Unrouted { .. } => counts.unrouted += 1,
                        AlertOutcome::SinkFailed { error } => {
                            counts.sink_errors += 1;
                            sink_errors.push(error.clone());
                        }
                        AlertOutcome::Resolved => {}
                    }
                }
            }
            self.record(record);
        }
        {
            let mut stats = lock(&self.shared.stats);
            stats.requests += 1;
            stats.firing += counts.firing;
            stats.resolved += counts.resolved;
            stats.triggered += counts.triggered;
            stats.duplicates += counts.duplicates;
            stats.unrouted += counts.unrouted;
            stats.sink_errors += counts.sink_errors;
        }
        let summary = serde_json::json!({
            "firing": counts.firing,
            "resolved": counts.resolved,
            "triggered": counts.triggered,
            "duplicates": counts.duplicates,
            "unrouted": counts.unrouted,
        });
        if sink_errors.is_empty() {
            json_response(
                StatusCode::OK,
                serde_json::json!({ "status": "ok", "alerts": summary }),
            )
        } else {
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({
                    "error": format!("could not deliver {} trigger(s): {}", sink_errors.len(), sink_errors.join("; ")),
                    "alerts": summary,
                }),
            )
        }
    }
}
