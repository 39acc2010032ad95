//! When to try an envelope again. Pure: the caller supplies `now` and the jitter.

use crate::model::UnixMs;

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

/// Delay before attempt `attempt + 1`, where `attempt` counts attempts made so far
/// (≥ 1). `jitter` is uniform in `[0, 1)`.
pub fn retry_delay_ms(attempt: u32, jitter: f64) -> i64 {
    let doublings = attempt.saturating_sub(1).min(20);
    let base = FIRST_DELAY_MS
        .saturating_mul(1 << doublings)
        .min(MAX_DELAY_MS);
    let factor = 1.0 - JITTER_SPAN / 2.0 + JITTER_SPAN * jitter.clamp(0.0, 1.0);
    (base as f64 * factor) as i64
}

pub fn next_retry_at(now: UnixMs, attempt: u32, jitter: f64) -> UnixMs {
    now.saturating_add(retry_delay_ms(attempt, jitter))
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
}
