//! `rollback replay -c FILE --series FILE… [--plot FILE.svg]`: when and why
//! the watch file's policy would have rolled back, on the recorded series,
//! on virtual time.

use rollback::registry::Registry;
use rollback::replay::{self, ReplayOptions, Series};
use rollback::watchfile::WatchFile;
use rollback::{Error, Result};
use rollback_lab::{PlotOptions, SeriesFile, plot_replay, read_series};

use crate::cli::ReplayArgs;
use crate::exit::Outcome;

/// The series of every `--series` argument (`[NAME=]FILE`), in every format
/// the lab reads.
pub(crate) fn series(args: &[String]) -> Result<Series> {
    let files: Vec<SeriesFile> = args.iter().map(|a| SeriesFile::parse(a)).collect();
    read_series(&files)
}

/// Write an SVG, naming the file when it cannot.
pub(crate) fn write_plot(path: &std::path::Path, svg: &str) -> Result<()> {
    std::fs::write(path, svg).map_err(|e| {
        Error::permanent(format!("cannot write the plot {}", path.display())).with_source(e)
    })?;
    eprintln!("plot written to {}", path.display());
    Ok(())
}

/// Run `rollback replay`: the timeline, then the verdict. Exit 0 whatever
/// the policy would have done; 1 when the file or the series does not read.
pub async fn run(args: &ReplayArgs, registry: &Registry) -> Result<Outcome> {
    let file = WatchFile::load(&args.file, registry).map_err(Error::from)?;
    let series = series(&args.series)?;
    let report = match &args.plot {
        Some(path) => {
            let (report, svg) = plot_replay(
                &file.policy,
                &series,
                &ReplayOptions::default(),
                &PlotOptions::default(),
            )?;
            write_plot(path, &svg)?;
            report
        }
        None => replay::run(&file.policy, &series, &ReplayOptions::default())?,
    };
    if args.output.is_some() {
        let json = serde_json::json!({
            "phase": report.phase,
            "rollback_at": report.rollback_at.map(|t| t.to_string()),
            "reason": report.reason,
            "rounds": report.rounds,
            "verdicts": report.verdicts.iter().map(|(k, [p, f, i])| {
                (k.clone(), serde_json::json!({"pass": p, "fail": f, "inconclusive": i}))
            }).collect::<serde_json::Map<_, _>>(),
            "timeline": report.timeline.iter().map(|e| {
                serde_json::json!({"at": e.at.to_string(), "decision": e.decision.kind(), "detail": e.decision.to_string()})
            }).collect::<Vec<_>>(),
        });
        crate::outln!("{json}");
        return Ok(Outcome::Healthy);
    }
    for e in &report.timeline {
        crate::outln!("{}  {}", e.at, e.decision);
    }
    match (report.rollback_at, &report.reason) {
        (Some(at), Some(reason)) => crate::outln!("would roll back at {at}: {reason}"),
        (_, Some(reason)) => crate::outln!("would end {} ({reason})", report.phase.kind()),
        _ => crate::outln!("would not roll back: ended {}", report.phase.kind()),
    }
    for (probe, [pass, fail, inconclusive]) in &report.verdicts {
        crate::outln!("  {probe}: {pass} pass, {fail} fail, {inconclusive} inconclusive");
    }
    crate::outln!("  {} measurement rounds replayed", report.rounds);
    Ok(Outcome::Healthy)
}
