//! A CodeDeploy revision: where the deployable bundle lives.

use std::collections::BTreeMap;

use aws_sdk_codedeploy::types::{RevisionLocation, RevisionLocationType};
use rollback_core::{Revision, RevisionId, Timestamp};
use sha2::{Digest, Sha256};

use crate::appspec::{self, AppSpec, AppSpecError, Platform};

/// Attribute keys a [`CodeDeployRevision`] carries.
pub mod attributes {
    /// `S3`, `GitHub`, `AppSpecContent` or `String`.
    pub const REVISION_TYPE: &str = "codedeploy.revision_type";
    /// The S3 bucket.
    pub const S3_BUCKET: &str = "codedeploy.s3.bucket";
    /// The S3 key.
    pub const S3_KEY: &str = "codedeploy.s3.key";
    /// The S3 object version.
    pub const S3_VERSION: &str = "codedeploy.s3.version";
    /// The S3 ETag.
    pub const S3_ETAG: &str = "codedeploy.s3.etag";
    /// The bundle type (`zip`, `tar`, `tgz`, `YAML`, `JSON`).
    pub const S3_BUNDLE_TYPE: &str = "codedeploy.s3.bundle_type";
    /// The GitHub repository (`owner/name`).
    pub const GITHUB_REPOSITORY: &str = "codedeploy.github.repository";
    /// The GitHub commit.
    pub const GITHUB_COMMIT: &str = "codedeploy.github.commit";
    /// The SHA-256 of the AppSpec content (or raw string).
    pub const CONTENT_SHA256: &str = "codedeploy.content.sha256";
    /// The newest deployment of this revision in the deployment group.
    pub const LATEST_DEPLOYMENT: &str = "codedeploy.deployment_id";
    /// The status of that deployment.
    pub const LATEST_STATUS: &str = "codedeploy.status";
    /// How many listed deployments installed this revision.
    pub const DEPLOYMENT_COUNT: &str = "codedeploy.deployment_count";
    /// The deployment whose outcome decided the revision's health, if one did.
    pub const HEALTH_FROM: &str = "codedeploy.health_from";
    /// The application's compute platform (`Server`, `Lambda`, `ECS`).
    pub const COMPUTE_PLATFORM: &str = "codedeploy.compute_platform";
    /// Why the AppSpec of a Lambda or ECS revision cannot be read (where in
    /// it, and what); such a revision cannot be deployed again.
    pub const APPSPEC_ERROR: &str = "codedeploy.appspec.error";
    /// The Lambda function.
    pub const LAMBDA_FUNCTION: &str = "codedeploy.lambda.function";
    /// The Lambda alias the deployment shifts.
    pub const LAMBDA_ALIAS: &str = "codedeploy.lambda.alias";
    /// The version the alias was on before the newest deployment of this revision.
    pub const LAMBDA_CURRENT_VERSION: &str = "codedeploy.lambda.current_version";
    /// The version the alias is shifted to: what this revision runs.
    pub const LAMBDA_TARGET_VERSION: &str = "codedeploy.lambda.target_version";
    /// The ECS task definition.
    pub const ECS_TASK_DEFINITION: &str = "codedeploy.ecs.task_definition";
    /// The container of `LoadBalancerInfo` that takes traffic.
    pub const ECS_CONTAINER_NAME: &str = "codedeploy.ecs.container_name";
    /// Its port.
    pub const ECS_CONTAINER_PORT: &str = "codedeploy.ecs.container_port";
}

/// One revision of a CodeDeploy deployment group: a revision location (S3
/// object, GitHub commit, or AppSpec content), identified by the location
/// itself so that every deployment of the same bundle has the same id.
///
/// Ids: `s3://bucket/key?versionId=…&etag=…`, `github:owner/repo@commit`,
/// `appspec:sha256:<hex>`, `string:sha256:<hex>`. On the Lambda and ECS
/// compute platforms an AppSpec revision is what it puts in service:
/// `lambda:FUNCTION:ALIAS@TARGET_VERSION` (every AppSpec that shifts the
/// alias to that version, whatever version it shifts from) and
/// `ecs:TASK_DEFINITION#CONTAINER:PORT`; an AppSpec that cannot be read
/// keeps its content id and says why in [`attributes::APPSPEC_ERROR`]. A
/// deployment whose revision CodeDeploy did not report gets
/// `deployment:<id>`; it cannot be redeployed.
#[derive(Debug, Clone)]
pub struct CodeDeployRevision {
    pub(crate) id: RevisionId,
    pub(crate) label: String,
    pub(crate) created_at: Option<Timestamp>,
    pub(crate) attributes: BTreeMap<String, String>,
    pub(crate) location: Option<RevisionLocation>,
    /// The AppSpec of a Lambda or ECS revision, or why it cannot be read.
    pub(crate) appspec: Option<Result<AppSpec, AppSpecError>>,
}

