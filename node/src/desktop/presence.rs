//! The user's status as the tray and the notifier see it (online / away / busy): a
//! view of the node's own presence (`crate::presence`), so the tray, the UI's picker,
//! `PUT /api/v1/presence` and the idle timer all change the one value colleagues see.

use crate::presence::PresenceHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Online,
    Away,
    Busy,
}

impl Presence {
    pub const ALL: [Presence; 3] = [Presence::Online, Presence::Away, Presence::Busy];

    pub fn key(self) -> &'static str {
        match self {
            Presence::Online => "online",
            Presence::Away => "away",
            Presence::Busy => "busy",
        }
    }

    pub fn from_key(key: &str) -> Option<Presence> {
        Presence::ALL.into_iter().find(|p| p.key() == key)
    }

    fn from_api(p: api_types::Presence) -> Presence {
        match p {
            api_types::Presence::Away => Presence::Away,
            api_types::Presence::Busy => Presence::Busy,
            // This node is never offline to itself.
            api_types::Presence::Online | api_types::Presence::Offline => Presence::Online,
        }
    }

    fn to_api(self) -> api_types::Presence {
        match self {
            Presence::Online => api_types::Presence::Online,
            Presence::Away => api_types::Presence::Away,
            Presence::Busy => api_types::Presence::Busy,
        }
    }
}

/// Shared, cheap to clone: the node's presence handle.
#[derive(Clone, Default)]
pub struct PresenceSetting(PresenceHandle);

impl From<PresenceHandle> for PresenceSetting {
    fn from(handle: PresenceHandle) -> Self {
        PresenceSetting(handle)
    }
}

impl PresenceSetting {
    pub fn get(&self) -> Presence {
        Presence::from_api(self.0.get().presence)
    }

    /// A choice from the tray: the same path as `PUT /api/v1/presence`.
    pub fn set(&self, presence: Presence) {
        self.0.choose(presence.to_api());
    }

    /// Changes from any path (the UI, the API, the idle timer), for the tray.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<api_types::MyPresence> {
        self.0.subscribe()
    }

    pub fn shown(p: api_types::Presence) -> Presence {
        Presence::from_api(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_node_presence() {
        let handle = PresenceHandle::default();
        let p = PresenceSetting::from(handle.clone());
        assert_eq!(p.get(), Presence::Online);
        for want in Presence::ALL {
            p.clone().set(want);
            assert_eq!(p.get(), want);
            assert_eq!(handle.get().presence, want.to_api());
            assert_eq!(Presence::from_key(want.key()), Some(want));
        }
    }
}
