//! Replay: run a policy over recorded series on virtual time, and report when
//! and why it would have rolled back.
//!
//! Series come as CSV (`timestamp,probe,value[,baseline]`, one sample a row)
//! or JSON (`{"probes": {"error_rate": [[t, v], …]}}`, where `t` is RFC 3339 or
//! Unix seconds and `v` a number, a numeric string as Prometheus writes them
//! (`"0.5"`, `"NaN"`, `"+Inf"`, `"-Inf"`), or `null` for no data). Rows may
//! come in any order (a newest-first export is fine): each probe's samples
//! are sorted by time once, samples of the same time kept in their order. A
//! probe without a sample within one interval before a measurement has no
//! data at that measurement.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use crate::machine::{Decision, Event, Machine, Phase, Watch};
use crate::{Candidate, Error, Measurement, Policy, Result, RevisionHealth, Timestamp, Verdict};

/// One recorded sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When.
    pub at: Timestamp,
    /// The value; `None` is an explicit "no data".
    pub value: Option<f64>,
    /// The baseline, if recorded.
    pub baseline: Option<f64>,
}

/// Recorded samples per probe, each sorted by time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    probes: BTreeMap<String, Vec<Sample>>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum JsonTime {
    Secs(f64),
    Text(String),
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum JsonValue {
    Number(f64),
    Text(String),
    Null(()),
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum JsonSample {
    Pair(JsonTime, JsonValue),
    Triple(JsonTime, JsonValue, JsonValue),
    Object {
        #[serde(alias = "t")]
        timestamp: JsonTime,
        #[serde(alias = "v")]
        value: JsonValue,
        #[serde(default)]
        baseline: Option<JsonValue>,
    },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSeries {
    probes: BTreeMap<String, Vec<JsonSample>>,
}

/// A value as CSV and JSON series write it: a number, `NaN`, `+Inf`, `-Inf`
/// or `Inf` (as Prometheus writes them, in any case), or nothing.
fn parse_value(s: &str) -> std::result::Result<Option<f64>, String> {
    match s.trim() {
        "" | "null" => Ok(None),
        t => t
            .parse::<f64>()
            .map(Some)
            .map_err(|_| format!("{t:?} is not a number")),
    }
}

/// A value for JSON: a number, or the string Prometheus writes for NaN and
/// the infinities (JSON has no number for them; `null` means no data).
fn json_value(v: Option<f64>) -> serde_json::Value {
    match v {
        None => serde_json::Value::Null,
        Some(v) if v.is_nan() => "NaN".into(),
        Some(v) if v == f64::INFINITY => "+Inf".into(),
        Some(v) if v == f64::NEG_INFINITY => "-Inf".into(),
        Some(v) => v.into(),
    }
}

impl JsonTime {
    fn get(&self) -> std::result::Result<Timestamp, String> {
        match self {
            JsonTime::Secs(s) => {
                Timestamp::from_secs_f64(*s).ok_or_else(|| format!("{s} is not a valid time"))
            }
            JsonTime::Text(t) => Timestamp::parse(t)
                .ok_or_else(|| format!("{t:?} is neither RFC 3339 nor Unix seconds")),
        }
    }
}

impl JsonValue {
    fn get(&self) -> std::result::Result<Option<f64>, String> {
        match self {
            JsonValue::Number(v) => Ok(Some(*v)),
            JsonValue::Text(t) => parse_value(t),
            JsonValue::Null(()) => Ok(None),
        }
    }
}

impl Series {
    /// An empty series.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a sample, after the probe's samples of the same time or earlier.
    /// A sample older than the probe's last one moves every later one: add
    /// many samples out of order with [`Extend`] or [`FromIterator`], which
    /// sort once.
    pub fn push(&mut self, probe: &str, sample: Sample) {
        let v = self.samples_mut(probe);
        if v.last().is_some_and(|l| l.at > sample.at) {
            let i = v.partition_point(|s| s.at <= sample.at);
            v.insert(i, sample);
        } else {
            v.push(sample);
        }
    }

    fn samples_mut(&mut self, probe: &str) -> &mut Vec<Sample> {
        if !self.probes.contains_key(probe) {
            self.probes.insert(probe.to_owned(), Vec::new());
        }
        self.probes.get_mut(probe).expect("inserted above")
    }

    /// Append a sample without keeping the order; remember the probes whose
    /// order it broke, for [`Series::sort_by_time`].
    fn append(&mut self, probe: &str, sample: Sample, unsorted: &mut BTreeSet<String>) {
        let v = self.samples_mut(probe);
        if v.last().is_some_and(|l| l.at > sample.at) && !unsorted.contains(probe) {
            unsorted.insert(probe.to_owned());
        }
        v.push(sample);
    }

    /// Sort these probes' samples by time, once; samples of the same time
    /// keep their order, as if each had been pushed in turn.
    fn sort_by_time(&mut self, unsorted: BTreeSet<String>) {
        for probe in unsorted {
            if let Some(v) = self.probes.get_mut(&probe) {
                v.sort_by_key(|s| s.at);
            }
        }
    }

    /// The samples of a probe.
    pub fn samples(&self, probe: &str) -> &[Sample] {
        self.probes.get(probe).map_or(&[], Vec::as_slice)
    }

    /// The probe names.
    pub fn probes(&self) -> impl Iterator<Item = &str> {
        self.probes.keys().map(String::as_str)
    }

    /// The first and last sample times.
    pub fn span(&self) -> Option<(Timestamp, Timestamp)> {
        let first = self
            .probes
            .values()
            .filter_map(|v| v.first())
            .map(|s| s.at)
            .min()?;
        let last = self
            .probes
            .values()
            .filter_map(|v| v.last())
            .map(|s| s.at)
            .max()?;
        Some((first, last))
    }

    /// Read CSV with a header naming the columns `timestamp`, `probe`, `value`
    /// and optionally `baseline`. Errors name the line.
    pub fn from_csv(reader: impl Read) -> Result<Self> {
        let mut rdr = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(reader);
        let headers = rdr
            .headers()
            .map_err(|e| Error::invalid(format!("CSV series: cannot read the header: {e}")))?
            .clone();
        let col = |name: &str| headers.iter().position(|h| h == name);
        let (Some(t), Some(p), Some(v)) = (col("timestamp"), col("probe"), col("value")) else {
            return Err(Error::invalid(format!(
                "CSV series: the header must name the columns timestamp, probe and value (and optionally baseline); it has: {}",
                headers.iter().collect::<Vec<_>>().join(",")
            )));
        };
        let b = col("baseline");
        let mut series = Series::new();
        let mut unsorted = BTreeSet::new();
        for (i, row) in rdr.records().enumerate() {
            let line = i + 2;
            let row = row.map_err(|e| Error::invalid(format!("CSV series line {line}: {e}")))?;
            let field = |c: usize| row.get(c).unwrap_or("");
            let bad = |what: &str, why: String| {
                Error::invalid(format!("CSV series line {line}, column {what}: {why}"))
            };
            let at = Timestamp::parse(field(t)).ok_or_else(|| {
                bad(
                    "timestamp",
                    format!("{:?} is neither RFC 3339 nor Unix seconds", field(t)),
                )
            })?;
            let probe = field(p);
            if probe.is_empty() {
                return Err(bad("probe", "empty".into()));
            }
            let value = parse_value(field(v)).map_err(|e| bad("value", e))?;
            let baseline = match b {
                Some(b) => parse_value(field(b)).map_err(|e| bad("baseline", e))?,
                None => None,
            };
            series.append(
                probe,
                Sample {
                    at,
                    value,
                    baseline,
                },
                &mut unsorted,
            );
        }
        series.sort_by_time(unsorted);
        Ok(series)
    }

    /// Read JSON (see the [module docs](self)). Errors name the probe and sample.
    pub fn from_json(text: &str) -> Result<Self> {
        let parsed: JsonSeries =
            serde_json::from_str(text).map_err(|e| Error::invalid(format!("JSON series: {e}")))?;
        let mut series = Series::new();
        let mut unsorted = BTreeSet::new();
        for (probe, samples) in parsed.probes {
            for (i, s) in samples.iter().enumerate() {
                let bad = |why: String| {
                    Error::invalid(format!("JSON series, probe {probe:?}, sample {i}: {why}"))
                };
                let (t, v, b) = match s {
                    JsonSample::Pair(t, v) => (t, v, None),
                    JsonSample::Triple(t, v, b) => (t, v, Some(b)),
                    JsonSample::Object {
                        timestamp,
                        value,
                        baseline,
                    } => (timestamp, value, baseline.as_ref()),
                };
                let at = t.get().map_err(bad)?;
                let value = v.get().map_err(bad)?;
                let baseline = b.map(JsonValue::get).transpose().map_err(bad)?.flatten();
                series.append(
                    &probe,
                    Sample {
                        at,
                        value,
                        baseline,
                    },
                    &mut unsorted,
                );
            }
        }
        series.sort_by_time(unsorted);
        Ok(series)
    }

    /// Write JSON in the format [`Series::from_json`] reads: times in Unix
    /// seconds, NaN and the infinities as Prometheus writes them (`"NaN"`,
    /// `"+Inf"`, `"-Inf"`), no data as `null`. Reading it back gives the same
    /// series, to the millisecond for times within 100,000 years of 1970.
    pub fn to_json(&self) -> String {
        let probes: BTreeMap<&str, Vec<serde_json::Value>> = self
            .probes
            .iter()
            .map(|(name, samples)| {
                let rows = samples
                    .iter()
                    .map(|s| {
                        let t = serde_json::json!(s.at.as_millis() as f64 / 1000.0);
                        match s.baseline {
                            Some(_) => {
                                serde_json::json!([t, json_value(s.value), json_value(s.baseline)])
                            }
                            None => serde_json::json!([t, json_value(s.value)]),
                        }
                    })
                    .collect();
                (name.as_str(), rows)
            })
            .collect();
        serde_json::json!({ "probes": probes }).to_string()
    }

    /// Read a `.csv` or `.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::invalid(format!("cannot read series file {}", path.display())).with_source(e)
        })?;
        let parsed = match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => Series::from_csv(text.as_bytes()),
            Some("json") => Series::from_json(&text),
            _ => {
                return Err(Error::invalid(format!(
                    "series file {}: name it .csv or .json",
                    path.display()
                )));
            }
        };
        parsed.map_err(|e| Error::invalid(format!("{}: {}", path.display(), e.message())))
    }
}

