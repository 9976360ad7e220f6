//! Recorded samples per probe, and the CSV and JSON they are read from and
//! written to (the formats are in the [module docs](super)).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use crate::{Error, Result, Timestamp};

/// One recorded sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When it was recorded. A replayed measurement reads the probe's latest
    /// sample at or before its time, if that is less than one `interval` old.
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

    /// Read JSON (see the [module docs](super)). Errors name the probe and sample.
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
