//! `k8s://NAMESPACE/DEPLOYMENT` targets and `kubernetes` probes, for the
//! watch file and the `rollback` command.

use std::sync::Arc;

use async_trait::async_trait;
use rollback_core::registry::{
    Backend, Options, ProbeFor, ProbeKind, TargetScheme, TargetUrl, config_from, scheme,
};
use rollback_core::{HealthProbe, Result};

use crate::{K8sConfig, K8sDeployment, KubernetesProbe};

const FORM: &str = "k8s://NAMESPACE/DEPLOYMENT";

/// `k8s://NAMESPACE/DEPLOYMENT`, with the options of [`K8sConfig`]
/// (`context`, `kubeconfig`, `dry_run`, `poll_interval`, `rollout_timeout`,
/// `retry`, `resume_paused`).
pub fn k8s_scheme() -> impl TargetScheme {
    scheme("k8s", FORM, config, |c| {
        Box::pin(async move {
            let deployment = K8sDeployment::connect(&c, None).await?;
            Ok(Backend::new(deployment.rollbacker(), deployment))
        })
    })
}

fn config(url: &TargetUrl, options: &Options) -> Result<K8sConfig> {
    let (namespace, deployment) = url.two_parts('/', FORM)?;
    config_from(
        url,
        &[("namespace", namespace), ("deployment", deployment)],
        options,
    )
}

/// `kubernetes`: the Deployment's own health ([`KubernetesProbe`]: progress
/// deadline, unavailable replicas, restarts), for a `k8s://` target; judge
/// it with `failure: "> 0"`. Options: `max_unavailable`, `max_restarts`.
#[derive(Debug, Clone, Copy, Default)]
pub struct KubernetesProbeKind;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeOptions {
    #[serde(default)]
    max_unavailable: i32,
    #[serde(default)]
    max_restarts: i32,
}

#[async_trait]
impl ProbeKind for KubernetesProbeKind {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn check(&self, options: &Options) -> Result<()> {
        rollback_core::registry::options::<ProbeOptions>(options).map(drop)
    }

    async fn build(&self, probe: ProbeFor<'_>) -> Result<Arc<dyn HealthProbe>> {
        if probe.url.scheme() != "k8s" {
            return Err(probe.url.error(format!(
                "probe {} is a kubernetes probe, which measures k8s:// targets only",
                probe.name
            )));
        }
        let o: ProbeOptions = rollback_core::registry::options(probe.options)?;
        let deployment =
            K8sDeployment::connect(&config(probe.url, probe.target_options)?, None).await?;
        Ok(Arc::new(
            KubernetesProbe::new(probe.name, deployment)
                .max_unavailable(o.max_unavailable)
                .max_restarts(o.max_restarts),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_names_namespace_and_deployment() {
        let url = TargetUrl::parse("k8s://shop/checkout").unwrap();
        let o = serde_json::json!({"context": "kind-kind", "poll_interval": "1s"});
        let c = config(&url, o.as_object().unwrap()).unwrap();
        assert_eq!(
            (c.namespace.as_str(), c.deployment.as_str()),
            ("shop", "checkout")
        );
        assert_eq!(c.context.as_deref(), Some("kind-kind"));
        let bad = serde_json::json!({"contxt": "kind"});
        let e = k8s_scheme()
            .check(&url, bad.as_object().unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("contxt"), "{e}");
        let e = k8s_scheme()
            .check(
                &TargetUrl::parse("k8s://checkout").unwrap(),
                &Options::new(),
            )
            .unwrap_err();
        assert!(e.to_string().contains(FORM), "{e}");
        assert!(KubernetesProbeKind.check(&Options::new()).is_ok());
    }
}
