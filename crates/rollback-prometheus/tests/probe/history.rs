//! History: range queries, one sample per step, split when long.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::StatusCode;
use rollback_core::replay::Sample;
use rollback_core::{RevisionId, TargetId, Timestamp};
use rollback_prometheus::{Aggregate, HistoryRange, PrometheusProbe, history_series};
use serde_json::json;

use crate::fake::FakePrometheus;

/// A fake range endpoint: every series has value `t` (seconds) at every
/// step, except where `t` is a multiple of 3 steps (a gap).
fn range_answer(q: &HashMap<String, String>, series: &[&str]) -> (StatusCode, String) {
    let start: f64 = q["start"].parse().unwrap();
    let end: f64 = q["end"].parse().unwrap();
    let step: f64 = q["step"].parse().unwrap();
    let mut result = Vec::new();
    for s in series {
        let mut values = Vec::new();
        let mut t = start;
        while t <= end + 1e-9 {
            let i = ((t - 1000.0) / step).round() as i64;
            if i % 3 != 0 {
                values.push(json!([t, format!("{t}")]));
            }
            t += step;
        }
        result.push(json!({"metric": {"instance": s}, "values": values}));
    }
    (
        StatusCode::OK,
        json!({"status": "success", "data": {"resultType": "matrix", "result": result}})
            .to_string(),
    )
}

#[tokio::test]
async fn history_is_one_sample_per_step_with_gaps_as_no_data() {
    let fake = FakePrometheus::start(Duration::ZERO, |q| range_answer(q, &["a"])).await;
    let probe = fake.probe("x");
    let range = HistoryRange {
        start: Timestamp::from_millis(1_000_000),
        end: Timestamp::from_millis(1_005_000),
        step: Duration::from_secs(1),
    };
    let values = probe
        .history(&TargetId::new("t"), &RevisionId::new("r"), range)
        .await
        .unwrap();
    let want: Vec<Sample> = (0..=5)
        .map(|i| {
            let t = 1_000_000 + i * 1000;
            Sample {
                at: Timestamp::from_millis(t),
                value: if i % 3 == 0 {
                    None
                } else {
                    Some(t as f64 / 1000.0)
                },
                baseline: None,
            }
        })
        .collect();
    assert_eq!(values, want);

    // As a replay series, with the baseline beside each value.
    let fake = FakePrometheus::start(Duration::ZERO, |q| {
        if q["query"] == "base" {
            range_answer(q, &["b", "c"])
        } else {
            range_answer(q, &["a"])
        }
    })
    .await;
    let p1 = PrometheusProbe::builder("latency", fake.client())
        .query("x")
        .baseline_query("base")
        .aggregate(Aggregate::Max)
        .build()
        .unwrap();
    let p2 = PrometheusProbe::builder("errors", fake.client())
        .query("y")
        .build()
        .unwrap();
    let series = history_series(
        &[&p1, &p2],
        &TargetId::new("t"),
        &RevisionId::new("r"),
        range,
    )
    .await
    .unwrap();
    assert_eq!(
        series.probes().collect::<Vec<_>>(),
        vec!["errors", "latency"]
    );
    let latency = series.samples("latency");
    assert_eq!(latency.len(), 6);
    assert_eq!(
        latency[1],
        Sample {
            at: Timestamp::from_millis(1_001_000),
            value: Some(1001.0),
            baseline: Some(1001.0)
        }
    );
    assert_eq!(latency[3].value, None);
}

#[tokio::test]
async fn long_histories_are_split_into_several_range_queries() {
    let fake = FakePrometheus::start(Duration::ZERO, |q| range_answer(q, &["a"])).await;
    let probe = fake.probe("x");
    // 25001 steps of 1s: three queries of at most 10000 points.
    let range = HistoryRange {
        start: Timestamp::from_millis(1_000_000),
        end: Timestamp::from_millis(26_000_000),
        step: Duration::from_secs(1),
    };
    let values = probe
        .history(&TargetId::new("t"), &RevisionId::new("r"), range)
        .await
        .unwrap();
    assert_eq!(values.len(), 25_001);
    assert_eq!(values.iter().filter(|s| s.value.is_none()).count(), 8_334);
    assert_eq!(
        (values[1].at, values[1].value),
        (Timestamp::from_millis(1_001_000), Some(1001.0))
    );
    assert_eq!(
        (values[25_000].at, values[25_000].value),
        (Timestamp::from_millis(26_000_000), Some(26_000.0))
    );
    let calls: Vec<(String, String)> = fake
        .seen()
        .into_iter()
        .map(|(_, q, _)| (q["start"].clone(), q["end"].clone()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("1000.000".to_owned(), "10999.000".to_owned()),
            ("11000.000".to_owned(), "20999.000".to_owned()),
            ("21000.000".to_owned(), "26000.000".to_owned()),
        ]
    );
}

#[tokio::test]
async fn history_of_several_series_needs_an_aggregate() {
    let fake = FakePrometheus::start(Duration::ZERO, |q| range_answer(q, &["a", "b"])).await;
    let range = HistoryRange {
        start: Timestamp::from_millis(1_000_000),
        end: Timestamp::from_millis(1_002_000),
        step: Duration::from_secs(1),
    };
    let e = fake
        .probe("x")
        .history(&TargetId::new("t"), &RevisionId::new("r"), range)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("returned 2 series"), "{e}");
    let probe = PrometheusProbe::builder("p", fake.client())
        .query("x")
        .aggregate(Aggregate::Sum)
        .build()
        .unwrap();
    let values = probe
        .history(&TargetId::new("t"), &RevisionId::new("r"), range)
        .await
        .unwrap();
    assert_eq!(
        values.iter().map(|s| s.value).collect::<Vec<_>>(),
        vec![None, Some(2002.0), Some(2004.0)]
    );
}
