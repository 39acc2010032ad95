//! A group's state as a convergent replicated data type: what `group.upsert` carries
//! and what every member stores (each in its own format: `lan-mesh`'s wire type,
//! `storage`'s column).
//!
//! Every field keeps the stamps of its changes — `(hlc, editor)`, a hybrid logical
//! clock reading and the node that made the change — and two states merge field by
//! field, keeping the higher stamp. The merge is commutative, associative and
//! idempotent, so members that received the same changes in any order, any number of
//! times, hold the same state (`merge_is_order_independent` below, and the store's
//! property test).
//!
//! Who may change what is decided from the state alone, never from what a node
//! happened to hold when a change arrived, or nodes that saw changes in different
//! orders would keep different states:
//!
//! - **members**: one entry per node ever added. Only the owner writes entries, except
//!   that a member may write its own removal (leaving). An upsert holding any other
//!   entry is forged and refused whole.
//! - **name, announcement**: one register per editor (its latest value). Any member
//!   may write; when showing the field, a register counts only if its editor was a
//!   member when it wrote it (the owner always; others not removed before the stamp),
//!   and the highest such register wins. So a rename made by a member that was removed
//!   concurrently loses everywhere once the removal is known.
//! - **dissolved**: the owner only; it stays dissolved.
//! - **owner**: fixed at creation.

use api_types::NodeId;

use crate::ids::GlobalGroupId;
use api_types::limits::{MAX_ANNOUNCEMENT_CHARS, MAX_GROUP_MEMBERS, MAX_GROUP_NAME_CHARS};

/// Registers kept per field: the highest stamps. A register below the owner's newest
/// can never win again; the cap bounds an upsert to what one frame carries (eight
/// announcements of 4096 characters) at the price that, should the eight newest
/// editors all turn out removed, an older value is not shown.
pub const MAX_REGISTERS: usize = 8;
/// Member entries (present and removed) per group: removals are kept so they win
/// over stale adds, and this bounds them.
pub const MAX_MEMBER_ENTRIES: usize = 2 * MAX_GROUP_MEMBERS;

/// When and by whom a field was changed; the higher stamp wins.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    /// A hybrid logical clock reading (`storage::Hlc::raw`).
    pub hlc: u64,
    /// The node that made the change: breaks ties between equal clocks.
    pub editor: NodeId,
}

/// One editor's latest value of a text field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    pub hlc: u64,
    pub editor: NodeId,
    pub value: String,
}

impl Register {
    pub fn stamp(&self) -> Stamp {
        Stamp {
            hlc: self.hlc,
            editor: self.editor.clone(),
        }
    }
}

/// A node's membership: added (`present`) or removed, as of its stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberEntry {
    pub id: NodeId,
    pub present: bool,
    pub hlc: u64,
    pub editor: NodeId,
}

