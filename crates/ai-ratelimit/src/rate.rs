//! The algorithm: GCRA (the generic cell rate algorithm) with variable cost, in integers.
//!
//! A rate of `amount` per `period` with a `burst` is a bucket that holds at most `burst`
//! units and refills continuously at `amount / period`: there are no windows, so there is
//! no double burst at a window edge. A meter keeps one number, its *debt*: how far its
//! theoretical arrival time runs ahead of now. Spending `n` units adds `n` units of debt;
//! time pays the debt back; a spend is admitted when the debt after it stays within the
//! burst. An idle meter is full: `burst` units at once, then `amount` per `period`.
//!
//! To stay exact the debt is kept in a scaled unit: one unit of capacity weighs
//! `period` (in microseconds) and every microsecond pays back `amount`. Reserving and then
//! refunding the same figure restores the meter exactly, and the time it takes to regain
//! capacity is an integer division. The Redis script does the same arithmetic in Lua.

use std::time::Duration;

/// A rate: `amount` units per `period`, and at most `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Units per period.
    pub amount: u64,
    /// The period, at least a microsecond.
    pub period: Duration,
    /// Most units spent at once from a full meter (the bucket's size); defaults to
    /// `amount`.
    pub burst: u64,
}

impl Rate {
    /// `amount` per `period`, with a burst of `amount`.
    pub fn new(amount: u64, period: Duration) -> Self {
        Rate {
            amount,
            period,
            burst: amount,
        }
    }

    /// `amount` per minute.
    pub fn per_minute(amount: u64) -> Self {
        Rate::new(amount, Duration::from_secs(60))
    }

    /// `amount` per second.
    pub fn per_second(amount: u64) -> Self {
        Rate::new(amount, Duration::from_secs(1))
    }

    /// Sets the burst (bucket size).
    pub fn burst(self, burst: u64) -> Self {
        Rate { burst, ..self }
    }

    /// The period in microseconds (at least 1).
    pub fn period_us(&self) -> u64 {
        u64::try_from(self.period.as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn capacity(&self) -> u128 {
        u128::from(self.burst) * u128::from(self.period_us())
    }

    fn weight(&self, units: u64) -> u128 {
        u128::from(units) * u128::from(self.period_us())
    }
}

/// A meter's state: debt in scaled units as of `at` (microseconds on the limiter's clock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meter {
    /// Scaled debt (see the module docs).
    pub debt: u128,
    /// When `debt` was written, microseconds.
    pub at: u64,
}

/// A meter's standing after a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    /// The configured units per period.
    pub limit: u64,
    /// Units that could be spent right now.
    pub remaining: u64,
    /// How long until the meter is full again.
    pub reset: Duration,
}

impl Meter {
    /// The debt at `now` (time paid some of it back).
    pub fn debt_at(&self, rate: &Rate, now: u64) -> u128 {
        let paid = u128::from(now.saturating_sub(self.at)) * u128::from(rate.amount.max(1));
        self.debt.saturating_sub(paid)
    }

    /// Whether a meter at `now` is full (can be forgotten).
    pub fn is_full(&self, rate: &Rate, now: u64) -> bool {
        self.debt_at(rate, now) == 0
    }

    /// Tries to spend `cost` at `now`: `Ok(new meter)` or `Err(wait)`, where `wait` is how
    /// long until it would fit (`None`: never, it is larger than the burst).
    pub fn try_spend(&self, rate: &Rate, now: u64, cost: u64) -> Result<Meter, Option<Duration>> {
        let debt = self.debt_at(rate, now) + rate.weight(cost);
        let cap = rate.capacity();
        // A zero-cost check (a peek) always passes and spends nothing.
        if debt <= cap || cost == 0 {
            // Time never moves backwards for a meter (a replica whose clock lags must not
            // make it pay the same interval back twice).
            return Ok(Meter {
                debt,
                at: now.max(self.at),
            });
        }
        if cost > rate.burst {
            return Err(None);
        }
        let us = (debt - cap).div_ceil(u128::from(rate.amount.max(1)));
        Err(Some(Duration::from_micros(
            us.min(u128::from(u64::MAX)) as u64
        )))
    }

