//! The LAN settings form as plain data: what the inputs hold (text, so that a half-typed
//! port is kept as typed) and the patch sent on save. The node validates; its 400 names
//! the field, which the form shows next to that field.

use api_types::LanMeshSettings;
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanDraft {
    pub enabled: bool,
    pub display_name: String,
    pub listen_port: String,
    pub discovery_port: String,
    pub heartbeat_interval_sec: String,
    pub peer_ttl_sec: String,
    pub allowed_subnets: Vec<String>,
    pub blocked_subnets: Vec<String>,
    pub peer_addresses: Vec<String>,
    pub shared_secret: String,
}

impl LanDraft {
    pub fn from_settings(s: &LanMeshSettings) -> Self {
        LanDraft {
            enabled: s.enabled,
            display_name: s.display_name.clone(),
            listen_port: s.listen_port.to_string(),
            discovery_port: s.discovery_port.to_string(),
            heartbeat_interval_sec: s.heartbeat_interval_sec.to_string(),
            peer_ttl_sec: s.peer_ttl_sec.to_string(),
            allowed_subnets: strings(&s.allowed_subnets),
            blocked_subnets: strings(&s.blocked_subnets),
            peer_addresses: strings(&s.peer_addresses),
            shared_secret: s.shared_secret.clone(),
        }
    }

    /// The `PUT /api/v1/settings` body. Numbers that do not parse are sent as typed, so
    /// the node's answer names the field instead of the form guessing.
    pub fn to_patch(&self) -> Value {
        json!({ "lan_mesh": {
            "enabled": self.enabled,
            "display_name": self.display_name,
            "listen_port": number_or_text(&self.listen_port),
            "discovery_port": number_or_text(&self.discovery_port),
            "heartbeat_interval_sec": number_or_text(&self.heartbeat_interval_sec),
            "peer_ttl_sec": number_or_text(&self.peer_ttl_sec),
            "allowed_subnets": self.allowed_subnets,
            "blocked_subnets": self.blocked_subnets,
            "peer_addresses": self.peer_addresses,
            "shared_secret": self.shared_secret,
        }})
    }
}

fn strings<T: std::fmt::Display>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

fn number_or_text(text: &str) -> Value {
    match text.trim().parse::<u64>() {
        Ok(n) => json!(n),
        Err(_) => json!(text),
    }
}

/// Adds a trimmed entry to an editable list; empty input and repeats change nothing.
pub fn with_item(list: &[String], item: &str) -> Vec<String> {
    let item = item.trim();
    let mut next = list.to_vec();
    if !item.is_empty() && !next.iter().any(|x| x == item) {
        next.push(item.to_string());
    }
    next
}

/// The short field name of an API error path (`lan_mesh.allowed_subnets` →
/// `allowed_subnets`), which is how the form names its fields.
pub fn field_key(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use api_types::{NodeId, Settings};

    fn settings() -> LanMeshSettings {
        let id: NodeId = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap();
        let mut s = Settings::defaults(id).lan_mesh;
        s.allowed_subnets = vec!["10.1.2.0/24".parse().unwrap()];
        s
    }

    #[test]
    fn draft_round_trips_through_the_patch() {
        let s = settings();
        let patch = LanDraft::from_settings(&s).to_patch();
        assert_eq!(patch["lan_mesh"]["listen_port"], 19123);
        assert_eq!(patch["lan_mesh"]["allowed_subnets"], json!(["10.1.2.0/24"]));
        let base = Settings::defaults(s.node_id.clone());
        let applied = base
            .patched(&patch, api_types::settings::NodeIdRule::ReadOnly)
            .unwrap();
        assert_eq!(applied.lan_mesh, s);
    }

    #[test]
    fn unparsable_numbers_are_sent_as_typed() {
        let mut d = LanDraft::from_settings(&settings());
        d.listen_port = "19x23".into();
        assert_eq!(d.to_patch()["lan_mesh"]["listen_port"], "19x23");
    }

    #[test]
    fn list_editing() {
        let l = with_item(&[], " 10.0.0.0/8 ");
        assert_eq!(l, ["10.0.0.0/8"]);
        assert_eq!(with_item(&l, "10.0.0.0/8"), l);
        assert_eq!(with_item(&l, "  "), l);
        assert_eq!(field_key("lan_mesh.allowed_subnets"), "allowed_subnets");
        assert_eq!(field_key("address"), "address");
    }
}
