//! What a request must be: authenticated, JSON, within the size limit, a
//! version-4 payload of valid alerts; the refusals, and what they say.

use serde_json::{Value, json};

use crate::common::{TOKEN, firing, post, send, start};
use crate::support::{RecordingSink, webhook_payload};

#[tokio::test]
async fn unauthenticated_requests_get_401_and_never_trigger() {
    let sink = RecordingSink::new();
    let (r, server) = start(sink.clone()).await;
    let body = webhook_payload(&[firing("f1", "2026-11-27T12:00:00Z")])
        .to_string()
        .into_bytes();
    let cases = [
        (None, "missing `Authorization: Bearer <token>` header"),
        (Some("Bearer wrong-token"), "invalid bearer token"),
        (Some("Bearer s3cret-toke"), "invalid bearer token"),
        (Some("Bearer s3cret-token-and-more"), "invalid bearer token"),
        (Some("Basic czNjcmV0LXRva2Vu"), "not a bearer token"),
        (Some("s3cret-token"), "not a bearer token"),
    ];
    for (auth, want) in cases {
        let (status, body) = post(&server, auth, Some("application/json"), body.clone()).await;
        assert_eq!(status, 401, "{auth:?}");
        assert!(
            body["error"].as_str().unwrap().contains(want),
            "{auth:?}: {body}"
        );
    }
    // The scheme is case-insensitive, as in RFC 7235.
    let (status, _) = post(
        &server,
        Some(&format!("bearer {TOKEN}")),
        Some("application/json"),
        body.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(r.stats().rejected, 6);
    assert_eq!(sink.calls().len(), 1);
}

#[tokio::test]
async fn bad_requests_get_the_right_4xx_with_a_clear_message() {
    let sink = RecordingSink::new();
    let (r, server) = start(sink.clone()).await;
    let auth = format!("Bearer {TOKEN}");
    let good = webhook_payload(&[firing("f1", "2026-11-27T12:00:00Z")]);

    let (s, b) = post(
        &server,
        Some(&auth),
        Some("text/plain"),
        good.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str().unwrap()),
        (
            415,
            "Content-Type must be application/json, got \"text/plain\""
        )
    );
    let (s, b) = post(&server, Some(&auth), None, good.to_string().into_bytes()).await;
    assert_eq!(
        (s, b["error"].as_str().unwrap()),
        (415, "Content-Type must be application/json, got none")
    );

    let mut big = good.clone();
    big["commonAnnotations"] = json!({"description": "x".repeat(20_000)});
    let (s, b) = post(
        &server,
        Some(&auth),
        Some("application/json"),
        big.to_string().into_bytes(),
    )
    .await;
    assert_eq!(s, 413);
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("larger than the limit of 16384 bytes"),
        "{b}"
    );
    // Unauthenticated, a body too large is refused as unauthenticated, unread.
    let (s, _) = post(
        &server,
        Some("Bearer nope"),
        Some("application/json"),
        big.to_string().into_bytes(),
    )
    .await;
    assert_eq!(s, 401);

    let (s, b) = post(
        &server,
        Some(&auth),
        Some("application/json"),
        b"{\"version\": \"4\", ".to_vec(),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .starts_with("the body is not valid JSON"),
        "{b}"
    );
    let (s, _) = post(
        &server,
        Some(&auth),
        Some("application/json"),
        b"{} trailing".to_vec(),
    )
    .await;
    assert_eq!(s, 400);

    let mut unprocessable = Vec::new();
    let mut no_alerts = good.clone();
    no_alerts.as_object_mut().unwrap().remove("alerts");
    unprocessable.push((no_alerts, "missing field `alerts`"));
    let mut v3 = good.clone();
    v3["version"] = json!("3");
    unprocessable.push((v3, "payload version \"3\" is not supported"));
    let mut no_fp = good.clone();
    no_fp["alerts"][0]
        .as_object_mut()
        .unwrap()
        .remove("fingerprint");
    unprocessable.push((no_fp, "at `alerts[0]`: missing field `fingerprint`"));
    let mut bad_type = good.clone();
    bad_type["alerts"][0]["labels"] = json!({"severity": 3});
    unprocessable.push((bad_type, "at `alerts[0].labels.severity`"));
    let bad_start = webhook_payload(&[
        firing("f1", "2026-11-27T12:00:00Z"),
        firing("f2", "yesterday"),
    ]);
    unprocessable.push((bad_start, "`alerts[1].startsAt` is \"yesterday\""));
    let mut pending = good.clone();
    pending["alerts"][0]["status"] = json!("pending");
    unprocessable.push((pending, "`alerts[0].status` is \"pending\""));
    let empty_fp = webhook_payload(&[firing(" ", "2026-11-27T12:00:00Z")]);
    unprocessable.push((empty_fp, "`alerts[0].fingerprint` is empty"));
    for (payload, want) in unprocessable {
        let (s, b) = send(&server, &payload).await;
        assert_eq!(s, 422, "{want}: {b}");
        assert!(b["error"].as_str().unwrap().contains(want), "{want}: {b}");
    }
    // A payload refused as a whole triggers nothing, not even its good alerts.
    assert!(sink.calls().is_empty());
    assert_eq!(r.stats().rejected, 13);
    assert_eq!(r.stats().requests, 0);

    let resp = reqwest::Client::new()
        .get(server.url())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
}

