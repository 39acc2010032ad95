//! [`MemoryStore`]: the mesh's ports ([`crate::ports`]) kept in memory, for tests that
//! drive delivery and catch-up without SQLite.
//!
//! It is a working store, not a stub: the rules are the ones `storage` applies and
//! docs/STORAGE.md states ("Mesh tables"), so a test passing here tests delivery
//! against the contract, not against canned answers:
//!
//! - **outbox**: due when `next_retry_at ≤ now`, earliest first (ties by envelope id),
//!   blocked peers skipped; every attempt schedules the next one by the
//!   [`RetryPolicy`] (jitter fixed at the middle, so delays are exact: 2 s, 4 s, 8 s…);
//!   an attempt `MAX_RETRY_AGE_MS` after the envelope was created gives it up and
//!   fails its message; an ack deletes the row (only from its receiver), a rejection
//!   fails it for good;
//! - **inbox**: the envelope id is recorded and the effect applied together, or
//!   neither; a second copy is `Duplicate`; a message id is stored once whatever
//!   envelope brings it; the age rules on the sender's clock (`Expired`, a refused
//!   future) when its offset is known; group messages only between members;
//! - **group cursors**: one per other member, starting after everything stamped when
//!   it joined; an ack moves a cursor only over the next message owed, so it never
//!   skips one; a message is delivered once every cursor is past it;
//! - **groups**: upserts merged field by field (`GroupState::merge`), checked like the
//!   store checks them, invitations when auto-accept is off;
//! - **relays**: refused whole unless both ends are members; each message stored once,
//!   under its author, and recorded for dedupe under its id.
//!
//! Everything sits behind one mutex and every method runs under it start to end, so a
//! method is one atomic step like a store transaction; it is never held across an
//! `.await`. [`MemoryStore::set_unavailable`] makes every method fail with
//! `PortError::Unavailable` (a full disk, a closed database) until cleared.
//!
//! Besides the ports it has what a test needs to set a scene — what the local API
//! would do (send a DM, create a group, send to it, block a peer) — and to look at the
//! result (messages, history, outbox rows, cursors, attempts).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use api_types::NodeId;
use chat_core::{
    ConversationId, EnvelopeId, Fingerprint, GlobalGroupId, GroupState, Hlc, KeyRange, Message,
    MessageId, MessageStatus, OrderKey, RelayedMessage, RetryPolicy, Stamp, UnixMs, UserId,
    DEDUPE_RETENTION_MS, MAX_OFFSET_ERROR_MS, MAX_RETRY_AGE_MS,
};

use crate::envelope::{dm_outgoing, group_upsert_outgoing, Outgoing};
use crate::ports::{
    Arrival, GroupCursors, GroupDelivery, GroupLog, InboundEffect, InboundOutcome, Inbox,
    IncomingMessage, KeyBook, KeyPin, MemberAcks, Outbox, PortError, PortFuture, QueuedEnvelope,
    RelayOutcome, SendAttempt, Settled,
};

/// The jitter every retry is scheduled with: the middle of the range, so the delays are
/// the policy's own (2 s, 4 s, 8 s, … for the default) and tests can name them.
const JITTER: f64 = 0.5;
/// Messages per member and call, as the SQLite store clamps a page.
const MAX_PAGE: u32 = 500;
/// Error texts kept per row, as the SQLite store keeps them.
const MAX_ERROR_CHARS: usize = 1_000;

/// An outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub entry: QueuedEnvelope,
    pub status: OutboxStatus,
    pub next_retry_at: UnixMs,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    Pending,
    /// Given up or rejected: never sent again.
    Failed,
}

/// One member's delivery cursor in one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The last of this node's messages the member acked (or, for a new member, a key
    /// after everything stamped when it joined).
    pub acked: OrderKey,
    pub retry_count: u32,
    pub next_retry_at: UnixMs,
    pub last_error: Option<String>,
}

/// One recorded attempt (outbox or group cursor), for tests to read the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub target: AttemptTarget,
    pub at: UnixMs,
    pub attempt: SendAttempt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptTarget {
    Envelope(EnvelopeId),
    Member(GlobalGroupId, NodeId),
}

struct Received {
    received_at: UnixMs,
}

struct State {
    policy: RetryPolicy,
    auto_accept: bool,
    unavailable: Option<String>,
    clock: Hlc,
    ulid_counter: u128,
    ulid_salt: u128,
    messages: HashMap<MessageId, Message>,
    conversations: HashMap<ConversationId, BTreeSet<OrderKey>>,
    blocked: HashSet<NodeId>,
    outbox: BTreeMap<EnvelopeId, OutboxRow>,
    dedupe: HashMap<EnvelopeId, Received>,
    groups: BTreeMap<GlobalGroupId, GroupState>,
    /// Groups not joined (auto-accept off): the state, and whether it is still open.
    invitations: HashMap<GlobalGroupId, (GroupState, bool)>,
    cursors: BTreeMap<(GlobalGroupId, NodeId), Cursor>,
    pins: HashMap<NodeId, [u8; 64]>,
    attempts: Vec<AttemptRecord>,
    /// Read positions per conversation and reader (`receipt.read`), as storage's
    /// `read_positions`: they only move forward.
    read_positions: HashMap<(ConversationId, NodeId), OrderKey>,
}

/// The ports in memory (see the module docs). Share it as `Arc<MemoryStore>`; it is
/// also an `Arc<dyn MeshStore>`.
pub struct MemoryStore {
    local: NodeId,
    state: Mutex<State>,
}

fn refused(reason: impl Into<String>) -> PortError {
    PortError::Refused(reason.into())
}

fn error_text(reason: &str) -> String {
    reason.chars().take(MAX_ERROR_CHARS).collect()
}

/// A key after every message stamped at or before `hlc` (the SQLite store writes `~`,
/// which sorts after every ULID character).
fn after_everything_at(hlc: Hlc) -> OrderKey {
    OrderKey {
        hlc,
        message_id: MessageId::from_ulid(ulid::Ulid::from(u128::MAX)),
    }
}

fn wall(now: UnixMs) -> u64 {
    u64::try_from(now).unwrap_or(0)
}

