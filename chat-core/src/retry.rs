//! When to try an envelope again, and when to give up. Pure: the caller supplies `now`
//! and the jitter.

use crate::message::UnixMs;

/// First retry soon: a dropped link on a LAN usually comes back within seconds.
const FIRST_DELAY_MS: i64 = 2_000;
/// A peer that is away for the day is tried every five minutes, not hammered.
const MAX_DELAY_MS: i64 = 5 * 60 * 1_000;
/// ±20 %: nodes that lost the same peer at the same moment do not retry in lockstep.
const JITTER_SPAN: f64 = 0.4;
/// A sender gives up an envelope this long after it was created (its ULID time) and
/// marks the message failed. The receiver's dedupe window is derived from it (see
/// `dedupe`), so changing it means changing both sides' documentation.
pub const MAX_RETRY_AGE_MS: i64 = 7 * 24 * 60 * 60 * 1_000;
/// How far a measured clock offset may be from the sender's real one: the receiver
/// judges an envelope's age on the sender's clock within this error (storage's
/// `inbound` module docs derive the dedupe rule from it).
pub const MAX_OFFSET_ERROR_MS: i64 = 24 * 60 * 60 * 1_000;
/// How long a receiver keeps an envelope's dedupe entry: every copy a sender may still
/// retry finds it.
pub const DEDUPE_RETENTION_MS: i64 = MAX_RETRY_AGE_MS + 2 * MAX_OFFSET_ERROR_MS;

/// The backoff schedule. The default is the product's; tests shrink it (a node reads
/// `LANCHAT_RETRY_FIRST_MS` / `LANCHAT_RETRY_MAX_MS`) so "an hour offline" fits in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first_delay_ms: i64,
    pub max_delay_ms: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_delay_ms: FIRST_DELAY_MS,
            max_delay_ms: MAX_DELAY_MS,
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1`, where `attempt` counts attempts made so far
    /// (≥ 1). `jitter` is uniform in `[0, 1)`.
    pub fn delay_ms(&self, attempt: u32, jitter: f64) -> i64 {
        let doublings = attempt.saturating_sub(1).min(20);
        let base = self
            .first_delay_ms
            .max(1)
            .saturating_mul(1 << doublings)
            .min(self.max_delay_ms.max(1));
        let factor = 1.0 - JITTER_SPAN / 2.0 + JITTER_SPAN * jitter.clamp(0.0, 1.0);
        (base as f64 * factor) as i64
    }

    pub fn next_retry_at(&self, now: UnixMs, attempt: u32, jitter: f64) -> UnixMs {
        now.saturating_add(self.delay_ms(attempt, jitter))
    }
}

/// [`RetryPolicy::delay_ms`] of the default policy.
pub fn retry_delay_ms(attempt: u32, jitter: f64) -> i64 {
    RetryPolicy::default().delay_ms(attempt, jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_and_are_capped_with_bounded_jitter() {
        assert_eq!(retry_delay_ms(1, 0.5), 2_000);
        assert_eq!(retry_delay_ms(2, 0.5), 4_000);
        assert_eq!(retry_delay_ms(3, 0.5), 8_000);
        assert_eq!(retry_delay_ms(50, 0.5), MAX_DELAY_MS);
        assert_eq!(retry_delay_ms(1, 0.0), 1_600);
        assert!(retry_delay_ms(1, 0.999) < 2_400);
    }

    #[test]
    fn a_short_policy_scales_the_same_curve() {
        let p = RetryPolicy {
            first_delay_ms: 50,
            max_delay_ms: 400,
        };
        assert_eq!(p.delay_ms(1, 0.5), 50);
        assert_eq!(p.delay_ms(3, 0.5), 200);
        assert_eq!(p.delay_ms(9, 0.5), 400);
        assert_eq!(p.next_retry_at(1_000, 2, 0.5), 1_100);
    }
}
