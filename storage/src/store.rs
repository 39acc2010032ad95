//! `Store`: the handle the node, the local API and lan-mesh hold. Cheap to clone; every
//! method is async and does its SQLite work on the store's own threads (one writer,
//! a few readers), never on the caller's tokio worker.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use api_types::NodeId;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::attachments::{self, Attachment};
use crate::blocks::{self, BlockList, NewlyBlocked};
use crate::data_dir::DataDir;
use crate::error::{StoreError, StoreResult};
use crate::group_sync::RelayOutcome;
use crate::health::{Health, WriteFault};
use crate::identity_change::LocalChange;
use crate::model::{
    AckedEnvelope, Conversation, Group, GroupAction, GroupDelivery, GroupEdit, GroupInvitation,
    HistoryQuery, InboundEffect, InboundEnvelope, InboundOutcome, KeyPin, LocalIdentity,
    MessagePage, NewGroup, OutboxEntry, OutgoingEnvelope, Peer, PeerSighting, ReadState,
    SearchPage, SearchQuery, SendAttempt, User,
};
use crate::name_cache::NameCache;
use crate::readers::{self, ReadJob};
use crate::writer::{self, AfterCommit, Command, Durability, WriteJob, WriterState};
use crate::{chat, group_delivery, group_sync, groups, inbound, outbox, peers, search};
use chat_core::OrderKey;
use chat_core::RelayedMessage;
use chat_core::RetryPolicy;
use chat_core::{ConversationId, EnvelopeId, GlobalGroupId, MessageId, UserId};
use chat_core::{Fingerprint, KeyRange};
use chat_core::{GroupState, Message, UnixMs};

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "lanchat.db";
/// Readers: the UI's history and search queries run beside mesh lookups; two keep one
/// slow search from stalling the rest on these 2-core machines.
const READERS: usize = 2;

#[derive(Clone, Debug)]
pub struct Store {
    writer: mpsc::Sender<Command>,
    readers: mpsc::Sender<ReadJob>,
    path: PathBuf,
    health: Health,
    names: Arc<NameCache>,
}

impl Store {
    /// Opens `DIR/lanchat.db` in an open (locked) data directory.
    pub async fn open_in(dir: &DataDir) -> StoreResult<Store> {
        Store::open(&dir.join(DATABASE_FILE)).await
    }

