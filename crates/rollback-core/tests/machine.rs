//! The decision machine: whole transition traces, and properties of its invariants.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use rollback_core::machine::{Candidate, Decision, Event, Machine, PhaseKind, Step, Watch};
use rollback_core::policy::{Approval, ProbePolicy};
use rollback_core::*;

fn policy(extra: &str) -> Arc<Policy> {
    let bake = if extra.contains("bake_time") {
        ""
    } else {
        "bake_time: 1m\n"
    };
    let yaml = format!(
        "interval: 10s\n{bake}verify: 30s\n{extra}\nprobes: [{{name: err, success: '< 0.01'}}, {{name: lat, success: '<= 100'}}]"
    );
    Arc::new(Policy::from_yaml(&yaml).unwrap())
}

fn watch() -> Watch {
    Watch::new(
        "shop/checkout",
        "v3",
        vec![
            Candidate::new("v3", RevisionHealth::Unknown),
            Candidate::new("v2", RevisionHealth::Bad),
            Candidate::new("v1", RevisionHealth::Good),
        ],
    )
}

fn t(s: i64) -> Timestamp {
    Timestamp::from_millis(s * 1000)
}

/// Feeds events and writes one line per step: `time event => decision [from->to]`.
struct Trace {
    m: Machine,
    lines: Vec<String>,
}

impl Trace {
    fn new(p: Arc<Policy>, w: Watch) -> Self {
        Trace {
            m: Machine::new(p, w, t(0)),
            lines: Vec::new(),
        }
    }

    fn feed(&mut self, at: i64, e: Event) -> Step {
        let label = match &e {
            Event::Tick => "tick".to_owned(),
            Event::Measured { probe, measurement } => format!(
                "m{probe}={}",
                measurement.value.map_or("none".into(), |v| v.to_string())
            ),
            Event::ProbeError { probe } => format!("err{probe}"),
            Event::Trigger { key, .. } => format!("alert {key}"),
            Event::Command { command, actor } => format!("{actor}:{command}"),
            Event::RollbackSucceeded => "rollback ok".into(),
            Event::RollbackFailed { .. } => "rollback failed".into(),
            other => format!("{other:?}"),
        };
        let step = self.m.handle(t(at), e);
        let mut line = format!("{at} {label}");
        if let Some(d) = &step.decision {
            line.push_str(&format!(" => {}", d.kind()));
            if let Decision::Rollback { to, .. } | Decision::AwaitApproval { to, .. } = d {
                line.push_str(&format!(" {to}"));
            }
        }
        if let Some((a, b)) = step.transition {
            line.push_str(&format!(" [{a}->{b}]"));
        }
        self.lines.push(line);
        step
    }

    /// Tick at `at`, and when it asks to measure, feed both probes.
    fn round(&mut self, at: i64, err: Option<f64>, lat: Option<f64>) {
        let s = self.feed(at, Event::Tick);
        if s.decision == Some(Decision::Measure) {
            for (i, v) in [err, lat].into_iter().enumerate() {
                let _ = self.feed(
                    at,
                    Event::Measured {
                        probe: i,
                        measurement: Measurement {
                            value: v,
                            baseline: None,
                            detail: None,
                            samples: None,
                        },
                    },
                );
            }
        }
    }
}

#[test]
fn breach_rollback_verify_trace() {
    let mut tr = Trace::new(policy("failure_limit: 1"), watch());
    tr.round(0, Some(0.001), Some(50.0));
    tr.round(10, Some(0.02), Some(50.0));
    tr.round(20, Some(0.03), Some(50.0));
    let _ = tr.feed(21, Event::RollbackSucceeded);
    tr.round(31, Some(0.001), Some(40.0));
    tr.round(41, Some(0.001), Some(40.0));
    tr.round(51, Some(0.001), Some(40.0));
    let _ = tr.feed(51, Event::Tick);
    assert_eq!(
        tr.lines,
        [
            "0 tick => measure",
            "0 m0=0.001",
            "0 m1=50",
            "10 tick => measure",
            "10 m0=0.02",
            "10 m1=50",
            "20 tick => measure",
            "20 m0=0.03 => rollback v1 [observing->rolling_back]",
            "20 m1=50", // recorded, no longer judged
            "21 rollback ok [rolling_back->verifying]",
            "31 tick => measure",
            "31 m0=0.001",
            "31 m1=40",
            "41 tick => measure",
            "41 m0=0.001",
            "41 m1=40",
            "51 tick => measure",
            "51 m0=0.001",
            "51 m1=40",
            "51 tick => complete [verifying->rolled_back]",
        ]
    );
    assert!(matches!(tr.m.phase(), Phase::RolledBack { to, .. } if to.as_str() == "v1"));
    assert!(
        tr.m.state()
            .watch
            .history
            .iter()
            .any(|c| c.id.as_str() == "v3" && c.health == RevisionHealth::Bad)
    );
}

