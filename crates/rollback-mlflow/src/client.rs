//! Raw calls to the MLflow model registry REST API (`/api/2.0/mlflow/…`).

use std::time::Duration;

use reqwest::{Method, Url};
use rollback_core::http::{Auth, excerpt};
use rollback_core::policy::RetryPolicy;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::{
    MlflowError, ModelVersion, ModelVersionPage, RegisteredModel, Tag, config::ENV_TRACKING_URI,
};

#[derive(serde::Deserialize)]
struct ApiError {
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// A client of one MLflow tracking server's REST API.
///
/// Cheap to clone (it shares the `reqwest::Client`). Every method says what
/// it was doing in its errors.
#[derive(Debug, Clone)]
pub struct MlflowClient {
    http: reqwest::Client,
    base: Url,
    auth: Option<Auth>,
    retry: RetryPolicy,
}

/// The default timeout of each request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl MlflowClient {
    /// A client of the server at `tracking_uri` (`http://127.0.0.1:5000`,
    /// `https://mlflow.example.com/prefix`), with its own HTTP client and a
    /// 30 s timeout per request, no authentication and no retries.
    pub fn new(tracking_uri: &str) -> Result<Self, MlflowError> {
        let http = reqwest::Client::builder()
            .timeout(DEFAULT_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| MlflowError::Config(format!("building the HTTP client failed: {e}")))?;
        Self::with_http_client(http, tracking_uri)
    }