impl MemoryStore {
    /// An empty store of the node `local`, with the product's retry policy and
    /// auto-accept on.
    pub fn new(local: NodeId) -> MemoryStore {
        // Ids this store makes must differ from every other node's, also when two
        // stores make one in the same millisecond: part of the ULID's random half is
        // taken from the node id (FNV-1a), the rest is a counter. Deterministic.
        let salt = local
            .as_str()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        MemoryStore {
            local,
            state: Mutex::new(State {
                policy: RetryPolicy::default(),
                auto_accept: true,
                unavailable: None,
                clock: Hlc::default(),
                ulid_counter: 0,
                ulid_salt: u128::from(salt & 0xff_ffff_ffff) << 40,
                messages: HashMap::new(),
                conversations: HashMap::new(),
                blocked: HashSet::new(),
                outbox: BTreeMap::new(),
                dedupe: HashMap::new(),
                groups: BTreeMap::new(),
                invitations: HashMap::new(),
                cursors: BTreeMap::new(),
                pins: HashMap::new(),
                attempts: Vec::new(),
                read_positions: HashMap::new(),
            }),
        }
    }

    pub fn local(&self) -> &NodeId {
        &self.local
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding it has failed already; the state is still
        // worth reading.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lock, unless the store is set unavailable.
    fn open(&self) -> Result<MutexGuard<'_, State>, PortError> {
        let state = self.lock();
        match &state.unavailable {
            Some(reason) => Err(PortError::Unavailable(reason.clone())),
            None => Ok(state),
        }
    }

    // ---- setting the scene (what the node's API and settings would do) ----

    pub fn set_retry_policy(&self, policy: RetryPolicy) {
        self.lock().policy = policy;
    }

    /// With auto-accept off, a group this node is added to is held as an invitation.
    pub fn set_auto_accept(&self, on: bool) {
        self.lock().auto_accept = on;
    }

    /// `Some(reason)`: every port method fails with `Unavailable(reason)`, nothing is
    /// stored; `None`: back to normal.
    pub fn set_unavailable(&self, reason: Option<&str>) {
        self.lock().unavailable = reason.map(str::to_string);
    }

    /// Blocks or unblocks a peer. Blocking drops its queued envelopes and fails their
    /// messages (as the SQLite store does in the same transaction).
    pub fn set_blocked(&self, peer: &NodeId, blocked: bool) {
        let mut st = self.lock();
        if !blocked {
            st.blocked.remove(peer);
            return;
        }
        st.blocked.insert(peer.clone());
        let dropped: Vec<EnvelopeId> = st
            .outbox
            .iter()
            .filter(|(_, row)| row.entry.peer_id == *peer)
            .map(|(id, _)| *id)
            .collect();
        for id in dropped {
            if let Some(row) = st.outbox.remove(&id) {
                if let Some(message) = row.entry.message_id {
                    st.set_status(
                        message,
                        MessageStatus::Failed,
                        &[MessageStatus::Pending, MessageStatus::Sent],
                    );
                }
            }
        }
    }

    /// A DM from the local user: the message (pending) and its outbox envelope (due at
    /// once), together — what `POST …/messages` does. Hand the entry to the worker's
    /// `SendNow` and wake it, as the API does.
    pub fn send_dm(
        &self,
        peer: &NodeId,
        text: &str,
        now: UnixMs,
    ) -> Result<(Message, QueuedEnvelope), PortError> {
        let mut st = self.open()?;
        if st.blocked.contains(peer) {
            return Err(refused(format!("peer {peer} is blocked")));
        }
        if *peer == self.local {
            return Err(refused("a DM to this node itself"));
        }
        chat_core::check_body(text).map_err(|e| refused(format!("text: {e:?}")))?;
        let message = st.insert_local_message(&self.local, &ConversationId::dm(peer), text, now);
        let entry = st.queue(peer, dm_outgoing(&message), Some(message.message_id), now);
        Ok((message, entry))
    }

    /// Queues any envelope for `peer` (a kind the peer may not know, a payload it may
    /// refuse), due at once.
    pub fn enqueue(
        &self,
        peer: &NodeId,
        kind: &'static str,
        payload: Vec<u8>,
        now: UnixMs,
    ) -> Result<QueuedEnvelope, PortError> {
        let mut st = self.open()?;
        if st.blocked.contains(peer) {
            return Err(refused(format!("peer {peer} is blocked")));
        }
        Ok(st.queue(peer, Outgoing { kind, payload }, None, now))
    }

    /// A group owned by this node with `members`: its state written, a cursor per
    /// member, and a `group.upsert` queued to each — what `POST /api/v1/groups` does.
    pub fn create_group(
        &self,
        name: &str,
        members: &[NodeId],
        now: UnixMs,
    ) -> Result<GroupState, PortError> {
        let mut st = self.open()?;
        chat_core::check_group_name(name).map_err(|e| refused(format!("name: {e:?}")))?;
        let now_wall = wall(now);
        st.clock = Hlc::tick(st.clock, now_wall);
        let stamp = Stamp {
            hlc: st.clock.raw(),
            editor: self.local.clone(),
        };
        let id = GlobalGroupId::from_ulid(st.next_ulid(now));
        let mut state = GroupState::create(id, &stamp, name, "", members);
        state.validate().map_err(|e| refused(e.0))?;
        // Signed with the node's keys, as the SQLite store does.
        if let Some(keys) = super::keys_of(&self.local) {
            state.sign_own(&keys);
        }
        st.write_group(&self.local, &state, now);
        let upsert = group_upsert_outgoing(&state);
        for member in state.member_ids() {
            if member != self.local && !st.blocked.contains(&member) {
                st.queue(&member, upsert.clone(), None, now);
            }
        }
        Ok(state)
    }

    /// A message from the local user to a group it is a member of (pending): its
    /// members' cursors carry it.
    pub fn send_group_message(
        &self,
        group: GlobalGroupId,
        text: &str,
        now: UnixMs,
    ) -> Result<Message, PortError> {
        let mut st = self.open()?;
        let state = st
            .groups
            .get(&group)
            .ok_or_else(|| refused(format!("group {group} not found")))?;
        if !state.is_member(&self.local) || state.is_dissolved() {
            return Err(refused("this node may not send to the group"));
        }
        chat_core::check_body(text).map_err(|e| refused(format!("text: {e:?}")))?;
        Ok(st.insert_local_message(&self.local, &ConversationId::group(&group), text, now))
    }

    // ---- looking at the result ----

    pub fn stored_message(&self, id: MessageId) -> Option<Message> {
        self.lock().messages.get(&id).cloned()
    }

    /// A conversation's messages in order (`(hlc, message_id)`), oldest first.
    pub fn history(&self, conversation: &ConversationId) -> Vec<Message> {
        let st = self.lock();
        st.conversations
            .get(conversation)
            .into_iter()
            .flatten()
            .filter_map(|k| st.messages.get(&k.message_id).cloned())
            .collect()
    }

    /// Every outbox row, by envelope id.
    pub fn outbox_rows(&self) -> Vec<OutboxRow> {
        self.lock().outbox.values().cloned().collect()
    }

