//! Valid inputs the fuzz targets start from, and tokens of each syntax.

/// Policies in YAML: every knob, the styles the examples use, and the YAML
/// features a pre-scan must read right (comments, anchors, block scalars,
/// quotes, CRLF, documents).
pub(crate) const POLICY_YAML: &[&[u8]] = &[
    br#"
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
"#,
    br#"
interval: 30s
initial_delay: 1m
bake_time: 15m
consecutive_failure_limit: 2
verify: 3m
rollback_to: last_known_good
probes:
  - { name: http_5xx_ratio, success: "< 0.01", failure: ">= 0.01" }
  - { name: p99_latency_ms, success: "<= 300", failure: "> 300" }
  - { name: k8s_problems, success: "== 0", failure: "> 0" }
"#,
    b"interval: 200ms\nbake_time: 1h\nfailure_limit: 1\nverify: 600ms\nprobes: [{name: click_through_rate, success: '>= -5%'}]",
    b"{interval: 10s, retry: {max_attempts: 2}, probes: [{name: e, success: '< 1'}, {name: \"f\", failure: \"between 0.9 and 1.1\"}]}",
    b"%YAML 1.2\n---\n# the checkout service\nprobes:\n- &probe\n  name: e # the error rate\n  success: < 0.01\n- name: 'it''s'\n  failure: |-\n    outside 1..2\n  no_data: pass\n...\n",
    b"interval: 10s\r\nbake_time: 31d\r\nprobes:\r\n  - name: \"a \\\"quoted\\\" name\"\r\n    success: >\r\n      0.9..1.1\r\n",
    br#"{"interval": "1h 30m", "verify": "0s", "probes": [{"name": "ok", "failure": "!= 0"}]}"#,
];

/// Policies in JSON.
pub(crate) const POLICY_JSON: &[&[u8]] = &[
    br#"{"interval":"10s","initial_delay":"1m","bake_time":"15m","failure_limit":1,"consecutive_failure_limit":2,"inconclusive_limit":3,"consecutive_error_limit":5,"no_data":"fail","dry_run":true,"approval":"manual","verify":"2m","rollback_timeout":"10m","max_rollbacks":2,"max_rollbacks_window":"12h","cooldown":"30m","on_irreversible":"rollback","rollback_to":"previous","retry":{"max_attempts":5,"initial_backoff":"100ms","max_backoff":"2s"},"probes":[{"name":"error_rate","success":"< 0.01","failure":">= 0.05"},{"name":"latency_p99","success":"<= +10%","failure_limit":3,"no_data":"inconclusive"}]}"#,
    b"{\n  \"interval\": \"30s\",\n  \"probes\": [\n    { \"name\": \"e\\u00e9\\\"\", \"success\": \"between 0.9 and 1.1\" },\n    { \"name\": \"f\", \"failure\": \"outside -1..1e3\" }\n  ]\n}\n",
];

/// Policies in TOML.
pub(crate) const POLICY_TOML: &[&[u8]] = &[
    br#"interval = "10s"
bake_time = "15m"
failure_limit = 1
dry_run = true
approval = "manual"
retry = { max_attempts = 5, initial_backoff = "100ms", max_backoff = "2s" }

# the two probes
[[probes]]
name = "error_rate"
success = "< 0.01"
failure = '>= 0.05'

[[probes]]
name = """latency "p99\""""
success = '''<= +10%'''
no_data = "inconclusive"
"#,
    b"interval = '1m'\r\nprobes = [{ name = \"e\", success = \"< 1\" }, { name = 'f', failure = \"0..1\" }]\r\n[retry]\nmax_attempts = 2\n",
];

/// Conditions, each form.
pub(crate) const CONDITIONS: &[&[u8]] = &[
    b"< 0.01",
    b"<=100",
    b"> 0.9",
    b">= 0.99",
    b"== 0",
    b"!= -1e3",
    b"between 0.9 and 1.1",
    b"0.9..1.1",
    b"0.9..=1.1",
    b"outside -1..1",
    b"<= +10%",
    b">= -5.5%",
    b"  <  1E-9  ",
];

/// Series in CSV: with and without baselines, newest first, gaps and
/// Prometheus' spellings of NaN and the infinities.
pub(crate) const SERIES_CSV: &[&[u8]] = &[
    b"timestamp,probe,value\n1795780800,error_rate,0.001\n1795780800,latency,0.05\n1795780810,error_rate,0.05\n1795780810,latency,\n",
    b"timestamp,probe,value,baseline\n2026-11-27T12:00:10Z,ctr,0.04,0.041\n2026-11-27T12:00:00Z,ctr,NaN,+Inf\n1795780790.5,ctr,-Inf,null\n",
    b"probe, value ,timestamp\r\n\"e,1\",1e-3,1795780800\r\n\"e,1\",\"2\",1795780801\r\n",
];

