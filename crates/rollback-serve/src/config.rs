//! The `serve` section of the watch file: where the server listens, who may
//! call its operator API, the Alertmanager receiver, the notifications.
//!
//! ```yaml
//! serve:
//!   listen: 0.0.0.0:9095
//!   poll_interval: 30s          # how often each target's current revision is read
//!   reload_check: 5s            # how often the file is checked for a change (0s: SIGHUP only)
//!   shutdown_grace: 30s         # on SIGTERM, how long an in-flight rollback may take
//!   timeline: 50                # per target, the last records other than measurements for the API
//!   timeline_measurements: 2    # per target and probe, the last measurements (measured, probe_failed)
//!   operators:                  # bearer tokens, from the environment, mapped to actors
//!     - actor: chatops-bot
//!       token: "${ROLLBACK_BOT_TOKEN}"
//!       commands: [pause, resume, approve, rollback, promote]
//!       targets: ["k8s:shop/checkout"]   # optional: every target when absent
//!     - actor: dashboard
//!       token: "${ROLLBACK_DASHBOARD_TOKEN}"   # no commands: reads only
//!   alertmanager:               # the receiver of rollback-prometheus, on the same server
//!     bearer_token: "${ALERTMANAGER_TOKEN}"
//!     routes:
//!       - matchers: ['alertname="HighErrorRate"']
//!         target: "k8s:{namespace}/{deployment}"
//!   notifications:
//!     channels:
//!       - slack: "${SLACK_WEBHOOK_URL}"
//!       - teams: "${TEAMS_WORKFLOW_URL}"
//!         events: [escalated, frozen, awaiting_approval]
//!       - webhook: https://hooks.example.com/rollback
//!         auth: { bearer: { token: "${HOOK_TOKEN}" } }
//!   leader_election:            # two or more replicas, one actor per target (feature k8s)
//!     namespace: rollback       # where the Leases and the state ConfigMaps live
//!     name: rollback-serve      # the Lease (rollback-serve-0, -1, … with shards)
//!     lease: 15s                # Argo Rollouts' defaults
//!     renew: 10s
//!     retry: 2s
//!     shards: 1                 # targets divided among this many Leases
//!     identity: "${POD_NAME}"   # default: POD_NAME, else HOSTNAME, else the host name
//! ```
//!
//! Unknown fields are refused and every problem names its field
//! (`serve.operators[1].token`), as in the rest of the watch file.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use rollback_core::auth::CommandKind;
use rollback_core::http::{Auth, Secret};
use rollback_core::policy::RetryPolicy;
use rollback_core::registry::Options;
use rollback_core::time::duration;
use rollback_core::watchfile::{Problem, WatchFileError};
use rollback_core::{Actor, TargetId};
use rollback_prometheus::ReceiverConfig;
use serde::Deserialize;

use crate::notify::NoticeKind;
use crate::observer::TimelineCapacity;

/// The actor name a request without a valid token is audited as.
pub(crate) const UNAUTHENTICATED: &str = "unauthenticated";

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9095))
}
fn default_reload_check() -> Duration {
    Duration::from_secs(5)
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_timeline() -> usize {
    50
}
fn default_timeline_measurements() -> usize {
    2
}
fn default_queue() -> usize {
    256
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(30),
    }
}

/// The `serve` section. Every field has a default, so a watch file without
/// the section serves on `127.0.0.1:9095` with no operators (the API
/// refuses every request), no receiver and no notifications.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServeConfig {
    /// The one address the API, `/metrics`, the health endpoints and the
    /// receiver are served on. Default `127.0.0.1:9095`; `0.0.0.0:9095` in a
    /// container.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// How often each target's current revision is read to notice a deploy.
    /// Default: the policy's `interval`.
    #[serde(default, with = "duration::option")]
    pub poll_interval: Option<Duration>,
    /// How often the watch file is checked for a change on disk; a change
    /// reloads it as SIGHUP does. `0s`: only SIGHUP reloads. Default 5s.
    #[serde(default = "default_reload_check", with = "duration")]
    pub reload_check: Duration,
    /// On SIGTERM, how long a rollback in flight may take to finish before
    /// the server stops anyway (the next start resumes it). Default 30s.
    #[serde(default = "default_shutdown_grace", with = "duration")]
    pub shutdown_grace: Duration,
    /// How many audit records of each target other than measurements
    /// (watches, decisions, transitions, actions, commands, alerts) the
    /// API's timeline keeps in memory; the audit log keeps all of them.
    /// Measurements, which come every interval, are kept apart
    /// (`timeline_measurements`), so they never push these out. `0` keeps
    /// none. Default 50.
    #[serde(default = "default_timeline")]
    pub timeline: usize,
    /// How many measurements (`measured` and `probe_failed` records, one
    /// per probe each interval) of each probe of each target the API's
    /// timeline keeps in memory beside `timeline`'s records, and as many
    /// `store_failed` records (the state is saved each interval); the audit
    /// log keeps all of them and `/metrics` counts them. `0` keeps none.
    /// Default 2.
    #[serde(default = "default_timeline_measurements")]
    pub timeline_measurements: usize,
    /// Who may call the operator API, by bearer token.
    #[serde(default)]
    pub operators: Vec<OperatorConfig>,
    /// The Alertmanager webhook receiver, served at `/webhook/alertmanager`.
    #[serde(default)]
    pub alertmanager: Option<ReceiverConfig>,
    /// Where notifications go.
    #[serde(default)]
    pub notifications: NotificationsConfig,
    /// Leader election among replicas, and state kept in ConfigMaps
    /// (needs the `k8s` feature). Absent: this replica acts on every
    /// target.
    #[serde(default)]
    pub leader_election: Option<LeaderElectionConfig>,
}

