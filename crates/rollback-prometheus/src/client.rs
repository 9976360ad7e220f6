//! Raw calls to the Prometheus HTTP API: instant and range queries.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rollback_core::Timestamp;
use serde::Deserialize;

use crate::config::{Auth, PrometheusConfig};
use crate::error::PrometheusError;

/// The most points Prometheus returns per series of a range query (its own
/// limit is 11000); longer ranges are split into several queries.
pub const MAX_POINTS_PER_QUERY: u64 = 10_000;

/// One value at one time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When.
    pub at: Timestamp,
    /// The value; may be NaN or infinite, as Prometheus wrote it.
    pub value: f64,
}

/// One series of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSeries {
    /// The series' labels.
    pub labels: BTreeMap<String, String>,
    /// Its value at the evaluation time.
    pub sample: Sample,
}

/// One series of a range query.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    /// The series' labels.
    pub labels: BTreeMap<String, String>,
    /// Its values, oldest first.
    pub samples: Vec<Sample>,
}

/// The result of an instant query.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryResult {
    /// A scalar (`scalar(...)`, a number literal).
    Scalar(Sample),
    /// An instant vector: zero or more series.
    Vector(Vec<InstantSeries>),
    /// A range vector (the query ends in a range selector such as `[5m]`).
    Matrix(Vec<RangeSeries>),
    /// A string literal.
    String(String),
}

impl QueryResult {
    /// The Prometheus name of the result type.
    pub fn type_name(&self) -> &'static str {
        match self {
            QueryResult::Scalar(_) => "scalar",
            QueryResult::Vector(_) => "vector",
            QueryResult::Matrix(_) => "matrix",
            QueryResult::String(_) => "string",
        }
    }
}

/// A Prometheus HTTP API client: a base URL, optional auth and a timeout,
/// over a [`reqwest::Client`] that may be shared with the rest of the program.
#[derive(Clone)]
pub struct PrometheusClient {
    http: reqwest::Client,
    base: String,
    auth: Option<Auth>,
    timeout: Duration,
}

impl fmt::Debug for PrometheusClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusClient")
            .field("base", &self.base)
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Builds a [`PrometheusClient`]; see [`PrometheusClient::builder`].
#[derive(Debug)]
#[must_use]
pub struct PrometheusClientBuilder {
    url: String,
    auth: Option<Auth>,
    timeout: Duration,
    http: Option<reqwest::Client>,
}

impl PrometheusClientBuilder {
    /// Authenticate with `Authorization: Bearer <token>`.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.auth = Some(Auth::Bearer {
            token: rollback_core::http::Secret::new(token),
        });
        self
    }

    /// Authenticate with HTTP basic auth.
    pub fn basic_auth(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some(Auth::Basic {
            username: username.into(),
            password: rollback_core::http::Secret::new(password),
        });
        self
    }

    /// Set or clear the authentication.
    pub fn auth(mut self, auth: Option<Auth>) -> Self {
        self.auth = auth;
        self
    }

    /// How long one query may take (default 10s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Use this HTTP client (connection pool, TLS settings, proxies).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Check the settings and build the client.
    pub fn build(self) -> Result<PrometheusClient, PrometheusError> {
        let url = self.url.trim();
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            PrometheusError::config(
                "url",
                format!("{url:?} is not a URL ({e}); write it like http://prometheus:9090"),
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(PrometheusError::config(
                "url",
                format!("{url:?} must start with http:// or https://"),
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(PrometheusError::config(
                "url",
                format!("{url:?} must be the server's base URL, without a query or fragment"),
            ));
        }
        if self.timeout.is_zero() {
            return Err(PrometheusError::config("timeout", "must be more than zero"));
        }
        if let Some(Auth::Bearer { token }) = &self.auth
            && token.expose().is_empty()
        {
            return Err(PrometheusError::config("auth.bearer.token", "is empty"));
        }
        let http = match self.http {
            Some(h) => h,
            None => reqwest::Client::builder()
                .build()
                .map_err(|e| PrometheusError::config("http client", e.to_string()))?,
        };
        Ok(PrometheusClient {
            http,
            base: url.trim_end_matches('/').to_owned(),
            auth: self.auth,
            timeout: self.timeout,
        })
    }
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<RawData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

type RawPoint = (f64, String);

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum RawData {
    Scalar(RawPoint),
    String(RawPoint),
    Vector(Vec<RawInstant>),
    Matrix(Vec<RawRange>),
}

#[derive(Deserialize)]
struct RawInstant {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<RawPoint>,
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<RawPoint>,
}

/// Parse a sample value as Prometheus writes it: a decimal, `NaN`, `+Inf`, `-Inf`.
pub(crate) fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse::<f64>().ok(),
    }
}

