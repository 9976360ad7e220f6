//! Tests against real remotes: bare repositories over `file://` and over
//! `git daemon` on a loopback port (see `support`), with the real `git` as
//! the reference for what they hold afterwards.

mod concurrent;
mod conformance;
mod engine;
mod failures;
mod history;
mod interrupted;
mod marks;
mod support;
