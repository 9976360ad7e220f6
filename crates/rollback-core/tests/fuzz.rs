//! Bounded fuzzing of every parser of rollback-core, as plain tests: the
//! policy in YAML, JSON and TOML, conditions, and series in CSV and JSON.
//!
//! Each target runs on its seeds and on mutations of them (see
//! `fuzz/mutate.rs`) and fails on a panic, on an input slower than
//! `mutate::MAX_TIME`, or on a broken property: what parses writes back the
//! same, and a policy text is refused for its depth exactly when YAML or
//! JSON reads it as nested deeper than `Policy::MAX_DEPTH`.
//!
//! `ROLLBACK_FUZZ_ITERATIONS=1000000 cargo nextest run -p rollback-core
//! --test fuzz` runs longer; `ROLLBACK_FUZZ_SEED=…` explores elsewhere or
//! reproduces a failure.

#[path = "fuzz/mutate.rs"]
mod mutate;
#[path = "fuzz/seeds.rs"]
mod seeds;

use std::sync::atomic::{AtomicU64, Ordering};

use rollback_core::Policy;
use rollback_core::condition::Condition;
use rollback_core::policy::PolicyFormat;
use rollback_core::replay::Series;

/// Inputs per target by default: 100,000 where an input costs little, fewer
/// where it costs more, so that the file takes about 30 s of CPU (15-20 s on
/// two cores) in the test profile. Measured per input on the 2-core machine:
/// condition 9 µs, series JSON 27 µs, policy JSON 60 µs, policy TOML 150 µs,
/// series CSV 270 µs, policy YAML 250 µs plus its nesting comparisons.
const ITERATIONS_CONDITION: u64 = 100_000;
const ITERATIONS_SERIES_JSON: u64 = 100_000;
const ITERATIONS_POLICY_JSON: u64 = 50_000;
const ITERATIONS_POLICY_TOML: u64 = 30_000;
const ITERATIONS_SERIES_CSV: u64 = 30_000;
const ITERATIONS_POLICY_YAML: u64 = 40_000;

/// The nesting of a parsed document: 1 per collection, keys included.
fn yaml_depth(v: &serde_yaml_ng::Value) -> usize {
    use serde_yaml_ng::Value;
    match v {
        Value::Sequence(items) => 1 + items.iter().map(yaml_depth).max().unwrap_or(0),
        Value::Mapping(m) => {
            1 + m
                .iter()
                .map(|(k, v)| yaml_depth(k).max(yaml_depth(v)))
                .max()
                .unwrap_or(0)
        }
        Value::Tagged(t) => yaml_depth(&t.value),
        _ => 0,
    }
}

