//! The chat part of a node's local API, typed with the API's own types: contacts, DMs,
//! whole histories, delivery waits, transport counters, and a recorder for the event
//! WebSocket. Every wait is bounded; every list read pages through everything.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use api_types::{ContactView, Event, MessagePageView, MessageStatus, MessageView, Status};
use futures_util::{StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::{poll_until, wait_until, NodeProcess};

/// History is read in pages of this many messages (the API's cap).
const PAGE: usize = 500;
/// A history longer than this many pages is a bug in paging (or in the test).
const MAX_PAGES: usize = 200;
/// Between two reads of a (possibly long) history while waiting on it.
const HISTORY_POLL: Duration = Duration::from_millis(250);

/// The DM conversation with a peer.
pub fn dm(peer_id: &str) -> String {
    format!("dm:lan:{peer_id}")
}

/// The user id of a node.
pub fn user(node_id: &str) -> String {
    format!("lan:{node_id}")
}

/// GET and parse, failing on any non-2xx answer (with its body).
pub async fn get<T: DeserializeOwned>(node: &NodeProcess, path: &str) -> anyhow::Result<T> {
    let resp = node.get(path).await?;
    let status = resp.status();
    let body = resp.text().await?;
    ensure!(status.is_success(), "GET {path}: {status}: {body}");
    serde_json::from_str(&body).with_context(|| format!("GET {path}: unexpected body {body}"))
}

pub async fn status(node: &NodeProcess) -> anyhow::Result<Status> {
    get(node, "v1/status").await
}

/// The transport's counters (the mesh must be running).
pub async fn transport(node: &NodeProcess) -> anyhow::Result<api_types::TransportCounters> {
    status(node)
        .await?
        .transport
        .context("status has no transport counters: is the mesh running?")
}

pub async fn contacts(node: &NodeProcess) -> anyhow::Result<Vec<ContactView>> {
    get(node, "v1/contacts").await
}

/// Waits until `node` lists `peer_id` as a contact that is (or is not) online.
pub async fn wait_contact_online(
    node: &NodeProcess,
    peer_id: &str,
    online: bool,
    limit: Duration,
) -> anyhow::Result<()> {
    let what = format!("{peer_id} listed with online={online}");
    wait_until(limit, &what, || async {
        contacts(node)
            .await
            .ok()?
            .iter()
            .any(|c| c.peer_id == peer_id && c.online == online)
            .then_some(())
    })
    .await
}

/// Sends `text` to a conversation; the node must answer `201` with the stored message.
pub async fn send_dm(
    node: &NodeProcess,
    conversation: &str,
    text: &str,
) -> anyhow::Result<MessageView> {
    let path = format!("v1/conversations/{conversation}/messages");
    let resp = node
        .http()
        .post(node.api_url(&path))
        .bearer_auth(&node.token)
        .json(&api_types::SendMessage {
            text: text.to_string(),
        })
        .send()
        .await?;
    let status = resp.status();
    let body = resp.text().await?;
    ensure!(status.as_u16() == 201, "POST {path}: {status}: {body}");
    serde_json::from_str(&body).with_context(|| format!("POST {path}: unexpected body {body}"))
}

/// Sends every text, one after the other: the node accepts them in this order.
pub async fn send_in_order(
    node: &NodeProcess,
    conversation: &str,
    texts: &[String],
) -> anyhow::Result<Vec<MessageView>> {
    let mut sent = Vec::with_capacity(texts.len());
    for text in texts {
        sent.push(send_dm(node, conversation, text).await?);
    }
    Ok(sent)
}

/// Sends every text with at most `in_flight` requests open at once (the order in which
/// the node accepts them is then its own). Answers come back in the order of `texts`.
pub async fn send_concurrently(
    node: &NodeProcess,
    conversation: &str,
    texts: &[String],
    in_flight: usize,
) -> anyhow::Result<Vec<MessageView>> {
    futures_util::stream::iter(texts)
        .map(|text| send_dm(node, conversation, text))
        .buffered(in_flight.max(1))
        .try_collect()
        .await
}

/// The whole history of a conversation, oldest first, read page by page (`before`).
pub async fn history(node: &NodeProcess, conversation: &str) -> anyhow::Result<Vec<MessageView>> {
    let base = format!("v1/conversations/{conversation}/messages?limit={PAGE}");
    let mut pages: Vec<Vec<MessageView>> = Vec::new();
    let mut path = base.clone();
    for _ in 0..MAX_PAGES {
        let page: MessagePageView = get(node, &path).await?;
        pages.push(page.messages);
        match page.older {
            Some(older) => path = format!("{base}&before={older}"),
            None => return Ok(pages.into_iter().rev().flatten().collect()),
        }
    }
    bail!("{conversation} has more than {MAX_PAGES} pages of history")
}

/// Waits until the whole history satisfies `done`; returns that history.
pub async fn wait_history<F>(
    node: &NodeProcess,
    conversation: &str,
    limit: Duration,
    what: &str,
    done: F,
) -> anyhow::Result<Vec<MessageView>>
where
    F: Fn(&[MessageView]) -> bool,
{
    let last: RefCell<Vec<MessageView>> = RefCell::default();
    let waited = poll_until(limit, HISTORY_POLL, what, || {
        let (done, last) = (&done, &last);
        async move {
            let messages = history(node, conversation).await.ok()?;
            if done(&messages) {
                return Some(messages);
            }
            *last.borrow_mut() = messages;
            None
        }
    })
    .await;
    waited.with_context(|| format!("last history read: {}", summary(&last.borrow())))
}

/// Waits until every message in `ids` is in the history with status `delivered`.
pub async fn wait_all_delivered(
    node: &NodeProcess,
    conversation: &str,
    ids: &[String],
    limit: Duration,
) -> anyhow::Result<Vec<MessageView>> {
    let what = format!("{} messages delivered in {conversation}", ids.len());
    wait_history(node, conversation, limit, &what, |messages| {
        let delivered: HashSet<&str> = messages
            .iter()
            // Read (its receiver read it) is past delivered.
            .filter(|m| matches!(m.status, MessageStatus::Delivered | MessageStatus::Read))
            .map(|m| m.id.as_str())
            .collect();
        ids.iter().all(|id| delivered.contains(id.as_str()))
    })
    .await
}

/// Waits until the history holds at least `count` messages.
pub async fn wait_count(
    node: &NodeProcess,
    conversation: &str,
    count: usize,
    limit: Duration,
) -> anyhow::Result<Vec<MessageView>> {
    let what = format!("{count} messages in {conversation}");
    wait_history(node, conversation, limit, &what, |m| m.len() >= count).await
}

/// Message ids, in the order given.
pub fn ids(messages: &[MessageView]) -> Vec<String> {
    messages.iter().map(|m| m.id.clone()).collect()
}

/// Ids that occur more than once.
pub fn repeated_ids(messages: &[MessageView]) -> Vec<String> {
    let mut seen = HashSet::new();
    messages
        .iter()
        .filter(|m| !seen.insert(m.id.as_str()))
        .map(|m| m.id.clone())
        .collect()
}

/// How many messages have each status, e.g. `[delivered: 98, pending: 2]`.
pub fn status_counts(messages: &[MessageView]) -> Vec<(MessageStatus, usize)> {
    let all = [
        MessageStatus::Pending,
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Failed,
    ];
    all.into_iter()
        .map(|s| (s, messages.iter().filter(|m| m.status == s).count()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// A short description of a history for failure messages.
pub fn summary(messages: &[MessageView]) -> String {
    format!(
        "{} messages, {} distinct, statuses {:?}",
        messages.len(),
        messages.len() - repeated_ids(messages).len(),
        status_counts(messages)
    )
}

/// The rank of a status on its one-way road (`failed` is off the road).
pub fn status_rank(status: MessageStatus) -> u8 {
    match status {
        MessageStatus::Pending => 0,
        MessageStatus::Sent => 1,
        MessageStatus::Delivered => 2,
        MessageStatus::Failed => 3,
        // Past delivered: its reader has read it.
        MessageStatus::Read => 4,
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Default)]
struct Recorded {
    events: Vec<Event>,
    /// Frames that were not an event this API version defines.
    unparsed: Vec<String>,
    ended: Option<String>,
}

/// Records everything a node's event WebSocket pushes, from the moment it is opened,
/// in a task of its own (so the stream never falls behind while the test works).
pub struct EventRecorder {
    recorded: Arc<Mutex<Recorded>>,
    task: JoinHandle<()>,
}

impl EventRecorder {
    /// Opens `GET /api/v1/events` with the token as a subprotocol (as the UI does).
    pub async fn start(node: &NodeProcess) -> anyhow::Result<EventRecorder> {
        let url = format!("{}api/v1/events", node.url.replacen("http://", "ws://", 1));
        let mut request = url.into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            format!("lanchat.v1, lanchat.bearer.{}", node.token).parse()?,
        );
        let (socket, _) = tokio_tungstenite::connect_async(request).await?;
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let task = tokio::spawn(record(socket, Arc::clone(&recorded)));
        Ok(EventRecorder { recorded, task })
    }

    fn lock(&self) -> MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything recorded so far, in arrival order.
    pub fn events(&self) -> Vec<Event> {
        self.lock().events.clone()
    }

    /// Frames that did not parse as an [`Event`].
    pub fn unparsed(&self) -> Vec<String> {
        self.lock().unparsed.clone()
    }

    /// Waits until `check` finds what it wants in the events recorded so far.
    pub async fn wait_for<T, F>(&self, limit: Duration, what: &str, check: F) -> anyhow::Result<T>
    where
        F: Fn(&[Event]) -> Option<T>,
    {
        let waited = wait_until(limit, what, || {
            let found = check(&self.lock().events);
            async move { found }
        })
        .await;
        let ended = self.lock().ended.clone();
        waited.with_context(|| format!("event stream ended: {ended:?}"))
    }

    /// `message.new` events, in arrival order.
    pub fn new_messages(&self) -> Vec<MessageView> {
        new_messages(&self.lock().events)
    }

    /// Every `message.status` event's status, per message id, in arrival order.
    pub fn statuses(&self) -> HashMap<String, Vec<MessageStatus>> {
        statuses(&self.lock().events)
    }
}

impl Drop for EventRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `message.new` events, in arrival order.
pub fn new_messages(events: &[Event]) -> Vec<MessageView> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::MessageNew { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// Every `message.status` event's status, per message id, in arrival order.
pub fn statuses(events: &[Event]) -> HashMap<String, Vec<MessageStatus>> {
    let mut by_id: HashMap<String, Vec<MessageStatus>> = HashMap::new();
    for event in events {
        if let Event::MessageStatus {
            message_id, status, ..
        } = event
        {
            by_id.entry(message_id.clone()).or_default().push(*status);
        }
    }
    by_id
}

async fn record(mut socket: Socket, recorded: Arc<Mutex<Recorded>>) {
    let lock = || recorded.lock().unwrap_or_else(|p| p.into_inner());
    let ended = loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<Event>(&text) {
                Ok(event) => lock().events.push(event),
                Err(_) => lock().unparsed.push(text.to_string()),
            },
            Some(Ok(_)) => {}
            Some(Err(e)) => break e.to_string(),
            None => break "closed".to_string(),
        }
    };
    lock().ended = Some(ended);
}

/// The group conversation of a global group id.
pub fn group_conversation(group_id: &str) -> String {
    format!("group:{group_id}")
}

/// A request with a JSON body; the node must answer `expected` with a `T`.
async fn send_json<T: DeserializeOwned>(
    node: &NodeProcess,
    method: reqwest::Method,
    path: &str,
    body: &serde_json::Value,
    expected: u16,
) -> anyhow::Result<T> {
    let resp = node
        .http()
        .request(method.clone(), node.api_url(path))
        .bearer_auth(&node.token)
        .json(body)
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await?;
    ensure!(
        status.as_u16() == expected,
        "{method} {path}: {status}: {text}"
    );
    serde_json::from_str(&text).with_context(|| format!("{method} {path}: unexpected body {text}"))
}

/// `POST /api/v1/groups` → `201` and the group.
pub async fn create_group(
    node: &NodeProcess,
    name: &str,
    members: &[&str],
) -> anyhow::Result<api_types::GroupView> {
    let body = serde_json::json!({"name": name, "members": members});
    send_json(node, reqwest::Method::POST, "v1/groups", &body, 201).await
}

/// `PUT /api/v1/groups/{id}` with a partial change → `200` and the new state.
pub async fn update_group(
    node: &NodeProcess,
    group_id: &str,
    change: &serde_json::Value,
) -> anyhow::Result<api_types::GroupView> {
    let path = format!("v1/groups/{group_id}");
    send_json(node, reqwest::Method::PUT, &path, change, 200).await
}

/// `POST` with an empty body to a group action (`v1/groups/{id}/leave`, …) → the
/// answer's status and body.
pub async fn post_action(
    node: &NodeProcess,
    path: &str,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let resp = node
        .http()
        .post(node.api_url(path))
        .bearer_auth(&node.token)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    ))
}

