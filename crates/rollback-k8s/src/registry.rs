//! `k8s://NAMESPACE/DEPLOYMENT`, `k8s://NAMESPACE/statefulset/NAME` and
//! `k8s://NAMESPACE/daemonset/NAME` targets and `kubernetes` probes, for the
//! watch file and the `rollback` command.

use std::sync::Arc;

use async_trait::async_trait;
use rollback_core::registry::{
    Backend, Options, ProbeFor, ProbeKind, TargetScheme, TargetUrl, config_from, scheme,
};
use rollback_core::{HealthProbe, Result};

use crate::{
    K8sConfig, K8sDeployment, K8sWorkload, K8sWorkloadConfig, KubernetesProbe, WorkloadKind,
};

const FORM: &str = "k8s://NAMESPACE/DEPLOYMENT, k8s://NAMESPACE/statefulset/NAME or k8s://NAMESPACE/daemonset/NAME";

/// What a `k8s://` URL names, with its options read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum K8sTargetConfig {
    /// `k8s://NAMESPACE/DEPLOYMENT` or `k8s://NAMESPACE/deployment/NAME`.
    Deployment(K8sConfig),
    /// `k8s://NAMESPACE/statefulset/NAME` or `k8s://NAMESPACE/daemonset/NAME`.
    Workload(K8sWorkloadConfig),
}

/// `k8s://NAMESPACE/DEPLOYMENT`, `k8s://NAMESPACE/KIND/NAME` with `KIND` as
/// kubectl writes it (`deployment`, `deploy`, `statefulset`, `sts`,
/// `daemonset`, `ds`, plurals and `.apps` too), with the options of
/// [`K8sConfig`] (`context`, `kubeconfig`, `dry_run`, `poll_interval`,
/// `rollout_timeout`, `retry`, `resume_paused`) or [`K8sWorkloadConfig`]
/// (the same but `resume_paused`). Any other kind is an error naming the
/// URL and the kinds that roll back.
pub fn k8s_target_config(url: &TargetUrl, options: &Options) -> Result<K8sTargetConfig> {
    let parts: Vec<&str> = url.rest().split('/').collect();
    let empty = parts.iter().any(|p| p.is_empty());
    match parts.as_slice() {
        [namespace, deployment] if !empty => config_from(
            url,
            &[("namespace", namespace), ("deployment", deployment)],
            options,
        )
        .map(K8sTargetConfig::Deployment),
        [namespace, kind, name] if !empty => {
            let lower = kind.to_ascii_lowercase();
            if matches!(
                lower.strip_suffix(".apps").unwrap_or(&lower),
                "deployment" | "deployments" | "deploy"
            ) {
                return config_from(
                    url,
                    &[("namespace", namespace), ("deployment", name)],
                    options,
                )
                .map(K8sTargetConfig::Deployment);
            }
            let Some(kind) = WorkloadKind::parse(kind) else {
                return Err(url.error(format!(
                    "{kind:?} is not a kind rollback-k8s rolls back (kubectl rollout undo rolls back \
                     Deployments, StatefulSets and DaemonSets); write it like {FORM}"
                )));
            };
            config_from(
                url,
                &[
                    ("namespace", namespace),
                    ("kind", kind.singular()),
                    ("name", name),
                ],
                options,
            )
            .map(K8sTargetConfig::Workload)
        }
        _ => Err(url.error(format!("write it like {FORM}"))),
    }
}

/// `k8s://`: a Deployment, StatefulSet or DaemonSet, as
/// [`k8s_target_config`] reads the URL.
pub fn k8s_scheme() -> impl TargetScheme {
    scheme("k8s", FORM, k8s_target_config, |c| {
        Box::pin(async move {
            match c {
                K8sTargetConfig::Deployment(c) => {
                    let deployment = K8sDeployment::connect(&c, None).await?;
                    Ok(Backend::new(deployment.rollbacker(), deployment))
                }
                K8sTargetConfig::Workload(c) => {
                    let workload = K8sWorkload::connect(&c, None).await?;
                    Ok(Backend::new(workload.rollbacker(), workload))
                }
            }
        })
    })
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
        let built = match k8s_target_config(probe.url, probe.target_options)? {
            K8sTargetConfig::Deployment(c) => {
                KubernetesProbe::new(probe.name, K8sDeployment::connect(&c, None).await?)
            }
            K8sTargetConfig::Workload(c) => {
                KubernetesProbe::of_workload(probe.name, K8sWorkload::connect(&c, None).await?)
            }
        };
        Ok(Arc::new(
            built
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
        let K8sTargetConfig::Deployment(c) =
            k8s_target_config(&url, o.as_object().unwrap()).unwrap()
        else {
            panic!("a Deployment")
        };
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

    #[test]
    fn statefulsets_and_daemonsets_are_named_as_kubectl_names_them() {
        let read = |u: &str| k8s_target_config(&TargetUrl::parse(u).unwrap(), &Options::new());
        for (u, kind, name) in [
            ("k8s://shop/statefulset/db", WorkloadKind::StatefulSet, "db"),
            ("k8s://shop/sts/db", WorkloadKind::StatefulSet, "db"),
            (
                "k8s://shop/statefulsets.apps/db",
                WorkloadKind::StatefulSet,
                "db",
            ),
            (
                "k8s://shop/daemonset/agent",
                WorkloadKind::DaemonSet,
                "agent",
            ),
            ("k8s://shop/ds/agent", WorkloadKind::DaemonSet, "agent"),
        ] {
            let Ok(K8sTargetConfig::Workload(c)) = read(u) else {
                panic!("{u}: {:?}", read(u))
            };
            assert_eq!(
                (c.namespace.as_str(), c.kind, c.name.as_str()),
                ("shop", kind, name),
                "{u}"
            );
        }
        for u in [
            "k8s://shop/web",
            "k8s://shop/deployment/web",
            "k8s://shop/deploy/web",
        ] {
            let Ok(K8sTargetConfig::Deployment(c)) = read(u) else {
                panic!("{u}: {:?}", read(u))
            };
            assert_eq!(
                (c.namespace.as_str(), c.deployment.as_str()),
                ("shop", "web"),
                "{u}"
            );
        }
        let e = read("k8s://shop/cronjob/nightly").unwrap_err().to_string();
        assert!(
            e.contains("target k8s://shop/cronjob/nightly: \"cronjob\" is not a kind rollback-k8s rolls back"),
            "{e}"
        );
        for u in ["k8s://shop//db", "k8s://shop/sts/db/x", "k8s://shop/"] {
            let e = read(u).unwrap_err().to_string();
            assert!(e.contains("k8s://NAMESPACE/statefulset/NAME"), "{u}: {e}");
        }
        let o = serde_json::json!({"resume_paused": true});
        let e = k8s_scheme()
            .check(
                &TargetUrl::parse("k8s://shop/sts/db").unwrap(),
                o.as_object().unwrap(),
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `resume_paused`"), "{e}");
    }
}
