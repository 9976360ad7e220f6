//! Labelled incidents: the windows in which a rollback was the right call.

use std::path::Path;

use rollback_core::{Error, Result, Timestamp};

/// A labelled incident: a rollback from `start` to `end` (inclusive)
/// detects it; a rollback outside every incident is a false rollback.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Incident {
    /// When the incident began: detection delay counts from here.
    #[serde(serialize_with = "crate::report::rfc3339")]
    pub start: Timestamp,
    /// When it was over.
    #[serde(serialize_with = "crate::report::rfc3339")]
    pub end: Timestamp,
    /// Its name or ticket, for reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Incident {
    /// Whether `t` falls within it.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t <= self.end
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonIncident {
    start: serde_json::Value,
    end: serde_json::Value,
    #[serde(default)]
    name: Option<String>,
}

fn time(v: &serde_json::Value) -> Option<Timestamp> {
    match v {
        serde_json::Value::Number(n) => n.as_f64().and_then(Timestamp::from_secs_f64),
        serde_json::Value::String(s) => Timestamp::parse(s),
        _ => None,
    }
}

/// Read incidents: a CSV with the columns `start,end[,name]` (RFC 3339 or
/// Unix seconds), or JSON `[{"start": …, "end": …, "name": …}]`. Sorted by
/// start; an incident that ends before it starts is refused.
pub fn read_incidents(path: &Path) -> Result<Vec<Incident>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::invalid(format!("cannot read incidents file {}", path.display())).with_source(e)
    })?;
    let parsed = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => parse_incidents_json(&text),
        Some("csv") => parse_incidents_csv(&text),
        _ => {
            return Err(Error::invalid(format!(
                "incidents file {}: name it .csv or .json",
                path.display()
            )));
        }
    };
    parsed.map_err(|e| Error::invalid(format!("{}: {}", path.display(), e.message())))
}

fn checked(mut incidents: Vec<Incident>) -> Result<Vec<Incident>> {
    for (i, inc) in incidents.iter().enumerate() {
        if inc.end < inc.start {
            return Err(Error::invalid(format!(
                "incident {} ends ({}) before it starts ({})",
                inc.name.clone().unwrap_or_else(|| format!("#{}", i + 1)),
                inc.end,
                inc.start
            )));
        }
    }
    incidents.sort_by_key(|i| (i.start, i.end));
    Ok(incidents)
}

/// Incidents from JSON (see [`read_incidents`]).
pub fn parse_incidents_json(text: &str) -> Result<Vec<Incident>> {
    let rows: Vec<JsonIncident> =
        serde_json::from_str(text).map_err(|e| Error::invalid(format!("incidents JSON: {e}")))?;
    let mut out = Vec::with_capacity(rows.len());
    for (i, r) in rows.into_iter().enumerate() {
        let bad = |field: &str, v: &serde_json::Value| {
            Error::invalid(format!(
                "incident {i}, field {field}: {v} is neither RFC 3339 nor Unix seconds"
            ))
        };
        out.push(Incident {
            start: time(&r.start).ok_or_else(|| bad("start", &r.start))?,
            end: time(&r.end).ok_or_else(|| bad("end", &r.end))?,
            name: r.name,
        });
    }
    checked(out)
}

/// Incidents from CSV (see [`read_incidents`]).
pub fn parse_incidents_csv(text: &str) -> Result<Vec<Incident>> {
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| Error::invalid(format!("incidents CSV: cannot read the header: {e}")))?
        .clone();
    let col = |n: &str| headers.iter().position(|h| h == n);
    let (Some(s), Some(e)) = (col("start"), col("end")) else {
        return Err(Error::invalid(format!(
            "incidents CSV: the header must name the columns start and end (and optionally name); it has: {}",
            headers.iter().collect::<Vec<_>>().join(",")
        )));
    };
    let n = col("name");
    let mut out = Vec::new();
    for (i, row) in rdr.records().enumerate() {
        let line = i + 2;
        let row = row.map_err(|e| Error::invalid(format!("incidents CSV line {line}: {e}")))?;
        let field = |c: usize| row.get(c).unwrap_or("");
        let at = |c: usize, what: &str| {
            Timestamp::parse(field(c)).ok_or_else(|| {
                Error::invalid(format!(
                    "incidents CSV line {line}, column {what}: {:?} is neither RFC 3339 nor Unix seconds",
                    field(c)
                ))
            })
        };
        out.push(Incident {
            start: at(s, "start")?,
            end: at(e, "end")?,
            name: n.map(field).filter(|s| !s.is_empty()).map(str::to_owned),
        });
    }
    checked(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_json_incidents() {
        let csv = "start,end,name\n2026-11-27T13:00:00Z,2026-11-27T13:20:00Z,INC-2\n1795780800,1795781400,\n";
        let a = parse_incidents_csv(csv).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].start.as_millis(), 1_795_780_800_000, "sorted by start");
        assert_eq!(a[1].name.as_deref(), Some("INC-2"));
        let json = r#"[{"start": "2026-11-27T13:00:00Z", "end": 1795785600, "name": "INC-2"}, {"start": 1795780800, "end": 1795781400}]"#;
        assert_eq!(parse_incidents_json(json).unwrap(), a);
        let e = parse_incidents_csv("start,end\n1795781400,1795780800\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ends"), "{e}");
        let e = parse_incidents_csv("from,to\n").unwrap_err().to_string();
        assert!(e.contains("start and end"), "{e}");
    }
}
