use proptest::prelude::*;
use storage::{
    ConversationId, EnvelopeId, GlobalGroupId, GroupState, HistoryQuery, Hlc, InboundEffect,
    InboundEnvelope, InboundMessage, MessageId, Stamp, Store,
};
use ulid::Ulid;

use crate::{node, now_ms, open_with_peers};

/// (sender 1..=3, wall ms offset, logical counter, id random part)
type Spec = (u8, u16, u8, u64);

async fn load(store: &Store, gid: GlobalGroupId, specs: &[Spec], base: u64) {
    for (sender, offset, counter, rand) in specs {
        let wall = base + u64::from(*offset);
        let hlc = Hlc::from_raw(Hlc::from_wall_ms(wall).raw() + u64::from(*counter));
        let message_id = MessageId::from_ulid(Ulid::from_parts(wall, u128::from(*rand)));
        let envelope = InboundEnvelope {
            envelope_id: EnvelopeId::new(),
            from_peer_id: node(*sender),
            received_at: now_ms(),
            sender_clock_offset_ms: Some(0),
        };
        store
            .apply_inbound(
                envelope,
                InboundEffect::GroupMessage {
                    global_group_id: gid,
                    message: InboundMessage {
                        signature: None,
                        message_id,
                        body: format!("from {sender} at {offset}/{counter}"),
                        sent_at: wall as i64,
                        hlc,
                    },
                },
            )
            .await
            .unwrap();
    }
}

async fn group_order(specs: Vec<Spec>, gid: GlobalGroupId, base: u64) -> Vec<MessageId> {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&dir.path().join("o.db"), 3).await;
    let envelope = InboundEnvelope {
        envelope_id: EnvelopeId::new(),
        from_peer_id: node(1),
        received_at: now_ms(),
        sender_clock_offset_ms: Some(0),
    };
    let state = GroupState::create(
        gid,
        &Stamp {
            hlc: Hlc::from_wall_ms(base).raw(),
            editor: node(1),
        },
        "Order",
        "",
        &[node(0), node(2), node(3)],
    );
    store
        .apply_inbound(envelope, InboundEffect::GroupUpsert(state))
        .await
        .unwrap();
    load(&store, gid, &specs, base).await;
    let page = store
        .history(
            ConversationId::group(&gid),
            HistoryQuery {
                before: None,
                limit: 500,
            },
        )
        .await
        .unwrap();
    page.messages.iter().map(|m| m.message_id).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn every_node_orders_a_group_the_same_whatever_the_arrival_order(
        specs in proptest::collection::vec((1u8..=3, 0u16..20, 0u8..3, any::<u64>()), 1..40),
        seed in any::<u64>(),
    ) {
        let mut seen = std::collections::HashSet::new();
        let specs: Vec<Spec> = specs.into_iter().filter(|(_, offset, _, rand)| seen.insert((*offset, *rand))).collect();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let gid = GlobalGroupId::new();
        let base = now_ms() as u64;
        let mut shuffled = specs.clone();
        // A deterministic permutation from the seed (Fisher–Yates with an LCG).
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (state >> 33) as usize % (i + 1));
        }
        let a = runtime.block_on(group_order(specs.clone(), gid, base));
        let b = runtime.block_on(group_order(shuffled, gid, base));
        prop_assert_eq!(&a, &b);
        // And the order is the (hlc, id) order, not arrival.
        let mut expected: Vec<(u64, MessageId)> = specs
            .iter()
            .map(|(_, offset, counter, rand)| {
                let wall = base + u64::from(*offset);
                (Hlc::from_wall_ms(wall).raw() + u64::from(*counter), MessageId::from_ulid(Ulid::from_parts(wall, u128::from(*rand))))
            })
            .collect();
        expected.sort();
        let expected_ids: Vec<MessageId> = expected.into_iter().map(|(_, id)| id).collect();
        prop_assert_eq!(a, expected_ids);
    }
}

/// (sender 1..=3, what it changes 0..5, clock offset, tag)
type Upsert = (u8, u8, u8, u8);

/// The group as its owner (node 1) made it, at `base`.
fn founded(gid: GlobalGroupId, base: u64) -> GroupState {
    GroupState::create(
        gid,
        &Stamp {
            hlc: base,
            editor: node(1),
        },
        "team",
        "",
        &[node(0), node(2)],
    )
}

/// The state `sender` sends after one change of its own on top of the founding state.
/// Some are forged (a member adding someone) and must be refused on every node alike.
fn upsert_state(
    gid: GlobalGroupId,
    base: u64,
    (sender, change, offset, tag): Upsert,
) -> GroupState {
    let mut state = founded(gid, base);
    let stamp = Stamp {
        hlc: base + 1 + u64::from(offset),
        editor: node(sender),
    };
    match change {
        0 => state.set_name(&format!("name {tag}"), &stamp),
        1 => state.set_announcement(&format!("note {tag}"), &stamp),
        2 => state.set_member(&node(3), tag % 2 == 0, &stamp),
        3 => state.set_member(&node(sender), false, &stamp),
        _ => state.dissolve(&stamp),
    }
    state
}

async fn merged(gid: GlobalGroupId, base: u64, upserts: &[Upsert]) -> Option<GroupState> {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&dir.path().join("m.db"), 3).await;
    for upsert in upserts {
        let envelope = InboundEnvelope {
            envelope_id: EnvelopeId::new(),
            from_peer_id: node(upsert.0),
            received_at: now_ms(),
            sender_clock_offset_ms: Some(0),
        };
        // Refusals must be refusals on every node alike.
        let _ = store
            .apply_inbound(
                envelope,
                InboundEffect::GroupUpsert(upsert_state(gid, base, *upsert)),
            )
            .await;
    }
    store.group(gid).await.unwrap().map(|g| g.state)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_group_upserts_converge_in_any_arrival_order(
        upserts in proptest::collection::vec((1u8..=3, 0u8..5, 0u8..20, 0u8..4), 1..10),
        seed in any::<u64>(),
    ) {
        let mut shuffled = upserts.clone();
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (state >> 33) as usize % (i + 1));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let gid = GlobalGroupId::new();
        let base = Hlc::from_wall_ms(u64::try_from(now_ms()).unwrap()).raw();
        let a = runtime.block_on(merged(gid, base, &upserts));
        let b = runtime.block_on(merged(gid, base, &shuffled));
        prop_assert_eq!(&a, &b);
        if let Some(a) = a {
            // What every node shows follows from the state alone.
            let b = b.unwrap();
            prop_assert_eq!(a.name(), b.name());
            prop_assert_eq!(a.member_ids(), b.member_ids());
            prop_assert_eq!(a.announcement(), b.announcement());
        }
    }
}
