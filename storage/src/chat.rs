//! The chat store: identity, users, conversations and messages.

use api_types::NodeId;
use rusqlite::{params, Connection, OptionalExtension};

use crate::blocks::SENDER_NOT_BLOCKED;
use crate::error::{StoreError, StoreResult};
use crate::model::{
    Conversation, ConversationKind, HistoryQuery, LocalIdentity, MessagePage, User, UserKind,
};
use crate::rows::HlcColumn;
use crate::rows::{self, MESSAGE_COLUMNS};
use crate::writer::WriterState;
use chat_core::Hlc;
use chat_core::{message_statement, ConversationTarget, MessageScope, MessageSignature};
use chat_core::{ConversationId, MessageId, UserId};
use chat_core::{Message, MessageStatus, UnixMs};

/// Most messages one history page returns; a UI screen shows far fewer.
pub const MAX_PAGE: u32 = 500;

/// The store refuses what the API and the wire refuse already: the rules are written
/// once, in `chat_core` (`api_types::limits`).
pub(crate) fn text_error(field: &'static str, e: chat_core::TextError) -> StoreError {
    StoreError::invalid(field, e.to_string())
}

pub(crate) fn validate_display_name(name: &str) -> StoreResult<String> {
    chat_core::check_display_name(name)
        .map(str::to_string)
        .map_err(|e| text_error("display_name", e))
}

pub(crate) fn validate_body(body: &str) -> StoreResult<()> {
    chat_core::check_body(body).map_err(|e| text_error("text", e))
}

pub(crate) fn local_identity(conn: &Connection) -> StoreResult<Option<LocalIdentity>> {
    conn.prepare_cached("SELECT node_id, display_name, created_at FROM local_identity")?
        .query_row([], |row| {
            Ok(LocalIdentity {
                node_id: rows::parse(row, 0)?,
                display_name: row.get(1)?,
                created_at: row.get(2)?,
            })
        })
        .optional()
        .map_err(Into::into)
}

/// Records who this node is. The node id never changes for a database: the messages
/// in it were sent and received as that node.
pub(crate) fn set_local_identity(
    conn: &Connection,
    state: &mut WriterState,
    node_id: &NodeId,
    display_name: &str,
    now: UnixMs,
) -> StoreResult<LocalIdentity> {
    let display_name = validate_display_name(display_name)?;
    if let Some(stored) = local_identity(conn)? {
        if &stored.node_id != node_id {
            return Err(StoreError::IdentityMismatch {
                stored: stored.node_id.to_string(),
                requested: node_id.to_string(),
            });
        }
    }
    conn.execute(
        "INSERT INTO local_identity (singleton, node_id, display_name, created_at)
         VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (singleton) DO UPDATE SET display_name = excluded.display_name",
        params![node_id.as_str(), display_name, now],
    )?;
    conn.execute(
        "INSERT INTO users (user_id, kind, peer_id, display_name) VALUES (?1, 'local', NULL, ?2)
         ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name",
        params![UserId::lan(node_id).as_str(), display_name],
    )?;
    state.local = Some(node_id.clone());
    local_identity(conn)?.ok_or(StoreError::NoIdentity)
}

