//! Randomness for jitter and retry backoff, seeded so tests are exact.

use std::fmt;
use std::sync::Mutex;

/// A source of numbers in `[0, 1)`.
pub(super) trait Jitter: fmt::Debug + Send + Sync + 'static {
    /// The next number in `[0, 1)`.
    fn unit(&self) -> f64;
}

/// Jitter from a seeded pseudo-random generator: the same seed gives the
/// same sequence.
#[derive(Debug)]
pub(super) struct SeededJitter(Mutex<fastrand::Rng>);

impl SeededJitter {
    pub(super) fn new(seed: u64) -> Self {
        SeededJitter(Mutex::new(fastrand::Rng::with_seed(seed)))
    }
}

impl Jitter for SeededJitter {
    fn unit(&self) -> f64 {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).f64()
    }
}