    pub fn outbox_row(&self, id: EnvelopeId) -> Option<OutboxRow> {
        self.lock().outbox.get(&id).cloned()
    }

    pub fn cursor(&self, group: GlobalGroupId, member: &NodeId) -> Option<Cursor> {
        self.lock().cursors.get(&(group, member.clone())).cloned()
    }

    /// Whether an envelope id is in the inbox dedupe table.
    pub fn has_seen(&self, envelope: EnvelopeId) -> bool {
        self.lock().dedupe.contains_key(&envelope)
    }

    pub fn group_state(&self, group: GlobalGroupId) -> Option<GroupState> {
        self.lock().groups.get(&group).cloned()
    }

    /// An open invitation to a group (auto-accept off).
    pub fn invitation(&self, group: GlobalGroupId) -> Option<GroupState> {
        self.lock()
            .invitations
            .get(&group)
            .filter(|(_, open)| *open)
            .map(|(state, _)| state.clone())
    }

    /// Every attempt recorded so far, in order.
    pub fn attempts(&self) -> Vec<AttemptRecord> {
        self.lock().attempts.clone()
    }

    /// The attempts recorded for one outbox envelope: when, and how each went.
    pub fn attempts_for(&self, envelope: EnvelopeId) -> Vec<(UnixMs, SendAttempt)> {
        self.attempts_where(&AttemptTarget::Envelope(envelope))
    }

    /// The attempts recorded for one member's cursor.
    pub fn attempts_for_member(
        &self,
        group: GlobalGroupId,
        member: &NodeId,
    ) -> Vec<(UnixMs, SendAttempt)> {
        self.attempts_where(&AttemptTarget::Member(group, member.clone()))
    }

    fn attempts_where(&self, target: &AttemptTarget) -> Vec<(UnixMs, SendAttempt)> {
        self.lock()
            .attempts
            .iter()
            .filter(|a| a.target == *target)
            .map(|a| (a.at, a.attempt.clone()))
            .collect()
    }
}

impl State {
    fn next_ulid(&mut self, now: UnixMs) -> ulid::Ulid {
        self.ulid_counter += 1;
        ulid::Ulid::from_parts(wall(now), self.ulid_salt | self.ulid_counter)
    }

    fn is_blocked(&self, peer: &NodeId) -> bool {
        self.blocked.contains(peer)
    }

    /// A `receipt.read` from `from`, with storage's rules: refused unless the sender is
    /// in the conversation it names (a DM held here, a group it is a member of); the
    /// position only moves forward.
    fn apply_receipt(
        &mut self,
        from: &NodeId,
        group: Option<&GlobalGroupId>,
        up_to: &OrderKey,
    ) -> Result<InboundOutcome, PortError> {
        let conversation = match group {
            None => {
                let conversation = ConversationId::dm(from);
                if !self.conversations.contains_key(&conversation) {
                    return Err(refused("a read receipt for a DM this node does not have"));
                }
                conversation
            }
            Some(id) => {
                if !self.groups.contains_key(id) {
                    return Err(refused(format!("group {id} not found")));
                }
                if !self.is_group_member(id, from) {
                    return Err(refused("a read receipt from a node that is not a member"));
                }
                ConversationId::group(id)
            }
        };
        let key = (conversation.clone(), from.clone());
        let moved = chat_core::receipts::advances(self.read_positions.get(&key), up_to);
        if moved {
            self.read_positions.insert(key, *up_to);
        }
        Ok(InboundOutcome::ReadReceipt {
            conversation_id: conversation,
            up_to: *up_to,
            moved,
        })
    }

    /// The newest stamp in a conversation (a local message goes after it).
    fn floor(&self, conversation: &ConversationId) -> Hlc {
        self.conversations
            .get(conversation)
            .and_then(|keys| keys.last())
            .map_or(Hlc::default(), |k| k.hlc)
    }

    /// Stores a message unless its id is held already (in any conversation). Returns
    /// whether it was stored; a held id with other content is `Forged`, as in storage.
    fn insert_message(&mut self, message: Message) -> Result<bool, PortError> {
        if let Some(held) = self.messages.get(&message.message_id) {
            let same = held.conversation_id == message.conversation_id
                && held.sender == message.sender
                && held.body == message.body
                && held.sent_at == message.sent_at
                && held.hlc == message.hlc;
            return if same {
                Ok(false)
            } else {
                Err(PortError::Forged(format!(
                    "forged: message {} is held here with other content",
                    message.message_id
                )))
            };
        }
        self.conversations
            .entry(message.conversation_id.clone())
            .or_default()
            .insert(message.order_key());
        self.messages.insert(message.message_id, message);
        Ok(true)
    }

    fn insert_local_message(
        &mut self,
        local: &NodeId,
        conversation: &ConversationId,
        text: &str,
        now: UnixMs,
    ) -> Message {
        let now_wall = wall(now);
        let floor = self.floor(conversation);
        self.clock = Hlc::tick(self.clock, now_wall);
        let mut message = Message {
            message_id: MessageId::from_ulid(self.next_ulid(now)),
            conversation_id: conversation.clone(),
            sender: UserId::lan(local),
            body: text.to_string(),
            sent_at: now,
            received_at: now,
            hlc: Hlc::tick_after(self.clock, floor, now_wall),
            status: MessageStatus::Pending,
            sender_clock_offset_ms: None,
            signature: None,
        };
        // Signed with the node's keys, as the SQLite store does.
        if let Some(keys) = super::keys_of(local) {
            let scope = match conversation.target() {
                chat_core::ConversationTarget::Group(g) => chat_core::MessageScope::Group(g),
                chat_core::ConversationTarget::Direct(p) => {
                    chat_core::MessageScope::Direct { to: p }
                }
            };
            let statement = chat_core::message_statement(
                scope,
                &message.message_id,
                local,
                message.sent_at,
                message.hlc,
                &message.body,
            );
            message.signature = Some(chat_core::MessageSignature {
                sig: keys.sign(&statement),
                keys: crate::envelope::author_keys(&keys.public()),
            });
        }
        // A fresh id: never held before.
        let _ = self.insert_message(message.clone());
        message
    }

    fn set_status(&mut self, id: MessageId, status: MessageStatus, only_from: &[MessageStatus]) {
        if let Some(message) = self.messages.get_mut(&id) {
            if only_from.contains(&message.status) {
                message.status = status;
            }
        }
    }

