use proptest::prelude::*;

use super::*;
use crate::audit::ActionKind;
use crate::machine::{Breach, DecisionKind, Limit};

fn record(entry: AuditEntry) -> AuditRecord {
    AuditRecord {
        at: Timestamp::from_millis(1_795_780_800_000),
        target: "shop/checkout".into(),
        revision: "v2".into(),
        actor: Actor::engine(),
        entry,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn write_all(path: &std::path::Path, records: &[AuditRecord]) {
    let sink = JsonLinesAuditSink::open(path).await.unwrap();
    for r in records {
        sink.record(r).await.unwrap();
    }
}

fn same(a: &[AuditRecord], b: &[AuditRecord]) -> bool {
    // NaN != NaN: compare the JSON forms, which keep NaN as "NaN".
    let json = |v: &[AuditRecord]| serde_json::to_string(v).unwrap();
    json(a) == json(b)
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9 ./:-]{0,12}",
        any::<String>(),
        Just("line\n2026-11-27T12:00:00.000Z shop/checkout decision rollback".to_owned()),
    ]
}

fn float() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        Just(None),
        Just(Some(f64::NAN)),
        Just(Some(f64::INFINITY)),
        Just(Some(f64::NEG_INFINITY)),
        any::<f64>().prop_map(Some),
    ]
}

fn revision() -> impl Strategy<Value = RevisionId> {
    "[a-z0-9]{1,6}".prop_map(RevisionId::new)
}

fn phase() -> impl Strategy<Value = PhaseKind> {
    prop_oneof![
        Just(PhaseKind::Observing),
        Just(PhaseKind::RollingBack),
        Just(PhaseKind::Verifying),
        Just(PhaseKind::Escalated),
    ]
}

fn action() -> impl Strategy<Value = ActionKind> {
    prop_oneof![
        Just(ActionKind::Rollback),
        Just(ActionKind::WaitConverged),
        Just(ActionKind::Mark)
    ]
}

fn command() -> impl Strategy<Value = CommandKind> {
    prop_oneof![
        Just(CommandKind::Pause),
        Just(CommandKind::Approve),
        Just(CommandKind::Rollback)
    ]
}

/// Every kind of [`Breach`], with arbitrary contents (NaN values included).
fn breach() -> impl Strategy<Value = Breach> {
    let limit = prop_oneof![
        Just(Limit::FailureLimit),
        Just(Limit::ConsecutiveFailureLimit),
        Just(Limit::InconclusiveLimit),
        Just(Limit::ConsecutiveErrorLimit),
    ];
    let cause = prop_oneof![
        Just(None),
        Just(Some(VerdictCause::FailureMatched)),
        Just(Some(VerdictCause::NotFinite)),
        Just(Some(VerdictCause::NoData)),
    ];
    prop_oneof![
        (
            text(),
            limit,
            any::<u32>(),
            any::<u32>(),
            float(),
            cause,
            text()
        )
            .prop_map(
                |(probe, limit, allowed, count, value, verdict_cause, conditions)| Breach::Probe {
                    probe,
                    limit,
                    allowed,
                    count,
                    value,
                    verdict_cause,
                    conditions,
                }
            ),
        (text(), text()).prop_map(|(key, summary)| Breach::Alert { key, summary }),
        text().prop_map(|actor| Breach::Operator {
            actor: Actor::new(actor)
        }),
    ]
}

