//! The settings document: `{ "lan_mesh": {...}, "ui": {...} }`.
//!
//! One code path builds a valid `Settings` from JSON, whether the JSON is the settings
//! file read at start or the body of `PUT /api/v1/settings`: start from a base, apply the
//! given keys one by one (each parsed and checked on its own, so an error names its
//! field), then check the rules that span fields. A document that passes is normalised
//! (subnets to network addresses, lists sorted and de-duplicated).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::cidr::{self, Cidr};
use crate::error::FieldError;
use crate::node_id::NodeId;

pub const DEFAULT_LISTEN_PORT: u16 = 19123;
pub const DEFAULT_DISCOVERY_PORT: u16 = 19124;
/// Often enough that a peer that vanished without `goodbye` is noticed within a minute,
/// rarely enough that an idle office LAN sees about one small packet per node per 15 s.
pub const DEFAULT_HEARTBEAT_SEC: u32 = 15;
/// Three heartbeats: one or two lost broadcasts never flap a peer offline.
pub const DEFAULT_PEER_TTL_SEC: u32 = 3 * DEFAULT_HEARTBEAT_SEC;
pub const MAX_HEARTBEAT_SEC: u32 = 3600;
pub const MAX_PEER_TTL_SEC: u32 = 86_400;
pub use crate::limits::MAX_DISPLAY_NAME_CHARS;
pub const MAX_SECRET_BYTES: usize = 256;
/// The shortest shared secret the API accepts (characters). Shorter ones already in a
/// settings file still load, with a `weak_secret` status warning.
pub const MIN_SECRET_CHARS: usize = 12;
pub const MAX_SUBNETS: usize = 256;
pub const MAX_BLOCKED_PEERS: usize = 10_000;
pub const MAX_PEER_ADDRESSES: usize = 256;
pub const MAX_MUTED_CONVERSATIONS: usize = 10_000;
/// Ten minutes without input: long enough for reading or a phone call at the desk,
/// short enough that colleagues see a lunch break.
pub const DEFAULT_AUTO_AWAY_MINUTES: u32 = 10;
/// A working day.
pub const MAX_AUTO_AWAY_MINUTES: u32 = 24 * 60;
/// `group:` plus a ULID, or `dm:lan:` plus a node id, with room to spare.
const MAX_CONVERSATION_ID_BYTES: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub lan_mesh: LanMeshSettings,
    pub ui: UiSettings,
    pub desktop: DesktopSettings,
    #[serde(default)]
    pub files: FileSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LanMeshSettings {
    pub enabled: bool,
    pub node_id: NodeId,
    pub display_name: String,
    pub listen_host: IpAddr,
    pub listen_port: u16,
    pub discovery_port: u16,
    pub heartbeat_interval_sec: u32,
    pub peer_ttl_sec: u32,
    pub allowed_subnets: Vec<Cidr>,
    pub blocked_subnets: Vec<Cidr>,
    pub blocked_peers: Vec<NodeId>,
    /// Never shown by the API (`secret_set` instead). Empty only with `open_lan`
    /// (or while the mesh is off).
    pub shared_secret: String,
    /// The explicit open LAN mode: no shared secret, anyone on the allowed subnets can
    /// join. Required for an empty secret while the mesh is on; contradicts a secret.
    pub open_lan: bool,
    pub auto_accept_group_sync: bool,
    /// Manually added discovery addresses (`ip:port`) of peers in routed subnets that
    /// broadcast cannot reach; each gets a unicast probe every heartbeat.
    pub peer_addresses: Vec<SocketAddr>,
}

impl LanMeshSettings {
    /// A secret shorter than the API accepts (one from a settings file or preseed).
    pub fn secret_is_weak(&self) -> bool {
        !self.shared_secret.is_empty() && self.shared_secret.chars().count() < MIN_SECRET_CHARS
    }
}

/// What `GET` and `PUT /api/v1/settings` answer: the settings without the shared
/// secret, which never leaves the node (`lan_mesh.secret_set` says whether there is one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsView {
    pub lan_mesh: LanMeshView,
    pub ui: UiSettings,
    pub desktop: DesktopSettings,
    #[serde(default)]
    pub files: FileSettings,
}

/// [`LanMeshSettings`] as the API shows it: `secret_set` in place of `shared_secret`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LanMeshView {
    pub enabled: bool,
    pub node_id: NodeId,
    pub display_name: String,
    pub listen_host: IpAddr,
    pub listen_port: u16,
    pub discovery_port: u16,
    pub heartbeat_interval_sec: u32,
    pub peer_ttl_sec: u32,
    pub allowed_subnets: Vec<Cidr>,
    pub blocked_subnets: Vec<Cidr>,
    pub blocked_peers: Vec<NodeId>,
    /// Whether a shared secret is set (the secret itself is never returned).
    pub secret_set: bool,
    pub open_lan: bool,
    pub auto_accept_group_sync: bool,
    pub peer_addresses: Vec<SocketAddr>,
}

/// `POST /api/v1/settings/secret`: a strong secret for the user to save (nothing is
/// saved by asking): four groups of five Crockford base32 characters, 100 random bits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratedSecret {
    pub secret: String,
}

