//! The messenger's live state: contacts, the conversation list and the open
//! conversation's history, kept current by the event stream (never by a manual
//! refresh). Components read these signals; the rules are `chat_model`'s.

use std::collections::HashMap;

use api_types::{
    ContactView, ConversationKind, ConversationView, Event, FileStatusView, GroupView, MessageView,
};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{Client, UiError};
use crate::chat_model::{self, ListUpdate};
use crate::files_model;
use crate::group_model;

/// Messages per history page: a screenful or two; older ones load on scroll.
pub const PAGE: u32 = 50;
/// A jump to a search hit loads at most this many pages before giving up.
const JUMP_PAGES: usize = 40;

/// The open conversation's history, newest last.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    pub conversation_id: String,
    pub messages: Vec<MessageView>,
    /// The cursor for the previous page; `None` at the beginning of history.
    pub older: Option<String>,
    /// The first page has arrived.
    pub loaded: bool,
    pub loading_older: bool,
    pub error: Option<UiError>,
    /// Unread messages when it was opened, and where they start once loaded.
    pub unread_at_open: u32,
    pub first_unread: Option<String>,
}

#[derive(Clone, Copy)]
pub struct Chat {
    client: StoredValue<Client>,
    /// `None` while the first answer is on its way.
    pub contacts: RwSignal<Option<Result<Vec<ContactView>, UiError>>>,
    pub conversations: RwSignal<Vec<ConversationView>>,
    pub conversations_error: RwSignal<Option<UiError>>,
    pub history: RwSignal<Option<History>>,
    /// The message a search result pointed at, shown highlighted.
    pub highlight: RwSignal<Option<String>>,
    /// The search box's text; non-empty shows the results instead of the conversation.
    pub search: RwSignal<String>,
    /// The messenger is the current tab (set by the app shell).
    pub shown: RwSignal<bool>,
    /// Unsent text per conversation, kept while the user looks elsewhere.
    drafts: StoredValue<HashMap<String, String>>,
    /// The newest known state of each shown file, by file id: attachments read theirs
    /// here, so a download's progress (`file.progress`, about twice a second) updates
    /// its rows without rendering their messages again.
    pub files: RwSignal<HashMap<String, FileStatusView>>,
}

impl Chat {
    pub fn new(client: Client) -> Chat {
        Chat {
            client: StoredValue::new(client),
            contacts: RwSignal::new(None),
            conversations: RwSignal::new(Vec::new()),
            conversations_error: RwSignal::new(None),
            history: RwSignal::new(None),
            highlight: RwSignal::new(None),
            search: RwSignal::new(String::new()),
            shown: RwSignal::new(true),
            drafts: StoredValue::new(HashMap::new()),
            files: RwSignal::new(HashMap::new()),
        }
    }

    pub fn draft(&self, conversation_id: &str) -> String {
        self.drafts
            .with_value(|d| d.get(conversation_id).cloned().unwrap_or_default())
    }

    pub fn keep_draft(&self, conversation_id: &str, text: String) {
        self.drafts.update_value(|d| {
            if text.is_empty() {
                d.remove(conversation_id);
            } else {
                d.insert(conversation_id.to_string(), text);
            }
        });
    }

    pub fn client(&self) -> Client {
        self.client.get_value()
    }

    pub fn open_id(&self) -> Option<String> {
        self.history
            .with(|h| h.as_ref().map(|h| h.conversation_id.clone()))
    }

    fn open_id_untracked(&self) -> Option<String> {
        self.history
            .with_untracked(|h| h.as_ref().map(|h| h.conversation_id.clone()))
    }

    /// Everything shown, fetched again (start, reconnect, `resync`).
    pub fn resync(&self) {
        self.refresh_contacts();
        self.refresh_conversations();
        if let Some(id) = self.open_id_untracked() {
            self.fetch_newest(id);
        }
    }

    pub fn refresh_contacts(&self) {
        let this = *self;
        spawn_local(async move {
            let got = this.client().contacts().await;
            this.contacts.set(Some(got));
        });
    }

    pub fn refresh_conversations(&self) {
        let this = *self;
        spawn_local(async move {
            match this.client().conversations().await {
                Ok(mut list) => {
                    chat_model::sort_conversations(&mut list);
                    this.conversations.set(list);
                    this.conversations_error.set(None);
                    this.read_if_viewed();
                }
                Err(e) => this.conversations_error.set(Some(e)),
            }
        });
    }

