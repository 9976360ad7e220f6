//! `mlflow://MODEL@ALIAS` targets, for the watch file and the `rollback`
//! command.

use rollback_core::Result;
use rollback_core::registry::{Backend, Options, TargetScheme, TargetUrl, config_from, scheme};

use crate::{MlflowConfig, MlflowTarget};

/// `mlflow://MODEL@ALIAS`, with the options of [`MlflowConfig`]
/// (`tracking_uri`, else `MLFLOW_TRACKING_URI`; `auth`, else MLflow's
/// credential variables; `timeout`, `connect_timeout`, `page_size`,
/// `retry`).
pub fn mlflow_scheme() -> impl TargetScheme {
    scheme("mlflow", "mlflow://MODEL@ALIAS", config, |c| {
        Box::pin(async move {
            let model = MlflowTarget::connect(&c, None).await?;
            let rollbacker = model.rollbacker();
            Ok(Backend::new(model, rollbacker))
        })
    })
}

fn config(url: &TargetUrl, options: &Options) -> Result<MlflowConfig> {
    let (model, alias) = url.two_parts('@', "mlflow://MODEL@ALIAS")?;
    config_from(url, &[("model", model), ("alias", alias)], options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_names_model_and_alias() {
        let url = TargetUrl::parse("mlflow://recommender@champion").unwrap();
        let o = serde_json::json!({"tracking_uri": "http://127.0.0.1:5000"});
        let c = config(&url, o.as_object().unwrap()).unwrap();
        assert_eq!(c.model, "recommender");
        assert_eq!(c.alias.as_deref(), Some("champion"));
        for bad in ["mlflow://recommender", "mlflow://@champion"] {
            let e = mlflow_scheme()
                .check(&TargetUrl::parse(bad).unwrap(), &Options::new())
                .unwrap_err();
            assert!(e.to_string().contains("MODEL@ALIAS"), "{e}");
        }
    }
}