    fn queue(
        &mut self,
        peer: &NodeId,
        out: Outgoing,
        message_id: Option<MessageId>,
        now: UnixMs,
    ) -> QueuedEnvelope {
        let entry = QueuedEnvelope {
            envelope_id: EnvelopeId::from_ulid(self.next_ulid(now)),
            peer_id: peer.clone(),
            kind: out.kind.to_string(),
            payload: out.payload,
            message_id,
            retry_count: 0,
            created_at: now,
        };
        self.outbox.insert(
            entry.envelope_id,
            OutboxRow {
                entry: entry.clone(),
                status: OutboxStatus::Pending,
                next_retry_at: now,
                last_error: None,
            },
        );
        entry
    }

    /// This node's messages in `group` after `after`, oldest first.
    fn owed(
        &self,
        local: &NodeId,
        group: GlobalGroupId,
        after: OrderKey,
        limit: u32,
    ) -> Vec<Message> {
        let sender = UserId::lan(local);
        self.conversations
            .get(&ConversationId::group(&group))
            .into_iter()
            .flat_map(|keys| {
                keys.range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            })
            .filter_map(|k| self.messages.get(&k.message_id))
            .filter(|m| m.sender == sender)
            .take(limit.clamp(1, MAX_PAGE) as usize)
            .cloned()
            .collect()
    }

    /// Writes a group's state and brings its cursors in line: one per other member
    /// while this node is a member, a new one starting after everything stamped so far.
    fn write_group(&mut self, local: &NodeId, state: &GroupState, now: UnixMs) {
        let group = state.global_group_id;
        self.groups.insert(group, state.clone());
        if !state.is_member(local) {
            self.cursors.retain(|(g, _), _| *g != group);
            return;
        }
        self.cursors
            .retain(|(g, member), _| *g != group || state.is_member(member));
        let start = after_everything_at(self.clock.max(self.floor(&ConversationId::group(&group))));
        for member in state.member_ids() {
            if member != *local {
                self.cursors.entry((group, member)).or_insert(Cursor {
                    acked: start,
                    retry_count: 0,
                    next_retry_at: now,
                    last_error: None,
                });
            }
        }
    }

    /// A member's `group.upsert`, as the SQLite store merges it.
    fn merge_group(
        &mut self,
        local: &NodeId,
        from: &NodeId,
        incoming: &GroupState,
        now: UnixMs,
    ) -> Result<InboundOutcome, PortError> {
        incoming
            .validate()
            .map_err(|e| refused(format!("group state: {}", e.0)))?;
        let sender_counts = *from == incoming.owner
            || incoming
                .members
                .iter()
                .any(|m| m.id == *from && (m.present || m.editor == *from));
        if !sender_counts {
            return Err(refused("the sender is not a member of the group"));
        }
        if !Hlc::from_raw(incoming.max_hlc()).fits_sql() {
            return Err(refused("group state stamped beyond any clock"));
        }
        self.clock = Hlc::observe(self.clock, Hlc::from_raw(incoming.max_hlc()), wall(now));
        let group = incoming.global_group_id;
        if let Some(current) = self.groups.get(&group).cloned() {
            if current.owner != incoming.owner {
                return Err(PortError::Forged(
                    "forged: a group state in another owner's name".into(),
                ));
            }
            let mut merged = current.clone();
            merged.merge(incoming);
            if merged == current {
                return Ok(InboundOutcome::Stale);
            }
            let announcement_changed = merged.announcement() != current.announcement();
            self.write_group(local, &merged, now);
            return Ok(InboundOutcome::GroupUpdated {
                announcement_changed,
            });
        }
        if let Some((held, _)) = self.invitations.get(&group).cloned() {
            if held.owner != incoming.owner {
                return Err(PortError::Forged(
                    "forged: a group state in another owner's name".into(),
                ));
            }
            let mut merged = held.clone();
            merged.merge(incoming);
            if merged == held {
                return Ok(InboundOutcome::Stale);
            }
            let open = merged.is_member(local);
            self.invitations.insert(group, (merged, open));
            return Ok(if open {
                InboundOutcome::GroupInvitation
            } else {
                InboundOutcome::Stale
            });
        }
        if !incoming.is_member(local) {
            return Err(refused("this node is not a member"));
        }
        if !self.auto_accept {
            self.invitations.insert(group, (incoming.clone(), true));
            return Ok(InboundOutcome::GroupInvitation);
        }
        self.write_group(local, incoming, now);
        Ok(InboundOutcome::GroupUpdated {
            announcement_changed: !incoming.announcement().is_empty(),
        })
    }

    fn store_incoming(
        &mut self,
        conversation: ConversationId,
        arrival: &Arrival,
        message: &IncomingMessage,
    ) -> Result<Option<Message>, PortError> {
        if !message.hlc.fits_sql() {
            return Err(refused("hlc beyond any clock"));
        }
        self.clock = Hlc::observe(self.clock, message.hlc, wall(arrival.received_at));
        let stored = Message {
            message_id: message.message_id,
            conversation_id: conversation,
            sender: UserId::lan(&arrival.from),
            body: message.body.clone(),
            sent_at: message.sent_at,
            received_at: arrival.received_at,
            hlc: message.hlc,
            status: MessageStatus::Delivered,
            sender_clock_offset_ms: arrival.sender_clock_offset_ms,
            signature: message.signature,
        };
        Ok(self.insert_message(stored.clone())?.then_some(stored))
    }

    fn is_group_member(&self, group: &GlobalGroupId, node: &NodeId) -> bool {
        self.groups.get(group).is_some_and(|s| s.is_member(node))
    }

    /// Moves `member`'s cursor over `message` if it is the next one owed; then marks
    /// delivered what every cursor of the group has passed.
    fn ack_one(
        &mut self,
        local: &NodeId,
        group: GlobalGroupId,
        member: &NodeId,
        message: MessageId,
        now: UnixMs,
    ) -> bool {
        let key = (group, member.clone());
        let Some(cursor) = self.cursors.get(&key) else {
            return false;
        };
        let next = self.owed(local, group, cursor.acked, 1);
        let Some(next) = next.first().filter(|m| m.message_id == message) else {
            return false;
        };
        let acked = next.order_key();
        if let Some(cursor) = self.cursors.get_mut(&key) {
            *cursor = Cursor {
                acked,
                retry_count: 0,
                next_retry_at: now,
                last_error: None,
            };
        }
        let slowest = self
            .cursors
            .iter()
            .filter(|((g, _), _)| *g == group)
            .map(|(_, c)| c.acked)
            .min();
        if let Some(slowest) = slowest {
            let sender = UserId::lan(local);
            let passed: Vec<MessageId> = self
                .conversations
                .get(&ConversationId::group(&group))
                .into_iter()
                .flat_map(|keys| keys.range(..=slowest))
                .map(|k| k.message_id)
                .collect();
            for id in passed {
                if self.messages.get(&id).is_some_and(|m| m.sender == sender) {
                    self.set_status(
                        id,
                        MessageStatus::Delivered,
                        &[MessageStatus::Pending, MessageStatus::Sent],
                    );
                }
            }
        }
        true
    }

