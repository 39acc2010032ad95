//! `api_bodies`: the JSON bodies of the local API's requests, through the
//! `api_types` request types and the checks the handlers run on them (the settings
//! body, `PUT /api/v1/settings`, is the `settings_json` target).

use api_types::limits::{check_announcement, check_body, check_group_name};
use api_types::settings::peer_address;
use api_types::{
    AddPeerAddress, CreateGroup, NodeId, Presence, SendMessage, SetPresence, UpdateGroup,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Parses `data` as `T`; what parses serialises and parses back equal.
fn parsed<T>(data: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let value: T = serde_json::from_slice(data).ok()?;
    let json = match serde_json::to_vec(&value) {
        Ok(json) => json,
        Err(e) => panic!("a request body serialises: {e}"),
    };
    match serde_json::from_slice::<T>(&json) {
        Ok(again) => assert_eq!(again, value),
        Err(e) => panic!("a serialised request body does not parse: {e}"),
    }
    Some(value)
}

fn members(ids: &[String]) {
    for id in ids {
        if let Ok(node) = id.trim().parse::<NodeId>() {
            assert_eq!(node.as_str().parse::<NodeId>().as_ref(), Ok(&node));
        }
    }
}

/// Every body type, on the same bytes: a value or a typed error, never a panic.
pub fn api_bodies(data: &[u8]) {
    // POST /api/v1/conversations/{id}/messages
    if let Some(send) = parsed::<SendMessage>(data) {
        let _ = check_body(send.text.trim());
    }
    // POST /api/v1/groups
    if let Some(create) = parsed::<CreateGroup>(data) {
        if let Ok(name) = check_group_name(&create.name) {
            assert!(!name.is_empty() && name == name.trim());
        }
        let _ = check_announcement(create.announcement.as_deref().unwrap_or_default());
        members(&create.members);
    }
    // PUT /api/v1/groups/{id}
    if let Some(update) = parsed::<UpdateGroup>(data) {
        if let Some(name) = &update.name {
            let _ = check_group_name(name);
        }
        if let Some(text) = &update.announcement {
            let _ = check_announcement(text);
        }
        members(update.members.as_deref().unwrap_or_default());
    }
    // POST /api/v1/peers/addresses
    if let Some(add) = parsed::<AddPeerAddress>(data) {
        if let Ok(addr) = peer_address(&add.address) {
            assert_ne!(addr.port(), 0);
            assert_eq!(peer_address(&addr.to_string()), Ok(addr));
        }
    }
    // PUT /api/v1/presence
    if let Some(set) = parsed::<SetPresence>(data) {
        if let Ok(presence) = set.chosen() {
            assert_ne!(presence, Presence::Offline);
        }
    }
}