fn json_depth(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    match v {
        Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The largest text whose nesting the targets compare with a parser's: the
/// parsers are quadratic in nesting, so only small texts are compared.
const COMPARED_LEN: usize = 8 * 1024;

/// One input in this many is compared with a parser's nesting, per format:
/// `serde_yaml_ng` takes about 1 ms to read a seed into a `Value` in the
/// test profile, 4 times as long as the policy parser.
const COMPARE_EVERY: [u64; 3] = [32, 4, 1];
static INPUTS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// Texts whose nesting was compared with a parser's, and how many of them
/// nest deeper than the limit, per format: so a run shows that both sides
/// of the property were tried.
static COMPARED: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static COMPARED_DEEP: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

fn compared(format: PolicyFormat) -> String {
    let i = format as usize;
    format!(
        "{} texts compared with a parser's nesting, {} of them deeper than {}",
        COMPARED[i].load(Ordering::Relaxed),
        COMPARED_DEEP[i].load(Ordering::Relaxed),
        Policy::MAX_DEPTH
    )
}

fn refused_for_depth(parsed: &Result<Policy, rollback_core::policy::PolicyError>) -> bool {
    matches!(parsed, Err(e) if e.reason.contains("levels deep"))
}

/// The nesting of `text` as YAML or JSON reads it, if it reads it.
fn parsed_depth(text: &str, format: PolicyFormat) -> Option<usize> {
    match format {
        // Aliases nest what they name again: the text is not that deep.
        PolicyFormat::Yaml if !text.contains('*') => serde_yaml_ng::from_str(text)
            .ok()
            .map(|v: serde_yaml_ng::Value| yaml_depth(&v)),
        PolicyFormat::Json => serde_json::from_str(text)
            .ok()
            .map(|v: serde_json::Value| json_depth(&v)),
        _ => None,
    }
}

/// `text` nested `levels` deeper: in `[`…`]` for JSON, under `a:` keys
/// for YAML (every line indented).
fn nest(text: &str, format: PolicyFormat, levels: usize) -> String {
    if format == PolicyFormat::Json {
        return format!("{}{text}{}", "[".repeat(levels), "]".repeat(levels));
    }
    let mut out: String = (0..levels)
        .map(|l| format!("{}a:\n", "  ".repeat(l)))
        .collect();
    let indent = "  ".repeat(levels);
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest
            .find(['\r', '\n', '\u{85}', '\u{2028}', '\u{2029}'])
            .map_or(rest.len(), |i| {
                let c = rest[i..].chars().next().expect("a break");
                i + if rest[i..].starts_with("\r\n") {
                    2
                } else {
                    c.len_utf8()
                }
            });
        out.push_str(&indent);
        out.push_str(&rest[..end]);
        rest = &rest[end..];
    }
    out
}

/// The depth limit refuses a text exactly when its parser reads it as
/// nested deeper than the limit: checked on the text, and on the text nested
/// to just under and just over the limit.
fn depth_agrees(text: &str, format: PolicyFormat, refused: bool) {
    let Some(depth) = parsed_depth(text, format) else {
        return;
    };
    let i = format as usize;
    COMPARED[i].fetch_add(1, Ordering::Relaxed);
    if depth > Policy::MAX_DEPTH {
        COMPARED_DEEP[i].fetch_add(1, Ordering::Relaxed);
    }
    assert_eq!(
        refused,
        depth > Policy::MAX_DEPTH,
        "{format} nests {depth} deep; refused for its depth: {refused}"
    );
    if depth >= Policy::MAX_DEPTH || text.len() > NESTED_LEN {
        return;
    }
    for levels in [Policy::MAX_DEPTH - depth, Policy::MAX_DEPTH + 1 - depth] {
        let nested = nest(text, format, levels);
        let Some(depth) = parsed_depth(&nested, format) else {
            continue;
        };
        COMPARED[i].fetch_add(1, Ordering::Relaxed);
        if depth > Policy::MAX_DEPTH {
            COMPARED_DEEP[i].fetch_add(1, Ordering::Relaxed);
        }
        assert_eq!(
            refused_for_depth(&Policy::parse(&nested, format)),
            depth > Policy::MAX_DEPTH,
            "{format} nested {levels} levels deeper reads {depth} deep:\n{nested}"
        );
    }
}

/// The largest text the targets also nest deeper.
const NESTED_LEN: usize = 2 * 1024;

fn policy(input: &[u8], format: PolicyFormat) {
    let text = String::from_utf8_lossy(input);
    let parsed = Policy::parse(&text, format);
    if let Ok(p) = &parsed {
        let json = serde_json::to_string(p).expect("a policy serializes");
        assert_eq!(
            Policy::from_json(&json).as_ref(),
            Ok(p),
            "a parsed policy reads back from its JSON: {json}"
        );
    }
    let i = format as usize;
    if INPUTS[i]
        .fetch_add(1, Ordering::Relaxed)
        .is_multiple_of(COMPARE_EVERY[i])
        && text.len() <= COMPARED_LEN
    {
        depth_agrees(&text, format, refused_for_depth(&parsed));
    }
}

#[test]
fn policy_yaml() {
    let s = mutate::fuzz(
        "policy YAML",
        ITERATIONS_POLICY_YAML,
        seeds::POLICY_YAML,
        seeds::YAML_TOKENS,
        |input| policy(input, PolicyFormat::Yaml),
    );
    eprintln!("policy YAML: {s}; {}", compared(PolicyFormat::Yaml));
}

#[test]
fn policy_json() {
    let s = mutate::fuzz(
        "policy JSON",
        ITERATIONS_POLICY_JSON,
        seeds::POLICY_JSON,
        seeds::JSON_TOKENS,
        |input| policy(input, PolicyFormat::Json),
    );
    eprintln!("policy JSON: {s}; {}", compared(PolicyFormat::Json));
}

#[test]
fn policy_toml() {
    let s = mutate::fuzz(
        "policy TOML",
        ITERATIONS_POLICY_TOML,
        seeds::POLICY_TOML,
        seeds::TOML_TOKENS,
        |input| policy(input, PolicyFormat::Toml),
    );
    eprintln!("policy TOML: {s}");
}

#[test]
fn condition() {
    let s = mutate::fuzz(
        "condition",
        ITERATIONS_CONDITION,
        seeds::CONDITIONS,
        seeds::CONDITION_TOKENS,
        |input| {
            let text = String::from_utf8_lossy(input);
            if let Ok(c) = text.parse::<Condition>() {
                assert_eq!(
                    c.to_string().parse::<Condition>(),
                    Ok(c),
                    "{c} reads back as itself"
                );
            }
        },
    );
    eprintln!("condition: {s}");
}

/// What `to_json` writes reads back as the same series: the times it can
/// write exactly (within 100,000 years of 1970), NaN compared as NaN.
fn series_round_trip(series: &Series) {
    type Row = (i64, Option<u64>, Option<u64>);
    let comparable = |s: &Series| -> Vec<(String, Vec<Row>)> {
        let bits = |v: Option<f64>| v.map(|v| if v.is_nan() { u64::MAX } else { v.to_bits() });
        s.probes()
            .map(|p| {
                let rows = s.samples(p);
                assert!(rows.is_sorted_by_key(|r| r.at), "probe {p:?} is sorted");
                let rows = rows
                    .iter()
                    .map(|r| (r.at.as_millis(), bits(r.value), bits(r.baseline)))
                    .collect();
                (p.to_owned(), rows)
            })
            .collect()
    };
    let exact = series.probes().all(|p| {
        series
            .samples(p)
            .iter()
            .all(|r| r.at.as_millis().unsigned_abs() < 3_000_000_000_000_000)
    });
    let json = series.to_json();
    let again = Series::from_json(&json).expect("to_json writes what from_json reads");
    if exact {
        assert_eq!(comparable(&again), comparable(series), "{json}");
    }
}

#[test]
fn series_csv() {
    let s = mutate::fuzz(
        "series CSV",
        ITERATIONS_SERIES_CSV,
        seeds::SERIES_CSV,
        seeds::CSV_TOKENS,
        |input| {
            if let Ok(series) = Series::from_csv(input) {
                series_round_trip(&series);
            }
        },
    );
    eprintln!("series CSV: {s}");
}

#[test]
fn series_json() {
    let s = mutate::fuzz(
        "series JSON",
        ITERATIONS_SERIES_JSON,
        seeds::SERIES_JSON,
        seeds::SERIES_JSON_TOKENS,
        |input| {
            if let Ok(series) = Series::from_json(&String::from_utf8_lossy(input)) {
                series_round_trip(&series);
            }
        },
    );
    eprintln!("series JSON: {s}");
}