    fn keys_in(&self, group: GlobalGroupId, range: &KeyRange) -> Vec<OrderKey> {
        self.conversations
            .get(&ConversationId::group(&group))
            .into_iter()
            .flatten()
            .filter(|k| range.contains(k))
            .copied()
            .collect()
    }
}

impl Outbox for MemoryStore {
    fn due_outbox(&self, now: UnixMs, limit: u32) -> PortFuture<'_, Vec<QueuedEnvelope>> {
        Box::pin(async move {
            let st = self.open()?;
            let mut due: Vec<&OutboxRow> = st
                .outbox
                .values()
                .filter(|row| {
                    row.status == OutboxStatus::Pending
                        && row.next_retry_at <= now
                        && !st.is_blocked(&row.entry.peer_id)
                })
                .collect();
            due.sort_by_key(|row| (row.next_retry_at, row.entry.envelope_id));
            Ok(due
                .into_iter()
                .take(limit.max(1) as usize)
                .map(|row| row.entry.clone())
                .collect())
        })
    }

    fn next_outbox_due_at(&self) -> PortFuture<'_, Option<UnixMs>> {
        Box::pin(async move {
            let st = self.open()?;
            Ok(st
                .outbox
                .values()
                .filter(|row| row.status == OutboxStatus::Pending)
                .map(|row| row.next_retry_at)
                .min())
        })
    }

    fn record_outbox_attempts(
        &self,
        attempts: Vec<(EnvelopeId, SendAttempt)>,
        now: UnixMs,
    ) -> PortFuture<'_, Vec<MessageId>> {
        Box::pin(async move {
            let mut st = self.open()?;
            let mut gave_up = Vec::new();
            for (id, attempt) in attempts {
                let policy = st.policy;
                // Acked meanwhile: nothing to schedule.
                let Some(row) = st.outbox.get_mut(&id) else {
                    continue;
                };
                // Rejected meanwhile: it stays failed (`outbox_rejected`: no more
                // retries).
                if row.status == OutboxStatus::Failed {
                    continue;
                }
                let attempts = row.entry.retry_count.saturating_add(1);
                let give_up = now.saturating_sub(row.entry.created_at) >= MAX_RETRY_AGE_MS;
                row.entry.retry_count = attempts;
                row.next_retry_at = policy.next_retry_at(now, attempts, JITTER);
                if let SendAttempt::Failed(reason) = &attempt {
                    row.last_error = Some(error_text(reason));
                }
                if give_up {
                    row.status = OutboxStatus::Failed;
                }
                let message = row.entry.message_id;
                st.attempts.push(AttemptRecord {
                    target: AttemptTarget::Envelope(id),
                    at: now,
                    attempt: attempt.clone(),
                });
                if let Some(message) = message {
                    if give_up {
                        st.set_status(
                            message,
                            MessageStatus::Failed,
                            &[MessageStatus::Pending, MessageStatus::Sent],
                        );
                        gave_up.push(message);
                    } else if attempt == SendAttempt::Sent {
                        st.set_status(message, MessageStatus::Sent, &[MessageStatus::Pending]);
                    }
                }
            }
            Ok(gave_up)
        })
    }

    fn outbox_acked(&self, envelope: EnvelopeId, peer: NodeId) -> PortFuture<'_, Option<Settled>> {
        Box::pin(async move {
            let mut st = self.open()?;
            let Some(row) = st.outbox.get(&envelope) else {
                return Ok(None);
            };
            if row.entry.peer_id != peer {
                return Ok(None);
            }
            let Some(row) = st.outbox.remove(&envelope) else {
                return Ok(None);
            };
            if let Some(message) = row.entry.message_id {
                st.set_status(
                    message,
                    MessageStatus::Delivered,
                    &[
                        MessageStatus::Pending,
                        MessageStatus::Sent,
                        MessageStatus::Failed,
                    ],
                );
            }
            Ok(Some(Settled {
                peer_id: row.entry.peer_id,
                message_id: row.entry.message_id,
            }))
        })
    }

    fn outbox_rejected(
        &self,
        envelope: EnvelopeId,
        peer: NodeId,
        reason: String,
    ) -> PortFuture<'_, Option<Settled>> {
        Box::pin(async move {
            let mut st = self.open()?;
            let Some(row) = st.outbox.get_mut(&envelope) else {
                return Ok(None);
            };
            if row.entry.peer_id != peer || row.status != OutboxStatus::Pending {
                return Ok(None);
            }
            row.status = OutboxStatus::Failed;
            row.last_error = Some(error_text(&reason));
            let message = row.entry.message_id;
            if let Some(message) = message {
                st.set_status(
                    message,
                    MessageStatus::Failed,
                    &[MessageStatus::Pending, MessageStatus::Sent],
                );
            }
            Ok(Some(Settled {
                peer_id: peer,
                message_id: message,
            }))
        })
    }

    fn outbox_due_now(&self, peer: NodeId, now: UnixMs) -> PortFuture<'_, usize> {
        Box::pin(async move {
            let mut st = self.open()?;
            let mut n = 0;
            for row in st.outbox.values_mut() {
                if row.entry.peer_id == peer
                    && row.status == OutboxStatus::Pending
                    && row.next_retry_at > now
                {
                    row.next_retry_at = now;
                    n += 1;
                }
            }
            Ok(n)
        })
    }
}

