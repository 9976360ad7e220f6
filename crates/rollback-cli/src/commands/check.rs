//! `rollback check -c FILE`: the watch file, its policy, its URLs and
//! options, and that every probe the policy judges is defined, as `promtool
//! check config` checks a Prometheus configuration. Connects to nothing.

use std::path::Path;

use rollback::registry::Registry;
use rollback::watchfile::WatchFile;

use crate::cli::CheckArgs;
use crate::exit::Outcome;

/// What a check found: the lines for stdout and for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Whether the file is valid.
    pub ok: bool,
    /// `Checking FILE` and, when valid, `  SUCCESS: …`.
    pub stdout: String,
    /// When invalid, `  FAILED: …` and every problem with its field.
    pub stderr: String,
}

fn plural(n: usize, one: &str) -> String {
    format!("{n} {one}{}", if n == 1 { "" } else { "s" })
}

/// Check the watch file at `path`.
pub fn report(path: &Path, registry: &Registry) -> Report {
    let mut stdout = format!("Checking {}\n", path.display());
    match WatchFile::load(path, registry) {
        Ok(file) => {
            stdout.push_str(&format!(
                "  SUCCESS: {}, {}, policy with {}{}\n",
                plural(file.targets.len(), "target"),
                plural(file.probes.len(), "probe"),
                plural(file.policy.probes.len(), "judged probe"),
                if file.policy.dry_run {
                    " (dry run)"
                } else {
                    ""
                }
            ));
            Report {
                ok: true,
                stdout,
                stderr: String::new(),
            }
        }
        Err(e) => {
            let mut stderr = format!(
                "  FAILED: {} in {}\n",
                plural(e.problems.len(), "problem"),
                e.source_name
            );
            for p in &e.problems {
                stderr.push_str(&format!("    {p}\n"));
            }
            Report {
                ok: false,
                stdout,
                stderr,
            }
        }
    }
}

/// Run `rollback check`.
pub fn run(args: &CheckArgs, registry: &Registry) -> Outcome {
    let r = report(&args.file, registry);
    crate::out!("{}", r.stdout);
    eprint!("{}", r.stderr);
    if r.ok {
        Outcome::Healthy
    } else {
        Outcome::Error
    }
}