impl CodeDeployRevision {
    /// The revision of a location of a Server (EC2/on-premises)
    /// application. `None` when the location names no bundle (no S3 bucket
    /// and key, no GitHub repository and commit, no content).
    pub fn from_location(location: &RevisionLocation) -> Option<Self> {
        Self::on_platform(location, Platform::Server)
    }

    /// The revision of a location of an application on `platform`.
    pub(crate) fn on_platform(location: &RevisionLocation, platform: Platform) -> Option<Self> {
        let (id, label, attributes, appspec) = identify(location, platform)?;
        Some(CodeDeployRevision {
            id,
            label,
            created_at: None,
            attributes,
            location: Some(location.clone()),
            appspec,
        })
    }

    /// The Lambda function resource of its AppSpec, when it has one that reads.
    pub(crate) fn lambda(&self) -> Option<&appspec::LambdaSpec> {
        match &self.appspec {
            Some(Ok(AppSpec::Lambda(spec))) => Some(spec),
            _ => None,
        }
    }

    /// A stand-in for a deployment whose revision location is unknown.
    pub(crate) fn unknown(deployment_id: &str) -> Self {
        CodeDeployRevision {
            id: RevisionId::new(format!("deployment:{deployment_id}")),
            label: format!("unknown revision of deployment {deployment_id}"),
            created_at: None,
            attributes: BTreeMap::new(),
            location: None,
            appspec: None,
        }
    }

    /// Where the bundle lives, as CodeDeploy's `CreateDeployment` takes it.
    pub fn location(&self) -> Option<&RevisionLocation> {
        self.location.as_ref()
    }
}

impl Revision for CodeDeployRevision {
    fn id(&self) -> &RevisionId {
        &self.id
    }
    fn label(&self) -> &str {
        &self.label
    }
    fn created_at(&self) -> Option<Timestamp> {
        self.created_at
    }
    fn attributes(&self) -> &BTreeMap<String, String> {
        &self.attributes
    }
}

/// The hex SHA-256 of some text.
pub(crate) fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first 12 characters, as labels show hashes.
fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// The id, label, attributes and (on Lambda and ECS) AppSpec of a location.
type Identified = (
    RevisionId,
    String,
    BTreeMap<String, String>,
    Option<Result<AppSpec, AppSpecError>>,
);

/// The id, label, attributes and AppSpec of a location of an application on `platform`.
fn identify(location: &RevisionLocation, platform: Platform) -> Option<Identified> {
    let (id, label, mut attrs) = identify_location(location)?;
    attrs.insert(
        attributes::COMPUTE_PLATFORM.to_owned(),
        platform.as_str().to_owned(),
    );
    if platform == Platform::Server {
        return Some((id, label, attrs, None));
    }
    let content = match location.revision_type() {
        Some(RevisionLocationType::AppSpecContent) => location
            .app_spec_content()
            .and_then(|c| c.content())
            .map(str::to_owned),
        Some(RevisionLocationType::String) => location
            .string()
            .and_then(|c| c.content())
            .map(str::to_owned),
        // A bundle in S3 or GitHub: identified by where it lives.
        _ => return Some((id, label, attrs, None)),
    };
    let parsed = match content {
        Some(text) => appspec::parse(&text, platform),
        None => Err(AppSpecError {
            at: String::new(),
            problem: "CodeDeploy reported the AppSpec's hash but not its content".into(),
        }),
    };
    use attributes as a;
    let (id, label) = match &parsed {
        Ok(AppSpec::Lambda(s)) => {
            attrs.insert(a::LAMBDA_FUNCTION.to_owned(), s.name.clone());
            attrs.insert(a::LAMBDA_ALIAS.to_owned(), s.alias.clone());
            attrs.insert(
                a::LAMBDA_CURRENT_VERSION.to_owned(),
                s.current_version.clone(),
            );
            attrs.insert(
                a::LAMBDA_TARGET_VERSION.to_owned(),
                s.target_version.clone(),
            );
            (RevisionId::new(s.id()), s.label())
        }
        Ok(AppSpec::Ecs(s)) => {
            attrs.insert(a::ECS_TASK_DEFINITION.to_owned(), s.task_definition.clone());
            if let Some((name, port)) = &s.container {
                attrs.insert(a::ECS_CONTAINER_NAME.to_owned(), name.clone());
                attrs.insert(a::ECS_CONTAINER_PORT.to_owned(), port.clone());
            }
            (RevisionId::new(s.id()), s.label())
        }
        Err(e) => {
            attrs.insert(a::APPSPEC_ERROR.to_owned(), e.to_string());
            (id, label)
        }
    };
    Some((id, label, attrs, Some(parsed)))
}

