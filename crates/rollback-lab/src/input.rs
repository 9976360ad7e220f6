//! The series users already have, read into a [`Series`]:
//!
//! | file | what it holds | probe name |
//! |---|---|---|
//! | `.json` with `"status"` and `"data"` | Prometheus' own `query_range` answer (`{"status":"success","data":{"resultType":"matrix","result":[…]}}`), one series | given, else the series' `__name__`, else the file's stem |
//! | `.json` with `"probes"` | the replay's JSON (`{"probes": {"error_rate": [[t, v], …]}}`) | in the file |
//! | `.csv` with a `probe` column | the replay's long CSV (`timestamp,probe,value[,baseline]`) | in the file |
//! | `.csv` with the columns `timestamp,value` | one probe | given, else the file's stem |
//! | `.csv` with `timestamp` and other columns | a wide CSV, one column per probe (`timestamp,error_rate,p99_latency`) | the column names |
//!
//! Times are RFC 3339 or Unix seconds. Values are numbers or `NaN`, `+Inf`,
//! `-Inf` as Prometheus writes them. In a wide or two-column CSV an empty
//! cell is no sample at that time (as a gap in Prometheus' answer is), so a
//! measurement reads the probe's previous sample while it is less than one
//! interval old and has no data after that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rollback_core::replay::{Sample, Series};
use rollback_core::{Error, Result, Timestamp};

/// One file of series, and the probe name to give a file of one series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesFile {
    /// The file.
    pub path: PathBuf,
    /// The probe a single-series file (a `query_range` answer, a
    /// `timestamp,value` CSV) holds; default: its `__name__`, else the
    /// file's stem. Files that name their probes ignore it.
    pub probe: Option<String>,
}

impl SeriesFile {
    /// Read `NAME=PATH` (a file of one probe's series) or `PATH`, as a
    /// command line writes it.
    pub fn parse(arg: &str) -> Self {
        match arg.split_once('=') {
            Some((probe, path)) if !probe.is_empty() && !probe.contains(['/', '\\']) => {
                SeriesFile {
                    path: PathBuf::from(path),
                    probe: Some(probe.to_owned()),
                }
            }
            _ => SeriesFile {
                path: PathBuf::from(arg),
                probe: None,
            },
        }
    }
}

/// Read every file into one series (see the [module docs](self)). A probe
/// found in two files is refused: say which file holds it.
pub fn read_series(files: &[SeriesFile]) -> Result<Series> {
    let mut all = Series::new();
    let mut from: BTreeMap<String, PathBuf> = BTreeMap::new();
    for f in files {
        let one = read_series_file(&f.path, f.probe.as_deref())?;
        for probe in one.probes() {
            if let Some(other) = from.get(probe) {
                return Err(Error::invalid(format!(
                    "probe {probe:?} is in both {} and {}; give each probe's series once",
                    other.display(),
                    f.path.display()
                )));
            }
            from.insert(probe.to_owned(), f.path.clone());
        }
        merge(&mut all, &one);
    }
    Ok(all)
}

/// Add every sample of `other` to `into`.
pub(crate) fn merge(into: &mut Series, other: &Series) {
    for probe in other.probes() {
        into.extend(other.samples(probe).iter().map(|s| (probe, *s)));
    }
}

/// Read one file of series (see the [module docs](self)).
pub fn read_series_file(path: &Path, probe: Option<&str>) -> Result<Series> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::invalid(format!("cannot read series file {}", path.display())).with_source(e)
    })?;
    let stem = || {
        path.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("series")
            .to_owned()
    };
    let named = |e: Error| Error::invalid(format!("{}: {}", path.display(), e.message()));
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => {
            if is_prometheus_answer(&text) {
                prometheus_answer(&text, probe.map(str::to_owned), &stem()).map_err(named)
            } else {
                Series::from_json(&text).map_err(named)
            }
        }
        Some("csv") => csv_series(&text, probe.map_or_else(stem, str::to_owned)).map_err(named),
        _ => Err(Error::invalid(format!(
            "series file {}: name it .csv or .json",
            path.display()
        ))),
    }
}

fn is_prometheus_answer(text: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        status: Option<serde::de::IgnoredAny>,
        data: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_str::<Probe>(text).is_ok_and(|p| p.status.is_some() || p.data.is_some())
}

#[derive(serde::Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<AnswerData>,
}

