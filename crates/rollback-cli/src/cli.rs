//! The command line: subcommands, flags and the help text (clap derive).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The exit codes, as `--help` prints them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  promoted: every watched revision stayed healthy (or the command succeeded)
  1  any other error (bad file, URL, option, unreachable server, ...)
  2  usage error
  3  rolled back (and verified, where the policy verifies)
  4  humans must look: escalated, frozen, or breached in a dry run
  5  timed out (--timeout): the watch is left resumable
  130, 143  stopped by SIGINT, SIGTERM: state saved, the watch resumes next time
With several targets the worst wins, in the order 1 > 4 > 5 > 3 > 0.";

/// What `undo --help` adds.
pub const UNDO_NOTES: &str = "\
A k8s:// target (a Deployment, or k8s://NAMESPACE/statefulset/NAME,
k8s://NAMESPACE/daemonset/NAME) is rolled back exactly as `kubectl rollout
undo` does it (its revision numbers, checks, API calls and words); every other target through
its backend's rollback. The command does not wait for the change to converge,
as kubectl does not: `rollback watch` judges and verifies.
Options: `--option KEY=VALUE` (kubeconfig, context; region, endpoint_url;
tracking_uri; revisions for memory://), or `-c FILE` for the options of that
URL's entry in a watch file. Exit 0 done (or nothing to do), 1 error, 2 usage.";

/// What `serve --help` adds.
pub const SERVE_NOTES: &str = "\
Routes: GET /api/v1/targets, /api/v1/targets/ID, /api/v1/targets/ID/timeline;
POST /api/v1/targets/ID/{pause,resume,approve,promote,rollback} (Authorization:
Bearer TOKEN of serve.operators); GET /metrics, /healthz, /readyz,
/openapi.yaml; POST /webhook/alertmanager (with serve.alertmanager).
Logs go to stderr, filtered by RUST_LOG. Exit 0 after a graceful stop, 1 when
the server cannot start (a problem in the file, the address in use).";

/// Watch a change after it ships, judge it against SLOs, roll it back to
/// the last known good revision, verify, and record every step.
#[derive(Debug, Parser)]
#[command(name = "rollback", version, after_long_help = EXIT_CODES, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a watch file: its fields, policy, URLs, options, and that every
    /// probe the policy judges is defined. Connects to nothing.
    Check(CheckArgs),
    /// Roll a target back, as `kubectl rollout undo` does: to the previous
    /// revision, a revision number, a revision id, or the last known good one.
    #[command(after_help = UNDO_NOTES)]
    Undo(UndoArgs),
    /// List a target's revisions, newest first, with their health marks, as
    /// `kubectl rollout history` does.
    History(HistoryArgs),
    /// Judge the current revision of each target of a watch file until every
    /// watch ends: the CI gate (see the exit codes).
    #[command(after_help = EXIT_CODES)]
    Watch(WatchArgs),
    /// Each target's saved phase and last decision.
    Status(StatusArgs),
    /// When and why the file's policy would have rolled back, over recorded
    /// series (CSV or JSON).
    Replay(ReplayArgs),
    /// Run the file's policy from every change point over months of recorded
    /// history: would-be rollbacks, and against labelled incidents
    /// detections, misses, false rollbacks and detection delay.
    Backtest(BacktestArgs),
    /// Backtest a grid of policy variations on all cores: the Pareto front of
    /// detection delay against false rollbacks, and the best policy within a
    /// false-rollback budget, printed as a policy file.
    Tune(TuneArgs),
    /// Supervise every target of a watch file without end: each new
    /// revision is judged; an operator API for bots, Prometheus metrics,
    /// the Alertmanager receiver and notifications on one HTTP server.
    /// SIGHUP (or a change of the file) reloads; SIGTERM stops gracefully.
    #[command(after_help = SERVE_NOTES)]
    Serve(ServeArgs),
    /// Read an audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
}

/// `rollback check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The watch file (YAML, JSON or TOML).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub file: PathBuf,
}

/// Where a command's target options come from.
#[derive(Debug, Args, Clone, Default)]
pub struct TargetOptions {
    /// Take the target's options from this watch file's entry of the URL.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// A backend option, KEY=VALUE (repeatable; overrides the file's). The
    /// value reads as YAML: `--option revisions=[v1,v2]`,
    /// `--option endpoint_url=http://127.0.0.1:5000`, `--option context=kind-kind`.
    #[arg(long = "option", short = 'O', value_name = "KEY=VALUE")]
    pub options: Vec<String>,
}

/// How a dry run checks (`--dry-run=none|client|server`, kubectl's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum DryRunArg {
    /// Change the target.
    #[default]
    None,
    /// Read only: say what would be done.
    Client,
    /// Ask the server to validate the change without persisting it.
    Server,
}

