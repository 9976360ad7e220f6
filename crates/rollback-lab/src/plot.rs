//! SVG plots (plotters' SVG backend: text is written as SVG `<text>`, no
//! system fonts are read).
//!
//! - [`plot_replay`] and [`plot_backtest`]: one panel per probe, its series
//!   as a line (the minimum and maximum of each pixel column when there
//!   are more samples than columns), its `success` condition as a green
//!   band and its `failure` condition as a red one (a relative condition as
//!   a line at the baseline's threshold), each measurement as a dot
//!   coloured by its verdict (the worst verdict of each column), change
//!   points as thin blue lines, would-be rollbacks as purple lines with a
//!   triangle, incidents as orange spans.
//! - [`plot_tune`]: each policy tried by its false rollbacks and median
//!   detection delay, the Pareto front joined by a line, the best policy
//!   within the budget circled, the budget as a dashed line.
//!
//! The colours are fixed, so a test (or a reader) can find each marker:
//! [`ROLLBACK_COLOUR`], [`CHANGE_COLOUR`], [`INCIDENT_COLOUR`], and the
//! verdicts' [`PASS_COLOUR`], [`FAIL_COLOUR`], [`INCONCLUSIVE_COLOUR`].

use plotters::prelude::*;
use rollback_core::condition::{Comparison, Condition, Verdict};
use rollback_core::replay::{Replay, ReplayMeasurement, ReplayOptions, ReplayReport, Series};
use rollback_core::{Error, Policy, Result, Timestamp};

use crate::backtest::{self, BacktestOptions, BacktestReport};
use crate::tune::TuneReport;

/// Would-be rollbacks: `#9400D3`.
pub const ROLLBACK_COLOUR: RGBColor = RGBColor(0x94, 0x00, 0xD3);
/// Change points: `#1F77B4`.
pub const CHANGE_COLOUR: RGBColor = RGBColor(0x1F, 0x77, 0xB4);
/// Incidents: `#FF7F0E`.
pub const INCIDENT_COLOUR: RGBColor = RGBColor(0xFF, 0x7F, 0x0E);
/// Passed measurements and the success band: `#2CA02C`.
pub const PASS_COLOUR: RGBColor = RGBColor(0x2C, 0xA0, 0x2C);
/// Failed measurements and the failure band: `#D62728`.
pub const FAIL_COLOUR: RGBColor = RGBColor(0xD6, 0x27, 0x28);
/// Inconclusive measurements: `#BCBD22`.
pub const INCONCLUSIVE_COLOUR: RGBColor = RGBColor(0xBC, 0xBD, 0x22);
const LINE_COLOUR: RGBColor = RGBColor(0x33, 0x33, 0x33);

/// The size and title of a plot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlotOptions {
    /// Width in pixels. Default 1200.
    pub width: u32,
    /// Height of each probe's panel (of the whole tune plot) in pixels. Default 280.
    pub panel_height: u32,
    /// A title above the plot.
    pub title: Option<String>,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions {
            width: 1200,
            panel_height: 280,
            title: None,
        }
    }
}

fn plot_error(e: impl std::fmt::Debug) -> Error {
    Error::invalid(format!("cannot draw the plot: {e:?}"))
}

fn secs(t: Timestamp) -> f64 {
    t.as_millis() as f64 / 1000.0
}

fn time_label(x: &f64) -> String {
    match Timestamp::from_secs_f64(*x) {
        Some(t) => {
            let s = t.to_string();
            s.get(5..16).map_or(s.clone(), |d| d.replace('T', " "))
        }
        None => String::new(),
    }
}

/// What one probe's panel shows, gathered per pixel column.
#[derive(Debug, Clone)]
struct Panel {
    /// min and max of the finite values per column
    envelope: Vec<Option<(f64, f64)>>,
    /// the worst verdict per column, with its value
    verdicts: Vec<Option<(Verdict, Option<f64>)>>,
    /// the relative thresholds (baseline × (1 + p)) per column
    relative: Vec<Option<f64>>,
}

