//! The web probe's options, as the watch file holds them (`web:` of a probe).
//!
//! Every type refuses unknown fields and takes human durations, so a typo is
//! an error naming the field.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rollback_core::http::Secret;
use rollback_core::time::duration;
use serde::{Deserialize, Serialize};

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_window() -> Duration {
    Duration::from_secs(300)
}
fn default_path() -> String {
    "$".to_owned()
}

/// The HTTP method of the request (Argo Rollouts' `web` provider has these three).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Method {
    /// `GET` (the default); no body.
    #[default]
    #[serde(alias = "get")]
    #[serde(rename = "GET")]
    Get,
    /// `POST`, usually with a body.
    #[serde(alias = "post")]
    #[serde(rename = "POST")]
    Post,
    /// `PUT`, usually with a body.
    #[serde(alias = "put")]
    #[serde(rename = "PUT")]
    Put,
}

impl Method {
    /// `GET`, `POST` or `PUT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header as Argo Rollouts writes it: `{key: Authorization, value: …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// The header's name.
    pub key: String,
    /// Its value; never printed.
    pub value: Secret,
}

/// Headers: a mapping (`{DD-API-KEY: "${DD_API_KEY}"}`) or Argo's list of
/// `{key, value}`. Values usually come from the environment (`${NAME}` in
/// the watch file) and are never printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Headers {
    /// `{name: value}`.
    Map(BTreeMap<String, Secret>),
    /// `[{key, value}]`.
    List(Vec<Header>),
}

impl Default for Headers {
    fn default() -> Self {
        Headers::Map(BTreeMap::new())
    }
}

impl Headers {
    /// The headers as (name, value) pairs, in order.
    pub fn pairs(&self) -> Vec<(&str, &Secret)> {
        match self {
            Headers::Map(m) => m.iter().map(|(k, v)| (k.as_str(), v)).collect(),
            Headers::List(l) => l.iter().map(|h| (h.key.as_str(), &h.value)).collect(),
        }
    }
}

/// How several values the path matches are folded into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// The sum.
    Sum,
    /// The mean.
    Avg,
    /// The largest (NaN if any is NaN).
    Max,
    /// The smallest (NaN if any is NaN).
    Min,
    /// The first match, in document order.
    First,
    /// The last match, in document order (the newest point of a series
    /// listed oldest first).
    Last,
}

impl Aggregate {
    /// Fold `values` (at least one, else `None`). NaN in any input gives
    /// NaN for sum, avg, max and min, so an aggregate never hides a value
    /// the engine would judge inconclusive.
    pub fn apply(self, values: &[f64]) -> Option<f64> {
        let (&first, &last) = (values.first()?, values.last()?);
        match self {
            Aggregate::First => return Some(first),
            Aggregate::Last => return Some(last),
            _ => {}
        }
        if values.iter().any(|v| v.is_nan()) {
            return Some(f64::NAN);
        }
        let sum = || values.iter().sum::<f64>();
        Some(match self {
            Aggregate::Sum => sum(),
            Aggregate::Avg => sum() / values.len() as f64,
            Aggregate::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Aggregate::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
            Aggregate::First | Aggregate::Last => unreachable!("returned above"),
        })
    }
}

/// Paths to canary and baseline samples, for a probe judged by
/// `mann_whitney` ([`rollback_core::canary`]): every value each path
/// matches is one sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplePaths {
    /// The canary's values: `$.series[?@.scope == 'track:canary'].pointlist[*][1]`.
    pub canary: String,
    /// The baseline's values.
    pub baseline: String,
}

/// The `web` probe: one HTTP request per measurement, its JSON answer read
/// with an RFC 9535 JSONPath.
///
/// `{{target}}`, `{{revision}}`, `{{start}}` and `{{end}}` (RFC 3339), and
/// `{{start_seconds}}`, `{{end_seconds}}`, `{{start_millis}}`,
/// `{{end_millis}}` (Unix time) are replaced in the URL (percent-encoded),
/// in `body` (as they are) and in the strings of `json_body`, where a string
/// that is one Unix-time placeholder (`"{{end_millis}}"`) becomes the number.
/// `end` is the measurement's time, `start` is `window` earlier.
///
/// ```
/// # use rollback_web::WebConfig;
/// let c: WebConfig = serde_json::from_value(serde_json::json!({
///     "url": "https://api.datadoghq.com/api/v1/query?from={{start_seconds}}&to={{end_seconds}}&query=sum:errors{version:{{revision}}}",
///     "headers": {"DD-API-KEY": "k", "DD-APPLICATION-KEY": "a"},
///     "json_path": "$.series[0].pointlist[-1][1]",
/// })).unwrap();
/// assert_eq!(c.timeout, std::time::Duration::from_secs(10));
/// assert!(!format!("{c:?}").contains("\"k\""));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// The URL, `http` or `https`.
    pub url: String,
    /// `GET` (default), `POST` or `PUT`.
    #[serde(default)]
    pub method: Method,
    /// Request headers.
    #[serde(default)]
    pub headers: Headers,
    /// A request body, sent as it is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// A JSON request body (sent with `Content-Type: application/json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_body: Option<serde_json::Value>,
    /// How long the request may take. Default 10s.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// The JSONPath (RFC 9535) to the value; Argo's `{$.x}` is accepted.
    /// Default `$`: the whole answer is the value.
    #[serde(default = "default_path")]
    pub json_path: String,
    /// The JSONPath to the baseline value for relative conditions (`<= +10%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_path: Option<String>,
    /// Fold several matches into one value; without it several matches are an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<Aggregate>,
    /// Read canary and baseline samples instead of one value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<SamplePaths>,
    /// How far before the measurement `{{start}}` lies. Default 5m.
    #[serde(default = "default_window", with = "duration")]
    pub window: Duration,
}

impl WebConfig {
    /// A GET of `url`, the whole answer as the value.
    pub fn new(url: impl Into<String>) -> Self {
        WebConfig {
            url: url.into(),
            method: Method::Get,
            headers: Headers::default(),
            body: None,
            json_body: None,
            timeout: default_timeout(),
            json_path: default_path(),
            baseline_path: None,
            aggregate: None,
            samples: None,
            window: default_window(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_as_a_map_or_argo_list() {
        let c: WebConfig = serde_json::from_value(serde_json::json!({
            "url": "http://x", "method": "POST",
            "headers": [{"key": "Authorization", "value": "Bearer hunter2"}]
        }))
        .unwrap();
        assert_eq!(c.method, Method::Post);
        assert_eq!(c.headers.pairs()[0].0, "Authorization");
        assert!(!format!("{c:?}").contains("hunter2"));
        let e = serde_json::from_value::<WebConfig>(
            serde_json::json!({"url": "http://x", "jsonpath": "$"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `jsonpath`"), "{e}");
        let e = serde_json::from_value::<WebConfig>(
            serde_json::json!({"url": "http://x", "method": "DELETE"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown variant `DELETE`"), "{e}");
    }

    #[test]
    fn aggregates() {
        let v = [1.0, 4.0, 2.0];
        assert_eq!(Aggregate::Sum.apply(&v), Some(7.0));
        assert_eq!(Aggregate::Last.apply(&v), Some(2.0));
        assert_eq!(Aggregate::First.apply(&v), Some(1.0));
        assert_eq!(Aggregate::Max.apply(&v), Some(4.0));
        assert_eq!(Aggregate::Min.apply(&[]), None);
        assert!(Aggregate::Avg.apply(&[1.0, f64::NAN]).unwrap().is_nan());
    }
}