/// Every variant of [`AuditEntry`], with arbitrary contents.
fn entry() -> impl Strategy<Value = AuditEntry> {
    let verdict = prop_oneof![
        Just(None),
        Just(Some(Verdict::Pass)),
        Just(Some(Verdict::Fail)),
        Just(Some(Verdict::Inconclusive))
    ];
    let cause = prop_oneof![
        Just(None),
        Just(Some(VerdictCause::NoData)),
        Just(Some(VerdictCause::SuccessNotMatched))
    ];
    let outcome = prop_oneof![
        Just(TriggerOutcome::Accepted),
        Just(TriggerOutcome::Duplicate),
        Just(TriggerOutcome::NoWatch),
        text().prop_map(|reason| TriggerOutcome::Ignored { reason }),
    ];
    let decision = prop_oneof![
        Just(DecisionKind::Rollback),
        Just(DecisionKind::Escalate),
        Just(DecisionKind::WouldRollBack),
        Just(DecisionKind::Promote)
    ];
    let health = prop_oneof![Just(RevisionHealth::Good), Just(RevisionHealth::Bad)];
    prop_oneof![
        any::<bool>().prop_map(|dry_run| AuditEntry::WatchStarted { dry_run }),
        phase().prop_map(|phase| AuditEntry::WatchResumed { phase }),
        (
            text(),
            revision(),
            float(),
            float(),
            verdict,
            cause,
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(any::<i64>().prop_map(Timestamp::from_millis))
        )
            .prop_map(
                |(probe, judged, value, baseline, verdict, cause, against, detail, due_at)| {
                    AuditEntry::Measured {
                        probe,
                        judged,
                        value,
                        baseline,
                        verdict,
                        cause,
                        against,
                        detail,
                        due_at,
                    }
                }
            ),
        (text(), revision(), text()).prop_map(|(probe, judged, error)| AuditEntry::ProbeFailed {
            probe,
            judged,
            error
        }),
        (phase(), phase()).prop_map(|(from, to)| AuditEntry::Transition { from, to }),
        (
            decision,
            text(),
            proptest::option::of(breach()),
            proptest::option::of(revision())
        )
            .prop_map(|(decision, detail, breach, to)| AuditEntry::Decided {
                decision,
                detail,
                breach,
                to
            }),
        (action(), revision(), 1u32..9).prop_map(|(action, subject, attempt)| {
            AuditEntry::ActionStarted {
                action,
                subject,
                attempt,
            }
        }),
        (action(), revision(), revision()).prop_map(|(action, subject, found)| {
            AuditEntry::ActionResumed {
                action,
                subject,
                found,
            }
        }),
        (action(), 1u32..9, text(), any::<u64>()).prop_map(|(action, attempt, error, wait_ms)| {
            AuditEntry::ActionRetrying {
                action,
                attempt,
                error,
                wait_ms,
            }
        }),
        (action(), text())
            .prop_map(|(action, detail)| AuditEntry::ActionSucceeded { action, detail }),
        (action(), text()).prop_map(|(action, error)| AuditEntry::ActionFailed { action, error }),
        (revision(), health).prop_map(|(subject, health)| AuditEntry::Marked { subject, health }),
        (command(), proptest::option::of(revision()))
            .prop_map(|(command, to)| AuditEntry::CommandAccepted { command, to }),
        (command(), text())
            .prop_map(|(command, reason)| AuditEntry::CommandRejected { command, reason }),
        (command(), text())
            .prop_map(|(command, reason)| AuditEntry::CommandDenied { command, reason }),
        (text(), text(), outcome).prop_map(|(key, summary, outcome)| {
            AuditEntry::TriggerReceived {
                key,
                summary,
                outcome,
            }
        }),
        text().prop_map(|error| AuditEntry::StoreFailed { error }),
        (text(), text(), 0u32..9, text()).prop_map(|(channel, notification, attempts, error)| {
            AuditEntry::NotificationFailed {
                channel,
                notification,
                attempts,
                error,
            }
        }),
    ]
}