#[derive(serde::Deserialize)]
struct AnswerData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<AnswerSeries>,
}

#[derive(serde::Deserialize)]
struct AnswerSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

fn labels(metric: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = metric.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(","))
}

/// Prometheus' `query_range` answer as the API returns it, one series, as
/// the probe `probe` (default: the series' `__name__`, else `fallback`).
pub fn prometheus_answer(text: &str, probe: Option<String>, fallback: &str) -> Result<Series> {
    let answer: Answer = serde_json::from_str(text)
        .map_err(|e| Error::invalid(format!("a Prometheus query_range answer: {e}")))?;
    if answer.status != "success" {
        return Err(Error::invalid(format!(
            "the Prometheus answer has status {:?}: {}",
            answer.status,
            answer.error.unwrap_or_default()
        )));
    }
    let Some(data) = answer.data else {
        return Err(Error::invalid("the Prometheus answer has no `data`"));
    };
    if data.result_type != "matrix" {
        return Err(Error::invalid(format!(
            "the Prometheus answer is a {}, not the matrix of a range query (/api/v1/query_range)",
            data.result_type
        )));
    }
    let series = match data.result.len() {
        1 => data.result.into_iter().next().expect("one"),
        0 => return Err(Error::invalid("the Prometheus answer holds no series")),
        n => {
            let shown: Vec<String> = data
                .result
                .iter()
                .take(3)
                .map(|s| labels(&s.metric))
                .collect();
            return Err(Error::invalid(format!(
                "the Prometheus answer holds {n} series ({}{}); a probe needs one: aggregate in PromQL (sum(...), max(...)) and query again",
                shown.join(", "),
                if n > 3 { ", …" } else { "" }
            )));
        }
    };
    let name = probe
        .or_else(|| series.metric.get("__name__").cloned())
        .unwrap_or_else(|| fallback.to_owned());
    let mut samples = Vec::with_capacity(series.values.len());
    for (i, (t, v)) in series.values.iter().enumerate() {
        let at = Timestamp::from_secs_f64(*t)
            .ok_or_else(|| Error::invalid(format!("sample {i}: {t} is not a valid time")))?;
        let value = prometheus_value(v)
            .ok_or_else(|| Error::invalid(format!("sample {i}: {v:?} is not a number")))?;
        samples.push((
            name.as_str(),
            Sample {
                at,
                value: Some(value),
                baseline: None,
            },
        ));
    }
    Ok(samples.into_iter().collect())
}

fn prometheus_value(s: &str) -> Option<f64> {
    match s.trim() {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        t => t.parse().ok(),
    }
}

