//! `rollback-mlflow`: see the workspace README. Work in progress.
