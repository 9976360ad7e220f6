//! `kubectl rollout undo` through rollback-k8s, as a command:
//!
//! ```text
//! cargo run -p rollback-k8s --example undo -- NAMESPACE DEPLOYMENT [--to-revision=N] [--dry-run=server|client] [--resume] [--context=NAME]
//! ```
//!
//! It reads the kubeconfig as kubectl does (`KUBECONFIG`, else
//! `~/.kube/config`), prints kubectl's line for the outcome and exits 1 with
//! the error on failure. BENCHMARKS.md times it against kubectl.

use rollback_core::policy::RetryPolicy;
use rollback_core::{DryRun, RollbackOutcome};
use rollback_k8s::{K8sConfig, K8sDeployment, UndoOptions, UndoTo};

fn usage() -> ! {
    eprintln!(
        "usage: undo NAMESPACE DEPLOYMENT [--to-revision=N] [--dry-run=server|client] [--resume] [--context=NAME]"
    );
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let [namespace, name] = positional.as_slice() else {
        usage()
    };
    let mut to = UndoTo::Previous;
    let mut dry_run = DryRun::None;
    let mut config = K8sConfig::new(namespace.as_str(), name.as_str()).retry(RetryPolicy::NEVER);
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        match flag.split_once('=') {
            Some(("--to-revision", n)) => {
                to = UndoTo::Number(n.parse().unwrap_or_else(|_| usage()))
            }
            Some(("--dry-run", "server")) => dry_run = DryRun::Server,
            Some(("--dry-run", "client")) => dry_run = DryRun::Client,
            Some(("--context", c)) => config = config.context(c),
            None if flag == "--resume" => config = config.resume_paused(true),
            _ => usage(),
        }
    }
    let options = UndoOptions {
        dry_run,
        expect_current: None,
    };
    let result = match K8sDeployment::connect(&config, None).await {
        Ok(d) => d.undo(&to, &options).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(RollbackOutcome::RolledBack { .. }) => println!("deployment.apps/{name} rolled back"),
        Ok(other) => println!("deployment.apps/{name} {}", other.detail()),
        Err(e) => {
            eprintln!("error: {}", e.full_message());
            std::process::exit(1)
        }
    }
}
