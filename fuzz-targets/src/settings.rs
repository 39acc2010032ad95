//! `settings_json`: a settings document as the settings file, an administrator's
//! preseed or the body of `PUT /api/v1/settings` holds it, through
//! `api_types::Settings` (`from_document`, `preseeded`, `patched`): the one code path
//! that turns JSON into settings, subnets (CIDR), peer addresses, secrets and names
//! included.

use api_types::settings::NodeIdRule;
use api_types::{NodeId, Settings};
use serde_json::Value;

fn node() -> NodeId {
    match ulid::Ulid::from(7u128).to_string().parse() {
        Ok(id) => id,
        Err(e) => panic!("a ULID is a node id: {e:?}"),
    }
}

/// What is saved loads back equal: settings are written to the file as they
/// serialise, and read from it with `from_document`.
fn saved_and_loaded(settings: &Settings) {
    let doc = match serde_json::to_value(settings) {
        Ok(doc) => doc,
        Err(e) => panic!("settings serialise: {e}"),
    };
    match Settings::from_document(&doc) {
        Ok(loaded) => assert_eq!(&loaded, settings),
        Err(e) => panic!("saved settings do not load: {e:?} ({doc})"),
    }
}

/// Never a panic; whatever is accepted — from the file, a preseed or the API — saves
/// and loads back unchanged; the API never changes the node id.
pub fn settings_json(data: &[u8]) {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(settings) = Settings::from_document(&doc) {
        saved_and_loaded(&settings);
    }
    if let Ok(settings) = Settings::preseeded(node(), &doc) {
        assert_eq!(settings.lan_mesh.node_id, node());
        saved_and_loaded(&settings);
    }
    let current = Settings::defaults(node());
    if let Ok(settings) = current.patched(&doc, NodeIdRule::ReadOnly) {
        assert_eq!(settings.lan_mesh.node_id, node());
        saved_and_loaded(&settings);
        // A patch applied twice is applied once.
        assert_eq!(
            settings.patched(&doc, NodeIdRule::ReadOnly).as_ref(),
            Ok(&settings)
        );
    }
}
