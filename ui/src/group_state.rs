//! The groups' live state: every group this node holds (for the info panel, the
//! announcement banner and the composer's permission) and the pending invitations,
//! kept current by the event stream. The rules are `group_model`'s.

use api_types::{Event, GroupView};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{Client, UiError};
use crate::group_model;
use crate::messenger::Chat;
use crate::notices::{NoticeKind, Notices};

#[derive(Clone, Copy)]
pub struct Groups {
    client: StoredValue<Client>,
    pub list: RwSignal<Vec<GroupView>>,
    pub invitations: RwSignal<Vec<api_types::GroupInvitationView>>,
    pub invitations_error: RwSignal<Option<UiError>>,
    /// The info panel of the open group conversation is shown.
    pub info_open: RwSignal<bool>,
    /// The create-group dialog is shown.
    pub creating: RwSignal<bool>,
}

impl Groups {
    pub fn new(client: Client) -> Groups {
        Groups {
            client: StoredValue::new(client),
            list: RwSignal::new(Vec::new()),
            invitations: RwSignal::new(Vec::new()),
            invitations_error: RwSignal::new(None),
            info_open: RwSignal::new(false),
            creating: RwSignal::new(false),
        }
    }

    pub fn client(&self) -> Client {
        self.client.get_value()
    }

    /// Everything fetched again (start, reconnect, `resync`, presence changes).
    pub fn resync(&self) {
        self.refresh();
        self.refresh_invitations();
    }

    pub fn refresh(&self) {
        let this = *self;
        spawn_local(async move {
            // On failure the held list stays: the next event or resync fixes it.
            if let Ok(fetched) = this.client().groups().await {
                this.list
                    .update(|list| group_model::replace_groups(list, fetched));
            }
        });
    }

    /// One group fetched again (the info panel opening: fresh presence).
    pub fn refresh_one(&self, id: String) {
        let this = *self;
        spawn_local(async move {
            if let Ok(group) = this.client().group(&id).await {
                this.list
                    .update(|list| group_model::upsert_group(list, group));
            }
        });
    }

    pub fn refresh_invitations(&self) {
        let this = *self;
        spawn_local(async move {
            match this.client().invitations().await {
                Ok(mut fetched) => {
                    let mut list = Vec::new();
                    for invitation in fetched.drain(..) {
                        group_model::upsert_invitation(&mut list, invitation);
                    }
                    this.invitations.set(list);
                    this.invitations_error.set(None);
                }
                // A node without invitations (older, or auto-accepting) answers 404:
                // there is simply nothing to show.
                Err(e) if e.is_not_found() => {
                    this.invitations.set(Vec::new());
                    this.invitations_error.set(None);
                }
                Err(e) => this.invitations_error.set(Some(e)),
            }
        });
    }

    /// The group behind a conversation id (tracked).
    pub fn for_conversation(&self, conversation_id: &str) -> Option<GroupView> {
        self.list
            .with(|list| group_model::group_by_conversation(list, conversation_id).cloned())
    }

    /// A group from an answer: held, and shown in the conversation list.
    pub fn apply(&self, group: GroupView, chat: &Chat) {
        chat.show_group(&group);
        self.list
            .update(|list| group_model::upsert_group(list, group));
    }

    pub fn on_event(&self, event: &Event, chat: &Chat, notices: &Notices) {
        match event {
            Event::GroupUpdated { group } => {
                self.list
                    .update(|list| group_model::upsert_group(list, group.clone()));
            }
            Event::GroupAnnouncement {
                group_id,
                announcement,
                editor,
            } => {
                let mut group = None;
                self.list.update(|list| {
                    if group_model::set_announcement(list, group_id, announcement) {
                        group = list.iter().find(|g| &g.id == group_id).cloned();
                    }
                });
                let Some(group) = group else {
                    self.refresh();
                    return;
                };
                let by_self = group
                    .members
                    .iter()
                    .any(|m| m.is_self && &m.peer_id == editor);
                if !by_self && !announcement.trim().is_empty() {
                    notices.push(
                        NoticeKind::Info,
                        format!("announcement:{group_id}"),
                        "group.announcement.new",
                        vec![
                            ("group", group.name.clone()),
                            ("text", crate::chat_model::preview(announcement, 80)),
                        ],
                    );
                }
            }
            Event::GroupInvitation { invitation } => {
                self.invitations
                    .update(|list| group_model::upsert_invitation(list, invitation.clone()));
            }
            Event::GroupInvitationClosed { group_id, accepted } => {
                self.invitations
                    .update(|list| group_model::close_invitation(list, group_id));
                if *accepted {
                    self.refresh();
                    chat.refresh_conversations();
                }
            }
            // Members' online state comes from discovery, not from group events.
            Event::PeerOnline { .. }
            | Event::PeerOffline { .. }
            | Event::PeerUpdated { .. }
            | Event::PeerBlocked { .. }
            | Event::PeerUnblocked { .. }
            | Event::PeerRemoved { .. } => self.refresh(),
            Event::Resync => self.resync(),
            Event::PeerKeyMismatch { .. }
            | Event::MessageNew { .. }
            | Event::MessageStatus { .. }
            | Event::ConversationRead { .. }
            | Event::ConversationReceipt { .. }
            | Event::PresenceChanged { .. }
            | Event::MeshState { .. }
            | Event::FileProgress { .. } => {}
        }
    }
}