impl From<&Settings> for SettingsView {
    fn from(s: &Settings) -> Self {
        let m = &s.lan_mesh;
        SettingsView {
            lan_mesh: LanMeshView {
                enabled: m.enabled,
                node_id: m.node_id.clone(),
                display_name: m.display_name.clone(),
                listen_host: m.listen_host,
                listen_port: m.listen_port,
                discovery_port: m.discovery_port,
                heartbeat_interval_sec: m.heartbeat_interval_sec,
                peer_ttl_sec: m.peer_ttl_sec,
                allowed_subnets: m.allowed_subnets.clone(),
                blocked_subnets: m.blocked_subnets.clone(),
                blocked_peers: m.blocked_peers.clone(),
                secret_set: !m.shared_secret.is_empty(),
                open_lan: m.open_lan,
                auto_accept_group_sync: m.auto_accept_group_sync,
                peer_addresses: m.peer_addresses.clone(),
            },
            ui: s.ui.clone(),
            desktop: s.desktop.clone(),
            files: s.files.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiSettings {
    /// `null` follows the system (browser) language.
    pub language: Option<Language>,
    /// The first-start welcome (name, office secret or open LAN) was answered. A new
    /// settings file starts with `false`; a file written before this field existed
    /// reads as `true`, so an upgrade never greets a user who is already set up.
    pub welcome_done: bool,
}

/// The desktop shell: notifications, the tray and starting with the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesktopSettings {
    /// Desktop notifications for messages that arrive while the window is hidden or
    /// not focused.
    pub notifications: bool,
    /// Show the sender's text in a notification; off shows only who wrote.
    pub notification_previews: bool,
    /// Ask the notification service to play its message sound.
    pub notification_sound: bool,
    /// No notifications at all (the tray's "mute all").
    pub do_not_disturb: bool,
    /// Conversations (`dm:lan:{peer}` or `group:{id}`) that never notify, except a group
    /// message that mentions this user.
    pub muted_conversations: Vec<String>,
    /// Closing the window hides it to the tray; quitting is in the tray menu.
    pub close_to_tray: bool,
    /// Start lanchat (hidden in the tray) when the user logs in (XDG autostart).
    pub autostart: bool,
    /// Minutes without input in the window before presence turns `away` by itself
    /// (back to `online` at the next input); 0 = never.
    pub auto_away_minutes: u32,
    /// Tell senders when their DMs and group messages were read here. Off: no
    /// receipts leave this node (others' receipts are still shown).
    pub send_read_receipts: bool,
}

impl Default for DesktopSettings {
    fn default() -> Self {
        DesktopSettings {
            notifications: true,
            notification_previews: true,
            notification_sound: true,
            do_not_disturb: false,
            muted_conversations: Vec::new(),
            close_to_tray: true,
            autostart: false,
            auto_away_minutes: DEFAULT_AUTO_AWAY_MINUTES,
            send_read_receipts: true,
        }
    }
}

impl DesktopSettings {
    pub fn is_muted(&self, conversation_id: &str) -> bool {
        self.muted_conversations
            .iter()
            .any(|c| c == conversation_id)
    }

    fn apply(&mut self, fields: &Map<String, Value>) -> Result<(), FieldError> {
        for (key, value) in fields {
            let path = format!("desktop.{key}");
            let path = path.as_str();
            match key.as_str() {
                "notifications" => self.notifications = parse_field(path, value)?,
                "notification_previews" => self.notification_previews = parse_field(path, value)?,
                "notification_sound" => self.notification_sound = parse_field(path, value)?,
                "do_not_disturb" => self.do_not_disturb = parse_field(path, value)?,
                "muted_conversations" => self.muted_conversations = conversation_ids(path, value)?,
                "close_to_tray" => self.close_to_tray = parse_field(path, value)?,
                "autostart" => self.autostart = parse_field(path, value)?,
                "auto_away_minutes" => {
                    self.auto_away_minutes = match value.as_u64() {
                        Some(m) if m <= u64::from(MAX_AUTO_AWAY_MINUTES) => m as u32,
                        _ => {
                            return Err(FieldError::new(
                                path,
                                format!(
                                    "must be minutes from 0 (never) to {MAX_AUTO_AWAY_MINUTES}"
                                ),
                            ))
                        }
                    }
                }
                "send_read_receipts" => self.send_read_receipts = parse_field(path, value)?,
                _ => return Err(FieldError::new(path, "unknown setting")),
            }
        }
        Ok(())
    }
}

/// Received files (issue 17).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSettings {
    /// Files up to this size (bytes) are downloaded as soon as their message arrives;
    /// larger ones wait for a click. 0 = never download by itself.
    pub auto_download_max_bytes: u64,
}

/// The default auto-download size: 20 MB, a screenshot or an office document, not a
/// video.
pub const DEFAULT_AUTO_DOWNLOAD_MAX_BYTES: u64 = 20 * 1000 * 1000;
/// The largest auto-download size the settings accept: the largest file (64 GiB).
pub const MAX_AUTO_DOWNLOAD_BYTES: u64 = 64 << 30;

impl Default for FileSettings {
    fn default() -> Self {
        FileSettings {
            auto_download_max_bytes: DEFAULT_AUTO_DOWNLOAD_MAX_BYTES,
        }
    }
}

impl FileSettings {
    fn apply(&mut self, fields: &Map<String, Value>) -> Result<(), FieldError> {
        for (key, value) in fields {
            let path = format!("files.{key}");
            match key.as_str() {
                "auto_download_max_bytes" => {
                    self.auto_download_max_bytes = match value.as_u64() {
                        Some(b) if b <= MAX_AUTO_DOWNLOAD_BYTES => b,
                        _ => {
                            return Err(FieldError::new(
                                path,
                                format!(
                                    "must be bytes from 0 (never) to {MAX_AUTO_DOWNLOAD_BYTES}"
                                ),
                            ))
                        }
                    }
                }
                _ => return Err(FieldError::new(path, "unknown setting")),
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Language {
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en-US")]
    EnUs,
}

impl Language {
    pub const ALL: [Language; 2] = [Language::ZhCn, Language::EnUs];

    pub fn tag(self) -> &'static str {
        match self {
            Language::ZhCn => "zh-CN",
            Language::EnUs => "en-US",
        }
    }

    /// Best match for a BCP 47 tag such as a browser's `navigator.language`.
    pub fn from_tag(tag: &str) -> Option<Language> {
        let primary = tag.split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "zh" => Some(Language::ZhCn),
            "en" => Some(Language::EnUs),
            _ => None,
        }
    }
}

impl LanMeshSettings {
    pub fn defaults(node_id: NodeId) -> Self {
        LanMeshSettings {
            enabled: false,
            node_id,
            display_name: String::new(),
            listen_host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            listen_port: DEFAULT_LISTEN_PORT,
            discovery_port: DEFAULT_DISCOVERY_PORT,
            heartbeat_interval_sec: DEFAULT_HEARTBEAT_SEC,
            peer_ttl_sec: DEFAULT_PEER_TTL_SEC,
            allowed_subnets: Vec::new(),
            blocked_subnets: Vec::new(),
            blocked_peers: Vec::new(),
            shared_secret: String::new(),
            open_lan: false,
            auto_accept_group_sync: true,
            peer_addresses: Vec::new(),
        }
    }
}

/// Whether a document may set `lan_mesh.node_id`: the settings file does (it is where
/// the id lives); an API client may only repeat the current value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeIdRule {
    Settable,
    ReadOnly,
}

/// Where a settings document comes from, which decides the rules that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The settings file or an administrator's preseed: a short secret loads (with a
    /// status warning), and a `lan_mesh` block without `open_lan` (written before the
    /// field existed) is open LAN exactly when the mesh is on with an empty secret, as
    /// it ran before.
    File,
    /// `PUT /api/v1/settings`: a new secret must have [`MIN_SECRET_CHARS`], and
    /// setting one (without saying `open_lan`) leaves the open LAN.
    Api,
}

impl Settings {
    pub fn defaults(node_id: NodeId) -> Self {
        Settings {
            lan_mesh: LanMeshSettings::defaults(node_id),
            ui: UiSettings::default(),
            desktop: DesktopSettings::default(),
            files: FileSettings::default(),
        }
    }

