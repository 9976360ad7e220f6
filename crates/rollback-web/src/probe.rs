//! The web probe: the request, the answer, the JSONPath.

use async_trait::async_trait;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use rollback_core::canary::Samples;
use rollback_core::{HealthProbe, Measurement, ProbeContext, Timestamp};
use serde_json::Value;
use serde_json_path::JsonPath;

use crate::config::{Method, WebConfig};
use crate::error::WebError;

/// The largest answer read: 16 MiB. A metrics answer is a few KiB.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// A [`HealthProbe`] that sends one HTTP request per measurement and reads
/// the value from its JSON answer, as Argo Rollouts' `web` metric provider:
///
/// - a status other than 2xx is a probe error with the status and the start
///   of the body; so is an answer that is not JSON, or a request that does
///   not finish within `timeout`;
/// - a path that matches nothing, or matches `null`, is no data;
/// - several matches are an error unless the probe `aggregate`s them;
/// - a match is a number, a numeric string (`"0.5"`, `"NaN"`, `"+Inf"`, as
///   Prometheus writes them) or a boolean (1 or 0); anything else is an error.
///
/// With `samples`, every match of each path is one sample of the canary or
/// the baseline, for a probe judged by `mann_whitney`.
#[derive(Debug, Clone)]
pub struct WebProbe {
    name: String,
    config: WebConfig,
    path: JsonPath,
    baseline_path: Option<JsonPath>,
    samples: Option<(JsonPath, JsonPath)>,
    client: reqwest::Client,
}

/// Parse a JSONPath as RFC 9535 writes it, or as Argo writes it (`{$.x}`).
fn parse_path(field: &str, path: &str) -> Result<JsonPath, WebError> {
    let trimmed = path.trim();
    let bare = trimmed
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(trimmed);
    JsonPath::parse(bare).map_err(|e| {
        WebError::config(
            field,
            format!(
                "{path:?} is not an RFC 9535 JSONPath: {} at character {}; paths start at $, like $.data.value or $.series[0].pointlist[-1][1]",
                e.message(),
                e.position()
            ),
        )
    })
}

/// The placeholders and their values at one measurement.
fn placeholders(
    context: &ProbeContext,
    window: std::time::Duration,
) -> [(&'static str, String); 8] {
    let end = context.at;
    let start = end.minus(window);
    [
        ("{{target}}", context.target.as_str().to_owned()),
        ("{{revision}}", context.revision.as_str().to_owned()),
        ("{{start}}", start.to_string()),
        ("{{end}}", end.to_string()),
        (
            "{{start_seconds}}",
            (start.as_millis().div_euclid(1000)).to_string(),
        ),
        (
            "{{end_seconds}}",
            (end.as_millis().div_euclid(1000)).to_string(),
        ),
        ("{{start_millis}}", start.as_millis().to_string()),
        ("{{end_millis}}", end.as_millis().to_string()),
    ]
}

fn render(text: &str, values: &[(&str, String)], encode: bool) -> String {
    if !text.contains("{{") {
        return text.to_owned();
    }
    let mut out = text.to_owned();
    for (key, value) in values {
        if out.contains(key) {
            let value = if encode {
                utf8_percent_encode(value, NON_ALPHANUMERIC).to_string()
            } else {
                value.clone()
            };
            out = out.replace(key, &value);
        }
    }
    out
}

/// A JSON body with the placeholders replaced in its strings; a string that
/// is one Unix-time placeholder (`"{{end_millis}}"`) becomes that number.
fn render_json(v: &Value, values: &[(&str, String)]) -> Value {
    match v {
        Value::String(s) => {
            if s.ends_with("_seconds}}") || s.ends_with("_millis}}") {
                let whole = values.iter().find(|(key, _)| key == s);
                if let Some(n) = whole.and_then(|(_, value)| value.parse::<i64>().ok()) {
                    return Value::from(n);
                }
            }
            Value::String(render(s, values, false))
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| render_json(i, values)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), render_json(v, values)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// One matched JSON value as a number: `None` for `null`.
fn number(v: &Value) -> Result<Option<f64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| format!("{n} is not a 64-bit float")),
        Value::Bool(b) => Ok(Some(if *b { 1.0 } else { 0.0 })),
        Value::String(s) => match s.trim() {
            t if t.eq_ignore_ascii_case("nan") => Ok(Some(f64::NAN)),
            t => t
                .parse::<f64>()
                .map(Some)
                .map_err(|_| format!("matched the string {s:?}, not a number")),
        },
        Value::Array(_) | Value::Object(_) => {
            let shown = rollback_core::http::excerpt(v.to_string().as_bytes());
            Err(format!(
                "matched {shown}, not a number; extend the path to the number inside"
            ))
        }
    }
}