#[test]
fn healthy_bake_promotes_after_the_last_scheduled_measurement() {
    let mut tr = Trace::new(policy(""), watch());
    for s in (0..=60).step_by(10) {
        tr.round(s, Some(0.001), Some(10.0));
    }
    let _ = tr.feed(60, Event::Tick);
    assert_eq!(
        tr.lines.last().unwrap(),
        "60 tick => promote [observing->promoted]"
    );
    assert_eq!(
        tr.lines
            .iter()
            .filter(|l| l.ends_with("=> measure"))
            .count(),
        7
    );
}

#[test]
fn consecutive_failure_limit_is_hysteresis() {
    let mut tr = Trace::new(policy("consecutive_failure_limit: 2"), watch());
    let errs = [0.5, 0.5, 0.001, 0.5, 0.5, 0.001, 0.5, 0.5, 0.5];
    for (i, e) in errs.iter().enumerate() {
        tr.round(i as i64 * 10, Some(*e), Some(1.0));
        if i < 4 {
            assert_eq!(
                tr.m.phase().kind(),
                PhaseKind::Observing,
                "flapping never breaches"
            );
        }
    }
    // The bake time (60s) ends first: failures within the limit do not stop a promotion.
    assert_eq!(tr.m.phase().kind(), PhaseKind::Promoted);
    let mut tr = Trace::new(
        policy("bake_time: 5m\nconsecutive_failure_limit: 2"),
        watch(),
    );
    for (i, e) in errs.iter().enumerate() {
        tr.round(i as i64 * 10, Some(*e), Some(1.0));
    }
    assert_eq!(
        tr.lines[tr.lines.len() - 2],
        "80 m0=0.5 => rollback v1 [observing->rolling_back]"
    );
}

#[test]
fn never_rolls_back_to_a_bad_revision_and_falls_back_to_previous() {
    let w = Watch::new(
        "t",
        "v3",
        vec![
            Candidate::new("v3", RevisionHealth::Unknown),
            Candidate::new("v2", RevisionHealth::Bad),
            Candidate::new("v1", RevisionHealth::Unknown),
        ],
    );
    let mut tr = Trace::new(policy(""), w);
    tr.round(0, Some(1.0), Some(1.0));
    assert!(
        tr.lines
            .iter()
            .any(|l| l.ends_with("rollback v1 [observing->rolling_back]")),
        "{:?}",
        tr.lines
    );

    let w = Watch::new(
        "t",
        "v3",
        vec![
            Candidate::new("v3", RevisionHealth::Unknown),
            Candidate::new("v2", RevisionHealth::Bad),
        ],
    );
    let mut tr = Trace::new(policy(""), w);
    tr.round(0, Some(1.0), Some(1.0));
    let Phase::Escalated { reason, .. } = tr.m.phase() else {
        panic!()
    };
    assert!(reason.contains("no revision to roll back to"), "{reason}");
}

#[test]
fn irreversible_changes_freeze_unless_the_policy_says_rollback() {
    let mut w = watch();
    w.irreversible = true;
    let mut tr = Trace::new(policy(""), w.clone());
    tr.round(0, Some(1.0), Some(1.0));
    assert_eq!(tr.m.phase().kind(), PhaseKind::Frozen);
    let mut tr = Trace::new(policy("on_irreversible: rollback"), w);
    tr.round(0, Some(1.0), Some(1.0));
    assert_eq!(tr.m.phase().kind(), PhaseKind::RollingBack);
}

