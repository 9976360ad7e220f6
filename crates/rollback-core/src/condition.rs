//! Success and failure conditions, and how a measurement is judged.

use std::fmt;
use std::str::FromStr;

use crate::Measurement;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Comparison {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Comparison::Lt => a < b,
            Comparison::Le => a <= b,
            Comparison::Gt => a > b,
            Comparison::Ge => a >= b,
            Comparison::Eq => a == b,
            Comparison::Ne => a != b,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Comparison::Lt => "<",
            Comparison::Le => "<=",
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
            Comparison::Eq => "==",
            Comparison::Ne => "!=",
        }
    }
}

/// A condition on a measured value, written as a string in policies:
///
/// | form | meaning |
/// |---|---|
/// | `< 0.01`, `<= 100`, `> 0.9`, `>= 0.99`, `== 0`, `!= 0` | compare with a threshold |
/// | `between 0.9 and 1.1`, `0.9..1.1` | inclusive range |
/// | `outside 0.9..1.1` | not in the inclusive range |
/// | `<= +10%`, `>= -5%` | relative to the measurement's baseline: `value <= baseline × 1.10` |
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Condition {
    /// `value OP threshold`
    Threshold(Comparison, f64),
    /// `low <= value <= high`, or its negation when `inside` is false.
    Range {
        /// Lower bound, inclusive.
        low: f64,
        /// Upper bound, inclusive.
        high: f64,
        /// `true` for `between`, `false` for `outside`.
        inside: bool,
    },
    /// `value OP baseline × (1 + percent / 100)`
    Relative(Comparison, f64),
}

/// Why a condition could not be evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unevaluable {
    /// A relative condition without a finite baseline.
    NoBaseline,
}

impl Condition {
    /// Whether `value` (finite) satisfies this condition, given an optional baseline.
    pub fn holds(&self, value: f64, baseline: Option<f64>) -> Result<bool, Unevaluable> {
        match *self {
            Condition::Threshold(op, t) => Ok(op.holds(value, t)),
            Condition::Range { low, high, inside } => Ok((low <= value && value <= high) == inside),
            Condition::Relative(op, pct) => match baseline {
                Some(b) if b.is_finite() => Ok(op.holds(value, b * (1.0 + pct / 100.0))),
                _ => Err(Unevaluable::NoBaseline),
            },
        }
    }

    /// Whether the condition needs a baseline.
    pub fn is_relative(&self) -> bool {
        matches!(self, Condition::Relative(..))
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Condition::Threshold(op, t) => write!(f, "{} {}", op.symbol(), t),
            Condition::Range {
                low,
                high,
                inside: true,
            } => write!(f, "between {low} and {high}"),
            Condition::Range {
                low,
                high,
                inside: false,
            } => write!(f, "outside {low}..{high}"),
            Condition::Relative(op, pct) => write!(f, "{} {:+}%", op.symbol(), pct),
        }
    }
}

/// A condition string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid condition {input:?}: {reason}")]
pub struct ConditionParseError {
    input: String,
    reason: String,
}

fn parse_number(s: &str, whole: &str) -> Result<f64, ConditionParseError> {
    let err = |reason: String| ConditionParseError {
        input: whole.to_owned(),
        reason,
    };
    let s = s.trim();
    if s.ends_with('%') {
        return Err(err(format!(
            "{s:?} is a percentage without a sign: write a plain number (0.01 for 1%), or +N% / -N% for a change relative to the baseline"
        )));
    }
    let v: f64 = s
        .parse()
        .map_err(|_| err(format!("{s:?} is not a number")))?;
    if !v.is_finite() {
        return Err(err(format!("{s:?} is not a finite number")));
    }
    Ok(v)
}

fn parse_range(s: &str, whole: &str, inside: bool) -> Result<Condition, ConditionParseError> {
    let (a, b) = if let Some((a, b)) = s.split_once("..") {
        (a, b.strip_prefix('=').unwrap_or(b))
    } else if let Some((a, b)) = s.split_once(" and ") {
        (a, b)
    } else {
        return Err(ConditionParseError {
            input: whole.to_owned(),
            reason: "a range is written `between LOW and HIGH` or `LOW..HIGH`".into(),
        });
    };
    let (low, high) = (parse_number(a, whole)?, parse_number(b, whole)?);
    if low > high {
        return Err(ConditionParseError {
            input: whole.to_owned(),
            reason: format!("the range is empty: {low} is greater than {high}"),
        });
    }
    Ok(Condition::Range { low, high, inside })
}

