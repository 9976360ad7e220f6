use super::*;

const YAML: &str = r#"
interval: 10s
initial_delay: 1m
bake_time: 15m
failure_limit: 1
consecutive_failure_limit: 2
inconclusive_limit: 3
consecutive_error_limit: 5
no_data: fail
dry_run: true
approval: manual
verify: 2m
max_rollbacks: 2
max_rollbacks_window: 12h
cooldown: 30m
on_irreversible: rollback
rollback_to: previous
retry: { max_attempts: 5, initial_backoff: 100ms, max_backoff: 2s }
probes:
  - name: error_rate
    success: "< 0.01"
    failure: ">= 0.05"
  - name: latency_p99
    success: "<= +10%"
    failure_limit: 3
    no_data: inconclusive
"#;

#[test]
fn every_knob_parses_from_yaml() {
    let p = Policy::from_yaml(YAML).unwrap();
    assert_eq!(p.interval, Duration::from_secs(10));
    assert_eq!(p.initial_delay, Duration::from_secs(60));
    assert_eq!(p.bake_time, Duration::from_secs(900));
    assert_eq!(p.failure_limit, Some(1));
    assert_eq!(p.consecutive_failure_limit, Some(2));
    assert_eq!(p.inconclusive_limit, 3);
    assert_eq!(p.consecutive_error_limit, 5);
    assert_eq!(p.no_data, NoData::Fail);
    assert!(p.dry_run);
    assert_eq!(p.approval, Approval::Manual);
    assert_eq!(p.verify, Duration::from_secs(120));
    assert_eq!(p.max_rollbacks, 2);
    assert_eq!(p.max_rollbacks_window, Duration::from_secs(12 * 3600));
    assert_eq!(p.cooldown, Duration::from_secs(1800));
    assert_eq!(p.on_irreversible, OnIrreversible::Rollback);
    assert_eq!(p.rollback_to, RollbackTo::Previous);
    assert_eq!(p.retry.max_attempts, 5);
    let rules = p.rules();
    assert_eq!(rules[0].failure_limit, Some(1));
    assert_eq!(rules[1].failure_limit, Some(3));
    assert_eq!(rules[1].no_data, NoData::Inconclusive);
    assert_eq!(rules[0].no_data, NoData::Fail);
    assert!(rules[1].success.unwrap().is_relative());
}

#[test]
fn json_and_toml_say_the_same() {
    let yaml = Policy::from_yaml(YAML).unwrap();
    let json = serde_json::to_string(&yaml).unwrap();
    assert_eq!(Policy::from_json(&json).unwrap(), yaml);
    let toml_text = toml::to_string(&yaml).unwrap();
    assert_eq!(Policy::from_toml(&toml_text).unwrap(), yaml);
}

#[test]
fn defaults_follow_argo() {
    let p = Policy::from_yaml("probes: [{name: e, success: '< 1'}]").unwrap();
    assert_eq!(p.interval, Duration::from_secs(30));
    assert_eq!(p.consecutive_error_limit, 4);
    assert_eq!(p.inconclusive_limit, 0);
    assert_eq!(p.rules()[0].failure_limit, Some(0));
    let p = Policy::from_yaml("consecutive_failure_limit: 2\nprobes: [{name: e, success: '< 1'}]")
        .unwrap();
    assert_eq!(
        p.rules()[0].failure_limit,
        None,
        "hysteresis alone must not be cut short by failure_limit 0"
    );
}

fn err(yaml: &str) -> PolicyError {
    Policy::from_yaml(yaml).unwrap_err()
}