    /// Reads a whole settings document (the settings file). Missing keys take their
    /// defaults, so files written by older versions stay valid; `lan_mesh.node_id` is
    /// required because a node's identity must never change silently.
    pub fn from_document(doc: &Value) -> Result<Settings, FieldError> {
        let node_id = doc
            .get("lan_mesh")
            .and_then(|m| m.get("node_id"))
            .ok_or_else(|| FieldError::new("lan_mesh.node_id", "missing"))?;
        let node_id: NodeId = parse_field("lan_mesh.node_id", node_id)?;
        let mut base = Settings::defaults(node_id);
        // A file without the key predates the welcome: that user is already set up.
        base.ui.welcome_done = true;
        base.apply_document(doc, NodeIdRule::Settable, Origin::File)
    }

    /// Settings for a first start: defaults with an administrator's preseed document
    /// (the same shape as `PUT /api/v1/settings`, usually without a node id) applied.
    /// Like the settings file, a preseed may hold a short secret (with a warning) and
    /// an empty secret with the mesh on means the open LAN.
    pub fn preseeded(node_id: NodeId, preseed: &Value) -> Result<Settings, FieldError> {
        Settings::defaults(node_id).apply_document(preseed, NodeIdRule::ReadOnly, Origin::File)
    }

    /// Applies a partial document from an API client (`PUT /api/v1/settings`): only the
    /// keys present change; a new secret must be strong enough.
    pub fn patched(&self, patch: &Value, node_id: NodeIdRule) -> Result<Settings, FieldError> {
        self.apply_document(patch, node_id, Origin::Api)
    }