    /// The name to show for a conversation: its own, or (a DM not started yet) the
    /// contact's.
    pub fn name_of(&self, conversation_id: &str) -> String {
        if let Some(name) = self.conversations.with(|list| {
            list.iter()
                .find(|c| c.id == conversation_id)
                .map(|c| c.name.clone())
        }) {
            return name;
        }
        self.contact_for(conversation_id)
            .map(|c| c.display_name)
            .unwrap_or_else(|| conversation_id.to_string())
    }

    pub fn kind_of(&self, conversation_id: &str) -> ConversationKind {
        self.conversations
            .with(|list| {
                list.iter()
                    .find(|c| c.id == conversation_id)
                    .map(|c| c.kind)
            })
            .unwrap_or(if conversation_id.starts_with("group:") {
                ConversationKind::Group
            } else {
                ConversationKind::Dm
            })
    }

    pub fn contact_for(&self, conversation_id: &str) -> Option<ContactView> {
        self.contacts.with(|c| {
            c.as_ref()
                .and_then(|r| r.as_ref().ok())
                .and_then(|list| list.iter().find(|c| c.conversation_id == conversation_id))
                .cloned()
        })
    }

    /// Shows a conversation: its newest page, then it is marked read.
    pub fn open(&self, conversation_id: &str) {
        self.search.set(String::new());
        if self.open_id_untracked().as_deref() == Some(conversation_id) {
            self.read_if_viewed();
            return;
        }
        self.highlight.set(None);
        let unread = self
            .conversations
            .with_untracked(|list| chat_model::unread_of(list, conversation_id));
        self.history.set(Some(History {
            conversation_id: conversation_id.to_string(),
            unread_at_open: unread,
            ..History::default()
        }));
        self.fetch_newest(conversation_id.to_string());
        self.read_if_viewed();
    }

    fn fetch_newest(&self, id: String) {
        let this = *self;
        spawn_local(async move {
            let got = this.client().messages(&id, None, PAGE).await;
            this.with_open(&id, |h| match got {
                Ok(page) => {
                    this.note_files(&page.messages);
                    // After a long disconnection the newest page may not reach what is
                    // shown: start again from it rather than leave a hole.
                    let gap = h.loaded
                        && page.older.is_some()
                        && page
                            .messages
                            .first()
                            .is_some_and(|first| !h.messages.iter().any(|m| m.id == first.id));
                    if gap {
                        h.messages.clear();
                    }
                    if !h.loaded || gap {
                        h.older = page.older;
                    }
                    chat_model::merge_messages(&mut h.messages, page.messages);
                    if !h.loaded {
                        h.first_unread = chat_model::first_unread(&h.messages, h.unread_at_open);
                    }
                    h.loaded = true;
                    h.error = None;
                }
                Err(e) => {
                    h.loaded = true;
                    h.error = Some(e);
                }
            });
        });
    }

    /// Applies `f` to the history if `id` is still the open conversation (answers for
    /// a conversation the user has left are dropped).
    fn with_open(&self, id: &str, f: impl FnOnce(&mut History)) {
        self.history.update(|h| {
            if let Some(h) = h.as_mut().filter(|h| h.conversation_id == id) {
                f(h);
            }
        });
    }

    /// Loads the page before the oldest shown message; `false` when there is none or
    /// one is already on its way.
    pub fn load_older(&self) -> bool {
        let Some((id, cursor)) = self.history.with_untracked(|h| {
            h.as_ref()
                .filter(|h| !h.loading_older)
                .and_then(|h| h.older.clone().map(|o| (h.conversation_id.clone(), o)))
        }) else {
            return false;
        };
        self.with_open(&id, |h| h.loading_older = true);
        let this = *self;
        spawn_local(async move {
            this.fetch_older(&id, &cursor).await;
        });
        true
    }

    async fn fetch_older(&self, id: &str, cursor: &str) -> bool {
        let got = self.client().messages(id, Some(cursor), PAGE).await;
        if let Ok(page) = &got {
            self.note_files(&page.messages);
        }
        let mut ok = false;
        self.with_open(id, |h| {
            h.loading_older = false;
            match got {
                Ok(page) => {
                    chat_model::merge_messages(&mut h.messages, page.messages);
                    h.older = page.older;
                    h.error = None;
                    ok = true;
                }
                Err(e) => h.error = Some(e),
            }
        });
        ok
    }

