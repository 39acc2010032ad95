//! What `GET /api/v1/events` (WebSocket) pushes: one JSON object per text frame, with a
//! `type` naming the event.

use serde::{Deserialize, Serialize};

use crate::chat::{MessageStatus, MessageView};
use crate::peers::PeerView;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// A peer was seen (again) after being offline or unknown.
    #[serde(rename = "peer.online")]
    PeerOnline { peer: PeerView },
    /// Its goodbye arrived, its TTL ran out, or it left the allowed subnets.
    #[serde(rename = "peer.offline")]
    PeerOffline { peer: PeerView, reason: String },
    /// Its name, address or instance changed.
    #[serde(rename = "peer.updated")]
    PeerUpdated { peer: PeerView },
    #[serde(rename = "peer.blocked")]
    PeerBlocked { peer_id: String },
    #[serde(rename = "peer.unblocked")]
    PeerUnblocked { peer: PeerView },
    /// A node with this id tried to link with other keys than the ones pinned for it
    /// (a reinstalled machine, or someone impersonating it): refused. Forgetting the
    /// peer (`DELETE /api/v1/peers/{id}`) accepts its new keys.
    #[serde(rename = "peer.key_mismatch")]
    PeerKeyMismatch { peer_id: String },
    /// Removed from the list on request (`DELETE /api/v1/peers/{id}`).
    #[serde(rename = "peer.removed")]
    PeerRemoved { peer_id: String },
    /// This client fell too far behind and missed events: refetch what it shows.
    #[serde(rename = "resync")]
    Resync,
    /// A message was stored in a conversation: sent from here or received.
    #[serde(rename = "message.new")]
    MessageNew { message: MessageView },
    /// An outgoing message changed state (pending → sent → delivered, or failed).
    #[serde(rename = "file.progress")]
    /// A file's download moved (chunks arrived at most about every half second, or
    /// its state changed): refresh its attachments.
    FileProgress { file: crate::files::FileStatusView },
    #[serde(rename = "message.status")]
    MessageStatus {
        conversation_id: String,
        message_id: String,
        status: MessageStatus,
    },
    /// Read receipts arrived: `reader` has read `conversation_id` up to the message at
    /// `order` (DM statuses turn `read`, groups' "read by k of n" grow). Refetch the
    /// messages shown.
    #[serde(rename = "conversation.receipt")]
    ConversationReceipt {
        conversation_id: String,
        reader: String,
        order: String,
    },
    /// This node's presence changed (by any client, the tray or the idle timer).
    #[serde(rename = "presence.changed")]
    PresenceChanged {
        presence: crate::presence::MyPresence,
    },
    /// A conversation was marked read (from any client of this node).
    #[serde(rename = "conversation.read")]
    ConversationRead { conversation_id: String },
    /// A group was created or changed, here or by a `group.upsert` from a member.
    #[serde(rename = "group.updated")]
    GroupUpdated { group: crate::groups::GroupView },
    /// A group's announcement changed (here or by a member): show it to the user.
    #[serde(rename = "group.announcement")]
    GroupAnnouncement {
        group_id: String,
        announcement: String,
        /// The member who set it.
        editor: String,
    },
    /// A member added this node to a group while `auto_accept_group_sync` is off.
    #[serde(rename = "group.invitation")]
    GroupInvitation {
        invitation: crate::groups::GroupInvitationView,
    },
    /// An invitation was accepted or declined (by any client of this node).
    #[serde(rename = "group.invitation_closed")]
    GroupInvitationClosed { group_id: String, accepted: bool },
    /// The LAN mesh started, stopped or failed.
    #[serde(rename = "mesh.state")]
    MeshState {
        state: crate::status::MeshState,
        error: Option<String>,
    },
}
