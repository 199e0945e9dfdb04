//! Wall-clock time behind a trait, so lockouts, exit delays and entry delays can be tested
//! without waiting.

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

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

    pub fn advance(&self, by: Duration) {
        let mut offset = self.offset.lock().unwrap_or_else(|p| p.into_inner());
        *offset += by.max(Duration::zero());
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
}