impl Inbox for MemoryStore {
    fn apply_inbound(
        &self,
        arrival: Arrival,
        effect: InboundEffect,
    ) -> PortFuture<'_, InboundOutcome> {
        Box::pin(async move {
            let mut st = self.open()?;
            let from = &arrival.from;
            if *from == self.local {
                return Err(refused("an envelope from this node itself"));
            }
            if let Some(offset) = arrival.sender_clock_offset_ms {
                // The age rules, on the sender's own clock (docs/STORAGE.md, "Inbound
                // envelopes and dedupe").
                let created = i64::try_from(arrival.envelope_id.timestamp_ms()).unwrap_or(i64::MAX);
                let sender_now = arrival.received_at.saturating_add(offset);
                let never_given_up = matches!(effect, InboundEffect::GroupMessage { .. });
                if !never_given_up
                    && sender_now.saturating_sub(created) > MAX_RETRY_AGE_MS + MAX_OFFSET_ERROR_MS
                {
                    return Ok(InboundOutcome::Expired);
                }
                if created.saturating_sub(sender_now) > MAX_OFFSET_ERROR_MS {
                    return Err(refused("created in the future of its sender's own clock"));
                }
            }
            if st.is_blocked(from) {
                return Err(refused(format!("peer {from} is blocked")));
            }
            if st.dedupe.contains_key(&arrival.envelope_id) {
                return Ok(InboundOutcome::Duplicate);
            }
            // Checked before anything is written: a refusal records nothing.
            let outcome = match &effect {
                InboundEffect::DirectMessage(message) => st
                    .store_incoming(ConversationId::dm(from), &arrival, message)
                    .map(InboundOutcome::Applied),
                InboundEffect::GroupMessage {
                    global_group_id,
                    message,
                } => {
                    if !st.groups.contains_key(global_group_id) {
                        Err(refused(format!("group {global_group_id} not found")))
                    } else if !st.is_group_member(global_group_id, from) {
                        Err(refused("sender is not a member of the group"))
                    } else if !st.is_group_member(global_group_id, &self.local) {
                        Err(refused("this node is not a member"))
                    } else {
                        st.store_incoming(ConversationId::group(global_group_id), &arrival, message)
                            .map(InboundOutcome::Applied)
                    }
                }
                InboundEffect::GroupUpsert(state) => {
                    st.merge_group(&self.local, from, state, arrival.received_at)
                }
                InboundEffect::ReadReceipt {
                    global_group_id,
                    up_to,
                } => st.apply_receipt(from, global_group_id.as_ref(), up_to),
            }?;
            st.dedupe.insert(
                arrival.envelope_id,
                Received {
                    received_at: arrival.received_at,
                },
            );
            Ok(outcome)
        })
    }

    fn prune_inbox_dedupe(&self, now: UnixMs) -> PortFuture<'_, usize> {
        Box::pin(async move {
            let mut st = self.open()?;
            let before = st.dedupe.len();
            let oldest = now.saturating_sub(DEDUPE_RETENTION_MS);
            st.dedupe.retain(|_, r| r.received_at >= oldest);
            Ok(before - st.dedupe.len())
        })
    }

    fn message(&self, id: MessageId) -> PortFuture<'_, Option<Message>> {
        Box::pin(async move { Ok(self.open()?.messages.get(&id).cloned()) })
    }
}

impl GroupCursors for MemoryStore {
    fn due_group_deliveries(
        &self,
        now: UnixMs,
        per_member: u32,
    ) -> PortFuture<'_, Vec<GroupDelivery>> {
        Box::pin(async move {
            let st = self.open()?;
            let mut due: Vec<(UnixMs, GroupDelivery)> = Vec::new();
            for ((group, member), cursor) in &st.cursors {
                if cursor.next_retry_at > now || st.is_blocked(member) {
                    continue;
                }
                let messages = st.owed(&self.local, *group, cursor.acked, per_member);
                if messages.is_empty() {
                    continue;
                }
                due.push((
                    cursor.next_retry_at,
                    GroupDelivery {
                        global_group_id: *group,
                        peer_id: member.clone(),
                        retry_count: cursor.retry_count,
                        messages,
                    },
                ));
            }
            // The cursors are walked by (group, member): a stable sort keeps that
            // order among equal times, as the SQLite store orders them.
            due.sort_by_key(|(at, _)| *at);
            Ok(due.into_iter().map(|(_, d)| d).collect())
        })
    }

    fn record_group_attempt(
        &self,
        group: GlobalGroupId,
        member: NodeId,
        attempt: SendAttempt,
        now: UnixMs,
    ) -> PortFuture<'_, ()> {
        Box::pin(async move {
            let mut st = self.open()?;
            let policy = st.policy;
            let Some(cursor) = st.cursors.get_mut(&(group, member.clone())) else {
                return Err(refused(format!("group member {member} not found")));
            };
            cursor.retry_count = cursor.retry_count.saturating_add(1);
            cursor.next_retry_at = policy.next_retry_at(now, cursor.retry_count, JITTER);
            if let SendAttempt::Failed(reason) = &attempt {
                cursor.last_error = Some(error_text(reason));
            }
            let after = cursor.acked;
            st.attempts.push(AttemptRecord {
                target: AttemptTarget::Member(group, member.clone()),
                at: now,
                attempt: attempt.clone(),
            });
            if attempt == SendAttempt::Sent {
                let owed: Vec<MessageId> = st
                    .owed(&self.local, group, after, MAX_PAGE)
                    .iter()
                    .map(|m| m.message_id)
                    .collect();
                for id in owed {
                    st.set_status(id, MessageStatus::Sent, &[MessageStatus::Pending]);
                }
            }
            Ok(())
        })
    }

    fn group_acks_recorded(
        &self,
        acks: Vec<MemberAcks>,
        now: UnixMs,
    ) -> PortFuture<'_, Vec<Vec<MessageId>>> {
        Box::pin(async move {
            let mut st = self.open()?;
            let mut out = Vec::with_capacity(acks.len());
            for (group, member, ids) in acks {
                let mut consumed = Vec::new();
                // Over every next-owed message among the acks, as far as they reach
                // without a gap.
                while let Some(cursor) = st.cursors.get(&(group, member.clone())) {
                    let next = st.owed(&self.local, group, cursor.acked, 1);
                    let Some(next) = next.first().filter(|m| ids.contains(&m.message_id)) else {
                        break;
                    };
                    let id = next.message_id;
                    if !st.ack_one(&self.local, group, &member, id, now) {
                        break;
                    }
                    consumed.push(id);
                }
                out.push(consumed);
            }
            Ok(out)
        })
    }

    fn next_group_delivery_due_at(&self) -> PortFuture<'_, Option<UnixMs>> {
        Box::pin(async move {
            let st = self.open()?;
            Ok(st
                .cursors
                .iter()
                .filter(|((group, member), cursor)| {
                    !st.is_blocked(member)
                        && !st.owed(&self.local, *group, cursor.acked, 1).is_empty()
                })
                .map(|(_, cursor)| cursor.next_retry_at)
                .min())
        })
    }

    fn group_deliveries_due_now(&self, member: NodeId, now: UnixMs) -> PortFuture<'_, usize> {
        Box::pin(async move {
            let mut st = self.open()?;
            let mut n = 0;
            for ((_, m), cursor) in st.cursors.iter_mut() {
                if *m == member && cursor.next_retry_at > now {
                    cursor.next_retry_at = now;
                    n += 1;
                }
            }
            Ok(n)
        })
    }
}

