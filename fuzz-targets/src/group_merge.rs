//! `group_merge`: group states as members may hold and send them, through
//! `GroupState::merge` (and, for states off the wire, `GroupStateWire::into_state`).
//!
//! `chat_core::group_state` claims its merge is commutative, associative and
//! idempotent (a convergent replicated type): this target checks the claim on states
//! the fuzzer describes, valid or not — the merge must hold its laws for whatever a
//! store holds, the checks on receipt only decide what gets in. First byte even: the
//! rest describes three states of one group, field by field, from a pool of twelve
//! editors (more than the register cap of eight, so the cap is exercised); odd: the
//! rest is a `group.upsert` payload.

use std::sync::OnceLock;

use api_types::NodeId;
use chat_core::signing::SecretSigner;
use chat_core::{
    AuthorKeys, DissolvedStamp, GlobalGroupId, GroupState, MemberEntry, Register, Signature, Signer,
};
use lan_mesh::envelope::GroupStateWire;

use crate::Choices;

const POOL: u8 = 12;

/// The pool's ids and keys (each derives its id), made once.
fn pool() -> &'static [(NodeId, AuthorKeys)] {
    static POOL_KEYS: OnceLock<Vec<(NodeId, AuthorKeys)>> = OnceLock::new();
    POOL_KEYS.get_or_init(|| {
        (0..POOL)
            .map(|n| {
                let signer = SecretSigner::from_number(u64::from(n));
                (signer.node_id(), signer.keys())
            })
            .collect()
    })
}

fn member_of_pool(n: u8) -> &'static (NodeId, AuthorKeys) {
    let pool = pool();
    &pool[usize::from(n) % pool.len()]
}

fn node(c: &mut Choices) -> NodeId {
    member_of_pool(c.byte()).0.clone()
}

fn hlc(c: &mut Choices) -> u64 {
    // Few values, so equal stamps (the tie-breaks) are common; 0 is one of them.
    u64::from(c.below(6))
}

fn sig(c: &mut Choices) -> Option<Signature> {
    match c.below(4) {
        0 => None,
        n => Some([n; 64]),
    }
}

fn register(c: &mut Choices) -> Register {
    const VALUES: [&str; 4] = ["", "Team", "team", "Équipe"];
    Register {
        hlc: hlc(c),
        editor: node(c),
        value: VALUES[usize::from(c.below(4))].to_string(),
        sig: sig(c),
    }
}

fn member(c: &mut Choices) -> MemberEntry {
    MemberEntry {
        id: node(c),
        present: c.below(2) == 0,
        hlc: hlc(c),
        editor: node(c),
        sig: sig(c),
    }
}

fn keys(c: &mut Choices) -> (NodeId, AuthorKeys) {
    // Mostly the keys the id derives from, sometimes another node's (a forgery).
    let (id, keys) = member_of_pool(c.byte()).clone();
    if c.below(4) == 0 {
        (id, member_of_pool(c.byte()).1)
    } else {
        (id, keys)
    }
}

fn list<T>(c: &mut Choices, max: u8, item: fn(&mut Choices) -> T) -> Vec<T> {
    let n = c.below(max + 1);
    (0..n).map(|_| item(c)).collect()
}

/// A state of group `1` owned by node 0, as the choices describe it (not necessarily
/// valid nor in canonical form).
fn state(c: &mut Choices) -> GroupState {
    GroupState {
        global_group_id: GlobalGroupId::from_ulid(ulid::Ulid::from(1u128)),
        owner: member_of_pool(0).0.clone(),
        names: list(c, 10, register),
        announcements: list(c, 3, register),
        members: list(c, 6, member),
        dissolved: (c.below(3) == 0).then(|| DissolvedStamp {
            hlc: hlc(c),
            editor: node(c),
            sig: sig(c),
        }),
        keys: list(c, 4, keys),
    }
}

fn merged(a: &GroupState, b: &GroupState) -> GroupState {
    let mut out = a.clone();
    out.merge(b);
    out
}

pub fn group_merge(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let mut c = Choices::new(rest);
        let (a, b, x) = (state(&mut c), state(&mut c), state(&mut c));
        check_laws(&a, &b, &x);
    } else if let Ok(wire) = serde_json::from_slice::<GroupStateWire>(rest) {
        if let Ok(state) = wire.into_state() {
            // Received: valid, so canonical — merging it into itself changes nothing —
            // and it travels again as the same state.
            assert_eq!(state.check_received(), Ok(()));
            assert_eq!(merged(&state, &state), state);
            match GroupStateWire::from_state(&state).into_state() {
                Ok(again) => assert_eq!(again, state),
                Err(e) => panic!("a received group state does not re-encode: {e}"),
            }
        }
    }
}

/// Commutative, associative, idempotent; a valid state is its own merge.
fn check_laws(a: &GroupState, b: &GroupState, x: &GroupState) {
    let ab = merged(a, b);
    assert_eq!(ab, merged(b, a), "merge is not commutative");
    assert_eq!(
        merged(&ab, x),
        merged(a, &merged(b, x)),
        "merge is not associative"
    );
    assert_eq!(merged(&ab, b), ab, "merge is not idempotent");
    assert_eq!(merged(&ab, &ab), ab, "merge is not idempotent");
    if a.validate().is_ok() {
        assert_eq!(
            &merged(a, a),
            a,
            "a valid state changes when merged with itself"
        );
    }
}