fn default_lease_name() -> String {
    "rollback-serve".to_owned()
}
fn default_lease() -> Duration {
    Duration::from_secs(15)
}
fn default_renew() -> Duration {
    Duration::from_secs(10)
}
fn default_lease_retry() -> Duration {
    Duration::from_secs(2)
}
fn default_shards() -> usize {
    1
}

/// `serve.leader_election`: the replicas elect, per shard of the targets,
/// one leader on a `coordination.k8s.io/v1` Lease (client-go's semantics);
/// only a shard's leader acts on its targets (rollbacks, marks,
/// notifications), the others serve the read-only API and metrics. State
/// lives in one ConfigMap per target (`NAME-state-…`), so a new leader
/// resumes what the old one was doing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LeaderElectionConfig {
    /// The namespace of the Leases and the state ConfigMaps.
    pub namespace: String,
    /// The Lease's name (with shards: `NAME-0`, `NAME-1`, …); also the
    /// prefix of the state ConfigMaps. Default `rollback-serve`.
    #[serde(default = "default_lease_name")]
    pub name: String,
    /// `leaseDurationSeconds`: how long the others wait before taking over
    /// a leader that stopped renewing. Whole seconds. Default 15s.
    #[serde(default = "default_lease", with = "duration")]
    pub lease: Duration,
    /// How long a leader keeps trying to renew before it stops acting
    /// (shorter than `lease`). Default 10s.
    #[serde(default = "default_renew", with = "duration")]
    pub renew: Duration,
    /// How often the leader renews and the others try to acquire. Default 2s.
    #[serde(default = "default_lease_retry", with = "duration")]
    pub retry: Duration,
    /// Shards: the targets are divided among this many Leases by
    /// rendezvous hashing, so several replicas share a large fleet. Default 1.
    #[serde(default = "default_shards")]
    pub shards: usize,
    /// This replica's identity in the Leases; each replica needs its own.
    /// Default: `POD_NAME`, else `HOSTNAME`, else the host name.
    #[serde(default)]
    pub identity: Option<String>,
    /// The kubeconfig to reach the API server with. Default: the in-cluster
    /// service account, else `KUBECONFIG` or `~/.kube/config`.
    #[serde(default)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context. Default: its current context.
    #[serde(default)]
    pub context: Option<String>,
}

impl LeaderElectionConfig {
    /// The Lease of each shard.
    pub fn lease_names(&self) -> Vec<String> {
        if self.shards == 1 {
            vec![self.name.clone()]
        } else {
            (0..self.shards)
                .map(|i| format!("{}-{i}", self.name))
                .collect()
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: default_listen(),
            poll_interval: None,
            reload_check: default_reload_check(),
            shutdown_grace: default_shutdown_grace(),
            timeline: default_timeline(),
            timeline_measurements: default_timeline_measurements(),
            operators: Vec::new(),
            alertmanager: None,
            notifications: NotificationsConfig::default(),
            leader_election: None,
        }
    }
}

/// One operator of the API: a token (from the environment: write
/// `token: "${NAME}"`), the actor it stands for in the audit log, and what
/// that actor may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OperatorConfig {
    /// The actor, as the audit log names it (`chatops-bot`, `alice@example.com`).
    pub actor: String,
    /// The bearer token the operator sends.
    pub token: Secret,
    /// The commands it may give. Empty (the default): it may only read.
    #[serde(default)]
    pub commands: Vec<CommandKind>,
    /// The targets it may give them on, by id; every target when absent.
    #[serde(default)]
    pub targets: Option<Vec<TargetId>>,
}

