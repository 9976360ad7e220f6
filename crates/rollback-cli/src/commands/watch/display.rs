//! What `rollback watch` shows while it runs: on a terminal, a live line
//! per target (indicatif, on stderr: phase, the last measurements against
//! their conditions, bake or verify time left) with the decisions and
//! actions printed above; otherwise the audit records' text, one
//! timestamped line each, on stdout; with `-o json`, one JSON object per
//! record on stdout.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rollback::audit::{AuditEntry, AuditRecord, TextAuditSink};
use rollback::machine::Phase;
use rollback::time::format_duration;
use rollback::{TargetId, Timestamp};

/// How records are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Live lines on stderr, a terminal.
    Live,
    /// One text line per record on stdout.
    Lines,
    /// One JSON object per record on stdout.
    Json,
}

impl Mode {
    /// `Json` when asked; `Live` when stderr is a terminal; else `Lines`.
    pub fn choose(json: bool) -> Mode {
        if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Live
        } else {
            Mode::Lines
        }
    }
}

/// The last measurement of one probe, in words.
#[derive(Debug, Clone)]
struct Last {
    value: String,
    verdict: String,
    against: String,
}

/// The display of one watch command.
pub struct Display {
    mode: Mode,
    text: TextAuditSink,
    multi: MultiProgress,
    bars: BTreeMap<TargetId, ProgressBar>,
    last: BTreeMap<TargetId, BTreeMap<String, Last>>,
}

impl std::fmt::Debug for Display {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Display").field("mode", &self.mode).finish()
    }
}

fn left(until: Timestamp) -> String {
    let now = Timestamp::from(SystemTime::now());
    let d = if until > now {
        until.since(now)
    } else {
        Duration::ZERO
    };
    format_duration(Duration::from_secs(d.as_secs()))
}

impl Display {
    /// A display in `mode` for these targets.
    pub fn new(mode: Mode, targets: &[TargetId]) -> Display {
        let multi = MultiProgress::with_draw_target(if mode == Mode::Live {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let width = targets.iter().map(|t| t.as_str().len()).max().unwrap_or(0);
        let bars = targets
            .iter()
            .map(|t| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(format!("{:<width$}", t.as_str()));
                bar.set_message("starting");
                (t.clone(), bar)
            })
            .collect();
        Display {
            mode,
            text: TextAuditSink::new(std::io::sink()),
            multi,
            bars,
            last: BTreeMap::new(),
        }
    }

    /// Show one audit record.
    pub fn record(&mut self, r: &AuditRecord) {
        if let AuditEntry::Measured {
            probe,
            value,
            verdict,
            against,
            ..
        } = &r.entry
        {
            self.last.entry(r.target.clone()).or_default().insert(
                probe.clone(),
                Last {
                    value: value.map_or("no data".into(), |v| format!("{v}")),
                    verdict: verdict.map_or("not judged".into(), |v| v.to_string()),
                    against: against.clone().unwrap_or_default(),
                },
            );
        }
        match self.mode {
            Mode::Json => crate::outln!("{}", serde_json::to_string(r).unwrap_or_default()),
            Mode::Lines => crate::outln!("{}", self.text.line(r)),
            Mode::Live => {
                if !matches!(r.entry, AuditEntry::Measured { .. }) {
                    let line = self.text.line(r);
                    self.multi.suspend(|| eprintln!("{line}"));
                }
            }
        }
    }

    /// Redraw each target's line from its phase.
    pub fn phases(&self, phases: &[(TargetId, Phase)]) {
        if self.mode != Mode::Live {
            return;
        }
        for (target, phase) in phases {
            let Some(bar) = self.bars.get(target) else {
                continue;
            };
            let mut msg = phase.kind().to_string();
            match phase {
                Phase::Observing { bake_until } => {
                    msg.push_str(&format!(", bake time left {}", left(*bake_until)))
                }
                Phase::Verifying { restored, until } => {
                    msg.push_str(&format!(" {restored}, {} left", left(*until)))
                }
                Phase::RollingBack { to, .. } => msg.push_str(&format!(" to {to}")),
                _ => {}
            }
            if let Some(last) = self.last.get(target) {
                for (probe, l) in last {
                    msg.push_str(&format!(
                        " | {probe} {} {} {}",
                        l.value, l.verdict, l.against
                    ));
                }
            }
            bar.set_message(msg);
            bar.tick();
        }
    }

    /// End the live lines, leaving each target's last line on the screen.
    pub fn finish(&self) {
        for bar in self.bars.values() {
            bar.finish();
        }
    }
}
