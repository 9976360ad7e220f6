//! `rollback backtest` and `rollback tune`: the policy lab on the watch
//! file's policy ([`rollback_lab`]).

use rollback::registry::Registry;
use rollback::watchfile::WatchFile;
use rollback::{Error, Result};
use rollback_lab::{
    BacktestOptions, ChangePoints, PlotOptions, TuneOptions, TuneSpace, backtest, plot_backtest,
    plot_tune, read_change_points, read_incidents, tune,
};

use super::replay::{series, write_plot};
use crate::cli::{BacktestArgs, ChangesArgs, TuneArgs};
use crate::exit::Outcome;

fn options(changes: &ChangesArgs, incidents: Option<&std::path::Path>) -> Result<BacktestOptions> {
    let points = match (changes.every, &changes.changes, &changes.changes_of) {
        (Some(every), _, _) => ChangePoints::Every(every),
        (_, Some(file), _) => ChangePoints::At(read_change_points(file)?),
        (_, _, Some(probe)) => ChangePoints::OnChangeOf(probe.clone()),
        _ => {
            return Err(Error::invalid(
                "say where the changes happened: --every, --changes or --changes-of",
            ));
        }
    };
    let mut o = BacktestOptions::new(points);
    if let Some(path) = incidents {
        o = o.incidents(read_incidents(path)?);
    }
    Ok(o)
}

/// Run `rollback backtest`; exit 0 (a report, whatever it says).
pub async fn backtest_run(args: &BacktestArgs, registry: &Registry) -> Result<Outcome> {
    let file = WatchFile::load(&args.file, registry).map_err(Error::from)?;
    let series = series(&args.series)?;
    let o = options(&args.changes, args.incidents.as_deref())?;
    let report = match &args.plot {
        Some(path) => {
            let (report, svg) = plot_backtest(&file.policy, &series, &o, &PlotOptions::default())?;
            write_plot(path, &svg)?;
            report
        }
        None => backtest(&file.policy, &series, &o)?,
    };
    if args.output.is_some() {
        crate::outln!("{}", report.to_json());
    } else {
        crate::outln!("{report}");
    }
    Ok(Outcome::Healthy)
}

/// Run `rollback tune`; exit 0 with a best policy, 1 when none is within
/// the budget.
pub async fn tune_run(args: &TuneArgs, registry: &Registry) -> Result<Outcome> {
    let file = WatchFile::load(&args.file, registry).map_err(Error::from)?;
    let series = series(&args.series)?;
    let options = TuneOptions {
        backtest: options(&args.changes, args.incidents.as_deref())?,
        space: TuneSpace::from_file(&args.space)?,
        false_rollback_budget: args.budget,
    };
    let report = tune(&file.policy, &series, &options)?;
    if let Some(path) = &args.plot {
        write_plot(path, &plot_tune(&report, &PlotOptions::default())?)?;
    }
    let best = report.best_policy_yaml();
    if args.output.is_some() {
        crate::outln!("{}", report.to_json());
    } else {
        crate::outln!("{report}");
    }
    match (best, &args.write_policy) {
        (Some(yaml), Some(path)) => {
            std::fs::write(path, yaml).map_err(|e| {
                Error::permanent(format!("cannot write the policy {}", path.display()))
                    .with_source(e)
            })?;
            eprintln!("best policy written to {}", path.display());
            Ok(Outcome::Healthy)
        }
        (Some(yaml), None) if args.output.is_none() => {
            crate::outln!(
                "# the best policy within {} false rollbacks\n{yaml}",
                args.budget
            );
            Ok(Outcome::Healthy)
        }
        (Some(_), None) => Ok(Outcome::Healthy),
        (None, _) => Err(Error::invalid(format!(
            "no policy of the space stays within {} false rollbacks; raise --budget or widen the space",
            args.budget
        ))),
    }
}