#[tokio::test]
async fn control_characters_in_fingerprints_are_refused_naming_the_field() {
    let sink = RecordingSink::new();
    let (r, server) = start(sink.clone()).await;
    for fingerprint in [
        "a1b2\nINFO forged",
        "a1b2\tc3",
        "a1b2\r",
        "\u{7f}a1b2",
        "a1\u{85}b2",
    ] {
        let payload = webhook_payload(&[
            firing("ok", "2026-11-27T12:00:00Z"),
            firing(fingerprint, "2026-11-27T12:00:00Z"),
        ]);
        let (s, b) = send(&server, &payload).await;
        assert_eq!(s, 422, "{fingerprint:?}: {b}");
        let error = b["error"].as_str().unwrap();
        assert!(
            error.starts_with("`alerts[1].fingerprint` is ") && error.contains("control character"),
            "{fingerprint:?}: {error}"
        );
        assert!(!error.chars().any(char::is_control), "{error:?}");
    }
    assert!(sink.calls().is_empty());
    assert_eq!(r.stats().rejected, 5);

    // A summary may hold them: the audit sinks escape what they print.
    let mut payload = webhook_payload(&[firing("a1b2", "2026-11-27T12:00:00Z")]);
    payload["alerts"][0]["annotations"]["summary"] = json!("line one\nline two");
    let (s, b) = send(&server, &payload).await;
    assert_eq!(s, 200, "{b}");
    assert!(sink.calls()[0].1.summary.ends_with(": line one\nline two"));
}

#[tokio::test]
async fn a_body_that_is_not_utf8_is_not_json_400() {
    let sink = RecordingSink::new();
    let (r, server) = start(sink.clone()).await;
    let body = webhook_payload(&[firing("FINGERPRINT", "2026-11-27T12:00:00Z")]).to_string();
    let body = body
        .replace("FINGERPRINT", "a1\u{0}b2")
        .replace("\\u0000", "\u{0}")
        .into_bytes()
        .into_iter()
        .map(|b| if b == 0 { 0xff } else { b })
        .collect::<Vec<u8>>();
    assert!(std::str::from_utf8(&body).is_err());
    let (s, b) = post(
        &server,
        Some(&format!("Bearer {TOKEN}")),
        Some("application/json"),
        body,
    )
    .await;
    assert_eq!(s, 400, "{b}");
    let error = b["error"].as_str().unwrap();
    assert!(
        error.starts_with("the body is not valid JSON: it is not UTF-8"),
        "{error}"
    );
    // Also where the payload's own fields would not look: JSON is UTF-8 throughout.
    let mut body = webhook_payload(&[firing("a1b2", "2026-11-27T12:00:00Z")])
        .to_string()
        .into_bytes();
    let at = body.len() - 1;
    body.splice(at..at, b", \"extra\": \"\xc3\x28\"".iter().copied());
    let (s, b) = post(
        &server,
        Some(&format!("Bearer {TOKEN}")),
        Some("application/json"),
        body,
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(sink.calls().is_empty());
    assert_eq!(r.stats().rejected, 2);
}

#[tokio::test]
async fn a_content_type_that_is_not_ascii_is_reported_as_such() {
    let sink = RecordingSink::new();
    let (_r, server) = start(sink.clone()).await;
    let body = webhook_payload(&[firing("a1b2", "2026-11-27T12:00:00Z")]).to_string();
    let resp = reqwest::Client::new()
        .post(server.url())
        .bearer_auth(TOKEN)
        .header(
            "content-type",
            reqwest::header::HeaderValue::from_bytes(b"application/j\xc3\xa9son").unwrap(),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(
        b["error"].as_str().unwrap(),
        "Content-Type must be application/json; the Content-Type header is not ASCII: \"application/j\\xc3\\xa9son\"",
    );
    assert!(sink.calls().is_empty());
}

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let sink = RecordingSink::new();
    let (r, server) = start(sink.clone()).await;
    let body = webhook_payload(&[firing("a1b2", "2026-11-27T12:00:00Z")]).to_string();
    for second in [format!("Bearer {TOKEN}"), "Bearer wrong".to_owned()] {
        let resp = reqwest::Client::new()
            .post(server.url())
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("authorization", second)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        let b: Value = resp.json().await.unwrap();
        assert_eq!(
            b["error"].as_str().unwrap(),
            "the request has 2 Authorization headers; send one, `Authorization: Bearer <token>`"
        );
    }
    assert!(sink.calls().is_empty());
    assert_eq!(r.stats().rejected, 2);
}