    /// Opens a conversation at one message (a search hit): loads older pages until it
    /// is there, then highlights it (the view scrolls to it).
    pub fn jump_to(&self, message: &MessageView) {
        let id = message.conversation_id.clone();
        let target = message.id.clone();
        self.search.set(String::new());
        self.highlight.set(None);
        self.history.set(Some(History {
            conversation_id: id.clone(),
            ..History::default()
        }));
        self.read_if_viewed();
        let this = *self;
        spawn_local(async move {
            let first = this.client().messages(&id, None, PAGE).await;
            if let Ok(page) = &first {
                this.note_files(&page.messages);
            }
            this.with_open(&id, |h| {
                h.loaded = true;
                match first {
                    Ok(page) => {
                        chat_model::merge_messages(&mut h.messages, page.messages);
                        h.older = page.older;
                    }
                    Err(e) => h.error = Some(e),
                }
            });
            for _ in 0..JUMP_PAGES {
                let step = this.history.with_untracked(|h| {
                    h.as_ref()
                        .filter(|h| h.conversation_id == id)
                        .map(|h| (h.messages.iter().any(|m| m.id == target), h.older.clone()))
                });
                match step {
                    Some((true, _)) => {
                        this.highlight.set(Some(target.clone()));
                        return;
                    }
                    Some((false, Some(cursor))) => {
                        this.with_open(&id, |h| h.loading_older = true);
                        if !this.fetch_older(&id, &cursor).await {
                            return;
                        }
                    }
                    // Left for another conversation, or the start of history.
                    _ => return,
                }
            }
        });
    }

    /// Marks the open conversation read when the user can see it and it has unread
    /// messages.
    pub fn read_if_viewed(&self) {
        let Some(id) = self.open_id_untracked() else {
            return;
        };
        if !self.looking() {
            return;
        }
        let unread = self
            .conversations
            .with_untracked(|list| chat_model::unread_of(list, &id));
        if unread == 0 {
            return;
        }
        // Shown as read at once; the node's `conversation.read` confirms it.
        self.conversations
            .update(|list| chat_model::apply_read(list, &id));
        let client = self.client();
        spawn_local(async move {
            // Should it fail, the next refetch shows the unread count again.
            let _ = client.mark_read(&id).await;
        });
    }

    /// Sends `text` to the open conversation; the answer (pending) shows at once.
    pub async fn send(&self, conversation_id: &str, text: &str) -> Result<(), UiError> {
        let message = self.client().send(conversation_id, text).await?;
        self.add_message(message);
        // Answering means the new messages were seen: the "New messages" line goes.
        self.with_open(conversation_id, |h| h.first_unread = None);
        Ok(())
    }

    pub async fn retry(&self, message: &MessageView) -> Result<(), UiError> {
        let again = self
            .client()
            .retry(&message.conversation_id, &message.id)
            .await?;
        self.add_message(again);
        Ok(())
    }

    /// Shows a message this page sent another way (a file's upload answer) or that an
    /// event brought.
    pub fn add_message(&self, message: MessageView) {
        self.note_files(std::slice::from_ref(&message));
        let viewing =
            self.open_id_untracked().as_deref() == Some(&message.conversation_id) && self.looking();
        let mut unknown = false;
        self.conversations.update(|list| {
            unknown = chat_model::apply_new_message(list, &message, viewing) == ListUpdate::Unknown;
        });
        if unknown {
            self.refresh_conversations();
        }
        let id = message.conversation_id.clone();
        self.with_open(&id, |h| chat_model::merge_message(&mut h.messages, message));
    }

    /// One event from the node.
    pub fn on_event(&self, event: Event) {
        match event {
            Event::MessageNew { message } => {
                let incoming = !message.outgoing;
                let here = self.open_id_untracked().as_deref() == Some(&message.conversation_id);
                self.add_message(message);
                if incoming && here {
                    // Counted as unread by the node: tell it the user saw it.
                    self.mark_seen_now();
                }
            }
            Event::MessageStatus {
                conversation_id,
                message_id,
                status,
            } => {
                self.conversations.update(|list| {
                    chat_model::apply_status(list, &conversation_id, &message_id, status)
                });
                self.with_open(&conversation_id, |h| {
                    chat_model::set_status(&mut h.messages, &message_id, status);
                });
            }
            Event::ConversationRead { conversation_id } => {
                self.conversations
                    .update(|list| chat_model::apply_read(list, &conversation_id));
            }
            Event::PeerBlocked { peer_id } => {
                self.refresh_contacts();
                // Blocking fails the messages still queued for the peer, and the node
                // sends no `message.status` for them: fetch their new state.
                self.refresh_conversations();
                let dm = format!("dm:lan:{peer_id}");
                if self.open_id_untracked().as_deref() == Some(dm.as_str()) {
                    self.fetch_newest(dm);
                }
            }
            Event::PeerOnline { .. }
            | Event::PeerOffline { .. }
            | Event::PeerUpdated { .. }
            | Event::PeerUnblocked { .. }
            | Event::PeerKeyMismatch { .. }
            | Event::PeerRemoved { .. } => {
                self.refresh_contacts();
            }
            Event::Resync => self.resync(),
            // A group was created or renamed: its conversation's name changed.
            Event::GroupUpdated { group } => self.show_group(&group),
            Event::GroupAnnouncement { .. }
            | Event::GroupInvitation { .. }
            | Event::GroupInvitationClosed { .. } => {}
            Event::FileProgress { file } => self.show_file_status(file),
            Event::MeshState { .. } => {}
            Event::ConversationReceipt {
                conversation_id,
                order,
                ..
            } => self.on_receipt(&conversation_id, &order),
            // This user's own entry in Users shows it.
            Event::PresenceChanged { .. } => self.refresh_contacts(),
        }
    }