impl MemberEntry {
    pub fn stamp(&self) -> Stamp {
        Stamp {
            hlc: self.hlc,
            editor: self.editor.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DissolvedStamp {
    pub hlc: u64,
    pub editor: NodeId,
}

/// A group's whole replicated state (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    pub global_group_id: GlobalGroupId,
    pub owner: NodeId,
    /// Highest stamp first, one per editor.
    pub names: Vec<Register>,
    /// Highest stamp first, one per editor; none until someone sets one.
    pub announcements: Vec<Register>,
    /// By node id, one per node.
    pub members: Vec<MemberEntry>,
    pub dissolved: Option<DissolvedStamp>,
}

/// Why a state was refused: it breaks a rule every member checks alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidGroupState(pub &'static str);

impl GroupState {
    /// A new group: the owner and `members` added, `name` and (when not empty)
    /// `announcement` set, all at `stamp` (whose editor is the owner).
    pub fn create(
        global_group_id: GlobalGroupId,
        stamp: &Stamp,
        name: &str,
        announcement: &str,
        members: &[NodeId],
    ) -> GroupState {
        let mut state = GroupState {
            global_group_id,
            owner: stamp.editor.clone(),
            names: Vec::new(),
            announcements: Vec::new(),
            members: Vec::new(),
            dissolved: None,
        };
        state.set_name(name, stamp);
        if !announcement.is_empty() {
            state.set_announcement(announcement, stamp);
        }
        state.set_member(&stamp.editor, true, stamp);
        for member in members {
            state.set_member(member, true, stamp);
        }
        state
    }

    pub fn set_name(&mut self, value: &str, stamp: &Stamp) {
        put_register(&mut self.names, value, stamp);
    }

    pub fn set_announcement(&mut self, value: &str, stamp: &Stamp) {
        put_register(&mut self.announcements, value, stamp);
    }

    pub fn set_member(&mut self, member: &NodeId, present: bool, stamp: &Stamp) {
        self.members.push(MemberEntry {
            id: member.clone(),
            present,
            hlc: stamp.hlc,
            editor: stamp.editor.clone(),
        });
        self.members = normalise_members(std::mem::take(&mut self.members));
    }

    pub fn dissolve(&mut self, stamp: &Stamp) {
        let new = DissolvedStamp {
            hlc: stamp.hlc,
            editor: stamp.editor.clone(),
        };
        self.dissolved = Some(match self.dissolved.take() {
            Some(old) if dissolved_key(&old) >= dissolved_key(&new) => old,
            _ => new,
        });
    }

    /// Folds `other` into this state. Both must be the same group with the same owner
    /// (callers check; a state naming another owner is refused before merging).
    pub fn merge(&mut self, other: &GroupState) {
        self.names.extend(other.names.iter().cloned());
        self.names = normalise_registers(std::mem::take(&mut self.names));
        self.announcements
            .extend(other.announcements.iter().cloned());
        self.announcements = normalise_registers(std::mem::take(&mut self.announcements));
        self.members.extend(other.members.iter().cloned());
        self.members = normalise_members(std::mem::take(&mut self.members));
        if let Some(stamp) = &other.dissolved {
            self.dissolve(&Stamp {
                hlc: stamp.hlc,
                editor: stamp.editor.clone(),
            });
        }
    }

    /// The rules every member checks on receipt (see the module docs), plus the
    /// canonical form `merge` produces, so an upsert cannot smuggle in duplicates.
    pub fn validate(&self) -> Result<(), InvalidGroupState> {
        if self.names.is_empty() {
            return Err(InvalidGroupState("a group needs a name"));
        }
        if self.names.len() > MAX_REGISTERS || self.announcements.len() > MAX_REGISTERS {
            return Err(InvalidGroupState("too many registers"));
        }
        if self.members.len() > MAX_MEMBER_ENTRIES {
            return Err(InvalidGroupState("too many member entries"));
        }
        if normalise_registers(self.names.clone()) != self.names
            || normalise_registers(self.announcements.clone()) != self.announcements
            || normalise_members(self.members.clone()) != self.members
        {
            return Err(InvalidGroupState("not in canonical form"));
        }
        for register in &self.names {
            let name = register.value.trim();
            if name.is_empty()
                || register.value.chars().count() > MAX_GROUP_NAME_CHARS
                || register.value.chars().any(char::is_control)
            {
                return Err(InvalidGroupState("bad group name"));
            }
        }
        if self
            .announcements
            .iter()
            .any(|r| r.value.chars().count() > MAX_ANNOUNCEMENT_CHARS)
        {
            return Err(InvalidGroupState("announcement too long"));
        }
        let stamps = self
            .names
            .iter()
            .chain(&self.announcements)
            .map(|r| r.hlc)
            .chain(self.members.iter().map(|m| m.hlc))
            .chain(self.dissolved.iter().map(|d| d.hlc));
        if stamps.into_iter().any(|hlc| hlc == 0) {
            return Err(InvalidGroupState("a stamp of 0"));
        }
        for entry in &self.members {
            let own_leave = entry.editor == entry.id && !entry.present;
            if entry.editor != self.owner && !own_leave {
                return Err(InvalidGroupState("a member entry not written by the owner"));
            }
        }
        if !self.entry(&self.owner).is_some_and(|e| e.present) {
            return Err(InvalidGroupState("the owner is not a member"));
        }
        let present = self.members.iter().filter(|m| m.present).count();
        if present > MAX_GROUP_MEMBERS {
            return Err(InvalidGroupState("too many members"));
        }
        if self
            .names
            .iter()
            .chain(&self.announcements)
            .any(|r| r.editor != self.owner && self.entry(&r.editor).is_none())
        {
            return Err(InvalidGroupState(
                "an edit by a node that was never a member",
            ));
        }
        if self
            .dissolved
            .as_ref()
            .is_some_and(|d| d.editor != self.owner)
        {
            return Err(InvalidGroupState(
                "dissolved by someone else than the owner",
            ));
        }
        Ok(())
    }

    fn entry(&self, node: &NodeId) -> Option<&MemberEntry> {
        self.members
            .binary_search_by(|m| m.id.cmp(node))
            .ok()
            .map(|i| &self.members[i])
    }

    /// Whether `node` is a member now.
    pub fn is_member(&self, node: &NodeId) -> bool {
        self.entry(node).is_some_and(|e| e.present)
    }

    /// The present members, by node id.
    pub fn member_ids(&self) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|m| m.present)
            .map(|m| m.id.clone())
            .collect()
    }

    /// Whether a change by `editor` stamped `hlc` counts: the owner's always; a
    /// member's unless it was removed before it.
    fn counts(&self, editor: &NodeId, hlc: u64) -> bool {
        *editor == self.owner || self.entry(editor).is_some_and(|e| e.present || e.hlc > hlc)
    }

