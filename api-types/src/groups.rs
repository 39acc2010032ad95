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
    /// False when a later state removed this node: it keeps the history, sends and
    /// receives nothing more.
    pub is_member: bool,
    /// The merge version: the higher `(revision, revision_editor)` wins everywhere.
    pub revision: u64,
    pub revision_editor: String,
    /// Unix ms of the last change this node applied.
    pub updated_at: u64,
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