pub(crate) fn users(conn: &Connection) -> StoreResult<Vec<User>> {
    let mut stmt = conn.prepare_cached(
        "SELECT u.user_id, u.kind, u.display_name, p.last_ip, p.last_port,
                COALESCE(p.online, 0), COALESCE(p.blocked, 0)
         FROM users u LEFT JOIN peers p ON p.peer_id = u.peer_id
         ORDER BY u.kind = 'lan', u.display_name COLLATE NOCASE, u.user_id",
    )?;
    let users = stmt
        .query_map([], |row| {
            let kind: String = row.get(1)?;
            let ip: Option<String> = row.get(3)?;
            let port = rows::port(row, 4)?;
            Ok(User {
                user_id: rows::parse(row, 0)?,
                kind: if kind == "local" {
                    UserKind::Local
                } else {
                    UserKind::Lan
                },
                display_name: row.get(2)?,
                last_address: ip.zip(port),
                online: row.get(5)?,
                blocked: row.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(users)
}

pub(crate) fn user_display_name(conn: &Connection, user: &UserId) -> StoreResult<Option<String>> {
    conn.prepare_cached("SELECT display_name FROM users WHERE user_id = ?1")?
        .query_row([user.as_str()], |row| row.get(0))
        .optional()
        .map_err(Into::into)
}

/// Creates the DM conversation with a known peer if it does not exist yet.
pub(crate) fn open_dm(
    conn: &Connection,
    peer: &NodeId,
    now: UnixMs,
) -> StoreResult<ConversationId> {
    let known: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM peers WHERE peer_id = ?1)")?
        .query_row([peer.as_str()], |r| r.get(0))?;
    if !known {
        return Err(StoreError::not_found("peer", peer));
    }
    ensure_dm(conn, peer, now)
}

/// Creates the DM conversation with a peer known to exist.
pub(crate) fn ensure_dm(
    conn: &Connection,
    peer: &NodeId,
    now: UnixMs,
) -> StoreResult<ConversationId> {
    let id = ConversationId::dm(peer);
    conn.prepare_cached(
        "INSERT INTO conversations (conversation_id, kind, peer_id, created_at)
         VALUES (?1, 'dm', ?2, ?3) ON CONFLICT DO NOTHING",
    )?
    .execute(params![id.as_str(), peer.as_str(), now])?;
    Ok(id)
}

/// Stores a message and moves its conversation's last message and unread count.
/// Returns false (and changes nothing) when a message with this id is already stored.
pub(crate) fn insert_message(
    conn: &Connection,
    message: &Message,
    counts_as_unread: bool,
) -> StoreResult<bool> {
    validate_body(&message.body)?;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO messages (message_id, conversation_id, sender_id, body, sent_at,
                                   received_at, hlc, status, sender_clock_offset_ms, signature)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (message_id) DO NOTHING",
        )?
        .execute(params![
            message.message_id.to_string(),
            message.conversation_id.as_str(),
            message.sender.as_str(),
            message.body,
            message.sent_at,
            message.received_at,
            message.hlc.to_sql(),
            message.status.as_str(),
            message.sender_clock_offset_ms,
            message.signature.map(|s| s.to_bytes()),
        ])?;
    if inserted == 0 {
        return check_same_content(conn, message).map(|()| false);
    }
    crate::attachments::record(conn, message)?;
    let updated = conn
        .prepare_cached(
            "UPDATE conversations SET
                 last_message_id = CASE WHEN last_hlc IS NULL OR (?2, ?3) > (last_hlc, last_message_id)
                                        THEN ?3 ELSE last_message_id END,
                 last_hlc = CASE WHEN last_hlc IS NULL OR (?2, ?3) > (last_hlc, last_message_id)
                                 THEN ?2 ELSE last_hlc END,
                 unread = unread + ?4
             WHERE conversation_id = ?1",
        )?
        .execute(params![
            message.conversation_id.as_str(),
            message.hlc.to_sql(),
            message.message_id.to_string(),
            i64::from(counts_as_unread),
        ])?;
    if updated == 0 {
        return Err(StoreError::not_found(
            "conversation",
            &message.conversation_id,
        ));
    }
    Ok(true)
}

/// A message id held already may only come again with the very same content: another
/// text (or author, conversation, stamp) under a known id is a forgery or an author
/// contradicting itself, and is refused — never acknowledged as applied, so the two
/// nodes cannot silently disagree (docs/PROTOCOL.md, "Signatures").
fn check_same_content(conn: &Connection, message: &Message) -> StoreResult<()> {
    let held = conn
        .prepare_cached(
            "SELECT conversation_id, sender_id, body, sent_at, hlc FROM messages
             WHERE message_id = ?1",
        )?
        .query_row([message.message_id.to_string()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .optional()?;
    let same = held.is_some_and(|(conversation, sender, body, sent_at, hlc)| {
        conversation == message.conversation_id.as_str()
            && sender == message.sender.as_str()
            && body == message.body
            && sent_at == message.sent_at
            && hlc == message.hlc.to_sql()
    });
    if same {
        Ok(())
    } else {
        Err(StoreError::Forged(format!(
            "message {} is held here with other content",
            message.message_id
        )))
    }
}

/// The newest stamp in a conversation (zero when it has none): local events in it are
/// stamped after it. `last_hlc` is kept by every insert, so this is one row's read.
pub(crate) fn conversation_floor(
    conn: &Connection,
    conversation_id: &ConversationId,
) -> StoreResult<Hlc> {
    let last: Option<Option<i64>> = conn
        .prepare_cached("SELECT last_hlc FROM conversations WHERE conversation_id = ?1")?
        .query_row([conversation_id.as_str()], |r| r.get(0))
        .optional()?;
    Ok(last.flatten().map(Hlc::from_sql).unwrap_or_default())
}

/// This node's signature of its own message (docs/PROTOCOL.md, "Signatures"): over its
/// conversation (the DM's peer or the group), id, author, stamps and text. `None`
/// without a signer (tests that need none).
pub(crate) fn sign_message(
    state: &WriterState,
    local: &NodeId,
    message: &Message,
) -> Option<MessageSignature> {
    let signer = state.signer.as_ref()?;
    let scope = match message.conversation_id.target() {
        ConversationTarget::Group(group) => MessageScope::Group(group),
        ConversationTarget::Direct(peer) => MessageScope::Direct { to: peer },
    };
    let statement = message_statement(
        scope,
        &message.message_id,
        local,
        message.sent_at,
        message.hlc,
        &message.body,
    );
    Some(MessageSignature {
        sig: signer.sign(&statement),
        keys: signer.keys(),
    })
}

/// Writes a message from the local user, stamped with the next HLC, status pending.
pub(crate) fn insert_local_message(
    conn: &Connection,
    state: &mut WriterState,
    conversation_id: &ConversationId,
    body: &str,
    now: UnixMs,
) -> StoreResult<Message> {
    let local = state.local.clone().ok_or(StoreError::NoIdentity)?;
    validate_body(body)?;
    let now_wall = u64::try_from(now).unwrap_or(0);
    // After everything in the conversation (a reply sorts after what it answers), even
    // a stamp a peer made with a clock far ahead; the node's clock stays its own.
    let floor = conversation_floor(conn, conversation_id)?;
    state.clock = Hlc::tick(state.clock, now_wall);
    let hlc = Hlc::tick_after(state.clock, floor, now_wall);
    let mut message = Message {
        message_id: MessageId::from_ulid(state.next_ulid()),
        conversation_id: conversation_id.clone(),
        sender: UserId::lan(&local),
        body: body.to_string(),
        sent_at: now,
        received_at: now,
        hlc,
        status: MessageStatus::Pending,
        sender_clock_offset_ms: None,
        signature: None,
    };
    message.signature = sign_message(state, &local, &message);
    insert_message(conn, &message, false)?;
    Ok(message)
}

pub(crate) fn set_message_status(
    conn: &Connection,
    message_id: &MessageId,
    status: MessageStatus,
    only_from: &[MessageStatus],
) -> StoreResult<()> {
    let from: Vec<&str> = only_from.iter().map(|s| s.as_str()).collect();
    conn.prepare_cached(
        "UPDATE messages SET status = ?2 WHERE message_id = ?1 AND status IN (SELECT value FROM json_each(?3))",
    )?
    .execute(params![
        message_id.to_string(),
        status.as_str(),
        serde_json::to_string(&from).map_err(|e| StoreError::Malformed(e.to_string()))?
    ])?;
    Ok(())
}

pub(crate) fn mark_read(conn: &Connection, conversation_id: &ConversationId) -> StoreResult<()> {
    let n = conn
        .prepare_cached("UPDATE conversations SET unread = 0 WHERE conversation_id = ?1")?
        .execute([conversation_id.as_str()])?;
    if n == 0 {
        return Err(StoreError::not_found("conversation", conversation_id));
    }
    Ok(())
}

pub(crate) fn message(conn: &Connection, message_id: &MessageId) -> StoreResult<Option<Message>> {
    conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.message_id = ?1"
    ))?
    .query_row([message_id.to_string()], |row| rows::message(row, 0))
    .optional()
    .map_err(Into::into)
}

/// One page of history, newest last. Reads the index `messages_in_order` backwards
/// from `before`, so the cost is the page size whatever the conversation's length.
pub(crate) fn history(
    conn: &Connection,
    conversation_id: &ConversationId,
    query: HistoryQuery,
) -> StoreResult<MessagePage> {
    let limit = query.limit.clamp(1, MAX_PAGE);
    let exists: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM conversations WHERE conversation_id = ?1)")?
        .query_row([conversation_id.as_str()], |r| r.get(0))?;
    if !exists {
        return Err(StoreError::not_found("conversation", conversation_id));
    }
    // One extra row tells whether an older page exists.
    let fetch = i64::from(limit) + 1;
    let mut messages = match query.before {
        None => conn
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conversation_id = ?1
                   AND {SENDER_NOT_BLOCKED}
                 ORDER BY m.hlc DESC, m.message_id DESC LIMIT ?2"
            ))?
            .query_map(params![conversation_id.as_str(), fetch], |row| {
                rows::message(row, 0)
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        Some(before) => conn
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conversation_id = ?1
                   AND (m.hlc, m.message_id) < (?2, ?3) AND {SENDER_NOT_BLOCKED}
                 ORDER BY m.hlc DESC, m.message_id DESC LIMIT ?4"
            ))?
            .query_map(
                params![
                    conversation_id.as_str(),
                    before.hlc.to_sql(),
                    before.message_id.to_string(),
                    fetch
                ],
                |row| rows::message(row, 0),
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?,
    };
    let more = messages.len() > limit as usize;
    messages.truncate(limit as usize);
    messages.reverse();
    let older = if more {
        messages.first().map(Message::order_key)
    } else {
        None
    };
    Ok(MessagePage { messages, older })
}