    /// Opens (creating if missing) and migrates the database at `path`. A file written
    /// by a newer version, or that is not a lanchat database, is refused and left as it is.
    pub async fn open(path: &Path) -> StoreResult<Store> {
        let path = path.to_path_buf();
        let health = Health::default();
        let (writer, ready) = writer::spawn(path.clone(), health.clone())?;
        ready.await.map_err(|_| StoreError::Closed)??;
        let readers = readers::spawn(path.clone(), READERS).await?;
        tracing::info!(path = %path.display(), "store open");
        Ok(Store {
            writer,
            readers,
            path,
            health,
            names: Arc::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether writes fail right now because of the disk (full, I/O error): set by the
    /// first such failure, cleared by the next write that commits.
    pub fn write_fault(&self) -> Option<WriteFault> {
        self.health.current()
    }

    /// Commits what is queued and closes the writer. Other clones get `Closed` after.
    pub async fn close(self) -> StoreResult<()> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(Command::Close(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    async fn write<R, F>(&self, durability: Durability, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &mut WriterState) -> StoreResult<R> + Send + 'static,
    {
        self.write_then(durability, f, None).await
    }

    /// [`Store::write`] with `after_commit` run on the writer's thread once the write is
    /// committed (whether or not this caller is still waiting).
    async fn write_then<R, F>(
        &self,
        durability: Durability,
        f: F,
        after_commit: Option<AfterCommit<R>>,
    ) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &mut WriterState) -> StoreResult<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(Command::Write(WriteJob::boxed(
                durability,
                f,
                after_commit,
                tx,
            )))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// The hook for writes that change users in bulk: names are read afresh.
    fn names_changed<R>(&self) -> Option<AfterCommit<R>> {
        let names = Arc::clone(&self.names);
        Some(Box::new(move |_: &R| names.committed_many()))
    }

    async fn read<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.readers
            .send(job)
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    // ---- identity and users ----

    /// Records this node's id and name. The id of a database never changes.
    pub async fn set_local_identity(
        &self,
        node_id: NodeId,
        display_name: String,
        now: UnixMs,
    ) -> StoreResult<LocalIdentity> {
        self.write_then(
            Durability::Normal,
            move |c, s| chat::set_local_identity(c, s, &node_id, &display_name, now),
            self.names_changed(),
        )
        .await
    }

    /// This node's id becomes `new` (the id its keys derive, or a copy's new identity):
    /// the rows about itself move in one durable commit, as `kind` says. Returns the id
    /// it had, or `None` when it already was `new` or the database is new.
    pub async fn change_local_identity(
        &self,
        new: NodeId,
        kind: LocalChange,
    ) -> StoreResult<Option<NodeId>> {
        self.write_then(
            Durability::BeforeAck,
            move |c, s| crate::identity_change::change_local_identity(c, s, &new, kind),
            self.names_changed(),
        )
        .await
    }

    /// A colleague proved that `old` is now `new`: its contact, DM history, group
    /// memberships, delivery cursors and queued envelopes move to the new id. Returns
    /// whether anything was known under `old`.
    pub async fn reattach_peer(&self, old: NodeId, new: NodeId) -> StoreResult<bool> {
        self.write_then(
            Durability::BeforeAck,
            move |c, _| crate::identity_change::reattach_peer(c, &old, &new),
            self.names_changed(),
        )
        .await
    }

    /// [`Store::reattach_peer`] once `old_keys` are shown to have held `old`: they
    /// derive it (`old_derived`, which the caller checked) or were pinned for it.
    pub async fn reattach_peer_checked(
        &self,
        old: NodeId,
        old_keys: [u8; 64],
        old_derived: bool,
        new: NodeId,
    ) -> StoreResult<crate::identity_change::PeerReattach> {
        self.write_then(
            Durability::BeforeAck,
            move |c, _| {
                crate::identity_change::reattach_peer_checked(c, &old, &old_keys, old_derived, &new)
            },
            self.names_changed(),
        )
        .await
    }

    /// Re-signs and re-encodes the DMs still queued for the ids as they are now (after
    /// this node's or a receiver's id changed; see `outbox::resign_queued_direct`).
    pub async fn resign_queued_direct<E>(&self, encode: E) -> StoreResult<usize>
    where
        E: Fn(&Message) -> OutgoingEnvelope + Send + 'static,
    {
        self.write(Durability::Normal, move |c, s| {
            outbox::resign_queued_direct(c, s, encode)
        })
        .await
    }

    /// The link keys pinned for `peer` (64 bytes), if any: what an identity change
    /// from an id of the random-id era is checked against.
    pub async fn pinned_link_keys(&self, peer: NodeId) -> StoreResult<Option<Vec<u8>>> {
        self.read(move |c| crate::identity_change::pinned_keys(c, &peer))
            .await
    }

    /// This node's earlier ids, newest first.
    pub async fn own_previous_ids(&self) -> StoreResult<Vec<NodeId>> {
        self.read(crate::identity_change::own_previous_ids).await
    }

    pub async fn local_identity(&self) -> StoreResult<Option<LocalIdentity>> {
        self.read(chat::local_identity).await
    }

    /// The local user and every peer's virtual user `lan:{peer_id}`.
    pub async fn users(&self) -> StoreResult<Vec<User>> {
        self.read(chat::users).await
    }

    /// One user's display name (`None`: no such user), for views of a single message:
    /// one keyed read instead of the whole users table.
    /// Remembered between calls ([`NameCache`]): a received message's event asks for
    /// its sender's name every time.
    pub async fn user_display_name(&self, user: UserId) -> StoreResult<Option<String>> {
        if let Some(name) = self.names.get(&user) {
            return Ok(Some(name));
        }
        let generation = self.names.generation();
        let key = user.clone();
        let name = self.read(move |c| chat::user_display_name(c, &key)).await?;
        if let Some(name) = &name {
            self.names.remember_read(user, name.clone(), generation);
        }
        Ok(name)
    }

    // ---- peers ----

    /// Discovery saw a peer: creates or refreshes it (online) and its virtual user.
    pub async fn record_peer_sighting(&self, sighting: PeerSighting) -> StoreResult<Peer> {
        let names = Arc::clone(&self.names);
        self.write_then(
            Durability::Normal,
            move |c, s| peers::record_sighting(c, s, &sighting),
            Some(Box::new(move |peer: &Peer| {
                names.committed(UserId::lan(&peer.peer_id), &peer.display_name)
            })),
        )
        .await
    }

    pub async fn set_peer_offline(&self, peer: NodeId, now: UnixMs) -> StoreResult<()> {
        self.write(Durability::Normal, move |c, _| {
            peers::set_offline(c, &peer, now)
        })
        .await
    }

    /// Makes the settings' blocks the store's (docs/STORAGE.md, "Blocks"): called at
    /// every start and settings change. A peer whose block begins has its queued
    /// envelopes dropped; returns those peers with the messages that thereby failed.
    pub async fn apply_blocks(&self, list: BlockList) -> StoreResult<Vec<NewlyBlocked>> {
        self.write(Durability::Normal, move |c, s| blocks::apply(c, s, list))
            .await
    }

    /// Pins the keys a peer proved on an encrypted link, or checks them against the pin.
    pub async fn pin_link_keys(&self, peer: NodeId, keys: [u8; 64]) -> StoreResult<KeyPin> {
        self.write(Durability::Normal, move |c, s| {
            peers::pin_link_keys(c, s, &peer, &keys)
        })
        .await
    }

    /// Forgets a peer's pinned keys (its next link pins new ones). True if there were.
    pub async fn unpin_link_keys(&self, peer: NodeId) -> StoreResult<bool> {
        self.write(Durability::Normal, move |c, _| {
            peers::unpin_link_keys(c, &peer)
        })
        .await
    }

    pub async fn peers(&self) -> StoreResult<Vec<Peer>> {
        self.read(peers::peers).await
    }

    pub async fn peer(&self, peer: NodeId) -> StoreResult<Option<Peer>> {
        self.read(move |c| peers::peer(c, &peer)).await
    }

    // ---- conversations and messages ----

    /// The DM conversation with a known peer, created if needed (no message required).
    pub async fn open_direct(&self, peer: NodeId, now: UnixMs) -> StoreResult<ConversationId> {
        self.write(Durability::Normal, move |c, _| chat::open_dm(c, &peer, now))
            .await
    }

    /// DMs and groups, most recent activity first, with last message and unread count.
    pub async fn conversations(&self) -> StoreResult<Vec<Conversation>> {
        self.read(chat::conversations).await
    }

    pub async fn mark_read(&self, conversation: ConversationId) -> StoreResult<()> {
        self.write(Durability::Normal, move |c, _| {
            chat::mark_read(c, &conversation)
        })
        .await
    }

    /// Marks a conversation read and, with `send_receipts`, queues one `receipt.read`
    /// per recipient (`encode` is lan-mesh's codec), all in one transaction. A DM that
    /// does not exist yet is `NotFound`, as in `mark_read`.
    pub async fn mark_read_with_receipts<E>(
        &self,
        conversation: ConversationId,
        send_receipts: bool,
        now: UnixMs,
        encode: E,
    ) -> StoreResult<crate::MarkedRead>
    where
        E: Fn(Option<&GlobalGroupId>, &OrderKey) -> OutgoingEnvelope + Send + 'static,
    {
        self.write(Durability::Normal, move |c, s| {
            crate::receipts::mark_read(c, s, &conversation, send_receipts, now, encode)
        })
        .await
    }

    /// Every reader's read position in a conversation (and a group's members): what
    /// the API computes `read` and "read by k of n" from.
    pub async fn read_state(&self, conversation: ConversationId) -> StoreResult<ReadState> {
        self.read(move |c| crate::receipts::read_state(c, &conversation))
            .await
    }

    /// The read states of several conversations in one read (the conversation list's
    /// last messages), in the order asked.
    pub async fn read_states(
        &self,
        conversations: Vec<ConversationId>,
    ) -> StoreResult<Vec<ReadState>> {
        self.read(move |c| {
            conversations
                .iter()
                .map(|id| crate::receipts::read_state(c, id))
                .collect()
        })
        .await
    }

    /// A page of history, newest last.
    pub async fn history(
        &self,
        conversation: ConversationId,
        query: HistoryQuery,
    ) -> StoreResult<MessagePage> {
        self.read(move |c| chat::history(c, &conversation, query))
            .await
    }

    pub async fn message(&self, message_id: MessageId) -> StoreResult<Option<Message>> {
        self.read(move |c| chat::message(c, &message_id)).await
    }

    /// Sends a message to a DM or group conversation: the message (status pending) and,
    /// for a DM, its envelope in the outbox, in one transaction. `encode_direct` turns a
    /// DM into its envelope (lan-mesh's codec). Returns the DM's new outbox entry too, so
    /// the delivery worker can send it at once without reading the outbox first; a group
    /// message has none (its fan-out is the members' delivery cursors, see
    /// `due_group_deliveries`).
    pub async fn send_message_queued<E>(
        &self,
        conversation: ConversationId,
        text: String,
        now: UnixMs,
        encode_direct: E,
    ) -> StoreResult<(Message, Option<OutboxEntry>)>
    where
        E: FnOnce(&Message) -> OutgoingEnvelope + Send + 'static,
    {
        match conversation.target().clone() {
            chat_core::ConversationTarget::Direct(peer) => {
                self.write(Durability::Normal, move |c, s| {
                    let (message, entry) =
                        outbox::send_direct(c, s, &peer, &text, now, encode_direct)?;
                    Ok((message, Some(entry)))
                })
                .await
            }
            chat_core::ConversationTarget::Group(group) => {
                self.write(Durability::Normal, move |c, s| {
                    let local = s.local.clone().ok_or(StoreError::NoIdentity)?;
                    groups::check_may_send(c, &group, &local)?;
                    let message = chat::insert_local_message(
                        c,
                        s,
                        &ConversationId::group(&group),
                        &text,
                        now,
                    )?;
                    Ok((message, None))
                })
                .await
            }
        }
    }

    // ---- groups ----

    /// Creates a group owned by this node and queues `group.upsert` to every member.
    pub async fn create_group<E>(
        &self,
        group: NewGroup,
        now: UnixMs,
        encode: E,
    ) -> StoreResult<Group>
    where
        E: FnOnce(&GroupState) -> OutgoingEnvelope + Send + 'static,
    {
        self.write(Durability::Normal, move |c, s| {
            groups::create(c, s, &group, now, encode)
        })
        .await
    }

    /// Edits a group (next revision, by this node) and queues `group.upsert` to old
    /// and new members.
    pub async fn edit_group<E>(
        &self,
        group: GlobalGroupId,
        edit: GroupEdit,
        now: UnixMs,
        encode: E,
    ) -> StoreResult<Group>
    where
        E: FnOnce(&GroupState) -> OutgoingEnvelope + Send + 'static,
    {
        self.write(Durability::Normal, move |c, s| {
            groups::edit(c, s, &group, &edit, now, encode)
        })
        .await
    }

    /// This node leaves a group (not its owner), or the owner dissolves it; the new
    /// state goes to every member.
    pub async fn group_action<E>(
        &self,
        group: GlobalGroupId,
        action: GroupAction,
        now: UnixMs,
        encode: E,
    ) -> StoreResult<Group>
    where
        E: FnOnce(&GroupState) -> OutgoingEnvelope + Send + 'static,
    {
        self.write(Durability::Normal, move |c, s| {
            groups::act(c, s, &group, action, now, encode)
        })
        .await
    }

    /// The keys that sign this node's group changes and messages (docs/PROTOCOL.md,
    /// "Signatures"). Set once at start, before anything is sent.
    pub async fn set_signer(
        &self,
        signer: std::sync::Arc<dyn chat_core::Signer>,
    ) -> StoreResult<()> {
        self.write(Durability::Normal, move |_, s| {
            s.signer = Some(signer);
            Ok(())
        })
        .await
    }

    /// Whether a group a member adds this node to is joined at once (the setting
    /// `auto_accept_group_sync`) or waits as an invitation.
    pub async fn set_group_auto_accept(&self, auto_accept: bool) -> StoreResult<()> {
        self.write(Durability::Normal, move |_, s| {
            s.manual_group_accept = !auto_accept;
            Ok(())
        })
        .await
    }

    /// Open group invitations, newest first.
    pub async fn group_invitations(&self) -> StoreResult<Vec<GroupInvitation>> {
        self.read(groups::invitations).await
    }

    /// Joins the group of an open invitation.
    pub async fn accept_group_invitation(
        &self,
        group: GlobalGroupId,
        now: UnixMs,
    ) -> StoreResult<Group> {
        self.write(Durability::Normal, move |c, s| {
            groups::accept_invitation(c, s, &group, now)
        })
        .await
    }

    /// Declines an open invitation and tells the members this node left.
    pub async fn decline_group_invitation<E>(
        &self,
        group: GlobalGroupId,
        now: UnixMs,
        encode: E,
    ) -> StoreResult<()>
    where
        E: FnOnce(&GroupState) -> OutgoingEnvelope + Send + 'static,
    {
        self.write(Durability::Normal, move |c, s| {
            groups::decline_invitation(c, s, &group, now, encode)
        })
        .await
    }

    pub async fn group(&self, group: GlobalGroupId) -> StoreResult<Option<Group>> {
        self.read(move |c| groups::group(c, &group)).await
    }

    pub async fn groups(&self) -> StoreResult<Vec<Group>> {
        self.read(groups::groups).await
    }

    // ---- inbound ----

    /// Applies an inbound envelope and records it in the dedupe table, in one
    /// transaction committed with `synchronous=FULL`: when this returns `Ok`, the sender
    /// may be acked, and a duplicate is reported instead of applied twice. On `Err` nothing
    /// was applied or recorded; drop the envelope (do not ack).
    pub async fn apply_inbound(
        &self,
        envelope: InboundEnvelope,
        effect: InboundEffect,
    ) -> StoreResult<InboundOutcome> {
        self.write(Durability::BeforeAck, move |c, s| {
            inbound::apply(c, s, &envelope, &effect)
        })
        .await
    }

    /// Forgets dedupe entries older than `inbound::DEDUPE_RETENTION_MS`.
    pub async fn prune_inbox_dedupe(&self, now: UnixMs) -> StoreResult<usize> {
        self.write(Durability::Normal, move |c, _| inbound::prune(c, now))
            .await
    }

    // ---- outbox ----

    /// Envelopes due at `now`, earliest first.
    pub async fn due_outbox(&self, now: UnixMs, limit: u32) -> StoreResult<Vec<OutboxEntry>> {
        self.read(move |c| outbox::due(c, now, limit)).await
    }

    /// When the next pending envelope is due, if any.
    pub async fn next_outbox_due_at(&self) -> StoreResult<Option<UnixMs>> {
        self.read(outbox::next_due_at).await
    }

    pub async fn outbox_for_peer(&self, peer: NodeId) -> StoreResult<Vec<OutboxEntry>> {
        self.read(move |c| outbox::for_peer(c, &peer)).await
    }

    /// Queues an envelope that carries no message (e.g. a receipt).
    pub async fn enqueue(
        &self,
        peer: NodeId,
        envelope: OutgoingEnvelope,
        now: UnixMs,
    ) -> StoreResult<EnvelopeId> {
        self.write(Durability::Normal, move |c, s| {
            outbox::enqueue(c, s, &peer, &envelope, None, now)
        })
        .await
    }

    /// Queues a failed outgoing DM again (new envelope, same message id), status back
    /// to pending, in one transaction. `NotFailed` if it is not failed; `NotFound` if
    /// it is not an outgoing DM of this conversation.
    pub async fn retry_message<E>(
        &self,
        conversation: ConversationId,
        message_id: MessageId,
        now: UnixMs,
        encode: E,
    ) -> StoreResult<Message>
    where
        E: FnOnce(&Message) -> OutgoingEnvelope + Send + 'static,
    {
        self.write(Durability::Normal, move |c, s| {
            outbox::retry_message(c, s, &conversation, &message_id, now, encode)
        })
        .await
    }

    /// Records send attempts, each scheduling its envelope's retry (exponential backoff
    /// with jitter), in one transaction (an outbox pass): one commit, not one per
    /// envelope. For each, the updated entry, or `None` if it was acked meanwhile; in
    /// the same order.
    pub async fn record_outbox_attempts(
        &self,
        attempts: Vec<(EnvelopeId, SendAttempt)>,
        now: UnixMs,
    ) -> StoreResult<Vec<Option<OutboxEntry>>> {
        self.write(Durability::Normal, move |c, s| {
            attempts
                .iter()
                .map(|(envelope, attempt)| {
                    let jitter = rand::random::<f64>();
                    outbox::record_attempt(c, &s.retry, envelope, attempt, now, jitter)
                })
                .collect()
        })
        .await
    }

    /// `from` acked an envelope sent to it: removes it and marks its message delivered.
    /// `None` for a repeated ack, or an ack from another peer than the receiver.
    pub async fn outbox_ack(
        &self,
        envelope: EnvelopeId,
        from: NodeId,
    ) -> StoreResult<Option<AckedEnvelope>> {
        self.write(Durability::Normal, move |c, _| {
            outbox::acked(c, &envelope, &from)
        })
        .await
    }

    /// `from` refused an envelope for good: no more retries, its message is failed.
    pub async fn outbox_rejected(
        &self,
        envelope: EnvelopeId,
        from: NodeId,
        reason: String,
    ) -> StoreResult<Option<AckedEnvelope>> {
        self.write(Durability::Normal, move |c, _| {
            outbox::rejected(c, &envelope, &from, &reason)
        })
        .await
    }

    /// A link to `peer` came up: its pending envelopes are due now. Returns how many.
    pub async fn outbox_due_now(&self, peer: NodeId, now: UnixMs) -> StoreResult<usize> {
        self.write(Durability::Normal, move |c, _| {
            outbox::due_now(c, &peer, now)
        })
        .await
    }

    /// Sets the outbox and group delivery backoff (see [`RetryPolicy`]).
    pub async fn set_retry_policy(&self, policy: RetryPolicy) -> StoreResult<()> {
        self.write(Durability::Normal, move |_, s| {
            s.retry = policy;
            Ok(())
        })
        .await
    }

    // ---- group fan-out ----

    /// Members owed group messages at `now`, with up to `per_peer` messages each.
    pub async fn due_group_deliveries(
        &self,
        now: UnixMs,
        per_peer: u32,
    ) -> StoreResult<Vec<GroupDelivery>> {
        self.read(move |c| {
            let local = chat::local_identity(c)?.ok_or(StoreError::NoIdentity)?;
            group_delivery::due(c, &local.node_id, now, per_peer)
        })
        .await
    }

    pub async fn record_group_attempt(
        &self,
        group: GlobalGroupId,
        peer: NodeId,
        attempt: SendAttempt,
        now: UnixMs,
    ) -> StoreResult<()> {
        let jitter = rand::random::<f64>();
        self.write(Durability::Normal, move |c, s| {
            group_delivery::record_attempt(c, s, &group, &peer, &attempt, now, jitter)
        })
        .await
    }

    /// Acks of members, in any order, in one transaction: for each `(group, peer, ids)`
    /// the ids that moved that member's cursor (see `group_delivery::acked_many`); keep
    /// the others for a later call.
    pub async fn group_acks_recorded(
        &self,
        acks: Vec<(GlobalGroupId, NodeId, Vec<MessageId>)>,
        now: UnixMs,
    ) -> StoreResult<Vec<Vec<MessageId>>> {
        self.write(Durability::Normal, move |c, s| {
            acks.iter()
                .map(|(group, peer, ids)| group_delivery::acked_many(c, s, group, peer, ids, now))
                .collect()
        })
        .await
    }

    /// When the next group delivery is due, if any member is owed messages.
    pub async fn next_group_delivery_due_at(&self) -> StoreResult<Option<UnixMs>> {
        self.read(|c| {
            let local = chat::local_identity(c)?.ok_or(StoreError::NoIdentity)?;
            group_delivery::next_due_at(c, &local.node_id)
        })
        .await
    }

    /// A link to `peer` came up: what its group cursors owe it is due now.
    pub async fn group_deliveries_due_now(&self, peer: NodeId, now: UnixMs) -> StoreResult<usize> {
        self.write(Durability::Normal, move |c, _| {
            group_delivery::due_now(c, &peer, now)
        })
        .await
    }

    // ---- group catch-up (anti-entropy) ----

    /// The order keys of a group's messages in `range`, ascending (`group_sync::keys`).
    pub async fn group_sync_keys(
        &self,
        group: GlobalGroupId,
        range: KeyRange,
    ) -> StoreResult<Vec<OrderKey>> {
        self.read(move |c| group_sync::keys(c, &group, &range))
            .await
    }

    /// Count and xor of message hashes of a group's messages in `range`.
    pub async fn group_fingerprint(
        &self,
        group: GlobalGroupId,
        range: KeyRange,
    ) -> StoreResult<Fingerprint> {
        self.read(move |c| group_sync::fingerprint(c, &group, &range))
            .await
    }

    /// The messages among `ids` held in this group's conversation, in order, with their
    /// authors: what a relay to another member carries.
    pub async fn group_messages_for_relay(
        &self,
        group: GlobalGroupId,
        ids: Vec<MessageId>,
    ) -> StoreResult<Vec<RelayedMessage>> {
        self.read(move |c| group_sync::messages_for_relay(c, &group, &ids))
            .await
    }

    /// Stores group messages relayed by the member `from` (each under its author), in
    /// one transaction; see `group_sync::apply_relayed` for what is refused or skipped.
    pub async fn apply_relayed(
        &self,
        from: NodeId,
        group: GlobalGroupId,
        messages: Vec<RelayedMessage>,
        author_offsets: std::collections::HashMap<NodeId, i64>,
        now: UnixMs,
    ) -> StoreResult<RelayOutcome> {
        self.write(Durability::Normal, move |c, s| {
            group_sync::apply_relayed(c, s, &from, &group, &messages, &author_offsets, now)
        })
        .await
    }

    // ---- search and maintenance ----

    // ---- files (attachments of file messages) ----

    /// Every message that attached the file `file_id` (lowercase hex), oldest first.
    pub async fn attachments_of_file(&self, file_id: String) -> StoreResult<Vec<Attachment>> {
        self.read(move |c| attachments::of_file(c, &file_id)).await
    }

    /// The files this node chose to download and did not cancel since.
    pub async fn wanted_downloads(&self) -> StoreResult<Vec<Attachment>> {
        self.read(attachments::wanted).await
    }

    /// This node's choice for `file_id`: `Some(true)` fetch, `Some(false)` cancelled or
    /// declined, `None` never decided.
    pub async fn download_wanted(&self, file_id: String) -> StoreResult<Option<bool>> {
        self.read(move |c| attachments::download_wanted(c, &file_id))
            .await
    }

    pub async fn set_download_wanted(
        &self,
        file_id: String,
        wanted: bool,
        now: UnixMs,
    ) -> StoreResult<()> {
        self.write(Durability::Normal, move |c, _| {
            attachments::set_download_wanted(c, &file_id, wanted, now)
        })
        .await
    }

    /// The files this node's user withdrew (stopped sending) and did not offer again.
    pub async fn withdrawn_files(&self) -> StoreResult<Vec<String>> {
        self.read(attachments::withdrawn).await
    }

    /// This node's two choices about `file_id` in one read (a file's status needs
    /// both, for every attachment of a history page): whether to download it (as
    /// [`Store::download_wanted`]) and whether its user withdrew it.
    pub async fn file_choices(&self, file_id: String) -> StoreResult<(Option<bool>, bool)> {
        self.read(move |c| {
            Ok((
                attachments::download_wanted(c, &file_id)?,
                attachments::is_withdrawn(c, &file_id)?,
            ))
        })
        .await
    }

    /// Withdraws `file_id` (this node serves it to nobody) or, with `false`, offers it
    /// again. Durable: a restart right after must not resume an upload the user
    /// stopped.
    pub async fn set_file_withdrawn(
        &self,
        file_id: String,
        withdrawn: bool,
        now: UnixMs,
    ) -> StoreResult<()> {
        self.write(Durability::BeforeAck, move |c, _| {
            attachments::set_withdrawn(c, &file_id, withdrawn, now)
        })
        .await
    }

    /// Full-text search over message bodies, newest first, paged.
    pub async fn search(&self, query: SearchQuery) -> StoreResult<SearchPage> {
        self.read(move |c| search::search(c, &query)).await
    }

    /// `PRAGMA integrity_check` and the search index's own check: `Ok(())` or the
    /// problems found.
    pub async fn integrity_check(&self) -> StoreResult<()> {
        // On the writer: the search index check is spelled as an INSERT, which the
        // query-only readers refuse; it changes nothing.
        self.write(Durability::Normal, |c, _| {
            let mut stmt = c.prepare("PRAGMA integrity_check")?;
            let lines = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if lines != ["ok"] {
                return Err(StoreError::CorruptPage(lines.join("; ")));
            }
            // The search index against the messages it was built from.
            c.execute(
                "INSERT INTO message_search (message_search, rank) VALUES ('integrity-check', 1)",
                [],
            )
            .map_err(|e| StoreError::CorruptPage(format!("search index: {e}")))?;
            Ok(())
        })
        .await
    }
}
