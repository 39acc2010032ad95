//! Hybrid logical clock and the order key of messages.
//!
//! A group has no leader, so the order every node shows must follow from the messages
//! alone: `(hlc, message_id)`. The HLC keeps a node's own messages after everything it
//! has already seen (causality) while staying close to wall time, and the message id
//! breaks ties, so any set of messages sorts the same on every node whatever the order
//! it arrived in.
//!
//! Office clocks may be off by minutes, hours, even days. A remote stamp is stored as
//! its author made it (so the order is the same everywhere), but this node's clock
//! adopts it only up to [`MAX_ADOPT_AHEAD_MS`] past its own wall time: one PC hours
//! ahead must not drag every node's clock — and so everything they send — into the
//! future. Causality inside a conversation (a reply sorts after what it answers) does
//! not need the node's clock to follow: a local event is stamped after the newest stamp
//! of the conversation or group it belongs to as well ([`Hlc::tick_after`]).

/// Wall milliseconds in the high 48 bits, a logical counter in the low 16: good until
/// the year 10889, and 65536 events per millisecond before the counter spills into
/// the millisecond (which only makes the clock run a little ahead, never backwards).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc(u64);

const LOGICAL_BITS: u32 = 16;

/// How far past the local wall clock an observed stamp may move this node's clock.
/// Clocks kept by NTP differ by well under a second and this covers them exactly
/// (their stamps are adopted as they are); a minute also covers a PC a little off.
/// Beyond it the sender's clock is wrong, and following it would push this node's
/// stamps — in every conversation, for good — ahead by its error.
pub const MAX_ADOPT_AHEAD_MS: u64 = 60_000;

impl Hlc {
    pub fn from_raw(raw: u64) -> Self {
        Hlc(raw)
    }

    pub fn raw(self) -> u64 {
        self.0
    }

    pub fn from_wall_ms(ms: u64) -> Self {
        Hlc(ms.saturating_mul(1 << LOGICAL_BITS))
    }

    pub fn wall_ms(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    /// The stamp of a local event at wall time `now_ms`, after `last`.
    pub fn tick(last: Hlc, now_ms: u64) -> Hlc {
        Hlc(Hlc::from_wall_ms(now_ms).0.max(last.0.saturating_add(1)))
    }

    /// The stamp of a local event at wall time `now_ms`, after `last` (the node's clock)
    /// and after `floor` (the newest stamp of the conversation or group it belongs to, so
    /// it sorts after everything it answers). Only the first is the node's new clock:
    /// a floor far ahead (a peer's wrong clock) moves this one stamp, not the node.
    pub fn tick_after(last: Hlc, floor: Hlc, now_ms: u64) -> Hlc {
        Hlc::tick(last, now_ms).max(Hlc(floor.0.saturating_add(1)))
    }

    /// The clock after seeing a remote stamp at wall time `now_ms`: it follows the stamp
    /// (so local events sort after it) up to `MAX_ADOPT_AHEAD_MS` past `now_ms`, and
    /// never goes back.
    pub fn observe(last: Hlc, remote: Hlc, now_ms: u64) -> Hlc {
        let cap = Hlc::from_wall_ms(now_ms.saturating_add(MAX_ADOPT_AHEAD_MS));
        last.max(remote.min(cap))
    }

    /// The largest stamp SQLite can hold. A stamp above it is refused wherever it
    /// arrives — the same decision on every node, unlike any limit relative to a clock.
    pub fn fits_sql(self) -> bool {
        i64::try_from(self.0).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_is_monotonic_even_when_wall_time_goes_back() {
        let a = Hlc::tick(Hlc::default(), 1_000);
        let b = Hlc::tick(a, 999);
        let c = Hlc::tick(b, 1_000);
        assert!(a < b && b < c);
        assert_eq!(a.wall_ms(), 1_000);
        let d = Hlc::tick(c, 2_000);
        assert_eq!(d, Hlc::from_wall_ms(2_000));
    }

    #[test]
    fn observing_a_remote_stamp_keeps_local_events_after_it() {
        let remote = Hlc::from_wall_ms(5_000);
        let last = Hlc::observe(Hlc::from_wall_ms(1_000), remote, 1_000);
        assert!(Hlc::tick(last, 1_001) > remote);
    }

    #[test]
    fn a_stamp_far_ahead_moves_the_clock_one_bounded_step() {
        let now = 1_700_000_000_000u64;
        let days_ahead = Hlc::from_wall_ms(now + 3 * 24 * 3_600_000);
        let clock = Hlc::observe(Hlc::from_wall_ms(now), days_ahead, now);
        assert_eq!(clock, Hlc::from_wall_ms(now + MAX_ADOPT_AHEAD_MS));
        // The next local event is within the step of wall time, not days ahead.
        let next = Hlc::tick(clock, now + 1);
        assert!(next.wall_ms() <= now + MAX_ADOPT_AHEAD_MS);
        // Seen again later, it moves the clock only as far as wall time has moved.
        let later = Hlc::observe(next, days_ahead, now + 10_000);
        assert_eq!(later, Hlc::from_wall_ms(now + 10_000 + MAX_ADOPT_AHEAD_MS));
        // Within the step a stamp is adopted as it is.
        let near = Hlc::from_raw(Hlc::from_wall_ms(now + 30_000).raw() + 7);
        assert_eq!(Hlc::observe(Hlc::from_wall_ms(now), near, now), near);
        // And the clock never goes back.
        let high = Hlc::from_wall_ms(now + 50_000);
        assert_eq!(Hlc::observe(high, Hlc::from_wall_ms(now), now), high);
    }

    #[test]
    fn a_local_event_sorts_after_its_conversation_without_moving_the_clock_there() {
        let now = 1_700_000_000_000u64;
        let clock = Hlc::from_wall_ms(now);
        let conversation = Hlc::from_wall_ms(now + 3 * 3_600_000);
        let reply = Hlc::tick_after(clock, conversation, now + 1);
        assert!(reply > conversation, "a reply sorts after what it answers");
        // Elsewhere the node stamps with its own clock.
        let elsewhere = Hlc::tick_after(Hlc::tick(clock, now + 1), Hlc::default(), now + 2);
        assert_eq!(elsewhere, Hlc::from_wall_ms(now + 2));
        // A floor in the past changes nothing.
        assert_eq!(
            Hlc::tick_after(clock, Hlc::from_wall_ms(now - 5), now + 1),
            Hlc::tick(clock, now + 1)
        );
    }

    #[test]
    fn stamps_beyond_sqlite_are_recognised() {
        assert!(Hlc::from_raw(i64::MAX as u64).fits_sql());
        assert!(!Hlc::from_raw(i64::MAX as u64 + 1).fits_sql());
    }

    proptest::proptest! {
        /// Whatever a peer sends, the clock never goes back and never passes the bound
        /// (unless it already was past it), and a later local tick follows the stamp
        /// whenever the stamp was within the bound.
        #[test]
        fn observe_is_monotonic_and_bounded(
            last in 0u64..(1u64 << 62),
            remote in 0u64..u64::MAX,
            now in 0u64..(1u64 << 46),
        ) {
            let last = Hlc::from_raw(last);
            let remote = Hlc::from_raw(remote);
            let seen = Hlc::observe(last, remote, now);
            let cap = Hlc::from_wall_ms(now + MAX_ADOPT_AHEAD_MS);
            proptest::prop_assert!(seen >= last);
            proptest::prop_assert!(seen <= last.max(cap));
            if remote <= cap {
                proptest::prop_assert!(Hlc::tick(seen, now) > remote);
            }
        }
    }
}
