//! The serverless compute platforms: an application's compute platform, and
//! the AppSpec of a Lambda or ECS revision.
//!
//! A Lambda revision is an AppSpec (YAML or JSON, as `AppSpecContent` or a
//! `String` revision) whose one resource is an `AWS::Lambda::Function` with
//! `Name`, `Alias`, `CurrentVersion` and `TargetVersion`: a deployment shifts
//! the alias from the current to the target version. An ECS revision's one
//! resource is an `AWS::ECS::Service` with a `TaskDefinition` and, for
//! blue/green behind a load balancer, `LoadBalancerInfo` (`ContainerName`,
//! `ContainerPort`). Such a revision is identified by what it puts in
//! service (the function, alias and target version; the task definition and
//! container), not by the text of its AppSpec, so that a rollback's AppSpec,
//! which shifts the alias back from another version, is the revision it
//! restores.

use std::fmt;

use aws_sdk_codedeploy::types::ComputePlatform;
use serde_json::Value;

/// The compute platform of a CodeDeploy application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Platform {
    /// EC2 and on-premises instances, with the CodeDeploy agent.
    Server,
    /// Lambda functions: a deployment shifts an alias.
    Lambda,
    /// ECS services: a deployment replaces a task set.
    Ecs,
}

impl Platform {
    /// The platform CodeDeploy names; none named is `Server`, as CodeDeploy
    /// defaults. A name this crate does not know is an error naming it.
    pub(crate) fn of(named: Option<&ComputePlatform>) -> Result<Platform, String> {
        match named {
            None | Some(ComputePlatform::Server) => Ok(Platform::Server),
            Some(ComputePlatform::Lambda) => Ok(Platform::Lambda),
            Some(ComputePlatform::Ecs) => Ok(Platform::Ecs),
            Some(other) => Err(format!(
                "compute platform {:?}, which rollback-aws does not know (it knows Server, Lambda and ECS)",
                other.as_str()
            )),
        }
    }

    /// As CodeDeploy spells it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Platform::Server => "Server",
            Platform::Lambda => "Lambda",
            Platform::Ecs => "ECS",
        }
    }
}

/// A parsed AppSpec of a Lambda or ECS revision.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AppSpec {
    Lambda(LambdaSpec),
    Ecs(EcsSpec),
}

/// The Lambda function resource of an AppSpec.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LambdaSpec {
    /// The resource's key in `Resources`.
    pub(crate) resource: String,
    pub(crate) name: String,
    pub(crate) alias: String,
    pub(crate) current_version: String,
    pub(crate) target_version: String,
    /// The whole document, to write again with another `CurrentVersion`.
    document: Value,
}

/// The ECS service resource of an AppSpec.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EcsSpec {
    pub(crate) task_definition: String,
    /// `ContainerName` and `ContainerPort` of `LoadBalancerInfo`.
    pub(crate) container: Option<(String, String)>,
}

/// Why an AppSpec cannot be read: where in it, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppSpecError {
    /// The path in the document (`Resources[0].payments.Properties.TargetVersion`).
    pub(crate) at: String,
    pub(crate) problem: String,
}

impl fmt::Display for AppSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "{}: {}", self.at, self.problem)
        }
    }
}

fn error(at: impl Into<String>, problem: impl Into<String>) -> AppSpecError {
    AppSpecError {
        at: at.into(),
        problem: problem.into(),
    }
}

/// The revision id of a Lambda alias shifted to a version.
pub(crate) fn lambda_id(name: &str, alias: &str, version: &str) -> String {
    format!("lambda:{name}:{alias}@{version}")
}

impl LambdaSpec {
    /// The revision id: the function, the alias and the version it shifts to.
    pub(crate) fn id(&self) -> String {
        lambda_id(&self.name, &self.alias, &self.target_version)
    }

    /// The id of the revision the alias was on before this one.
    pub(crate) fn previous_id(&self) -> String {
        lambda_id(&self.name, &self.alias, &self.current_version)
    }

    /// `payments:live@3`.
    pub(crate) fn label(&self) -> String {
        format!("{}:{}@{}", self.name, self.alias, self.target_version)
    }

    /// The same AppSpec (hooks and all) shifting the alias from `current`
    /// instead, as JSON: a rollback's AppSpec.
    pub(crate) fn shifting_from(&self, current: &str) -> String {
        let mut doc = self.document.clone();
        if let Some(props) = doc
            .get_mut("Resources")
            .and_then(Value::as_array_mut)
            .and_then(|r| r.first_mut())
            .and_then(|r| r.get_mut(&self.resource))
            .and_then(|r| r.get_mut("Properties"))
            .and_then(Value::as_object_mut)
        {
            props.insert("CurrentVersion".into(), Value::String(current.to_owned()));
        }
        doc.to_string()
    }
}

