//! The web probe against loopback servers that answer as Datadog's and
//! Google Cloud Monitoring's query APIs document (tests/support), and
//! against endpoints that misbehave.

mod support;

use std::time::Duration;

use rollback_core::{ErrorKind, HealthProbe, Measurement, ProbeContext, Timestamp};
use rollback_web::{Aggregate, Headers, Method, SamplePaths, WebConfig, WebProbe};

/// 2026-12-01T12:00:00Z
const AT: i64 = 1_796_126_400_000;

fn context(revision: &str) -> ProbeContext {
    ProbeContext::new(
        "k8s:shop/checkout".into(),
        revision.into(),
        Timestamp::from_millis(AT),
    )
}

fn datadog_headers() -> Headers {
    Headers::Map(
        [
            ("DD-API-KEY".to_owned(), "dd-api-key".into()),
            ("DD-APPLICATION-KEY".to_owned(), "dd-app-key".into()),
        ]
        .into(),
    )
}

fn datadog_v1(base: &str, query: &str) -> WebConfig {
    let mut c = WebConfig::new(format!(
        "{base}/api/v1/query?from={{{{start_seconds}}}}&to={{{{end_seconds}}}}&query={query}"
    ));
    c.headers = datadog_headers();
    c.json_path = "$.series[0].pointlist[-1][1]".into();
    c
}

async fn measure(config: WebConfig, revision: &str) -> rollback_core::Result<Measurement> {
    WebProbe::new("p", config)
        .expect("a valid config")
        .measure(&context(revision))
        .await
}

#[tokio::test]
async fn datadog_v1_query_reads_the_newest_point_of_the_revision() {
    let apis = support::start().await;
    let q = "sum:trace.http.request.errors{service:checkout,version:{{revision}}}.as_rate()";
    let m = measure(datadog_v1(&apis.url, q), "v2").await.unwrap();
    assert_eq!(m.value, Some(0.05));
    let seen = apis.last();
    assert_eq!(seen.path, "/api/v1/query");
    assert_eq!(
        seen.query["query"],
        "sum:trace.http.request.errors{service:checkout,version:v2}.as_rate()"
    );
    assert_eq!(seen.query["to"], (AT / 1000).to_string());
    assert_eq!(seen.query["from"], (AT / 1000 - 300).to_string());
    assert_eq!(seen.headers["accept"], "application/json");
    let m = measure(datadog_v1(&apis.url, q), "v1").await.unwrap();
    assert_eq!(m.value, Some(0.002));

    // The whole window, averaged.
    let mut avg = datadog_v1(&apis.url, q);
    avg.json_path = "$.series[0].pointlist[*][1]".into();
    avg.aggregate = Some(Aggregate::Avg);
    let m = measure(avg, "v2").await.unwrap();
    assert!((m.value.unwrap() - 0.05 * 2.4 / 3.0).abs() < 1e-12, "{m:?}");
}

#[tokio::test]
async fn datadog_errors_are_probe_errors_with_status_and_message() {
    let apis = support::start().await;
    let mut c = datadog_v1(&apis.url, "sum:x{*}");
    c.headers = Headers::default();
    let e = measure(c, "v2").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    let text = e.to_string();
    assert!(
        text.contains("HTTP 403") && text.contains("Forbidden"),
        "{text}"
    );
    assert!(
        text.contains(&format!("GET {}/api/v1/query", apis.url)) && !text.contains("from="),
        "the request is named without its query: {text}"
    );
    let e = measure(datadog_v1(&apis.url, "bad(x"), "v2")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("Error parsing query"), "{e}");
}

#[tokio::test]
async fn a_query_without_series_is_no_data() {
    let apis = support::start().await;
    let m = measure(datadog_v1(&apis.url, "sum:x{version:gone}"), "v2")
        .await
        .unwrap();
    assert_eq!(m, Measurement::NO_DATA);
}

#[tokio::test]
async fn datadog_v2_scalar_posts_a_json_body() {
    let apis = support::start().await;
    let mut c = WebConfig::new(format!("{}/api/v2/query/scalar", apis.url));
    c.method = Method::Post;
    c.headers = datadog_headers();
    c.json_body = Some(
        serde_json::json!({"data": {"type": "scalar_request", "attributes": {
            "from": "{{start_millis}}", "to": "{{end_millis}}",
            "formulas": [{"formula": "a"}],
            "queries": [{"data_source": "metrics", "name": "a", "aggregator": "max",
                         "query": "p99:trace.http.request.duration{version:{{revision}}}"}]
        }}}),
    );
    c.json_path = "{$.data.attributes.columns[0].values[0]}".into();
    let m = measure(c, "v2").await.unwrap();
    assert_eq!(m.value, Some(0.41));
    let body = apis.last().body.unwrap();
    assert_eq!(
        body.pointer("/data/attributes/to"),
        Some(&serde_json::json!(AT))
    );
    assert_eq!(
        body.pointer("/data/attributes/from"),
        Some(&serde_json::json!(AT - 300_000))
    );
    assert_eq!(
        body.pointer("/data/attributes/queries/0/query"),
        Some(&serde_json::json!(
            "p99:trace.http.request.duration{version:v2}"
        ))
    );
    assert_eq!(apis.last().headers["content-type"], "application/json");
}