impl<P: AsRef<str>> Extend<(P, Sample)> for Series {
    /// Add samples in any order; each probe touched out of order is sorted
    /// once at the end.
    fn extend<I: IntoIterator<Item = (P, Sample)>>(&mut self, samples: I) {
        let mut unsorted = BTreeSet::new();
        for (probe, sample) in samples {
            self.append(probe.as_ref(), sample, &mut unsorted);
        }
        self.sort_by_time(unsorted);
    }
}

impl<P: AsRef<str>> FromIterator<(P, Sample)> for Series {
    /// A series of samples in any order.
    fn from_iter<I: IntoIterator<Item = (P, Sample)>>(samples: I) -> Self {
        let mut series = Series::new();
        series.extend(samples);
        series
    }
}

/// Where and how a replay runs.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// When the change happened; default: the first sample.
    pub start: Option<Timestamp>,
    /// Replay until then; default: the last sample.
    pub end: Option<Timestamp>,
}

/// One entry of a replay's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayEvent {
    /// When.
    pub at: Timestamp,
    /// What the machine decided.
    pub decision: Decision,
}

/// What a replay found.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayReport {
    /// The phase the replay ended in.
    pub phase: Phase,
    /// Every decision but `Measure`, in order.
    pub timeline: Vec<ReplayEvent>,
    /// When a rollback would have started (or, for a dry run or manual
    /// approval, been proposed), if at all.
    pub rollback_at: Option<Timestamp>,
    /// Why, if at all.
    pub reason: Option<String>,
    /// Measurement rounds replayed.
    pub rounds: u64,
    /// Verdicts per probe: `[pass, fail, inconclusive]`.
    pub verdicts: BTreeMap<String, [u64; 3]>,
}

