//! Range-based set reconciliation of a group's history (the pure part of group
//! catch-up; docs/PROTOCOL.md, "Group catch-up (anti-entropy)").
//!
//! Both sides hold a set of messages ordered by `(hlc, message_id)`. The opener sends
//! one fingerprint of everything; each side answers each range it receives with its
//! own view: nothing if the fingerprints match, its complete id list if it holds few
//! messages there (`SYNC_LEAF`), else fingerprints of up to `FANOUT` sub-ranges cut
//! at its own keys. An id list is answered by pushing what the lister lacks and asking
//! (`want`) for what only the lister has. Only differing ranges are split, so the
//! exchange costs O(differences × log(size)) and stops on its own; the round bound
//! stops it regardless.

use std::collections::HashSet;

use chat_core::{Fingerprint, KeyRange, MessageId, OrderKey};

use crate::envelope::{RangeSummary, SyncRange, SYNC_LEAF};

/// Sub-ranges a differing range is split into. 16 keeps the number of rounds low
/// (log16) while an answer to one range stays ~1 KiB of fingerprints.
pub const FANOUT: usize = 16;

/// What to do after receiving some ranges.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// Ranges to send back (next round).
    pub ranges: Vec<SyncRange>,
    /// Own messages the peer lacks: relay them.
    pub push: Vec<MessageId>,
    /// Messages only the peer has: ask for them.
    pub want: Vec<MessageId>,
}

fn fingerprint(keys: &[OrderKey]) -> Fingerprint {
    Fingerprint::of(keys.iter().map(|k| &k.message_id))
}

/// The part of the sorted `own` inside `range`.
fn within<'a>(own: &'a [OrderKey], range: &KeyRange) -> &'a [OrderKey] {
    let start = own.partition_point(|k| *k < range.lo);
    let end = match range.hi {
        Some(hi) => own.partition_point(|k| *k < hi),
        None => own.len(),
    };
    &own[start..end.max(start)]
}

/// The answer to `ranges` given `own`, the sorted keys this node holds (at least all of
/// those inside the ranges). With `may_continue` false (the round bound is reached)
/// no ranges or wants are returned — only what can be pushed without another round.
pub fn answer(own: &[OrderKey], ranges: &[SyncRange], may_continue: bool) -> Answer {
    let mut out = Answer::default();
    for received in ranges {
        let mine = within(own, &received.range);
        match &received.summary {
            RangeSummary::Fingerprint(theirs) => {
                if !may_continue || fingerprint(mine) == *theirs {
                    continue;
                }
                if mine.len() <= SYNC_LEAF {
                    out.ranges.push(SyncRange {
                        range: received.range,
                        summary: RangeSummary::Ids(mine.iter().map(|k| k.message_id).collect()),
                    });
                } else {
                    split(mine, &received.range, &mut out.ranges);
                }
            }
            RangeSummary::Ids(theirs) => {
                let theirs_set: HashSet<&MessageId> = theirs.iter().collect();
                let mine_set: HashSet<&MessageId> = mine.iter().map(|k| &k.message_id).collect();
                out.push.extend(
                    mine.iter()
                        .map(|k| k.message_id)
                        .filter(|id| !theirs_set.contains(id)),
                );
                if may_continue {
                    out.want
                        .extend(theirs.iter().filter(|id| !mine_set.contains(id)).copied());
                }
            }
        }
    }
    out
}