#[test]
fn errors_name_the_field_and_the_reason() {
    let e = err("probes: [{name: e, sucess: '< 1'}]");
    assert_eq!(e.field, "probes[0].sucess");
    assert!(e.reason.contains("unknown field `sucess`"), "{e}");

    let e = err("interval: 5 parsecs\nprobes: [{name: e, success: '< 1'}]");
    assert_eq!(e.field, "interval");
    assert!(e.reason.contains("invalid duration \"5 parsecs\""), "{e}");

    let e = err("probes: [{name: e, success: '< 1%'}]");
    assert_eq!(e.field, "probes[0].success");
    assert!(e.reason.contains("percentage without a sign"), "{e}");

    let e = err("probes: [{name: e}]");
    assert_eq!(e.field, "probes[0]");
    assert!(e.reason.contains("needs a `success` or a `failure`"), "{e}");

    let e = err("probes: []");
    assert_eq!(e.field, "probes");

    let e = err("probes: [{name: e, success: '< 1'}, {name: e, failure: '> 2'}]");
    assert_eq!(e.field, "probes[1].name");

    let e = err("interval: 0s\nprobes: [{name: e, success: '< 1'}]");
    assert_eq!(e.field, "interval");

    let e = err("bake_time: 10s\ninterval: 1m\nprobes: [{name: e, success: '< 1'}]");
    assert_eq!(e.field, "bake_time");

    let e = err("no_data: maybe\nprobes: [{name: e, success: '< 1'}]");
    assert_eq!(e.field, "no_data");

    let e = err("probes: [{name: e, success: '< 1'}]\nextra: 1");
    assert!(e.reason.contains("unknown field `extra`"), "{e}");
    assert!(e.to_string().starts_with("invalid policy: field"), "{e}");
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("canary.yaml");
    std::fs::write(&path, "probes: [{name: e, success: 'soon'}]").unwrap();
    let e = Policy::from_file(&path).unwrap_err();
    assert!(e.to_string().contains("canary.yaml"), "{e}");
    assert_eq!(e.field, "probes[0].success");
    let e = Policy::from_file(dir.path().join("canary.ini")).unwrap_err();
    assert!(e.reason.contains("unknown policy format"), "{e}");
}

fn probes(n: usize) -> Vec<ProbePolicy> {
    (0..n)
        .map(|i| ProbePolicy::new(format!("p{i}")).success("< 1".parse().unwrap()))
        .collect()
}

#[test]
fn forty_thousand_probes_validate_and_a_late_duplicate_names_both_indices() {
    let mut policy = Policy::with_probes(probes(40_000));
    policy.validate().unwrap();
    policy
        .probes
        .push(ProbePolicy::new("p39998").failure("> 2".parse().unwrap()));
    let e = policy.validate().unwrap_err();
    assert_eq!(e.field, "probes[40000].name");
    assert_eq!(
        e.reason,
        "\"p39998\" is already the name of probes[39998]; probe names must be unique"
    );
    policy.probes[40_000].name = "p0".into();
    policy
        .probes
        .push(ProbePolicy::new("p0").failure("> 2".parse().unwrap()));
    let e = policy.validate().unwrap_err();
    assert_eq!(
        e.field, "probes[40000].name",
        "the first duplicate is reported"
    );
    assert!(e.reason.contains("already the name of probes[0];"), "{e}");
}

fn depth_error(text: &str, format: PolicyFormat) -> PolicyError {
    let e = Policy::parse(text, format).unwrap_err();
    assert_eq!(e.field, "(document)", "{e}");
    assert!(
        e.reason.contains("nests more than 64 levels deep"),
        "{format}: {e}"
    );
    e
}

fn not_too_deep(text: &str, format: PolicyFormat) {
    let valid = match format {
        PolicyFormat::Yaml => serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text).is_ok(),
        PolicyFormat::Json => serde_json::from_str::<serde_json::Value>(text).is_ok(),
        PolicyFormat::Toml => toml::from_str::<toml::Table>(text).is_ok(),
    };
    assert!(valid, "not valid {format}: {text}");
    assert_eq!(
        nesting::too_deep(text, format, Policy::MAX_DEPTH),
        None,
        "{format}: {text}"
    );
}

#[test]
fn forty_kilobytes_of_open_brackets_fail_fast_in_every_format() {
    let brackets = "[".repeat(40 * 1024);
    for format in [PolicyFormat::Yaml, PolicyFormat::Json, PolicyFormat::Toml] {
        let e = depth_error(&brackets, format);
        assert!(e.reason.contains("at line 1"), "{e}");
    }
    let e = depth_error(
        &format!("interval: 10s\nprobes: {brackets}"),
        PolicyFormat::Yaml,
    );
    assert!(e.reason.contains("YAML text"), "{e}");
    assert!(e.reason.contains("at line 2"), "{e}");
    depth_error(&format!("{{\"probes\": {brackets}"), PolicyFormat::Json);
    depth_error(&format!("probes = {brackets}"), PolicyFormat::Toml);
    depth_error(&"{a: ".repeat(10_000), PolicyFormat::Yaml);
    depth_error(&"- ".repeat(10_000), PolicyFormat::Yaml);
    let indented: String = (0..100).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
    depth_error(&indented, PolicyFormat::Yaml);
}

