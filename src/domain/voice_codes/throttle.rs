//! Throttling of wrong voice PINs, per household.
//!
//! Default policy ([`ThrottlePolicy::default`], documented in docs/voice-codes.md,
//! "Throttling policy"):
//!
//! | consecutive failures | consequence |
//! |---|---|
//! | 1–2 | none |
//! | 3 | voice disarm locked for 90 s |
//! | 6 | locked for 15 min |
//! | 9 | locked for 1 h |
//! | 10 | hard lock: only the household admin can reset it |
//!
//! - While locked, no code is evaluated for access: every attempt, the correct PIN included,
//!   gets the same UNAUTHORIZED and leaves the counters unchanged. A duress PIN still raises its
//!   silent alarm.
//! - A successful disarm, by the normal or the duress PIN alike, resets the count.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttle {
    /// Optimistic-concurrency version; 0 means never saved.
    #[serde(default)]
    pub version: u64,
    #[serde(default)]
    pub consecutive_failures: u32,
    #[serde(default)]
    pub locked_until: Option<DateTime<Utc>>,
    #[serde(default)]
    pub hard_locked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// (failure count, lockout) pairs: reaching the count locks for the duration.
    pub steps: Vec<(u32, Duration)>,
    /// Reaching this count locks until the admin resets.
    pub hard_lock_at: u32,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            steps: vec![
                (3, Duration::seconds(90)),
                (6, Duration::minutes(15)),
                (9, Duration::hours(1)),
            ],
            hard_lock_at: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// `until` is `None` for a hard lock.
    Locked {
        until: Option<DateTime<Utc>>,
    },
}

/// A lockout that a failure just started: the household admin is told about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    pub failures: u32,
    pub until: Option<DateTime<Utc>>,
}

impl ThrottlePolicy {
    pub fn gate(&self, t: &Throttle, now: DateTime<Utc>) -> Gate {
        if t.hard_locked {
            return Gate::Locked { until: None };
        }
        match t.locked_until {
            Some(until) if until > now => Gate::Locked { until: Some(until) },
            _ => Gate::Open,
        }
    }

    /// The state after a wrong PIN while the gate was open, and the lockout it starts, if any.
    pub fn after_failure(&self, t: &Throttle, now: DateTime<Utc>) -> (Throttle, Option<Lockout>) {
        let failures = t.consecutive_failures.saturating_add(1);
        let mut next = Throttle {
            version: t.version,
            consecutive_failures: failures,
            locked_until: t.locked_until,
            hard_locked: false,
        };
        let lockout = if failures >= self.hard_lock_at {
            next.hard_locked = true;
            next.locked_until = None;
            Some(Lockout {
                failures,
                until: None,
            })
        } else if let Some((_, d)) = self.steps.iter().find(|(n, _)| *n == failures) {
            let until = now + *d;
            next.locked_until = Some(until);
            Some(Lockout {
                failures,
                until: Some(until),
            })
        } else {
            None
        };
        (next, lockout)
    }

    /// The state after a successful disarm, by a normal or a duress code alike.
    pub fn after_success(&self, t: &Throttle) -> Throttle {
        Throttle {
            version: t.version,
            ..Throttle::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escalates_then_hard_locks() {
        let p = ThrottlePolicy::default();
        let mut now = Utc::now();
        let mut t = Throttle::default();
        let mut lockouts = vec![];
        for _ in 0..10 {
            // Wait out any lockout, as a patient guesser would.
            if let Gate::Locked { until: Some(u) } = p.gate(&t, now) {
                now = u + Duration::seconds(1);
            }
            assert_ne!(p.gate(&t, now), Gate::Locked { until: None });
            let (next, lockout) = p.after_failure(&t, now);
            if let Some(l) = lockout {
                lockouts.push((l.failures, l.until.map(|u| (u - now).num_seconds())));
            }
            t = next;
        }
        assert_eq!(
            lockouts,
            vec![(3, Some(90)), (6, Some(900)), (9, Some(3600)), (10, None)]
        );
        assert_eq!(
            p.gate(&t, now + Duration::days(365)),
            Gate::Locked { until: None }
        );
    }

    #[test]
    fn success_resets() {
        let p = ThrottlePolicy::default();
        let t = Throttle {
            version: 4,
            consecutive_failures: 2,
            locked_until: None,
            hard_locked: false,
        };
        assert_eq!(
            p.after_success(&t),
            Throttle {
                version: 4,
                ..Throttle::default()
            }
        );
    }
}
