//! `/metrics`: the server's metrics in the Prometheus text format (or
//! OpenMetrics, when the scraper asks for it), with the `prometheus-client`
//! crate.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `rollback_rollbacks_total` | counter | `target`, `outcome` (`succeeded`, `failed`) | rollbacks carried out, by how they ended |
//! | `rollback_decisions_total` | counter | `decision` (`rollback`, `await_approval`, `promote`, `complete`, `escalate`, `freeze`, `would_roll_back`) | the machine's decisions |
//! | `rollback_measurements_total` | counter | `probe`, `verdict` (`pass`, `fail`, `inconclusive`, `not_judged`) | measurements taken |
//! | `rollback_probe_errors_total` | counter | `probe` | measurements a probe could not take |
//! | `rollback_target_phase` | gauge | `target`, `phase` | 1 for each target's current phase (one series per target) |
//! | `rollback_duration_seconds` | histogram | | from a rollback's first backend call until the target converged, or the rollback failed |
//! | `rollback_breach_to_call_seconds` | histogram | | from the decision a breach made until the rollback's first backend call (an approval's wait included) |
//! | `rollback_alerts_total` | counter | `outcome` (`accepted`, `duplicate`, `ignored`, `no_watch`) | Alertmanager alerts handed to the engine |
//! | `rollback_api_commands_total` | counter | `command`, `outcome` (`accepted`, `rejected`, `denied`, `unauthenticated`, `not_found`, `failed`) | operator commands through the API |
//! | `rollback_notifications_total` | counter | `channel`, `outcome` (`sent`, `failed`, `dropped`) | notifications, by how their delivery ended |
//! | `rollback_reloads_total` | counter | `outcome` (`succeeded`, `failed`) | reloads of the watch file |
//! | `rollback_targets` | gauge | | targets supervised |
//! | `rollback_leader` | gauge | `shard` | with `serve.leader_election`: 1 while this replica leads the shard |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use rollback_core::machine::{DecisionKind, PhaseKind};

