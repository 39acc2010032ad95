//! Storage records → the views the API returns.
//!
//! A message's `order` is its storage order key `(hlc, message_id)` as text: 16
//! lower-case hex digits of the HLC, `-`, the message id (26 upper-case Crockford
//! characters, which sort like the ULID). Fixed widths make the text sort exactly like
//! the key, so clients can sort by it and hand it back as the `before` cursor.

use std::collections::HashMap;

use api_types::{ConversationKind, ConversationView, MessageStatus, MessageView};
use storage::{Conversation, ConversationTarget, Hlc, Message, OrderKey, UserId};

use super::{identity, ApiError, ApiState};

const HLC_HEX_DIGITS: usize = 16;

pub fn order_text(key: OrderKey) -> String {
    format!("{:016x}-{}", key.hlc.raw(), key.message_id)
}

pub fn parse_order(text: &str) -> Option<OrderKey> {
    let (hlc, id) = text.split_once('-')?;
    if hlc.len() != HLC_HEX_DIGITS || !hlc.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(OrderKey {
        hlc: Hlc::from_raw(u64::from_str_radix(hlc, 16).ok()?),
        message_id: id.parse().ok()?,
    })
}

/// Times before 1970 only come from a broken clock; show them as 0, not as an error.
fn unix_ms(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

pub fn status(s: storage::MessageStatus) -> MessageStatus {
    match s {
        storage::MessageStatus::Pending => MessageStatus::Pending,
        storage::MessageStatus::Sent => MessageStatus::Sent,
        storage::MessageStatus::Delivered => MessageStatus::Delivered,
        storage::MessageStatus::Failed => MessageStatus::Failed,
    }
}

/// Display names of message senders, read once per request.
pub struct Names {
    local: UserId,
    local_name: String,
    others: HashMap<UserId, String>,
}

impl Names {
    /// Only this node's own name: enough for messages it just wrote.
    pub fn local(state: &ApiState) -> Names {
        let settings = state.settings().current();
        Names {
            local: UserId::lan(&settings.lan_mesh.node_id),
            local_name: identity::own_name(&settings),
            others: HashMap::new(),
        }
    }

    /// Every known user's name (the peers' as discovery last saw them).
    pub async fn load(state: &ApiState) -> Result<Names, ApiError> {
        let mut names = Names::local(state);
        names.others = state
            .store()
            .users()
            .await?
            .into_iter()
            .map(|u| (u.user_id, u.display_name))
            .collect();
        Ok(names)
    }

    /// Names as the store knows them, for views built outside a request (events).
    pub async fn from_store(store: &storage::Store, local_id: &api_types::NodeId) -> Names {
        let local_name = store
            .local_identity()
            .await
            .ok()
            .flatten()
            .map(|me| me.display_name)
            .unwrap_or_default();
        let others = store
            .users()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|u| (u.user_id, u.display_name))
            .collect();
        Names {
            local: UserId::lan(local_id),
            local_name,
            others,
        }
    }

    /// The names one message received from another node needs: its sender's only (a
    /// keyed read, not the users table, on the path every inbound message takes).
    pub async fn for_sender(
        store: &storage::Store,
        local_id: &api_types::NodeId,
        sender: &UserId,
    ) -> Names {
        let local = UserId::lan(local_id);
        if *sender == local {
            return Names::from_store(store, local_id).await;
        }
        let mut others = HashMap::new();
        if let Ok(Some(name)) = store.user_display_name(sender.clone()).await {
            others.insert(sender.clone(), name);
        }
        Names {
            local,
            local_name: String::new(),
            others,
        }
    }

    pub fn is_local(&self, user: &UserId) -> bool {
        *user == self.local
    }

    /// A peer that never told its name (e.g. a group member not yet discovered) is
    /// shown by its node id rather than as a blank.
    pub fn name(&self, user: &UserId) -> String {
        if self.is_local(user) {
            return self.local_name.clone();
        }
        match self.others.get(user) {
            Some(name) if !name.is_empty() => name.clone(),
            _ => user
                .node_id()
                .map_or_else(|| user.to_string(), |n| n.to_string()),
        }
    }
}

pub fn message_view(m: &Message, names: &Names) -> MessageView {
    let (text, attachments) = match api_types::FileContent::parse(&m.body) {
        Ok(content) => (String::new(), crate::files::attachment_views(&content)),
        Err(_) => (m.body.clone(), Vec::new()),
    };
    MessageView {
        id: m.message_id.to_string(),
        conversation_id: m.conversation_id.to_string(),
        sender: m.sender.to_string(),
        sender_name: names.name(&m.sender),
        outgoing: names.is_local(&m.sender),
        text,
        status: status(m.status),
        // On this node's clock: a peer's wrong clock must not put its messages hours
        // in the future (`Message::shown_at`; the author's own stamp stays stored).
        sent_at: unix_ms(m.shown_at()),
        order: order_text(m.order_key()),
        read_by: None,
        attachments,
    }
}

/// Read receipts on this node's own messages, computed from the conversation's read
/// positions (`chat_core::receipts`): a DM its peer has read turns `read`; a group
/// message gets "read by k of n". `views` and `messages` are the same list.
pub fn apply_receipts(
    views: &mut [MessageView],
    messages: &[Message],
    read: &storage::ReadState,
    local: &api_types::NodeId,
) {
    use storage::read_rules as receipts;
    for (view, message) in views.iter_mut().zip(messages) {
        if !view.outgoing {
            continue;
        }
        let key = message.order_key();
        match message.conversation_id.target() {
            ConversationTarget::Direct(peer) => {
                if view.status != MessageStatus::Failed
                    && receipts::has_read(read.position_of(peer).as_ref(), &key)
                {
                    view.status = MessageStatus::Read;
                }
            }
            ConversationTarget::Group(_) => {
                let (count, of) =
                    receipts::read_by(local, &key, &read.members, |m| read.position_of(m));
                view.read_by = Some(api_types::ReadBy { count, of });
            }
        }
    }
}

