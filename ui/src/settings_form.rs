//! The LAN settings form as plain data: what the inputs hold (text, so that a half-typed
//! port is kept as typed) and the patch sent on save. The node validates; its 400 names
//! the field, which the form shows next to that field.
//!
//! The node never shows its shared secret (`secret_set` instead): the secret field
//! starts empty and means "keep the current one" until something is typed or
//! generated; the open LAN is its own explicit choice.

use api_types::LanMeshView;
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
    /// A new secret typed or generated here; empty keeps the node's (if it has one).
    pub shared_secret: String,
    /// The node has a secret (it is never shown).
    pub secret_set: bool,
    /// The open LAN (no secret) is chosen.
    pub open_lan: bool,
}

impl LanDraft {
    pub fn from_settings(s: &LanMeshView) -> Self {
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
            shared_secret: String::new(),
            secret_set: s.secret_set,
            open_lan: s.open_lan,
        }
    }

    /// No secret now and none typed, and not the open LAN: saving with the mesh on
    /// would be refused (the node names `shared_secret`).
    pub fn needs_access_choice(&self) -> bool {
        !self.open_lan && !self.secret_set && self.shared_secret.is_empty()
    }

    /// The `PUT /api/v1/settings` body. Numbers that do not parse are sent as typed, so
    /// the node's answer names the field instead of the form guessing.
    pub fn to_patch(&self) -> Value {
        let mut patch = json!({ "lan_mesh": {
            "enabled": self.enabled,
            "display_name": self.display_name,
            "listen_port": number_or_text(&self.listen_port),
            "discovery_port": number_or_text(&self.discovery_port),
            "heartbeat_interval_sec": number_or_text(&self.heartbeat_interval_sec),
            "peer_ttl_sec": number_or_text(&self.peer_ttl_sec),
            "allowed_subnets": self.allowed_subnets,
            "blocked_subnets": self.blocked_subnets,
            "peer_addresses": self.peer_addresses,
            "open_lan": self.open_lan,
        }});
        // The open LAN clears the secret; a typed one replaces it; nothing typed keeps it.
        let secret = if self.open_lan {
            Some("")
        } else if !self.shared_secret.is_empty() {
            Some(self.shared_secret.as_str())
        } else {
            None
        };
        if let Some(secret) = secret {
            patch["lan_mesh"]["shared_secret"] = json!(secret);
        }
        patch
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
    use api_types::{NodeId, Settings, SettingsView};

    fn settings() -> Settings {
        let id: NodeId = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap();
        let mut s = Settings::defaults(id);
        s.lan_mesh.allowed_subnets = vec!["10.1.2.0/24".parse().unwrap()];
        s.lan_mesh.enabled = true;
        s.lan_mesh.shared_secret = "PK3RT-9WQ2M-HX7VD-C4N8F".into();
        s
    }

    fn view(s: &Settings) -> LanMeshView {
        SettingsView::from(s).lan_mesh
    }

    fn saved(base: &Settings, draft: &LanDraft) -> Result<Settings, api_types::FieldError> {
        base.patched(&draft.to_patch(), api_types::settings::NodeIdRule::ReadOnly)
    }

    #[test]
    fn draft_round_trips_through_the_patch_and_keeps_the_secret() {
        let s = settings();
        let draft = LanDraft::from_settings(&view(&s));
        assert!(draft.shared_secret.is_empty() && draft.secret_set && !draft.open_lan);
        let patch = draft.to_patch();
        assert_eq!(patch["lan_mesh"]["listen_port"], 19123);
        assert_eq!(patch["lan_mesh"]["allowed_subnets"], json!(["10.1.2.0/24"]));
        assert!(patch["lan_mesh"].get("shared_secret").is_none(), "{patch}");
        assert_eq!(saved(&s, &draft).unwrap(), s);
    }

    #[test]
    fn a_typed_secret_replaces_and_the_open_lan_clears() {
        let s = settings();
        let mut draft = LanDraft::from_settings(&view(&s));
        draft.shared_secret = "ABCDE-FGHJK-MNPQR-STVWX".into();
        assert_eq!(
            saved(&s, &draft).unwrap().lan_mesh.shared_secret,
            "ABCDE-FGHJK-MNPQR-STVWX"
        );
        draft.shared_secret = "short".into();
        assert_eq!(
            saved(&s, &draft).unwrap_err().field,
            "lan_mesh.shared_secret"
        );
        draft.open_lan = true;
        let open = saved(&s, &draft).unwrap();
        assert!(open.lan_mesh.open_lan && open.lan_mesh.shared_secret.is_empty());
        // Back from the open LAN: a secret must be given.
        let mut draft = LanDraft::from_settings(&view(&open));
        draft.open_lan = false;
        assert!(draft.needs_access_choice());
        assert_eq!(
            saved(&open, &draft).unwrap_err().field,
            "lan_mesh.shared_secret"
        );
    }

    #[test]
    fn unparsable_numbers_are_sent_as_typed() {
        let mut d = LanDraft::from_settings(&view(&settings()));
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
