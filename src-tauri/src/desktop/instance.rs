//! One window per data directory: a second `lanchat` on the same data directory hands
//! over to the running one (which shows its window) and exits; another data directory
//! runs side by side.
//!
//! tauri-plugin-single-instance owns a D-Bus name on the session bus, by default one
//! per app; here the name carries a key of the data directory. Without a session bus
//! the plugin lets every launch through, and the data directory's lock then refuses
//! the second one with a message naming the directory.

use std::path::Path;

use tauri::plugin::TauriPlugin;
use tauri::{AppHandle, Wry};

/// 16 hex digits of FNV-1a over the canonical path: stable across versions and
/// builds (std's hasher promises neither), and valid in a D-Bus name and a file name.
pub fn dir_key(data_dir: &Path) -> String {
    let canonical = std::fs::canonicalize(data_dir)
        .or_else(|_| std::path::absolute(data_dir))
        .unwrap_or_else(|_| data_dir.to_path_buf());
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in canonical.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The D-Bus name prefix for this data directory (the plugin adds `.SingleInstance`).
pub fn dbus_id(data_dir: &Path) -> String {
    format!("dev.lanchat.desktop.d{}", dir_key(data_dir))
}

pub fn plugin(
    data_dir: &Path,
    on_second: impl Fn(&AppHandle) + Send + Sync + 'static,
) -> TauriPlugin<Wry> {
    tauri_plugin_single_instance::Builder::new()
        .dbus_id(dbus_id(data_dir))
        .callback(move |app, argv, _cwd| {
            tracing::info!(
                ?argv,
                "a second launch on this data directory: showing the window"
            );
            on_second(app);
        })
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_per_directory_and_are_stable() {
        let a = dbus_id(Path::new("/tmp/lanchat-a"));
        assert_eq!(a, dbus_id(Path::new("/tmp/lanchat-a")));
        assert_ne!(a, dbus_id(Path::new("/tmp/lanchat-b")));
        assert!(a
            .split('.')
            .all(|part| part.chars().next().is_some_and(|c| c.is_ascii_alphabetic())));
    }
}