    fn apply_document(
        &self,
        patch: &Value,
        node_id: NodeIdRule,
        origin: Origin,
    ) -> Result<Settings, FieldError> {
        let mut next = self.clone();
        for (key, value) in as_object("", patch)? {
            match key.as_str() {
                "lan_mesh" => {
                    let fields = as_object("lan_mesh", value)?;
                    next.lan_mesh.apply(fields, node_id)?;
                    next.lan_mesh.settle_access(fields, origin)?;
                }
                "ui" => next.ui.apply(as_object("ui", value)?)?,
                "desktop" => next.desktop.apply(as_object("desktop", value)?)?,
                "files" => next.files.apply(as_object("files", value)?)?,
                other => return Err(FieldError::new(other, "unknown setting")),
            }
        }
        next.lan_mesh.check_across_fields()?;
        Ok(next)
    }
}

impl UiSettings {
    fn apply(&mut self, fields: &Map<String, Value>) -> Result<(), FieldError> {
        for (key, value) in fields {
            let path = format!("ui.{key}");
            match key.as_str() {
                "language" => self.language = parse_field(&path, value)?,
                "welcome_done" => self.welcome_done = parse_field(&path, value)?,
                _ => return Err(FieldError::new(path, "unknown setting")),
            }
        }
        Ok(())
    }
}

impl LanMeshSettings {
    fn apply(&mut self, fields: &Map<String, Value>, rule: NodeIdRule) -> Result<(), FieldError> {
        for (key, value) in fields {
            let path = format!("lan_mesh.{key}");
            let path = path.as_str();
            match key.as_str() {
                "enabled" => self.enabled = parse_field(path, value)?,
                "node_id" => {
                    let id: NodeId = parse_field(path, value)?;
                    if rule == NodeIdRule::ReadOnly && id != self.node_id {
                        return Err(FieldError::new(path, "is read-only"));
                    }
                    self.node_id = id;
                }
                "display_name" => self.display_name = display_name(path, value)?,
                "listen_host" => self.listen_host = parse_field(path, value)?,
                "listen_port" => self.listen_port = port(path, value)?,
                "discovery_port" => self.discovery_port = port(path, value)?,
                "heartbeat_interval_sec" => {
                    self.heartbeat_interval_sec = seconds(path, value, MAX_HEARTBEAT_SEC)?
                }
                "peer_ttl_sec" => self.peer_ttl_sec = seconds(path, value, MAX_PEER_TTL_SEC)?,
                "allowed_subnets" => self.allowed_subnets = subnets(path, value)?,
                "blocked_subnets" => self.blocked_subnets = subnets(path, value)?,
                "blocked_peers" => self.blocked_peers = node_ids(path, value)?,
                "shared_secret" => self.shared_secret = secret(path, value)?,
                "open_lan" => self.open_lan = parse_field(path, value)?,
                "peer_addresses" => self.peer_addresses = socket_addrs(path, value)?,
                "auto_accept_group_sync" => self.auto_accept_group_sync = parse_field(path, value)?,
                _ => return Err(FieldError::new(path, "unknown setting")),
            }
        }
        Ok(())
    }

    /// The rules of `shared_secret` and `open_lan` that depend on where the document
    /// comes from (see [`Origin`]), after its keys were applied.
    fn settle_access(
        &mut self,
        fields: &Map<String, Value>,
        origin: Origin,
    ) -> Result<(), FieldError> {
        let says_open = fields.contains_key("open_lan");
        match origin {
            Origin::File => {
                if !says_open {
                    self.open_lan = self.enabled && self.shared_secret.is_empty();
                }
            }
            Origin::Api => {
                if fields.contains_key("shared_secret") && !self.shared_secret.is_empty() {
                    if self.shared_secret.chars().count() < MIN_SECRET_CHARS {
                        return Err(FieldError::new(
                            "lan_mesh.shared_secret",
                            format!(
                                "must be at least {MIN_SECRET_CHARS} characters (or empty with \
                                 open_lan for an open LAN); \
                                 POST /api/v1/settings/secret generates a strong one"
                            ),
                        ));
                    }
                    if !says_open {
                        self.open_lan = false;
                    }
                }
            }
        }
        Ok(())
    }

    fn check_across_fields(&self) -> Result<(), FieldError> {
        if self.open_lan && !self.shared_secret.is_empty() {
            return Err(FieldError::new(
                "lan_mesh.open_lan",
                "the open LAN has no secret: send an empty shared_secret with it, or \
                 set open_lan to false",
            ));
        }
        if self.enabled && self.shared_secret.is_empty() && !self.open_lan {
            return Err(FieldError::new(
                "lan_mesh.shared_secret",
                format!(
                    "is needed while the LAN mesh is on: set one of at least \
                     {MIN_SECRET_CHARS} characters, or choose the open LAN explicitly \
                     (open_lan: true)"
                ),
            ));
        }
        if self.peer_ttl_sec <= self.heartbeat_interval_sec {
            return Err(FieldError::new(
                "lan_mesh.peer_ttl_sec",
                format!(
                    "must be longer than the heartbeat interval ({} s)",
                    self.heartbeat_interval_sec
                ),
            ));
        }
        Ok(())
    }
}

fn as_object<'a>(path: &str, v: &'a Value) -> Result<&'a Map<String, Value>, FieldError> {
    v.as_object().ok_or_else(|| {
        let name = if path.is_empty() { "settings" } else { path };
        FieldError::new(name, "must be a JSON object")
    })
}

fn parse_field<T: DeserializeOwned>(path: &str, v: &Value) -> Result<T, FieldError> {
    T::deserialize(v).map_err(|e| FieldError::new(path, e.to_string()))
}