/// Cuts `range` (holding `mine`, more than `SYNC_LEAF` keys) into `FANOUT` sub-ranges
/// of about equal size at own keys, covering the whole of `range`.
fn split(mine: &[OrderKey], range: &KeyRange, out: &mut Vec<SyncRange>) {
    let n = mine.len();
    let mut lo = range.lo;
    for part in 0..FANOUT {
        let start = part * n / FANOUT;
        let end = (part + 1) * n / FANOUT;
        let hi = if part + 1 == FANOUT {
            range.hi
        } else {
            Some(mine[end])
        };
        out.push(SyncRange {
            range: KeyRange { lo, hi },
            summary: RangeSummary::Fingerprint(fingerprint(&mine[start..end])),
        });
        if let Some(hi) = hi {
            lo = hi;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use chat_core::Hlc;
    use proptest::prelude::*;

    use super::*;
    use crate::envelope::MAX_SYNC_ROUNDS;

    /// The opening summary (what `Syncer::start` reads from the store).
    fn opening(own: &[OrderKey]) -> SyncRange {
        SyncRange {
            range: KeyRange::all(),
            summary: RangeSummary::Fingerprint(fingerprint(own)),
        }
    }

    fn key(hlc: u64, n: u128) -> OrderKey {
        OrderKey {
            hlc: Hlc::from_raw(hlc),
            message_id: MessageId::from_ulid(ulid::Ulid(n)),
        }
    }

    /// Runs a whole exchange between two nodes, applying pushes and wants as they are
    /// sent. Returns the rounds used.
    fn reconcile(x: &mut BTreeSet<OrderKey>, y: &mut BTreeSet<OrderKey>) -> u32 {
        let by_id: HashMap<MessageId, OrderKey> = x
            .iter()
            .chain(y.iter())
            .map(|k| (k.message_id, *k))
            .collect();
        let own: Vec<OrderKey> = x.iter().copied().collect();
        let mut ranges = vec![opening(&own)];
        let mut want: Vec<MessageId> = Vec::new();
        let mut round = 0u32;
        // `sides.0` receives the next message from `sides.1`.
        let (mut receiver, mut sender) = (y, x);
        loop {
            // The receiver relays what was asked of it.
            for id in &want {
                if let Some(k) = by_id.get(id).filter(|k| receiver.contains(*k)) {
                    sender.insert(*k);
                }
            }
            let own: Vec<OrderKey> = receiver.iter().copied().collect();
            let may_continue = round < MAX_SYNC_ROUNDS;
            let out = answer(&own, &ranges, may_continue);
            for id in &out.push {
                sender.insert(by_id[id]);
            }
            if out.ranges.is_empty() && out.want.is_empty() {
                return round;
            }
            round += 1;
            ranges = out.ranges;
            want = out.want;
            std::mem::swap(&mut receiver, &mut sender);
        }
    }

    fn set(keys: &[(u64, u128)]) -> BTreeSet<OrderKey> {
        keys.iter().map(|(h, n)| key(*h, *n)).collect()
    }

    #[test]
    fn equal_sets_take_one_message() {
        let keys: Vec<(u64, u128)> = (0..1000).map(|i| (i / 3, u128::from(i))).collect();
        let (mut x, mut y) = (set(&keys), set(&keys));
        assert_eq!(reconcile(&mut x, &mut y), 0);
        assert_eq!(x, y);
    }

    #[test]
    fn an_empty_side_gets_everything_and_gives_everything() {
        let keys: Vec<(u64, u128)> = (0..10_000).map(|i| (i, u128::from(i) + 1)).collect();
        let (mut x, mut y) = (BTreeSet::new(), set(&keys));
        let rounds = reconcile(&mut x, &mut y);
        assert_eq!(x, y);
        assert!(rounds <= 3, "{rounds} rounds");
        let (mut x, mut y) = (set(&keys), BTreeSet::new());
        reconcile(&mut x, &mut y);
        assert_eq!(x, y);
        assert_eq!(x.len(), 10_000);
    }

    #[test]
    fn a_split_covers_the_range_without_gaps() {
        let mine: Vec<OrderKey> = (0..1000).map(|i| key(i, u128::from(i))).collect();
        let range = KeyRange::all();
        let mut out = Vec::new();
        split(&mine, &range, &mut out);
        assert_eq!(out.len(), FANOUT);
        assert_eq!(out[0].range.lo, range.lo);
        assert_eq!(out[FANOUT - 1].range.hi, None);
        for pair in out.windows(2) {
            assert_eq!(pair[0].range.hi, Some(pair[1].range.lo));
        }
        let total: u64 = out
            .iter()
            .map(|r| match &r.summary {
                RangeSummary::Fingerprint(f) => f.count,
                RangeSummary::Ids(ids) => ids.len() as u64,
            })
            .sum();
        assert_eq!(total, 1000);
    }

    #[test]
    fn past_the_round_bound_only_pushes() {
        let own = vec![key(1, 1), key(2, 2)];
        let ranges = vec![SyncRange {
            range: KeyRange::all(),
            summary: RangeSummary::Ids(vec![MessageId::from_ulid(ulid::Ulid(9))]),
        }];
        let out = answer(&own, &ranges, false);
        assert_eq!(out.push.len(), 2);
        assert!(out.want.is_empty() && out.ranges.is_empty());
        let out = answer(&own, &ranges, true);
        assert_eq!(out.want, vec![MessageId::from_ulid(ulid::Ulid(9))]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Two random histories sharing some messages: after one exchange both hold the
        /// union, within the round bound.
        #[test]
        fn any_two_histories_end_with_the_union(
            shared in proptest::collection::vec((0u64..5_000, any::<u128>()), 0..1500),
            only_x in proptest::collection::vec((0u64..5_000, any::<u128>()), 0..1500),
            only_y in proptest::collection::vec((0u64..5_000, any::<u128>()), 0..1500),
        ) {
            let mut x = set(&shared);
            x.extend(set(&only_x));
            let mut y = set(&shared);
            y.extend(set(&only_y));
            // One message id has one key everywhere: drop random collisions.
            let mut ids = HashMap::new();
            for k in x.iter().chain(y.iter()) {
                ids.entry(k.message_id).or_insert(*k);
            }
            x.retain(|k| ids[&k.message_id] == *k);
            y.retain(|k| ids[&k.message_id] == *k);
            let union: BTreeSet<OrderKey> = x.union(&y).copied().collect();
            let rounds = reconcile(&mut x, &mut y);
            prop_assert!(rounds <= MAX_SYNC_ROUNDS, "{} rounds", rounds);
            prop_assert_eq!(&x, &union);
            prop_assert_eq!(&y, &union);
        }
    }
}
