//! The thin adapter between the wire engine and the database: `lan-mesh`'s persistence
//! ports ([`lan_mesh::ports`]) implemented over [`storage::Store`]. Neither side knows
//! the other; this crate translates between their types, one method each, and decides
//! which store errors refuse an envelope for good (the sender is told why) and which
//! only mean "not now" (no ack: the sender retries).

mod blobs;

use std::collections::HashMap;

use api_types::NodeId;
use chat_core::{EnvelopeId, Fingerprint, GlobalGroupId, KeyRange, MessageId, OrderKey, UnixMs};
use lan_mesh::envelope::Outgoing;
use lan_mesh::ports::{
    Arrival, GroupCursors, GroupDelivery, GroupLog, InboundEffect, InboundOutcome, Inbox, KeyBook,
    KeyPin, MemberAcks, Outbox, PortError, PortFuture, QueuedEnvelope, RelayOutcome, SendAttempt,
    Settled,
};
use storage::{Store, StoreError};

pub use blobs::BlobPorts;

/// The node's store, seen through the mesh's ports. Cheap to clone.
#[derive(Clone)]
pub struct StorePorts {
    store: Store,
}

impl StorePorts {
    pub fn new(store: Store) -> Self {
        StorePorts { store }
    }
}

/// An encoded envelope in the store's type (the outbox keeps kind and payload as given).
fn outgoing(out: Outgoing) -> storage::OutgoingEnvelope {
    storage::OutgoingEnvelope {
        kind: out.kind.to_string(),
        payload: out.payload,
    }
}

/// The store's encoder for a new DM: the `dm.send` payload the outbox keeps.
pub fn dm_envelope(message: &chat_core::Message) -> storage::OutgoingEnvelope {
    outgoing(lan_mesh::envelope::dm_outgoing(message))
}

/// The store's encoder for a group change: the `group.upsert` payload for each member.
pub fn group_upsert_envelope(state: &chat_core::GroupState) -> storage::OutgoingEnvelope {
    outgoing(lan_mesh::envelope::group_upsert_outgoing(state))
}

/// The store's encoder for a read receipt: `receipt.read` up to a position, for the
/// DM with the recipient (`None`) or a group.
pub fn read_receipt_envelope(
    group: Option<&chat_core::GlobalGroupId>,
    up_to: &chat_core::OrderKey,
) -> storage::OutgoingEnvelope {
    outgoing(lan_mesh::envelope::read_receipt_outgoing(group, up_to))
}

/// An outbox row as the mesh sends it.
pub fn queued(entry: storage::OutboxEntry) -> QueuedEnvelope {
    QueuedEnvelope {
        envelope_id: entry.envelope_id,
        peer_id: entry.peer_id,
        kind: entry.kind,
        payload: entry.payload,
        message_id: entry.message_id,
        retry_count: entry.retry_count,
        created_at: entry.created_at,
    }
}

fn port_error(e: StoreError) -> PortError {
    match e {
        StoreError::Invalid { .. }
        | StoreError::Blocked(_)
        | StoreError::NotFound { .. }
        | StoreError::Forbidden { .. } => PortError::Refused(e.to_string()),
        StoreError::Forged(_) => PortError::Forged(e.to_string()),
        e => PortError::Unavailable(e.to_string()),
    }
}

fn attempt(a: SendAttempt) -> storage::SendAttempt {
    match a {
        SendAttempt::Sent => storage::SendAttempt::Sent,
        SendAttempt::Failed(why) => storage::SendAttempt::Failed(why),
    }
}

fn settled(a: storage::AckedEnvelope) -> Settled {
    Settled {
        peer_id: a.peer_id,
        message_id: a.message_id,
    }
}

fn incoming(m: lan_mesh::ports::IncomingMessage) -> storage::InboundMessage {
    storage::InboundMessage {
        message_id: m.message_id,
        body: m.body,
        sent_at: m.sent_at,
        hlc: m.hlc,
        signature: m.signature,
    }
}

fn effect(e: InboundEffect) -> storage::InboundEffect {
    match e {
        InboundEffect::DirectMessage(m) => storage::InboundEffect::DirectMessage(incoming(m)),
        InboundEffect::GroupMessage {
            global_group_id,
            message,
        } => storage::InboundEffect::GroupMessage {
            global_group_id,
            message: incoming(message),
        },
        InboundEffect::GroupUpsert(state) => storage::InboundEffect::GroupUpsert(state),
        InboundEffect::ReadReceipt {
            global_group_id,
            up_to,
        } => storage::InboundEffect::ReadReceipt {
            global_group_id,
            up_to,
        },
    }
}

