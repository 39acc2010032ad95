//! Read receipts: what "read" means, written once for the store and the API.
//!
//! Each reader of a conversation has one **read position**: the order key of the
//! newest message it has read. A position only moves forward, so receipts may arrive
//! late, twice or out of order and the outcome is the same. Whether a message is read
//! by someone, and how many have read it, is computed from the positions: no row per
//! message and reader.

use api_types::NodeId;

use crate::message::OrderKey;

/// How long a receipt waits in the outbox before it is sent: reading that goes on
/// (a conversation open while messages arrive, several marks in a row) replaces the
/// waiting receipt instead of sending one per mark. A second is below what a sender
/// notices, and above the UI's mark-read bursts.
pub const RECEIPT_DELAY_MS: i64 = 1_000;

/// Whether `new` moves a position that is at `old`.
pub fn advances(old: Option<&OrderKey>, new: &OrderKey) -> bool {
    old.is_none_or(|o| new > o)
}

/// Whether a reader at `position` has read the message at `message`.
pub fn has_read(position: Option<&OrderKey>, message: &OrderKey) -> bool {
    position.is_some_and(|p| p >= message)
}

/// "Read by `count` of `of`" for a group message by `author`: the members other than
/// the author whose position has passed it, of the members other than the author.
pub fn read_by(
    author: &NodeId,
    message: &OrderKey,
    members: &[NodeId],
    position_of: impl Fn(&NodeId) -> Option<OrderKey>,
) -> (u32, u32) {
    let others = members.iter().filter(|m| *m != author);
    let (mut count, mut of) = (0u32, 0u32);
    for member in others {
        of = of.saturating_add(1);
        if has_read(position_of(member).as_ref(), message) {
            count = count.saturating_add(1);
        }
    }
    (count, of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::ids::MessageId;

    fn key(hlc: u64) -> OrderKey {
        OrderKey {
            hlc: Hlc::from_raw(hlc),
            message_id: MessageId::from_ulid(ulid::Ulid(u128::from(hlc))),
        }
    }

    fn node(n: u8) -> NodeId {
        format!("01HZZZZZZZZZZZZZZZZZZZZZ{n:02}").parse().unwrap()
    }

    #[test]
    fn positions_only_move_forward() {
        assert!(advances(None, &key(1)));
        assert!(advances(Some(&key(1)), &key(2)));
        assert!(
            !advances(Some(&key(2)), &key(2)),
            "a resend says nothing new"
        );
        assert!(
            !advances(Some(&key(3)), &key(2)),
            "an older receipt is ignored"
        );
    }

    #[test]
    fn a_position_covers_every_message_up_to_it() {
        assert!(!has_read(None, &key(1)));
        assert!(has_read(Some(&key(5)), &key(5)));
        assert!(has_read(Some(&key(5)), &key(1)));
        assert!(!has_read(Some(&key(5)), &key(6)));
    }

    #[test]
    fn read_by_counts_the_other_members() {
        let members = [node(1), node(2), node(3), node(4)];
        let positions = |m: &NodeId| match m {
            m if *m == node(2) => Some(key(10)),
            m if *m == node(3) => Some(key(4)),
            // The author's own position never counts.
            m if *m == node(1) => Some(key(99)),
            _ => None,
        };
        assert_eq!(read_by(&node(1), &key(4), &members, positions), (2, 3));
        assert_eq!(read_by(&node(1), &key(5), &members, positions), (1, 3));
        assert_eq!(read_by(&node(1), &key(11), &members, positions), (0, 3));
        // A member who left is not counted in either number.
        assert_eq!(read_by(&node(1), &key(4), &members[..2], positions), (1, 1));
    }
}
