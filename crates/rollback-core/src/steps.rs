//! Counting the steps a backend takes in one rollback, and stopping it after
//! one of them, to test what an interruption leaves behind.
//!
//! A backend's rollback is several calls (tag the bad version, move the
//! alias, write the move record, ...). A process killed between two of them
//! must leave something the next call completes. A backend names each step
//! with [`Steps::step_paced`] (or [`Steps::step`]) before taking it; a test gives it
//! [`Steps::stop_after`]`(k)` to fail the `k+1`-th step as a kill would,
//! then asks again and checks the end state (`conformance` does this for
//! every backend).
//!
//! ```
//! use rollback_core::steps::Steps;
//! let steps = Steps::stop_after(1);
//! assert!(steps.step("tag the bad version").is_ok());
//! let e = steps.step("move the alias").unwrap_err();
//! assert!(e.to_string().contains("interrupted before step 2 (move the alias)"));
//! assert_eq!(steps.taken(), ["tag the bad version"]);
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{Error, ErrorKind, Result};

#[derive(Debug, Default)]
struct State {
    taken: Vec<String>,
    stop_after: Option<usize>,
    pause: Duration,
}

/// The step counter of one backend. Cloning shares it; the default never
/// interrupts and costs a lock per step.
#[derive(Debug, Clone, Default)]
pub struct Steps(Arc<Mutex<State>>);

impl Steps {
    /// Count steps, never interrupt.
    pub fn new() -> Self {
        Self::default()
    }

    /// Take `k` steps, then fail every further one with an error nothing
    /// retries (as a killed process would stop there).
    pub fn stop_after(k: usize) -> Self {
        let s = Self::default();
        s.lock().stop_after = Some(k);
        s
    }

    /// Wait `d` before each step (see [`Steps::step_paced`]), so a drill can
    /// kill the process at a known step.
    pub fn pace(self, d: Duration) -> Self {
        self.lock().pause = d;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Before a step named `name`: `Err` when the budget is spent.
    pub fn step(&self, name: &str) -> Result<()> {
        let mut s = self.lock();
        if s.stop_after.is_some_and(|k| s.taken.len() >= k) {
            // As a kill would: nothing in this process tries again.
            return Err(Error::new(
                ErrorKind::Transient,
                format!(
                    "interrupted before step {} ({name}) for a test",
                    s.taken.len() + 1
                ),
            )
            .with_retryable(false));
        }
        s.taken.push(name.to_owned());
        Ok(())
    }

    /// [`Steps::step`], after the pause set by [`Steps::pace`] (none by
    /// default). When pacing it logs `rollback step N: NAME` (tracing, info)
    /// before the pause, so a drill can see where the process is.
    pub async fn step_paced(&self, name: &str) -> Result<()> {
        let (pause, n) = {
            let s = self.lock();
            (s.pause, s.taken.len() + 1)
        };
        if !pause.is_zero() {
            tracing::info!(step = n, name, "rollback step {n}: {name}");
            tokio::time::sleep(pause).await;
        }
        self.step(name)
    }

    /// The names of the steps taken so far, in order.
    pub fn taken(&self) -> Vec<String> {
        self.lock().taken.clone()
    }

    /// Forget the steps taken (the budget stays).
    pub fn reset(&self) {
        self.lock().taken.clear();
    }
}
