use super::*;
use crate::RevisionHealth;

fn opts(v: serde_json::Value) -> Options {
    v.as_object().unwrap().clone()
}

#[test]
fn urls_give_fields_the_options_may_not_repeat() {
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct C {
        namespace: String,
        deployment: String,
        #[serde(default)]
        context: Option<String>,
    }
    let url = TargetUrl::parse("k8s://shop/checkout").unwrap();
    let (ns, d) = url.two_parts('/', "k8s://NAMESPACE/DEPLOYMENT").unwrap();
    let c: C = config_from(
        &url,
        &[("namespace", ns), ("deployment", d)],
        &opts(serde_json::json!({"context": "kind"})),
    )
    .unwrap();
    assert_eq!(
        (c.namespace.as_str(), c.deployment.as_str()),
        ("shop", "checkout")
    );
    assert_eq!(c.context.as_deref(), Some("kind"));
    let e = config_from::<C>(
        &url,
        &[("namespace", ns)],
        &opts(serde_json::json!({"namespace": "x"})),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("`namespace` comes from the URL k8s://shop/checkout"),
        "{e}"
    );
    for bad in [
        "k8s://shop",
        "k8s://shop/",
        "k8s:///checkout",
        "k8s://a/b/c",
    ] {
        let u = TargetUrl::parse(bad).unwrap();
        let e = u
            .two_parts('/', "k8s://NAMESPACE/DEPLOYMENT")
            .unwrap_err()
            .to_string();
        assert!(e.contains(bad) && e.contains("NAMESPACE/DEPLOYMENT"), "{e}");
    }
}

#[test]
fn urls_name_a_scheme_and_something() {
    let u = TargetUrl::parse(" k8s://shop/checkout ").unwrap();
    assert_eq!((u.scheme(), u.rest()), ("k8s", "shop/checkout"));
    assert_eq!(u.to_string(), "k8s://shop/checkout");
    for bad in [
        "shop/checkout",
        "K8s://x",
        "k8s://",
        "://x",
        "8k://x",
        "k8s://a\nb",
    ] {
        let e = TargetUrl::parse(bad).unwrap_err().to_string();
        assert!(e.contains(&format!("{:?}", bad.trim())), "{bad}: {e}");
    }
}

#[tokio::test]
async fn memory_targets_and_scripted_probes() {
    let r = Registry::with_memory();
    let url = TargetUrl::parse("memory://shop").unwrap();
    let b = r
        .connect(
            &url,
            &opts(serde_json::json!({"revisions": [{"id": "v1", "health": "good"}, "v2"]})),
        )
        .await
        .unwrap();
    let h = b.target.history().await.unwrap();
    assert_eq!(h[1].health, RevisionHealth::Good);
    assert_eq!(b.rollbacker.target(), b.target.id());
    let e = r
        .check(&url, &opts(serde_json::json!({"revisons": []})))
        .unwrap_err()
        .to_string();
    assert!(e.contains("memory://shop") && e.contains("revisons"), "{e}");

    let none = Options::new();
    let o = opts(serde_json::json!({"per_revision": {"v2": [0.5, null]}, "values": [0.1]}));
    let p = r
        .probe_kind("scripted")
        .unwrap()
        .build(ProbeFor {
            name: "error_rate",
            options: &o,
            url: &url,
            target_options: &none,
        })
        .await
        .unwrap();
    let ctx = |rev: &str| crate::ProbeContext::new("t".into(), rev.into(), crate::Timestamp::EPOCH);
    assert_eq!(p.measure(&ctx("v2")).await.unwrap().value, Some(0.5));
    assert_eq!(p.measure(&ctx("v2")).await.unwrap().value, None);
    assert_eq!(p.measure(&ctx("v1")).await.unwrap().value, Some(0.1));
    let e = r.probe_kind("datadog").unwrap_err().to_string();
    assert!(e.contains("this build knows scripted"), "{e}");
    assert!(r.probe_kind("scripted").unwrap().check(&none).is_err());
}
