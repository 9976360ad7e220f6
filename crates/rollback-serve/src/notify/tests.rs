use std::sync::Arc;
use std::time::Duration;

use rollback_core::audit::{ActionKind, AuditEntry, AuditRecord, MemoryAuditSink};
use rollback_core::machine::{Breach, DecisionKind, Limit, PhaseKind};
use rollback_core::time::ManualClock;
use rollback_core::{Actor, Timestamp};

use super::*;

fn record(entry: AuditEntry) -> AuditRecord {
    AuditRecord {
        at: Timestamp::from_millis(1_795_780_800_000),
        target: "k8s:shop/checkout".into(),
        revision: "v2".into(),
        actor: Actor::engine(),
        entry,
    }
}

fn breach() -> Breach {
    Breach::Probe {
        probe: "error_rate".into(),
        limit: Limit::FailureLimit,
        allowed: 0,
        count: 1,
        value: Some(0.05),
        verdict_cause: None,
        conditions: "success < 0.01".into(),
    }
}

fn decided(decision: DecisionKind, detail: &str, to: Option<&str>) -> AuditEntry {
    AuditEntry::Decided {
        decision,
        detail: detail.into(),
        breach: Some(breach()),
        to: to.map(Into::into),
    }
}

fn notifier() -> Notifier {
    Notifier::new(
        Arc::new(Metrics::new()),
        Arc::new(MemoryAuditSink::new()),
        Arc::new(ManualClock::at(Timestamp::EPOCH)),
    )
}

fn kinds(n: &Notifier, next: &NextSteps, entries: Vec<AuditEntry>) -> Vec<(NoticeKind, String)> {
    entries
        .into_iter()
        .filter_map(|e| n.notice_for(&record(e), next))
        .map(|notice| (notice.event, notice.revisions()))
        .collect()
}

#[test]
fn a_verified_rollback_makes_three_notices_that_keep_its_breach() {
    let n = notifier();
    let next = NextSteps {
        verify: Duration::from_secs(300),
    };
    let entries = vec![
        AuditEntry::WatchStarted { dry_run: false },
        AuditEntry::Transition {
            from: PhaseKind::Observing,
            to: PhaseKind::RollingBack,
        },
        decided(
            DecisionKind::Rollback,
            "roll back from v2 to v1",
            Some("v1"),
        ),
        AuditEntry::ActionStarted {
            action: ActionKind::Rollback,
            subject: "v1".into(),
            attempt: 1,
        },
        AuditEntry::ActionStarted {
            action: ActionKind::Rollback,
            subject: "v1".into(),
            attempt: 2,
        },
        AuditEntry::Transition {
            from: PhaseKind::RollingBack,
            to: PhaseKind::Verifying,
        },
        AuditEntry::Transition {
            from: PhaseKind::Verifying,
            to: PhaseKind::RolledBack,
        },
    ];
    let got: Vec<Notice> = entries
        .into_iter()
        .filter_map(|e| n.notice_for(&record(e), &next))
        .collect();
    let events: Vec<NoticeKind> = got.iter().map(|g| g.event).collect();
    assert_eq!(
        events,
        [
            NoticeKind::RollbackStarted,
            NoticeKind::RollbackDone,
            NoticeKind::RollbackVerified
        ]
    );
    for g in &got {
        assert_eq!(g.breach, Some(breach()), "{:?}", g.event);
        assert_eq!(g.revisions(), "v2 → v1");
    }
    assert!(got[0].next.contains("verify v1 for 5m"), "{}", got[0].next);
    assert!(
        lock(&n.inner.pending).is_empty(),
        "a finished rollback is forgotten"
    );
}

#[test]
fn approval_escalation_and_freeze_notices() {
    let n = notifier();
    let next = NextSteps {
        verify: Duration::ZERO,
    };
    let got = kinds(
        &n,
        &next,
        vec![
            decided(
                DecisionKind::AwaitApproval,
                "rollback to v1 waits for approval",
                Some("v1"),
            ),
            decided(DecisionKind::Rollback, "roll back", Some("v1")),
            AuditEntry::ActionStarted {
                action: ActionKind::Rollback,
                subject: "v1".into(),
                attempt: 1,
            },
            AuditEntry::Transition {
                from: PhaseKind::RollingBack,
                to: PhaseKind::Escalated,
            },
            decided(
                DecisionKind::Escalate,
                "escalate to humans: rollback to v1 failed: refused",
                None,
            ),
            decided(DecisionKind::Freeze, "freeze: irreversible", None),
            decided(DecisionKind::Promote, "promote v2", None),
        ],
    );
    assert_eq!(
        got,
        [
            (NoticeKind::AwaitingApproval, "v2 → v1".to_owned()),
            (NoticeKind::RollbackStarted, "v2 → v1".to_owned()),
            (NoticeKind::Escalated, "v2 → v1".to_owned()),
            (NoticeKind::Frozen, "v2".to_owned()),
        ]
    );
    let escalated = n
        .notice_for(
            &record(decided(
                DecisionKind::Escalate,
                "escalate to humans: rollback to v1 failed: refused",
                None,
            )),
            &next,
        )
        .unwrap();
    assert!(
        escalated
            .next
            .ends_with("Why: rollback to v1 failed: refused"),
        "{}",
        escalated.next
    );
}

#[test]
fn facts_name_probe_value_condition_and_limit() {
    let facts = notice::breach_facts(&breach());
    assert_eq!(
        facts,
        [
            ("Probe", "error_rate".to_owned()),
            ("Value", "0.05".to_owned()),
            ("Condition", "success < 0.01".to_owned()),
            ("Limit", "failure_limit 0: 1 failed measurements".to_owned()),
        ]
    );
}

#[test]
fn slack_text_cannot_mention_or_link() {
    assert_eq!(
        slack::escape("<!channel> & <http://x|y>"),
        "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
    );
}
