//! In-memory backends to test a policy with: a [`InMemoryTarget`] with a
//! revision history, an [`InMemoryRollbacker`] that records what it did and can
//! be told to fail, and a [`ScriptedProbe`] that plays values, gaps and errors.

mod probe;
mod rollbacker;
mod target;

pub use probe::{ScriptStep, ScriptedProbe};
pub use rollbacker::{InMemoryRollbacker, RecordedRollback};
pub use target::{InMemoryTarget, RollbackRecord};

use crate::lock;

#[cfg(test)]
mod tests;