impl FromStr for Condition {
    type Err = ConditionParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        let ops = [
            ("<=", Comparison::Le),
            (">=", Comparison::Ge),
            ("==", Comparison::Eq),
            ("!=", Comparison::Ne),
            ("<", Comparison::Lt),
            (">", Comparison::Gt),
        ];
        for (sym, op) in ops {
            if let Some(rest) = s.strip_prefix(sym) {
                let rest = rest.trim();
                let signed = rest.starts_with('+') || rest.starts_with('-');
                if signed && let Some(pct) = rest.strip_suffix('%') {
                    let v = parse_number(pct, input)?;
                    if v <= -100.0 {
                        return Err(ConditionParseError {
                            input: input.to_owned(),
                            reason: "a relative change must be above -100%".into(),
                        });
                    }
                    return Ok(Condition::Relative(op, v));
                }
                return Ok(Condition::Threshold(op, parse_number(rest, input)?));
            }
        }
        if let Some(rest) = s.strip_prefix("between ") {
            return parse_range(rest, input, true);
        }
        if let Some(rest) = s.strip_prefix("outside ") {
            return parse_range(rest, input, false);
        }
        if s.contains("..") {
            return parse_range(s, input, true);
        }
        Err(ConditionParseError {
            input: input.to_owned(),
            reason: "expected `< N`, `<= N`, `> N`, `>= N`, `== N`, `!= N`, `between A and B`, `A..B`, `outside A..B`, or a relative `<= +10%`".into(),
        })
    }
}

impl serde::Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Condition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The judgement of one measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The SLO holds.
    Pass,
    /// The SLO is breached.
    Fail,
    /// Neither could be said: no data, NaN, no baseline, or neither condition matched.
    Inconclusive,
    /// The probe could not measure.
    Error,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Error => "error",
        })
    }
}

/// What to do with a measurement that has no data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoData {
    /// Count it as inconclusive (the default).
    #[default]
    Inconclusive,
    /// Count it as a failed measurement.
    Fail,
    /// Count it as a pass. Only ever by explicit choice.
    Pass,
}

/// Why a verdict is what it is (for the timeline and the audit log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum VerdictCause {
    /// The failure condition matched.
    FailureMatched,
    /// The success condition matched.
    SuccessMatched,
    /// Only a success condition is set and it did not match.
    SuccessNotMatched,
    /// Only a failure condition is set and it did not match.
    FailureNotMatched,
    /// Both are set and neither matched.
    NeitherMatched,
    /// No data, judged per `no_data`.
    NoData,
    /// NaN or infinite.
    NotFinite,
    /// A relative condition had no baseline.
    NoBaseline,
    /// The success condition matched, but the probe's trend forecast
    /// crosses its bound within the horizon ([`crate::forecast`]).
    ForecastBreach,
    /// The canary is significantly higher than its baseline
    /// ([`crate::canary`]).
    CanaryHigher,
    /// The canary is significantly lower than its baseline.
    CanaryLower,
    /// The canary is higher than its baseline past the critical effect size
    /// of a critical metric: a breach at once.
    CriticallyHigher,
    /// The canary is lower than its baseline past the critical effect size
    /// of a critical metric: a breach at once.
    CriticallyLower,
    /// No significant difference between canary and baseline in the
    /// direction that fails.
    NoSignificantDifference,
    /// Fewer canary or baseline values than the judge's `min_samples`.
    TooFewSamples,
    /// A probe judged by `mann_whitney` returned one value, not samples of
    /// canary and baseline.
    NoSamples,
}

impl VerdictCause {
    /// Whether this cause breaches at once, whatever the failure limits (a
    /// critical metric of [`crate::canary`]).
    pub fn is_critical(self) -> bool {
        matches!(
            self,
            VerdictCause::CriticallyHigher | VerdictCause::CriticallyLower
        )
    }
}