/// Series in JSON: pairs, triples, objects, times as text and numbers.
pub(crate) const SERIES_JSON: &[&[u8]] = &[
    br#"{"probes": {
        "error_rate": [["2026-11-27T12:00:00Z", "0.001"], [1795780810, 0.001], [1795780820, null], {"t": 1795780830, "v": "NaN"}],
        "latency": [[1795780830, 0.05, 0.04], [1795780800, "+Inf", "-Inf"], {"timestamp": 1795780810.25, "value": 1e300, "baseline": null}]
    }}"#,
    br#"{"probes": {}}"#,
];

/// YAML syntax, and values that stress policy fields.
#[rustfmt::skip]
pub(crate) const YAML_TOKENS: &[&[u8]] = &[
    b"[", b"]", b"{", b"}", b",", b": ", b":", b"- ", b"? ", b"\n", b"\n  ", b"\r\n", b"\r",
    b"\t", b"#", b" #", b"\"", b"'", b"''", b"\\", b"|", b"|-\n", b">", b">2\n", b"&a ", b"*a",
    b"!!str ", b"!!seq ", b"<<: ", b"---\n", b"...\n", b"%YAML 1.2\n", b"\xc2\x85", b"\xe2\x80\xa8",
    b"\xef\xbb\xbf", b"null", b"~", b"true", b"0x1f", b"1e309", b"-0", b"NaN", b".inf",
    b"18446744073709551616", b"4294967296", b"0s", b"1ns", b"584942417355y", b"name: ",
    b"probes: ", b"success: ", b"failure: ", b"retry: ", b"interval: ",
];

/// JSON syntax and values.
#[rustfmt::skip]
pub(crate) const JSON_TOKENS: &[&[u8]] = &[
    b"[", b"]", b"{", b"}", b",", b":", b"\"", b"\\", b"\\u0000", b"\\ud800", b"\\\"", b"null",
    b"true", b"1e309", b"-0", b"18446744073709551616", b"\"probes\"", b"\"name\"", b"\"success\"",
    b"\"0s\"", b"\"1ns\"", b"\"NaN\"", b" ", b"\n",
];

/// TOML syntax and values.
#[rustfmt::skip]
pub(crate) const TOML_TOKENS: &[&[u8]] = &[
    b"[", b"]", b"[[", b"]]", b"{", b"}", b",", b" = ", b"=", b".", b"\"", b"'", b"\"\"\"", b"'''",
    b"\\", b"#", b"\n", b"\r\n", b"\r", b"[probes]", b"[[probes]]\n", b"a.b.c = ", b"inf", b"nan",
    b"1979-05-27T07:32:00Z", b"0x7f", b"1_000", b"9223372036854775808", b"true",
];

/// Condition syntax and numbers.
#[rustfmt::skip]
pub(crate) const CONDITION_TOKENS: &[&[u8]] = &[
    b"<", b"<=", b">", b">=", b"==", b"!=", b"=", b"between ", b" and ", b"outside ", b"..",
    b"..=", b"%", b"+", b"-", b"-100", b"1e309", b"NaN", b"inf", b"-0", b"0x1", b" ", b"\t",
    b"\xc2\xa0", b"\xe2\x80\x8b",
];

/// CSV syntax and values.
#[rustfmt::skip]
pub(crate) const CSV_TOKENS: &[&[u8]] = &[
    b",", b"\n", b"\r\n", b"\"", b"\"\"", b"timestamp", b"probe", b"value", b"baseline", b"NaN",
    b"+Inf", b"-Inf", b"null", b"1e309", b"9e15", b"-9e12", b"2026-11-27T12:00:00Z",
    b"9999-12-31T23:59:59.999Z", b"0000-01-01T00:00:00Z", b" ",
];

/// JSON series syntax and values.
#[rustfmt::skip]
pub(crate) const SERIES_JSON_TOKENS: &[&[u8]] = &[
    b"[", b"]", b"{", b"}", b",", b":", b"\"", b"null", b"\"NaN\"", b"\"+Inf\"", b"\"-Inf\"",
    b"1e309", b"9e12", b"-9e12", b"\"t\"", b"\"v\"", b"\"baseline\"", b"\"probes\"",
    b"\"2026-11-27T12:00:00Z\"", b"[1, 2, 3, 4]",
];