/// The id, label and attributes of a location, by where it lives.
fn identify_location(
    location: &RevisionLocation,
) -> Option<(RevisionId, String, BTreeMap<String, String>)> {
    use attributes as a;
    let mut attrs = BTreeMap::new();
    let kind = match location.revision_type() {
        Some(t) => t.clone(),
        None if location.s3_location().is_some() => RevisionLocationType::S3,
        None if location.git_hub_location().is_some() => RevisionLocationType::GitHub,
        None if location.app_spec_content().is_some() => RevisionLocationType::AppSpecContent,
        None if location.string().is_some() => RevisionLocationType::String,
        None => return None,
    };
    attrs.insert(a::REVISION_TYPE.to_owned(), kind.as_str().to_owned());
    match kind {
        RevisionLocationType::S3 => {
            let s3 = location.s3_location()?;
            let bucket = non_empty(s3.bucket())?;
            let key = non_empty(s3.key())?;
            let version = non_empty(s3.version());
            let etag = non_empty(s3.e_tag()).map(|e| e.trim_matches('"'));
            let mut id = format!("s3://{bucket}/{key}");
            let mut label = id.clone();
            let mut sep = '?';
            if let Some(v) = version {
                id.push_str(&format!("{sep}versionId={v}"));
                label.push_str(&format!(" (version {v})"));
                sep = '&';
                attrs.insert(a::S3_VERSION.to_owned(), v.to_owned());
            }
            if let Some(e) = etag {
                id.push_str(&format!("{sep}etag={e}"));
                if version.is_none() {
                    label.push_str(&format!(" (etag {e})"));
                }
                attrs.insert(a::S3_ETAG.to_owned(), e.to_owned());
            }
            attrs.insert(a::S3_BUCKET.to_owned(), bucket.to_owned());
            attrs.insert(a::S3_KEY.to_owned(), key.to_owned());
            if let Some(b) = s3.bundle_type() {
                attrs.insert(a::S3_BUNDLE_TYPE.to_owned(), b.as_str().to_owned());
            }
            Some((RevisionId::new(id), label, attrs))
        }
        RevisionLocationType::GitHub => {
            let gh = location.git_hub_location()?;
            let repo = non_empty(gh.repository())?;
            let commit = non_empty(gh.commit_id())?;
            attrs.insert(a::GITHUB_REPOSITORY.to_owned(), repo.to_owned());
            attrs.insert(a::GITHUB_COMMIT.to_owned(), commit.to_owned());
            Some((
                RevisionId::new(format!("github:{repo}@{commit}")),
                format!("{repo}@{}", short(commit)),
                attrs,
            ))
        }
        RevisionLocationType::AppSpecContent => {
            let spec = location.app_spec_content()?;
            let sha = match (spec.content(), non_empty(spec.sha256())) {
                (Some(content), _) => sha256_hex(content),
                (None, Some(sha)) => sha.to_ascii_lowercase(),
                (None, None) => return None,
            };
            attrs.insert(a::CONTENT_SHA256.to_owned(), sha.clone());
            let label = format!("AppSpec sha256:{}", short(&sha));
            Some((
                RevisionId::new(format!("appspec:sha256:{sha}")),
                label,
                attrs,
            ))
        }
        RevisionLocationType::String => {
            let raw = location.string()?;
            let sha = match (raw.content(), non_empty(raw.sha256())) {
                (Some(content), _) => sha256_hex(content),
                (None, Some(sha)) => sha.to_ascii_lowercase(),
                (None, None) => return None,
            };
            attrs.insert(a::CONTENT_SHA256.to_owned(), sha.clone());
            let label = format!("AppSpec string sha256:{}", short(&sha));
            Some((
                RevisionId::new(format!("string:sha256:{sha}")),
                label,
                attrs,
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_codedeploy::types::{AppSpecContent, BundleType, GitHubLocation, S3Location};

    use super::*;

    fn s3(bucket: &str, key: &str, version: Option<&str>, etag: Option<&str>) -> RevisionLocation {
        let mut loc = S3Location::builder()
            .bucket(bucket)
            .key(key)
            .bundle_type(BundleType::Zip);
        if let Some(v) = version {
            loc = loc.version(v);
        }
        if let Some(e) = etag {
            loc = loc.e_tag(e);
        }
        RevisionLocation::builder()
            .revision_type(RevisionLocationType::S3)
            .s3_location(loc.build())
            .build()
    }

    #[test]
    fn s3_ids_name_bucket_key_version_and_etag() {
        let r = CodeDeployRevision::from_location(&s3(
            "bank",
            "payments/app.zip",
            Some("v7"),
            Some("\"abc\""),
        ))
        .unwrap();
        assert_eq!(
            r.id().as_str(),
            "s3://bank/payments/app.zip?versionId=v7&etag=abc"
        );
        assert_eq!(r.label(), "s3://bank/payments/app.zip (version v7)");
        assert_eq!(r.attributes()[attributes::S3_BUNDLE_TYPE], "zip");
        let etag_only =
            CodeDeployRevision::from_location(&s3("bank", "a.zip", None, Some("abc"))).unwrap();
        assert_eq!(etag_only.id().as_str(), "s3://bank/a.zip?etag=abc");
        let bare = CodeDeployRevision::from_location(&s3("bank", "a.zip", None, None)).unwrap();
        assert_eq!(bare.id().as_str(), "s3://bank/a.zip");
        assert!(CodeDeployRevision::from_location(&s3("", "a.zip", None, None)).is_none());
    }

    #[test]
    fn github_ids_name_repository_and_commit() {
        let loc = RevisionLocation::builder()
            .revision_type(RevisionLocationType::GitHub)
            .git_hub_location(
                GitHubLocation::builder()
                    .repository("bank/payments")
                    .commit_id("0123456789abcdef")
                    .build(),
            )
            .build();
        let r = CodeDeployRevision::from_location(&loc).unwrap();
        assert_eq!(r.id().as_str(), "github:bank/payments@0123456789abcdef");
        assert_eq!(r.label(), "bank/payments@0123456789ab");
    }

    #[test]
    fn appspec_ids_are_the_content_hash_whatever_sha256_field_says() {
        let loc = |content: &str, sha: &str| {
            RevisionLocation::builder()
                .revision_type(RevisionLocationType::AppSpecContent)
                .app_spec_content(
                    AppSpecContent::builder()
                        .content(content)
                        .sha256(sha)
                        .build(),
                )
                .build()
        };
        let a = CodeDeployRevision::from_location(&loc("version: 0.0", "ignored")).unwrap();
        let b = CodeDeployRevision::from_location(&loc("version: 0.0", "other")).unwrap();
        assert_eq!(a.id(), b.id());
        assert_eq!(
            a.id().as_str(),
            format!("appspec:sha256:{}", sha256_hex("version: 0.0"))
        );
        // the SHA-256 of "abc"
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_reported_sha256_that_is_not_hex_does_not_break_the_label() {
        let loc = RevisionLocation::builder()
            .revision_type(RevisionLocationType::AppSpecContent)
            .app_spec_content(AppSpecContent::builder().sha256("ééééééééééééé").build())
            .build();
        let r = CodeDeployRevision::from_location(&loc).unwrap();
        assert_eq!(r.label(), "AppSpec sha256:éééééééééééé");
    }

    #[test]
    fn a_location_without_a_bundle_has_no_revision() {
        assert!(CodeDeployRevision::from_location(&RevisionLocation::builder().build()).is_none());
        let gh = RevisionLocation::builder()
            .revision_type(RevisionLocationType::GitHub)
            .build();
        assert!(CodeDeployRevision::from_location(&gh).is_none());
    }
}
