//! This node's presence: what the user chose (online / away / busy, from the UI, the
//! tray or `PUT /api/v1/presence`) and the idle timer's automatic `away`.
//!
//! One owner (`PresenceHandle`, a `watch` channel) that everything reads and changes:
//! discovery announces it (the mesh supervisor follows the channel), the notifier reads
//! `busy`, the tray shows it. The rules are pure functions below; the timer only feeds
//! them the time.
//!
//! The user's last choice outlives a restart: it is kept in the data directory
//! ([`CHOICE_FILE`]) and a node starts with it — someone who chose `busy` stays busy
//! after the computer restarts. An automatic `away` is not a choice and is not kept.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
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

/// The data directory's file with the user's last chosen presence (`online`, `away` or
/// `busy`, as text).
pub const CHOICE_FILE: &str = "presence";

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
    /// A node starting with `chosen`, the choice kept by its last run.
    pub fn starting_as(chosen: Presence) -> Self {
        let handle = PresenceHandle::default();
        handle.choose(chosen);
        handle
    }

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

/// The choice the last run kept in `path`: `None` when there is none, or when the file
/// cannot be read or holds anything but `online`, `away` or `busy` (logged: the node
/// then starts online, and the next choice rewrites the file).
pub fn load_choice(path: &Path) -> Option<Presence> {
    match std::fs::read_to_string(path) {
        Ok(text) => match Presence::parse(text.trim()) {
            Some(p) if p != Presence::Offline => Some(p),
            _ => {
                tracing::warn!(file = %path.display(),
                    "the kept presence is not online, away or busy: starting online");
                None
            }
        },
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(file = %path.display(),
                "cannot read the kept presence, starting online: {e}");
            None
        }
    }
}

/// Keeps every choice of the user in `path` until `stop` (written beside, then renamed
/// over it, so a crash leaves the old choice or the new one). A failed write is logged;
/// the presence itself is unaffected.
pub fn spawn_keeper(
    mut presence: watch::Receiver<MyPresence>,
    path: PathBuf,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    // What the node started with is what the file says (or online, with no file): taken
    // now, so that a choice made before the task first runs is still a change.
    let mut kept = presence.borrow_and_update().presence;
    tokio::spawn(async move {
        while let Some(now) = next_change(&mut presence, &stop).await {
            let Some(choice) = to_keep(now, kept) else {
                continue;
            };
            match write_choice(&path, choice).await {
                Ok(()) => kept = choice,
                Err(e) => tracing::warn!(file = %path.display(),
                    "cannot keep the chosen presence for the next start: {e}"),
            }
        }
    })
}

/// The presence after its next change; `None` once `stop` is cancelled or the presence
/// is gone.
pub async fn next_change(
    presence: &mut watch::Receiver<MyPresence>,
    stop: &CancellationToken,
) -> Option<MyPresence> {
    tokio::select! {
        _ = stop.cancelled() => None,
        changed = presence.changed() => changed.ok().map(|()| *presence.borrow_and_update()),
    }
}

/// What to write when the presence became `now`, with `kept` in the file: a new choice of
/// the user's; never an automatic `away`.
fn to_keep(now: MyPresence, kept: Presence) -> Option<Presence> {
    (now.source == PresenceSource::Manual && kept != now.presence).then_some(now.presence)
}

async fn write_choice(path: &Path, presence: Presence) -> std::io::Result<()> {
    let beside = path.with_extension("new");
    tokio::fs::write(&beside, presence.as_str()).await?;
    tokio::fs::rename(&beside, path).await
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

    #[test]
    fn only_a_new_choice_is_written() {
        assert_eq!(to_keep(BUSY, Presence::Online), Some(Presence::Busy));
        assert_eq!(to_keep(BUSY, Presence::Busy), None, "already kept");
        assert_eq!(to_keep(AUTO_AWAY, Presence::Online), None, "not a choice");
        assert_eq!(to_keep(AWAY, Presence::Online), Some(Presence::Away));
    }

    #[tokio::test]
    async fn choices_are_kept_for_the_next_start_and_an_automatic_away_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHOICE_FILE);
        assert_eq!(load_choice(&path), None, "nothing kept yet");
        let h = PresenceHandle::default();
        let stop = CancellationToken::new();
        let keeper = spawn_keeper(h.subscribe(), path.clone(), stop.clone());
        let kept = |want: Presence| {
            let path = path.clone();
            async move {
                for _ in 0..200 {
                    if load_choice(&path) == Some(want) {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                false
            }
        };
        h.choose(Presence::Busy);
        assert!(kept(Presence::Busy).await);
        assert_eq!(PresenceHandle::starting_as(Presence::Busy).get(), BUSY);
        h.choose(Presence::Away);
        assert!(kept(Presence::Away).await);
        h.choose(Presence::Online);
        assert!(kept(Presence::Online).await);
        stop.cancel();
        keeper.await.unwrap();

        for bad in ["offline", "asleep", ""] {
            std::fs::write(&path, bad).unwrap();
            assert_eq!(load_choice(&path), None, "{bad:?} is not a choice");
        }
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
