//! Restart policies: at most N restarts within a period, and the backoff between them.
//! Shared by supervisors (restarting a child) and the `retry` modifier (re-running a
//! failed step), through one [`Intensity`] counter. The `retry` modifier adds what to
//! retry ([`Retry`]): the errors a predicate accepts, panics only when asked.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, InvalidPolicy};

/// How long to wait before a restart (or a retry).
///
/// An exponential backoff is built with [`Backoff::exponential`], which refuses values
/// that cannot work (an initial delay of zero, a cap below the initial delay) with
/// [`InvalidPolicy`]; that is why the variant cannot be written as a literal outside this
/// crate. `None` and `Fixed` accept any value (`Fixed(Duration::ZERO)` is `None`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use pipewright::Backoff;
///
/// let backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1))?;
/// assert_eq!(backoff.delay(1, 0), Duration::from_millis(100));
/// assert_eq!(backoff.delay(3, 0), Duration::from_millis(400));
/// assert_eq!(backoff.delay(10, 0), Duration::from_secs(1)); // capped
/// # Ok::<(), pipewright::InvalidPolicy>(())
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
    /// out but never come sooner than half the nominal delay). Built with
    /// [`Backoff::exponential`], which checks that `initial > 0` and `max >= initial`.
    #[non_exhaustive]
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
    /// Exponential backoff without jitter: `initial`, then twice as long each time, up to
    /// `max`.
    ///
    /// # Errors
    ///
    /// [`InvalidPolicy::ZeroInitialDelay`] if `initial` is zero (it would never wait: use
    /// [`Backoff::None`]), [`InvalidPolicy::CapBelowInitialDelay`] if `max < initial`
    /// (every delay would be `max`: use [`Backoff::Fixed`]).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use pipewright::{Backoff, InvalidPolicy};
    /// let b = Backoff::exponential(Duration::from_millis(10), Duration::from_millis(50))?;
    /// assert_eq!(b.delay(2, 0), Duration::from_millis(20));
    /// assert_eq!(
    ///     Backoff::exponential(Duration::ZERO, Duration::from_secs(1)),
    ///     Err(InvalidPolicy::ZeroInitialDelay)
    /// );
    /// # Ok::<(), InvalidPolicy>(())
    /// ```
    pub const fn exponential(initial: Duration, max: Duration) -> Result<Self, InvalidPolicy> {
        if initial.is_zero() {
            return Err(InvalidPolicy::ZeroInitialDelay);
        }
        // `Ord` is not usable in a `const fn`; nanoseconds compare the same way.
        if max.as_nanos() < initial.as_nanos() {
            return Err(InvalidPolicy::CapBelowInitialDelay { initial, max });
        }
        Ok(Backoff::Exponential {
            initial,
            max,
            jitter: false,
        })
    }

    /// The same backoff with jitter (only meaningful for [`Backoff::Exponential`]).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use pipewright::Backoff;
    /// let b = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1))?.with_jitter();
    /// let delay = b.delay(1, 42);
    /// assert!(delay >= Duration::from_millis(50) && delay <= Duration::from_millis(100));
    /// # Ok::<(), pipewright::InvalidPolicy>(())
    /// ```
    #[must_use]
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

    /// The delay before restart number `attempt` (1 for the first restart within the
    /// policy's period). `random` feeds the jitter (any value; the same value gives the
    /// same delay).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use pipewright::Backoff;
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

    /// The shortest delay [`delay`](Backoff::delay) can give for `attempt`: with jitter,
    /// half the nominal delay (what a `random` of zero gives).
    fn least_delay(&self, attempt: u32) -> Duration {
        self.delay(attempt, 0)
    }
}

/// When to give up: at most `max_restarts` restarts within `within`, with `backoff`
/// between them. Used by supervisors (restarts of children) and by
/// [`Pipeline::retry`](crate::Pipeline::retry) and
/// [`Pipeline::retry_if`](crate::Pipeline::retry_if) (retries of a failed step).
///
/// Built with [`RestartPolicy::new`], which refuses a zero period: a policy always gives
/// up after at most `max_restarts` restarts made at one instant. [`with_backoff`]
/// refuses a backoff that would make the limit unreachable; a policy that is meant never
/// to give up says so with [`RestartPolicy::unlimited`].
///
/// **The backoff counts the restarts within the period**, not every restart since the
/// supervisor (or the retried instance) began: the `n`-th restart within the last
/// `within` waits the backoff's `n`-th delay, so after a healthy stretch longer than the
/// period the next restart waits the first delay again (as OTP's intensity window, and
/// Kubernetes' reset of its crash-loop backoff after a healthy run).
///
/// [`with_backoff`]: RestartPolicy::with_backoff
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use pipewright::{Backoff, RestartPolicy};
///
/// let policy = RestartPolicy::new(5, Duration::from_secs(10))?
///     .with_backoff(Backoff::Fixed(Duration::from_millis(100)))?;
/// assert_eq!(policy.max_restarts(), 5);
/// # Ok::<(), pipewright::InvalidPolicy>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    max_restarts: u32,
    within: Duration,
    backoff: Backoff,
}