    fn effective<'a>(&'a self, registers: &'a [Register]) -> Option<&'a Register> {
        registers.iter().find(|r| self.counts(&r.editor, r.hlc))
    }

    pub fn name(&self) -> &str {
        self.effective(&self.names)
            .or(self.names.first())
            .map_or("", |r| r.value.as_str())
    }

    pub fn announcement(&self) -> &str {
        self.effective(&self.announcements)
            .map_or("", |r| r.value.as_str())
    }

    /// Who set the announcement shown, if any.
    pub fn announcement_editor(&self) -> Option<&NodeId> {
        self.effective(&self.announcements).map(|r| &r.editor)
    }

    pub fn is_dissolved(&self) -> bool {
        self.dissolved.is_some()
    }

    /// The newest stamp anywhere in the state: equal on members holding the same state.
    pub fn revision(&self) -> Stamp {
        self.names
            .iter()
            .chain(&self.announcements)
            .map(Register::stamp)
            .chain(self.members.iter().map(MemberEntry::stamp))
            .chain(self.dissolved.iter().map(|d| Stamp {
                hlc: d.hlc,
                editor: d.editor.clone(),
            }))
            .max()
            .unwrap_or(Stamp {
                hlc: 0,
                editor: self.owner.clone(),
            })
    }

    /// The highest clock reading in the state (the receiver's clock moves past it).
    pub fn max_hlc(&self) -> u64 {
        self.revision().hlc
    }

    // What `node` may do now: the same rules `validate` and `counts` apply on receipt.

    pub fn may_edit_info(&self, node: &NodeId) -> bool {
        self.is_member(node) && !self.is_dissolved()
    }

    pub fn may_manage_members(&self, node: &NodeId) -> bool {
        *node == self.owner && !self.is_dissolved()
    }

    pub fn may_leave(&self, node: &NodeId) -> bool {
        self.is_member(node) && *node != self.owner && !self.is_dissolved()
    }

    pub fn may_dissolve(&self, node: &NodeId) -> bool {
        self.may_manage_members(node)
    }
}

fn dissolved_key(d: &DissolvedStamp) -> (u64, &NodeId) {
    (d.hlc, &d.editor)
}

fn put_register(registers: &mut Vec<Register>, value: &str, stamp: &Stamp) {
    registers.push(Register {
        hlc: stamp.hlc,
        editor: stamp.editor.clone(),
        value: value.to_string(),
    });
    *registers = normalise_registers(std::mem::take(registers));
}

/// One register per editor (its highest stamp), highest stamp first, at most
/// `MAX_REGISTERS`. Keeping the top ones of a union is the same whatever order the
/// union was formed in, so the cap does not break convergence.
fn normalise_registers(mut registers: Vec<Register>) -> Vec<Register> {
    // Equal stamps with different values cannot come from one honest editor; the
    // greater value wins so the choice is still the same everywhere.
    registers.sort_by(|a, b| (b.hlc, &b.editor, &b.value).cmp(&(a.hlc, &a.editor, &a.value)));
    let mut seen: Vec<NodeId> = Vec::new();
    registers.retain(|r| {
        if seen.contains(&r.editor) {
            false
        } else {
            seen.push(r.editor.clone());
            true
        }
    });
    registers.truncate(MAX_REGISTERS);
    registers
}