/// Judge a measurement against success and failure conditions, the way Argo
/// Rollouts judges an analysis measurement:
/// the failure condition matching is `Fail`; else the success condition
/// matching is `Pass`; else `Fail` when only a success condition is set, and
/// `Inconclusive` when both are. With only a failure condition, not matching
/// is `Pass`. No data goes by `no_data`; NaN and infinities are always
/// `Inconclusive`, never `Pass`.
pub(crate) fn judge(
    m: &Measurement,
    success: Option<&Condition>,
    failure: Option<&Condition>,
    no_data: NoData,
) -> (Verdict, VerdictCause) {
    let Some(v) = m.value else {
        let verdict = match no_data {
            NoData::Inconclusive => Verdict::Inconclusive,
            NoData::Fail => Verdict::Fail,
            NoData::Pass => Verdict::Pass,
        };
        return (verdict, VerdictCause::NoData);
    };
    if !v.is_finite() {
        return (Verdict::Inconclusive, VerdictCause::NotFinite);
    }
    if let Some(f) = failure {
        match f.holds(v, m.baseline) {
            Ok(true) => return (Verdict::Fail, VerdictCause::FailureMatched),
            Ok(false) => {}
            Err(Unevaluable::NoBaseline) => {
                return (Verdict::Inconclusive, VerdictCause::NoBaseline);
            }
        }
    }
    match success {
        Some(s) => match s.holds(v, m.baseline) {
            Ok(true) => (Verdict::Pass, VerdictCause::SuccessMatched),
            Ok(false) if failure.is_none() => (Verdict::Fail, VerdictCause::SuccessNotMatched),
            Ok(false) => (Verdict::Inconclusive, VerdictCause::NeitherMatched),
            Err(Unevaluable::NoBaseline) => (Verdict::Inconclusive, VerdictCause::NoBaseline),
        },
        None => (Verdict::Pass, VerdictCause::FailureNotMatched),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Condition {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(c("< 0.01"), Condition::Threshold(Comparison::Lt, 0.01));
        assert_eq!(c("<=100"), Condition::Threshold(Comparison::Le, 100.0));
        assert_eq!(c(">= 0.99"), Condition::Threshold(Comparison::Ge, 0.99));
        assert_eq!(c("== 0"), Condition::Threshold(Comparison::Eq, 0.0));
        assert_eq!(
            c("between 0.9 and 1.1"),
            Condition::Range {
                low: 0.9,
                high: 1.1,
                inside: true
            }
        );
        assert_eq!(
            c("0.9..1.1"),
            Condition::Range {
                low: 0.9,
                high: 1.1,
                inside: true
            }
        );
        assert_eq!(
            c("outside 1..2"),
            Condition::Range {
                low: 1.0,
                high: 2.0,
                inside: false
            }
        );
        assert_eq!(c("<= +10%"), Condition::Relative(Comparison::Le, 10.0));
        assert_eq!(c(">= -5%"), Condition::Relative(Comparison::Ge, -5.0));
        assert_eq!(c("<= -5"), Condition::Threshold(Comparison::Le, -5.0));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "< 0.01",
            "between 0.9 and 1.1",
            "outside 1..2",
            "<= +10%",
            ">= -5%",
        ] {
            let parsed = c(s);
            assert_eq!(c(&parsed.to_string()), parsed, "{s}");
        }
    }

    #[test]
    fn refuses_bad_conditions_with_a_reason() {
        let e = "< 1%".parse::<Condition>().unwrap_err().to_string();
        assert!(e.contains("percentage without a sign"), "{e}");
        let e = "< abc".parse::<Condition>().unwrap_err().to_string();
        assert!(e.contains("\"abc\" is not a number"), "{e}");
        let e = "between 2 and 1"
            .parse::<Condition>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("range is empty"), "{e}");
        let e = "about 3".parse::<Condition>().unwrap_err().to_string();
        assert!(e.contains("expected"), "{e}");
        assert!("< NaN".parse::<Condition>().is_err());
        assert!("<= -100%".parse::<Condition>().is_err());
    }

    #[test]
    fn judges_like_argo() {
        let s = c("< 0.01");
        let f = c(">= 0.05");
        let m = Measurement::value;
        assert_eq!(
            judge(&m(0.001), Some(&s), None, NoData::default()).0,
            Verdict::Pass
        );
        assert_eq!(
            judge(&m(0.02), Some(&s), None, NoData::default()).0,
            Verdict::Fail
        );
        assert_eq!(
            judge(&m(0.02), Some(&s), Some(&f), NoData::default()).0,
            Verdict::Inconclusive
        );
        assert_eq!(
            judge(&m(0.06), Some(&s), Some(&f), NoData::default()).0,
            Verdict::Fail
        );
        assert_eq!(
            judge(&m(0.02), None, Some(&f), NoData::default()).0,
            Verdict::Pass
        );
    }

    #[test]
    fn missing_and_non_finite_values_never_pass_silently() {
        let s = c("< 0.01");
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                judge(&Measurement::value(v), Some(&s), None, NoData::Pass).0,
                Verdict::Inconclusive
            );
        }
        assert_eq!(
            judge(&Measurement::NO_DATA, Some(&s), None, NoData::Inconclusive).0,
            Verdict::Inconclusive
        );
        assert_eq!(
            judge(&Measurement::NO_DATA, Some(&s), None, NoData::Fail).0,
            Verdict::Fail
        );
        assert_eq!(
            judge(&Measurement::NO_DATA, Some(&s), None, NoData::Pass),
            (Verdict::Pass, VerdictCause::NoData)
        );
    }

    #[test]
    fn relative_conditions_need_a_baseline() {
        let s = c("<= +10%");
        assert_eq!(
            judge(
                &Measurement::with_baseline(105.0, 100.0),
                Some(&s),
                None,
                NoData::default()
            )
            .0,
            Verdict::Pass
        );
        assert_eq!(
            judge(
                &Measurement::with_baseline(111.0, 100.0),
                Some(&s),
                None,
                NoData::default()
            )
            .0,
            Verdict::Fail
        );
        assert_eq!(
            judge(&Measurement::value(1.0), Some(&s), None, NoData::default()),
            (Verdict::Inconclusive, VerdictCause::NoBaseline)
        );
        assert_eq!(
            judge(
                &Measurement::with_baseline(1.0, f64::NAN),
                Some(&s),
                None,
                NoData::default()
            )
            .0,
            Verdict::Inconclusive
        );
    }
}