/// A request that must be refused: its status and error body.
pub async fn refused(
    node: &NodeProcess,
    method: reqwest::Method,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(u16, api_types::ApiErrorBody)> {
    let resp = node
        .http()
        .request(method, node.api_url(path))
        .bearer_auth(&node.token)
        .json(body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    let body = serde_json::from_str(&text).with_context(|| format!("{path}: {status}: {text}"))?;
    Ok((status, body))
}

/// `GET /api/v1/groups`.
pub async fn groups(node: &NodeProcess) -> anyhow::Result<Vec<api_types::GroupView>> {
    get(node, "v1/groups").await
}

/// Waits until `node` holds the group and `done` says its state is the expected one.
pub async fn wait_group<F>(
    node: &NodeProcess,
    group_id: &str,
    limit: Duration,
    what: &str,
    done: F,
) -> anyhow::Result<api_types::GroupView>
where
    F: Fn(&api_types::GroupView) -> bool,
{
    wait_until(limit, what, || async {
        let group: api_types::GroupView = get(node, &format!("v1/groups/{group_id}")).await.ok()?;
        done(&group).then_some(group)
    })
    .await
}

/// Whether two nodes show a group alike: id, name, owner, announcement, members,
/// revision and its editor, dissolved.
pub fn same_group_state(a: &api_types::GroupView, b: &api_types::GroupView) -> bool {
    let members = |g: &api_types::GroupView| -> Vec<String> {
        g.members.iter().map(|m| m.peer_id.clone()).collect()
    };
    a.id == b.id
        && a.name == b.name
        && a.owner == b.owner
        && a.announcement == b.announcement
        && members(a) == members(b)
        && a.revision == b.revision
        && a.revision_editor == b.revision_editor
        && a.dissolved == b.dissolved
}

/// Waits until every node of the mesh lists every other one online.
pub async fn all_online(mesh: &crate::LoopbackMesh, limit: Duration) -> anyhow::Result<()> {
    for (i, node) in mesh.nodes.iter().enumerate() {
        for (j, other) in mesh.ids.iter().enumerate() {
            if i != j {
                wait_contact_online(node, other, true, limit).await?;
            }
        }
    }
    Ok(())
}

/// The shared secret of [`three_group_nodes`].
pub const GROUP_NODES_SECRET: &str = "office-group-nodes";

/// Three nodes (alpha, bravo, charlie) that probe each other, with a short outbox
/// backoff; data directories and logs under `target/test-artifacts/<artifacts>`.
pub async fn three_group_nodes(artifacts: &str) -> anyhow::Result<crate::LoopbackMesh> {
    crate::LoopbackMesh::start(
        artifacts,
        &["alpha", "bravo", "charlie"],
        GROUP_NODES_SECRET,
        &[
            ("LANCHAT_RETRY_FIRST_MS", "200"),
            ("LANCHAT_RETRY_MAX_MS", "1000"),
        ],
    )
    .await
}
