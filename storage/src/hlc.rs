//! Hybrid logical clock and the order key of messages.
//!
//! A group has no leader, so the order every node shows must follow from the messages
//! alone: `(hlc, message_id)`. The HLC keeps a node's own messages after everything it
//! has already seen (causality) while staying close to wall time, and the message id
//! breaks ties, so any set of messages sorts the same on every node whatever the order
//! it arrived in.

/// Wall milliseconds in the high 48 bits, a logical counter in the low 16: good until
/// the year 10889, and 65536 events per millisecond before the counter spills into
/// the millisecond (which only makes the clock run a little ahead, never backwards).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc(u64);

const LOGICAL_BITS: u32 = 16;

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

    /// The clock after seeing a remote stamp: never behind what was observed.
    pub fn observe(last: Hlc, remote: Hlc) -> Hlc {
        last.max(remote)
    }

    /// SQLite integers are signed; every stamp before year 10889 fits.
    pub(crate) fn to_sql(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    pub(crate) fn from_sql(v: i64) -> Hlc {
        Hlc(u64::try_from(v).unwrap_or(0))
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
        let last = Hlc::observe(Hlc::from_wall_ms(1_000), remote);
        assert!(Hlc::tick(last, 1_001) > remote);
    }
}