#[test]
fn sixty_four_levels_pass_and_sixty_five_do_not() {
    for (format, key) in [
        (PolicyFormat::Yaml, ""),
        (PolicyFormat::Json, ""),
        (PolicyFormat::Toml, "a = "),
    ] {
        let ok = format!("{key}{}{}", "[".repeat(64), "]".repeat(64));
        not_too_deep(&ok, format);
        let deep = format!("{key}{}{}", "[".repeat(65), "]".repeat(65));
        assert_eq!(nesting::too_deep(&deep, format, 64), Some(1), "{format}");
    }
    let block: String = (0..64).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
    not_too_deep(&block, PolicyFormat::Yaml);
    let block: String = (0..65).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
    assert_eq!(nesting::too_deep(&block, PolicyFormat::Yaml, 64), Some(65));
    // `[k: v]` is a sequence of a one-pair mapping: two levels.
    let pairs = format!("{}v{}", "[k: ".repeat(32), "]".repeat(32));
    not_too_deep(&pairs, PolicyFormat::Yaml);
    let pairs = format!("[{}v{}]", "[k: ".repeat(32), "]".repeat(32));
    assert_eq!(nesting::too_deep(&pairs, PolicyFormat::Yaml, 64), Some(1));
    not_too_deep(
        &format!("[{}v{}]", "{k: ".repeat(63), "}".repeat(63)),
        PolicyFormat::Yaml,
    );
    // A collection as a key lies under the mapping that opens at its `:`.
    let key = format!("{}{}", "[".repeat(63), "]".repeat(63));
    not_too_deep(&format!("{key}: v"), PolicyFormat::Yaml);
    not_too_deep(&format!("[{key}]"), PolicyFormat::Yaml);
    let key = format!("{}{}", "[".repeat(64), "]".repeat(64));
    assert_eq!(
        nesting::too_deep(&format!("{key}: v"), PolicyFormat::Yaml, 64),
        Some(1)
    );
    assert_eq!(
        nesting::too_deep(&format!("[{key}: v]"), PolicyFormat::Yaml, 65),
        Some(1)
    );
}

#[test]
fn brackets_in_strings_comments_and_text_do_not_count() {
    let many = "[{".repeat(100);
    for yaml in [
        format!("probes: [{{name: \"{many}\", success: '< 1'}}]"),
        format!("probes: [{{name: '{many}''{many}', success: '< 1'}}]"),
        format!("# {many}\nprobes: [{{name: e, success: '< 1'}}] # {many}"),
        format!("probes:\n  - name: p{many}\n    success: < 1"),
        format!("probes:\n  - name: >\n      {many}\n\n      {many}\n    success: < 1"),
        format!("probes:\n  - name: |2-\n      {many}\n    success: < 1"),
        format!("probes:\n  - name: a\n     \"{many}\n    success: < 1"),
        format!("probes: [{{name: \"a\n  {many}\", success: '< 1'}}]"),
        format!("probes: [{{name: \"a\\\"{many}\", success: '< 1'}}]"),
    ] {
        not_too_deep(&yaml, PolicyFormat::Yaml);
    }
    for json in [
        format!("{{\"probes\": [{{\"name\": \"{many}\", \"success\": \"< 1\"}}]}}"),
        format!("{{\"probes\": [{{\"name\": \"\\\"{many}\", \"success\": \"< 1\"}}]}}"),
    ] {
        not_too_deep(&json, PolicyFormat::Json);
    }
    for toml in [
        format!("# {many}\n[[probes]]\nname = \"{many}\" # {many}\nsuccess = '{many}'"),
        format!("[[probes]]\nname = \"\"\"\n{many}\"\"\"\"\nsuccess = '''{many}\n{many}'''"),
        format!("[[probes]]\nname = \"\\\"{many}\"\nsuccess = \"< 1\""),
    ] {
        not_too_deep(&toml, PolicyFormat::Toml);
    }
}