fn port(path: &str, v: &Value) -> Result<u16, FieldError> {
    match v.as_u64() {
        Some(p @ 1..=65535) => Ok(p as u16),
        _ => Err(FieldError::new(
            path,
            "must be a port number from 1 to 65535",
        )),
    }
}

fn seconds(path: &str, v: &Value, max: u32) -> Result<u32, FieldError> {
    match v.as_u64() {
        Some(s) if s >= 1 && s <= u64::from(max) => Ok(s as u32),
        _ => Err(FieldError::new(
            path,
            format!("must be a whole number of seconds from 1 to {max}"),
        )),
    }
}

fn display_name(path: &str, v: &Value) -> Result<String, FieldError> {
    let name: String = parse_field(path, v)?;
    crate::limits::check_display_name(&name)
        .map(str::to_string)
        .map_err(|e| FieldError::new(path, e.to_string()))
}

fn secret(path: &str, v: &Value) -> Result<String, FieldError> {
    let secret: String = parse_field(path, v)?;
    if secret.len() > MAX_SECRET_BYTES {
        return Err(FieldError::new(
            path,
            format!("must be at most {MAX_SECRET_BYTES} bytes"),
        ));
    }
    if secret.chars().any(char::is_control) {
        return Err(FieldError::new(path, "must not contain control characters"));
    }
    Ok(secret)
}

fn subnets(path: &str, v: &Value) -> Result<Vec<Cidr>, FieldError> {
    let items: Vec<String> = parse_field(path, v)?;
    if items.len() > MAX_SUBNETS {
        return Err(FieldError::new(
            path,
            format!("at most {MAX_SUBNETS} subnets"),
        ));
    }
    cidr::normalise_list(&items)
        .map_err(|(i, e)| FieldError::new(path, format!("entry {} ('{}'): {e}", i + 1, items[i])))
}

/// Parses one manually entered peer address (`ip:port`, port not 0).
pub fn peer_address(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not an ip:port address"))?;
    if addr.port() == 0 {
        return Err(format!("'{text}' has no port"));
    }
    Ok(addr)
}

fn socket_addrs(path: &str, v: &Value) -> Result<Vec<SocketAddr>, FieldError> {
    let items: Vec<String> = parse_field(path, v)?;
    if items.len() > MAX_PEER_ADDRESSES {
        return Err(FieldError::new(
            path,
            format!("at most {MAX_PEER_ADDRESSES} addresses"),
        ));
    }
    let mut addrs = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let addr = peer_address(item)
            .map_err(|e| FieldError::new(path, format!("entry {}: {e}", i + 1)))?;
        addrs.push(addr);
    }
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

fn conversation_ids(path: &str, v: &Value) -> Result<Vec<String>, FieldError> {
    let items: Vec<String> = parse_field(path, v)?;
    if items.len() > MAX_MUTED_CONVERSATIONS {
        return Err(FieldError::new(
            path,
            format!("at most {MAX_MUTED_CONVERSATIONS} entries"),
        ));
    }
    for (i, item) in items.iter().enumerate() {
        let shaped = (item.starts_with("dm:lan:") || item.starts_with("group:"))
            && item.len() <= MAX_CONVERSATION_ID_BYTES
            && item.chars().all(|c| c.is_ascii_graphic());
        if !shaped {
            return Err(FieldError::new(
                path,
                format!(
                    "entry {} ('{item}') is not a conversation id (dm:lan:{{peer_id}} or group:{{group_id}})",
                    i + 1
                ),
            ));
        }
    }
    let mut ids = items;
    ids.sort();
    ids.dedup();
    Ok(ids)
}

