//! `rollback-k8s`: see the workspace README. Work in progress.