fn cloud_monitoring(base: &str, backend: &str) -> WebConfig {
    let filter = format!(
        "metric.type%3D%22loadbalancing.googleapis.com%2Fhttps%2Frequest_count%22%20AND%20resource.labels.backend_target_name%3D%22{backend}%22"
    );
    let mut c = WebConfig::new(format!(
        "{base}/v3/projects/shop-prod/timeSeries?filter={filter}&interval.startTime={{{{start}}}}&interval.endTime={{{{end}}}}&aggregation.alignmentPeriod=60s&aggregation.perSeriesAligner=ALIGN_RATE"
    ));
    c.headers = Headers::List(vec![rollback_web::Header {
        key: "Authorization".into(),
        value: "Bearer gcp-token".into(),
    }]);
    c.json_path = "$.timeSeries[0].points[0].value.doubleValue".into();
    c
}

#[tokio::test]
async fn cloud_monitoring_lists_time_series_newest_first() {
    let apis = support::start().await;
    let m = measure(cloud_monitoring(&apis.url, "checkout-{{revision}}"), "v2")
        .await
        .unwrap();
    assert_eq!(m.value, Some(0.5));
    let seen = apis.last();
    assert_eq!(seen.path, "/v3/projects/shop-prod/timeSeries");
    assert_eq!(seen.query["interval.endTime"], "2026-12-01T12:00:00.000Z");
    assert_eq!(seen.query["interval.startTime"], "2026-12-01T11:55:00.000Z");
    assert!(seen.query["filter"].ends_with("backend_target_name=\"checkout-v2\""));

    // No time series matched the filter: the answer has no `timeSeries`.
    let m = measure(cloud_monitoring(&apis.url, "checkout-gone"), "v2")
        .await
        .unwrap();
    assert_eq!(m, Measurement::NO_DATA);

    let mut c = cloud_monitoring(&apis.url, "checkout-v2");
    c.headers = Headers::default();
    let e = measure(c, "v2").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    assert!(e.to_string().contains("UNAUTHENTICATED"), "{e}");
}

#[tokio::test]
async fn samples_for_the_canary_judge() {
    let apis = support::start().await;
    let mut c = WebConfig::new(format!(
        "{}/api/v1/query?from={{{{start_seconds}}}}&to={{{{end_seconds}}}}&query=avg:trace.http.request.duration{{service:slow}}by{{track}}",
        apis.url
    ));
    c.headers = datadog_headers();
    c.samples = Some(SamplePaths {
        canary: "$.series[?@.scope == 'track:canary'].pointlist[*][1]".into(),
        baseline: "$.series[?@.scope == 'track:baseline'].pointlist[*][1]".into(),
    });
    let m = measure(c, "v2").await.unwrap();
    let s = m.samples.clone().unwrap();
    assert_eq!((s.canary.len(), s.baseline.len()), (10, 10));
    assert!((s.canary[0] - 101.0 * 1.3).abs() < 1e-9);
    assert!((m.baseline.unwrap() - 100.6).abs() < 1e-9, "{m:?}");
}

#[tokio::test]
async fn bad_answers_are_probe_errors_or_no_data_never_a_pass() {
    let apis = support::start().await;
    let at = |path: &str, json_path: &str| {
        let mut c = WebConfig::new(format!("{}{path}", apis.url));
        c.json_path = json_path.into();
        c
    };
    // Not JSON.
    let e = measure(at("/html", "$.value"), "v2").await.unwrap_err();
    assert!(
        e.to_string().contains("not JSON") && e.to_string().contains("<html><body>Sign in"),
        "{e}"
    );
    // Several matches without an aggregate.
    let e = measure(at("/json/several", "$.values[*]"), "v2")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.to_string().contains("matched 3 values") && e.to_string().contains("aggregate"),
        "{e}"
    );
    let mut summed = at("/json/several", "$.values[*]");
    summed.aggregate = Some(Aggregate::Sum);
    assert_eq!(measure(summed, "v2").await.unwrap().value, Some(7.0));
    // Nothing matched, null, an empty list: no data.
    for (path, json_path) in [
        ("/json/several", "$.missing"),
        ("/json/null", "$.value"),
        ("/json/empty", "$.values[*]"),
    ] {
        let m = measure(at(path, json_path), "v2").await.unwrap();
        assert_eq!(m.value, None, "{path} {json_path}");
    }
    // NaN is returned as it is: the engine judges it inconclusive.
    let m = measure(at("/json/nan", "$.value"), "v2").await.unwrap();
    assert!(m.value.unwrap().is_nan());
    // A string that is not a number, an object.
    let e = measure(at("/json/string", "$.value"), "v2")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("\"high\", not a number"), "{e}");
    let e = measure(at("/json/object", "$.value"), "v2")
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("not a number; extend the path"),
        "{e}"
    );
    // A boolean is 1 or 0; a bare number is the whole answer.
    assert_eq!(
        measure(at("/json/bool", "$.ok"), "v2").await.unwrap().value,
        Some(1.0)
    );
    assert_eq!(
        measure(at("/json/number", "$"), "v2").await.unwrap().value,
        Some(0.25)
    );
    // A 404 names the status and the body.
    let e = measure(at("/json/nothing", "$"), "v2").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("HTTP 404: no such fixture"), "{e}");
    // A timeout is transient.
    let mut slow = at("/slow", "$.value");
    slow.timeout = Duration::from_millis(200);
    let e = measure(slow, "v2").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(
        e.to_string()
            .contains("no answer within the timeout of 200ms"),
        "{e}"
    );
    // Nothing listens: transient, naming the request.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let e = measure(WebConfig::new(format!("http://{closed}/x")), "v2")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(e.to_string().contains("cannot connect"), "{e}");
}

#[test]
fn a_path_that_does_not_parse_names_the_field() {
    let mut c = WebConfig::new("http://127.0.0.1:1/");
    c.json_path = "$.series[0".into();
    let e = WebProbe::new("p", c).unwrap_err().to_string();
    assert!(
        e.contains("field `json_path`") && e.contains("RFC 9535"),
        "{e}"
    );
}
