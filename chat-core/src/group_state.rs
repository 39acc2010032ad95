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
//! **Every change is a statement signed by its editor** (`sig`, over the bytes of
//! [`GroupState::statement`]: the group, the field, the stamp and the value), and the
//! state carries the public keys of every editor (`keys`), each of which must derive
//! its node id. So the state is its own proof: a receiver checks each change against
//! its editor's key, whoever relayed it, and a node can only ever make changes in its
//! own name. The representation is "each field keeps its last signed change" rather
//! than an operation log: the state stays as small as before (one signature per field
//! and member), merging needs no history, and a replayed old change simply loses to
//! the newer one it was superseded by.
//!
//! Who may change what is decided from the state alone, never from what a node
//! happened to hold when a change arrived, or nodes that saw changes in different
//! orders would keep different states:
//!
//! - **members**: one entry per node ever added. Only the owner writes entries, except
//!   that a member may write its own removal (leaving).
//! - **name, announcement**: the owner only.
//! - **dissolved**: the owner only; it stays dissolved.
//! - **owner**: fixed at creation; the group exists only through changes the owner
//!   signed (its name, its own membership), so nobody can make up a group in another
//!   node's name.
//!
//! A state with a change that breaks these rules, or whose signature does not verify,
//! is refused whole ([`GroupState::validate`], [`GroupState::verify_signatures`]).

use api_types::NodeId;

use crate::ids::GlobalGroupId;
use crate::signing::{AuthorKeys, Signature, Signer, Statement};
use api_types::limits::{MAX_ANNOUNCEMENT_CHARS, MAX_GROUP_MEMBERS, MAX_GROUP_NAME_CHARS};

/// Registers kept per field: the highest stamps. With only the owner writing, one is
/// used; the cap bounds what an upsert may carry.
pub const MAX_REGISTERS: usize = 8;
/// Member entries (present and removed) per group: removals are kept so they win
/// over stale adds, and this bounds them.
pub const MAX_MEMBER_ENTRIES: usize = 2 * MAX_GROUP_MEMBERS;

/// The domain of a group change's signed bytes.
const GROUP_DOMAIN: &str = "lanchat/group-change/v1";

/// When and by whom a field was changed; the higher stamp wins.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    /// A hybrid logical clock reading (`storage::Hlc::raw`).
    pub hlc: u64,
    /// The node that made the change: breaks ties between equal clocks.
    pub editor: NodeId,
}

/// The owner's latest value of a text field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    pub hlc: u64,
    pub editor: NodeId,
    pub value: String,
    /// The editor's signature of this change; `None` only while a local change is
    /// being made (see [`GroupState::sign_own`]) or in a state stored before changes
    /// were signed.
    pub sig: Option<Signature>,
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
    pub sig: Option<Signature>,
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
    pub sig: Option<Signature>,
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
    /// The public keys of the editors, by the node id they derive, one per node.
    pub keys: Vec<(NodeId, AuthorKeys)>,
}

/// Why a state was refused: it breaks a rule every member checks alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidGroupState(pub &'static str);

impl InvalidGroupState {
    /// Whether the refusal is a change made in another node's name or against the
    /// permissions (counted as forged), rather than a malformed state.
    pub fn is_forgery(&self) -> bool {
        matches!(
            self.0,
            "a member entry not written by the owner"
                | "a name or announcement not written by the owner"
                | "dissolved by someone else than the owner"
                | "keys that do not derive their node id"
                | "an unsigned change"
                | "a change by an editor without keys"
                | "a change whose signature does not verify"
        )
    }
}

