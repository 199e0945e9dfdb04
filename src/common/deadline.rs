//! The time left to answer a directive. Alexa waits about 8 s for a reply; every outbound call
//! made while handling a directive gets its timeout from the same deadline.

use std::time::Duration;

use tokio::time::Instant;

/// Alexa's reply budget, less a margin for Lambda's own overhead and the network back to Alexa.
pub const ALEXA_BUDGET: Duration = Duration::from_millis(7_000);

/// Kept free at the end of the budget to build and return the error reply after a timeout.
pub const REPLY_MARGIN: Duration = Duration::from_millis(300);

/// Of [`REPLY_MARGIN`], what a write after the deadline ([`Deadline::grace`]) may never take:
/// the reply is still built and returned inside the invocation.
pub const REPLY_BUILD: Duration = Duration::from_millis(150);

#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    /// When the invocation itself ends (Lambda's timeout or the assistant's budget), for a
    /// directive's deadline; `None` where nothing ends hard after `at`.
    end: Option<Instant>,
}

impl Deadline {
    pub fn after(budget: Duration) -> Self {
        Deadline {
            at: Instant::now() + budget,
            end: None,
        }
    }

    /// The deadline for a directive: Alexa's budget, or less if the Lambda invocation itself has
    /// less time left (`lambda_remaining`), minus the reply margin in both cases.
    pub fn for_directive(lambda_remaining: Option<Duration>) -> Self {
        let budget = lambda_remaining.map_or(ALEXA_BUDGET, |r| r.min(ALEXA_BUDGET));
        let now = Instant::now();
        Deadline {
            at: now + budget.saturating_sub(REPLY_MARGIN),
            end: Some(now + budget),
        }
    }

    /// For a step that should get at least `floor` even when this deadline is (nearly) spent:
    /// `floor` from now, or this deadline if later; but never into the last [`REPLY_BUILD`] of
    /// the invocation, so a floor can't push the reply past the function's timeout.
    pub fn grace(&self, floor: Duration) -> Deadline {
        let wanted = self.at.max(Instant::now() + floor);
        let at = match self.end {
            Some(end) => wanted.min(self.at.max(end.checked_sub(REPLY_BUILD).unwrap_or(self.at))),
            None => wanted,
        };
        Deadline { at, end: self.end }
    }

    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    pub fn expired(&self) -> bool {
        self.remaining().is_zero()
    }

    pub fn instant(&self) -> Instant {
        self.at
    }

    /// This deadline moved `by` earlier: the end of the work that must leave `by` to what follows.
    pub fn leaving(&self, by: Duration) -> Deadline {
        Deadline {
            at: self.at.checked_sub(by).unwrap_or_else(Instant::now),
            end: self.end,
        }
    }

    /// A deadline for one step of the work: at most `cap` from now, never later than this one.
    pub fn capped(&self, cap: Duration) -> Deadline {
        Deadline {
            at: self.at.min(Instant::now() + cap),
            end: self.end,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_deadline_takes_the_smaller_budget_less_margin() {
        let d = Deadline::for_directive(Some(Duration::from_secs(2)));
        assert!(d.remaining() <= Duration::from_millis(1_700));
        assert!(d.remaining() > Duration::from_millis(1_500));
        let d = Deadline::for_directive(Some(Duration::from_secs(60)));
        assert!(d.remaining() <= ALEXA_BUDGET - REPLY_MARGIN);
        assert!(Deadline::for_directive(Some(Duration::from_millis(100))).expired());
    }

    #[test]
    fn a_capped_deadline_is_the_earlier_one() {
        let d = Deadline::after(Duration::from_secs(5));
        assert!(d.capped(Duration::from_secs(1)).remaining() <= Duration::from_secs(1));
        assert!(d.capped(Duration::from_secs(60)).instant() == d.instant());
        assert_eq!(
            d.leaving(Duration::from_secs(2)).instant() + Duration::from_secs(2),
            d.instant()
        );
        assert!(d.leaving(Duration::from_secs(60)).expired());
    }

    #[test]
    fn grace_never_reaches_into_the_invocations_last_moments() {
        // A directive with 1 s: deadline at 700 ms, invocation end at 1 s.
        let d = Deadline::for_directive(Some(Duration::from_secs(1)));
        assert_eq!(d.grace(Duration::from_millis(10)).instant(), d.instant());
        let spent = d.leaving(Duration::from_millis(700));
        // Spent: a 2 s floor gets only up to the invocation's end less REPLY_BUILD.
        let g = spent.grace(Duration::from_secs(2));
        assert_eq!(g.instant() + REPLY_BUILD, d.instant() + REPLY_MARGIN);
        assert!(spent.grace(Duration::from_millis(100)).remaining() <= Duration::from_millis(100));
        // Without an invocation end the floor is given in full.
        let free = Deadline::after(Duration::ZERO).grace(Duration::from_millis(600));
        assert!(free.remaining() > Duration::from_millis(500));
    }
}