    /// The state of a file as the messages read from the node say (they are newer than
    /// what was known when they were fetched).
    fn note_files(&self, messages: &[MessageView]) {
        if messages.iter().all(|m| m.attachments.is_empty()) {
            return;
        }
        self.files.update(|files| {
            for a in messages.iter().flat_map(|m| &m.attachments) {
                files.insert(a.file_id.clone(), files_model::status_of(a));
            }
        });
    }

    /// A file's new state (its progress event, or its status fetched after a click):
    /// shown by its attachments, kept in the messages that carry it.
    pub fn show_file_status(&self, file: FileStatusView) {
        // Only what carries the file is touched (and so recomputed).
        self.history.maybe_update(|h| {
            h.as_mut()
                .is_some_and(|h| files_model::apply_file_status(&mut h.messages, &file))
        });
        self.conversations
            .maybe_update(|list| files_model::apply_file_status_to_list(list, &file));
        self.files.update(|files| {
            files.insert(file.file_id.clone(), file);
        });
    }

    /// The shown state of an attachment (tracked): its newest known status.
    pub fn file_status(&self, a: &api_types::AttachmentView) -> FileStatusView {
        self.files.with(|files| {
            files
                .get(&a.file_id)
                .cloned()
                .unwrap_or_else(|| files_model::status_of(a))
        })
    }

    /// Asks the node for a file's state now (after a click, before its event).
    pub fn refresh_file(&self, file_id: String) {
        let this = *self;
        spawn_local(async move {
            if let Ok(status) = this.client().file_status(&file_id).await {
                this.show_file_status(status);
            }
        });
    }

    /// A read receipt: a DM's messages up to the reader's position are read (shown at
    /// once); a group's "read by k of n" is the node's count, fetched again.
    fn on_receipt(&self, conversation_id: &str, order: &str) {
        if conversation_id.starts_with("dm:") {
            self.with_open(conversation_id, |h| {
                chat_model::mark_read_up_to(&mut h.messages, order);
            });
            self.conversations.update(|list| {
                for c in list.iter_mut().filter(|c| c.id == conversation_id) {
                    if let Some(last) = c.last_message.as_mut() {
                        chat_model::mark_read_up_to(std::slice::from_mut(last), order);
                    }
                }
            });
        } else if self.open_id_untracked().as_deref() == Some(conversation_id) {
            self.fetch_newest(conversation_id.to_string());
        }
    }

    /// A group's name in the conversation list, or its entry when the list does not
    /// hold it yet (just created here or by a member).
    pub fn show_group(&self, group: &GroupView) {
        let mut added = false;
        self.conversations.update(|list| {
            if !group_model::rename_conversation(list, group) {
                list.push(group_model::conversation_of(group));
                chat_model::sort_conversations(list);
                added = true;
            }
        });
        if added {
            // The node's own entry (last message, unread) replaces the stand-in.
            self.refresh_conversations();
        }
    }

    /// The open conversation got a message from someone while the user looks at it.
    fn mark_seen_now(&self) {
        let Some(id) = self.open_id_untracked() else {
            return;
        };
        if !self.looking() {
            // Counted as unread in the list and the title until the user looks.
            return;
        }
        let client = self.client();
        spawn_local(async move {
            let _ = client.mark_read(&id).await;
        });
    }
}

impl Chat {
    /// The user can see the open conversation: the messenger tab is shown, no search
    /// covers it, and the page is not in the background.
    fn looking(&self) -> bool {
        self.shown.get_untracked()
            && self.search.with_untracked(|q| q.trim().is_empty())
            && !page_hidden()
    }
}

/// The page is in a background tab or a minimised window.
pub fn page_hidden() -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .is_some_and(|d| d.hidden())
}
