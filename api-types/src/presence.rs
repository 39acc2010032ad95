//! Presence: what a user shows colleagues (`online`, `away`, `busy`) and what a peer
//! is seen as (the same, or `offline` when its node is not heard from).

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// A peer's presence as the API shows it. `offline` is never chosen: it is what a peer
/// whose node is not running (or not reachable) shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    #[default]
    Online,
    /// Set by hand, or automatically after the idle time in the settings.
    Away,
    /// Do not disturb: no notifications here, and shown to colleagues.
    Busy,
    Offline,
}

impl Presence {
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Online => "online",
            Presence::Away => "away",
            Presence::Busy => "busy",
            Presence::Offline => "offline",
        }
    }

    pub fn parse(text: &str) -> Option<Presence> {
        [
            Presence::Online,
            Presence::Away,
            Presence::Busy,
            Presence::Offline,
        ]
        .into_iter()
        .find(|p| p.as_str() == text)
    }

    /// What a peer shows: its announced presence while its node is online, else offline.
    pub fn shown(online: bool, announced: Presence) -> Presence {
        if online {
            announced
        } else {
            Presence::Offline
        }
    }
}

/// How this node's presence came about: a manual choice stays until the user changes
/// it; an automatic `away` (idle) ends at the next activity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceSource {
    #[default]
    Manual,
    Idle,
}

/// `PUT /api/v1/presence` `{"presence": "away"}`; `GET` answers [`MyPresence`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPresence {
    pub presence: String,
}

impl SetPresence {
    /// The chosen presence: `online`, `away` or `busy` (`offline` is not a choice — quit
    /// the app for that).
    pub fn chosen(&self) -> Result<Presence, FieldError> {
        match Presence::parse(&self.presence) {
            Some(Presence::Offline) | None => Err(FieldError::new(
                "presence",
                "must be one of online, away, busy",
            )),
            Some(p) => Ok(p),
        }
    }
}

/// This node's presence (`GET`/`PUT /api/v1/presence`); every start begins `online`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MyPresence {
    pub presence: Presence,
    /// `idle` when the idle timer set `away` (activity turns it back to `online`).
    pub source: PresenceSource,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_online_away_and_busy_can_be_chosen() {
        for (text, ok) in [
            ("online", true),
            ("away", true),
            ("busy", true),
            ("offline", false),
            ("Away", false),
            ("", false),
        ] {
            let r = SetPresence {
                presence: text.into(),
            }
            .chosen();
            assert_eq!(r.is_ok(), ok, "{text}");
        }
        assert_eq!(Presence::shown(false, Presence::Busy), Presence::Offline);
        assert_eq!(Presence::shown(true, Presence::Busy), Presence::Busy);
        assert_eq!(serde_json::to_string(&Presence::Away).unwrap(), "\"away\"");
    }
}
