use std::sync::Mutex;

use async_trait::async_trait;
use proptest::prelude::*;

use super::*;
use crate::memory::{InMemoryRollbacker, InMemoryTarget, ScriptedProbe};
use crate::time::TokioClock;
use crate::{
    Capabilities, Convergence, ErrorKind, Policy, RevisionHealth, RevisionRecord, RollbackOutcome,
    RollbackRequest, Rollbacker, Target, Timestamp,
};

fn deps(edges: &[(&str, &[&str])]) -> BTreeMap<TargetId, Vec<TargetId>> {
    edges
        .iter()
        .map(|(t, ds)| {
            (
                TargetId::new(*t),
                ds.iter().map(|d| TargetId::new(*d)).collect(),
            )
        })
        .collect()
}

#[test]
fn dependents_go_first_and_cycles_are_named() {
    let order = rollback_order(&deps(&[
        ("schema", &[]),
        ("api", &["schema"]),
        ("frontend", &["api", "schema"]),
        ("admin", &["api"]),
    ]))
    .unwrap();
    let names: Vec<&str> = order.iter().map(TargetId::as_str).collect();
    assert_eq!(names, ["admin", "frontend", "api", "schema"]);
    let e = rollback_order(&deps(&[
        ("a", &["b"]),
        ("b", &["c"]),
        ("c", &["a"]),
        ("d", &[]),
    ]))
    .unwrap_err()
    .to_string();
    assert!(e.contains("a, b, c form a cycle"), "{e}");
    let e = rollback_order(&deps(&[("a", &["db"])]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("a depends on db, which is not in the plan"),
        "{e}"
    );
}

proptest! {
    /// Whatever the graph, no target comes after one it depends on.
    #[test]
    fn no_target_comes_after_what_it_depends_on(edges in proptest::collection::vec((0usize..8, 0usize..8), 0..20)) {
        // Edges only from a higher index to a lower one: a DAG.
        let mut d: BTreeMap<TargetId, Vec<TargetId>> =
            (0..8).map(|i| (TargetId::new(format!("t{i}")), Vec::new())).collect();
        for (a, b) in edges.into_iter().filter(|(a, b)| a > b) {
            d.get_mut(&TargetId::new(format!("t{a}"))).unwrap().push(TargetId::new(format!("t{b}")));
        }
        let order = rollback_order(&d).unwrap();
        prop_assert_eq!(order.len(), 8);
        let at = |t: &TargetId| order.iter().position(|o| o == t).unwrap();
        for (t, ds) in &d {
            for dep in ds {
                prop_assert!(at(t) < at(dep), "{} after its dependency {}", t, dep);
            }
        }
    }
}

/// Rolls back through an in-memory rollbacker and writes the target's id
/// into a shared log when it changes the target.
#[derive(Debug)]
struct Logged {
    inner: InMemoryRollbacker,
    log: Arc<Mutex<Vec<String>>>,
    fails: bool,
}

#[async_trait]
impl Rollbacker for Logged {
    fn target(&self) -> &TargetId {
        self.inner.target()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn rollback(&self, request: &RollbackRequest) -> Result<RollbackOutcome> {
        if self.fails {
            return Err(Error::new(
                ErrorKind::Permanent,
                "the API server refused the patch",
            ));
        }
        let out = self.inner.rollback(request).await?;
        self.log.lock().unwrap().push(self.target().to_string());
        Ok(out)
    }
    async fn wait_converged(&self, r: &RevisionId, t: std::time::Duration) -> Result<Convergence> {
        self.inner.wait_converged(r, t).await
    }
}

const POLICY: &str =
    "interval: 30s\nbake_time: 10m\nverify: 1m\nprobes: [{name: errors, success: '< 0.01'}]";

struct Fleet {
    targets: Vec<(InMemoryTarget, PlanTarget)>,
    log: Arc<Mutex<Vec<String>>>,
}

/// Targets on v1 (good) and v2 (the change) unless `runs` is false; the
/// probe fails on v2 of the targets named in `bad`.
fn fleet(spec: &[(&str, &[&str], bool)], bad: &[&str], failing: &[&str]) -> Fleet {
    let log = Arc::new(Mutex::new(Vec::new()));
    let policy = Arc::new(Policy::from_yaml(POLICY).unwrap());
    let targets = spec
        .iter()
        .map(|(id, depends, runs)| {
            let t = InMemoryTarget::new(*id, [RevisionRecord::new("v1")]).unwrap();
            t.set_health(&"v1".into(), RevisionHealth::Good).unwrap();
            if *runs {
                t.deploy(RevisionRecord::new("v2"));
            }
            let v2 = if bad.contains(id) { 0.05 } else { 0.001 };
            let probe = ScriptedProbe::new("errors")
                .script_for("v2", [v2])
                .script([0.001]);
            let rollbacker = Logged {
                inner: InMemoryRollbacker::new(&t),
                log: log.clone(),
                fails: failing.contains(id),
            };
            let spec = WatchSpec::new(
                policy.clone(),
                Arc::new(t.clone()),
                Arc::new(rollbacker),
                vec![Arc::new(probe)],
            );
            let plan_target = PlanTarget::new(spec, depends.iter().map(|d| TargetId::new(*d)));
            (t, plan_target)
        })
        .collect();
    Fleet { targets, log }
}

fn engine() -> Engine {
    Engine::builder()
        .clock(Arc::new(TokioClock::starting_at(Timestamp::EPOCH)))
        .max_jitter(0.0)
        .build()
}

fn outcome<'a>(r: &'a PlanReport, id: &str) -> &'a PlanOutcome {
    &r.targets.iter().find(|(t, _)| t.as_str() == id).unwrap().1
}

