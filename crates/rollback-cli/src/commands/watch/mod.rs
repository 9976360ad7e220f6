//! `rollback watch -c FILE [TARGET…] [--timeout D] [-o json]`: judge the
//! current revision of each target until every watch ends; the exit code
//! is the CI gate's answer ([`crate::exit`]).
//!
//! - Every target is connected, its probes built and every Prometheus
//!   server asked a query before any watch starts: a bad URL, an
//!   unreachable server or a wrong option ends the command with exit 1 and
//!   nothing changed on any target.
//! - The engine saves each watch's state (the file's `state:` directory)
//!   before it acts, so a watch stopped by `--timeout` or a signal resumes
//!   where it was on the next `rollback watch` of the same file.
//! - On SIGINT or SIGTERM, or at the timeout, a rollback in flight is let
//!   finish (a second signal stops at once; the engine resumes the rollback
//!   next time); then the command exits 130 (SIGINT), 143 (SIGTERM) or 5.
//! - When a target `depends_on` another, the file's targets are one plan
//!   ([`rollback::plan`]): a breach rolls back every target that runs the
//!   change, dependents first; a target the plan stopped counts as 4.

mod display;
mod preflight;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rollback::audit::{AuditRecord, AuditSink};
use rollback::machine::{Phase, PhaseKind};
use rollback::registry::{Registry, TargetUrl};
use rollback::store::{MemoryStateStore, StateStore};
use rollback::watchfile::WatchFile;
use rollback::{Engine, Error, Result, TargetId};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

pub use display::{Display, Mode};

use crate::cli::WatchArgs;
use crate::exit::{Outcome, signal_code};

/// Sends every record to the display, then to the file's audit log.
#[derive(Debug)]
struct Tee {
    display: mpsc::UnboundedSender<AuditRecord>,
    file: Option<Arc<dyn AuditSink>>,
}

#[async_trait]
impl AuditSink for Tee {
    async fn record(&self, record: &AuditRecord) -> Result<()> {
        let _ = self.display.send(record.clone());
        match &self.file {
            Some(f) => f.record(record).await,
            None => Ok(()),
        }
    }
}

/// Why the watch stopped before every target's watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Timeout,
    Signal(i32),
}

impl Stop {
    fn name(self) -> &'static str {
        match self {
            Stop::Timeout => "timeout",
            Stop::Signal(2) => "SIGINT",
            Stop::Signal(_) => "SIGTERM",
        }
    }
}

