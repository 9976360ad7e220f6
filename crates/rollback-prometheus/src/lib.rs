//! `rollback-prometheus`: see the workspace README. Work in progress.