/// The notifications: channels, and how they are sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NotificationsConfig {
    /// Where they go.
    #[serde(default)]
    pub channels: Vec<ChannelConfig>,
    /// Notifications waiting per channel; one more is dropped (and counted,
    /// and audited), so a slow channel never holds up a decision. Default 256.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// How long one delivery may take. Default 10s.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// How failed deliveries are retried (transport errors, 408, 429, 5xx).
    /// Default 5 tries, waiting 1s, then twice that, up to 30s.
    #[serde(default = "default_retry")]
    pub retry: RetryPolicy,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            channels: Vec::new(),
            queue: default_queue(),
            timeout: default_timeout(),
            retry: default_retry(),
        }
    }
}

/// One channel: exactly one of `slack`, `teams` or `webhook`, each the URL
/// to post to (a secret: Slack and Teams URLs hold their credential).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ChannelConfig {
    /// The name metrics and audit records give the channel. Default: its
    /// kind (`slack`), with its position when there are several
    /// (`slack[1]`).
    #[serde(default)]
    pub name: Option<String>,
    /// A Slack incoming webhook URL.
    #[serde(default)]
    pub slack: Option<Secret>,
    /// A Microsoft Teams Workflows webhook URL ("Post to a channel when a
    /// webhook request is received"): an Adaptive Card is posted.
    #[serde(default)]
    pub teams: Option<Secret>,
    /// A URL that receives each notification as JSON.
    #[serde(default)]
    pub webhook: Option<Secret>,
    /// Authentication for `webhook`.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// Only these notifications; all six when absent.
    #[serde(default)]
    pub events: Option<Vec<NoticeKind>>,
}

/// A channel's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ChannelKind {
    Slack,
    Teams,
    Webhook,
}

impl ChannelKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Slack => "slack",
            ChannelKind::Teams => "teams",
            ChannelKind::Webhook => "webhook",
        }
    }
}

impl ChannelConfig {
    /// The kind and URL; `None` unless exactly one is set (checked by [`ServeConfig::from_options`]).
    pub(crate) fn kind(&self) -> Option<(ChannelKind, &Secret)> {
        let set: Vec<(ChannelKind, &Secret)> = [
            (ChannelKind::Slack, self.slack.as_ref()),
            (ChannelKind::Teams, self.teams.as_ref()),
            (ChannelKind::Webhook, self.webhook.as_ref()),
        ]
        .into_iter()
        .filter_map(|(k, u)| u.map(|u| (k, u)))
        .collect();
        match set.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }
}