fn outcome(o: storage::InboundOutcome) -> InboundOutcome {
    match o {
        storage::InboundOutcome::Applied(message) => InboundOutcome::Applied(message),
        storage::InboundOutcome::Duplicate => InboundOutcome::Duplicate,
        storage::InboundOutcome::Expired => InboundOutcome::Expired,
        storage::InboundOutcome::Stale => InboundOutcome::Stale,
        storage::InboundOutcome::GroupUpdated {
            announcement_changed,
        } => InboundOutcome::GroupUpdated {
            announcement_changed,
        },
        storage::InboundOutcome::GroupInvitation => InboundOutcome::GroupInvitation,
        storage::InboundOutcome::ReadReceipt {
            conversation_id,
            up_to,
            moved,
        } => InboundOutcome::ReadReceipt {
            conversation_id,
            up_to,
            moved,
        },
    }
}

impl Outbox for StorePorts {
    fn due_outbox(&self, now: UnixMs, limit: u32) -> PortFuture<'_, Vec<QueuedEnvelope>> {
        Box::pin(async move {
            let due = self
                .store
                .due_outbox(now, limit)
                .await
                .map_err(port_error)?;
            Ok(due.into_iter().map(queued).collect())
        })
    }

    fn next_outbox_due_at(&self) -> PortFuture<'_, Option<UnixMs>> {
        Box::pin(async move { self.store.next_outbox_due_at().await.map_err(port_error) })
    }

    fn record_outbox_attempts(
        &self,
        attempts: Vec<(EnvelopeId, SendAttempt)>,
        now: UnixMs,
    ) -> PortFuture<'_, Vec<MessageId>> {
        Box::pin(async move {
            let attempts = attempts
                .into_iter()
                .map(|(id, a)| (id, attempt(a)))
                .collect();
            let updated = self
                .store
                .record_outbox_attempts(attempts, now)
                .await
                .map_err(port_error)?;
            Ok(updated
                .into_iter()
                .flatten()
                .filter(|entry| entry.status == storage::OutboxStatus::Failed)
                .filter_map(|entry| entry.message_id)
                .collect())
        })
    }

    fn outbox_acked(&self, envelope: EnvelopeId, peer: NodeId) -> PortFuture<'_, Option<Settled>> {
        Box::pin(async move {
            let acked = self.store.outbox_ack(envelope, peer).await;
            acked.map(|a| a.map(settled)).map_err(port_error)
        })
    }

    fn outbox_rejected(
        &self,
        envelope: EnvelopeId,
        peer: NodeId,
        reason: String,
    ) -> PortFuture<'_, Option<Settled>> {
        Box::pin(async move {
            let rejected = self.store.outbox_rejected(envelope, peer, reason).await;
            rejected.map(|a| a.map(settled)).map_err(port_error)
        })
    }

    fn outbox_due_now(&self, peer: NodeId, now: UnixMs) -> PortFuture<'_, usize> {
        Box::pin(async move {
            self.store
                .outbox_due_now(peer, now)
                .await
                .map_err(port_error)
        })
    }
}

impl Inbox for StorePorts {
    fn apply_inbound(
        &self,
        arrival: Arrival,
        inbound: InboundEffect,
    ) -> PortFuture<'_, InboundOutcome> {
        Box::pin(async move {
            let envelope = storage::InboundEnvelope {
                envelope_id: arrival.envelope_id,
                from_peer_id: arrival.from,
                received_at: arrival.received_at,
                sender_clock_offset_ms: arrival.sender_clock_offset_ms,
            };
            let applied = self.store.apply_inbound(envelope, effect(inbound)).await;
            applied.map(outcome).map_err(port_error)
        })
    }

    fn prune_inbox_dedupe(&self, now: UnixMs) -> PortFuture<'_, usize> {
        Box::pin(async move { self.store.prune_inbox_dedupe(now).await.map_err(port_error) })
    }

    fn message(&self, id: MessageId) -> PortFuture<'_, Option<chat_core::Message>> {
        Box::pin(async move { self.store.message(id).await.map_err(port_error) })
    }
}

