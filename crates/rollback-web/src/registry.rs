//! `web` probes, for the watch file and the `rollback` command.

use std::sync::Arc;

use async_trait::async_trait;
use rollback_core::registry::{Options, ProbeFor, ProbeKind};
use rollback_core::{Error, HealthProbe, Result};

use crate::{WebConfig, WebProbe};

/// `web`: one HTTP request per measurement, its JSON answer read by a
/// JSONPath. Options: [`WebConfig`] (`url`, `method`, `headers`, `body` or
/// `json_body`, `timeout`, `json_path`, `baseline_path`, `aggregate`,
/// `samples`, `window`).
#[derive(Debug, Clone, Copy, Default)]
pub struct WebProbeKind;

fn probe(name: &str, options: &Options) -> Result<WebProbe> {
    let config: WebConfig = rollback_core::registry::options(options)?;
    WebProbe::new(name, config).map_err(|e| Error::new(e.kind(), e.to_string()))
}

#[async_trait]
impl ProbeKind for WebProbeKind {
    fn kind(&self) -> &'static str {
        "web"
    }

    fn check(&self, options: &Options) -> Result<()> {
        probe("check", options).map(drop)
    }

    async fn build(&self, p: ProbeFor<'_>) -> Result<Arc<dyn HealthProbe>> {
        Ok(Arc::new(probe(p.name, p.options)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: serde_json::Value) -> Result<()> {
        WebProbeKind.check(v.as_object().unwrap())
    }

    #[test]
    fn options_are_checked_by_field() {
        check(serde_json::json!({"url": "http://127.0.0.1:1/x?from={{start_seconds}}", "json_path": "{$.data.value}"}))
            .unwrap();
        let e = check(serde_json::json!({"url": "http://x", "json_path": "$.a[?"})).unwrap_err();
        assert!(
            e.to_string().contains("`json_path`") && e.to_string().contains("RFC 9535"),
            "{e}"
        );
        let e = check(serde_json::json!({"url": "ftp://x/y"})).unwrap_err();
        assert!(e.to_string().contains("`url`"), "{e}");
        let e = check(serde_json::json!({"url": "not a url"})).unwrap_err();
        assert!(e.to_string().contains("`url`"), "{e}");
        let e = check(serde_json::json!({"url": "http://x", "body": "{}"})).unwrap_err();
        assert!(e.to_string().contains("`method`"), "{e}");
        let e = check(serde_json::json!({"url": "http://x", "timeout": "soon"})).unwrap_err();
        assert!(e.to_string().contains("`timeout`"), "{e}");
        let e = check(serde_json::json!({"url": "http://x", "headers": {"bad header": "v"}}))
            .unwrap_err();
        assert!(e.to_string().contains("headers.bad header"), "{e}");
        let e = check(serde_json::json!({"url": "http://x", "samples": {"canary": "$.c[*]", "baseline": "$.b["}}))
            .unwrap_err();
        assert!(e.to_string().contains("`samples.baseline`"), "{e}");
        let e = check(serde_json::json!({"url": "http://x", "aggregate": "median"})).unwrap_err();
        assert!(e.to_string().contains("`aggregate`"), "{e}");
    }
}