/// Everything a series plot shows.
#[derive(Debug, Clone)]
struct Canvas {
    start: f64,
    end: f64,
    columns: usize,
    panels: Vec<Panel>,
}

fn rank(v: Verdict) -> u8 {
    match v {
        Verdict::Pass => 0,
        Verdict::Inconclusive => 1,
        Verdict::Error => 2,
        Verdict::Fail => 3,
    }
}

impl Canvas {
    fn new(policy: &Policy, series: &Series, span: (Timestamp, Timestamp), columns: usize) -> Self {
        let (start, end) = (secs(span.0), secs(span.1).max(secs(span.0) + 1.0));
        let mut canvas = Canvas {
            start,
            end,
            columns,
            panels: Vec::new(),
        };
        for p in &policy.probes {
            let mut panel = Panel {
                envelope: vec![None; columns],
                verdicts: vec![None; columns],
                relative: vec![None; columns],
            };
            let relative = [p.success, p.failure]
                .into_iter()
                .flatten()
                .find_map(|c| match c {
                    Condition::Relative(_, pct) => Some(pct),
                    _ => None,
                });
            for s in series.samples(&p.name) {
                let Some(col) = canvas.column(s.at) else {
                    continue;
                };
                if let Some(v) = s.value.filter(|v| v.is_finite()) {
                    let e = &mut panel.envelope[col];
                    *e = Some(e.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
                }
                if let (Some(pct), Some(b)) = (relative, s.baseline.filter(|b| b.is_finite())) {
                    panel.relative[col] = Some(b * (1.0 + pct / 100.0));
                }
            }
            canvas.panels.push(panel);
        }
        canvas
    }

    fn column(&self, t: Timestamp) -> Option<usize> {
        let x = secs(t);
        if x < self.start || x > self.end {
            return None;
        }
        let f = (x - self.start) / (self.end - self.start);
        Some(((f * self.columns as f64) as usize).min(self.columns - 1))
    }

    fn x_of(&self, col: usize) -> f64 {
        self.start + (col as f64 + 0.5) / self.columns as f64 * (self.end - self.start)
    }

    fn observe(&mut self, m: &ReplayMeasurement) {
        let Some(col) = self.column(m.at) else {
            return;
        };
        let slot = &mut self.panels[m.probe].verdicts[col];
        if slot.is_none_or(|(v, _)| rank(m.verdict) > rank(v)) {
            *slot = Some((m.verdict, m.value));
        }
    }
}

/// The markers of a series plot.
#[derive(Debug, Clone, Default)]
struct Markers {
    changes: Vec<Timestamp>,
    rollbacks: Vec<Timestamp>,
    incidents: Vec<(Timestamp, Timestamp)>,
}

/// Replay one change and plot it: for `rollback replay --plot FILE`.
/// Returns the replay's report (the same as [`rollback_core::replay::run`])
/// and the SVG.
pub fn plot_replay(
    policy: &Policy,
    series: &Series,
    options: &ReplayOptions,
    plot: &PlotOptions,
) -> Result<(ReplayReport, String)> {
    let replay = Replay::new(policy, series)?;
    let (first, last) = replay.span();
    let span = (options.start.unwrap_or(first), options.end.unwrap_or(last));
    let mut canvas = Canvas::new(policy, series, span, columns(plot));
    let report = replay.run_observed(options, &mut |m| canvas.observe(m));
    let markers = Markers {
        changes: vec![span.0],
        rollbacks: report.rollback_at.into_iter().collect(),
        incidents: Vec::new(),
    };
    let svg = draw_series(policy, &canvas, &markers, plot)?;
    Ok((report, svg))
}

/// Backtest and plot: for `rollback backtest --plot FILE`. Returns the
/// backtest's report (the same as [`crate::backtest`]) and the SVG.
pub fn plot_backtest(
    policy: &Policy,
    series: &Series,
    options: &BacktestOptions,
    plot: &PlotOptions,
) -> Result<(BacktestReport, String)> {
    let replay = Replay::new(policy, series)?;
    let changes = options.changes.resolve(series)?;
    let mut canvas = Canvas::new(policy, series, replay.span(), columns(plot));
    let report = backtest::run(&replay, &changes, options, Some(&mut |m| canvas.observe(m)));
    let markers = Markers {
        changes,
        rollbacks: report.rollbacks().filter_map(|r| r.rollback_at).collect(),
        incidents: options.incidents.iter().map(|i| (i.start, i.end)).collect(),
    };
    let svg = draw_series(policy, &canvas, &markers, plot)?;
    Ok((report, svg))
}

fn columns(plot: &PlotOptions) -> usize {
    (plot.width.saturating_sub(100) as usize).clamp(10, 4000)
}

/// The value range of a panel: its data and its thresholds, padded.
fn y_range(panel: &Panel, conditions: &[Condition]) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for (a, b) in panel.envelope.iter().flatten() {
        lo = lo.min(*a);
        hi = hi.max(*b);
    }
    for r in panel.relative.iter().flatten() {
        lo = lo.min(*r);
        hi = hi.max(*r);
    }
    for c in conditions {
        let (a, b) = match *c {
            Condition::Threshold(_, t) => (t, t),
            Condition::Range { low, high, .. } => (low, high),
            _ => continue,
        };
        lo = lo.min(a);
        hi = hi.max(b);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo {
        (hi - lo) * 0.08
    } else {
        lo.abs().max(1.0) * 0.1
    };
    (lo - pad, hi + pad)
}

/// Where a condition holds, as value spans within `(lo, hi)`.
fn bands(c: &Condition, lo: f64, hi: f64) -> Vec<(f64, f64)> {
    match *c {
        Condition::Threshold(Comparison::Lt | Comparison::Le, t) => vec![(lo, t.min(hi))],
        Condition::Threshold(Comparison::Gt | Comparison::Ge, t) => vec![(t.max(lo), hi)],
        Condition::Threshold(_, t) => {
            let w = (hi - lo) * 0.004;
            vec![(t - w, t + w)]
        }
        Condition::Range {
            low,
            high,
            inside: true,
        } => vec![(low.max(lo), high.min(hi))],
        Condition::Range {
            low,
            high,
            inside: false,
        } => vec![(lo, low.max(lo)), (high.min(hi), hi)],
        _ => Vec::new(),
    }
    .into_iter()
    .filter(|(a, b)| b > a)
    .collect()
}

fn verdict_colour(v: Verdict) -> RGBColor {
    match v {
        Verdict::Pass => PASS_COLOUR,
        Verdict::Fail => FAIL_COLOUR,
        _ => INCONCLUSIVE_COLOUR,
    }
}

fn draw_series(
    policy: &Policy,
    canvas: &Canvas,
    markers: &Markers,
    plot: &PlotOptions,
) -> Result<String> {
    let n = policy.probes.len() as u32;
    let title_h = if plot.title.is_some() { 30 } else { 0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (plot.width, plot.panel_height * n + title_h))
            .into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let root = match &plot.title {
            Some(t) => root.titled(t, ("sans-serif", 20)).map_err(plot_error)?,
            None => root,
        };
        let areas = root.split_evenly((n as usize, 1));
        for (i, (area, probe)) in areas.iter().zip(&policy.probes).enumerate() {
            let panel = &canvas.panels[i];
            let conditions: Vec<Condition> = [probe.success, probe.failure]
                .into_iter()
                .flatten()
                .collect();
            let (lo, hi) = y_range(panel, &conditions);
            let (x0, x1) = (canvas.start, canvas.end);
            let mut chart = ChartBuilder::on(area)
                .caption(&probe.name, ("sans-serif", 16))
                .margin(8)
                .x_label_area_size(28)
                .y_label_area_size(70)
                .build_cartesian_2d(x0..x1, lo..hi)
                .map_err(plot_error)?;
            chart
                .configure_mesh()
                .x_labels(8)
                .y_labels(6)
                .x_label_formatter(&time_label)
                .light_line_style(WHITE)
                .draw()
                .map_err(plot_error)?;
            let legend = i == 0;
            // conditions as bands
            for (cond, colour, name) in [
                (probe.success, PASS_COLOUR, "success"),
                (probe.failure, FAIL_COLOUR, "failure"),
            ] {
                let Some(cond) = cond else { continue };
                let label = format!("{name} {cond}");
                let spans = bands(&cond, lo, hi);
                let drawn = chart
                    .draw_series(spans.iter().map(|&(a, b)| {
                        Rectangle::new([(x0, a), (x1, b)], colour.mix(0.12).filled())
                    }))
                    .map_err(plot_error)?;
                drawn.label(label).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.mix(0.3).filled())
                });
                if cond.is_relative() {
                    let points: Vec<(f64, f64)> = panel
                        .relative
                        .iter()
                        .enumerate()
                        .filter_map(|(c, r)| r.map(|r| (canvas.x_of(c), r)))
                        .collect();
                    chart
                        .draw_series(LineSeries::new(points, colour.stroke_width(1)))
                        .map_err(plot_error)?;
                }
            }
            // incidents
            let drawn = chart
                .draw_series(markers.incidents.iter().map(|&(a, b)| {
                    Rectangle::new(
                        [(secs(a), lo), (secs(b), hi)],
                        INCIDENT_COLOUR.mix(0.25).filled(),
                    )
                }))
                .map_err(plot_error)?;
            if legend && !markers.incidents.is_empty() {
                drawn.label("incident").legend(|(x, y)| {
                    Rectangle::new(
                        [(x, y - 5), (x + 14, y + 5)],
                        INCIDENT_COLOUR.mix(0.4).filled(),
                    )
                });
            }
            // change points
            let drawn = chart
                .draw_series(markers.changes.iter().map(|&t| {
                    PathElement::new(
                        vec![(secs(t), lo), (secs(t), hi)],
                        CHANGE_COLOUR.mix(0.35).stroke_width(1),
                    )
                }))
                .map_err(plot_error)?;
            if legend {
                drawn.label("change point").legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], CHANGE_COLOUR.stroke_width(2))
                });
            }
            // the series
            let mut line = Vec::with_capacity(canvas.columns * 2);
            for (c, e) in panel.envelope.iter().enumerate() {
                if let Some((a, b)) = e {
                    line.push((canvas.x_of(c), *a));
                    if b > a {
                        line.push((canvas.x_of(c), *b));
                    }
                }
            }
            let drawn = chart
                .draw_series(LineSeries::new(line, LINE_COLOUR.stroke_width(1)))
                .map_err(plot_error)?;
            if legend {
                drawn.label("value").legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], LINE_COLOUR.stroke_width(1))
                });
            }
            // measurements by verdict
            for (verdict, name) in [
                (Verdict::Pass, "pass"),
                (Verdict::Inconclusive, "inconclusive"),
                (Verdict::Fail, "fail"),
            ] {
                let colour = verdict_colour(verdict);
                let dots: Vec<(f64, f64)> = panel
                    .verdicts
                    .iter()
                    .enumerate()
                    .filter_map(|(c, v)| match v {
                        Some((v, value)) if verdict_colour(*v) == colour => Some((
                            canvas.x_of(c),
                            value.filter(|x| x.is_finite()).unwrap_or(lo).clamp(lo, hi),
                        )),
                        _ => None,
                    })
                    .collect();
                let drawn = chart
                    .draw_series(dots.iter().map(|&p| Circle::new(p, 2, colour.filled())))
                    .map_err(plot_error)?;
                if legend {
                    drawn
                        .label(name)
                        .legend(move |(x, y)| Circle::new((x + 7, y), 3, colour.filled()));
                }
            }
            // would-be rollbacks
            let drawn = chart
                .draw_series(markers.rollbacks.iter().map(|&t| {
                    PathElement::new(
                        vec![(secs(t), lo), (secs(t), hi)],
                        ROLLBACK_COLOUR.stroke_width(2),
                    )
                }))
                .map_err(plot_error)?;
            if legend {
                drawn.label("would-be rollback").legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], ROLLBACK_COLOUR.stroke_width(2))
                });
            }
            chart
                .draw_series(
                    markers
                        .rollbacks
                        .iter()
                        .map(|&t| TriangleMarker::new((secs(t), hi), 6, ROLLBACK_COLOUR.filled())),
                )
                .map_err(plot_error)?;
            if legend {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK.mix(0.4))
                    .label_font(("sans-serif", 12))
                    .draw()
                    .map_err(plot_error)?;
            }
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Plot a tune result: each policy by false rollbacks (x) and median
/// detection delay in seconds (y); policies without a detection along the
/// top, marked with a cross.
pub fn plot_tune(report: &TuneReport, plot: &PlotOptions) -> Result<String> {
    let points: Vec<(usize, f64, f64)> = report
        .candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (i, c.summary.false_rollbacks as f64, c.median_delay()))
        .collect();
    let max_x = points
        .iter()
        .map(|p| p.1)
        .fold(report.false_rollback_budget as f64, f64::max);
    let finite_max = points
        .iter()
        .map(|p| p.2)
        .filter(|d| d.is_finite())
        .fold(0.0, f64::max);
    let top = if finite_max > 0.0 {
        finite_max * 1.15
    } else {
        60.0
    };
    let y_of = |d: f64| if d.is_finite() { d } else { top * 0.97 };
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (plot.width.min(900), plot.panel_height.max(480)))
                .into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let title = plot
            .title
            .clone()
            .unwrap_or_else(|| "tune: detection delay against false rollbacks".into());
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5..max_x + 0.5, 0.0..top)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("false rollbacks")
            .y_desc("median detection delay (s)")
            .x_labels((max_x as usize + 2).min(12))
            .x_label_formatter(&|x| {
                if x.fract().abs() < 1e-9 && *x >= 0.0 {
                    format!("{x:.0}")
                } else {
                    String::new()
                }
            })
            .light_line_style(WHITE)
            .draw()
            .map_err(plot_error)?;
        let budget = report.false_rollback_budget as f64;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(budget, 0.0), (budget, top)],
                6,
                4,
                FAIL_COLOUR.stroke_width(1),
            ))
            .map_err(plot_error)?
            .label(format!(
                "budget: {} false rollbacks",
                report.false_rollback_budget
            ))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], FAIL_COLOUR));
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.2.is_finite())
                    .map(|&(_, x, d)| Circle::new((x, d), 4, RGBColor(0x88, 0x88, 0x88).filled())),
            )
            .map_err(plot_error)?
            .label("policy tried")
            .legend(|(x, y)| Circle::new((x + 7, y), 4, RGBColor(0x88, 0x88, 0x88).filled()));
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| !p.2.is_finite())
                    .map(|&(_, x, d)| Cross::new((x, y_of(d)), 4, RGBColor(0x88, 0x88, 0x88))),
            )
            .map_err(plot_error)?;
        let front: Vec<(f64, f64)> = report
            .front
            .iter()
            .map(|&i| (points[i].1, y_of(points[i].2)))
            .collect();
        chart
            .draw_series(LineSeries::new(
                front.clone(),
                CHANGE_COLOUR.stroke_width(2),
            ))
            .map_err(plot_error)?
            .label("Pareto front")
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 14, y)], CHANGE_COLOUR.stroke_width(2))
            });
        chart
            .draw_series(
                front
                    .iter()
                    .map(|&p| Circle::new(p, 5, CHANGE_COLOUR.filled())),
            )
            .map_err(plot_error)?;
        if let Some(b) = report.best {
            let p = (points[b].1, y_of(points[b].2));
            chart
                .draw_series([Circle::new(p, 10, ROLLBACK_COLOUR.stroke_width(3))])
                .map_err(plot_error)?
                .label(format!("best within budget: #{b}"))
                .legend(|(x, y)| Circle::new((x + 7, y), 5, ROLLBACK_COLOUR.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}