/// The `Content-Type` of the Prometheus text format served by default.
pub(crate) const TEXT_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// The `Content-Type` of OpenMetrics, served when the scraper accepts it.
pub(crate) const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetOutcome {
    target: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeVerdict {
    probe: String,
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabel {
    probe: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetPhase {
    target: String,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelOutcome {
    channel: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandOutcome {
    command: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabel {
    shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// The server's metrics. Updating one is a hash-map look-up and an atomic
/// add: cheap enough for the engine's audit path.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    rollbacks: Family<TargetOutcome, Counter>,
    decisions: Family<DecisionLabel, Counter>,
    measurements: Family<ProbeVerdict, Counter>,
    probe_errors: Family<ProbeLabel, Counter>,
    phase: Family<TargetPhase, Gauge>,
    rollback_duration: Histogram,
    breach_to_call: Histogram,
    measurement_delay: Histogram,
    alerts: Family<Outcome, Counter>,
    commands: Family<CommandOutcome, Counter>,
    notifications: Family<ChannelOutcome, Counter>,
    reloads: Family<Outcome, Counter>,
    targets: Gauge,
    leader: Family<ShardLabel, Gauge>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("rollback");
        let rollbacks = Family::<TargetOutcome, Counter>::default();
        registry.register(
            "rollbacks",
            "Rollbacks carried out, by target and how they ended (succeeded: converged; failed: the backend refused or it did not converge)",
            rollbacks.clone(),
        );
        let decisions = Family::<DecisionLabel, Counter>::default();
        registry.register(
            "decisions",
            "Decisions of the decision machine, by kind",
            decisions.clone(),
        );
        let measurements = Family::<ProbeVerdict, Counter>::default();
        registry.register(
            "measurements",
            "Measurements taken, by probe and verdict (not_judged: taken while the watch was not judging)",
            measurements.clone(),
        );
        let probe_errors = Family::<ProbeLabel, Counter>::default();
        registry.register(
            "probe_errors",
            "Measurements a probe could not take, by probe",
            probe_errors.clone(),
        );
        let phase = Family::<TargetPhase, Gauge>::default();
        registry.register(
            "target_phase",
            "1 for the current phase of each supervised target's watch",
            phase.clone(),
        );
        let rollback_duration = Histogram::new([
            0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
        ]);
        registry.register_with_unit(
            "duration",
            "Rollbacks, from the first backend call until the target converged or the rollback failed",
            Unit::Seconds,
            rollback_duration.clone(),
        );
        let breach_to_call = Histogram::new([
            0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
        ]);
        registry.register_with_unit(
            "breach_to_call",
            "From the decision a breach made until the rollback's first backend call (a manual approval's wait included)",
            Unit::Seconds,
            breach_to_call.clone(),
        );
        let measurement_delay = Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register_with_unit(
            "measurement_delay",
            "Measurements, from the time they were due (the schedule's, with its jitter) until they were judged: how far behind the engine is",
            Unit::Seconds,
            measurement_delay.clone(),
        );
        let alerts = Family::<Outcome, Counter>::default();
        registry.register(
            "alerts",
            "Alertmanager alerts handed to the engine, by what came of them",
            alerts.clone(),
        );
        let commands = Family::<CommandOutcome, Counter>::default();
        registry.register(
            "api_commands",
            "Operator commands through the API, by command and outcome",
            commands.clone(),
        );
        let notifications = Family::<ChannelOutcome, Counter>::default();
        registry.register(
            "notifications",
            "Notifications by channel and how their delivery ended (dropped: the channel's queue was full)",
            notifications.clone(),
        );
        let reloads = Family::<Outcome, Counter>::default();
        registry.register(
            "reloads",
            "Reloads of the watch file (SIGHUP or a change on disk), by outcome",
            reloads.clone(),
        );
        let targets = Gauge::default();
        registry.register("targets", "Targets supervised", targets.clone());
        let leader = Family::<ShardLabel, Gauge>::default();
        registry.register(
            "leader",
            "1 while this replica leads the shard (serve.leader_election), else 0",
            leader.clone(),
        );
        Metrics {
            registry,
            rollbacks,
            decisions,
            measurements,
            probe_errors,
            phase,
            rollback_duration,
            breach_to_call,
            measurement_delay,
            alerts,
            commands,
            notifications,
            reloads,
            targets,
            leader,
        }
    }

    /// The metrics in the Prometheus text format (0.0.4), or OpenMetrics.
    #[cfg(test)]
    pub(crate) fn encode(&self, openmetrics: bool) -> String {
        let mut out = String::new();
        if let Err(e) = self.encode_to(&mut out, openmetrics) {
            // Writing to a String fails only on a bug of the encoder.
            panic!("the metrics could not be encoded: {e}");
        }
        out
    }

    /// Write the metrics to `out` (the server's chunked answer).
    pub(crate) fn encode_to(
        &self,
        out: &mut impl std::fmt::Write,
        openmetrics: bool,
    ) -> std::fmt::Result {
        if openmetrics {
            prometheus_client::encoding::text::encode(out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(out, &self.registry)
        }
    }

    pub(crate) fn rollback_ended(&self, target: &str, succeeded: bool) {
        self.rollbacks
            .get_or_create(&TargetOutcome {
                target: target.to_owned(),
                outcome: if succeeded { "succeeded" } else { "failed" },
            })
            .inc();
    }

    pub(crate) fn decision(&self, kind: DecisionKind) {
        self.decisions
            .get_or_create(&DecisionLabel {
                decision: kind.as_str(),
            })
            .inc();
    }

    pub(crate) fn measurement(&self, probe: &str, verdict: &'static str) {
        // A look-up by borrowed label set would avoid the allocation, but
        // prometheus-client's families take their own key type.
        self.measurements
            .get_or_create(&ProbeVerdict {
                probe: probe.to_owned(),
                verdict,
            })
            .inc();
    }

    pub(crate) fn probe_error(&self, probe: &str) {
        self.probe_errors
            .get_or_create(&ProbeLabel {
                probe: probe.to_owned(),
            })
            .inc();
    }

    /// Show `now` as the target's phase (and no other).
    pub(crate) fn phase(&self, target: &str, before: Option<PhaseKind>, now: PhaseKind) {
        if let Some(before) = before.filter(|b| *b != now) {
            self.phase.remove(&TargetPhase {
                target: target.to_owned(),
                phase: before.as_str(),
            });
        }
        self.phase
            .get_or_create(&TargetPhase {
                target: target.to_owned(),
                phase: now.as_str(),
            })
            .set(1);
    }

    /// The target is no longer supervised: its phase series goes.
    pub(crate) fn forget_phase(&self, target: &str, phase: PhaseKind) {
        self.phase.remove(&TargetPhase {
            target: target.to_owned(),
            phase: phase.as_str(),
        });
    }

    pub(crate) fn rollback_duration(&self, seconds: f64) {
        self.rollback_duration.observe(seconds);
    }

    pub(crate) fn breach_to_call(&self, seconds: f64) {
        self.breach_to_call.observe(seconds);
    }

    pub(crate) fn measurement_delay(&self, seconds: f64) {
        self.measurement_delay.observe(seconds);
    }

    pub(crate) fn alert(&self, outcome: &'static str) {
        self.alerts.get_or_create(&Outcome { outcome }).inc();
    }

    pub(crate) fn command(&self, command: &'static str, outcome: &'static str) {
        self.commands
            .get_or_create(&CommandOutcome { command, outcome })
            .inc();
    }

    pub(crate) fn notification(&self, channel: &str, outcome: &'static str) {
        self.notifications
            .get_or_create(&ChannelOutcome {
                channel: channel.to_owned(),
                outcome,
            })
            .inc();
    }

    pub(crate) fn reload(&self, succeeded: bool) {
        self.reloads
            .get_or_create(&Outcome {
                outcome: if succeeded { "succeeded" } else { "failed" },
            })
            .inc();
    }

    pub(crate) fn targets(&self, n: usize) {
        self.targets.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Whether this replica leads `shard`.
    pub(crate) fn leading(&self, shard: usize, yes: bool) {
        self.leader
            .get_or_create(&ShardLabel {
                shard: shard.to_string(),
            })
            .set(i64::from(yes));
    }
}
