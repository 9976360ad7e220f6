//! `codedeploy://APPLICATION/GROUP` targets, for the watch file and the
//! `rollback` command.

use rollback_core::Result;
use rollback_core::registry::{Backend, Options, TargetScheme, TargetUrl, config_from, scheme};

use crate::{CodeDeployConfig, CodeDeployTarget};

const FORM: &str = "codedeploy://APPLICATION/GROUP";

/// `codedeploy://APPLICATION/GROUP`, with the options of
/// [`CodeDeployConfig`] (`region`, `profile`, `endpoint_url` for a local
/// server, `poll_interval`, `stop_timeout`, `call_timeout`,
/// `history_window`, `retry`); credentials from the AWS default chain.
pub fn codedeploy_scheme() -> impl TargetScheme {
    scheme("codedeploy", FORM, config, |c| {
        Box::pin(async move {
            let group = CodeDeployTarget::connect(&c, None).await?;
            Ok(Backend::new(group.clone(), group.rollbacker()))
        })
    })
}

fn config(url: &TargetUrl, options: &Options) -> Result<CodeDeployConfig> {
    let (application, group) = url.two_parts('/', FORM)?;
    let pairs = [("application", application), ("deployment_group", group)];
    config_from(url, &pairs, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_names_application_and_group() {
        let url = TargetUrl::parse("codedeploy://bank/payments").unwrap();
        let o = serde_json::json!({"region": "eu-west-1", "endpoint_url": "http://127.0.0.1:5000"});
        let c = config(&url, o.as_object().unwrap()).unwrap();
        assert_eq!(c.application, "bank");
        assert_eq!(c.deployment_group, "payments");
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        let o = serde_json::json!({"application": "other"});
        let e = codedeploy_scheme()
            .check(&url, o.as_object().unwrap())
            .unwrap_err();
        assert!(
            e.to_string().contains("`application` comes from the URL"),
            "{e}"
        );
    }
}
