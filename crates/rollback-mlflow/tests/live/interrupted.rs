//! A rollback cut short after each of its steps, then asked again by a new
//! rollbacker (as after a restart), against the real tracking server:
//! `conformance::check_interrupted_rollback`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rollback_core::conformance::{InterruptionFixture, check_interrupted_rollback};
use rollback_core::steps::Steps;
use rollback_core::{Result, Rollbacker, Target, TargetId};
use rollback_mlflow::{AliasMove, MlflowTarget, PostRollbackHook};

use crate::registry::target;
use crate::support::{client, seed, unique};

/// Serving that reloads at once, counting the reloads.
#[derive(Debug, Default)]
struct Reload(AtomicUsize);

#[rollback_mlflow::async_trait]
impl PostRollbackHook for Reload {
    fn name(&self) -> &str {
        "serving reload"
    }
    async fn after_rollback(&self, _: &AliasMove) -> Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Alias,
    AliasWithHook,
    Stage,
}

/// Each setup is a new registered model with versions 1 and 2, both
/// `READY`, the alias (or stage `Production`) on version 2.
struct Fixture {
    mode: Mode,
    reload: Arc<Reload>,
    targets: Mutex<BTreeMap<TargetId, MlflowTarget>>,
    /// The steps of every rollbacker built, in order (the first is the
    /// check's uninterrupted reference run).
    steps: Mutex<Vec<Steps>>,
}

impl Fixture {
    fn new(mode: Mode) -> Self {
        Fixture {
            mode,
            reload: Arc::default(),
            targets: Mutex::default(),
            steps: Mutex::default(),
        }
    }

    /// The steps the uninterrupted reference run took.
    fn reference_steps(&self) -> Vec<String> {
        self.steps.lock().unwrap()[0].taken()
    }

    fn setups(&self) -> usize {
        self.targets.lock().unwrap().len()
    }

    fn mlflow(&self, target: &Arc<dyn Target>) -> MlflowTarget {
        self.targets.lock().unwrap()[target.id()].clone()
    }
}

#[rollback_mlflow::async_trait]
impl InterruptionFixture for Fixture {
    async fn setup(&self) -> Result<Arc<dyn Target>> {
        let c = client().await;
        let name = unique("interrupted");
        let t = if self.mode == Mode::Stage {
            seed(&c, &name, 2, None).await;
            #[allow(deprecated)]
            {
                c.transition_stage(&name, "1", "Production", true).await?;
                c.transition_stage(&name, "2", "Production", true).await?;
                MlflowTarget::builder(c)
                    .model(&name)
                    .stage("Production")
                    .build()?
            }
        } else {
            seed(&c, &name, 2, Some(("champion", 2))).await;
            target(&name, 100).await
        };
        self.targets
            .lock()
            .unwrap()
            .insert(t.id().clone(), t.clone());
        Ok(Arc::new(t))
    }

    fn rollbacker(&self, target: &Arc<dyn Target>, steps: Steps) -> Arc<dyn Rollbacker> {
        self.steps.lock().unwrap().push(steps.clone());
        let r = self.mlflow(target).rollbacker().steps(steps);
        match self.mode {
            Mode::AliasWithHook => Arc::new(r.hook(self.reload.clone())),
            Mode::Alias | Mode::Stage => Arc::new(r),
        }
    }

    /// The move-record and health tags of both versions, the model's
    /// generated name left out.
    async fn records(&self, target: &Arc<dyn Target>) -> Result<Vec<String>> {
        let t = self.mlflow(target);
        let name = t.model_name();
        let mut out = Vec::new();
        for v in ["1", "2"] {
            let version = t.client().get_model_version(name, v).await?;
            for tag in version
                .tags
                .iter()
                .filter(|t| t.key.starts_with("rollback."))
            {
                out.push(format!(
                    "version {v}: {} = {}",
                    tag.key,
                    tag.value.replace(name, "<model>")
                ));
            }
        }
        Ok(out)
    }
}

async fn check(mode: Mode) -> Fixture {
    let fixture = Fixture::new(mode);
    let report = check_interrupted_rollback(&fixture).await.unwrap();
    assert_eq!(report.passed, ["interrupted_rollback_completes"]);
    fixture
}

const ALIAS_STEPS: [&str; 6] = [
    "tag version 2 bad: rollback.health.reason",
    "tag version 2 bad: rollback.health.at",
    "tag version 2 bad: rollback.health",
    "move alias champion to version 1",
    "record the move on version 1",
    "record the move on version 2",
];

#[tokio::test]
async fn an_interrupted_alias_move_completes_with_its_records_written_once() {
    let f = check(Mode::Alias).await;
    assert_eq!(f.reference_steps(), ALIAS_STEPS);
}

#[tokio::test]
async fn an_interrupted_rollback_runs_its_hooks_until_the_record_says_done() {
    let f = check(Mode::AliasWithHook).await;
    let mut want = ALIAS_STEPS.to_vec();
    want.extend([
        "run the post-rollback hook serving reload",
        "mark the hooks done in the record on version 1",
        "mark the hooks done in the record on version 2",
    ]);
    assert_eq!(f.reference_steps(), want);
    // Serving reloaded once per setup, and once more in the one trial cut
    // after the hook but before the first record said done (hooks run at
    // least once; a record that says done is not run again).
    assert_eq!(f.reload.0.load(Ordering::SeqCst), f.setups() + 1);
}

#[tokio::test]
async fn an_interrupted_stage_transition_completes_with_its_records_written_once() {
    let f = check(Mode::Stage).await;
    let mut want = ALIAS_STEPS.to_vec();
    want[3] = "move stage Production to version 1";
    assert_eq!(f.reference_steps(), want);
}