pub(crate) fn conversations(conn: &Connection) -> StoreResult<Vec<Conversation>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT c.conversation_id, c.kind, COALESCE(NULLIF(p.display_name, ''), p.peer_id, g.name),
                c.unread, c.created_at, m.message_id IS NOT NULL, {MESSAGE_COLUMNS}
         FROM conversations c
         LEFT JOIN peers p ON p.peer_id = c.peer_id
         LEFT JOIN groups g ON g.group_id = c.group_id
         LEFT JOIN messages m ON m.message_id = c.last_message_id AND {SENDER_NOT_BLOCKED}
         ORDER BY COALESCE(c.last_hlc, c.created_at * 65536) DESC, c.conversation_id"
    ))?;
    let list = stmt
        .query_map([], |row| {
            let kind: String = row.get(1)?;
            let has_last: bool = row.get(5)?;
            Ok(Conversation {
                conversation_id: rows::parse(row, 0)?,
                kind: if kind == "dm" {
                    ConversationKind::Direct
                } else {
                    ConversationKind::Group
                },
                name: row.get::<_, Option<String>>(2)?.unwrap_or_default(),
                unread: row.get(3)?,
                created_at: row.get(4)?,
                last_message: if has_last {
                    Some(rows::message(row, 6)?)
                } else {
                    None
                },
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(list)
}