fn audit_record() -> impl Strategy<Value = AuditRecord> {
    (any::<i64>(), text(), revision(), text(), entry()).prop_map(
        |(at, target, revision, actor, entry)| AuditRecord {
            at: Timestamp::from_millis(at),
            target: TargetId::new(target),
            revision,
            actor: Actor::new(actor),
            entry,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every variant reads back as written, through the file and the
    /// reader, and the chain of the file verifies.
    #[test]
    fn every_record_round_trips_through_the_file(records in proptest::collection::vec(audit_record(), 1..12)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        runtime().block_on(write_all(&path, &records));
        let log = JsonLinesAuditSink::read(&path).unwrap();
        prop_assert!(same(&log.records, &records), "{:?}\n!=\n{:?}", log.records, records);
        prop_assert!(log.torn_lines.is_empty());
        let report = verify(&path).unwrap();
        prop_assert!(report.is_intact(), "{:?}", report.broken);
        prop_assert_eq!(report.records, records.len());
        // One JSON key once per line: a duplicate would have failed the
        // reader, and other JSON tools would keep only its last value.
        for line in std::fs::read_to_string(&path).unwrap().lines().skip(1) {
            let keys: Vec<String> = line_keys(line);
            let mut unique = keys.clone();
            unique.sort();
            unique.dedup();
            prop_assert_eq!(unique.len(), keys.len(), "{}", line);
        }
    }

    /// Whatever a field holds, a record is one line of the timeline.
    #[test]
    fn a_timeline_line_cannot_be_forged(r in audit_record()) {
        prop_assert!(!r.to_string().contains('\n'));
        prop_assert!(!r.to_string().contains('\r'));
        let sink = TextAuditSink::new(std::io::sink());
        prop_assert!(!sink.line(&r).chars().any(char::is_control));
    }
}

/// The top-level keys of a JSON object line, in order, duplicates kept.
fn line_keys(line: &str) -> Vec<String> {
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> std::result::Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((k, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                        keys.push(k);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_str::<Keys>(line).unwrap().0
}

fn sample() -> Vec<AuditRecord> {
    vec![
        record(AuditEntry::Transition {
            from: PhaseKind::Observing,
            to: PhaseKind::RollingBack,
        }),
        record(AuditEntry::ActionStarted {
            action: ActionKind::Rollback,
            subject: "v1".into(),
            attempt: 1,
        }),
        record(AuditEntry::ActionSucceeded {
            action: ActionKind::Rollback,
            detail: "rolled back".into(),
        }),
        record(AuditEntry::Measured {
            probe: "error_rate".into(),
            judged: "v1".into(),
            value: None,
            baseline: None,
            verdict: Some(Verdict::Inconclusive),
            cause: Some(VerdictCause::NoData),
            against: Some("success < 0.01".into()),
            detail: None,
            due_at: Some(Timestamp::from_millis(1_795_780_799_990)),
        }),
    ]
}

#[tokio::test]
async fn json_lines_round_trip_and_describe() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let records = sample();
    write_all(&path, &records[..2]).await;
    write_all(&path, &records[2..]).await;
    assert_eq!(JsonLinesAuditSink::read(&path).unwrap().records, records);
    assert!(verify(&path).unwrap().is_intact());
    assert_eq!(
        records[3].to_string(),
        "2026-11-27T12:00:00.000Z shop/checkout error_rate on v1 = no data -> inconclusive (no data) [success < 0.01]"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with(r#"{"rollback_audit":1,"created":"#),
        "{text}"
    );
    assert!(
        text.lines()
            .nth(2)
            .unwrap()
            .contains(r#""event":"action_started","action":"rollback","subject":"v1","attempt":1"#),
        "{text}"
    );
    std::fs::write(&path, "{not json}\n{\"a\":1}\n").unwrap();
    let e = JsonLinesAuditSink::read(&path).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Corrupt);
    assert!(e.to_string().contains("line 1"), "{e}");
}

#[tokio::test]
async fn a_torn_last_line_is_reported_and_the_next_run_starts_a_fresh_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let records = sample();
    write_all(&path, &records[..2]).await;
    // Killed mid-write: half of a third record, no newline.
    let full = std::fs::read(&path).unwrap();
    let mut torn = full.clone();
    torn.extend_from_slice(br#"{"prev":"ab","at":17957808"#);
    std::fs::write(&path, &torn).unwrap();
    let log = JsonLinesAuditSink::read(&path).unwrap();
    assert_eq!(log.records, records[..2]);
    assert_eq!(log.torn_lines, [4]);
    assert!(verify(&path).unwrap().is_intact());

    // The next run repairs the tail before its first record.
    write_all(&path, &records[2..]).await;
    let log = JsonLinesAuditSink::read(&path).unwrap();
    assert_eq!(log.records, records);
    assert_eq!(log.torn_lines, [4]);
    let report = verify(&path).unwrap();
    assert!(report.is_intact(), "{:?}", report.broken);
    assert_eq!(report.torn_lines, [4]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.lines()
            .nth(4)
            .unwrap()
            .starts_with(r#"{"repaired":"torn line""#),
        "{text}"
    );

    // A torn line that nothing repaired, in the middle, is corruption.
    let lines: Vec<&str> = std::str::from_utf8(&full).unwrap().lines().collect();
    std::fs::write(
        &path,
        format!("{}\n{}\n{{\"prev\":\n{}\n", lines[0], lines[1], lines[2]),
    )
    .unwrap();
    let e = JsonLinesAuditSink::read(&path).unwrap_err();
    assert!(e.to_string().contains("line 3"), "{e}");
}

#[tokio::test]
async fn a_torn_header_starts_the_chain_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    std::fs::write(&path, r#"{"rollback_au"#).unwrap();
    write_all(&path, &sample()).await;
    let log = JsonLinesAuditSink::read(&path).unwrap();
    assert_eq!(log.records, sample());
    assert_eq!(log.torn_lines, [1]);
    assert!(verify(&path).unwrap().is_intact());
}

async fn chained_file(dir: &tempfile::TempDir) -> (std::path::PathBuf, Vec<String>) {
    let path = dir.path().join("audit.jsonl");
    write_all(&path, &sample()).await;
    let lines = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (path, lines)
}

fn broken_at(path: &std::path::Path, lines: &[String]) -> Option<usize> {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
    verify(path).unwrap().broken.map(|b| b.line)
}

#[tokio::test]
async fn verify_reports_the_first_line_where_the_chain_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let (path, lines) = chained_file(&dir).await;
    assert_eq!(lines.len(), 5);
    assert_eq!(broken_at(&path, &lines), None);

    let mut edited = lines.clone();
    edited[2] = edited[2].replace("\"attempt\":1", "\"attempt\":2");
    assert_eq!(broken_at(&path, &edited), Some(4), "an edited line");

    let mut deleted = lines.clone();
    deleted.remove(2);
    assert_eq!(broken_at(&path, &deleted), Some(3), "a deleted line");

    let mut inserted = lines.clone();
    inserted.insert(3, lines[2].clone());
    assert_eq!(broken_at(&path, &inserted), Some(4), "an inserted line");

    let mut reordered = lines.clone();
    reordered.swap(2, 3);
    assert_eq!(broken_at(&path, &reordered), Some(3), "reordered lines");

    let mut headless = lines.clone();
    headless.remove(0);
    assert_eq!(broken_at(&path, &headless), Some(1), "the header removed");

    let mut garbled = lines.clone();
    garbled[1] = "{not json".into();
    let report = {
        std::fs::write(&path, garbled.join("\n") + "\n").unwrap();
        verify(&path).unwrap()
    };
    assert_eq!(report.broken.map(|b| b.line), Some(2), "a garbled line");

    // The head moves with the last line: kept elsewhere, it shows an edit
    // of the last line, which nothing after it can.
    let head = {
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        verify(&path).unwrap().head
    };
    let mut last = lines.clone();
    last[4] = last[4].replace("error_rate", "latency");
    std::fs::write(&path, last.join("\n") + "\n").unwrap();
    let report = verify(&path).unwrap();
    assert!(report.is_intact());
    assert_ne!(report.head, head);
}

#[tokio::test]
async fn text_sink_escapes_what_could_forge_a_line() {
    let forged = record(AuditEntry::TriggerReceived {
        key: "fp\r@1".into(),
        summary: "HighErrorRate\n+02:00  shop/checkout    decision rollback: fake".into(),
        outcome: TriggerOutcome::Accepted,
    });
    let out = std::sync::Arc::new(Mutex::new(Vec::<u8>::new()));
    #[derive(Clone)]
    struct Shared(std::sync::Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = TextAuditSink::new(Shared(out.clone())).relative_time(true);
    sink.record(&forged).await.unwrap();
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains(r"HighErrorRate\n+02:00"), "{text}");
    assert!(text.contains(r"fp\r@1"), "{text}");
}
