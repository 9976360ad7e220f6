use std::collections::HashMap;

use super::*;
use crate::Phase;

const FILE: &str = r#"
policy:
  interval: 30s
  failure_limit: 1
  verify: 1m
audit: audit.jsonl
state: state
probes:
  - name: error_rate
    success: "< 0.01"
    scripted:
      per_revision: { v2: [0.002, 0.02, 0.03], v1: [0.001] }
targets:
  - url: memory://shop/checkout
    revisions: [{ id: v1, health: good }, v2]
  - { url: memory://shop/cart, revisions: [c1] }
"#;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

fn parse(text: &str, format: PolicyFormat) -> std::result::Result<WatchFile, WatchFileError> {
    WatchFile::parse(
        text,
        format,
        "rollback.yaml",
        Path::new("/srv/rollback"),
        &Registry::with_memory(),
        &env(&[]),
    )
}

fn problems(text: &str) -> Vec<String> {
    parse(text, PolicyFormat::Yaml)
        .unwrap_err()
        .problems
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_file_holds_everything_a_watch_needs() {
    let w = parse(FILE, PolicyFormat::Yaml).unwrap();
    assert_eq!(w.targets.len(), 2);
    assert_eq!(w.targets[1].url.as_str(), "memory://shop/cart");
    assert_eq!(w.policy.probes[0].name, "error_rate");
    assert_eq!(w.policy.failure_limit, Some(1));
    assert_eq!(
        w.audit,
        Some(AuditFile {
            path: "/srv/rollback/audit.jsonl".into(),
            format: AuditFormat::JsonLines
        })
    );
    assert_eq!(w.state.as_deref(), Some(Path::new("/srv/rollback/state")));
}

#[test]
fn json_and_toml_say_the_same() {
    let json = r#"{"policy": {"interval": "30s"},
        "probes": [{"name": "e", "success": "< 1", "scripted": {"values": [0.5]}}],
        "targets": [{"url": "memory://a", "revisions": ["v1"]}]}"#;
    let toml = r#"
targets = [{ url = "memory://a", revisions = ["v1"] }]
[policy]
interval = "30s"
[[probes]]
name = "e"
success = "< 1"
scripted = { values = [0.5] }
"#;
    let a = parse(json, PolicyFormat::Json).unwrap();
    let b = parse(toml, PolicyFormat::Toml).unwrap();
    assert_eq!(a.policy, b.policy);
    assert_eq!(a.targets[0].options, b.targets[0].options);
}

#[test]
fn every_problem_is_listed_with_its_field() {
    let text = r#"
policy: { interval: 30s, inteval: 5s }
probes:
  - name: error_rate
    success: "< 0.01"
    datadog: {}
  - name: latency
    scripted: { values: [1] }
  - name: error_rate
    success: "< 1"
    scripted: {}
targets:
  - url: memory://a
    revisions: [v1]
  - url: memory://a
    revisions: [v1]
  - url: nomad://jobs/web
  - url: shop/checkout
  - url: memory://b
    revisons: [v1]
extra: 1
"#;
    let p = problems(text);
    let want = [
        "field `extra`: unknown field",
        "field `probes[0].datadog`: unknown probe kind \"datadog\"; this build knows scripted",
        "field `probes[2].name`: \"error_rate\" is already the name of probes[0]",
        "field `probes[2].scripted`: a scripted probe needs `values` or `per_revision`",
        "field `targets[1].url`: target memory://a is already targets[0]",
        "field `targets[2]`: target nomad://jobs/web: unknown scheme \"nomad\"; this build knows memory (memory://NAME)",
        "field `targets[3].url`: target URL \"shop/checkout\" has no scheme",
        "field `targets[4]`: target memory://b: `revisons`",
        "field `probes`: probe \"latency\" has no conditions",
    ];
    for w in want {
        assert!(
            p.iter().any(|l| l.starts_with(w)),
            "missing {w:?} in {p:#?}"
        );
    }
}

#[test]
fn policy_and_probes_must_agree() {
    let p = problems(
        r#"
policy: { probes: [{ name: pods, failure: "> 0" }, { name: error_rate, success: "< 1" }] }
probes:
  - name: error_rate
    success: "< 0.01"
    scripted: { values: [0] }
targets: [memory://a]
"#,
    );
    assert!(
        p.iter().any(|l| l.contains(
            "judges probe \"pods\", which the file's probes do not define (they define: error_rate)"
        )),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains("conditions of probe \"error_rate\" are given twice")),
        "{p:#?}"
    );
    // A bad condition in the file's probe names the file's probe.
    let p = problems(
        r#"
probes:
  - name: error_rate
    success: "< one percent"
    scripted: { values: [0] }
targets: [{ url: memory://a, revisions: [v1] }]
"#,
    );
    assert!(p[0].starts_with("field `probes[0].success`"), "{p:#?}");
}

#[test]
fn secrets_come_from_the_environment_and_are_never_shown() {
    let text = r#"
probes:
  - name: e
    success: "${LIMIT}"
    scripted: { values: [0] }
targets:
  - url: memory://a
    revisions: ["${FIRST}", "$${LITERAL}"]
  - url: memory://b
    revisions: ["${MISSING}"]
"#;
    let e = WatchFile::parse(
        text,
        PolicyFormat::Yaml,
        "w.yaml",
        Path::new("."),
        &Registry::with_memory(),
        &env(&[("LIMIT", "hunter2"), ("FIRST", "v1")]),
    )
    .unwrap_err();
    let all = e.to_string();
    assert!(
        all.contains("the environment variable MISSING is not set"),
        "{all}"
    );
    assert!(all.contains("targets[1].revisions[0]"), "{all}");
    assert!(!all.contains("hunter2"), "a secret was shown: {all}");
    assert!(all.contains("${LIMIT}"), "{all}");

    let ok = WatchFile::parse(
        &text.replace("${MISSING}", "v9"),
        PolicyFormat::Yaml,
        "w.yaml",
        Path::new("."),
        &Registry::with_memory(),
        &env(&[("LIMIT", "< 1"), ("FIRST", "v1")]),
    )
    .unwrap();
    let revisions = ok.targets[0].options["revisions"].clone();
    assert_eq!(revisions, serde_json::json!(["v1", "${LITERAL}"]));
}

#[test]
fn a_policy_by_path_is_read_relative_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("canary.yaml"),
        "interval: 10s\nprobes: [{name: e, success: '< 1'}]\n",
    )
    .unwrap();
    let file = dir.path().join("rollback.yaml");
    std::fs::write(
        &file,
        "policy: canary.yaml\nprobes: [{name: e, scripted: {values: [0]}}]\ntargets: [{url: 'memory://a', revisions: [v1]}]\n",
    )
    .unwrap();
    let w = WatchFile::load(&file, &Registry::with_memory()).unwrap();
    assert_eq!(w.policy.interval, std::time::Duration::from_secs(10));
    std::fs::write(&file, "policy: missing.yaml\ntargets: []\n").unwrap();
    let e = WatchFile::load(&file, &Registry::with_memory()).unwrap_err();
    assert!(e.to_string().contains("missing.yaml"), "{e}");
    assert!(e.to_string().contains(&file.display().to_string()), "{e}");
    let e = WatchFile::load(dir.path().join("nope.yaml"), &Registry::with_memory()).unwrap_err();
    assert!(e.to_string().contains("cannot read it"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn a_file_resolves_to_watches_the_engine_runs() {
    let w = parse(FILE, PolicyFormat::Yaml).unwrap();
    let specs = w.resolve(&Registry::with_memory()).await.unwrap();
    assert_eq!(specs.len(), 2);
    let engine = crate::Engine::builder()
        .clock(Arc::new(crate::time::TokioClock::starting_at(
            crate::Timestamp::EPOCH,
        )))
        .build();
    let mut first = engine.watch(specs[0].clone()).await.unwrap();
    let end = first.finished().await;
    assert!(matches!(end, Phase::RolledBack { .. }), "{end:?}");
    assert_eq!(specs[0].target.current().await.unwrap().id().as_str(), "v1");
}

const PLAN: &str = r#"
policy: { interval: 30s, verify: 1m }
probes:
  - name: errors
    success: "< 0.01"
    scripted: { per_revision: { v2: [0.05] }, values: [0.001] }
targets:
  - { url: memory://schema, revisions: [{ id: v1, health: good }, v2] }
  - { url: memory://api, revisions: [{ id: v1, health: good }, v2], depends_on: [memory://schema] }
  - { url: memory://frontend, revisions: [{ id: v1, health: good }, v2], depends_on: [memory://api] }
"#;

#[tokio::test(start_paused = true)]
async fn targets_that_depend_on_each_other_are_one_plan() {
    let w = parse(PLAN, PolicyFormat::Yaml).unwrap();
    assert!(w.targets[0].options.get("depends_on").is_none());
    let specs = w.resolve(&Registry::with_memory()).await.unwrap();
    let plan = w.plan(specs).unwrap().expect("a plan");
    let order: Vec<&str> = plan.order().iter().map(crate::TargetId::as_str).collect();
    assert_eq!(order, ["frontend", "api", "schema"]);
    let engine = crate::Engine::builder()
        .clock(Arc::new(crate::time::TokioClock::starting_at(
            crate::Timestamp::EPOCH,
        )))
        .build();
    let report = plan.run(&engine).await.unwrap();
    assert_eq!(report.rolled_back.len(), 3);
    // Without depends_on, no plan.
    let w = parse(FILE, PolicyFormat::Yaml).unwrap();
    let specs = w.resolve(&Registry::with_memory()).await.unwrap();
    assert!(w.plan(specs).unwrap().is_none());
}

#[test]
fn a_plan_needs_known_targets_and_an_order() {
    let p = problems(&PLAN.replace("depends_on: [memory://schema]", "depends_on: [memory://db]"));
    assert!(
        p.iter()
            .any(|l| l.contains("depends on memory://db, which is not in the plan")),
        "{p:#?}"
    );
    let cyclic = PLAN.replace(
        "revisions: [{ id: v1, health: good }, v2] }\n  - { url: memory://api",
        "revisions: [{ id: v1, health: good }, v2], depends_on: [memory://frontend] }\n  - { url: memory://api",
    );
    let p = problems(&cyclic);
    assert!(p.iter().any(|l| l.contains("form a cycle")), "{p:#?}");
}

#[test]
fn short_values_are_hidden_only_where_they_stand_alone() {
    use super::parse::mask;
    // One letter: "unknown" stays readable, the value alone is hidden.
    assert_eq!(
        mask("unknown probe kind k in x", "k", "${K}"),
        "unknown probe kind ${K} in x"
    );
    assert_eq!(mask("token=ab; abc", "ab", "${T}"), "token=${T}; abc");
    assert_eq!(mask("ab", "ab", "${T}"), "${T}");
    assert_eq!(mask("ab ab", "ab", "${T}"), "${T} ${T}");
    // Four characters and more: hidden everywhere, inside words too.
    assert_eq!(mask("xhunter2y hunter2", "hunter2", "${S}"), "x${S}y ${S}");
    assert_eq!(mask("nothing here", "", "${E}"), "nothing here");
    assert_eq!(mask("é日本é", "日本", "${J}"), "é日本é");
    assert_eq!(mask("é 日本 é", "日本", "${J}"), "é ${J} é");
}

#[test]
fn a_bad_policy_value_names_its_field_and_no_position_of_an_internal_copy() {
    let text = r#"
policy:
  interval: 10s
  failure_limit: lots
probes:
  - name: e
    success: "< 1"
    failure_limit: -3
    scripted: { values: [0] }
targets:
  - url: memory://a
    revisions: [v1]
"#;
    let all = parse(text, PolicyFormat::Yaml).unwrap_err().to_string();
    assert!(all.contains("policy.failure_limit"), "{all}");
    assert!(all.contains("string \"lots\", expected u32"), "{all}");
    assert!(!all.contains("line 1 column"), "{all}");
    assert_eq!(
        super::parse::without_position("x at line 12 column 3"),
        "x",
        "only a trailing position is cut"
    );
    assert_eq!(
        super::parse::without_position("at line twelve column 3"),
        "at line twelve column 3"
    );
}
