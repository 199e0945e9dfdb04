//! Wall-clock time behind a trait, so lockouts, exit delays and entry delays can be tested
//! without waiting.

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

/// The furthest the adjustable clock may be moved from real (or frozen) time in all. Far beyond
/// any delay or lockout, and far inside chrono's range, so `now()` can never overflow.
pub const MAX_OFFSET: Duration = Duration::days(100 * 366);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    #[error("the clock only moves forward")]
    Backwards,
    #[error("the clock may move at most {max_days} days from real time in all")]
    TooFar { max_days: i64 },
}

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Real time plus an offset that only grows: the local stack's clock, which
/// `POST /sim/clock/advance` moves forward. With `frozen`, real time is ignored, which tests use
/// for exact arithmetic on delays.
#[derive(Debug)]
pub struct AdjustableClock {
    frozen_at: Option<DateTime<Utc>>,
    offset: Mutex<Duration>,
}

impl AdjustableClock {
    pub fn running() -> Self {
        AdjustableClock {
            frozen_at: None,
            offset: Mutex::new(Duration::zero()),
        }
    }

    pub fn frozen(at: DateTime<Utc>) -> Self {
        AdjustableClock {
            frozen_at: Some(at),
            offset: Mutex::new(Duration::zero()),
        }
    }

    /// Moves the clock forward by `by`, up to [`MAX_OFFSET`] in all: past that it stops there.
    /// A negative `by` does nothing.
    pub fn advance(&self, by: Duration) {
        let mut offset = self.offset.lock().unwrap_or_else(|p| p.into_inner());
        *offset = offset
            .checked_add(&by.max(Duration::zero()))
            .unwrap_or(MAX_OFFSET)
            .min(MAX_OFFSET);
    }

    /// Moves the clock forward by `by`, or refuses (leaving it untouched) when `by` is negative
    /// or would take it past [`MAX_OFFSET`].
    pub fn try_advance(&self, by: Duration) -> Result<DateTime<Utc>, ClockError> {
        if by < Duration::zero() {
            return Err(ClockError::Backwards);
        }
        let mut offset = self.offset.lock().unwrap_or_else(|p| p.into_inner());
        let next =
            offset
                .checked_add(&by)
                .filter(|n| *n <= MAX_OFFSET)
                .ok_or(ClockError::TooFar {
                    max_days: MAX_OFFSET.num_days(),
                })?;
        *offset = next;
        Ok(self.frozen_at.unwrap_or_else(Utc::now) + next)
    }
}

impl Clock for AdjustableClock {
    fn now(&self) -> DateTime<Utc> {
        let offset = *self.offset.lock().unwrap_or_else(|p| p.into_inner());
        self.frozen_at.unwrap_or_else(Utc::now) + offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_clock_moves_only_when_advanced() {
        let start = Utc::now();
        let c = AdjustableClock::frozen(start);
        assert_eq!(c.now(), start);
        c.advance(Duration::seconds(90));
        assert_eq!(c.now(), start + Duration::seconds(90));
        c.advance(Duration::seconds(-10));
        assert_eq!(c.now(), start + Duration::seconds(90));
    }

    #[test]
    fn the_offset_is_bounded_and_never_overflows() {
        let start = Utc::now();
        let c = AdjustableClock::frozen(start);
        assert_eq!(
            c.try_advance(Duration::seconds(-1)),
            Err(ClockError::Backwards)
        );
        assert!(matches!(
            c.try_advance(MAX_OFFSET + Duration::seconds(1)),
            Err(ClockError::TooFar { .. })
        ));
        assert_eq!(c.now(), start, "a refused move leaves the clock alone");
        assert_eq!(c.try_advance(MAX_OFFSET), Ok(start + MAX_OFFSET));
        assert!(c.try_advance(Duration::seconds(1)).is_err());
        // The infallible form saturates instead of overflowing.
        let c = AdjustableClock::frozen(start);
        c.advance(Duration::MAX);
        c.advance(Duration::MAX);
        assert_eq!(c.now(), start + MAX_OFFSET);
    }
}