impl Default for RestartPolicy {
    /// 3 restarts within 5 seconds, no backoff.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use pipewright::RestartPolicy;
    /// assert_eq!(RestartPolicy::default(), RestartPolicy::new(3, Duration::from_secs(5)).unwrap());
    /// ```
    fn default() -> Self {
        RestartPolicy {
            max_restarts: 3,
            within: Duration::from_secs(5),
            backoff: Backoff::None,
        }
    }
}

impl RestartPolicy {
    /// At most `max_restarts` restarts within any period of length `within`, no backoff.
    /// `max_restarts` may be 0 (give up at the first failure).
    ///
    /// Restarts are counted by when they are made: those made at the same instant (as
    /// under tokio's paused clock, where a synchronous retry does not move time) are all
    /// within any period, however short. The period bounds the rate, not the total: with
    /// no backoff and a real clock, restarts more than `within` apart never add up, so a
    /// period shorter than one try (a nanosecond) limits nothing; choose a period longer
    /// than a try, or a backoff.
    ///
    /// # Errors
    ///
    /// [`InvalidPolicy::ZeroPeriod`] if `within` is zero: no restart is within a zero
    /// period of another, so the policy would never give up.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use pipewright::{InvalidPolicy, RestartPolicy};
    /// assert_eq!(RestartPolicy::new(2, Duration::from_secs(1))?.within(), Duration::from_secs(1));
    /// assert_eq!(RestartPolicy::new(2, Duration::ZERO), Err(InvalidPolicy::ZeroPeriod));
    /// # Ok::<(), InvalidPolicy>(())
    /// ```
    pub const fn new(max_restarts: u32, within: Duration) -> Result<Self, InvalidPolicy> {
        if within.is_zero() {
            return Err(InvalidPolicy::ZeroPeriod);
        }
        Ok(RestartPolicy {
            max_restarts,
            within,
            backoff: Backoff::None,
        })
    }

    /// A policy that never gives up: every failure is restarted, after the backoff's
    /// delay for the number of restarts within the last `within` (so a child that ran
    /// healthily for longer than `within` restarts after the first delay again). For a
    /// daemon that must keep trying with a capped backoff.
    ///
    /// # Errors
    ///
    /// [`InvalidPolicy::ZeroPeriod`] if `within` is zero (the backoff would never reset).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use pipewright::{Backoff, RestartPolicy};
    /// let backoff = Backoff::exponential(Duration::from_millis(10), Duration::from_secs(5))?;
    /// let forever = RestartPolicy::unlimited(Duration::from_secs(60))?.with_backoff(backoff)?;
    /// assert_eq!(forever.max_restarts(), u32::MAX);
    /// # Ok::<(), pipewright::InvalidPolicy>(())
    /// ```
    pub const fn unlimited(within: Duration) -> Result<Self, InvalidPolicy> {
        RestartPolicy::new(u32::MAX, within)
    }