#[test]
fn cooldown_and_max_rollbacks_stop_loops() {
    let mut w = watch();
    w.rollbacks = vec![t(-60)];
    let mut tr = Trace::new(policy("cooldown: 5m"), w.clone());
    tr.round(0, Some(1.0), Some(1.0));
    let Phase::Escalated { reason, .. } = tr.m.phase() else {
        panic!("{:?}", tr.m.phase())
    };
    assert!(reason.contains("within the cooldown of 5m"), "{reason}");

    w.rollbacks = vec![t(-7200), t(-3600)];
    let mut tr = Trace::new(policy("max_rollbacks: 2"), w.clone());
    tr.round(0, Some(1.0), Some(1.0));
    let Phase::Escalated { reason, .. } = tr.m.phase() else {
        panic!("{:?}", tr.m.phase())
    };
    assert!(
        reason.contains("already rolled back 2 times within 1day"),
        "{reason}"
    );

    let mut tr = Trace::new(policy("max_rollbacks: 2\nmax_rollbacks_window: 1h"), w);
    tr.round(0, Some(1.0), Some(1.0));
    assert_eq!(
        tr.m.phase().kind(),
        PhaseKind::RollingBack,
        "only one rollback inside the 1h window"
    );
}

#[test]
fn pause_keeps_the_bake_time_left_and_manual_commands_are_checked() {
    let mut tr = Trace::new(policy(""), watch());
    tr.round(0, Some(0.001), Some(1.0));
    let op = Actor::new("alice");
    let cmd = |c: Command| Event::Command {
        command: c,
        actor: op.clone(),
    };
    let _ = tr.feed(5, cmd(Command::Pause));
    assert_eq!(tr.m.next_deadline(), None);
    let s = tr.feed(6, cmd(Command::Approve));
    assert!(
        matches!(s.decision, Some(Decision::Rejected { ref reason, .. }) if reason == "no rollback is waiting for approval")
    );
    let _ = tr.feed(1000, cmd(Command::Resume));
    let Phase::Observing { bake_until } = tr.m.phase() else {
        panic!()
    };
    assert_eq!(
        *bake_until,
        t(1055),
        "55s of bake time were left at the pause"
    );
    let s = tr.feed(
        1001,
        cmd(Command::Rollback {
            to: Some("v2".into()),
        }),
    );
    assert!(
        matches!(s.decision, Some(Decision::Rejected { ref reason, .. }) if reason == "revision v2 is marked bad")
    );
    let s = tr.feed(
        1001,
        cmd(Command::Rollback {
            to: Some("v9".into()),
        }),
    );
    assert!(
        matches!(s.decision, Some(Decision::Rejected { ref reason, .. }) if reason.contains("not in the history"))
    );
    let s = tr.feed(1002, cmd(Command::Rollback { to: None }));
    assert!(
        matches!(s.decision, Some(Decision::Rollback { ref to, ref actor, .. }) if to.as_str() == "v1" && actor == &op)
    );
    let s = tr.feed(1003, cmd(Command::Rollback { to: None }));
    assert!(
        matches!(s.decision, Some(Decision::Rejected { ref reason, .. }) if reason == "a rollback is in progress")
    );
}

#[test]
fn failed_verification_and_failed_rollbacks_escalate() {
    let mut tr = Trace::new(policy(""), watch());
    tr.round(0, Some(1.0), Some(1.0));
    let _ = tr.feed(1, Event::RollbackSucceeded);
    tr.round(11, Some(1.0), Some(1.0));
    let Phase::Escalated { reason, .. } = tr.m.phase() else {
        panic!("{:?}", tr.m.phase())
    };
    assert!(
        reason.starts_with("verification of restored revision v1 failed: probe err failed 1 times"),
        "{reason}"
    );
    assert!(
        tr.m.state()
            .watch
            .history
            .iter()
            .any(|c| c.id.as_str() == "v1" && c.health == RevisionHealth::Bad)
    );

    let mut tr = Trace::new(policy(""), watch());
    tr.round(0, Some(1.0), Some(1.0));
    let _ = tr.feed(
        1,
        Event::RollbackFailed {
            error: "403 forbidden".into(),
        },
    );
    let Phase::Escalated { reason, .. } = tr.m.phase() else {
        panic!()
    };
    assert_eq!(reason, "rollback to v1 failed: 403 forbidden");
}