/// The watched revision in a replay.
pub const REPLAY_REVISION: &str = "replayed";
/// The known-good revision a replay would roll back to.
pub const REPLAY_PREVIOUS: &str = "previous";

/// Replay `policy` over `series` on virtual time. The replay stops at the
/// first decision that ends observation (a rollback, a promotion, an
/// escalation, …) or at the end of the data. The same inputs always give the
/// same report.
pub fn run(policy: &Policy, series: &Series, options: &ReplayOptions) -> Result<ReplayReport> {
    policy.validate()?;
    for p in &policy.probes {
        if series.samples(&p.name).is_empty() {
            return Err(Error::invalid(format!(
                "the series has no samples for the policy's probe {:?} (it has: {})",
                p.name,
                series.probes().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let Some((first, last)) = series.span() else {
        return Err(Error::invalid("the series is empty"));
    };
    let start = options.start.unwrap_or(first);
    let end = options.end.unwrap_or(last);
    let probes: Vec<&[Sample]> = policy
        .probes
        .iter()
        .map(|p| series.samples(&p.name))
        .collect();
    let mut cursors = vec![0usize; probes.len()];
    let staleness = policy.interval;
    let watch = Watch::new(
        "replay",
        REPLAY_REVISION,
        vec![
            Candidate::new(REPLAY_REVISION, RevisionHealth::Unknown),
            Candidate::new(REPLAY_PREVIOUS, RevisionHealth::Good),
        ],
    );
    let mut machine = Machine::new(Arc::new(policy.clone()), watch, start);
    let mut report = ReplayReport {
        phase: machine.phase().clone(),
        timeline: Vec::new(),
        rollback_at: None,
        reason: None,
        rounds: 0,
        verdicts: policy
            .probes
            .iter()
            .map(|p| (p.name.clone(), [0; 3]))
            .collect(),
    };
    let mut counts = vec![[0u64; 3]; probes.len()];
    'run: while let Some(now) = machine.next_deadline() {
        if now > end {
            break;
        }
        let step = machine.handle(now, Event::Tick);
        match step.decision {
            Some(Decision::Measure) => {
                report.rounds += 1;
                for (i, samples) in probes.iter().enumerate() {
                    let c = &mut cursors[i];
                    while *c < samples.len() && samples[*c].at <= now {
                        *c += 1;
                    }
                    let m = match c.checked_sub(1).map(|j| samples[j]) {
                        Some(s) if now.since(s.at) < staleness => Measurement {
                            value: s.value,
                            baseline: s.baseline,
                            detail: None,
                        },
                        _ => Measurement::NO_DATA,
                    };
                    let step = machine.handle(
                        now,
                        Event::Measured {
                            probe: i,
                            measurement: m,
                        },
                    );
                    match step.verdict {
                        Some((Verdict::Pass, _)) => counts[i][0] += 1,
                        Some((Verdict::Fail, _)) => counts[i][1] += 1,
                        Some((Verdict::Inconclusive, _)) => counts[i][2] += 1,
                        _ => {}
                    }
                    if let Some(d) = step.decision {
                        record(&mut report, now, d);
                        break 'run;
                    }
                }
            }
            Some(d) => {
                record(&mut report, now, d);
                break;
            }
            None => {}
        }
    }
    for (name, c) in policy.probes.iter().zip(counts) {
        report.verdicts.insert(name.name.clone(), c);
    }
    report.phase = machine.phase().clone();
    Ok(report)
}

fn record(report: &mut ReplayReport, at: Timestamp, decision: Decision) {
    match &decision {
        Decision::Rollback { reason, .. }
        | Decision::AwaitApproval { reason, .. }
        | Decision::WouldRollBack { reason, .. } => {
            report.rollback_at = Some(at);
            report.reason = Some(reason.to_string());
        }
        Decision::Escalate { reason } | Decision::Freeze { reason } => {
            report.reason = Some(reason.clone())
        }
        _ => {}
    }
    report.timeline.push(ReplayEvent { at, decision });
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "interval: 10s\nbake_time: 10m\nfailure_limit: 1\nprobes: [{name: error_rate, success: '< 0.01'}, {name: latency, success: '<= 0.1'}]";

    fn t(s: i64) -> Timestamp {
        Timestamp::from_millis(1_795_780_800_000 + s * 1000)
    }

    #[test]
    fn csv_replay_finds_when_and_why() {
        let mut csv = String::from("timestamp,probe,value\n");
        for s in (0..600).step_by(10) {
            let err = if s >= 120 { 0.05 } else { 0.001 };
            csv.push_str(&format!(
                "{},error_rate,{err}\n{},latency,0.05\n",
                1_795_780_800 + s,
                1_795_780_800 + s
            ));
        }
        let series = Series::from_csv(csv.as_bytes()).unwrap();
        let report = run(
            &Policy::from_yaml(POLICY).unwrap(),
            &series,
            &ReplayOptions::default(),
        )
        .unwrap();
        assert_eq!(
            report.rollback_at,
            Some(t(130)),
            "second failure (failure_limit 1) at 130s"
        );
        assert!(matches!(report.phase, Phase::RollingBack { .. }));
        let reason = report.reason.unwrap();
        assert!(
            reason.contains("probe error_rate failed 2 times (failure_limit 1); last value 0.05"),
            "{reason}"
        );
        assert_eq!(report.verdicts["error_rate"], [12, 2, 0]);
        assert_eq!(report.rounds, 14);
    }

    #[test]
    fn gaps_are_no_data_and_json_matches_csv() {
        let json = r#"{"probes": {
            "error_rate": [["2026-11-27T12:00:00Z", "0.001"], [1795780810, 0.001], [1795780820, null], {"t": 1795780830, "v": "NaN"}],
            "latency": [[1795780800, 0.05], [1795780810, 0.05], [1795780820, 0.05], [1795780830, 0.05]]
        }}"#;
        let series = Series::from_json(json).unwrap();
        let again = Series::from_json(&series.to_json()).unwrap();
        assert_eq!(series.samples("latency"), again.samples("latency"));
        let policy = Policy::from_yaml("interval: 10s\nbake_time: 10m\ninconclusive_limit: 1\nprobes: [{name: error_rate, success: '< 0.01'}, {name: latency, success: '<= 0.1'}]").unwrap();
        let report = run(&policy, &series, &ReplayOptions::default()).unwrap();
        let Phase::Escalated { reason, .. } = &report.phase else {
            panic!("{:?}", report.phase)
        };
        assert!(
            reason.contains("probe error_rate was inconclusive 2 times (inconclusive_limit 1)"),
            "{reason}"
        );
        assert_eq!(report.rollback_at, None);
    }

    #[test]
    fn a_replay_is_exact() {
        let mut series = Series::new();
        for s in 0..1000 {
            let v = if s % 7 == 0 { 0.02 } else { 0.001 };
            series.push(
                "error_rate",
                Sample {
                    at: t(s * 10),
                    value: Some(v),
                    baseline: None,
                },
            );
            series.push(
                "latency",
                Sample {
                    at: t(s * 10),
                    value: Some(0.01),
                    baseline: None,
                },
            );
        }
        let policy = Policy::from_yaml("interval: 10s\nbake_time: 3h\nconsecutive_failure_limit: 1\nprobes: [{name: error_rate, success: '< 0.01'}, {name: latency, success: '<= 0.1'}]").unwrap();
        let a = run(&policy, &series, &ReplayOptions::default()).unwrap();
        let b = run(&policy, &series, &ReplayOptions::default()).unwrap();
        assert_eq!(a, b);
        assert!(
            matches!(a.phase, Phase::Observing { .. }),
            "isolated failures never breach a consecutive limit of 1"
        );
        assert_eq!(a.rounds, 1000);
    }

    #[test]
    fn bad_input_names_the_line_or_the_probe() {
        let e = Series::from_csv(
            "timestamp,probe,value\n1795780800,e,0.1\nyesterday,e,0.2\n".as_bytes(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("line 3, column timestamp"), "{e}");
        let e = Series::from_csv("time,probe,value\n".as_bytes()).unwrap_err();
        assert!(e.to_string().contains("must name the columns"), "{e}");
        let e =
            Series::from_csv("timestamp,probe,value\n1795780800,e,lots\n".as_bytes()).unwrap_err();
        assert!(
            e.to_string()
                .contains("line 2, column value: \"lots\" is not a number"),
            "{e}"
        );
        let e = Series::from_json(r#"{"probes": {"e": [["soon", 1]]}}"#).unwrap_err();
        assert!(e.to_string().contains("probe \"e\", sample 0"), "{e}");
        let policy = Policy::from_yaml(POLICY).unwrap();
        let mut only_latency = Series::new();
        only_latency.push(
            "latency",
            Sample {
                at: t(0),
                value: Some(0.1),
                baseline: None,
            },
        );
        let e = run(&policy, &only_latency, &ReplayOptions::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("no samples for the policy's probe \"error_rate\""),
            "{e}"
        );
    }

    fn sample(at: Timestamp, value: Option<f64>, baseline: Option<f64>) -> Sample {
        Sample {
            at,
            value,
            baseline,
        }
    }

    fn rows(n: i64, newest_first: bool) -> Vec<i64> {
        let mut v: Vec<i64> = (0..n).collect();
        if newest_first {
            v.reverse();
        }
        v
    }

    #[test]
    fn a_newest_first_csv_reads_as_the_oldest_first_one() {
        let csv = |newest_first| {
            let mut text = String::from("timestamp,probe,value,baseline\n");
            for i in rows(100_000, newest_first) {
                let probe = ["error_rate", "latency"][(i % 2) as usize];
                text.push_str(&format!("{},{probe},{},0.5\n", 1_795_780_800 + i * 10, i));
            }
            Series::from_csv(text.as_bytes()).unwrap()
        };
        let oldest_first = csv(false);
        assert_eq!(oldest_first.samples("error_rate").len(), 50_000);
        assert!(oldest_first.samples("latency").is_sorted_by_key(|s| s.at));
        assert_eq!(csv(true), oldest_first);
    }

    #[test]
    fn a_newest_first_json_reads_as_the_oldest_first_one() {
        let json = |newest_first| {
            let rows: Vec<String> = rows(100_000, newest_first)
                .into_iter()
                .map(|i| format!("[{}, {i}]", 1_795_780_800 + i * 10))
                .collect();
            Series::from_json(&format!(r#"{{"probes": {{"e": [{}]}}}}"#, rows.join(","))).unwrap()
        };
        let oldest_first = json(false);
        assert_eq!(oldest_first.samples("e").len(), 100_000);
        assert_eq!(json(true), oldest_first);
    }

    #[test]
    fn samples_collected_in_any_order_equal_samples_pushed_in_order() {
        let mut pushed = Series::new();
        for i in 0..100_000 {
            pushed.push("e", sample(t(i), Some(i as f64), None));
        }
        let collected: Series = (0..100_000)
            .rev()
            .map(|i| ("e", sample(t(i), Some(i as f64), None)))
            .collect();
        assert_eq!(collected, pushed);
        let mut extended = Series::new();
        extended.push("e", sample(t(99_999), Some(99_999.0), None));
        extended.extend(
            (0..99_999)
                .rev()
                .map(|i| ("e", sample(t(i), Some(i as f64), None))),
        );
        assert_eq!(extended, pushed);
    }

    #[test]
    fn samples_of_the_same_time_keep_their_order() {
        let same_time = [(5, 1.0), (3, 2.0), (5, 3.0), (3, 4.0), (5, 5.0)];
        let mut pushed = Series::new();
        for (s, v) in same_time {
            pushed.push("e", sample(t(s), Some(v), None));
        }
        let collected: Series = same_time
            .into_iter()
            .map(|(s, v)| ("e", sample(t(s), Some(v), None)))
            .collect();
        assert_eq!(collected, pushed);
        let values: Vec<_> = pushed
            .samples("e")
            .iter()
            .map(|s| s.value.unwrap())
            .collect();
        assert_eq!(values, [2.0, 4.0, 1.0, 3.0, 5.0]);
        let mut csv = String::from("timestamp,probe,value\n");
        for (s, v) in same_time {
            csv.push_str(&format!("{},e,{v}\n", t(s).as_millis() / 1000));
        }
        assert_eq!(Series::from_csv(csv.as_bytes()).unwrap(), pushed);
    }

    #[test]
    fn nan_and_infinities_read_as_prometheus_writes_them() {
        let csv =
            "timestamp,probe,value,baseline\n1,e,NaN,+Inf\n2,e,-Inf,Inf\n3,e,,null\n4,e,inf,nan\n";
        let json = r#"{"probes": {"e": [[1, "NaN", "+Inf"], [2, "-Inf", "Inf"], [3, null, null], [4, "inf", "nan"]]}}"#;
        for series in [
            Series::from_csv(csv.as_bytes()).unwrap(),
            Series::from_json(json).unwrap(),
        ] {
            let s = series.samples("e");
            assert!(s[0].value.unwrap().is_nan());
            assert_eq!(s[0].baseline, Some(f64::INFINITY));
            assert_eq!(s[1].value, Some(f64::NEG_INFINITY));
            assert_eq!(s[1].baseline, Some(f64::INFINITY));
            assert_eq!((s[2].value, s[2].baseline), (None, None), "null is no data");
            assert_eq!(s[3].value, Some(f64::INFINITY));
            assert!(s[3].baseline.unwrap().is_nan());
        }
    }

    #[test]
    fn to_json_writes_nan_and_infinities_as_prometheus_does() {
        let series: Series = [
            ("e", sample(t(0), Some(f64::NAN), Some(f64::INFINITY))),
            ("e", sample(t(1), Some(f64::NEG_INFINITY), None)),
            ("e", sample(t(2), None, Some(0.5))),
        ]
        .into_iter()
        .collect();
        let json: serde_json::Value = serde_json::from_str(&series.to_json()).unwrap();
        assert_eq!(
            json["probes"]["e"],
            serde_json::json!([
                [1_795_780_800.0, "NaN", "+Inf"],
                [1_795_780_801.0, "-Inf"],
                [1_795_780_802.0, null, 0.5]
            ])
        );
    }

    /// A sample as comparable data: its time, and the bits of its values.
    type Row = (i64, Option<u64>, Option<u64>);

    /// A series as comparable data, NaN compared by being NaN.
    fn comparable(series: &Series) -> Vec<(String, Vec<Row>)> {
        let bits = |v: Option<f64>| v.map(|v| if v.is_nan() { u64::MAX } else { v.to_bits() });
        series
            .probes()
            .map(|p| {
                let samples = series.samples(p);
                let samples = samples
                    .iter()
                    .map(|s| (s.at.as_millis(), bits(s.value), bits(s.baseline)))
                    .collect();
                (p.to_owned(), samples)
            })
            .collect()
    }

    mod round_trip {
        use proptest::prelude::*;

        use super::*;

        fn value() -> impl Strategy<Value = Option<f64>> {
            prop_oneof![
                Just(None),
                Just(Some(f64::NAN)),
                Just(Some(f64::INFINITY)),
                Just(Some(f64::NEG_INFINITY)),
                Just(Some(-0.0)),
                any::<f64>().prop_map(Some),
                (-1e3..1e3f64).prop_map(Some),
            ]
        }

        fn series() -> impl Strategy<Value = Series> {
            let millis = -3_000_000_000_000_000i64..3_000_000_000_000_000;
            let sample = (millis, value(), value()).prop_map(|(at, value, baseline)| Sample {
                at: Timestamp::from_millis(at),
                value,
                baseline,
            });
            proptest::collection::vec(("[a-z_]{1,8}|é|a \"quoted\" name", sample), 0..40)
                .prop_map(|samples| samples.into_iter().collect())
        }

        proptest! {
            #[test]
            fn any_series_survives_json(series in series()) {
                let again = Series::from_json(&series.to_json()).unwrap();
                prop_assert_eq!(comparable(&again), comparable(&series));
            }
        }
    }
}
