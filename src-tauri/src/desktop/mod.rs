//! The desktop shell around the window: notifications, the tray, one instance per data
//! directory, the autostart entry, and the user's status as the tray sets it.

pub mod autostart;
pub mod instance;
pub mod notifier;
pub mod notify_policy;
pub mod presence;
pub mod tray;
pub mod unread;