impl ServeConfig {
    /// Read the `serve` section (absent: every default). Every problem is
    /// listed with its field, under the name of the watch file.
    pub fn from_options(
        options: Option<&Options>,
        source_name: &str,
    ) -> Result<Self, WatchFileError> {
        let fail = |problems: Vec<Problem>| WatchFileError {
            source_name: source_name.to_owned(),
            problems,
        };
        let Some(options) = options else {
            return Ok(ServeConfig::default());
        };
        let value = serde_json::Value::Object(options.clone());
        let config: ServeConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "serve".to_owned()
            } else {
                format!("serve.{path}")
            };
            fail(vec![Problem {
                field,
                message: e.inner().to_string(),
            }])
        })?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(fail(problems))
        }
    }

    fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut add = |field: String, message: String| out.push(Problem { field, message });
        let engine = Actor::engine();
        let reserved = [UNAUTHENTICATED, engine.as_str(), "alert"];
        let mut tokens: Vec<(usize, &str)> = Vec::new();
        for (i, o) in self.operators.iter().enumerate() {
            let field = format!("serve.operators[{i}]");
            if o.actor.trim().is_empty() {
                add(format!("{field}.actor"), "is empty".into());
            } else if reserved.contains(&o.actor.as_str()) {
                add(
                    format!("{field}.actor"),
                    format!(
                        "{:?} is the name the audit log gives the engine, alerts or unauthenticated requests; choose another",
                        o.actor
                    ),
                );
            }
            let token = o.token.expose();
            if token.trim().is_empty() {
                add(
                    format!("{field}.token"),
                    "is empty; write token: \"${NAME}\" with the token in the environment variable NAME".into(),
                );
            } else if let Some((j, _)) = tokens.iter().find(|(_, t)| *t == token) {
                add(
                    format!("{field}.token"),
                    format!(
                        "the same token as serve.operators[{j}]: each token must name one actor"
                    ),
                );
            } else {
                tokens.push((i, token));
            }
            if matches!(&o.targets, Some(t) if t.is_empty()) {
                add(
                    format!("{field}.targets"),
                    "is empty: leave it out for every target".into(),
                );
            }
        }
        if self.timeline > 10_000 {
            add(
                "serve.timeline".into(),
                format!(
                    "{} records per target; at most 10000 are kept in memory (the audit log keeps all)",
                    self.timeline
                ),
            );
        }
        if self.timeline_measurements > 10_000 {
            add(
                "serve.timeline_measurements".into(),
                format!(
                    "{} measurements per probe of each target; at most 10000 are kept in memory (the audit log keeps all)",
                    self.timeline_measurements
                ),
            );
        }
        if matches!(self.poll_interval, Some(d) if d < Duration::from_millis(10)) {
            add("serve.poll_interval".into(), "must be at least 10ms".into());
        }
        let n = &self.notifications;
        if n.queue == 0 {
            add(
                "serve.notifications.queue".into(),
                "must be at least 1".into(),
            );
        }
        if n.timeout.is_zero() {
            add(
                "serve.notifications.timeout".into(),
                "must be more than zero".into(),
            );
        }
        if let Err((field, why)) = n.retry.validate() {
            add(format!("serve.notifications.retry.{field}"), why);
        }
        if let Some(l) = &self.leader_election {
            let f = "serve.leader_election";
            if l.lease.is_zero() || l.lease.subsec_nanos() != 0 {
                add(
                    format!("{f}.lease"),
                    "must be whole seconds, at least 1s (leaseDurationSeconds)".into(),
                );
            } else if l.renew >= l.lease {
                add(
                    format!("{f}.renew"),
                    format!(
                        "must be shorter than lease ({})",
                        rollback_core::time::format_duration(l.lease)
                    ),
                );
            } else if l.retry.is_zero() || l.retry.mul_f64(1.2) >= l.renew {
                add(
                    format!("{f}.retry"),
                    "must be more than zero and, times 1.2 (the jitter), shorter than renew".into(),
                );
            }
            if !(1..=1000).contains(&l.shards) {
                add(format!("{f}.shards"), "must be between 1 and 1000".into());
            }
            let dns = |s: &str| {
                !s.is_empty()
                    && s.len() <= 63
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !s.starts_with('-')
                    && !s.ends_with('-')
            };
            if !dns(&l.namespace) {
                add(
                    format!("{f}.namespace"),
                    format!(
                        "{:?} is not a namespace name (lowercase letters, digits and '-', at most 63)",
                        l.namespace
                    ),
                );
            }
            if !dns(&l.name) || l.name.len() > 40 {
                add(
                    format!("{f}.name"),
                    format!(
                        "{:?} is not a Lease name this server can use (lowercase letters, digits and '-', at most 40)",
                        l.name
                    ),
                );
            }
            if matches!(&l.identity, Some(i) if i.trim().is_empty()) {
                add(
                    format!("{f}.identity"),
                    "is empty: leave it out for the pod name".into(),
                );
            }
        }
        let mut names = BTreeSet::new();
        for (i, c) in n.channels.iter().enumerate() {
            let field = format!("serve.notifications.channels[{i}]");
            match c.kind() {
                None => add(
                    field.clone(),
                    "give exactly one of slack, teams or webhook (the URL to post to)".into(),
                ),
                Some((kind, url)) => {
                    let u = url.expose();
                    if !(u.starts_with("https://") || u.starts_with("http://")) {
                        add(
                            format!("{field}.{}", kind.as_str()),
                            "is not an http:// or https:// URL".into(),
                        );
                    }
                    if c.auth.is_some() && kind != ChannelKind::Webhook {
                        add(
                            format!("{field}.auth"),
                            format!(
                                "only a webhook takes auth; a {} URL holds its own credential",
                                kind.as_str()
                            ),
                        );
                    }
                }
            }
            if matches!(&c.events, Some(e) if e.is_empty()) {
                add(
                    format!("{field}.events"),
                    "is empty: leave it out for every notification".into(),
                );
            }
            let name = self.channel_name(i);
            if !names.insert(name.clone()) {
                add(
                    format!("{field}.name"),
                    format!("another channel is named {name:?}"),
                );
            }
        }
        out
    }

    /// How many records of each target the timeline keeps.
    pub(crate) fn timeline_capacity(&self) -> TimelineCapacity {
        TimelineCapacity {
            events: self.timeline,
            measurements: self.timeline_measurements,
        }
    }

    /// The name of channel `i`: its `name`, else its kind with its position
    /// among channels of that kind when there are several.
    pub(crate) fn channel_name(&self, i: usize) -> String {
        let channels = &self.notifications.channels;
        let c = &channels[i];
        if let Some(name) = &c.name {
            return name.clone();
        }
        let Some((kind, _)) = c.kind() else {
            return format!("channels[{i}]");
        };
        let same: Vec<usize> = channels
            .iter()
            .enumerate()
            .filter(|(_, o)| o.name.is_none() && o.kind().map(|k| k.0) == Some(kind))
            .map(|(j, _)| j)
            .collect();
        if same.len() == 1 {
            kind.as_str().to_owned()
        } else {
            let pos = same.iter().position(|j| *j == i).unwrap_or(0);
            format!("{}[{pos}]", kind.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<ServeConfig, WatchFileError> {
        let v: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
        ServeConfig::from_options(v.as_object(), "w.yaml")
    }

    #[test]
    fn defaults_without_a_section() {
        let c = ServeConfig::from_options(None, "w.yaml").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9095");
        assert_eq!(c.reload_check, Duration::from_secs(5));
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
        assert_eq!(c.timeline, 50);
        assert_eq!(c.timeline_measurements, 2);
        assert!(c.operators.is_empty() && c.alertmanager.is_none());
        assert_eq!(c.notifications.retry.max_attempts, 5);
    }

    #[test]
    fn a_full_section_reads() {
        let c = parse(
            r#"
listen: 0.0.0.0:9000
poll_interval: 10s
operators:
  - {actor: bot, token: t1, commands: [pause, rollback], targets: ["k8s:shop/web"]}
  - {actor: dash, token: t2}
alertmanager:
  bearer_token: am
  routes: [{matchers: ['alertname="X"'], target: "k8s:{namespace}/{deployment}"}]
notifications:
  channels:
    - slack: https://hooks.slack.com/services/T/B/X
    - slack: https://hooks.slack.com/services/T/B/Y
      events: [escalated]
    - teams: https://example.invalid/workflows/1
    - webhook: http://127.0.0.1:1/hook
      name: pager
      auth: {bearer: {token: h}}
"#,
        )
        .unwrap();
        assert_eq!(c.poll_interval, Some(Duration::from_secs(10)));
        assert_eq!(
            c.operators[0].commands,
            [CommandKind::Pause, CommandKind::Rollback]
        );
        let names: Vec<String> = (0..4).map(|i| c.channel_name(i)).collect();
        assert_eq!(names, ["slack[0]", "slack[1]", "teams", "pager"]);
        assert!(
            !format!("{c:?}").contains("hooks.slack.com"),
            "URLs are secrets"
        );
    }

    #[test]
    fn every_problem_names_its_field() {
        let e = parse("operators: [{actor: bot, token: t, comands: [pause]}]").unwrap_err();
        assert_eq!(e.problems[0].field, "serve.operators[0].comands");
        assert!(
            e.problems[0].message.contains("unknown field `comands`"),
            "{e}"
        );
        let e = parse("operators: [{actor: bot, token: t, commands: [reboot]}]").unwrap_err();
        assert_eq!(e.problems[0].field, "serve.operators[0].commands[0]");
        let e = parse("listen: nowhere").unwrap_err();
        assert_eq!(e.problems[0].field, "serve.listen");
        let e = parse("timeline_measurements: 20000").unwrap_err();
        assert_eq!(e.problems[0].field, "serve.timeline_measurements");
        assert!(e.problems[0].message.contains("at most 10000"), "{e}");
        let c = parse("timeline: 0\ntimeline_measurements: 0").unwrap();
        assert_eq!((c.timeline, c.timeline_measurements), (0, 0));
        let e = parse(
            r#"
operators:
  - {actor: bot, token: same}
  - {actor: rollback-engine, token: same}
  - {actor: x, token: " ", targets: []}
notifications:
  queue: 0
  channels:
    - {slack: "https://a", teams: "https://b"}
    - {teams: "ftp://x", auth: {bearer: {token: t}}}
    - {webhook: "http://x", events: []}
"#,
        )
        .unwrap_err();
        let fields: Vec<&str> = e.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "serve.operators[1].actor",
                "serve.operators[1].token",
                "serve.operators[2].token",
                "serve.operators[2].targets",
                "serve.notifications.queue",
                "serve.notifications.channels[0]",
                "serve.notifications.channels[1].teams",
                "serve.notifications.channels[1].auth",
                "serve.notifications.channels[2].events",
            ],
            "{e}"
        );
        assert!(
            e.to_string().starts_with("9 problems in watch file w.yaml"),
            "{e}"
        );
    }
}
