//! Retrying transient backend failures with exponential backoff.

use std::time::Duration;

fn default_max_attempts() -> u32 {
    4
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(10)
}

/// How retryable failures ([`crate::Error::is_retryable`]) are retried:
/// `max_attempts` tries in all, waiting `initial_backoff`, then twice that,
/// up to `max_backoff`, each wait jittered down by up to a quarter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Tries in all, the first included. Default 4.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The first wait. Default 500ms.
    #[serde(default = "default_initial_backoff", with = "crate::time::duration")]
    pub initial_backoff: Duration,
    /// The longest wait. Default 10s.
    #[serde(default = "default_max_backoff", with = "crate::time::duration")]
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: default_max_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub const NEVER: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        initial_backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
    };

    /// The wait before try number `attempt + 1` (after `attempt` failed tries),
    /// before jitter; `None` when no try is left.
    pub fn backoff(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        Some(
            self.initial_backoff
                .saturating_mul(factor)
                .min(self.max_backoff),
        )
    }

    /// The wait with jitter: `unit` in `[0, 1)` removes up to a quarter of it.
    pub fn jittered(&self, attempt: u32, unit: f64) -> Option<Duration> {
        self.backoff(attempt)
            .map(|d| d.mul_f64(1.0 - 0.25 * unit.clamp(0.0, 1.0)))
    }

    /// Check the policy: at least one try, and a longest wait no shorter
    /// than the first. An error names the field and says why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_attempts == 0 {
            return Err(("max_attempts", "must be at least 1 (the first try)".into()));
        }
        if self.max_backoff < self.initial_backoff {
            return Err((
                "max_backoff",
                "must not be shorter than initial_backoff".into(),
            ));
        }
        Ok(())
    }

    /// Run `op` until it succeeds, fails with a non-retryable error, or no try
    /// is left. `on_retry` sees each retryable failure and the wait before the
    /// next try. `unit` gives jitter in `[0, 1)`.
    pub async fn run<T, F, Fut>(
        &self,
        mut op: F,
        mut unit: impl FnMut() -> f64,
        mut on_retry: impl FnMut(u32, &crate::Error, Duration),
    ) -> crate::Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = crate::Result<T>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match op(attempt).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() => match self.jittered(attempt, unit()) {
                    Some(wait) => {
                        on_retry(attempt, &e, wait);
                        tokio::time::sleep(wait).await;
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let r = RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
        };
        let waits: Vec<_> = (1..=6).map(|a| r.backoff(a).map(|d| d.as_secs())).collect();
        assert_eq!(
            waits,
            vec![Some(1), Some(2), Some(4), Some(5), Some(5), None]
        );
        assert_eq!(RetryPolicy::NEVER.backoff(1), None);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_only() {
        let r = RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(1),
        };
        let mut seen = Vec::new();
        let out: crate::Result<()> = r
            .run(
                |_| async { Err(Error::transient("503")) },
                || 0.0,
                |a, _, w| seen.push((a, w)),
            )
            .await;
        assert!(out.is_err());
        assert_eq!(
            seen,
            vec![(1, Duration::from_secs(1)), (2, Duration::from_secs(1))]
        );

        let mut tries = 0;
        let out: crate::Result<()> = r
            .run(
                |_| {
                    tries += 1;
                    async { Err(Error::permanent("403")) }
                },
                || 0.0,
                |_, _, _| {},
            )
            .await;
        assert_eq!(out.unwrap_err().message(), "403");
        assert_eq!(tries, 1);

        let out = r
            .run(
                |a| async move {
                    if a < 3 {
                        Err(Error::transient("x"))
                    } else {
                        Ok(a)
                    }
                },
                || 0.5,
                |_, _, _| {},
            )
            .await;
        assert_eq!(out.unwrap(), 3);
    }
}
