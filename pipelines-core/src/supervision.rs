//! Supervision (SEMANTICS 6), in the spirit of Erlang/OTP: restart policies with an
//! intensity limit and backoff, shared by supervisors and by the pipeline `retry`
//! modifier.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// How long to wait before a restart (or a retry).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use pipelines::Backoff;
///
/// let backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1));
/// assert_eq!(backoff.delay(1, 0), Duration::from_millis(100));
/// assert_eq!(backoff.delay(3, 0), Duration::from_millis(400));
/// assert_eq!(backoff.delay(10, 0), Duration::from_secs(1)); // capped
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backoff {
    /// Restart at once.
    None,
    /// Always wait this long.
    Fixed(Duration),
    /// Wait `initial`, then twice as long each time, up to `max`. With `jitter`, each
    /// delay is drawn uniformly from its upper half (so restarts of many children spread
    /// out but never come sooner than half the nominal delay).
    Exponential {
        /// The first delay.
        initial: Duration,
        /// The cap.
        max: Duration,
        /// Whether delays are randomised.
        jitter: bool,
    },
}

impl Backoff {
    /// Exponential backoff without jitter.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use pipelines::Backoff;
    /// let b = Backoff::exponential(Duration::from_millis(10), Duration::from_millis(50));
    /// assert_eq!(b.delay(2, 0), Duration::from_millis(20));
    /// ```
    pub const fn exponential(initial: Duration, max: Duration) -> Self {
        Backoff::Exponential {
            initial,
            max,
            jitter: false,
        }
    }

    /// The same backoff with jitter (only meaningful for [`Backoff::Exponential`]).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use pipelines::Backoff;
    /// let b = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1)).with_jitter();
    /// let delay = b.delay(1, 42);
    /// assert!(delay >= Duration::from_millis(50) && delay <= Duration::from_millis(100));
    /// ```
    pub const fn with_jitter(self) -> Self {
        match self {
            Backoff::Exponential { initial, max, .. } => Backoff::Exponential {
                initial,
                max,
                jitter: true,
            },
            other => other,
        }
    }

    /// The delay before restart number `attempt` (1 for the first). `random` feeds the
    /// jitter (any value; the same value gives the same delay).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use pipelines::Backoff;
    /// assert_eq!(Backoff::Fixed(Duration::from_secs(2)).delay(7, 0), Duration::from_secs(2));
    /// ```
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        match *self {
            Backoff::None => Duration::ZERO,
            Backoff::Fixed(delay) => delay,
            Backoff::Exponential {
                initial,
                max,
                jitter,
            } => {
                let doublings = attempt.saturating_sub(1).min(32);
                let nominal = initial
                    .checked_mul(1_u32 << doublings.min(31))
                    .map_or(max, |delay| delay.min(max));
                if jitter {
                    let half = nominal / 2;
                    let span = (nominal - half).as_nanos() as u64;
                    half + Duration::from_nanos(if span == 0 { 0 } else { random % (span + 1) })
                } else {
                    nominal
                }
            }
        }
    }
}

/// When to give up: at most `max_restarts` restarts within `within`, with `backoff`
/// between them. Used by supervisors (restarts of children) and by
/// [`Pipeline::retry`](crate::Pipeline::retry) (retries of a failed step).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use pipelines::{Backoff, RestartPolicy};
///
/// let policy = RestartPolicy::new(5, Duration::from_secs(10))
///     .with_backoff(Backoff::Fixed(Duration::from_millis(100)));
/// assert_eq!(policy.max_restarts(), 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    max_restarts: u32,
    within: Duration,
    backoff: Backoff,
}

impl Default for RestartPolicy {
    /// 3 restarts within 5 seconds, no backoff.
    fn default() -> Self {
        RestartPolicy::new(3, Duration::from_secs(5))
    }
}