    /// The same policy with `backoff` between restarts.
    ///
    /// # Errors
    ///
    /// [`InvalidPolicy::LimitUnreachable`] if the backoff's own delays make the limit
    /// unreachable: `max_restarts` restarts of a child that fails at once take at least
    /// the sum of their first `max_restarts` delays (half of each, with jitter), and if
    /// that is not shorter than `within` the restarts never all fall within one period,
    /// so the policy would never give up. A policy of
    /// [`unlimited`](RestartPolicy::unlimited) restarts takes any backoff.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use pipewright::{Backoff, InvalidPolicy, RestartPolicy};
    /// let p = RestartPolicy::default().with_backoff(Backoff::Fixed(Duration::from_secs(1)))?;
    /// assert_eq!(p.backoff(), Backoff::Fixed(Duration::from_secs(1)));
    /// // 5 restarts 2 s apart never fit in 5 s: this policy could never give up.
    /// let refused = RestartPolicy::new(5, Duration::from_secs(5))?
    ///     .with_backoff(Backoff::Fixed(Duration::from_secs(2)));
    /// assert!(matches!(refused, Err(InvalidPolicy::LimitUnreachable { .. })));
    /// # Ok::<(), InvalidPolicy>(())
    /// ```
    pub fn with_backoff(mut self, backoff: Backoff) -> Result<Self, InvalidPolicy> {
        if self.max_restarts != u32::MAX {
            let least = (1..=self.max_restarts)
                .map(|restart| backoff.least_delay(restart))
                .try_fold(Duration::ZERO, |total, delay| {
                    let total = total.saturating_add(delay);
                    // Past the period the sum only grows: no need to add the rest.
                    if total >= self.within {
                        Err(total)
                    } else {
                        Ok(total)
                    }
                });
            if let Err(least) = least {
                return Err(InvalidPolicy::LimitUnreachable {
                    max_restarts: self.max_restarts,
                    within: self.within,
                    least,
                });
            }
        }
        self.backoff = backoff;
        Ok(self)
    }

    /// The most restarts allowed within [`within`](RestartPolicy::within).
    ///
    /// ```
    /// # use pipewright::RestartPolicy;
    /// assert_eq!(RestartPolicy::default().max_restarts(), 3);
    /// ```
    pub const fn max_restarts(&self) -> u32 {
        self.max_restarts
    }

    /// The period the restarts are counted over (never zero).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use pipewright::RestartPolicy;
    /// assert_eq!(RestartPolicy::default().within(), Duration::from_secs(5));
    /// ```
    pub const fn within(&self) -> Duration {
        self.within
    }

    /// The wait before each restart.
    ///
    /// ```
    /// # use pipewright::{Backoff, RestartPolicy};
    /// assert_eq!(RestartPolicy::default().backoff(), Backoff::None);
    /// ```
    pub const fn backoff(&self) -> Backoff {
        self.backoff
    }
}

/// The predicate of [`Pipeline::retry_if`](crate::Pipeline::retry_if).
pub(crate) type RetryWhen = Arc<dyn Fn(&Error) -> bool + Send + Sync + 'static>;

/// Which errors a pipeline's `retry` modifier retries (see
/// [`Pipeline::retry_if`](crate::Pipeline::retry_if)): the policy says how often and how
/// long to wait, `when` which errors (all when absent).
#[derive(Clone)]
pub(crate) struct Retry {
    pub(crate) policy: RestartPolicy,
    pub(crate) when: Option<RetryWhen>,
}

impl Retry {
    /// Whether a main step that failed with `error` is retried (the policy permitting).
    /// A panic only with `panics` (then the predicate decides too); the predicate is
    /// user code: its panic is returned as the error the step now fails with, unretried.
    pub(crate) fn accepts(&self, error: &Error, panics: bool) -> Result<bool, Error> {
        if error.is_panic() && !panics {
            return Ok(false);
        }
        match &self.when {
            None => Ok(true),
            Some(when) => catch_unwind(AssertUnwindSafe(|| when(error)))
                .map_err(|panic| Error::from_hook_panic("retry predicate", panic)),
        }
    }
}

/// Counts restarts against a [`RestartPolicy`]: remembers when the recent ones happened.
/// Restarts at the same instant all count (the period is never zero), so at most
/// `max_restarts` are allowed within any window of the period's length, even when the
/// clock does not move between them.
#[derive(Debug, Clone)]
pub(crate) struct Intensity {
    policy: RestartPolicy,
    recent: VecDeque<Instant>,
    random: u64,
}

/// How many recent restarts a policy that never gives up remembers: more than the 32
/// doublings after which an exponential backoff is at its cap.
const UNLIMITED_WINDOW: usize = 64;