/// `rollback undo`.
#[derive(Debug, Args)]
pub struct UndoArgs {
    /// The target: k8s://NAMESPACE/DEPLOYMENT, k8s://NAMESPACE/statefulset/NAME,
    /// k8s://NAMESPACE/daemonset/NAME, codedeploy://APPLICATION/GROUP,
    /// mlflow://MODEL@ALIAS, memory://NAME.
    pub url: String,
    /// The revision number to roll back to (`rollback history` lists them;
    /// 0: the previous one).
    #[arg(long, value_name = "N", conflicts_with = "to")]
    pub to_revision: Option<i64>,
    /// The revision to roll back to: its id, or `last-good` for the newest
    /// revision marked good. Default: the previous revision.
    #[arg(long, value_name = "ID|last-good")]
    pub to: Option<String>,
    /// Check instead of changing.
    #[arg(long, value_enum, default_value_t = DryRunArg::None, value_name = "none|client|server")]
    pub dry_run: DryRunArg,
    /// The target's options.
    #[command(flatten)]
    pub target: TargetOptions,
}

/// Output formats of `history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HistoryFormat {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// `rollback history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The target URL.
    pub url: String,
    /// Print JSON or YAML instead of a table.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<HistoryFormat>,
    /// The target's options.
    #[command(flatten)]
    pub target: TargetOptions,
}

/// Output formats of `watch` and `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JsonFormat {
    /// One JSON object per line.
    Json,
}

/// `rollback watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The watch file.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub file: PathBuf,
    /// Watch only these of the file's targets (their URLs); default: all.
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// End the watch after this long (`90s`, `2m`, `1h`) with exit 5,
    /// leaving it resumable.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Print one JSON object per audit record on stdout, then a summary.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<JsonFormat>,
}

/// `rollback serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The watch file (YAML, JSON or TOML), with its `serve` section.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub file: PathBuf,
    /// Listen on this address instead of `serve.listen` (e.g. 0.0.0.0:8080).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Log lines as human text or one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormatArg {
    /// Human lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `rollback status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The watch file: its state directory and audit log.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        conflicts_with = "state",
        required_unless_present = "state"
    )]
    pub file: Option<PathBuf>,
    /// A state directory.
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Print JSON.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<JsonFormat>,
}

/// Where the changes of a backtest happened.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ChangesArgs {
    /// A simulated deploy every this long (`1h`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub every: Option<std::time::Duration>,
    /// A file of deploy times, one per line (RFC 3339 or Unix seconds).
    #[arg(long, value_name = "FILE")]
    pub changes: Option<PathBuf>,
    /// A deploy wherever this series of the input changes value
    /// (`kube_deployment_status_observed_generation`).
    #[arg(long, value_name = "PROBE")]
    pub changes_of: Option<String>,
}

/// `rollback backtest`.
#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// The watch file whose policy is backtested.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub file: PathBuf,
    /// The recorded series, repeatable (as `replay --series`).
    #[arg(long, value_name = "[NAME=]FILE", required = true)]
    pub series: Vec<String>,
    /// Where the changes happened.
    #[command(flatten)]
    pub changes: ChangesArgs,
    /// Labelled incidents: CSV `start,end[,name]` or JSON `[{start, end, name}]`.
    #[arg(long, value_name = "FILE")]
    pub incidents: Option<PathBuf>,
    /// Also draw the backtest as an SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Print JSON.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<JsonFormat>,
}

/// `rollback tune`.
#[derive(Debug, Args)]
pub struct TuneArgs {
    /// The watch file whose policy is the base of every variation.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub file: PathBuf,
    /// The recorded series, repeatable (as `replay --series`).
    #[arg(long, value_name = "[NAME=]FILE", required = true)]
    pub series: Vec<String>,
    /// The variations: YAML or JSON with a `grid` and/or `variations` of
    /// policy fields (`failure_limit`, `probes.NAME.success`, ...).
    #[arg(long, value_name = "FILE")]
    pub space: PathBuf,
    /// Where the changes happened.
    #[command(flatten)]
    pub changes: ChangesArgs,
    /// Labelled incidents: CSV `start,end[,name]` or JSON `[{start, end, name}]`.
    #[arg(long, value_name = "FILE")]
    pub incidents: Option<PathBuf>,
    /// The most false rollbacks the best policy may have.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub budget: usize,
    /// Write the best policy to this file (else it is printed).
    #[arg(long, value_name = "FILE")]
    pub write_policy: Option<PathBuf>,
    /// Also draw delay against false rollbacks as an SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Print JSON.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<JsonFormat>,
}

/// `rollback replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The watch file whose policy is replayed.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub file: PathBuf,
    /// The recorded series, repeatable: CSV (`timestamp,probe,value[,baseline]`,
    /// `timestamp,value` or wide `timestamp,probe_a,probe_b`), the replay's
    /// JSON, or Prometheus' own `query_range` answer; `NAME=FILE` names the
    /// probe of a file that holds one series.
    #[arg(long, value_name = "[NAME=]FILE", required = true)]
    pub series: Vec<String>,
    /// Also draw the series, conditions and verdicts as an SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Print JSON.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<JsonFormat>,
}

/// `rollback audit`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print a JSON-lines audit log as the text timeline.
    Show {
        /// The audit log (JSON lines).
        file: PathBuf,
    },
    /// Check a JSON-lines audit log's hash chain (exit 1 when broken).
    Verify {
        /// The audit log (JSON lines).
        file: PathBuf,
    },
}

/// `rollback completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// A human duration: `90s`, `2m`, `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{e}; write it like 90s, 2m or 1h 30m"))
}