impl EcsSpec {
    /// The revision id: the task definition, and the container taking traffic.
    pub(crate) fn id(&self) -> String {
        match &self.container {
            Some((name, port)) => format!("ecs:{}#{name}:{port}", self.task_definition),
            None => format!("ecs:{}", self.task_definition),
        }
    }

    /// `payments:7` of a task definition ARN, with the container.
    pub(crate) fn label(&self) -> String {
        let family = self
            .task_definition
            .rsplit_once("task-definition/")
            .map_or(self.task_definition.as_str(), |(_, f)| f);
        match &self.container {
            Some((name, port)) => format!("task definition {family} ({name}:{port})"),
            None => format!("task definition {family}"),
        }
    }
}

/// Parse the AppSpec of a revision of a `platform` application (YAML or JSON).
pub(crate) fn parse(content: &str, platform: Platform) -> Result<AppSpec, AppSpecError> {
    let doc: Value = serde_yaml_ng::from_str(content)
        .map_err(|e| error("", format!("not YAML or JSON: {e}")))?;
    let resources = match doc.get("Resources") {
        Some(Value::Array(r)) => r,
        Some(_) => return Err(error("Resources", "must be a list of one resource")),
        None => return Err(error("", "no Resources")),
    };
    let [resource] = resources.as_slice() else {
        return Err(error(
            "Resources",
            format!(
                "must hold exactly one resource, holds {}; rollback-aws deploys one function or service per deployment group",
                resources.len()
            ),
        ));
    };
    let (key, body) = match resource.as_object().map(|o| o.iter().collect::<Vec<_>>()) {
        Some(entries) if entries.len() == 1 => (entries[0].0.clone(), entries[0].1),
        _ => {
            return Err(error(
                "Resources[0]",
                "must be a map of one resource name to its Type and Properties",
            ));
        }
    };
    let at = format!("Resources[0].{key}");
    let want = match platform {
        Platform::Lambda => "AWS::Lambda::Function",
        Platform::Ecs => "AWS::ECS::Service",
        Platform::Server => {
            return Err(error(
                "",
                "a Server application's AppSpec has no Lambda or ECS resource",
            ));
        }
    };
    match body.get("Type").and_then(Value::as_str) {
        Some(t) if t == want => {}
        Some(t) => {
            return Err(error(
                format!("{at}.Type"),
                format!(
                    "is {t}, but a {} deployment group deploys {want}",
                    platform.as_str()
                ),
            ));
        }
        None => return Err(error(format!("{at}.Type"), format!("missing; want {want}"))),
    }
    let props_at = format!("{at}.Properties");
    let Some(props) = body.get("Properties").filter(|p| p.is_object()) else {
        return Err(error(props_at, "missing"));
    };
    let field = |name: &str| -> Result<String, AppSpecError> {
        match props.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(Value::String(_)) => Err(error(format!("{props_at}.{name}"), "is empty")),
            Some(other) => Err(error(
                format!("{props_at}.{name}"),
                format!("must be a string, is {other}"),
            )),
            None => Err(error(format!("{props_at}.{name}"), "missing")),
        }
    };
    Ok(match platform {
        Platform::Lambda => {
            let spec = LambdaSpec {
                resource: key,
                name: field("Name")?,
                alias: field("Alias")?,
                current_version: field("CurrentVersion")?,
                target_version: field("TargetVersion")?,
                document: doc.clone(),
            };
            if spec.current_version == spec.target_version {
                return Err(error(
                    format!("{props_at}.TargetVersion"),
                    format!(
                        "is the CurrentVersion ({}); CodeDeploy shifts an alias only to another version",
                        spec.target_version
                    ),
                ));
            }
            AppSpec::Lambda(spec)
        }
        _ => {
            let container = match props.get("LoadBalancerInfo") {
                None => None,
                Some(lb) => {
                    let lb_at = format!("{props_at}.LoadBalancerInfo");
                    let name = match lb.get("ContainerName") {
                        Some(Value::String(s)) if !s.is_empty() => s.clone(),
                        _ => return Err(error(format!("{lb_at}.ContainerName"), "missing")),
                    };
                    let port = match lb.get("ContainerPort") {
                        Some(Value::Number(n)) => n.to_string(),
                        Some(Value::String(s)) if s.parse::<u16>().is_ok() => s.clone(),
                        _ => {
                            return Err(error(
                                format!("{lb_at}.ContainerPort"),
                                "missing or not a port number",
                            ));
                        }
                    };
                    Some((name, port))
                }
            };
            AppSpec::Ecs(EcsSpec {
                task_definition: field("TaskDefinition")?,
                container,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAMBDA: &str = "version: 0.0
Resources:
  - payments:
      Type: AWS::Lambda::Function
      Properties:
        Name: payments
        Alias: live
        CurrentVersion: 2
        TargetVersion: \"3\"
Hooks:
  - BeforeAllowTraffic: payments-smoke
";

    fn lambda(content: &str) -> LambdaSpec {
        match parse(content, Platform::Lambda).unwrap() {
            AppSpec::Lambda(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_lambda_appspec_is_the_alias_shifted_to_its_target_version() {
        let s = lambda(LAMBDA);
        assert_eq!(s.id(), "lambda:payments:live@3");
        assert_eq!(s.previous_id(), "lambda:payments:live@2");
        assert_eq!(s.label(), "payments:live@3");
        // The rollback's AppSpec: the same, from another version, as JSON.
        let back = lambda(&s.shifting_from("5"));
        assert_eq!(back.id(), s.id());
        assert_eq!(back.current_version, "5");
        assert!(s.shifting_from("5").contains("payments-smoke"));
        // JSON reads the same.
        let json = r#"{"version":0.0,"Resources":[{"f":{"Type":"AWS::Lambda::Function","Properties":{"Name":"payments","Alias":"live","CurrentVersion":"2","TargetVersion":"3"}}}]}"#;
        assert_eq!(lambda(json).id(), s.id());
    }

    #[test]
    fn an_ecs_appspec_is_its_task_definition_and_container() {
        let spec = "version: 0.0
Resources:
  - TargetService:
      Type: AWS::ECS::Service
      Properties:
        TaskDefinition: arn:aws:ecs:us-east-1:123456789012:task-definition/payments:7
        LoadBalancerInfo:
          ContainerName: web
          ContainerPort: 8080
";
        let AppSpec::Ecs(s) = parse(spec, Platform::Ecs).unwrap() else {
            panic!()
        };
        assert_eq!(
            s.id(),
            "ecs:arn:aws:ecs:us-east-1:123456789012:task-definition/payments:7#web:8080"
        );
        assert_eq!(s.label(), "task definition payments:7 (web:8080)");
    }

    #[test]
    fn bad_appspecs_say_where_and_what() {
        let err = |content: &str, platform| parse(content, platform).unwrap_err().to_string();
        assert!(
            err("Resources: [", Platform::Lambda).starts_with("not YAML or JSON"),
            "{}",
            err("Resources: [", Platform::Lambda)
        );
        assert_eq!(
            err(
                &LAMBDA.replace("        TargetVersion: \"3\"\n", ""),
                Platform::Lambda
            ),
            "Resources[0].payments.Properties.TargetVersion: missing"
        );
        assert_eq!(
            err(LAMBDA, Platform::Ecs),
            "Resources[0].payments.Type: is AWS::Lambda::Function, but a ECS deployment group deploys AWS::ECS::Service"
        );
        assert_eq!(
            err(
                &LAMBDA.replace("CurrentVersion: 2", "CurrentVersion: 3"),
                Platform::Lambda
            ),
            "Resources[0].payments.Properties.TargetVersion: is the CurrentVersion (3); CodeDeploy shifts an alias only to another version"
        );
        assert_eq!(
            err("version: 0.0\nResources: []\n", Platform::Lambda),
            "Resources: must hold exactly one resource, holds 0; rollback-aws deploys one function or service per deployment group"
        );
        assert_eq!(err("version: 0.0\n", Platform::Lambda), "no Resources");
    }

    #[test]
    fn platforms_are_read_as_codedeploy_names_them() {
        assert_eq!(Platform::of(None), Ok(Platform::Server));
        assert_eq!(
            Platform::of(Some(&ComputePlatform::Lambda)),
            Ok(Platform::Lambda)
        );
        let e = Platform::of(Some(&ComputePlatform::from("Quantum"))).unwrap_err();
        assert_eq!(
            e,
            "compute platform \"Quantum\", which rollback-aws does not know (it knows Server, Lambda and ECS)"
        );
    }
}
