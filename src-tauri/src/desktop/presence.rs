//! The user's status as the tray sets it (online / away / busy). For now it lives only
//! in this process: busy silences notifications. The presence work (announcing it to
//! colleagues, auto-away) reads and sets the same value through `PresenceSetting`.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

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
}

/// Shared, cheap to clone.
#[derive(Clone)]
pub struct PresenceSetting(Arc<AtomicU8>);

impl Default for PresenceSetting {
    fn default() -> Self {
        PresenceSetting(Arc::new(AtomicU8::new(0)))
    }
}

impl PresenceSetting {
    pub fn get(&self) -> Presence {
        match self.0.load(Ordering::Relaxed) {
            1 => Presence::Away,
            2 => Presence::Busy,
            _ => Presence::Online,
        }
    }

    pub fn set(&self, presence: Presence) {
        let n = match presence {
            Presence::Online => 0,
            Presence::Away => 1,
            Presence::Busy => 2,
        };
        self.0.store(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let p = PresenceSetting::default();
        assert_eq!(p.get(), Presence::Online);
        for want in Presence::ALL {
            p.clone().set(want);
            assert_eq!(p.get(), want);
            assert_eq!(Presence::from_key(want.key()), Some(want));
        }
    }
}