    /// A client that sends its requests through `http`, which the caller has
    /// configured (timeouts, proxies, TLS roots).
    pub fn with_http_client(
        http: reqwest::Client,
        tracking_uri: &str,
    ) -> Result<Self, MlflowError> {
        let mut base = Url::parse(tracking_uri.trim()).map_err(|e| {
            MlflowError::Config(format!(
                "the MLflow tracking URI {tracking_uri:?} is not a URL ({e})"
            ))
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(MlflowError::Config(format!(
                "the MLflow tracking URI {tracking_uri:?} is not an http(s) URL; this crate talks to a tracking server's REST API (file stores, `databricks` and `sqlite` URIs are not supported)"
            )));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        base.set_query(None);
        base.set_fragment(None);
        Ok(MlflowClient {
            http,
            base,
            auth: None,
            retry: RetryPolicy::NEVER,
        })
    }

    /// A client configured the way MLflow's own client is: the server from
    /// `MLFLOW_TRACKING_URI`, the credentials from `MLFLOW_TRACKING_TOKEN` or
    /// `MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD`.
    pub fn from_env() -> Result<Self, MlflowError> {
        let uri = std::env::var(ENV_TRACKING_URI).map_err(|_| {
            MlflowError::Config(format!(
                "the environment variable {ENV_TRACKING_URI} is not set"
            ))
        })?;
        Ok(Self::new(&uri)?.with_auth(crate::auth_from_env()))
    }

    /// Authenticate every request with `auth` (`None`: send no credentials).
    pub fn with_auth(mut self, auth: impl Into<Option<Auth>>) -> Self {
        self.auth = auth.into();
        self
    }

    /// Retry a request that fails in passing (no answer, 429, 5xx) by
    /// `retry`; requests that create something are never retried. Default
    /// [`RetryPolicy::NEVER`].
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// One request, retried by [`Self::with_retry`]'s policy when `idempotent`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, &str)],
        body: Option<serde_json::Value>,
        operation: impl Fn() -> String,
    ) -> Result<T, MlflowError> {
        let idempotent = !endpoint.ends_with("/create");
        if !idempotent || self.retry.max_attempts <= 1 {
            return self
                .call_once(method, endpoint, query, body, &operation)
                .await;
        }
        // The policy's loop decides on core errors; the detailed error of
        // the last try is kept to return.
        let last = &std::sync::Mutex::new(None);
        let (method, body, operation) = (&method, &body, &operation);
        let tried = self
            .retry
            .run(
                move |_| async move {
                    let r = self
                        .call_once(method.clone(), endpoint, query, body.clone(), operation)
                        .await;
                    r.map_err(|e| {
                        let kind = e.kind();
                        *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        rollback_core::Error::new(kind, "retried")
                    })
                },
                fastrand::f64,
                move |attempt, _, wait| {
                    tracing::warn!(attempt, ?wait, operation = %operation(), "MLflow request failed in passing; retrying");
                },
            )
            .await;
        tried.map_err(|_| {
            last.lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_else(|| MlflowError::Config(format!("{}: no try was made", operation())))
        })
    }

    async fn call_once<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, &str)],
        body: Option<serde_json::Value>,
        operation: &impl Fn() -> String,
    ) -> Result<T, MlflowError> {
        let url = self
            .base
            .join(&format!("api/2.0/mlflow/{endpoint}"))
            .map_err(|e| {
                MlflowError::Config(format!("{}: cannot build the URL ({e})", operation()))
            })?;
        let mut req = self.http.request(method, url.clone());
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req = match &self.auth {
            None => req,
            Some(Auth::Bearer { token }) => req.bearer_auth(token.expose()),
            Some(Auth::Basic { username, password }) => {
                req.basic_auth(username, Some(password.expose()))
            }
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(source) => {
                return Err(MlflowError::Request {
                    operation: operation(),
                    url: url.to_string(),
                    source,
                });
            }
        };
        let status = resp.status();
        let text = match resp.text().await {
            Ok(t) => t,
            Err(source) => {
                return Err(MlflowError::Request {
                    operation: operation(),
                    url: url.to_string(),
                    source,
                });
            }
        };
        if status.is_success() {
            serde_json::from_str(if text.trim().is_empty() { "{}" } else { &text }).map_err(|e| {
                MlflowError::Decode {
                    operation: operation(),
                    url: url.to_string(),
                    reason: format!("{e}; the answer starts with {:?}", excerpt(text.as_bytes())),
                }
            })
        } else {
            let (code, message) = match serde_json::from_str::<ApiError>(&text) {
                Ok(ApiError {
                    error_code: Some(code),
                    message,
                }) => (code, message.unwrap_or_default()),
                _ => (
                    format!("HTTP_{}", status.as_u16()),
                    excerpt(text.as_bytes()),
                ),
            };
            Err(MlflowError::Api {
                operation: operation(),
                status: status.as_u16(),
                code,
                message,
            })
        }
    }

    /// Create a registered model.
    pub async fn create_registered_model(
        &self,
        name: &str,
    ) -> Result<RegisteredModel, MlflowError> {
        #[derive(serde::Deserialize)]
        struct R {
            registered_model: RegisteredModel,
        }
        let r: R = self
            .call(
                Method::POST,
                "registered-models/create",
                &[],
                Some(json!({ "name": name })),
                || format!("creating registered model {name:?}"),
            )
            .await?;
        Ok(r.registered_model)
    }

    /// Read a registered model, with its aliases.
    pub async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel, MlflowError> {
        #[derive(serde::Deserialize)]
        struct R {
            registered_model: RegisteredModel,
        }
        let r: R = self
            .call(
                Method::GET,
                "registered-models/get",
                &[("name", name)],
                None,
                || format!("reading registered model {name:?}"),
            )
            .await?;
        Ok(r.registered_model)
    }

    /// Create a model version from the artifacts at `source`, produced by `run_id`.
    pub async fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: Option<&str>,
        tags: &[Tag],
    ) -> Result<ModelVersion, MlflowError> {
        let mut body = json!({ "name": name, "source": source, "tags": tags });
        if let Some(run_id) = run_id {
            body["run_id"] = json!(run_id);
        }
        self.model_version_call(
            Method::POST,
            "model-versions/create",
            &[],
            Some(body),
            || format!("creating a version of registered model {name:?} from {source:?}"),
        )
        .await
    }

    /// Read one model version.
    pub async fn get_model_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<ModelVersion, MlflowError> {
        self.model_version_call(
            Method::GET,
            "model-versions/get",
            &[("name", name), ("version", version)],
            None,
            || format!("reading version {version} of registered model {name:?}"),
        )
        .await
    }

    /// The version an alias points at. MLflow answers an unset alias with
    /// HTTP 400 `INVALID_PARAMETER_VALUE`; this turns that into
    /// [`MlflowError::AliasNotSet`] after checking that the model exists (an
    /// unknown model stays `RESOURCE_DOES_NOT_EXIST`).
    pub async fn get_model_version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<ModelVersion, MlflowError> {
        let got = self
            .model_version_call(
                Method::GET,
                "registered-models/alias",
                &[("name", name), ("alias", alias)],
                None,
                || format!("reading alias {alias:?} of registered model {name:?}"),
            )
            .await;
        match got {
            Err(e) if e.has_code(crate::error::codes::INVALID_PARAMETER_VALUE) => {
                let model = self.get_registered_model(name).await?;
                if model.aliases.iter().any(|a| a.alias == alias) {
                    Err(e)
                } else {
                    Err(MlflowError::AliasNotSet {
                        model: name.to_owned(),
                        alias: alias.to_owned(),
                    })
                }
            }
            other => other,
        }
    }

    /// Point `alias` at `version` (moving it if it points elsewhere).
    pub async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
    ) -> Result<(), MlflowError> {
        let body = json!({ "name": name, "alias": alias, "version": version });
        let _: serde::de::IgnoredAny = self
            .call(
                Method::POST,
                "registered-models/alias",
                &[],
                Some(body),
                || {
                    format!(
                        "pointing alias {alias:?} of registered model {name:?} at version {version}"
                    )
                },
            )
            .await?;
        Ok(())
    }

    /// Remove an alias.
    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<(), MlflowError> {
        let body = json!({ "name": name, "alias": alias });
        let _: serde::de::IgnoredAny = self
            .call(
                Method::DELETE,
                "registered-models/alias",
                &[],
                Some(body),
                || format!("deleting alias {alias:?} of registered model {name:?}"),
            )
            .await?;
        Ok(())
    }

    /// One page of the versions of registered model `name`, highest version
    /// first. `page_token` is the previous page's `next_page_token`.
    pub async fn search_model_versions(
        &self,
        name: &str,
        max_results: u32,
        page_token: Option<&str>,
    ) -> Result<ModelVersionPage, MlflowError> {
        let filter = name_filter(name)?;
        let max_results = max_results.to_string();
        let mut query = vec![
            ("filter", filter.as_str()),
            ("max_results", max_results.as_str()),
            ("order_by", "version_number DESC"),
        ];
        if let Some(token) = page_token {
            query.push(("page_token", token));
        }
        self.call(Method::GET, "model-versions/search", &query, None, || {
            format!("listing the versions of registered model {name:?}")
        })
        .await
    }

    /// The latest version in each of `stages` (legacy stage mode).
    pub async fn get_latest_versions(
        &self,
        name: &str,
        stages: &[&str],
    ) -> Result<Vec<ModelVersion>, MlflowError> {
        #[derive(serde::Deserialize)]
        struct R {
            #[serde(default)]
            model_versions: Vec<ModelVersion>,
        }
        let r: R = self
            .call(
                Method::POST,
                "registered-models/get-latest-versions",
                &[],
                Some(json!({ "name": name, "stages": stages })),
                || format!("reading the latest versions in stages {stages:?} of registered model {name:?}"),
            )
            .await?;
        Ok(r.model_versions)
    }

    /// Set a tag on a model version.
    pub async fn set_model_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> Result<(), MlflowError> {
        let body = json!({ "name": name, "version": version, "key": key, "value": value });
        let _: serde::de::IgnoredAny = self
            .call(
                Method::POST,
                "model-versions/set-tag",
                &[],
                Some(body),
                || format!("setting tag {key:?} on version {version} of registered model {name:?}"),
            )
            .await?;
        Ok(())
    }

    /// Delete a tag of a model version (MLflow accepts deleting an absent tag).
    pub async fn delete_model_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
    ) -> Result<(), MlflowError> {
        let body = json!({ "name": name, "version": version, "key": key });
        let _: serde::de::IgnoredAny = self
            .call(
                Method::DELETE,
                "model-versions/delete-tag",
                &[],
                Some(body),
                || {
                    format!(
                        "deleting tag {key:?} of version {version} of registered model {name:?}"
                    )
                },
            )
            .await?;
        Ok(())
    }

    /// Legacy stage mode: move `version` into `stage`. With
    /// `archive_existing_versions`, MLflow archives the versions that were in
    /// the stage. Stages are deprecated by MLflow in favour of aliases.
    #[deprecated(note = "MLflow deprecated model stages; use aliases (set_alias)")]
    pub async fn transition_stage(
        &self,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing_versions: bool,
    ) -> Result<ModelVersion, MlflowError> {
        let body = json!({
            "name": name,
            "version": version,
            "stage": stage,
            "archive_existing_versions": archive_existing_versions,
        });
        self.model_version_call(
            Method::POST,
            "model-versions/transition-stage",
            &[],
            Some(body),
            || format!("moving version {version} of registered model {name:?} to stage {stage}"),
        )
        .await
    }

    async fn model_version_call(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, &str)],
        body: Option<serde_json::Value>,
        operation: impl Fn() -> String,
    ) -> Result<ModelVersion, MlflowError> {
        #[derive(serde::Deserialize)]
        struct R {
            model_version: ModelVersion,
        }
        let r: R = self.call(method, endpoint, query, body, operation).await?;
        Ok(r.model_version)
    }
}

/// The search filter for one model's versions. MLflow's filter grammar takes
/// a single- or double-quoted string without escapes.
fn name_filter(name: &str) -> Result<String, MlflowError> {
    if !name.contains('\'') {
        Ok(format!("name='{name}'"))
    } else if !name.contains('"') {
        Ok(format!("name=\"{name}\""))
    } else {
        Err(MlflowError::Config(format!(
            "registered model name {name:?} holds both quote characters; MLflow's search filter cannot express it"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_keeps_a_path_prefix() {
        let c = MlflowClient::new("https://example.invalid/mlflow").unwrap();
        assert_eq!(c.base_url().as_str(), "https://example.invalid/mlflow/");
        let e = MlflowClient::new("file:///tmp/mlruns")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an http(s) URL"), "{e}");
        assert!(MlflowClient::new("databricks").is_err());
    }

    #[test]
    fn filters_quote_names() {
        assert_eq!(name_filter("rec").unwrap(), "name='rec'");
        assert_eq!(name_filter("bob's").unwrap(), "name=\"bob's\"");
        assert!(name_filter("a'b\"c").is_err());
    }
}