    /// Adds `delta` units (negative: gives them back) at `now`, whatever the capacity:
    /// settling real usage may leave a debt beyond the burst, which later spends wait out.
    pub fn adjust(&self, rate: &Rate, now: u64, delta: i64) -> Meter {
        let debt = self.debt_at(rate, now);
        let w = rate.weight(delta.unsigned_abs());
        let debt = if delta >= 0 {
            debt + w
        } else {
            debt.saturating_sub(w)
        };
        Meter {
            debt,
            at: now.max(self.at),
        }
    }

    /// The standing at `now`.
    pub fn standing(&self, rate: &Rate, now: u64) -> Standing {
        let debt = self.debt_at(rate, now);
        let free = rate.capacity().saturating_sub(debt);
        let remaining = (free / u128::from(rate.period_us())) as u64;
        let reset = debt.div_ceil(u128::from(rate.amount.max(1)));
        Standing {
            limit: rate.amount,
            remaining,
            reset: Duration::from_micros(reset.min(u128::from(u64::MAX)) as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000;

    #[test]
    fn full_burst_then_steady_refill() {
        let r = Rate::per_minute(60);
        let mut m = Meter::default();
        for _ in 0..60 {
            m = m.try_spend(&r, 0, 1).expect("within burst");
        }
        assert_eq!(m.standing(&r, 0).remaining, 0);
        assert_eq!(m.try_spend(&r, 0, 1), Err(Some(Duration::from_secs(1))));
        // One unit back per second, not a whole window at the next minute.
        assert_eq!(m.standing(&r, SEC).remaining, 1);
        assert!(m.try_spend(&r, SEC, 2).is_err());
        assert_eq!(m.standing(&r, 60 * SEC).remaining, 60);
        assert_eq!(m.standing(&r, 0).reset, Duration::from_secs(60));
    }

    #[test]
    fn no_double_burst_at_a_window_edge() {
        let r = Rate::per_minute(100);
        let mut m = Meter::default();
        // 100 at 59.9 s, then at 60.1 s only what 0.2 s refilled.
        let t = 59_900_000;
        m = m.try_spend(&r, t, 100).expect("burst");
        let later = t + 200_000;
        assert_eq!(m.standing(&r, later).remaining, 0);
        assert!(m.try_spend(&r, later, 1).is_err());
    }

    #[test]
    fn larger_than_the_burst_never_fits() {
        let r = Rate::per_minute(10);
        assert_eq!(Meter::default().try_spend(&r, 0, 11), Err(None));
    }

    #[test]
    fn reserve_then_refund_is_exact() {
        // 7 per minute: a period that does not divide evenly.
        let r = Rate::per_minute(7);
        let m = Meter::default().try_spend(&r, 5, 5).expect("fits");
        let m = m.adjust(&r, 5, -3);
        assert_eq!(m.standing(&r, 5).remaining, 5);
        let m = m.adjust(&r, 5, -2);
        assert_eq!(m, Meter { debt: 0, at: 5 });
        // Debt beyond the burst from a settle: the next spend waits it out.
        let m = m.adjust(&r, 5, 10);
        assert_eq!(m.standing(&r, 5).remaining, 0);
        let wait = m.try_spend(&r, 5, 1).expect_err("in debt").expect("finite");
        assert_eq!(wait, Duration::from_micros(4 * 60 * SEC / 7 + 1));
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let r = Rate::new(u64::MAX, Duration::from_secs(86_400 * 365));
        let m = Meter::default()
            .try_spend(&r, u64::MAX / 2, u64::MAX)
            .expect("fits");
        let _ = m.standing(&r, u64::MAX);
        let _ = m.adjust(&r, 0, i64::MAX);
    }
}