impl GroupLog for MemoryStore {
    fn groups(&self) -> PortFuture<'_, Vec<GroupState>> {
        Box::pin(async move { Ok(self.open()?.groups.values().cloned().collect()) })
    }

    fn group(&self, group: GlobalGroupId) -> PortFuture<'_, Option<GroupState>> {
        Box::pin(async move { Ok(self.open()?.groups.get(&group).cloned()) })
    }

    fn group_fingerprint(
        &self,
        group: GlobalGroupId,
        range: KeyRange,
    ) -> PortFuture<'_, Fingerprint> {
        Box::pin(async move {
            // Over the content, as storage does: each message by the hash of the
            // statement its author signed.
            let st = self.open()?;
            let mut fp = Fingerprint::default();
            for key in st.keys_in(group, &range) {
                if let Some(m) = st.messages.get(&key.message_id) {
                    let author = m.sender.node_id().ok_or_else(|| refused("no author"))?;
                    fp.add_hash(chat_core::content_hash(&chat_core::message_statement(
                        chat_core::MessageScope::Group(&group),
                        &m.message_id,
                        &author,
                        m.sent_at,
                        m.hlc,
                        &m.body,
                    )));
                }
            }
            Ok(fp)
        })
    }

    fn group_keys(&self, group: GlobalGroupId, range: KeyRange) -> PortFuture<'_, Vec<OrderKey>> {
        Box::pin(async move { Ok(self.open()?.keys_in(group, &range)) })
    }

    fn group_messages_for_relay(
        &self,
        group: GlobalGroupId,
        ids: Vec<MessageId>,
    ) -> PortFuture<'_, Vec<RelayedMessage>> {
        Box::pin(async move {
            let st = self.open()?;
            let conversation = ConversationId::group(&group);
            let mut messages: Vec<&Message> = ids
                .iter()
                .filter_map(|id| st.messages.get(id))
                .filter(|m| m.conversation_id == conversation)
                .collect();
            messages.sort_by_key(|m| m.order_key());
            messages.dedup_by_key(|m| m.message_id);
            Ok(messages
                .into_iter()
                .filter_map(|m| {
                    Some(RelayedMessage {
                        message_id: m.message_id,
                        author: m.sender.node_id()?,
                        body: m.body.clone(),
                        sent_at: m.sent_at,
                        hlc: m.hlc,
                        signature: m.signature,
                    })
                })
                .collect())
        })
    }

    fn apply_relayed(
        &self,
        from: NodeId,
        group: GlobalGroupId,
        messages: Vec<RelayedMessage>,
        author_offsets: HashMap<NodeId, i64>,
        now: UnixMs,
    ) -> PortFuture<'_, RelayOutcome> {
        Box::pin(async move {
            let mut st = self.open()?;
            if from == self.local {
                return Err(refused("a relay from this node itself"));
            }
            if st.is_blocked(&from) {
                return Err(refused(format!("peer {from} is blocked")));
            }
            if !st.groups.contains_key(&group) {
                return Err(refused(format!("group {group} not found")));
            }
            if !st.is_group_member(&group, &self.local) {
                return Err(refused("this node is not a member"));
            }
            if !st.is_group_member(&group, &from) {
                return Err(refused("the relaying node is not a member of the group"));
            }
            let mut outcome = RelayOutcome::default();
            for relayed in messages {
                let skip = relayed.author == self.local
                    || !relayed.hlc.fits_sql()
                    || chat_core::check_body(&relayed.body).is_err()
                    || st.is_blocked(&relayed.author);
                if skip {
                    outcome.skipped += 1;
                    continue;
                }
                let message = Message {
                    message_id: relayed.message_id,
                    conversation_id: ConversationId::group(&group),
                    sender: UserId::lan(&relayed.author),
                    body: relayed.body,
                    sent_at: relayed.sent_at,
                    received_at: now,
                    hlc: relayed.hlc,
                    status: MessageStatus::Delivered,
                    sender_clock_offset_ms: author_offsets.get(&relayed.author).copied(),
                    signature: relayed.signature,
                };
                match st.insert_message(message.clone()) {
                    Ok(true) => {}
                    Ok(false) => {
                        outcome.skipped += 1;
                        continue;
                    }
                    Err(_) => {
                        outcome.skipped += 1;
                        outcome.forged += 1;
                        continue;
                    }
                }
                st.clock = Hlc::observe(st.clock, relayed.hlc, wall(now));
                // As the author's own `group.send` (envelope id = message id) would
                // have been: its later resend is a duplicate.
                st.dedupe
                    .entry(EnvelopeId::from_ulid(relayed.message_id.ulid()))
                    .or_insert(Received { received_at: now });
                outcome.stored.push(message);
            }
            Ok(outcome)
        })
    }
}

