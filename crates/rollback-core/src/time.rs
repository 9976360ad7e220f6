//! Time as the engine sees it: an explicit [`Timestamp`], and a [`Clock`]
//! trait so that the driver can run on real or virtual time.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, in milliseconds since the Unix epoch. The decision machine
/// only ever sees these, never a clock.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// From milliseconds since the Unix epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// From (possibly fractional) seconds since the Unix epoch, as Prometheus writes them.
    /// Returns `None` for NaN, infinite or out-of-range values.
    pub fn from_secs_f64(secs: f64) -> Option<Self> {
        let ms = (secs * 1000.0).round();
        if ms.is_finite() && ms.abs() < 9.0e15 {
            Some(Timestamp(ms as i64))
        } else {
            None
        }
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Parse an RFC 3339 time (`2026-11-27T12:00:00Z`) or a number of Unix seconds.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Ok(secs) = s.parse::<f64>() {
            return Self::from_secs_f64(secs);
        }
        humantime::parse_rfc3339_weak(s).ok().map(Self::from)
    }

    /// This time plus `d`, saturating.
    pub fn plus(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// This time minus `d`, saturating.
    pub fn minus(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// As a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_millis(self.0 as u64)
        } else {
            UNIX_EPOCH - Duration::from_millis(self.0.unsigned_abs())
        }
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 0 {
            write!(
                f,
                "{}",
                humantime::format_rfc3339_millis(self.to_system_time())
            )
        } else {
            write!(f, "{}ms", self.0)
        }
    }
}

/// Where the driver reads the time from. Inject a virtual clock for tests and replay.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from(SystemTime::now())
    }
}

/// A clock that follows tokio's time, starting at a fixed wall-clock instant.
/// Under `#[tokio::test(start_paused = true)]` it advances only when tokio's
/// virtual time does, so driver tests are exact and fast.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: Timestamp,
    started: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose `now()` is `origin` at the moment of this call.
    pub fn starting_at(origin: Timestamp) -> Self {
        TokioClock {
            origin,
            started: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.origin.plus(self.started.elapsed())
    }
}

/// Format a duration the way policies write them: `30s`, `5m`, `1h 30m`.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_and_unix_seconds() {
        let a = Timestamp::parse("2026-11-27T12:00:00Z").unwrap();
        let b = Timestamp::parse("1795780800").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            Timestamp::parse("1795780800.5").unwrap().as_millis(),
            1_795_780_800_500
        );
        assert_eq!(a.to_string(), "2026-11-27T12:00:00.000Z");
        assert!(Timestamp::parse("yesterday").is_none());
        assert!(Timestamp::parse("NaN").is_none());
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_millis(1000);
        assert_eq!(t.plus(Duration::from_secs(1)).as_millis(), 2000);
        assert_eq!(t.since(t.plus(Duration::from_secs(5))), Duration::ZERO);
        assert_eq!(
            t.plus(Duration::from_secs(5)).since(t),
            Duration::from_secs(5)
        );
    }
}
