//! Display names the views of single messages ask for, remembered between reads: a
//! received message's event needs its sender's name, and a read per message (a trip
//! to a reader thread and back) was a tenth of a group member's CPU under a flood.
//!
//! Correctness rests on one rule: every write that changes a name updates this cache
//! **after its commit** (the writer's hook, `WriteJob::after_commit`), and bumps the
//! generation. A read that missed notes the generation before it reads and stores what
//! it read only if no update came meanwhile, so a name read before a commit can never
//! overwrite the one written by it.

use std::collections::HashMap;
use std::sync::Mutex;

use chat_core::UserId;

/// Past this many names the cache starts again empty: an office has a few hundred
/// colleagues, and a flood of made-up ids must not grow it.
const MAX_NAMES: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct NameCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    names: HashMap<UserId, String>,
    generation: u64,
}

impl NameCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map is valid after any panic (each change is one insert or clear).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, user: &UserId) -> Option<String> {
        self.lock().names.get(user).cloned()
    }

    /// To be noted before a read whose result goes to [`Self::remember_read`].
    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Keeps a name read from the database, unless a write changed names since
    /// `generation` was noted (what was read may be older than that write).
    pub(crate) fn remember_read(&self, user: UserId, name: String, generation: u64) {
        let mut inner = self.lock();
        if inner.generation == generation {
            inner.insert(user, name);
        }
    }

    /// A committed write set `user`'s name.
    pub(crate) fn committed(&self, user: UserId, name: &str) {
        let mut inner = self.lock();
        if inner.names.get(&user).map(String::as_str) == Some(name) {
            return;
        }
        inner.generation += 1;
        inner.insert(user, name.to_string());
    }

    /// A committed write changed users in ways not worth following one by one
    /// (this node's identity, a colleague's new id): everything is read again.
    pub(crate) fn committed_many(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.names.clear();
    }
}

impl Inner {
    fn insert(&mut self, user: UserId, name: String) {
        if self.names.len() >= MAX_NAMES && !self.names.contains_key(&user) {
            self.names.clear();
        }
        self.names.insert(user, name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: u32) -> UserId {
        let node = format!("{n:026}").parse().expect("digits make a node id");
        UserId::lan(&node)
    }

    #[test]
    fn a_read_older_than_a_committed_change_is_not_kept() {
        let cache = NameCache::default();
        let noted = cache.generation();
        // A write commits "new" while the read (which saw "old") is under way.
        cache.committed(user(1), "new");
        cache.remember_read(user(1), "old".into(), noted);
        assert_eq!(cache.get(&user(1)).as_deref(), Some("new"));
    }

    #[test]
    fn a_read_with_no_change_meanwhile_is_kept_and_a_later_change_replaces_it() {
        let cache = NameCache::default();
        let noted = cache.generation();
        cache.remember_read(user(1), "old".into(), noted);
        assert_eq!(cache.get(&user(1)).as_deref(), Some("old"));
        cache.committed(user(1), "new");
        assert_eq!(cache.get(&user(1)).as_deref(), Some("new"));
        cache.committed_many();
        assert_eq!(cache.get(&user(1)), None);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = NameCache::default();
        for n in 0..(MAX_NAMES as u32 + 10) {
            cache.committed(user(n), "x");
        }
        assert!(cache.lock().names.len() <= MAX_NAMES);
        assert_eq!(cache.get(&user(MAX_NAMES as u32 + 9)).as_deref(), Some("x"));
    }
}
