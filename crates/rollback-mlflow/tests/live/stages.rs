//! Legacy stage mode (deprecated by MLflow).
#![allow(deprecated)]

use rollback_core::{Rollbacker, Target, TargetExt};
use rollback_mlflow::MlflowTarget;

use crate::registry::request;
use crate::support::{client, seed, unique};

#[tokio::test]
async fn stage_mode_transitions_back_and_archives_the_bad_version() {
    let c = client().await;
    let name = unique("stages");
    seed(&c, &name, 3, None).await;
    c.transition_stage(&name, "2", "Production", true)
        .await
        .unwrap();
    c.transition_stage(&name, "3", "Production", true)
        .await
        .unwrap();
    let t = MlflowTarget::builder(c.clone())
        .model(&name)
        .stage("production")
        .build()
        .unwrap();
    assert_eq!(t.id().as_str(), format!("mlflow:{name}/stage/Production"));
    assert_eq!(t.current().await.unwrap().id().as_str(), "3");
    assert_eq!(
        t.current().await.unwrap().attributes()["stage"],
        "Production"
    );

    let good = t.find(&"2".into()).await.unwrap().revision;
    t.rollbacker()
        .rollback(&request(Some("3"), good, false))
        .await
        .unwrap();
    assert_eq!(t.current().await.unwrap().id().as_str(), "2");
    assert_eq!(
        c.get_model_version(&name, "3")
            .await
            .unwrap()
            .current_stage
            .as_deref(),
        Some("Archived")
    );
    let moves = t.alias_moves().await.unwrap();
    assert_eq!(moves.len(), 1);
    assert_eq!(
        (moves[0].stage.as_deref(), moves[0].alias.as_deref()),
        (Some("Production"), None)
    );

    rollback_core::conformance::check_rollbacker(&t, &t.rollbacker())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_empty_stage_is_not_found() {
    let c = client().await;
    let name = unique("nostage");
    seed(&c, &name, 1, None).await;
    let t = MlflowTarget::builder(c)
        .model(&name)
        .stage("Staging")
        .build()
        .unwrap();
    let e = t.current().await.unwrap_err();
    assert_eq!(e.kind(), rollback_core::ErrorKind::NotFound, "{e}");
    assert!(e.message().contains("stage \"Staging\""), "{e}");
}