/// Which change a signature covers.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    Name(&'a Register),
    Announcement(&'a Register),
    Member(&'a MemberEntry),
    Dissolved(&'a DissolvedStamp),
}

impl Change<'_> {
    fn editor(&self) -> &NodeId {
        match self {
            Change::Name(r) | Change::Announcement(r) => &r.editor,
            Change::Member(m) => &m.editor,
            Change::Dissolved(d) => &d.editor,
        }
    }

    fn sig(&self) -> Option<&Signature> {
        match self {
            Change::Name(r) | Change::Announcement(r) => r.sig.as_ref(),
            Change::Member(m) => m.sig.as_ref(),
            Change::Dissolved(d) => d.sig.as_ref(),
        }
    }
}

impl GroupState {
    /// A new group: the owner and `members` added, `name` and (when not empty)
    /// `announcement` set, all at `stamp` (whose editor is the owner). Unsigned until
    /// [`GroupState::sign_own`].
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
            keys: Vec::new(),
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
            sig: None,
        });
        self.members = normalise_members(std::mem::take(&mut self.members));
    }

    pub fn dissolve(&mut self, stamp: &Stamp) {
        self.merge_dissolved(DissolvedStamp {
            hlc: stamp.hlc,
            editor: stamp.editor.clone(),
            sig: None,
        });
    }

    fn merge_dissolved(&mut self, new: DissolvedStamp) {
        self.dissolved = Some(match self.dissolved.take() {
            Some(old) if dissolved_key(&old) >= dissolved_key(&new) => old,
            _ => new,
        });
    }

    /// The bytes `change` signs in this group (see [`statement`]).
    pub fn statement(&self, change: Change<'_>) -> Vec<u8> {
        statement(&self.global_group_id, change)
    }

    /// Every change in the state.
    pub fn changes(&self) -> impl Iterator<Item = Change<'_>> {
        self.names
            .iter()
            .map(Change::Name)
            .chain(self.announcements.iter().map(Change::Announcement))
            .chain(self.members.iter().map(Change::Member))
            .chain(self.dissolved.iter().map(Change::Dissolved))
    }

    /// Signs every unsigned change made by `signer`'s node (the ones just made here),
    /// and adds its keys. Returns how many were signed.
    pub fn sign_own(&mut self, signer: &dyn Signer) -> usize {
        let me = signer.node_id();
        let gid = self.global_group_id;
        let mut signed = 0;
        for r in self
            .names
            .iter_mut()
            .filter(|r| r.sig.is_none() && r.editor == me)
        {
            r.sig = Some(signer.sign(&statement(&gid, Change::Name(r))));
            signed += 1;
        }
        for r in self
            .announcements
            .iter_mut()
            .filter(|r| r.sig.is_none() && r.editor == me)
        {
            r.sig = Some(signer.sign(&statement(&gid, Change::Announcement(r))));
            signed += 1;
        }
        for m in self
            .members
            .iter_mut()
            .filter(|m| m.sig.is_none() && m.editor == me)
        {
            m.sig = Some(signer.sign(&statement(&gid, Change::Member(m))));
            signed += 1;
        }
        if let Some(d) = self
            .dissolved
            .as_mut()
            .filter(|d| d.sig.is_none() && d.editor == me)
        {
            d.sig = Some(signer.sign(&statement(&gid, Change::Dissolved(d))));
            signed += 1;
        }
        if signed > 0 {
            self.keys.push((me, signer.keys()));
            self.keys = normalise_keys(std::mem::take(&mut self.keys));
        }
        signed
    }

    /// Checks every change's signature against its editor's keys, which must be in
    /// the state and derive the editor's id. An unsigned change fails too: what
    /// arrives from another node must be signed whole.
    pub fn verify_signatures(&self) -> Result<(), InvalidGroupState> {
        for (id, keys) in &self.keys {
            if keys.node_id() != *id {
                return Err(InvalidGroupState("keys that do not derive their node id"));
            }
        }
        for change in self.changes() {
            let Some(sig) = change.sig() else {
                return Err(InvalidGroupState("an unsigned change"));
            };
            let Some(keys) = self.keys_of(change.editor()) else {
                return Err(InvalidGroupState("a change by an editor without keys"));
            };
            if !keys.verify(&self.statement(change), sig) {
                return Err(InvalidGroupState(
                    "a change whose signature does not verify",
                ));
            }
        }
        Ok(())
    }

    /// Both checks a received state must pass: the rules, then the signatures.
    pub fn check_received(&self) -> Result<(), InvalidGroupState> {
        self.validate()?;
        self.verify_signatures()
    }

    fn keys_of(&self, node: &NodeId) -> Option<&AuthorKeys> {
        self.keys
            .binary_search_by(|(id, _)| id.cmp(node))
            .ok()
            .map(|i| &self.keys[i].1)
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
        if let Some(d) = &other.dissolved {
            self.merge_dissolved(d.clone());
        }
        self.keys.extend(other.keys.iter().cloned());
        self.keys = normalise_keys(std::mem::take(&mut self.keys));
    }

    /// The rules every member checks on receipt (see the module docs), plus the
    /// canonical form `merge` produces, so an upsert cannot smuggle in duplicates.
    /// Signatures are checked apart ([`GroupState::verify_signatures`]): a local
    /// change is validated before it is signed.
    pub fn validate(&self) -> Result<(), InvalidGroupState> {
        if self.names.is_empty() {
            return Err(InvalidGroupState("a group needs a name"));
        }
        if self.names.len() > MAX_REGISTERS || self.announcements.len() > MAX_REGISTERS {
            return Err(InvalidGroupState("too many registers"));
        }
        if self.members.len() > MAX_MEMBER_ENTRIES || self.keys.len() > MAX_MEMBER_ENTRIES {
            return Err(InvalidGroupState("too many member entries"));
        }
        if normalise_registers(self.names.clone()) != self.names
            || normalise_registers(self.announcements.clone()) != self.announcements
            || normalise_members(self.members.clone()) != self.members
            || normalise_keys(self.keys.clone()) != self.keys
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
            .any(|r| r.editor != self.owner)
        {
            return Err(InvalidGroupState(
                "a name or announcement not written by the owner",
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

    /// Forgets names and announcements written by members: states stored before only
    /// the owner could write them may hold some, and they would fail `validate`.
    pub fn drop_members_registers(&mut self) {
        let owner = self.owner.clone();
        self.names.retain(|r| r.editor == owner);
        self.announcements.retain(|r| r.editor == owner);
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

    fn effective<'a>(&'a self, registers: &'a [Register]) -> Option<&'a Register> {
        registers.iter().find(|r| r.editor == self.owner)
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

    // What `node` may do now: the same rules `validate` applies on receipt.

    pub fn may_edit_info(&self, node: &NodeId) -> bool {
        self.may_manage_members(node)
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

/// The bytes a change of group `group` signs: a domain tag, the group id, the field,
/// the stamp and the value, each with its length — so a signature is good for that one
/// change of that one group only.
pub fn statement(group: &GlobalGroupId, change: Change<'_>) -> Vec<u8> {
    let mut s = Statement::new(GROUP_DOMAIN);
    s.text(&group.to_string());
    match change {
        Change::Name(r) | Change::Announcement(r) => {
            let field = if matches!(change, Change::Name(_)) {
                "name"
            } else {
                "announcement"
            };
            s.text(field)
                .number(r.hlc)
                .text(r.editor.as_str())
                .text(&r.value);
        }
        Change::Member(m) => {
            s.text("member")
                .number(m.hlc)
                .text(m.editor.as_str())
                .text(m.id.as_str())
                .number(u64::from(m.present));
        }
        Change::Dissolved(d) => {
            s.text("dissolved").number(d.hlc).text(d.editor.as_str());
        }
    }
    s.bytes().to_vec()
}

fn dissolved_key(d: &DissolvedStamp) -> (u64, &NodeId, &Option<Signature>) {
    (d.hlc, &d.editor, &d.sig)
}

fn put_register(registers: &mut Vec<Register>, value: &str, stamp: &Stamp) {
    registers.push(Register {
        hlc: stamp.hlc,
        editor: stamp.editor.clone(),
        value: value.to_string(),
        sig: None,
    });
    *registers = normalise_registers(std::mem::take(registers));
}

/// One register per editor (its highest stamp), highest stamp first, at most
/// `MAX_REGISTERS`. Keeping the top ones of a union is the same whatever order the
/// union was formed in, so the cap does not break convergence.
fn normalise_registers(mut registers: Vec<Register>) -> Vec<Register> {
    // Equal stamps with different values cannot come from one honest editor; the
    // greater value (then signature) wins so the choice is still the same everywhere.
    registers.sort_by(|a, b| {
        (b.hlc, &b.editor, &b.value, &b.sig).cmp(&(a.hlc, &a.editor, &a.value, &a.sig))
    });
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

/// One entry per node (its highest stamp; on equal stamps the removal, then the
/// greater signature), by node id.
fn normalise_members(mut members: Vec<MemberEntry>) -> Vec<MemberEntry> {
    members.sort_by(|a, b| {
        (&a.id, b.hlc, &b.editor, a.present, &b.sig)
            .cmp(&(&b.id, a.hlc, &a.editor, b.present, &a.sig))
    });
    members.dedup_by(|later, first| later.id == first.id);
    members
}

/// One key entry per node id, by node id. Keys derive their id, so two entries for
/// one id are the same keys (or a forgery `verify_signatures` refuses); the smaller
/// is kept so the choice is the same everywhere.
fn normalise_keys(mut keys: Vec<(NodeId, AuthorKeys)>) -> Vec<(NodeId, AuthorKeys)> {
    keys.sort();
    keys.dedup_by(|later, first| later.0 == first.0);
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::SecretSigner;
    use proptest::prelude::*;

    /// Node `n`: its id derives from its keys, as every node's does.
    fn signer(n: u8) -> SecretSigner {
        SecretSigner::from_number(u64::from(n))
    }

    fn node(n: u8) -> NodeId {
        signer(n).node_id()
    }

    fn stamp(hlc: u64, editor: u8) -> Stamp {
        Stamp {
            hlc,
            editor: node(editor),
        }
    }

    fn gid() -> GlobalGroupId {
        GlobalGroupId::from_ulid(ulid::Ulid::from_parts(1, 1))
    }

    /// A group of 0 (the owner), 1 and 2, signed by 0.
    fn base() -> GroupState {
        let mut g = GroupState::create(gid(), &stamp(10, 0), "team", "", &[node(1), node(2)]);
        g.sign_own(&signer(0));
        g
    }

    /// `g` after `change`, signed by `by` (what `by`'s node would send).
    fn changed(g: &GroupState, by: u8, change: impl FnOnce(&mut GroupState)) -> GroupState {
        let mut g = g.clone();
        change(&mut g);
        g.sign_own(&signer(by));
        g
    }

    #[test]
    fn a_new_group_is_valid_signed_and_shows_what_it_was_made_with() {
        let g = base();
        g.check_received().unwrap();
        assert_eq!(g.name(), "team");
        assert_eq!(g.announcement(), "");
        let mut ids = vec![node(0), node(1), node(2)];
        ids.sort();
        assert_eq!(g.member_ids(), ids);
        assert_eq!(g.revision(), stamp(10, 0));
        assert!(g.may_manage_members(&node(0)) && !g.may_manage_members(&node(1)));
        assert!(g.may_edit_info(&node(0)) && !g.may_edit_info(&node(1)));
        assert!(g.may_leave(&node(1)) && !g.may_leave(&node(0)));
        assert_eq!(g.keys, vec![(node(0), signer(0).keys())]);
    }

    #[test]
    fn a_rename_and_a_leave_made_concurrently_both_survive() {
        let a = changed(&base(), 0, |g| g.set_name("renamed", &stamp(21, 0)));
        let b = changed(&base(), 1, |g| g.set_member(&node(1), false, &stamp(20, 1)));
        b.check_received().unwrap();
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba);
        assert_eq!(ab.name(), "renamed");
        assert!(!ab.is_member(&node(1)));
        ab.check_received().unwrap();
    }

    #[test]
    fn only_the_owner_writes_members_names_announcements_and_dissolves() {
        let refused = |g: GroupState, why: &'static str| {
            assert_eq!(g.check_received(), Err(InvalidGroupState(why)));
        };
        // Each made and signed by member 1 in its own name.
        refused(
            changed(&base(), 1, |g| g.set_member(&node(3), true, &stamp(20, 1))),
            "a member entry not written by the owner",
        );
        refused(
            changed(&base(), 1, |g| g.set_member(&node(2), false, &stamp(20, 1))),
            "a member entry not written by the owner",
        );
        refused(
            changed(&base(), 1, |g| g.set_name("mine", &stamp(20, 1))),
            "a name or announcement not written by the owner",
        );
        refused(
            changed(&base(), 1, |g| g.set_announcement("mine", &stamp(20, 1))),
            "a name or announcement not written by the owner",
        );
        refused(
            changed(&base(), 1, |g| g.dissolve(&stamp(20, 1))),
            "dissolved by someone else than the owner",
        );
        // A member signs its own leave only.
        changed(&base(), 1, |g| g.set_member(&node(1), false, &stamp(20, 1)))
            .check_received()
            .expect("leaving is one's own entry");
        refused(
            changed(&base(), 0, |g| g.set_member(&node(0), false, &stamp(20, 0))),
            "the owner is not a member",
        );
        let mut g = base();
        g.names.push(g.names[0].clone());
        refused(g, "not in canonical form");
    }

    #[test]
    fn changes_in_another_nodes_name_are_refused() {
        // Member 1 writes a change as the owner and signs it with its own key.
        let mut g = base();
        g.set_member(&node(3), true, &stamp(20, 0));
        let entry = g.members.iter_mut().find(|m| m.id == node(3)).unwrap();
        entry.sig = Some(signer(1).sign(&statement(&gid(), Change::Member(entry))));
        assert_eq!(
            g.check_received(),
            Err(InvalidGroupState(
                "a change whose signature does not verify"
            ))
        );
        // ... and adds its own keys under the owner's id.
        let mut g2 = g.clone();
        g2.keys = vec![(node(0), signer(1).keys())];
        assert_eq!(
            g2.check_received(),
            Err(InvalidGroupState("keys that do not derive their node id"))
        );
        // Unsigned.
        let mut g = base();
        g.set_member(&node(3), true, &stamp(20, 0));
        assert_eq!(
            g.check_received(),
            Err(InvalidGroupState("an unsigned change"))
        );
        // A signed change whose value was altered on the way.
        let mut g = changed(&base(), 0, |g| g.set_name("real", &stamp(20, 0)));
        g.names[0].value = "forged".into();
        assert_eq!(
            g.check_received(),
            Err(InvalidGroupState(
                "a change whose signature does not verify"
            ))
        );
        // Without the editor's keys.
        let mut g = base();
        g.keys.clear();
        assert_eq!(
            g.check_received(),
            Err(InvalidGroupState("a change by an editor without keys"))
        );
    }

    #[test]
    fn a_group_made_up_in_the_owners_name_is_refused() {
        // Member 1 copies the owner's signed changes into a group id of its own.
        let mut g = base();
        g.global_group_id = GlobalGroupId::from_ulid(ulid::Ulid::from_parts(2, 2));
        assert_eq!(
            g.check_received(),
            Err(InvalidGroupState(
                "a change whose signature does not verify"
            ))
        );
        // Or claims the owner made a group it signed itself.
        let mut g = GroupState::create(gid(), &stamp(10, 0), "fake", "", &[node(1)]);
        g.sign_own(&signer(1));
        assert_eq!(
            g.check_received(),
            Err(InvalidGroupState("an unsigned change"))
        );
    }

    #[test]
    fn a_replayed_older_change_changes_nothing() {
        let renamed_once = changed(&base(), 0, |g| g.set_name("one", &stamp(20, 0)));
        let renamed_twice = changed(&renamed_once, 0, |g| g.set_name("two", &stamp(30, 0)));
        let mut held = renamed_twice.clone();
        held.merge(&renamed_once);
        held.merge(&base());
        assert_eq!(held, renamed_twice);
        assert_eq!(held.name(), "two");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Name(String),
        Announce(String),
        Member(u8, bool),
        Leave(u8),
        Dissolve,
    }

    fn op() -> impl Strategy<Value = (Op, u64)> {
        let op = prop_oneof![
            "[a-d]{1,3}".prop_map(Op::Name),
            "[a-d]{0,3}".prop_map(Op::Announce),
            (1u8..5, any::<bool>()).prop_map(|(n, p)| Op::Member(n, p)),
            (1u8..4).prop_map(Op::Leave),
            Just(Op::Dissolve),
        ];
        (op, 11u64..40)
    }

    /// Each op as the state its editor would send: the base plus that one change,
    /// signed by the editor.
    fn upsert(op: &Op, hlc: u64) -> GroupState {
        match op {
            Op::Name(s) => changed(&base(), 0, |g| g.set_name(s, &stamp(hlc, 0))),
            Op::Announce(s) => changed(&base(), 0, |g| g.set_announcement(s, &stamp(hlc, 0))),
            Op::Member(n, p) => {
                changed(&base(), 0, |g| g.set_member(&node(*n), *p, &stamp(hlc, 0)))
            }
            Op::Leave(n) => changed(&base(), *n, |g| {
                g.set_member(&node(*n), false, &stamp(hlc, *n))
            }),
            Op::Dissolve => changed(&base(), 0, |g| g.dissolve(&stamp(hlc, 0))),
        }
    }

    /// How an attacker (node `by`, a member or an outsider) turns an op into a
    /// forgery; every variant must be refused.
    #[derive(Debug, Clone, Copy)]
    enum Forgery {
        /// Made and signed in its own name, though the rules give it to the owner.
        OwnName,
        /// Claims the owner made it, signs with its own key.
        WrongSigner,
        /// Claims the owner made it, adds its own keys under the owner's id.
        WrongKeys,
        /// Left unsigned.
        Unsigned,
        /// The owner's real signed change with its value or target altered.
        Mutated,
        /// The owner's real signed change moved into another group.
        OtherGroup,
    }

    fn forgery() -> impl Strategy<Value = (Op, u64, Forgery, u8)> {
        let kind = prop_oneof![
            Just(Forgery::OwnName),
            Just(Forgery::WrongSigner),
            Just(Forgery::WrongKeys),
            Just(Forgery::Unsigned),
            Just(Forgery::Mutated),
            Just(Forgery::OtherGroup),
        ];
        let owner_op = prop_oneof![
            "[a-d]{1,3}".prop_map(Op::Name),
            "[a-d]{1,3}".prop_map(Op::Announce),
            (1u8..6, any::<bool>()).prop_map(|(n, p)| Op::Member(n, p)),
            Just(Op::Dissolve),
        ];
        (owner_op, 11u64..60, kind, 1u8..6)
    }

    fn forge(op: &Op, hlc: u64, how: Forgery, by: u8) -> GroupState {
        // A member's own leave is no forgery: remove another member instead.
        let op = &match (how, op) {
            (Forgery::OwnName, Op::Member(n, false)) if *n == by => Op::Member(n % 5 + 1, false),
            _ => op.clone(),
        };
        let apply = |g: &mut GroupState, editor: u8| match op {
            Op::Name(s) => g.set_name(s, &stamp(hlc, editor)),
            Op::Announce(s) => g.set_announcement(s, &stamp(hlc, editor)),
            Op::Member(n, p) => g.set_member(&node(*n), *p, &stamp(hlc, editor)),
            Op::Leave(n) => g.set_member(&node(*n), false, &stamp(hlc, editor)),
            Op::Dissolve => g.dissolve(&stamp(hlc, editor)),
        };
        let sign_as_owner_with = |g: &mut GroupState, key: &SecretSigner| {
            let gid = g.global_group_id;
            // Sign every unsigned change with `key`, whatever its editor.
            let sign = |bytes: Vec<u8>| Some(key.sign(&bytes));
            for r in g.names.iter_mut().filter(|r| r.sig.is_none()) {
                r.sig = sign(statement(&gid, Change::Name(r)));
            }
            for r in g.announcements.iter_mut().filter(|r| r.sig.is_none()) {
                r.sig = sign(statement(&gid, Change::Announcement(r)));
            }
            for m in g.members.iter_mut().filter(|m| m.sig.is_none()) {
                m.sig = sign(statement(&gid, Change::Member(m)));
            }
            if let Some(d) = g.dissolved.as_mut().filter(|d| d.sig.is_none()) {
                d.sig = sign(statement(&gid, Change::Dissolved(d)));
            }
        };
        let mut g = base();
        match how {
            Forgery::OwnName => {
                apply(&mut g, by);
                g.sign_own(&signer(by));
            }
            Forgery::WrongSigner => {
                apply(&mut g, 0);
                sign_as_owner_with(&mut g, &signer(by));
                g.keys.push((node(by), signer(by).keys()));
                g.keys = normalise_keys(std::mem::take(&mut g.keys));
            }
            Forgery::WrongKeys => {
                apply(&mut g, 0);
                sign_as_owner_with(&mut g, &signer(by));
                g.keys = vec![(node(0), signer(by).keys())];
            }
            Forgery::Unsigned => apply(&mut g, 0),
            Forgery::Mutated => {
                apply(&mut g, 0);
                g.sign_own(&signer(0));
                match op {
                    Op::Name(_) => g.names[0].value.push('x'),
                    Op::Announce(_) => g.announcements[0].value.push('x'),
                    Op::Member(n, _) | Op::Leave(n) => {
                        let e = g.members.iter_mut().find(|m| m.id == node(*n)).unwrap();
                        e.present = !e.present;
                    }
                    Op::Dissolve => g.dissolved.as_mut().unwrap().hlc += 1,
                }
            }
            Forgery::OtherGroup => {
                let mut other = base();
                other.global_group_id = GlobalGroupId::from_ulid(ulid::Ulid::from_parts(2, 2));
                apply(&mut other, 0);
                other.sign_own(&signer(0));
                // The other group's signed change, put into this one.
                g.merge(&GroupState {
                    global_group_id: gid(),
                    ..other
                });
            }
        }
        g
    }

    proptest! {
        #[test]
        fn merge_is_order_independent_and_forgeries_never_count(
            ops in proptest::collection::vec(op(), 1..12),
            forged in proptest::collection::vec(forgery(), 0..6),
            seed in any::<u64>(),
        ) {
            let honest: Vec<GroupState> = ops.iter().map(|(o, h)| upsert(o, *h)).collect();
            for s in &honest {
                prop_assert_eq!(s.check_received(), Ok(()), "an honest change is accepted");
            }
            let forgeries: Vec<GroupState> =
                forged.iter().map(|(o, h, how, by)| forge(o, *h, *how, *by)).collect();
            for (f, what) in forgeries.iter().zip(&forged) {
                prop_assert!(f.check_received().is_err(), "accepted a forgery: {:?}", what);
            }
            // What a receiver does: merge what passes the checks.
            let receive = |held: &mut GroupState, s: &GroupState| {
                if s.check_received().is_ok() {
                    held.merge(s);
                }
            };
            let mut forward = base();
            for s in &honest {
                receive(&mut forward, s);
            }
            // Another order, forgeries mixed in, some states delivered twice (replays).
            let mut all: Vec<&GroupState> = honest.iter().chain(&forgeries).collect();
            let mut x = seed | 1;
            for i in (1..all.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                all.swap(i, usize::try_from(x % (i as u64 + 1)).unwrap());
            }
            let mut other = base();
            for s in all.iter().chain(all.iter().take(3)) {
                receive(&mut other, s);
            }
            // And pairwise merges first (associativity).
            let mut pairs = base();
            for chunk in honest.chunks(2) {
                let mut c = chunk[0].clone();
                for s in &chunk[1..] { c.merge(s); }
                receive(&mut pairs, &c);
            }
            prop_assert_eq!(&forward, &other);
            prop_assert_eq!(&forward, &pairs);
            prop_assert_eq!(forward.name(), other.name());
            forward.check_received().map_err(|e| TestCaseError::fail(e.0))?;
        }
    }
}
