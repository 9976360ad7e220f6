//! In-memory backends to test a policy with: a [`InMemoryTarget`] with a
//! revision history, an [`InMemoryRollbacker`] that records what it did and can
//! be told to fail, and a [`ScriptedProbe`] that plays values, gaps and errors.

mod probe;
mod rollbacker;
mod target;

use std::sync::{Mutex, MutexGuard};

pub use probe::{ScriptStep, ScriptedProbe};
pub use rollbacker::{InMemoryRollbacker, RecordedRollback};
pub use target::{InMemoryTarget, RollbackRecord};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half
    // updated (every update is a single assignment), so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