#[tokio::test(start_paused = true)]
async fn a_breach_in_a_dependency_rolls_back_its_dependents_first() {
    let f = fleet(
        &[
            ("schema", &[], true),
            ("api", &["schema"], true),
            ("frontend", &["api"], true),
        ],
        &["schema"],
        &[],
    );
    let plan = Plan::new(f.targets.iter().map(|(_, p)| p.clone()).collect()).unwrap();
    let report = plan.run(&engine()).await.unwrap();
    assert_eq!(*f.log.lock().unwrap(), ["frontend", "api", "schema"]);
    for (t, _) in &f.targets {
        assert_eq!(t.current_id().as_str(), "v1", "{}", t.id());
        assert!(matches!(
            outcome(&report, t.id().as_str()),
            PlanOutcome::RolledBack(_)
        ));
    }
}

#[tokio::test(start_paused = true)]
async fn only_the_regions_that_run_the_change_are_rolled_back() {
    let f = fleet(
        &[
            ("eu-west", &[], true),
            ("us-east", &[], true),
            ("ap-south", &[], false),
        ],
        &["eu-west"],
        &[],
    );
    let plan = Plan::new(f.targets.iter().map(|(_, p)| p.clone()).collect()).unwrap();
    let report = plan.run(&engine()).await.unwrap();
    let mut rolled = f.log.lock().unwrap().clone();
    rolled.sort();
    assert_eq!(rolled, ["eu-west", "us-east"]);
    assert!(matches!(
        outcome(&report, "ap-south"),
        PlanOutcome::Judged(Phase::Promoted { .. })
    ));
    assert_eq!(f.targets[2].0.current_id().as_str(), "v1");
}

#[tokio::test(start_paused = true)]
async fn a_failed_step_stops_the_plan_and_leaves_the_rest_for_humans() {
    let f = fleet(
        &[
            ("schema", &[], true),
            ("api", &["schema"], true),
            ("frontend", &["api"], true),
        ],
        &["frontend"],
        &["api"],
    );
    let plan = Plan::new(f.targets.iter().map(|(_, p)| p.clone()).collect()).unwrap();
    let report = plan.run(&engine()).await.unwrap();
    assert_eq!(*f.log.lock().unwrap(), ["frontend"]);
    assert!(matches!(
        outcome(&report, "api"),
        PlanOutcome::Failed(Phase::Escalated { .. })
    ));
    match outcome(&report, "schema") {
        PlanOutcome::Stopped { reason } => {
            assert!(
                reason.contains("the rollback of api ended escalated"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        f.targets[0].0.current_id().as_str(),
        "v2",
        "schema untouched"
    );
}

#[test]
fn a_plan_refuses_what_has_no_order() {
    let f = fleet(&[("a", &["b"], true), ("b", &["a"], true)], &[], &[]);
    let e = Plan::new(f.targets.iter().map(|(_, p)| p.clone()).collect()).unwrap_err();
    assert!(e.to_string().contains("form a cycle"), "{e}");
    let f = fleet(&[("a", &[], true), ("a", &[], true)], &[], &[]);
    let e = Plan::new(f.targets.iter().map(|(_, p)| p.clone()).collect()).unwrap_err();
    assert!(e.to_string().contains("listed twice"), "{e}");
}