impl KeyBook for MemoryStore {
    fn pin_link_keys(&self, peer: NodeId, keys: [u8; 64]) -> PortFuture<'_, KeyPin> {
        Box::pin(async move {
            let mut st = self.open()?;
            Ok(match st.pins.get(&peer) {
                None => {
                    st.pins.insert(peer, keys);
                    KeyPin::Pinned
                }
                Some(pinned) if *pinned == keys => KeyPin::Matches,
                Some(_) => KeyPin::Mismatch,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    //! The store's own contract, checked directly: what delivery's tests rely on.

    use super::*;
    use crate::testing::{node_id, START_MS};

    fn arrival(from: &NodeId, envelope_id: EnvelopeId, at: UnixMs) -> Arrival {
        Arrival {
            envelope_id,
            from: from.clone(),
            received_at: at,
            sender_clock_offset_ms: None,
        }
    }

    fn incoming(id: MessageId, text: &str) -> IncomingMessage {
        IncomingMessage {
            message_id: id,
            body: text.into(),
            sent_at: START_MS,
            hlc: Hlc::from_wall_ms(START_MS as u64),
            signature: None,
        }
    }

    fn envelope_id(n: u128) -> EnvelopeId {
        EnvelopeId::from_ulid(ulid::Ulid::from_parts(START_MS as u64, n))
    }

    #[tokio::test]
    async fn an_envelope_is_applied_once_and_a_message_id_stored_once() {
        let (me, peer) = (node_id(1), node_id(2));
        let store = MemoryStore::new(me);
        let id = MessageId::from_ulid(ulid::Ulid::from_parts(START_MS as u64, 9));
        let dm = || InboundEffect::DirectMessage(incoming(id, "hi"));
        let first = store
            .apply_inbound(arrival(&peer, envelope_id(1), START_MS), dm())
            .await
            .unwrap();
        assert!(matches!(first, InboundOutcome::Applied(Some(ref m)) if m.message_id == id));
        let again = store
            .apply_inbound(arrival(&peer, envelope_id(1), START_MS), dm())
            .await
            .unwrap();
        assert_eq!(again, InboundOutcome::Duplicate);
        let other_envelope = store
            .apply_inbound(arrival(&peer, envelope_id(2), START_MS), dm())
            .await
            .unwrap();
        assert_eq!(other_envelope, InboundOutcome::Applied(None));
        assert_eq!(store.history(&ConversationId::dm(&peer)).len(), 1);
        // Dedupe entries live DEDUPE_RETENTION_MS.
        assert_eq!(
            store
                .prune_inbox_dedupe(START_MS + DEDUPE_RETENTION_MS)
                .await,
            Ok(0)
        );
        assert_eq!(
            store
                .prune_inbox_dedupe(START_MS + DEDUPE_RETENTION_MS + 1)
                .await,
            Ok(2)
        );
    }

    #[tokio::test]
    async fn a_refused_or_failed_envelope_records_nothing() {
        let (me, owner, stranger) = (node_id(1), node_id(2), node_id(3));
        let store = MemoryStore::new(me.clone());
        let stamp = Stamp {
            hlc: Hlc::from_wall_ms(START_MS as u64).raw(),
            editor: owner.clone(),
        };
        let group = GlobalGroupId::from_ulid(ulid::Ulid::from_parts(START_MS as u64, 5));
        let state = GroupState::create(group, &stamp, "g", "", std::slice::from_ref(&me));
        let message = || InboundEffect::GroupMessage {
            global_group_id: group,
            message: incoming(MessageId::from_ulid(envelope_id(7).ulid()), "m"),
        };
        // Unknown group: refused, not recorded — the same envelope is applied later.
        let early = store
            .apply_inbound(arrival(&owner, envelope_id(7), START_MS), message())
            .await;
        assert!(matches!(early, Err(PortError::Refused(_))));
        assert!(!store.has_seen(envelope_id(7)));
        // A non-member's upsert is refused.
        let forged = store
            .apply_inbound(
                arrival(&stranger, envelope_id(8), START_MS),
                InboundEffect::GroupUpsert(state.clone()),
            )
            .await;
        assert!(matches!(forged, Err(PortError::Refused(_))));
        let joined = store
            .apply_inbound(
                arrival(&owner, envelope_id(9), START_MS),
                InboundEffect::GroupUpsert(state.clone()),
            )
            .await
            .unwrap();
        assert!(matches!(joined, InboundOutcome::GroupUpdated { .. }));
        // Unavailable: nothing stored either.
        store.set_unavailable(Some("disk full"));
        let down = store
            .apply_inbound(arrival(&owner, envelope_id(7), START_MS), message())
            .await;
        assert_eq!(down, Err(PortError::Unavailable("disk full".into())));
        store.set_unavailable(None);
        let late = store
            .apply_inbound(arrival(&owner, envelope_id(7), START_MS), message())
            .await
            .unwrap();
        assert!(matches!(late, InboundOutcome::Applied(Some(_))));
    }

    #[tokio::test]
    async fn a_cursor_moves_only_over_the_next_message_owed() {
        let (me, b, c) = (node_id(1), node_id(2), node_id(3));
        let store = MemoryStore::new(me);
        let state = store
            .create_group("g", &[b.clone(), c.clone()], START_MS)
            .unwrap();
        let group = state.global_group_id;
        let m: Vec<Message> = (0..3)
            .map(|i| {
                store
                    .send_group_message(group, &format!("m{i}"), START_MS + i)
                    .unwrap()
            })
            .collect();
        let due = store.due_group_deliveries(START_MS + 5, 2).await.unwrap();
        assert_eq!(due.len(), 2);
        assert!(due.iter().all(|d| d.messages.len() == 2));
        // B acks the second and third only: nothing moves (the first is owed).
        let gap = vec![m[1].message_id, m[2].message_id];
        let consumed = store
            .group_acks_recorded(vec![(group, b.clone(), gap.clone())], START_MS + 6)
            .await
            .unwrap();
        assert_eq!(consumed, vec![Vec::<MessageId>::new()]);
        let mut all = gap;
        all.insert(0, m[0].message_id);
        let consumed = store
            .group_acks_recorded(
                vec![
                    (group, b.clone(), all),
                    (group, c.clone(), vec![m[0].message_id]),
                ],
                START_MS + 7,
            )
            .await
            .unwrap();
        assert_eq!(consumed[0].len(), 3);
        assert_eq!(consumed[1], vec![m[0].message_id]);
        let status = |i: usize| store.stored_message(m[i].message_id).unwrap().status;
        assert_eq!(status(0), MessageStatus::Delivered);
        assert_eq!(status(1), MessageStatus::Pending);
        // Only C is owed anything now.
        let due = store.due_group_deliveries(START_MS + 8, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].peer_id, c);
        assert_eq!(
            due[0]
                .messages
                .iter()
                .map(|x| x.message_id)
                .collect::<Vec<_>>(),
            vec![m[1].message_id, m[2].message_id]
        );
    }

    #[tokio::test]
    async fn retries_back_off_and_an_old_envelope_is_given_up() {
        let (me, peer) = (node_id(1), node_id(2));
        let store = MemoryStore::new(me);
        let (message, entry) = store.send_dm(&peer, "hi", START_MS).unwrap();
        let id = entry.envelope_id;
        let offline = || vec![(id, SendAttempt::Failed("offline".into()))];
        store
            .record_outbox_attempts(offline(), START_MS)
            .await
            .unwrap();
        assert_eq!(store.next_outbox_due_at().await, Ok(Some(START_MS + 2_000)));
        assert!(store
            .due_outbox(START_MS + 1_999, 10)
            .await
            .unwrap()
            .is_empty());
        store
            .record_outbox_attempts(offline(), START_MS + 2_000)
            .await
            .unwrap();
        assert_eq!(store.next_outbox_due_at().await, Ok(Some(START_MS + 6_000)));
        assert_eq!(
            store.outbox_due_now(peer.clone(), START_MS + 3_000).await,
            Ok(1)
        );
        assert_eq!(
            store.due_outbox(START_MS + 3_000, 10).await.unwrap().len(),
            1
        );
        let gave_up = store
            .record_outbox_attempts(offline(), START_MS + MAX_RETRY_AGE_MS)
            .await
            .unwrap();
        assert_eq!(gave_up, vec![message.message_id]);
        assert_eq!(
            store.stored_message(message.message_id).unwrap().status,
            MessageStatus::Failed
        );
        assert!(store.due_outbox(i64::MAX, 10).await.unwrap().is_empty());
        // Only its receiver's ack settles it.
        assert_eq!(store.outbox_acked(id, node_id(3)).await, Ok(None));
        assert!(store.outbox_acked(id, peer).await.unwrap().is_some());
        assert!(store.outbox_rows().is_empty());
    }
}