fn node_ids(path: &str, v: &Value) -> Result<Vec<NodeId>, FieldError> {
    let items: Vec<String> = parse_field(path, v)?;
    if items.len() > MAX_BLOCKED_PEERS {
        return Err(FieldError::new(
            path,
            format!("at most {MAX_BLOCKED_PEERS} entries"),
        ));
    }
    let mut ids = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let id = item
            .parse::<NodeId>()
            .map_err(|e| FieldError::new(path, format!("entry {} ('{item}'): {e}", i + 1)))?;
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node_id() -> NodeId {
        "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap()
    }

    fn base() -> Settings {
        Settings::defaults(node_id())
    }

    fn put(patch: Value) -> Result<Settings, FieldError> {
        base().patched(&patch, NodeIdRule::ReadOnly)
    }

    #[test]
    fn defaults_match_the_design() {
        let doc = serde_json::to_value(base()).unwrap();
        assert_eq!(
            doc["lan_mesh"],
            json!({ "enabled": false, "node_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
              "display_name": "", "listen_host": "0.0.0.0", "listen_port": 19123,
              "discovery_port": 19124, "heartbeat_interval_sec": 15, "peer_ttl_sec": 45,
              "allowed_subnets": [], "blocked_subnets": [], "blocked_peers": [],
              "shared_secret": "", "open_lan": false, "auto_accept_group_sync": true,
              "peer_addresses": [] })
        );
    }

    #[test]
    fn the_view_is_the_document_without_the_secret() {
        let mut s = put(json!({"lan_mesh": {"enabled": true,
            "shared_secret": "correct horse battery", "allowed_subnets": ["10.1.2.3"]}}))
        .unwrap();
        let mut expected = serde_json::to_value(&s).unwrap();
        let view = serde_json::to_value(SettingsView::from(&s)).unwrap();
        assert!(!view.to_string().contains("correct horse"));
        let block = expected["lan_mesh"].as_object_mut().unwrap();
        block.remove("shared_secret");
        block.insert("secret_set".into(), json!(true));
        assert_eq!(view, expected, "a field is missing from the view");
        s.lan_mesh.shared_secret.clear();
        assert!(!SettingsView::from(&s).lan_mesh.secret_set);
    }

    #[test]
    fn a_new_secret_needs_twelve_characters() {
        for weak in ["office", "elevenchars", "短い秘密短い秘密短い秘"] {
            let e = put(json!({"lan_mesh": {"shared_secret": weak}})).unwrap_err();
            assert_eq!(e.field, "lan_mesh.shared_secret", "{weak}");
            assert!(e.message.contains("12 characters"), "{}", e.message);
        }
        // Characters, not bytes: twelve CJK characters are enough.
        let s = put(json!({"lan_mesh": {"shared_secret": "办公室的秘密办公室的秘密"}})).unwrap();
        assert!(!s.lan_mesh.secret_is_weak());
        assert!(put(json!({"lan_mesh": {"shared_secret": "twelve chars"}})).is_ok());
    }

    #[test]
    fn an_empty_secret_is_an_explicit_open_lan() {
        // The mesh on without a secret needs the open LAN said out loud.
        let e = put(json!({"lan_mesh": {"enabled": true}})).unwrap_err();
        assert_eq!(e.field, "lan_mesh.shared_secret");
        let e = put(json!({"lan_mesh": {"enabled": true, "shared_secret": ""}})).unwrap_err();
        assert_eq!(e.field, "lan_mesh.shared_secret");
        let open = put(json!({"lan_mesh": {"enabled": true, "open_lan": true}})).unwrap();
        assert!(open.lan_mesh.open_lan && open.lan_mesh.shared_secret.is_empty());
        // A secret with the open LAN is a contradiction, whichever came first.
        let e = open
            .patched(
                &json!({"lan_mesh": {"shared_secret": "a strong secret", "open_lan": true}}),
                NodeIdRule::ReadOnly,
            )
            .unwrap_err();
        assert_eq!(e.field, "lan_mesh.open_lan");
        let closed = open
            .patched(
                &json!({"lan_mesh": {"shared_secret": "a strong secret"}}),
                NodeIdRule::ReadOnly,
            )
            .unwrap();
        assert!(
            !closed.lan_mesh.open_lan,
            "choosing a secret leaves the open LAN"
        );
        let e = closed
            .patched(
                &json!({"lan_mesh": {"open_lan": true}}),
                NodeIdRule::ReadOnly,
            )
            .unwrap_err();
        assert_eq!(e.field, "lan_mesh.open_lan");
        let reopened = closed
            .patched(
                &json!({"lan_mesh": {"open_lan": true, "shared_secret": ""}}),
                NodeIdRule::ReadOnly,
            )
            .unwrap();
        assert!(reopened.lan_mesh.open_lan);
        // A patch that does not mention the secret keeps it.
        let renamed = closed
            .patched(
                &json!({"lan_mesh": {"display_name": "Li"}}),
                NodeIdRule::ReadOnly,
            )
            .unwrap();
        assert_eq!(renamed.lan_mesh.shared_secret, "a strong secret");
        // The mesh off needs neither.
        assert!(put(json!({"lan_mesh": {"enabled": false, "shared_secret": ""}})).is_ok());
    }

    #[test]
    fn files_and_preseeds_of_before_keep_working() {
        let id = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
        // Written before `open_lan` existed: the mesh ran on an empty secret.
        let open = Settings::from_document(
            &json!({"lan_mesh": {"node_id": id, "enabled": true, "shared_secret": ""}}),
        )
        .unwrap();
        assert!(open.lan_mesh.open_lan);
        let off = Settings::from_document(&json!({"lan_mesh": {"node_id": id}})).unwrap();
        assert!(!off.lan_mesh.open_lan && !off.lan_mesh.enabled);
        // A short secret an admin (or the test harness) wrote loads, flagged weak.
        let short = Settings::from_document(
            &json!({"lan_mesh": {"node_id": id, "enabled": true, "shared_secret": "office"}}),
        )
        .unwrap();
        assert!(!short.lan_mesh.open_lan && short.lan_mesh.secret_is_weak());
        // … and the API can still change other settings without retyping it.
        let renamed = short
            .patched(
                &json!({"lan_mesh": {"display_name": "Li"}}),
                NodeIdRule::ReadOnly,
            )
            .unwrap();
        assert_eq!(renamed.lan_mesh.shared_secret, "office");
        let seeded =
            Settings::preseeded(node_id(), &json!({"lan_mesh": {"enabled": true}})).unwrap();
        assert!(seeded.lan_mesh.open_lan);
        let seeded = Settings::preseeded(
            node_id(),
            &json!({"lan_mesh": {"enabled": true, "shared_secret": "from IT"}}),
        )
        .unwrap();
        assert!(!seeded.lan_mesh.open_lan && seeded.lan_mesh.secret_is_weak());
        // What this version writes reads back the same.
        let written = serde_json::to_value(&open).unwrap();
        assert_eq!(Settings::from_document(&written).unwrap(), open);
        // A file saying both is refused, naming the field.
        let e = Settings::from_document(&json!({"lan_mesh": {"node_id": id,
            "shared_secret": "a strong secret", "open_lan": true}}))
        .unwrap_err();
        assert_eq!(e.field, "lan_mesh.open_lan");
    }

    #[test]
    fn document_round_trips() {
        let s = put(
            json!({"lan_mesh": {"enabled": true, "open_lan": true, "allowed_subnets": ["10.1.2.3"]},
                           "ui": {"language": "zh-CN"}}),
        )
        .unwrap();
        let doc = serde_json::to_value(&s).unwrap();
        assert_eq!(Settings::from_document(&doc).unwrap(), s);
    }

    #[test]
    fn subnets_are_normalised() {
        let s = put(
            json!({"lan_mesh": {"allowed_subnets": ["10.1.2.3", "10.1.2.0/24", "fe80::1/10"]}}),
        )
        .unwrap();
        let shown: Vec<String> = s
            .lan_mesh
            .allowed_subnets
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(shown, ["10.1.2.0/24", "fe80::/10"]);
    }

    #[test]
    fn a_bad_subnet_names_the_field_and_entry() {
        let e = put(json!({"lan_mesh": {"allowed_subnets": ["10.1.2.3", "fe80::1/10", "bad"]}}))
            .unwrap_err();
        assert_eq!(e.field, "lan_mesh.allowed_subnets");
        assert!(e.message.contains("entry 3"), "{}", e.message);
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (
                json!({"lan_mesh": {"listen_port": 0}}),
                "lan_mesh.listen_port",
            ),
            (
                json!({"lan_mesh": {"discovery_port": 70000}}),
                "lan_mesh.discovery_port",
            ),
            (
                json!({"lan_mesh": {"listen_port": "80"}}),
                "lan_mesh.listen_port",
            ),
            (
                json!({"lan_mesh": {"heartbeat_interval_sec": 0}}),
                "lan_mesh.heartbeat_interval_sec",
            ),
            (
                json!({"lan_mesh": {"peer_ttl_sec": 15}}),
                "lan_mesh.peer_ttl_sec",
            ),
            (
                json!({"lan_mesh": {"heartbeat_interval_sec": 60}}),
                "lan_mesh.peer_ttl_sec",
            ),
            (
                json!({"lan_mesh": {"listen_host": "example.com"}}),
                "lan_mesh.listen_host",
            ),
            (json!({"lan_mesh": {"enabled": "yes"}}), "lan_mesh.enabled"),
            (
                json!({"lan_mesh": {"blocked_peers": ["x"]}}),
                "lan_mesh.blocked_peers",
            ),
            (
                json!({"lan_mesh": {"blocked_subnets": "10.0.0.0/8"}}),
                "lan_mesh.blocked_subnets",
            ),
            (
                json!({"lan_mesh": {"display_name": "a\u{7}b"}}),
                "lan_mesh.display_name",
            ),
            (
                json!({"lan_mesh": {"display_name": "x".repeat(65)}}),
                "lan_mesh.display_name",
            ),
            (
                json!({"lan_mesh": {"shared_secret": "s".repeat(257)}}),
                "lan_mesh.shared_secret",
            ),
            (
                json!({"lan_mesh": {"shared_secret": "short"}}),
                "lan_mesh.shared_secret",
            ),
            (
                json!({"lan_mesh": {"open_lan": "yes"}}),
                "lan_mesh.open_lan",
            ),
            (
                json!({"lan_mesh": {"node_id": "01BX5ZZKBKACTAV9WEVGEMMVRZ"}}),
                "lan_mesh.node_id",
            ),
            (json!({"lan_mesh": {"colour": "red"}}), "lan_mesh.colour"),
            (json!({"lan_mesh": []}), "lan_mesh"),
            (json!({"ui": {"language": "fr-FR"}}), "ui.language"),
            (json!({"theme": "dark"}), "theme"),
            (json!([1, 2]), "settings"),
        ];
        for (patch, field) in cases {
            let e = put(patch.clone()).unwrap_err();
            assert_eq!(e.field, field, "patch {patch}: {e}");
        }
    }

    #[test]
    fn peer_addresses_are_parsed_sorted_and_deduplicated() {
        let s = put(json!({"lan_mesh": {"peer_addresses": [
            "10.2.0.9:19124", " 10.1.0.5:19124", "10.2.0.9:19124", "[fe80::1]:19124"]}}))
        .unwrap();
        let shown: Vec<String> = s
            .lan_mesh
            .peer_addresses
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            shown,
            ["10.1.0.5:19124", "10.2.0.9:19124", "[fe80::1]:19124"]
        );
        for bad in ["10.0.0.1", "10.0.0.1:0", "host:19124", "10.0.0.1:70000"] {
            let e = put(json!({"lan_mesh": {"peer_addresses": [bad]}})).unwrap_err();
            assert_eq!(e.field, "lan_mesh.peer_addresses", "{bad}");
        }
    }

    #[test]
    fn repeating_the_node_id_is_allowed() {
        assert!(put(json!({"lan_mesh": {"node_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}})).is_ok());
    }

    #[test]
    fn a_rejected_patch_changes_nothing() {
        let s = base();
        let _ = s.patched(
            &json!({"lan_mesh": {"enabled": true, "listen_port": 0}}),
            NodeIdRule::ReadOnly,
        );
        assert!(!s.lan_mesh.enabled);
    }

    #[test]
    fn lists_are_deduplicated() {
        let s = put(json!({"lan_mesh": {"blocked_peers": [
            "01arz3ndektsv4rrffq69g5fav", "01ARZ3NDEKTSV4RRFFQ69G5FAV"]}}))
        .unwrap();
        assert_eq!(s.lan_mesh.blocked_peers.len(), 1);
    }

    #[test]
    fn file_without_node_id_is_rejected() {
        let e = Settings::from_document(&json!({"lan_mesh": {}})).unwrap_err();
        assert_eq!(e.field, "lan_mesh.node_id");
        let e = Settings::from_document(&json!("garbage")).unwrap_err();
        assert_eq!(e.field, "lan_mesh.node_id");
    }

    #[test]
    fn presence_settings_default_and_validate() {
        let s = base();
        assert_eq!(s.desktop.auto_away_minutes, DEFAULT_AUTO_AWAY_MINUTES);
        assert!(s.desktop.send_read_receipts);
        let s =
            put(json!({"desktop": {"auto_away_minutes": 0, "send_read_receipts": false}})).unwrap();
        assert_eq!(s.desktop.auto_away_minutes, 0);
        assert!(!s.desktop.send_read_receipts);
        for bad in [
            json!(-1),
            json!(MAX_AUTO_AWAY_MINUTES + 1),
            json!("5"),
            json!(1.5),
        ] {
            let e = put(json!({"desktop": {"auto_away_minutes": bad}})).unwrap_err();
            assert_eq!(e.field, "desktop.auto_away_minutes");
        }
        // A file from before these settings existed reads with the defaults.
        let s = Settings::from_document(
            &json!({"lan_mesh": {"node_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"},
            "desktop": {"notifications": false}}),
        )
        .unwrap();
        assert!(s.desktop.send_read_receipts);
    }

    #[test]
    fn desktop_settings_default_and_validate() {
        let s = base();
        assert!(s.desktop.notifications && s.desktop.close_to_tray && !s.desktop.autostart);
        assert!(!s.ui.welcome_done, "a new node greets its user");
        let s = put(json!({"desktop": {"muted_conversations": [
            "group:01ARZ3NDEKTSV4RRFFQ69G5FAV", "dm:lan:01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "group:01ARZ3NDEKTSV4RRFFQ69G5FAV"], "do_not_disturb": true}}))
        .unwrap();
        assert_eq!(s.desktop.muted_conversations.len(), 2);
        assert!(s.desktop.is_muted("group:01ARZ3NDEKTSV4RRFFQ69G5FAV"));
        assert!(s.desktop.do_not_disturb);
        for (patch, field) in [
            (
                json!({"desktop": {"muted_conversations": ["x"]}}),
                "desktop.muted_conversations",
            ),
            (
                json!({"desktop": {"muted_conversations": ["group:a b"]}}),
                "desktop.muted_conversations",
            ),
            (
                json!({"desktop": {"autostart": "yes"}}),
                "desktop.autostart",
            ),
            (json!({"desktop": {"tray": true}}), "desktop.tray"),
            (json!({"ui": {"welcome_done": 1}}), "ui.welcome_done"),
        ] {
            assert_eq!(put(patch.clone()).unwrap_err().field, field, "{patch}");
        }
    }

    #[test]
    fn an_old_file_is_past_the_welcome_and_a_preseed_is_not() {
        let old = Settings::from_document(
            &json!({"lan_mesh": {"node_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}}),
        )
        .unwrap();
        assert!(old.ui.welcome_done);
        let seeded = Settings::preseeded(
            node_id(),
            &json!({"lan_mesh": {"enabled": true, "shared_secret": "office"}}),
        )
        .unwrap();
        assert!(!seeded.ui.welcome_done && seeded.lan_mesh.enabled);
        let written = serde_json::to_value(&seeded).unwrap();
        assert!(!Settings::from_document(&written).unwrap().ui.welcome_done);
        let e = Settings::preseeded(
            node_id(),
            &json!({"lan_mesh": {"node_id": "01BX5ZZKBKACTAV9WEVGEMMVRZ"}}),
        )
        .unwrap_err();
        assert_eq!(e.field, "lan_mesh.node_id");
    }

    #[test]
    fn language_tags() {
        assert_eq!(Language::from_tag("zh-TW"), Some(Language::ZhCn));
        assert_eq!(Language::from_tag("en"), Some(Language::EnUs));
        assert_eq!(Language::from_tag("de-DE"), None);
        for l in Language::ALL {
            assert_eq!(Language::from_tag(l.tag()), Some(l));
        }
    }
}