impl WebProbe {
    /// A probe named `name` (as the policy names it): checks the URL, the
    /// paths, the method and body, without sending anything.
    pub fn new(name: impl Into<String>, config: WebConfig) -> Result<Self, WebError> {
        let name = name.into();
        if name.trim().is_empty() {
            return Err(WebError::config(
                "name",
                "the probe needs a name, as the policy names it",
            ));
        }
        let sample_context = ProbeContext::new(
            "target".into(),
            "revision".into(),
            Timestamp::from_millis(0),
        );
        let url = render(
            &config.url,
            &placeholders(&sample_context, config.window),
            true,
        );
        match reqwest::Url::parse(&url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            Ok(u) => {
                return Err(WebError::config(
                    "url",
                    format!("the scheme {:?} is not http or https", u.scheme()),
                ));
            }
            Err(e) => {
                return Err(WebError::config(
                    "url",
                    format!("{:?} is not a URL: {e}", config.url),
                ));
            }
        }
        if config.body.is_some() && config.json_body.is_some() {
            return Err(WebError::config(
                "json_body",
                "give `body` or `json_body`, not both",
            ));
        }
        if config.method == Method::Get && (config.body.is_some() || config.json_body.is_some()) {
            return Err(WebError::config(
                "method",
                "a GET request has no body: use POST or PUT, or leave the body out",
            ));
        }
        for (header, _) in config.headers.pairs() {
            if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err(WebError::config(
                    format!("headers.{header}"),
                    "is not a valid header name",
                ));
            }
        }
        if config.timeout.is_zero() {
            return Err(WebError::config("timeout", "must be greater than 0s"));
        }
        let path = parse_path("json_path", &config.json_path)?;
        let baseline_path = config
            .baseline_path
            .as_deref()
            .map(|p| parse_path("baseline_path", p))
            .transpose()?;
        let samples = match &config.samples {
            None => None,
            Some(s) => {
                if config.json_path != "$"
                    || config.baseline_path.is_some()
                    || config.aggregate.is_some()
                {
                    return Err(WebError::config(
                        "samples",
                        "samples are read by their own paths: leave out json_path, baseline_path and aggregate",
                    ));
                }
                Some((
                    parse_path("samples.canary", &s.canary)?,
                    parse_path("samples.baseline", &s.baseline)?,
                ))
            }
        };
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| WebError::config("url", format!("cannot build an HTTP client: {e}")))?;
        Ok(WebProbe {
            name,
            config,
            path,
            baseline_path,
            samples,
            client,
        })
    }

    /// The options it was built from.
    pub fn config(&self) -> &WebConfig {
        &self.config
    }

    /// `GET https://host/path`: the request without its query, for messages.
    fn request_name(&self, url: &reqwest::Url) -> String {
        let mut shown = url.clone();
        shown.set_query(None);
        shown.set_fragment(None);
        let _ = shown.set_password(None);
        let _ = shown.set_username("");
        format!("{} {shown}", self.config.method)
    }

    /// Send the request and read the JSON answer.
    async fn fetch(&self, context: &ProbeContext) -> Result<(String, Value), WebError> {
        let values = placeholders(context, self.config.window);
        let url = render(&self.config.url, &values, true);
        let url = reqwest::Url::parse(&url)
            .map_err(|e| WebError::config("url", format!("{url:?} is not a URL: {e}")))?;
        let request = self.request_name(&url);
        let method = match self.config.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
        };
        let mut builder = self
            .client
            .request(method, url)
            .header(reqwest::header::ACCEPT, "application/json");
        for (header, value) in self.config.headers.pairs() {
            builder = builder.header(header, value.expose());
        }
        if let Some(body) = &self.config.body {
            builder = builder.body(render(body, &values, false));
        }
        if let Some(body) = &self.config.json_body {
            builder = builder.json(&render_json(body, &values));
        }
        let failed = |e: reqwest::Error| WebError::Request {
            request: request.clone(),
            timeout: e.is_timeout(),
            reason: if e.is_timeout() {
                format!(
                    "no answer within the timeout of {}",
                    rollback_core::time::format_duration(self.config.timeout)
                )
            } else if e.is_connect() {
                format!("cannot connect: {}", full_reason(&e))
            } else {
                full_reason(&e)
            },
        };
        let mut response = builder.send().await.map_err(failed)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(WebError::Shape {
                    request,
                    path: self.config.json_path.clone(),
                    reason: format!(
                        "the answer is longer than {MAX_BODY_BYTES} bytes; ask the API for less (a narrower query or time range)"
                    ),
                });
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(WebError::Status {
                request,
                status: status.as_u16(),
                excerpt: rollback_core::http::excerpt(&body),
            });
        }
        let json = serde_json::from_slice(&body).map_err(|e| WebError::NotJson {
            request: request.clone(),
            reason: e.to_string(),
            excerpt: rollback_core::http::excerpt(&body),
        })?;
        Ok((request, json))
    }

    /// One value at `path`: none, one, or several folded by `aggregate`.
    fn value(
        &self,
        request: &str,
        field: &str,
        path: &JsonPath,
        json: &Value,
    ) -> Result<Option<f64>, WebError> {
        let shape = |reason: String| WebError::Shape {
            request: request.to_owned(),
            path: format!("{field} {path}"),
            reason,
        };
        let matches = path.query(json).all();
        let numbers = matches
            .iter()
            .map(|v| number(v))
            .collect::<Result<Vec<_>, _>>()
            .map_err(shape)?;
        match (numbers.as_slice(), self.config.aggregate) {
            ([], _) => Ok(None),
            ([one], _) => Ok(*one),
            (_, Some(a)) => {
                let present: Vec<f64> = numbers.iter().flatten().copied().collect();
                Ok(a.apply(&present))
            }
            (many, None) => Err(shape(format!(
                "matched {} values, a probe needs one: narrow the path (an index such as [0] or [-1], a filter such as [?@.scope == 'env:prod']) or set `aggregate` (sum, avg, max, min, first, last)",
                many.len()
            ))),
        }
    }

    fn samples(
        &self,
        request: &str,
        field: &str,
        path: &JsonPath,
        json: &Value,
    ) -> Result<Vec<f64>, WebError> {
        path.query(json)
            .all()
            .into_iter()
            .filter_map(|v| number(v).transpose())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| WebError::Shape {
                request: request.to_owned(),
                path: format!("{field} {path}"),
                reason,
            })
    }

    /// Take one measurement, with the detailed error.
    pub async fn measure_detailed(&self, context: &ProbeContext) -> Result<Measurement, WebError> {
        let (request, json) = self.fetch(context).await?;
        if let Some((canary, baseline)) = &self.samples {
            let canary = self.samples(&request, "samples.canary", canary, &json)?;
            let baseline = self.samples(&request, "samples.baseline", baseline, &json)?;
            return Ok(Measurement::samples(Samples::new(canary, baseline)));
        }
        let value = self.value(&request, "json_path", &self.path, &json)?;
        let baseline = match &self.baseline_path {
            Some(p) => self.value(&request, "baseline_path", p, &json)?,
            None => None,
        };
        tracing::debug!(probe = %self.name, target = %context.target, revision = %context.revision, ?value, ?baseline, "measured");
        Ok(Measurement {
            value,
            baseline,
            detail: None,
            samples: None,
        })
    }
}

fn full_reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[async_trait]
impl HealthProbe for WebProbe {
    fn name(&self) -> &str {
        &self.name
    }

    async fn measure(&self, context: &ProbeContext) -> rollback_core::Result<Measurement> {
        self.measure_detailed(context).await.map_err(|e| {
            rollback_core::Error::new(
                e.kind(),
                format!("probe {:?} on target {}: {e}", self.name, context.target),
            )
        })
    }
}