pub fn conversation_view(c: &Conversation, names: &Names) -> ConversationView {
    // The storage list is ordered by the last message's HLC; its wall part is the time
    // that order stands for.
    let last_activity_at = c
        .last_message
        .as_ref()
        .map_or(unix_ms(c.created_at), |m| m.hlc.wall_ms());
    let (kind, peer_id) = match c.conversation_id.target() {
        ConversationTarget::Direct(peer) => (ConversationKind::Dm, Some(peer.to_string())),
        ConversationTarget::Group(_) => (ConversationKind::Group, None),
    };
    ConversationView {
        id: c.conversation_id.to_string(),
        kind,
        name: c.name.clone(),
        last_message: c.last_message.as_ref().map(|m| message_view(m, names)),
        unread: c.unread,
        last_activity_at,
        peer_id,
    }
}

/// A group as the API shows it: members with their names and presence from `users`
/// (the store's list), this node's own name from `local_name`.
pub fn group_view(
    group: &storage::Group,
    users: &[storage::User],
    local: &api_types::NodeId,
    local_name: &str,
) -> api_types::GroupView {
    group_state_view(
        &group.state,
        &group.conversation_id,
        group.updated_at,
        users,
        local,
        local_name,
    )
}

/// A group as the API shows it, from its replicated state (also for invitations,
/// which have no local group yet).
pub fn group_state_view(
    state: &storage::GroupState,
    conversation_id: &storage::ConversationId,
    updated_at: storage::UnixMs,
    users: &[storage::User],
    local: &api_types::NodeId,
    local_name: &str,
) -> api_types::GroupView {
    let members = state
        .member_ids()
        .iter()
        .map(|member| {
            let user_id = UserId::lan(member);
            let is_self = member == local;
            let user = users.iter().find(|u| u.user_id == user_id);
            let display_name = match user {
                _ if is_self => local_name.to_string(),
                Some(u) if !u.display_name.is_empty() => u.display_name.clone(),
                _ => member.to_string(),
            };
            let online = is_self || user.is_some_and(|u| u.online && !u.blocked);
            api_types::GroupMemberView {
                peer_id: member.to_string(),
                user_id: user_id.to_string(),
                display_name,
                online,
                // Refined from discovery where a request can ask it (`api::groups`).
                presence: api_types::Presence::shown(online, api_types::Presence::Online),
                is_self,
                is_owner: *member == state.owner,
            }
        })
        .collect();
    let is_member = state.is_member(local);
    let revision = state.revision();
    api_types::GroupView {
        id: state.global_group_id.to_string(),
        conversation_id: conversation_id.to_string(),
        name: state.name().to_string(),
        announcement: state.announcement().to_string(),
        owner: state.owner.to_string(),
        members,
        is_member,
        dissolved: state.is_dissolved(),
        permissions: api_types::GroupPermissions {
            send: is_member && !state.is_dissolved(),
            edit_info: state.may_edit_info(local),
            manage_members: state.may_manage_members(local),
            leave: state.may_leave(local),
            dissolve: state.may_dissolve(local),
        },
        revision: revision.hlc,
        revision_editor: revision.editor.to_string(),
        updated_at: unix_ms(updated_at),
    }
}

/// `group_view` outside a request (events): names and presence read from the store.
pub async fn group_view_from_store(
    store: &storage::Store,
    local: &api_types::NodeId,
    group: &storage::Group,
) -> api_types::GroupView {
    let users = store.users().await.unwrap_or_default();
    let local_name = local_name_from_store(store).await;
    group_view(group, &users, local, &local_name)
}

/// This node's display name as stored (outside a request, where settings are not at
/// hand); empty when unreadable.
pub async fn local_name_from_store(store: &storage::Store) -> String {
    store
        .local_identity()
        .await
        .ok()
        .flatten()
        .map(|me| me.display_name)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::MessageId;

    #[test]
    fn order_text_round_trips_and_sorts_like_the_key() {
        let keys: Vec<OrderKey> = [
            (0u64, MessageId::new()),
            (1, MessageId::new()),
            (0xff, MessageId::new()),
            (0x1_0000, MessageId::new()),
            (u64::MAX, MessageId::new()),
        ]
        .into_iter()
        .flat_map(|(hlc, id)| {
            [
                OrderKey {
                    hlc: Hlc::from_raw(hlc),
                    message_id: id,
                },
                OrderKey {
                    hlc: Hlc::from_raw(hlc),
                    message_id: "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap(),
                },
            ]
        })
        .collect();
        for key in &keys {
            let text = order_text(*key);
            assert_eq!(text.len(), 16 + 1 + 26);
            assert_eq!(parse_order(&text), Some(*key));
        }
        let mut by_key = keys.clone();
        by_key.sort();
        let mut by_text = keys;
        by_text.sort_by_key(|k| order_text(*k));
        assert_eq!(by_key, by_text);
    }

    #[test]
    fn malformed_order_text_is_refused() {
        let id = MessageId::new();
        for bad in [
            String::new(),
            "-".to_string(),
            format!("{id}"),
            format!("123-{id}"),
            format!("{:016x}", 5),
            format!("{:016x}-nope", 5),
            format!("+000000000000005-{id}"),
            format!("00000000000000zz-{id}"),
            format!("{:017x}-{id}", 5),
        ] {
            assert_eq!(parse_order(&bad), None, "{bad:?}");
        }
    }
}
