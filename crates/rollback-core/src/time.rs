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

/// 9999-12-31T23:59:59.999Z, the last time RFC 3339 can write.
const LAST_RFC3339_MILLIS: i64 = 253_402_300_799_999;

impl fmt::Display for Timestamp {
    /// RFC 3339 with milliseconds; a time RFC 3339 cannot write (before
    /// 1970 or after 9999) as milliseconds since the epoch, `-5ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if (0..=LAST_RFC3339_MILLIS).contains(&self.0) {
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

/// A clock that stands still until told to move: for tests of code that
/// takes the engine's time (a dedup window, a record's time). Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl ManualClock {
    /// A clock showing `at`.
    pub fn at(at: Timestamp) -> Self {
        ManualClock(std::sync::Arc::new(std::sync::atomic::AtomicI64::new(
            at.as_millis(),
        )))
    }

    /// Show `at` from now on.
    pub fn set(&self, at: Timestamp) {
        self.0
            .store(at.as_millis(), std::sync::atomic::Ordering::SeqCst);
    }

    /// Move forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.set(self.now().plus(d));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// Format a duration the way policies write them: `30s`, `5m`, `1h 30m`.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}

/// Human durations (`"30s"`, `"5m"`, `"1h 30m"`) for serde, as policies write
/// them. Backends use it for their own configuration:
/// `#[serde(with = "rollback_core::time::duration")]`, or
/// `#[serde(default, with = "rollback_core::time::duration::option")]`.
pub mod duration {
    use std::time::Duration;

    /// Serialize as `1h 30m`.
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    /// Parse `30s`, `5m`, `1h 30m`; errors quote the text and show the form.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        humantime::parse_duration(s.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?} ({e}); write it like \"30s\", \"5m\" or \"1h 30m\""
            ))
        })
    }

    /// The same for `Option<Duration>`.
    pub mod option {
        use std::time::Duration;

        /// Serialize `Some` as `1h 30m`, `None` as none.
        pub fn serialize<S: serde::Serializer>(
            d: &Option<Duration>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        /// Parse an optional duration.
        pub fn deserialize<'de, D: serde::Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            #[derive(serde::Deserialize)]
            struct Wrapped(#[serde(with = "super")] Duration);
            let v: Option<Wrapped> = serde::Deserialize::deserialize(d)?;
            Ok(v.map(|Wrapped(d)| d))
        }
    }
}

/// What one look at a slow change found, for [`poll_until`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll<T> {
    /// Done: stop looking.
    Ready(T),
    /// Not yet; how far it got, in words (kept for the time-out message).
    Pending(String),
}

/// What [`poll_until`] ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waited<T> {
    /// The look said ready.
    Ready(T),
    /// The time ran out; the last progress the look reported.
    TimedOut(String),
}

/// Look at something slow (a rollout, a deployment) every `interval` until
/// it is ready or `timeout` has passed, the way `kubectl rollout status`
/// waits. The first look is immediate and the last is at the deadline, so
/// a zero timeout looks once. An error from a look ends the wait with it.
/// `Duration::MAX` waits for ever, without overflowing. Runs on tokio's
/// time, so tests on paused time wait virtually.
pub async fn poll_until<T, F, Fut>(
    timeout: Duration,
    interval: Duration,
    mut look: F,
) -> crate::Result<Waited<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::Result<Poll<T>>>,
{
    let start = tokio::time::Instant::now();
    let deadline = start.checked_add(timeout);
    let interval = interval.max(Duration::from_millis(1));
    loop {
        let progress = match look().await? {
            Poll::Ready(v) => return Ok(Waited::Ready(v)),
            Poll::Pending(p) => p,
        };
        let now = tokio::time::Instant::now();
        let wait = match deadline {
            Some(d) if now >= d => return Ok(Waited::TimedOut(progress)),
            Some(d) => interval.min(d - now),
            None => interval,
        };
        tokio::time::sleep(wait).await;
    }
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

    #[tokio::test(start_paused = true)]
    async fn polls_until_ready_or_the_deadline() {
        let mut looks = 0;
        let r = poll_until(Duration::from_secs(10), Duration::from_secs(1), || {
            looks += 1;
            let n = looks;
            async move {
                Ok(if n == 3 {
                    Poll::Ready(n)
                } else {
                    Poll::Pending(format!("look {n}"))
                })
            }
        })
        .await
        .unwrap();
        assert_eq!(r, Waited::Ready(3));
        let start = tokio::time::Instant::now();
        let r: Waited<()> = poll_until(
            Duration::from_millis(2500),
            Duration::from_secs(1),
            || async { Ok(Poll::Pending("still rolling".into())) },
        )
        .await
        .unwrap();
        assert_eq!(r, Waited::TimedOut("still rolling".into()));
        assert_eq!(start.elapsed(), Duration::from_millis(2500));
        let r: Waited<()> = poll_until(Duration::ZERO, Duration::from_secs(1), || async {
            Ok(Poll::Pending("once".into()))
        })
        .await
        .unwrap();
        assert_eq!(r, Waited::TimedOut("once".into()));
        let e = poll_until::<(), _, _>(Duration::MAX, Duration::from_secs(1), || async {
            Err(crate::Error::transient("gone"))
        })
        .await
        .unwrap_err();
        assert_eq!(e.message(), "gone");
    }

    #[test]
    fn durations_read_as_policies_write_them() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct C {
            #[serde(with = "duration")]
            a: Duration,
            #[serde(default, with = "duration::option")]
            b: Option<Duration>,
        }
        let c: C = serde_json::from_str(r#"{"a": "1h 30m", "b": "5s"}"#).unwrap();
        assert_eq!(c.a, Duration::from_secs(5400));
        assert_eq!(c.b, Some(Duration::from_secs(5)));
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"a":"1h 30m","b":"5s"}"#
        );
        let e = serde_json::from_str::<C>(r#"{"a": "soon"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid duration \"soon\""), "{e}");
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
