//! The tray icon: shows whether anything is unread, and a menu to open the window, set
//! the status (online / away / busy), mute all notifications and quit.
//!
//! On Linux the icon is a StatusNotifierItem (libayatana-appindicator): the menu is
//! exported over D-Bus and the panel draws it. Tooltips are not supported there, so
//! the unread count also goes into the item's title (panels that show titles show it).

use std::sync::Arc;

use api_types::Language;
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuEvent, MenuItem, PredefinedMenuItem, Submenu};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Wry};

use super::presence::{Presence, PresenceSetting};
use lanchat_node::live_settings::LiveSettings;

pub const TRAY_ID: &str = "lanchat";
pub const MENU_OPEN: &str = "open";
pub const MENU_MUTE_ALL: &str = "mute_all";
pub const MENU_QUIT: &str = "quit";
const PRESENCE_PREFIX: &str = "presence.";

const ICON_PNG: &[u8] = include_bytes!("../../icons/icon.png");

/// What the tray's menu items do; the window module implements it.
pub trait TrayActions: Send + Sync + 'static {
    fn open_window(&self, app: &AppHandle);
    fn quit(&self, app: &AppHandle);
}

pub struct Tray {
    icon: TrayIcon,
    presence_items: Vec<(Presence, CheckMenuItem<Wry>)>,
    mute_all: CheckMenuItem<Wry>,
    normal: Image<'static>,
    unread: Image<'static>,
}

pub fn build(
    app: &AppHandle,
    lang: Language,
    settings: Arc<LiveSettings>,
    presence: PresenceSetting,
    actions: Arc<dyn TrayActions>,
) -> tauri::Result<Arc<Tray>> {
    let t = |key: &str| i18n::t(lang, key);
    let open = MenuItem::with_id(app, MENU_OPEN, t("tray.open"), true, None::<&str>)?;
    let current = presence.get();
    let mut presence_items = Vec::new();
    for p in Presence::ALL {
        let item = CheckMenuItem::with_id(
            app,
            format!("{PRESENCE_PREFIX}{}", p.key()),
            t(&format!("tray.presence.{}", p.key())),
            true,
            p == current,
            None::<&str>,
        )?;
        presence_items.push((p, item));
    }
    let status = Submenu::with_id(app, "status", t("tray.status"), true)?;
    for (_, item) in &presence_items {
        status.append(item)?;
    }
    let mute_all = CheckMenuItem::with_id(
        app,
        MENU_MUTE_ALL,
        t("tray.mute_all"),
        true,
        settings.current().desktop.do_not_disturb,
        None::<&str>,
    )?;
    let quit = MenuItem::with_id(app, MENU_QUIT, t("tray.quit"), true, None::<&str>)?;
    let separator = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(app, &[&open, &status, &mute_all, &separator, &quit])?;

    let normal = Image::from_bytes(ICON_PNG)?.to_owned();
    let unread = with_badge(&normal);
    let icon = TrayIconBuilder::with_id(TRAY_ID)
        .icon(normal.clone())
        .tooltip("lanchat")
        .menu(&menu)
        .show_menu_on_left_click(true)
        .build(app)?;
    let tray = Arc::new(Tray {
        icon,
        presence_items,
        mute_all,
        normal,
        unread,
    });
    let handler_tray = Arc::clone(&tray);
    tray.icon.on_menu_event(move |app, event: MenuEvent| {
        handler_tray.on_menu(app, event.id.as_ref(), &settings, &presence, &*actions);
    });
    Ok(tray)
}

impl Tray {
    fn on_menu(
        &self,
        app: &AppHandle,
        id: &str,
        settings: &Arc<LiveSettings>,
        presence: &PresenceSetting,
        actions: &dyn TrayActions,
    ) {
        tracing::info!(item = id, "tray menu");
        match id {
            MENU_OPEN => actions.open_window(app),
            MENU_QUIT => actions.quit(app),
            MENU_MUTE_ALL => {
                let muted = !settings.current().desktop.do_not_disturb;
                let settings = Arc::clone(settings);
                tauri::async_runtime::spawn(async move {
                    let patch = serde_json::json!({"desktop": {"do_not_disturb": muted}});
                    if let Err(e) = settings.update(&patch).await {
                        tracing::warn!("mute all from the tray: {e}");
                    }
                });
            }
            other => {
                if let Some(p) = other
                    .strip_prefix(PRESENCE_PREFIX)
                    .and_then(Presence::from_key)
                {
                    presence.set(p);
                    self.show_presence(p);
                }
            }
        }
    }

    /// Check items toggle themselves when clicked; exactly one status stays checked.
    /// Also called when the presence changed elsewhere (the UI, the idle timer).
    pub fn show_presence(&self, presence: Presence) {
        for (p, item) in &self.presence_items {
            let _ = item.set_checked(*p == presence);
        }
    }

    pub fn show_do_not_disturb(&self, on: bool) {
        let _ = self.mute_all.set_checked(on);
    }

    pub fn show_unread(&self, total: u32, tooltip: &str) {
        let icon = if total > 0 {
            self.unread.clone()
        } else {
            self.normal.clone()
        };
        if let Err(e) = self.icon.set_icon(Some(icon)) {
            tracing::warn!("tray icon: {e}");
        }
        let _ = self.icon.set_tooltip(Some(tooltip));
        let title = (total > 0).then(|| crate::desktop::unread::badge(total));
        let _ = self.icon.set_title(title);
    }
}

/// The icon with a red dot in its top right corner: something is unread.
fn with_badge(icon: &Image<'_>) -> Image<'static> {
    let (w, h) = (icon.width(), icon.height());
    let mut rgba = icon.rgba().to_vec();
    let radius = (w.min(h) as f32) * 0.22;
    let (cx, cy) = (w as f32 - radius - 1.0, radius + 1.0);
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            let d = (dx * dx + dy * dy).sqrt();
            if d <= radius {
                let i = ((y * w + x) * 4) as usize;
                let colour = if d > radius - 1.5 {
                    [255, 255, 255, 255]
                } else {
                    [214, 48, 49, 255]
                };
                rgba[i..i + 4].copy_from_slice(&colour);
            }
        }
    }
    Image::new_owned(rgba, w, h)
}