fn format_time(t: Timestamp) -> String {
    let ms = t.as_millis();
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

fn format_step(step: Duration) -> String {
    format!("{}", step.as_secs_f64())
}

impl PrometheusClient {
    /// A builder for a client of the server at `url` (its base URL, like
    /// `http://prometheus:9090`).
    pub fn builder(url: impl Into<String>) -> PrometheusClientBuilder {
        PrometheusClientBuilder {
            url: url.into(),
            auth: None,
            timeout: Duration::from_secs(10),
            http: None,
        }
    }

    /// A client from its serde configuration.
    pub fn from_config(config: &PrometheusConfig) -> Result<Self, PrometheusError> {
        Self::builder(config.url.clone())
            .auth(config.auth.clone())
            .timeout(config.timeout)
            .build()
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The timeout of one query.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn get(
        &self,
        path: &str,
        query: &str,
        params: &[(&str, String)],
    ) -> Result<Envelope, PrometheusError> {
        let url = format!("{}{}", self.base, path);
        let mut request = self.http.get(&url).query(params).timeout(self.timeout);
        request = match &self.auth {
            Some(Auth::Bearer { token }) => request.bearer_auth(token.expose()),
            Some(Auth::Basic { username, password }) => {
                request.basic_auth(username, Some(password.expose()))
            }
            None => request,
        };
        let send_error = |source: reqwest::Error| {
            if source.is_timeout() {
                PrometheusError::Timeout {
                    query: query.to_owned(),
                    url: url.clone(),
                    timeout: self.timeout,
                    source,
                }
            } else {
                PrometheusError::Request {
                    query: query.to_owned(),
                    url: url.clone(),
                    source,
                }
            }
        };
        let response = request.send().await.map_err(send_error)?;
        let status = response.status();
        let body = response.bytes().await.map_err(send_error)?;
        if !status.is_success() {
            let (error_type, message) = match serde_json::from_slice::<ErrorEnvelope>(&body) {
                Ok(ErrorEnvelope {
                    error_type,
                    error: Some(error),
                }) => (error_type, error),
                _ => (None, rollback_core::http::excerpt(&body)),
            };
            return Err(PrometheusError::Status {
                query: query.to_owned(),
                url,
                status: status.as_u16(),
                error_type,
                message,
            });
        }
        let envelope: Envelope =
            serde_json::from_slice(&body).map_err(|e| PrometheusError::Decode {
                query: query.to_owned(),
                url: url.clone(),
                reason: format!(
                    "{e}; body starts with {:?}",
                    rollback_core::http::excerpt(&body)
                ),
            })?;
        if envelope.status != "success" {
            return Err(PrometheusError::Status {
                query: query.to_owned(),
                url,
                status: status.as_u16(),
                error_type: envelope.error_type,
                message: envelope.error.unwrap_or_else(|| {
                    format!("status {:?} without an error message", envelope.status)
                }),
            });
        }
        for warning in &envelope.warnings {
            tracing::warn!(query, %url, warning, "Prometheus returned a warning");
        }
        Ok(envelope)
    }

    fn sample(query: &str, (secs, value): &RawPoint) -> Result<Sample, PrometheusError> {
        let at = Timestamp::from_secs_f64(*secs).ok_or_else(|| PrometheusError::Shape {
            query: query.to_owned(),
            reason: format!("sample time {secs} is not a valid time"),
        })?;
        let value = parse_value(value).ok_or_else(|| PrometheusError::Shape {
            query: query.to_owned(),
            reason: format!("sample value {value:?} is not a number"),
        })?;
        Ok(Sample { at, value })
    }

    fn range_series(query: &str, raw: Vec<RawRange>) -> Result<Vec<RangeSeries>, PrometheusError> {
        raw.into_iter()
            .map(|r| {
                let samples = r
                    .values
                    .iter()
                    .map(|p| Self::sample(query, p))
                    .collect::<Result<_, _>>()?;
                Ok(RangeSeries {
                    labels: r.metric,
                    samples,
                })
            })
            .collect()
    }

    /// Run an instant query (`/api/v1/query`), at `at` or at the server's now.
    pub async fn query(
        &self,
        promql: &str,
        at: Option<Timestamp>,
    ) -> Result<QueryResult, PrometheusError> {
        let mut params = vec![("query", promql.to_owned())];
        if let Some(at) = at {
            params.push(("time", format_time(at)));
        }
        let envelope = self.get("/api/v1/query", promql, &params).await?;
        let data = envelope.data.ok_or_else(|| PrometheusError::Decode {
            query: promql.to_owned(),
            url: format!("{}/api/v1/query", self.base),
            reason: "a success without `data`".into(),
        })?;
        Ok(match data {
            RawData::Scalar(p) => QueryResult::Scalar(Self::sample(promql, &p)?),
            RawData::String((_, s)) => QueryResult::String(s),
            RawData::Vector(v) => QueryResult::Vector(
                v.into_iter()
                    .map(|r| {
                        let point = r.value.ok_or_else(|| PrometheusError::Shape {
                            query: promql.to_owned(),
                            reason: format!(
                                "series {} has no float value (a native histogram?); query a float, such as histogram_quantile(...)",
                                format_labels(&r.metric)
                            ),
                        })?;
                        Ok(InstantSeries { sample: Self::sample(promql, &point)?, labels: r.metric })
                    })
                    .collect::<Result<_, PrometheusError>>()?,
            ),
            RawData::Matrix(m) => QueryResult::Matrix(Self::range_series(promql, m)?),
        })
    }

    /// Run a range query (`/api/v1/query_range`) from `start` to `end`
    /// (inclusive) every `step`. Ranges of more than
    /// [`MAX_POINTS_PER_QUERY`] steps are split into several queries and
    /// joined, so any length of history can be read.
    pub async fn query_range(
        &self,
        promql: &str,
        start: Timestamp,
        end: Timestamp,
        step: Duration,
    ) -> Result<Vec<RangeSeries>, PrometheusError> {
        let step_ms = u64::try_from(step.as_millis()).unwrap_or(u64::MAX);
        if step_ms == 0 {
            return Err(PrometheusError::Shape {
                query: promql.to_owned(),
                reason: "the range query step must be at least 1ms".into(),
            });
        }
        if end < start {
            return Err(PrometheusError::Shape {
                query: promql.to_owned(),
                reason: format!("the range ends ({end}) before it starts ({start})"),
            });
        }
        let chunk = Duration::from_millis(step_ms.saturating_mul(MAX_POINTS_PER_QUERY - 1));
        let mut by_labels: BTreeMap<BTreeMap<String, String>, Vec<Sample>> = BTreeMap::new();
        let mut from = start;
        loop {
            let to = std::cmp::min(from.plus(chunk), end);
            let params = [
                ("query", promql.to_owned()),
                ("start", format_time(from)),
                ("end", format_time(to)),
                ("step", format_step(step)),
            ];
            let envelope = self.get("/api/v1/query_range", promql, &params).await?;
            let series = match envelope.data {
                Some(RawData::Matrix(m)) => Self::range_series(promql, m)?,
                Some(other) => {
                    let name = match other {
                        RawData::Scalar(_) => "scalar",
                        RawData::String(_) => "string",
                        RawData::Vector(_) => "vector",
                        RawData::Matrix(_) => "matrix",
                    };
                    return Err(PrometheusError::Shape {
                        query: promql.to_owned(),
                        reason: format!("a range query returned a {name}, not a matrix"),
                    });
                }
                None => {
                    return Err(PrometheusError::Decode {
                        query: promql.to_owned(),
                        url: format!("{}/api/v1/query_range", self.base),
                        reason: "a success without `data`".into(),
                    });
                }
            };
            for s in series {
                by_labels.entry(s.labels).or_default().extend(s.samples);
            }
            if to >= end {
                break;
            }
            from = to.plus(step);
            if from > end {
                break;
            }
        }
        Ok(by_labels
            .into_iter()
            .map(|(labels, samples)| RangeSeries { labels, samples })
            .collect())
    }
}

/// Labels written the way PromQL writes a selector: `{code="500",job="app"}`.
pub fn format_labels(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_prometheus_writes_them() {
        assert_eq!(parse_value("0.25"), Some(0.25));
        assert_eq!(parse_value("1e-3"), Some(0.001));
        assert!(parse_value("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_value("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_value("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_value("abc"), None);
    }

    #[test]
    fn times_are_seconds_with_millis() {
        assert_eq!(
            format_time(Timestamp::from_millis(1_795_780_800_123)),
            "1795780800.123"
        );
        assert_eq!(format_time(Timestamp::from_millis(5)), "0.005");
        assert_eq!(format_time(Timestamp::from_millis(-1500)), "-1.500");
        assert_eq!(format_step(Duration::from_millis(1500)), "1.5");
    }

    #[test]
    fn builder_refuses_bad_urls_naming_the_field() {
        for bad in [
            "prometheus:9090/x y",
            "ftp://x",
            "http://x/?a=b",
            "not a url",
        ] {
            let e = PrometheusClient::builder(bad)
                .build()
                .unwrap_err()
                .to_string();
            assert!(e.contains("`url`"), "{bad}: {e}");
        }
        let e = PrometheusClient::builder("http://x")
            .timeout(Duration::ZERO)
            .build()
            .unwrap_err()
            .to_string();
        assert!(e.contains("`timeout`"), "{e}");
        let c = PrometheusClient::builder("http://x:9090/prom/")
            .bearer_token("tok")
            .build()
            .unwrap();
        assert_eq!(c.base_url(), "http://x:9090/prom");
        assert!(!format!("{c:?}").contains("tok\""), "{c:?}");
    }

    #[test]
    fn labels_format_like_a_selector() {
        let labels: BTreeMap<String, String> = [
            ("code".to_owned(), "500".to_owned()),
            ("job".to_owned(), "a\"b".to_owned()),
        ]
        .into();
        assert_eq!(format_labels(&labels), r#"{code="500",job="a\"b"}"#);
    }
}
