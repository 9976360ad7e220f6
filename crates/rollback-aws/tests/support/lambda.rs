//! Lambda deployment groups on the moto server: the function and its alias
//! live in moto's own Lambda service, seeded and read through boto3 (the
//! reference client, `moto_lambda.py`), and AppSpec revisions shift the
//! alias (the server extension moves it as CodeDeploy does).

use std::process::Command;

use aws_sdk_codedeploy::types::{
    AppSpecContent, ComputePlatform, RevisionLocation, RevisionLocationType,
};
use rollback_aws::local::venv_or;

use super::Group;

/// The alias every test function is deployed through.
pub(crate) const ALIAS: &str = "live";

/// A Lambda application with one deployment group, and its function.
pub(crate) struct LambdaGroup {
    pub group: Group,
    /// The function (named after the application, so unique on the server).
    pub function: String,
}

/// Run the boto3 side with the test venv's Python; its JSON answer.
fn boto3(args: &[&str]) -> serde_json::Value {
    let venv = venv_or(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/moto_lambda.py");
    let out = Command::new(venv.join("bin/python"))
        .arg(script)
        .arg(super::moto().url())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {script} with the venv at {}: {e}", venv.display()));
    assert!(
        out.status.success(),
        "boto3 {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        super::moto().stderr_tail()
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "boto3 {args:?} answered {}: {e}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A Lambda AppSpec (YAML, as users write it) shifting `function`'s alias
/// from `current` to `target`.
pub(crate) fn appspec_yaml(function: &str, current: u32, target: u32) -> String {
    format!(
        "version: 0.0
Resources:
  - payments:
      Type: AWS::Lambda::Function
      Properties:
        Name: \"{function}\"
        Alias: \"{ALIAS}\"
        CurrentVersion: \"{current}\"
        TargetVersion: \"{target}\"
Hooks:
  - BeforeAllowTraffic: \"{function}-smoke\"
"
    )
}

/// An `AppSpecContent` revision of this text.
pub(crate) fn content(text: &str) -> RevisionLocation {
    RevisionLocation::builder()
        .revision_type(RevisionLocationType::AppSpecContent)
        .app_spec_content(AppSpecContent::builder().content(text).build())
        .build()
}

impl LambdaGroup {
    /// A Lambda application whose group deploys with `config`
    /// (`CodeDeployDefault.LambdaAllAtOnce`, …), and a function with
    /// `versions` published versions, its alias on version 1.
    pub(crate) async fn new(prefix: &str, config: &str, versions: u32) -> LambdaGroup {
        Self::with_function(prefix, config, versions, None).await
    }

    /// The same, with a function of this name, made afresh (a function of
    /// that name is deleted first), so that groups set up alike deploy the
    /// same revisions.
    pub(crate) async fn with_function(
        prefix: &str,
        config: &str,
        versions: u32,
        function: Option<&str>,
    ) -> LambdaGroup {
        let group = Group::on(prefix, Some(ComputePlatform::Lambda), Some(config)).await;
        let function = function.map_or_else(|| group.app.clone(), str::to_owned);
        let seeded = boto3(&["seed", &function, ALIAS, &versions.to_string()]);
        assert_eq!(
            seeded["versions"].as_array().map(Vec::len),
            Some(versions as usize),
            "{seeded}"
        );
        LambdaGroup { group, function }
    }

    /// The revision shifting the alias from `current` to `target`.
    pub(crate) fn shift(&self, current: u32, target: u32) -> RevisionLocation {
        content(&appspec_yaml(&self.function, current, target))
    }

    /// The revision id of the alias on `version`.
    pub(crate) fn id(&self, version: u32) -> String {
        format!("lambda:{}:{ALIAS}@{version}", self.function)
    }

    /// Deploy each shift (current, target, status) in turn, through `InProgress`.
    pub(crate) async fn seed(&self, shifts: &[(u32, u32, &str)]) -> Vec<String> {
        let steps: Vec<_> = shifts
            .iter()
            .map(|(c, t, s)| (self.shift(*c, *t), *s))
            .collect();
        self.group.seed(&steps).await
    }

    /// The alias as Lambda's GetAlias answers it: its version and routing
    /// configuration (`null` when all traffic goes to that version).
    pub(crate) fn alias(&self) -> (String, serde_json::Value) {
        let got = boto3(&["alias", &self.function, ALIAS]);
        (
            got["FunctionVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            got["RoutingConfig"].clone(),
        )
    }
}
