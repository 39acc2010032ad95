//! This node's presence: what the user chose (online / away / busy, from the UI, the
//! tray or `PUT /api/v1/presence`) and the idle timer's automatic `away`.
//!
//! One owner (`PresenceHandle`, a `watch` channel) that everything reads and changes:
//! discovery announces it (the mesh supervisor follows the channel), the notifier reads
//! `busy`, the tray shows it. The rules are pure functions below; the timer only feeds
//! them the time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_types::{MyPresence, Presence, PresenceSource, Settings};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the idle timer looks: the auto-away setting is in whole minutes, so a
/// quarter of one is precise enough and costs nothing.
const IDLE_CHECK: Duration = Duration::from_secs(15);

/// What a user's input does: an automatic `away` ends; a chosen state stays.
pub fn after_activity(current: MyPresence) -> Option<MyPresence> {
    (current.presence == Presence::Away && current.source == PresenceSource::Idle).then_some(
        MyPresence {
            presence: Presence::Online,
            source: PresenceSource::Manual,
        },
    )
}

/// What idleness does: `online` turns `away` (automatically) once the user has been
/// idle for `limit`; `busy` and a chosen `away` stay. `limit` zero = never.
pub fn after_idle(current: MyPresence, idle_for: Duration, limit: Duration) -> Option<MyPresence> {
    (!limit.is_zero() && idle_for >= limit && current.presence == Presence::Online).then_some(
        MyPresence {
            presence: Presence::Away,
            source: PresenceSource::Idle,
        },
    )
}

/// This node's presence. Cheap to clone.
#[derive(Clone)]
pub struct PresenceHandle {
    state: watch::Sender<MyPresence>,
    /// The last input the UI reported; `None` until a UI reported any — a headless node
    /// that no one uses is never made `away` by the timer.
    last_activity: Arc<Mutex<Option<Instant>>>,
}

impl Default for PresenceHandle {
    fn default() -> Self {
        PresenceHandle {
            state: watch::Sender::new(MyPresence {
                presence: Presence::Online,
                source: PresenceSource::Manual,
            }),
            last_activity: Arc::new(Mutex::new(None)),
        }
    }
}

impl PresenceHandle {
    pub fn get(&self) -> MyPresence {
        *self.state.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<MyPresence> {
        self.state.subscribe()
    }

    /// The user chose `presence`; it stays until changed (input does not end it).
    /// Returns whether it changed anything.
    pub fn choose(&self, presence: Presence) -> bool {
        let next = MyPresence {
            presence,
            source: PresenceSource::Manual,
        };
        self.state.send_if_modified(|now| {
            let changed = *now != next;
            *now = next;
            changed
        })
    }

    /// The user did something in the UI: the idle clock restarts and an automatic
    /// `away` ends. Returns whether the presence changed.
    pub fn activity(&self) -> bool {
        *self.last_activity.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.state
            .send_if_modified(|now| match after_activity(*now) {
                Some(next) => {
                    *now = next;
                    true
                }
                None => false,
            })
    }

    /// One look of the idle timer. Returns whether the presence changed.
    fn check_idle(&self, limit: Duration) -> bool {
        let Some(last) = *self.last_activity.lock().unwrap_or_else(|p| p.into_inner()) else {
            return false;
        };
        let idle_for = Instant::now().saturating_duration_since(last);
        self.state
            .send_if_modified(|now| match after_idle(*now, idle_for, limit) {
                Some(next) => {
                    *now = next;
                    true
                }
                None => false,
            })
    }
}

/// Runs the idle timer until `stop`: `away` after the settings' `auto_away_minutes`
/// without input.
pub fn spawn_idle_timer(
    presence: PresenceHandle,
    settings: watch::Receiver<Settings>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(IDLE_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    let minutes = settings.borrow().desktop.auto_away_minutes;
                    let limit = Duration::from_secs(u64::from(minutes) * 60);
                    if presence.check_idle(limit) {
                        tracing::info!("no input for {minutes} min: away");
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn p(presence: Presence, source: PresenceSource) -> MyPresence {
        MyPresence { presence, source }
    }
    const ONLINE: MyPresence = p(Presence::Online, PresenceSource::Manual);
    const AUTO_AWAY: MyPresence = p(Presence::Away, PresenceSource::Idle);
    const AWAY: MyPresence = p(Presence::Away, PresenceSource::Manual);
    const BUSY: MyPresence = p(Presence::Busy, PresenceSource::Manual);
    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn idleness_makes_online_away_and_nothing_else() {
        assert_eq!(after_idle(ONLINE, 10 * MIN, 10 * MIN), Some(AUTO_AWAY));
        assert_eq!(after_idle(ONLINE, 9 * MIN, 10 * MIN), None);
        assert_eq!(
            after_idle(ONLINE, 99 * MIN, Duration::ZERO),
            None,
            "0 = never"
        );
        assert_eq!(after_idle(BUSY, 99 * MIN, 10 * MIN), None);
        assert_eq!(after_idle(AWAY, 99 * MIN, 10 * MIN), None);
        assert_eq!(after_idle(AUTO_AWAY, 99 * MIN, 10 * MIN), None);
    }

    #[test]
    fn activity_ends_only_an_automatic_away() {
        assert_eq!(after_activity(AUTO_AWAY), Some(ONLINE));
        assert_eq!(after_activity(AWAY), None);
        assert_eq!(after_activity(BUSY), None);
        assert_eq!(after_activity(ONLINE), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_handle_follows_the_rules_over_time() {
        let h = PresenceHandle::default();
        // No UI has reported input: never idle.
        tokio::time::advance(60 * MIN).await;
        assert!(!h.check_idle(MIN));
        assert!(!h.activity(), "input while online changes nothing");
        tokio::time::advance(2 * MIN).await;
        assert!(h.check_idle(MIN));
        assert_eq!(h.get(), AUTO_AWAY);
        assert!(h.activity());
        assert_eq!(h.get(), ONLINE);
        assert!(h.choose(Presence::Busy));
        assert!(
            !h.choose(Presence::Busy),
            "the same choice again is no change"
        );
        tokio::time::advance(60 * MIN).await;
        assert!(!h.check_idle(MIN));
        assert!(!h.activity());
        assert_eq!(h.get(), BUSY);
    }
}
