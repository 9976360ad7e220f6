//! `rollback-aws`: see the workspace README. Work in progress.
