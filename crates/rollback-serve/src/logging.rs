//! The server's logs, as the binary chooses to install them: human lines,
//! or one JSON object per line for log collectors (tracing-subscriber's
//! `json` format). The library itself never installs a subscriber.

use std::fmt;
use std::str::FromStr;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human lines (the default).
    #[default]
    Text,
    /// One JSON object per line: `{"timestamp":…,"level":"INFO","fields":{"message":…},"target":…,"span":…}`.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?}; use text or json")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// What is logged when `RUST_LOG` is not set: the server's and the
/// backends' information, warnings and errors; other crates' warnings.
pub const DEFAULT_FILTER: &str = "warn,rollback_serve=info,rollback_core=info,rollback_prometheus=info,rollback_k8s=info,rollback_mlflow=info,rollback_aws=info";

/// Install the process's log subscriber on stderr: `RUST_LOG` filters
/// (else [`DEFAULT_FILTER`]). An error when one is installed already.
pub fn init_logging(format: LogFormat) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
    installed.map_err(|e| format!("cannot install the log subscriber: {e}"))
}