/// The file, with only the targets named on the command line (all when
/// none is).
fn select(mut file: WatchFile, names: &[String]) -> Result<WatchFile> {
    if names.is_empty() {
        return Ok(file);
    }
    let mut wanted = Vec::new();
    for name in names {
        let url = TargetUrl::parse(name)?;
        if !file.targets.iter().any(|t| t.url == url) {
            return Err(Error::invalid(format!(
                "target {url} is not in watch file {} (it has: {})",
                file.source_name,
                file.targets
                    .iter()
                    .map(|t| t.url.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        wanted.push(url);
    }
    file.targets.retain(|t| wanted.contains(&t.url));
    Ok(file)
}

/// One target's end, for the summary.
#[derive(Debug, serde::Serialize)]
struct TargetEnd {
    target: String,
    phase: Phase,
    outcome: &'static str,
    exit_code: u8,
}

/// Run `rollback watch`; the exit code.
pub async fn run(args: &WatchArgs, registry: &Registry) -> Result<u8> {
    let file = WatchFile::load(&args.file, registry).map_err(Error::from)?;
    let file = select(file, &args.targets)?;
    // Connect everything before watching anything.
    let specs = file.resolve(registry).await?;
    let plan = file.plan(specs.clone())?;
    preflight::prometheus_servers_answer(&file).await?;
    let store: Arc<dyn StateStore> = match file.state_store()? {
        Some(s) => s,
        None => Arc::new(MemoryStateStore::new()),
    };
    let (tx, mut records) = mpsc::unbounded_channel();
    let engine = Engine::builder()
        .audit(Arc::new(Tee {
            display: tx,
            file: file.audit_sink().await?,
        }))
        .store(store)
        .build();
    let mut sigint = signal(SignalKind::interrupt())
        .map_err(|e| Error::permanent("cannot listen for SIGINT").with_source(e))?;
    let mut sigterm = signal(SignalKind::terminate())
        .map_err(|e| Error::permanent("cannot listen for SIGTERM").with_source(e))?;

    let (done_tx, mut done) = mpsc::unbounded_channel();
    let (targets, expected, plan_report) = match plan {
        Some(plan) => {
            let targets = plan.order().to_vec();
            let report = Arc::new(std::sync::Mutex::new(None));
            let (engine, report_to) = (engine.clone(), report.clone());
            tokio::spawn(async move {
                let r = plan.run(&engine).await;
                *report_to.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                let _ = done_tx.send(());
            });
            (targets, 1, Some(report))
        }
        None => {
            let mut handles = Vec::new();
            for spec in specs {
                match engine.watch(spec).await {
                    Ok(h) => handles.push(h),
                    Err(e) => {
                        for h in &handles {
                            engine.unwatch(h.target());
                        }
                        return Err(e);
                    }
                }
            }
            let targets: Vec<TargetId> = handles.iter().map(|h| h.target().clone()).collect();
            for mut h in handles {
                let done_tx = done_tx.clone();
                tokio::spawn(async move {
                    h.finished().await;
                    let _ = done_tx.send(());
                });
            }
            drop(done_tx);
            let n = targets.len();
            (targets, n, None)
        }
    };
    let mut display = Display::new(Mode::choose(args.output.is_some()), &targets);

    let deadline = args.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut ended = 0;
    let stop = loop {
        tokio::select! {
            Some(r) = records.recv() => display.record(&r),
            Some(()) = done.recv() => {
                ended += 1;
                if ended == expected {
                    break None;
                }
            }
            _ = tick.tick() => display.phases(&engine.phases()),
            _ = sleep_until(deadline) => break Some(Stop::Timeout),
            _ = sigint.recv() => break Some(Stop::Signal(2)),
            _ = sigterm.recv() => break Some(Stop::Signal(15)),
        }
    };
    if stop.is_some() {
        // Let a rollback in flight finish; a second signal stops at once.
        let rolling = |phases: &[(TargetId, Phase)]| {
            phases
                .iter()
                .filter(|(_, p)| p.kind() == PhaseKind::RollingBack)
                .map(|(t, _)| t.to_string())
                .collect::<Vec<_>>()
        };
        let waiting = rolling(&engine.phases());
        if !waiting.is_empty() {
            eprintln!(
                "rollback: waiting for the rollback of {} to finish (signal again to stop now; it resumes on the next watch)",
                waiting.join(", ")
            );
        }
        while !rolling(&engine.phases()).is_empty() {
            tokio::select! {
                Some(r) = records.recv() => display.record(&r),
                _ = tick.tick() => display.phases(&engine.phases()),
                _ = sigint.recv() => break,
                _ = sigterm.recv() => break,
            }
        }
    }
    while let Ok(r) = records.try_recv() {
        display.record(&r);
    }
    let mut phases = engine.phases();
    if let Some(report) = plan_report {
        let report = report.lock().unwrap_or_else(|e| e.into_inner()).take();
        match report {
            Some(Ok(report)) => stopped_by_the_plan(&mut phases, &report),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    display.phases(&phases);
    display.finish();
    for t in &targets {
        engine.unwatch(t);
    }
    Ok(summary(&phases, stop, display_json(args)))
}

/// A target the plan stopped is left for humans: it ends as escalated,
/// with the plan's reason.
fn stopped_by_the_plan(phases: &mut [(TargetId, Phase)], report: &rollback::plan::PlanReport) {
    for (t, outcome) in &report.targets {
        if let rollback::plan::PlanOutcome::Stopped { reason } = outcome
            && let Some((_, p)) = phases.iter_mut().find(|(id, _)| id == t)
        {
            *p = Phase::Escalated {
                reason: format!("the plan stopped before rolling it back: {reason}"),
                at: rollback::Timestamp::from(std::time::SystemTime::now()),
            };
        }
    }
}

fn display_json(args: &WatchArgs) -> bool {
    args.output.is_some()
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Print the summary; the exit code.
fn summary(phases: &[(TargetId, Phase)], stop: Option<Stop>, json: bool) -> u8 {
    let ends: Vec<TargetEnd> = phases
        .iter()
        .map(|(t, p)| {
            let o = Outcome::of_phase(p.kind());
            TargetEnd {
                target: t.to_string(),
                phase: p.clone(),
                outcome: o.as_str(),
                exit_code: o.code(),
            }
        })
        .collect();
    let worst = Outcome::worst(phases.iter().map(|(_, p)| Outcome::of_phase(p.kind())));
    let code = match stop {
        Some(Stop::Signal(s)) => signal_code(s),
        _ => worst.code(),
    };
    if json {
        let summary = serde_json::json!({"summary": {
            "exit_code": code,
            "outcome": worst.as_str(),
            "stopped_by": stop.map(Stop::name),
            "targets": ends,
        }});
        crate::outln!("{summary}");
    } else {
        for e in &ends {
            crate::outln!(
                "{}: {} (exit {})",
                e.target,
                crate::commands::status::describe(&e.phase),
                e.exit_code
            );
        }
        match stop {
            Some(s) => crate::outln!(
                "result: stopped by {}, exit {code}; the watch resumes on the next `rollback watch`",
                s.name()
            ),
            None => crate::outln!("result: {}, exit {code}", worst.as_str().replace('_', " ")),
        }
    }
    code
}
