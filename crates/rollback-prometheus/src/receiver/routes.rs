//! The routing table: label matchers and target templates.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rollback_core::TargetId;

use crate::error::PrometheusError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchOp {
    Eq,
    Ne,
}

/// One label matcher: `name="value"` or `name!="value"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    label: String,
    op: MatchOp,
    value: String,
}

impl Matcher {
    /// Whether the labels satisfy the matcher; a missing label is the empty
    /// string, as in Alertmanager.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.label).map(String::as_str).unwrap_or("");
        (v == self.value) == (self.op == MatchOp::Eq)
    }
}

impl FromStr for Matcher {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.contains("=~") || s.contains("!~") {
            return Err(format!(
                "{s:?}: regular-expression matchers (=~, !~) are not supported; use = or != (one route per value)"
            ));
        }
        let (label, op, rest) = if let Some((l, r)) = s.split_once("!=") {
            (l, MatchOp::Ne, r)
        } else if let Some((l, r)) = s.split_once('=') {
            (l, MatchOp::Eq, r)
        } else {
            return Err(format!(
                "{s:?}: a matcher is written label=\"value\" or label!=\"value\""
            ));
        };
        let label = label.trim();
        let valid_name = label
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(format!(
                "{s:?}: {label:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"
            ));
        }
        let rest = rest.trim();
        let value = if let Some(inner) = rest.strip_prefix('"') {
            let inner = inner
                .strip_suffix('"')
                .ok_or_else(|| format!("{s:?}: the value's closing quote is missing"))?;
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some(n @ ('"' | '\\')) => out.push(n),
                        Some('n') => out.push('\n'),
                        other => {
                            return Err(format!(
                                "{s:?}: unknown escape \\{}",
                                other.map(String::from).unwrap_or_default()
                            ));
                        }
                    }
                } else if c == '"' {
                    return Err(format!("{s:?}: an unescaped quote inside the value"));
                } else {
                    out.push(c);
                }
            }
            out
        } else {
            rest.to_owned()
        };
        Ok(Matcher {
            label: label.to_owned(),
            op,
            value,
        })
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.op == MatchOp::Eq { "=" } else { "!=" };
        write!(f, "{}{}{:?}", self.label, op, self.value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Label(String),
}

/// A target id with `{label}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TargetTemplate(Vec<Part>);

impl FromStr for TargetTemplate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("{s:?}: a `{{` without its `}}`"))?;
            let label = after[..close].trim();
            if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("{s:?}: {{{label}}} does not name a label"));
            }
            parts.push(Part::Label(label.to_owned()));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("{s:?}: a `}}` without its `{{`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if parts.is_empty() {
            return Err("the target is empty".into());
        }
        Ok(TargetTemplate(parts))
    }
}

impl TargetTemplate {
    /// The target for these labels, or the first label the alert lacks.
    fn render(&self, labels: &BTreeMap<String, String>) -> Result<TargetId, String> {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Label(l) => match labels.get(l) {
                    Some(v) if !v.is_empty() => out.push_str(v),
                    _ => return Err(l.clone()),
                },
            }
        }
        Ok(TargetId::new(out))
    }
}

/// One row of the routing table: matchers and the target they name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    matchers: Vec<Matcher>,
    target: TargetTemplate,
}

impl Route {
    /// A route from matchers (`alertname="HighErrorRate"`) and a target
    /// template (`k8s:{namespace}/{deployment}`).
    pub fn new<S: AsRef<str>>(matchers: &[S], target: &str) -> Result<Self, PrometheusError> {
        Self::parse(matchers, target, "route")
    }

    pub(super) fn parse<S: AsRef<str>>(
        matchers: &[S],
        target: &str,
        field: &str,
    ) -> Result<Self, PrometheusError> {
        let matchers = matchers
            .iter()
            .enumerate()
            .map(|(i, m)| {
                m.as_ref()
                    .parse()
                    .map_err(|e| PrometheusError::config(format!("{field}.matchers[{i}]"), e))
            })
            .collect::<Result<_, _>>()?;
        let target = target
            .parse()
            .map_err(|e| PrometheusError::config(format!("{field}.target"), e))?;
        Ok(Route { matchers, target })
    }

    /// The target for an alert with these labels, if the route matches it.
    pub(super) fn route(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Option<Result<TargetId, String>> {
        self.matchers
            .iter()
            .all(|m| m.matches(labels))
            .then(|| self.target.render(labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn matchers_parse_like_alertmanager() {
        let m: Matcher = r#"alertname="HighErrorRate""#.parse().unwrap();
        assert!(m.matches(&labels(&[("alertname", "HighErrorRate")])));
        assert!(!m.matches(&labels(&[("alertname", "Other")])));
        let m: Matcher = "severity != info".parse().unwrap();
        assert!(m.matches(&labels(&[("severity", "page")])));
        assert!(m.matches(&labels(&[])));
        assert!(!m.matches(&labels(&[("severity", "info")])));
        let m: Matcher = r#"x="a\"b""#.parse().unwrap();
        assert!(m.matches(&labels(&[("x", "a\"b")])));
        assert!(
            "x=~\"a.*\""
                .parse::<Matcher>()
                .unwrap_err()
                .contains("not supported")
        );
        assert!(
            "1x=\"a\""
                .parse::<Matcher>()
                .unwrap_err()
                .contains("not a label name")
        );
        assert!(
            "x=\"a"
                .parse::<Matcher>()
                .unwrap_err()
                .contains("closing quote")
        );
        assert!("nothing".parse::<Matcher>().is_err());
    }

    #[test]
    fn targets_render_from_labels() {
        let t: TargetTemplate = "k8s:{namespace}/{deployment}".parse().unwrap();
        let l = labels(&[("namespace", "shop"), ("deployment", "checkout")]);
        assert_eq!(t.render(&l).unwrap().as_str(), "k8s:shop/checkout");
        assert_eq!(
            t.render(&labels(&[("namespace", "shop")])).unwrap_err(),
            "deployment"
        );
        assert!("k8s:{namespace".parse::<TargetTemplate>().is_err());
        assert!("k8s:}".parse::<TargetTemplate>().is_err());
        assert!("k8s:{}".parse::<TargetTemplate>().is_err());
        assert!("".parse::<TargetTemplate>().is_err());
        assert_eq!(
            "plain"
                .parse::<TargetTemplate>()
                .unwrap()
                .render(&l)
                .unwrap()
                .as_str(),
            "plain"
        );
    }
}
