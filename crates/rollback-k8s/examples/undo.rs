//! `kubectl rollout undo` through rollback-k8s, as a command:
//!
//! ```text
//! cargo run -p rollback-k8s --example undo -- NAMESPACE DEPLOYMENT [--to-revision=N] [--dry-run=server|client] [--resume]
//! ```
//!
//! It reads the kubeconfig as kubectl does (`KUBECONFIG`, else
//! `~/.kube/config`), prints kubectl's line for the outcome and exits 1 with
//! the error on failure. BENCHMARKS.md times it against kubectl.

use rollback_core::{RetryPolicy, RollbackOutcome};
use rollback_k8s::{DryRun, K8sDeployment, UndoOptions, UndoTo};

fn usage() -> ! {
    eprintln!(
        "usage: undo NAMESPACE DEPLOYMENT [--to-revision=N] [--dry-run=server|client] [--resume]"
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
    let mut dry_run = None;
    let mut resume = false;
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        match flag.split_once('=') {
            Some(("--to-revision", n)) => {
                to = UndoTo::Number(n.parse().unwrap_or_else(|_| usage()))
            }
            Some(("--dry-run", "server")) => dry_run = Some(DryRun::Server),
            Some(("--dry-run", "client")) => dry_run = Some(DryRun::Client),
            None if flag == "--resume" => resume = true,
            _ => usage(),
        }
    }
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: reading the kubeconfig: {e}");
            std::process::exit(1)
        }
    };
    let deployment = K8sDeployment::builder(client)
        .namespace(namespace.as_str())
        .name(name.as_str())
        .retry(RetryPolicy::NEVER)
        .dry_run(dry_run.unwrap_or_default())
        .resume_paused(resume)
        .build();
    let result = match deployment {
        Ok(d) => {
            d.undo(
                &to,
                &UndoOptions {
                    dry_run: dry_run.is_some(),
                    expect_current: None,
                },
            )
            .await
        }
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
