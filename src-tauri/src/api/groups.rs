//! `/api/v1/groups`: create, list, read and change groups that span member nodes.
//!
//! Creating or changing a group writes it and queues a `group.upsert` to every member
//! node (old and new ones, for a change) in one store transaction; the delivery worker
//! is woken and every event stream hears `group.updated`. Messages go through
//! `POST /api/v1/conversations/group:{id}/messages` like any conversation.

use api_types::{CreateGroup, Event, FieldError, GroupView, NodeId, UpdateGroup};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use lan_mesh::envelope::group_upsert_outgoing;
use storage::{GlobalGroupId, Group, GroupEdit, NewGroup};

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

async fn view(state: &ApiState, group: &Group) -> Result<GroupView, ApiError> {
    let users = state.store().users().await?;
    let settings = state.settings().current();
    Ok(views::group_view(
        group,
        &users,
        &settings.lan_mesh.node_id,
        &identity::own_name(&settings),
    ))
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
            group_upsert_outgoing,
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
    Ok(Json(
        groups
            .iter()
            .map(|g| views::group_view(g, &users, &settings.lan_mesh.node_id, &name))
            .collect(),
    ))
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
    if request.name.is_none() && request.announcement.is_none() && members.is_none() {
        return Err(FieldError::new(
            "name",
            "nothing to change: give name, announcement or members",
        )
        .into());
    }
    identity::ensure_local(&state).await?;
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
            group_upsert_outgoing,
        )
        .await?;
    let view = view(&state, &group).await?;
    tracing::info!(group = %view.id, revision = view.revision, "group changed");
    announce(&state, &view);
    Ok(Json(view))
}
