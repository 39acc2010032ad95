//! Groups as the local API shows them, and the requests that create and change them
//! (`/api/v1/groups`).

use serde::{Deserialize, Serialize};

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMemberView {
    pub peer_id: String,
    /// `lan:{peer_id}`.
    pub user_id: String,
    /// As discovery last saw it; the node id when the member was never seen.
    pub display_name: String,
    pub online: bool,
    /// `online|away|busy|offline`, as discovery last heard it (this node's own for
    /// `is_self`).
    #[serde(default)]
    pub presence: crate::presence::Presence,
    pub is_self: bool,
    pub is_owner: bool,
}

/// A group, the same on every member node (`global_group_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    /// The global group id (ULID), shared by every member node.
    pub id: String,
    /// `group:{id}`: post messages there.
    pub conversation_id: String,
    pub name: String,
    pub announcement: String,
    /// The owner's node id.
    pub owner: String,
    /// Sorted by node id; this node included while it is a member.
    pub members: Vec<GroupMemberView>,
    /// False when a later state removed this node (or it left): it keeps the history,
    /// sends and receives nothing more.
    pub is_member: bool,
    /// The owner dissolved the group: it stays readable, nobody can send or change it.
    pub dissolved: bool,
    /// What this node may do now: the same rules every member enforces on receipt.
    pub permissions: GroupPermissions,
    /// The newest change's clock stamp (hybrid logical clock) and who made it; equal on
    /// every member once they hold the same state.
    pub revision: u64,
    pub revision_editor: String,
    /// Unix ms of the last change this node applied.
    pub updated_at: u64,
}

/// What this node may do with a group (docs/PROTOCOL.md, "Group permissions").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPermissions {
    /// Send messages (a member of a group that is not dissolved).
    pub send: bool,
    /// Rename it and change its announcement (any member).
    pub edit_info: bool,
    /// Add and remove members (the owner).
    pub manage_members: bool,
    /// Leave it (any member but the owner, who dissolves instead).
    pub leave: bool,
    /// Dissolve it (the owner).
    pub dissolve: bool,
}

/// A group this node was added to while `auto_accept_group_sync` is off: it waits for
/// the user to accept or decline (`/api/v1/group-invitations`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInvitationView {
    /// The group as the inviting member sent it (`is_member` false until accepted).
    pub group: GroupView,
    /// The member whose `group.upsert` brought it.
    pub from_peer_id: String,
    pub from_name: String,
    /// Unix ms.
    pub received_at: u64,
}

/// `POST /api/v1/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    pub name: String,
    /// Other members' node ids (this node is added as owner).
    pub members: Vec<String>,
    #[serde(default)]
    pub announcement: Option<String>,
}

/// `PUT /api/v1/groups/{id}`: every field optional; the ones given replace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateGroup {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub announcement: Option<String>,
    /// The whole new member list (node ids); the owner always stays a member.
    #[serde(default)]
    pub members: Option<Vec<String>>,
}