impl GroupCursors for StorePorts {
    fn due_group_deliveries(
        &self,
        now: UnixMs,
        per_member: u32,
    ) -> PortFuture<'_, Vec<GroupDelivery>> {
        Box::pin(async move {
            let due = self.store.due_group_deliveries(now, per_member).await;
            Ok(due
                .map_err(port_error)?
                .into_iter()
                .map(|d| GroupDelivery {
                    global_group_id: d.global_group_id,
                    peer_id: d.peer_id,
                    retry_count: d.retry_count,
                    messages: d.messages,
                })
                .collect())
        })
    }

    fn record_group_attempt(
        &self,
        group: GlobalGroupId,
        member: NodeId,
        sent: SendAttempt,
        now: UnixMs,
    ) -> PortFuture<'_, ()> {
        Box::pin(async move {
            let recorded = self
                .store
                .record_group_attempt(group, member, attempt(sent), now);
            recorded.await.map_err(port_error)
        })
    }

    fn group_acks_recorded(
        &self,
        acks: Vec<MemberAcks>,
        now: UnixMs,
    ) -> PortFuture<'_, Vec<Vec<MessageId>>> {
        Box::pin(async move {
            self.store
                .group_acks_recorded(acks, now)
                .await
                .map_err(port_error)
        })
    }

    fn next_group_delivery_due_at(&self) -> PortFuture<'_, Option<UnixMs>> {
        Box::pin(async move {
            self.store
                .next_group_delivery_due_at()
                .await
                .map_err(port_error)
        })
    }

    fn group_deliveries_due_now(&self, member: NodeId, now: UnixMs) -> PortFuture<'_, usize> {
        Box::pin(async move {
            let due = self.store.group_deliveries_due_now(member, now);
            due.await.map_err(port_error)
        })
    }
}

impl GroupLog for StorePorts {
    fn groups(&self) -> PortFuture<'_, Vec<chat_core::GroupState>> {
        Box::pin(async move {
            let groups = self.store.groups().await.map_err(port_error)?;
            Ok(groups.into_iter().map(|g| g.state).collect())
        })
    }

    fn group(&self, group: GlobalGroupId) -> PortFuture<'_, Option<chat_core::GroupState>> {
        Box::pin(async move {
            let group = self.store.group(group).await.map_err(port_error)?;
            Ok(group.map(|g| g.state))
        })
    }

    fn group_fingerprint(
        &self,
        group: GlobalGroupId,
        range: KeyRange,
    ) -> PortFuture<'_, Fingerprint> {
        Box::pin(async move {
            self.store
                .group_fingerprint(group, range)
                .await
                .map_err(port_error)
        })
    }

    fn group_keys(&self, group: GlobalGroupId, range: KeyRange) -> PortFuture<'_, Vec<OrderKey>> {
        Box::pin(async move {
            self.store
                .group_sync_keys(group, range)
                .await
                .map_err(port_error)
        })
    }

    fn group_messages_for_relay(
        &self,
        group: GlobalGroupId,
        ids: Vec<MessageId>,
    ) -> PortFuture<'_, Vec<chat_core::RelayedMessage>> {
        Box::pin(async move {
            let messages = self.store.group_messages_for_relay(group, ids);
            messages.await.map_err(port_error)
        })
    }

    fn apply_relayed(
        &self,
        from: NodeId,
        group: GlobalGroupId,
        messages: Vec<chat_core::RelayedMessage>,
        author_offsets: HashMap<NodeId, i64>,
        now: UnixMs,
    ) -> PortFuture<'_, RelayOutcome> {
        Box::pin(async move {
            let applied = self
                .store
                .apply_relayed(from, group, messages, author_offsets, now)
                .await
                .map_err(port_error)?;
            Ok(RelayOutcome {
                stored: applied.stored,
                skipped: applied.skipped,
                forged: applied.forged,
            })
        })
    }
}

impl KeyBook for StorePorts {
    fn reattach_identity(
        &self,
        old: NodeId,
        old_keys: [u8; 64],
        old_derived: bool,
        new: NodeId,
    ) -> PortFuture<'_, lan_mesh::ports::Reattach> {
        Box::pin(async move {
            let done = self
                .store
                .reattach_peer_checked(old, old_keys, old_derived, new)
                .await
                .map_err(port_error)?;
            if done == storage::PeerReattach::Moved {
                // Its queued DMs were signed for its old id: signed again for the new
                // one before the link is up (the transport awaits this port).
                self.store
                    .resign_queued_direct(dm_envelope)
                    .await
                    .map_err(port_error)?;
            }
            Ok(match done {
                storage::PeerReattach::Moved => lan_mesh::ports::Reattach::Moved,
                storage::PeerReattach::NothingKnown => lan_mesh::ports::Reattach::NothingKnown,
                storage::PeerReattach::Refused => lan_mesh::ports::Reattach::Refused,
            })
        })
    }

    fn pin_link_keys(&self, peer: NodeId, keys: [u8; 64]) -> PortFuture<'_, KeyPin> {
        Box::pin(async move {
            let pin = self
                .store
                .pin_link_keys(peer, keys)
                .await
                .map_err(port_error)?;
            Ok(match pin {
                storage::KeyPin::Pinned => KeyPin::Pinned,
                storage::KeyPin::Matches => KeyPin::Matches,
                storage::KeyPin::Mismatch => KeyPin::Mismatch,
            })
        })
    }
}