/// One entry per node (its highest stamp; on equal stamps the removal), by node id.
fn normalise_members(mut members: Vec<MemberEntry>) -> Vec<MemberEntry> {
    members.sort_by(|a, b| {
        (&a.id, b.hlc, &b.editor, a.present).cmp(&(&b.id, a.hlc, &a.editor, b.present))
    });
    members.dedup_by(|later, first| later.id == first.id);
    members
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(n: u8) -> NodeId {
        format!("01J0000000000000000000000{}", char::from(b'A' + n))
            .parse()
            .unwrap()
    }

    fn stamp(hlc: u64, editor: u8) -> Stamp {
        Stamp {
            hlc,
            editor: node(editor),
        }
    }

    fn base() -> GroupState {
        GroupState::create(
            GlobalGroupId::from_ulid(ulid::Ulid::from_parts(1, 1)),
            &stamp(10, 0),
            "team",
            "",
            &[node(1), node(2)],
        )
    }

    #[test]
    fn a_new_group_is_valid_and_shows_what_it_was_made_with() {
        let g = base();
        g.validate().unwrap();
        assert_eq!(g.name(), "team");
        assert_eq!(g.announcement(), "");
        assert_eq!(g.member_ids(), vec![node(0), node(1), node(2)]);
        assert_eq!(g.revision(), stamp(10, 0));
        assert!(g.may_manage_members(&node(0)) && !g.may_manage_members(&node(1)));
        assert!(g.may_leave(&node(1)) && !g.may_leave(&node(0)));
    }

    #[test]
    fn a_rename_and_a_member_change_made_concurrently_both_survive() {
        let mut a = base();
        let mut b = base();
        a.set_member(&node(3), true, &stamp(20, 0));
        b.set_name("renamed", &stamp(21, 1));
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba);
        assert_eq!(ab.name(), "renamed");
        assert!(ab.is_member(&node(3)));
        ab.validate().unwrap();
    }

    #[test]
    fn a_rename_by_a_member_removed_before_it_does_not_count() {
        let mut g = base();
        g.set_name("by two", &stamp(30, 2));
        assert_eq!(g.name(), "by two");
        g.set_member(&node(2), false, &stamp(25, 0));
        assert_eq!(g.name(), "team", "removed at 25, renamed at 30");
        let mut h = base();
        h.set_name("by two", &stamp(30, 2));
        h.set_member(&node(2), false, &stamp(35, 0));
        assert_eq!(h.name(), "by two", "renamed while still a member");
    }

    #[test]
    fn forged_entries_are_refused() {
        let mut g = base();
        g.set_member(&node(3), true, &stamp(20, 1));
        assert_eq!(
            g.validate(),
            Err(InvalidGroupState("a member entry not written by the owner"))
        );
        let mut g = base();
        g.set_member(&node(1), false, &stamp(20, 1));
        g.validate().expect("leaving is one's own entry");
        let mut g = base();
        g.set_member(&node(0), false, &stamp(20, 0));
        assert_eq!(
            g.validate(),
            Err(InvalidGroupState("the owner is not a member"))
        );
        let mut g = base();
        g.dissolve(&stamp(20, 1));
        assert!(g.validate().is_err());
        let mut g = base();
        g.set_name("outsider", &stamp(20, 7));
        assert!(g.validate().is_err());
        let mut g = base();
        g.names.push(g.names[0].clone());
        assert_eq!(
            g.validate(),
            Err(InvalidGroupState("not in canonical form"))
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Name(u8, String),
        Announce(u8, String),
        Member(u8, bool),
        Leave(u8),
        Dissolve,
    }

    fn op() -> impl Strategy<Value = (Op, u64)> {
        let op = prop_oneof![
            (0u8..4, "[a-d]{1,3}").prop_map(|(n, s)| Op::Name(n, s)),
            (0u8..4, "[a-d]{0,3}").prop_map(|(n, s)| Op::Announce(n, s)),
            (1u8..5, any::<bool>()).prop_map(|(n, p)| Op::Member(n, p)),
            (1u8..4).prop_map(Op::Leave),
            Just(Op::Dissolve),
        ];
        (op, 11u64..40)
    }

    /// Each op as the state its editor would send: the base plus that one change.
    fn upsert(op: &Op, hlc: u64) -> GroupState {
        let mut g = base();
        match op {
            Op::Name(n, s) => g.set_name(s, &stamp(hlc, *n)),
            Op::Announce(n, s) => g.set_announcement(s, &stamp(hlc, *n)),
            Op::Member(n, p) => g.set_member(&node(*n), *p, &stamp(hlc, 0)),
            Op::Leave(n) => g.set_member(&node(*n), false, &stamp(hlc, *n)),
            Op::Dissolve => g.dissolve(&stamp(hlc, 0)),
        }
        g
    }

    proptest! {
        #[test]
        fn merge_is_order_independent(
            ops in proptest::collection::vec(op(), 1..12),
            seed in any::<u64>(),
        ) {
            // Forged ones (an outsider's rename) are refused on receipt everywhere.
            let states: Vec<GroupState> = ops
                .iter()
                .map(|(o, h)| upsert(o, *h))
                .filter(|s| s.validate().is_ok())
                .collect();
            let mut forward = base();
            for s in &states {
                forward.merge(s);
            }
            // Another order, with some states delivered twice.
            let mut order: Vec<usize> = (0..states.len()).collect();
            let mut x = seed | 1;
            for i in (1..order.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                order.swap(i, usize::try_from(x % (i as u64 + 1)).unwrap());
            }
            let mut other = base();
            for &i in order.iter().chain(order.iter().take(2)) {
                other.merge(&states[i]);
            }
            // And pairwise merges first (associativity).
            let mut pairs = base();
            for chunk in states.chunks(2) {
                let mut c = chunk[0].clone();
                for s in &chunk[1..] { c.merge(s); }
                pairs.merge(&c);
            }
            prop_assert_eq!(&forward, &other);
            prop_assert_eq!(&forward, &pairs);
            prop_assert_eq!(forward.name(), other.name());
            forward.validate().map_err(|e| TestCaseError::fail(e.0))?;
        }
    }
}