#[test]
fn no_data_is_never_a_silent_pass() {
    // Default: no data is inconclusive; past inconclusive_limit, humans judge.
    let mut tr = Trace::new(policy("inconclusive_limit: 2"), watch());
    for s in [0, 10, 20] {
        tr.round(s, None, Some(1.0));
    }
    let Phase::Escalated { reason, .. } = tr.m.phase() else {
        panic!("{:?}", tr.m.phase())
    };
    assert!(reason.contains("probe err was inconclusive 3 times (inconclusive_limit 2); last measurement had no data"), "{reason}");
    // A bake time without a single pass is not a promotion.
    let mut tr = Trace::new(policy("inconclusive_limit: 100"), watch());
    for s in (0..=60).step_by(10) {
        tr.round(s, None, Some(1.0));
    }
    let _ = tr.feed(60, Event::Tick);
    let Phase::Escalated { reason, .. } = tr.m.phase() else {
        panic!("{:?}", tr.m.phase())
    };
    assert!(
        reason.contains("without a single passing measurement of probe err"),
        "{reason}"
    );
    // no_data: fail counts it as a failure.
    let mut tr = Trace::new(policy("no_data: fail"), watch());
    tr.round(0, None, Some(1.0));
    assert_eq!(tr.m.phase().kind(), PhaseKind::RollingBack);
    // NaN is inconclusive even with no_data: pass.
    let mut tr = Trace::new(policy("no_data: pass\ninconclusive_limit: 0"), watch());
    tr.round(0, Some(f64::NAN), Some(1.0));
    assert_eq!(tr.m.phase().kind(), PhaseKind::Escalated);
}

#[test]
fn probe_errors_escalate_past_the_consecutive_error_limit() {
    let mut tr = Trace::new(policy("consecutive_error_limit: 2"), watch());
    for s in [0, 10, 20] {
        let _ = tr.feed(s, Event::Tick);
        let _ = tr.feed(s, Event::ProbeError { probe: 1 });
    }
    let Phase::Escalated { reason, .. } = tr.m.phase() else {
        panic!("{:?}", tr.m.phase())
    };
    assert!(
        reason.contains("probe lat could not be measured in a row 3 times"),
        "{reason}"
    );
}

#[test]
fn a_late_driver_skips_missed_measurements() {
    let mut tr = Trace::new(policy("bake_time: 10m"), watch());
    tr.round(0, Some(0.001), Some(1.0));
    tr.round(95, Some(0.001), Some(1.0));
    assert_eq!(tr.m.next_deadline(), Some(t(100)));
}

// ---------------------------------------------------------------- properties

#[derive(Debug, Clone)]
enum Ev {
    Wait(u16),
    Measure(usize, u8),
    Error(usize),
    Alert(u8),
    Cmd(u8),
    RollbackOk,
    RollbackFailed,
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        3 => (1u16..40).prop_map(Ev::Wait),
        6 => (0usize..2, 0u8..5).prop_map(|(p, v)| Ev::Measure(p, v)),
        1 => (0usize..2).prop_map(Ev::Error),
        1 => (0u8..3).prop_map(Ev::Alert),
        1 => (0u8..6).prop_map(Ev::Cmd),
        1 => Just(Ev::RollbackOk),
        1 => Just(Ev::RollbackFailed),
    ]
}

fn policy_strategy() -> impl Strategy<Value = Arc<Policy>> {
    (
        any::<bool>(),
        any::<bool>(),
        0u32..3,
        proptest::option::of(0u32..3),
        0u32..3,
        any::<bool>(),
    )
        .prop_map(|(dry_run, manual, fl, cfl, il, verify)| {
            let mut p = Policy::with_probes(vec![
                ProbePolicy::new("err")
                    .success("< 0.01".parse().unwrap())
                    .failure(">= 0.5".parse().unwrap()),
                ProbePolicy::new("lat").success("<= 100".parse().unwrap()),
            ]);
            p.interval = Duration::from_secs(10);
            p.bake_time = Duration::from_secs(120);
            p.dry_run = dry_run;
            p.approval = if manual {
                Approval::Manual
            } else {
                Approval::Auto
            };
            p.failure_limit = Some(fl);
            p.consecutive_failure_limit = cfl;
            p.inconclusive_limit = il;
            p.verify = if verify {
                Duration::from_secs(30)
            } else {
                Duration::ZERO
            };
            p.validate().unwrap();
            Arc::new(p)
        })
}

const VALUES: [Option<f64>; 5] = [Some(0.001), Some(0.2), Some(0.9), None, Some(f64::NAN)];