impl RestartPolicy {
    /// At most `max_restarts` restarts within any period of length `within`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use pipelines::RestartPolicy;
    /// assert_eq!(RestartPolicy::new(2, Duration::from_secs(1)).within(), Duration::from_secs(1));
    /// ```
    pub const fn new(max_restarts: u32, within: Duration) -> Self {
        RestartPolicy {
            max_restarts,
            within,
            backoff: Backoff::None,
        }
    }

    /// The same policy with `backoff` between restarts.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use pipelines::{Backoff, RestartPolicy};
    /// let p = RestartPolicy::default().with_backoff(Backoff::Fixed(Duration::from_secs(1)));
    /// assert_eq!(p.backoff(), Backoff::Fixed(Duration::from_secs(1)));
    /// ```
    pub const fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The most restarts allowed within [`within`](RestartPolicy::within).
    pub const fn max_restarts(&self) -> u32 {
        self.max_restarts
    }

    /// The period the restarts are counted over.
    pub const fn within(&self) -> Duration {
        self.within
    }

    /// The wait before each restart.
    pub const fn backoff(&self) -> Backoff {
        self.backoff
    }
}

/// Counts restarts against a [`RestartPolicy`]: remembers when the recent ones happened.
#[derive(Debug, Clone)]
pub(crate) struct Intensity {
    policy: RestartPolicy,
    recent: VecDeque<Instant>,
    attempts: u32,
    random: u64,
}

impl Intensity {
    pub(crate) fn new(policy: RestartPolicy, seed: u64) -> Self {
        Intensity {
            policy,
            recent: VecDeque::new(),
            attempts: 0,
            // xorshift must not start at zero.
            random: seed | 1,
        }
    }

    /// Records a restart at `now` if the policy allows it, and returns the delay to wait
    /// before it; `None` means the policy gives up.
    pub(crate) fn restart(&mut self, now: Instant) -> Option<Duration> {
        while let Some(oldest) = self.recent.front() {
            if now.duration_since(*oldest) >= self.policy.within {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() >= self.policy.max_restarts as usize {
            return None;
        }
        self.recent.push_back(now);
        self.attempts += 1;
        let random = self.next_random();
        Some(self.policy.backoff.delay(self.attempts, random))
    }

    /// xorshift64*: enough to spread jittered delays, no dependency needed.
    fn next_random(&mut self) -> u64 {
        let mut x = self.random;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.random = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::{Backoff, Intensity, RestartPolicy};
    use std::time::Duration;
    use tokio::time::Instant;

    #[test]
    fn intensity_allows_max_restarts_within_the_period_then_gives_up() {
        let start = Instant::now();
        let mut intensity = Intensity::new(RestartPolicy::new(2, Duration::from_secs(10)), 1);
        assert_eq!(intensity.restart(start), Some(Duration::ZERO));
        assert_eq!(
            intensity.restart(start + Duration::from_secs(1)),
            Some(Duration::ZERO)
        );
        assert_eq!(intensity.restart(start + Duration::from_secs(2)), None);
        // Once the first restart is older than the period, one more is allowed.
        assert!(intensity.restart(start + Duration::from_secs(10)).is_some());
    }

    #[test]
    fn exponential_backoff_doubles_up_to_its_cap_and_jitter_stays_in_the_upper_half() {
        let backoff = Backoff::exponential(Duration::from_millis(10), Duration::from_millis(70));
        let delays: Vec<_> = (1..=5).map(|n| backoff.delay(n, 0).as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 70, 70]);
        let mut intensity = Intensity::new(
            RestartPolicy::new(100, Duration::from_secs(1)).with_backoff(backoff.with_jitter()),
            7,
        );
        let now = Instant::now();
        for attempt in 1..=50 {
            let nominal = backoff.delay(attempt, 0);
            let delay = intensity.restart(now).unwrap();
            assert!(
                delay >= nominal / 2 && delay <= nominal,
                "{delay:?} vs {nominal:?}"
            );
        }
        assert_eq!(
            Backoff::exponential(Duration::MAX, Duration::MAX).delay(40, 0),
            Duration::MAX
        );
    }
}