/// A CSV: the replay's long form when it has a `probe` column, one probe
/// (named `probe`) with `timestamp,value`, else one column per probe.
pub fn csv_series(text: &str, probe: String) -> Result<Series> {
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| Error::invalid(format!("CSV series: cannot read the header: {e}")))?
        .clone();
    let names: Vec<&str> = headers.iter().collect();
    if names.contains(&"probe") {
        return Series::from_csv(text.as_bytes());
    }
    let Some(t) = names.iter().position(|h| *h == "timestamp") else {
        return Err(Error::invalid(format!(
            "CSV series: the header must name a `timestamp` column (timestamp,value for one probe; timestamp,probe_a,probe_b for several; timestamp,probe,value[,baseline]); it has: {}",
            names.join(",")
        )));
    };
    let columns: Vec<(usize, String)> = if names.len() == 2 && names.contains(&"value") {
        vec![(1 - t, probe)]
    } else {
        names
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != t)
            .map(|(i, n)| (i, (*n).to_owned()))
            .collect()
    };
    if columns.is_empty() {
        return Err(Error::invalid(
            "CSV series: no value column beside `timestamp`",
        ));
    }
    if let Some((_, n)) = columns.iter().find(|(_, n)| n.is_empty()) {
        return Err(Error::invalid(format!(
            "CSV series: a column has no name {n:?}; name each column after its probe"
        )));
    }
    let mut rows: Vec<(usize, Sample)> = Vec::new();
    for (i, row) in rdr.records().enumerate() {
        let line = i + 2;
        let row = row.map_err(|e| Error::invalid(format!("CSV series line {line}: {e}")))?;
        let field = |c: usize| row.get(c).unwrap_or("");
        let at = Timestamp::parse(field(t)).ok_or_else(|| {
            Error::invalid(format!(
                "CSV series line {line}, column timestamp: {:?} is neither RFC 3339 nor Unix seconds",
                field(t)
            ))
        })?;
        for (k, (c, name)) in columns.iter().enumerate() {
            let cell = field(*c);
            if cell.is_empty() {
                continue;
            }
            let value = prometheus_value(cell).ok_or_else(|| {
                Error::invalid(format!(
                    "CSV series line {line}, column {name}: {cell:?} is not a number"
                ))
            })?;
            rows.push((
                k,
                Sample {
                    at,
                    value: Some(value),
                    baseline: None,
                },
            ));
        }
    }
    Ok(rows
        .into_iter()
        .map(|(k, s)| (columns[k].1.as_str(), s))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_range_answer_reads_as_prometheus_wrote_it() {
        let text = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"errors","job":"app"},"values":[[1795780800,"0.01"],[1795780810.5,"NaN"],[1795780820,"+Inf"]]}]}}"#;
        let s = prometheus_answer(text, None, "x").unwrap();
        let e = s.samples("errors");
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].value, Some(0.01));
        assert_eq!(e[1].at.as_millis(), 1_795_780_810_500);
        assert!(e[1].value.unwrap().is_nan());
        assert_eq!(e[2].value, Some(f64::INFINITY));
        let s = prometheus_answer(text, Some("error_rate".into()), "x").unwrap();
        assert_eq!(s.probes().collect::<Vec<_>>(), ["error_rate"]);
    }

    #[test]
    fn a_query_range_answer_of_several_series_or_a_vector_is_refused() {
        let two = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"code":"500"},"values":[]},{"metric":{"code":"200"},"values":[]}]}}"#;
        let e = prometheus_answer(two, None, "x").unwrap_err().to_string();
        assert!(
            e.contains("holds 2 series") && e.contains("code=\"500\""),
            "{e}"
        );
        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        let e = prometheus_answer(vector, None, "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not the matrix"), "{e}");
        let error = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        let e = prometheus_answer(error, None, "x").unwrap_err().to_string();
        assert!(e.contains("parse error"), "{e}");
    }

    #[test]
    fn two_column_wide_and_long_csvs() {
        let two = "timestamp,value\n1795780800,0.1\n2026-11-27T12:00:10Z,NaN\n1795780820,\n";
        let s = csv_series(two, "error_rate".into()).unwrap();
        let e = s.samples("error_rate");
        assert_eq!(e.len(), 2, "an empty cell is no sample");
        assert_eq!(e[1].at.as_millis(), 1_795_780_810_000);
        let wide = "timestamp,error_rate,p99\n1795780810,0.2,0.05\n1795780800,0.1,\n";
        let s = csv_series(wide, "ignored".into()).unwrap();
        assert_eq!(s.probes().collect::<Vec<_>>(), ["error_rate", "p99"]);
        assert_eq!(
            s.samples("error_rate")[0].value,
            Some(0.1),
            "sorted by time"
        );
        assert_eq!(s.samples("p99").len(), 1);
        let long = "timestamp,probe,value\n1795780800,a,1\n";
        assert_eq!(csv_series(long, "x".into()).unwrap().samples("a").len(), 1);
        let e = csv_series("time,value\n", "x".into())
            .unwrap_err()
            .to_string();
        assert!(e.contains("`timestamp` column"), "{e}");
        let e = csv_series("timestamp,a\n1795780800,lots\n", "x".into())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2, column a"), "{e}");
    }

    #[test]
    fn files_are_told_apart_by_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let answer = dir.path().join("err.json");
        std::fs::write(
            &answer,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1795780800,"0.5"]]}]}}"#,
        )
        .unwrap();
        let two = dir.path().join("latency.csv");
        std::fs::write(&two, "timestamp,value\n1795780800,0.2\n").unwrap();
        let series = read_series(&[
            SeriesFile::parse(&format!("error_rate={}", answer.display())),
            SeriesFile::parse(&two.display().to_string()),
        ])
        .unwrap();
        assert_eq!(
            series.probes().collect::<Vec<_>>(),
            ["error_rate", "latency"]
        );
        let e = read_series(&[
            SeriesFile::parse(&two.display().to_string()),
            SeriesFile::parse(&two.display().to_string()),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("is in both"), "{e}");
    }
}
