//! The time left to answer a directive. Alexa waits about 8 s for a reply; every outbound call
//! made while handling a directive gets its timeout from the same deadline.

use std::time::Duration;

use tokio::time::Instant;

/// Alexa's reply budget, less a margin for Lambda's own overhead and the network back to Alexa.
pub const ALEXA_BUDGET: Duration = Duration::from_millis(7_000);

/// Kept free at the end of the budget to build and return the error reply after a timeout.
pub const REPLY_MARGIN: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    pub fn after(budget: Duration) -> Self {
        Deadline {
            at: Instant::now() + budget,
        }
    }

    /// The deadline for a directive: Alexa's budget, or less if the Lambda invocation itself has
    /// less time left (`lambda_remaining`), minus the reply margin in both cases.
    pub fn for_directive(lambda_remaining: Option<Duration>) -> Self {
        let budget = lambda_remaining.map_or(ALEXA_BUDGET, |r| r.min(ALEXA_BUDGET));
        Deadline::after(budget.saturating_sub(REPLY_MARGIN))
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
}