impl Intensity {
    pub(crate) fn new(policy: RestartPolicy, seed: u64) -> Self {
        Intensity {
            policy,
            recent: VecDeque::new(),
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
        if self.recent.len() >= UNLIMITED_WINDOW && self.policy.max_restarts == u32::MAX {
            // Never gives up: only the backoff's exponent needs the count, and it is
            // saturated long before this many.
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        // The backoff grows with the restarts that count against the policy (those
        // within its period), so a healthy stretch longer than the period resets it.
        let within_period = u32::try_from(self.recent.len()).unwrap_or(u32::MAX);
        let random = self.next_random();
        Some(self.policy.backoff.delay(within_period, random))
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
    use crate::error::InvalidPolicy;
    use std::time::Duration;
    use tokio::time::Instant;

    #[test]
    fn intensity_allows_max_restarts_within_the_period_then_gives_up() {
        let start = Instant::now();
        let policy = RestartPolicy::new(2, Duration::from_secs(10)).unwrap();
        let mut intensity = Intensity::new(policy, 1);
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
    fn restarts_made_at_one_instant_all_count_against_a_one_nanosecond_period() {
        // Under tokio's paused clock (or a coarse one) tries follow each other without the
        // clock moving: the shortest period must still count them.
        let now = Instant::now();
        let policy = RestartPolicy::new(3, Duration::from_nanos(1)).unwrap();
        let mut intensity = Intensity::new(policy, 1);
        let allowed = (0..10)
            .take_while(|_| intensity.restart(now).is_some())
            .count();
        assert_eq!(allowed, 3);
        // One nanosecond later the period is over: restarts are allowed again.
        assert!(intensity.restart(now + Duration::from_nanos(1)).is_some());
    }

    #[test]
    fn exponential_backoff_doubles_up_to_its_cap_and_jitter_stays_in_the_upper_half() {
        let backoff =
            Backoff::exponential(Duration::from_millis(10), Duration::from_millis(70)).unwrap();
        let delays: Vec<_> = (1..=5).map(|n| backoff.delay(n, 0).as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 70, 70]);
        let policy = RestartPolicy::unlimited(Duration::from_secs(1))
            .unwrap()
            .with_backoff(backoff.with_jitter())
            .unwrap();
        let mut intensity = Intensity::new(policy, 7);
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
            Backoff::exponential(Duration::MAX, Duration::MAX)
                .unwrap()
                .delay(40, 0),
            Duration::MAX
        );
    }

    #[test]
    fn the_backoff_counts_restarts_within_the_period_and_resets_after_a_healthy_stretch() {
        let backoff =
            Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1)).unwrap();
        let policy = RestartPolicy::new(4, Duration::from_millis(300))
            .unwrap()
            .with_backoff(backoff)
            .unwrap();
        let mut intensity = Intensity::new(policy, 1);
        let start = Instant::now();
        let at = |millis| start + Duration::from_millis(millis);
        let delays: Vec<_> = [0, 11, 32, 74]
            .into_iter()
            .map(|millis| intensity.restart(at(millis)).unwrap().as_millis())
            .collect();
        assert_eq!(delays, [10, 20, 40, 80]);
        // 800 ms of healthy running, longer than the period: the first delay again.
        assert_eq!(intensity.restart(at(955)).unwrap().as_millis(), 10);
        assert_eq!(intensity.restart(at(966)).unwrap().as_millis(), 20);
        // Only the restarts still within the period count: 966 is, 955 is not at 1,256.
        assert_eq!(intensity.restart(at(1_256)).unwrap().as_millis(), 20);
    }

    #[test]
    fn a_backoff_that_makes_the_limit_unreachable_is_refused() {
        let fixed = |millis| Backoff::Fixed(Duration::from_millis(millis));
        let policy = RestartPolicy::new(3, Duration::from_millis(300)).unwrap();
        // 3 restarts 99 ms apart fit in 300 ms; 100 ms apart they never all do.
        assert!(policy.with_backoff(fixed(99)).is_ok());
        assert_eq!(
            policy.with_backoff(fixed(100)),
            Err(InvalidPolicy::LimitUnreachable {
                max_restarts: 3,
                within: Duration::from_millis(300),
                least: Duration::from_millis(300),
            })
        );
        assert_eq!(
            policy.with_backoff(fixed(100)).unwrap_err().to_string(),
            "3 restarts wait at least 300ms of backoff, not within 300ms"
        );
        // With jitter a delay may be half its nominal length: 50 + 100 + 100 < 300.
        let exponential =
            Backoff::exponential(Duration::from_millis(100), Duration::from_millis(200)).unwrap();
        assert!(policy.with_backoff(exponential).is_err());
        assert!(policy.with_backoff(exponential.with_jitter()).is_ok());
        // A policy that never gives up takes any backoff, and never gives up.
        let forever = RestartPolicy::unlimited(Duration::from_millis(300))
            .unwrap()
            .with_backoff(fixed(1_000))
            .unwrap();
        let mut intensity = Intensity::new(forever, 1);
        let now = Instant::now();
        assert!((0..1_000).all(|_| intensity.restart(now).is_some()));
        assert_eq!(intensity.recent.len(), super::UNLIMITED_WINDOW);
    }
}