#[test]
fn what_yaml_reads_as_nesting_counts_whatever_precedes_it() {
    let deep = "[".repeat(100);
    for yaml in [
        // A quote inside unquoted text opens no string.
        format!("interval: 30s \"\nprobes: {deep}"),
        format!("interval: it's\nprobes: {deep}"),
        format!("probes: [a \"b, {deep}"),
        format!("probes: [a'b, {deep}"),
        // A comment ends at any YAML line break, CR included.
        format!("# comment\rprobes: {deep}"),
        format!("# comment\u{2028}probes: {deep}"),
        // A block scalar ends at its first less indented line.
        format!("a: |\n  \"\nprobes: {deep}"),
        format!("- a: |\n  b: {deep}"),
        // Unquoted text continues on more indented lines only.
        format!("a:\n  b\n  \"c\nprobes: {deep}"),
        // Brackets open after an anchor, a tag or a document start.
        format!("probes: &a {deep}"),
        format!("probes: !!seq {deep}"),
        format!("--- {deep}"),
    ] {
        depth_error(&yaml, PolicyFormat::Yaml);
    }
}

#[test]
fn texts_over_one_mebibyte_are_refused_before_parsing() {
    let head = "probes: [{name: e, success: '< 1'}]\n";
    let big = format!("{head}{}", "#".repeat(2 << 20));
    let e = Policy::from_yaml(&big).unwrap_err();
    assert_eq!(e.field, "(document)");
    let size = big.len();
    assert!(
        e.reason.contains(&format!(
            "the policy is {size} bytes, more than the limit of 1 MiB (1048576 bytes)"
        )),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yaml");
    std::fs::write(&path, &big).unwrap();
    let e = Policy::from_file(&path).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "invalid policy in {}: field `(document)`: the policy is {size} bytes",
            path.display()
        )),
        "{e}"
    );
    let at_limit = format!("{head}{}", "#".repeat(Policy::MAX_BYTES - head.len()));
    std::fs::write(&path, &at_limit).unwrap();
    Policy::from_file(&path).unwrap();
}

#[test]
fn policies_in_every_style_pass_the_limits() {
    let p = Policy::from_yaml(YAML).unwrap();
    Policy::from_json(&serde_json::to_string_pretty(&p).unwrap()).unwrap();
    Policy::from_toml(&toml::to_string(&p).unwrap()).unwrap();
    Policy::from_yaml(&serde_yaml_ng::to_string(&p).unwrap()).unwrap();
    Policy::from_yaml(
        "{interval: 10s, retry: {max_attempts: 2}, probes: [{name: e, success: '< 1'}, {name: \"f\", failure: \"> 2\"}]}",
    )
    .unwrap();
    Policy::from_yaml(
        "%YAML 1.2\n---\nprobes:\n- &probe\n  name: e # the error rate\n  success: < 0.01\n- name: f\n  failure: |-\n    > 2\n...\n",
    )
    .unwrap();
    Policy::from_yaml("interval: 10s\r\nprobes:\r\n  - {name: e, success: '< 1'}\r\n").unwrap();
}

#[test]
fn rules_are_shared_by_one_arc_and_follow_a_changed_copy() {
    use std::sync::Arc;
    let p = Arc::new(
        Policy::from_yaml("failure_limit: 1\nprobes: [{name: e, success: '< 0.01'}]").unwrap(),
    );
    let (a, b) = (shared_rules(&p), shared_rules(&p.clone()));
    assert!(Arc::ptr_eq(&a, &b), "one Arc, one copy of its rules");
    assert_eq!(a.rules[0].failure_limit, Some(1));
    assert_eq!(&*a.conditions, [a.rules[0].describe()]);
    // A changed copy in an Arc of its own has rules of its own.
    let mut changed = (*p).clone();
    changed.failure_limit = Some(4);
    let changed = Arc::new(changed);
    let c = shared_rules(&changed);
    assert!(!Arc::ptr_eq(&a, &c));
    assert_eq!(c.rules[0].failure_limit, Some(4));
    // Dropped policies do not keep the rules found for a new one at the
    // same address: each lookup is checked against the live Arc.
    drop((a, b, c, changed));
    for limit in 0..200 {
        let mut q = (*p).clone();
        q.failure_limit = Some(limit);
        let q = Arc::new(q);
        assert_eq!(shared_rules(&q).rules[0].failure_limit, Some(limit));
    }
}
