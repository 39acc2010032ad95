//! `/api/v1/groups`: create, list, read and change groups that span member nodes.
//!
//! Creating or changing a group writes it and queues a `group.upsert` to every member
//! node (old and new ones, for a change) in one store transaction; the delivery worker
//! is woken and every event stream hears `group.updated`. Messages go through
//! `POST /api/v1/conversations/group:{id}/messages` like any conversation.

use api_types::{
    CreateGroup, Event, FieldError, GroupInvitationView, GroupView, NodeId, UpdateGroup,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use mesh_store::group_upsert_envelope;
use storage::{ConversationId, GlobalGroupId, Group, GroupAction, GroupEdit, NewGroup, Store};

use super::params::Segments;
use super::{identity, json_body, now_ms, views, ApiError, ApiState};

fn group_id(text: &str) -> Result<GlobalGroupId, ApiError> {
    text.parse::<GlobalGroupId>().map_err(|_| {
        FieldError::new("group_id", format!("{text:?} is not a group id (a ULID)")).into()
    })
}

/// Node ids from the request; this node itself may be listed (it is a member anyway),
/// a peer the settings block may not.
fn member_ids(state: &ApiState, members: &[String]) -> Result<Vec<NodeId>, ApiError> {
    let blocked = state.settings().current().lan_mesh.blocked_peers;
    members
        .iter()
        .map(|m| {
            let id: NodeId = m.trim().parse().map_err(|_| {
                ApiError::from(FieldError::new(
                    "members",
                    format!("{m:?} is not a node id"),
                ))
            })?;
            if blocked.contains(&id) {
                return Err(FieldError::new("members", format!("peer {id} is blocked")).into());
            }
            Ok(id)
        })
        .collect()
}

/// The members the user names become contacts (see `peers::ensure_contact`), so the
/// group shows their names at once.
async fn ensure_contacts(state: &ApiState, members: &[NodeId]) -> Result<(), ApiError> {
    let own = state.settings().current().lan_mesh.node_id;
    for member in members.iter().filter(|m| **m != own) {
        super::peers::ensure_contact(state, member).await?;
    }
    Ok(())
}

async fn view(state: &ApiState, group: &Group) -> Result<GroupView, ApiError> {
    let users = state.store().users().await?;
    let settings = state.settings().current();
    let mut view = views::group_view(
        group,
        &users,
        &settings.lan_mesh.node_id,
        &identity::own_name(&settings),
    );
    with_presence(state, std::slice::from_mut(&mut view)).await;
    Ok(view)
}

/// Members' presence as discovery hears it now, and this node's own (the store's
/// view knows only online or not).
async fn with_presence(state: &ApiState, views: &mut [GroupView]) {
    let announced: std::collections::HashMap<String, api_types::Presence> =
        match state.mesh().discovery() {
            Some(discovery) => discovery
                .peers()
                .await
                .unwrap_or_default()
                .iter()
                .map(|p| (p.node_id.to_string(), crate::mesh::peer_view(p).presence))
                .collect(),
            None => Default::default(),
        };
    let mine = state.mesh().presence().get().presence;
    for member in views.iter_mut().flat_map(|v| v.members.iter_mut()) {
        if member.is_self {
            member.presence = mine;
        } else if member.online {
            if let Some(p) = announced.get(&member.peer_id) {
                member.presence = *p;
            }
        }
    }
}

/// Tells the delivery worker and every event stream.
fn announce(state: &ApiState, view: &GroupView) {
    state.mesh().wake_outbox();
    state.mesh().publish(Event::GroupUpdated {
        group: view.clone(),
    });
}

/// `POST /api/v1/groups {"name", "members": [peer_id…], "announcement"?}` → `201`.
pub async fn create(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<GroupView>), ApiError> {
    let request: CreateGroup = json_body::parse(&headers, &body)?;
    let members = member_ids(&state, &request.members)?;
    ensure_contacts(&state, &members).await?;
    identity::ensure_local(&state).await?;
    let group = state
        .store()
        .create_group(
            NewGroup {
                name: request.name,
                announcement: request.announcement.unwrap_or_default(),
                members,
            },
            now_ms(),
            group_upsert_envelope,
        )
        .await?;
    let view = view(&state, &group).await?;
    tracing::info!(group = %view.id, members = view.members.len(), "group created");
    announce(&state, &view);
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /api/v1/groups`: by name.
pub async fn list(State(state): State<ApiState>) -> Result<Json<Vec<GroupView>>, ApiError> {
    let groups = state.store().groups().await?;
    let users = state.store().users().await?;
    let settings = state.settings().current();
    let name = identity::own_name(&settings);
    let mut views: Vec<GroupView> = groups
        .iter()
        .map(|g| views::group_view(g, &users, &settings.lan_mesh.node_id, &name))
        .collect();
    with_presence(&state, &mut views).await;
    Ok(Json(views))
}

/// `GET /api/v1/groups/{id}`.
pub async fn get(
    State(state): State<ApiState>,
    Segments(id): Segments<String>,
) -> Result<Json<GroupView>, ApiError> {
    let id = group_id(&id)?;
    let group = state
        .store()
        .group(id)
        .await?
        .ok_or_else(|| storage::StoreError::NotFound {
            what: "group",
            id: id.to_string(),
        })?;
    Ok(Json(view(&state, &group).await?))
}

/// `PUT /api/v1/groups/{id} {"name"?, "announcement"?, "members"?}` → the new state.
pub async fn update(
    State(state): State<ApiState>,
    Segments(id): Segments<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<GroupView>, ApiError> {
    let id = group_id(&id)?;
    let request: UpdateGroup = json_body::parse(&headers, &body)?;
    let members = match &request.members {
        Some(m) => Some(member_ids(&state, m)?),
        None => None,
    };
    if let Some(members) = &members {
        ensure_contacts(&state, members).await?;
    }
    if request.name.is_none() && request.announcement.is_none() && members.is_none() {
        return Err(FieldError::new(
            "name",
            "nothing to change: give name, announcement or members",
        )
        .into());
    }
    identity::ensure_local(&state).await?;
    let before = state.store().group(id).await?;
    let group = state
        .store()
        .edit_group(
            id,
            GroupEdit {
                name: request.name,
                announcement: request.announcement,
                members,
            },
            now_ms(),
            group_upsert_envelope,
        )
        .await?;
    let view = view(&state, &group).await?;
    tracing::info!(group = %view.id, revision = view.revision, "group changed");
    announce(&state, &view);
    if request.members.is_some() {
        // Added members get the history from here as well as from whoever they meet.
        state.mesh().sync_group(id);
    }
    if before.is_some_and(|b| b.state.announcement() != group.state.announcement()) {
        state.mesh().publish(Event::GroupAnnouncement {
            group_id: view.id.clone(),
            announcement: view.announcement.clone(),
            editor: view.revision_editor.clone(),
        });
    }
    Ok(Json(view))
}

/// `POST /api/v1/groups/{id}/leave` → the group, without this node.
pub async fn leave(
    State(state): State<ApiState>,
    Segments(id): Segments<String>,
) -> Result<Json<GroupView>, ApiError> {
    act(&state, &id, GroupAction::Leave).await
}

/// `POST /api/v1/groups/{id}/dissolve` → the group, dissolved (the owner only).
pub async fn dissolve(
    State(state): State<ApiState>,
    Segments(id): Segments<String>,
) -> Result<Json<GroupView>, ApiError> {
    act(&state, &id, GroupAction::Dissolve).await
}

async fn act(state: &ApiState, id: &str, action: GroupAction) -> Result<Json<GroupView>, ApiError> {
    let id = group_id(id)?;
    identity::ensure_local(state).await?;
    let group = state
        .store()
        .group_action(id, action, now_ms(), group_upsert_envelope)
        .await?;
    let view = view(state, &group).await?;
    tracing::info!(group = %view.id, ?action, "group left or dissolved");
    announce(state, &view);
    Ok(Json(view))
}

fn invitation(
    held: &storage::GroupInvitation,
    users: &[storage::User],
    local: &NodeId,
    local_name: &str,
) -> GroupInvitationView {
    let state = &held.state;
    let from_name = users
        .iter()
        .find(|u| u.user_id == storage::UserId::lan(&held.from_peer_id))
        .map(|u| u.display_name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| held.from_peer_id.to_string());
    GroupInvitationView {
        group: views::group_state_view(
            state,
            &ConversationId::group(&state.global_group_id),
            held.received_at,
            users,
            local,
            local_name,
        ),
        from_peer_id: held.from_peer_id.to_string(),
        from_name,
        received_at: u64::try_from(held.received_at).unwrap_or(0),
    }
}

/// The open invitation for a group, as events show it.
pub async fn invitation_view(
    store: &Store,
    local: &NodeId,
    id: GlobalGroupId,
) -> Option<GroupInvitationView> {
    let held = store
        .group_invitations()
        .await
        .ok()?
        .into_iter()
        .find(|i| i.state.global_group_id == id)?;
    let users = store.users().await.unwrap_or_default();
    let local_name = views::local_name_from_store(store).await;
    Some(invitation(&held, &users, local, &local_name))
}

/// `GET /api/v1/group-invitations`: the open ones, newest first.
pub async fn invitations(
    State(state): State<ApiState>,
) -> Result<Json<Vec<GroupInvitationView>>, ApiError> {
    let held = state.store().group_invitations().await?;
    let users = state.store().users().await?;
    let settings = state.settings().current();
    let name = identity::own_name(&settings);
    Ok(Json(
        held.iter()
            .map(|i| invitation(i, &users, &settings.lan_mesh.node_id, &name))
            .collect(),
    ))
}

/// `POST /api/v1/group-invitations/{id}/accept` → the group, joined.
pub async fn accept(
    State(state): State<ApiState>,
    Segments(id): Segments<String>,
) -> Result<Json<GroupView>, ApiError> {
    let id = group_id(&id)?;
    identity::ensure_local(&state).await?;
    let group = state.store().accept_group_invitation(id, now_ms()).await?;
    let view = view(&state, &group).await?;
    tracing::info!(group = %view.id, "accepted a group invitation");
    announce(&state, &view);
    // What was said before joining comes from the members online (group catch-up).
    state.mesh().sync_group(id);
    state.mesh().publish(Event::GroupInvitationClosed {
        group_id: view.id.clone(),
        accepted: true,
    });
    Ok(Json(view))
}

/// `POST /api/v1/group-invitations/{id}/decline` → `204`.
pub async fn decline(
    State(state): State<ApiState>,
    Segments(id): Segments<String>,
) -> Result<StatusCode, ApiError> {
    let id = group_id(&id)?;
    identity::ensure_local(&state).await?;
    state
        .store()
        .decline_group_invitation(id, now_ms(), group_upsert_envelope)
        .await?;
    tracing::info!(group = %id, "declined a group invitation");
    state.mesh().wake_outbox();
    state.mesh().publish(Event::GroupInvitationClosed {
        group_id: id.to_string(),
        accepted: false,
    });
    Ok(StatusCode::NO_CONTENT)
}