fn to_event(e: &Ev, clock: &mut i64) -> Event {
    match e {
        Ev::Wait(s) => {
            *clock += i64::from(*s);
            Event::Tick
        }
        Ev::Measure(p, v) => Event::Measured {
            probe: *p,
            measurement: Measurement {
                value: VALUES[*v as usize],
                baseline: None,
                detail: None,
                samples: None,
            },
        },
        Ev::Error(p) => Event::ProbeError { probe: *p },
        Ev::Alert(k) => Event::Trigger {
            key: format!("alert-{k}"),
            summary: "HighErrorRate".into(),
        },
        Ev::Cmd(c) => Event::Command {
            command: match c {
                0 => Command::Pause,
                1 => Command::Resume,
                2 => Command::Approve,
                3 => Command::Promote,
                4 => Command::Rollback { to: None },
                _ => Command::Rollback {
                    to: Some("v2".into()),
                },
            },
            actor: Actor::new("op"),
        },
        Ev::RollbackOk => Event::RollbackSucceeded,
        Ev::RollbackFailed => Event::RollbackFailed {
            error: "boom".into(),
        },
    }
}

fn run(policy: Arc<Policy>, events: &[Ev]) -> Vec<(Event, Step, PhaseKind, PhaseKind)> {
    let mut m = Machine::new(policy, watch(), t(0));
    let mut clock = 0;
    events
        .iter()
        .map(|e| {
            let before = m.phase().kind();
            let ev = to_event(e, &mut clock);
            let step = m.handle(t(clock), ev.clone());
            (ev, step, before, m.phase().kind())
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn one_breach_yields_at_most_one_rollback(p in policy_strategy(), events in prop::collection::vec(ev(), 0..80)) {
        let operator_rollbacks = events.iter().filter(|e| matches!(e, Ev::Cmd(4 | 5))).count();
        let rollbacks = run(p, &events).iter().filter(|(_, s, ..)| matches!(s.decision, Some(Decision::Rollback { .. }))).count();
        prop_assert!(rollbacks <= 1 + operator_rollbacks);
        if operator_rollbacks == 0 {
            prop_assert!(rollbacks <= 1);
        }
    }

    #[test]
    fn never_rolls_back_to_a_bad_or_the_current_revision(p in policy_strategy(), events in prop::collection::vec(ev(), 0..80)) {
        for (_, s, ..) in run(p, &events) {
            let to = match &s.decision {
                Some(Decision::Rollback { to, .. } | Decision::AwaitApproval { to, .. }) => Some(to),
                Some(Decision::WouldRollBack { to, .. }) => to.as_ref(),
                _ => None,
            };
            if let Some(to) = to {
                prop_assert_ne!(to.as_str(), "v3", "the watched revision");
                prop_assert_ne!(to.as_str(), "v2", "marked bad");
            }
        }
    }

    #[test]
    fn terminal_states_absorb_everything_but_commands(p in policy_strategy(), events in prop::collection::vec(ev(), 0..80)) {
        for (ev, s, before, after) in run(p, &events) {
            if before.is_terminal() && !matches!(ev, Event::Command { .. }) {
                prop_assert_eq!(s.decision, None);
                prop_assert_eq!(s.transition, None);
                prop_assert_eq!(before, after);
            }
        }
    }

    #[test]
    fn dry_run_never_acts_and_manual_approval_needs_an_approver(p in policy_strategy(), events in prop::collection::vec(ev(), 0..80)) {
        for (ev, s, ..) in run(p.clone(), &events) {
            if let Some(Decision::Rollback { .. }) = s.decision {
                prop_assert!(!p.dry_run, "dry run emitted a rollback");
                if p.approval == Approval::Manual {
                    prop_assert!(matches!(ev, Event::Command { command: Command::Approve | Command::Rollback { .. }, .. }), "acted on {:?}", ev);
                }
            }
        }
    }

    #[test]
    fn the_same_inputs_give_the_same_decisions_even_across_a_restart(p in policy_strategy(), events in prop::collection::vec(ev(), 0..80), cut in 0usize..80) {
        let a = run(p.clone(), &events);
        let b = run(p.clone(), &events);
        prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
        // Persist at `cut`, resume from the JSON, and continue: same steps.
        let cut = cut.min(events.len());
        let mut m = Machine::new(p.clone(), watch(), t(0));
        let mut clock = 0;
        for e in &events[..cut] {
            let ev = to_event(e, &mut clock);
            let _ = m.handle(t(clock), ev);
        }
        let json = serde_json::to_string(m.state()).unwrap();
        let mut resumed = Machine::resume(p, serde_json::from_str(&json).unwrap()).unwrap();
        for (i, e) in events[cut..].iter().enumerate() {
            let ev = to_event(e, &mut clock);
            let step = resumed.handle(t(clock), ev);
            prop_assert_eq!(format!("{:?}", step), format!("{:?}", a[cut + i].1));
        }
    }
}
