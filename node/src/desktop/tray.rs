//! The tray icon: shows whether anything is unread, and a menu to open the window, set
//! the status (online / away / busy), mute all notifications and quit.
//!
//! A StatusNotifierItem on the session bus (ksni, over zbus): the panel draws the icon
//! and the menu (com.canonical.dbusmenu) from what this process exports, so the tray
//! needs no GUI toolkit and lives in the node process while the window is closed. The
//! unread count goes into the item's title and tooltip ("(3) lanchat"), and the icon
//! gets a red dot.

use std::sync::Arc;

use api_types::Language;
use ksni::menu::{CheckmarkItem, MenuItem, RadioGroup, RadioItem, StandardItem, SubMenu};
use ksni::TrayMethods;

use super::presence::{Presence, PresenceSetting};
use crate::live_settings::LiveSettings;

const ICON_PNG: &[u8] = include_bytes!("../../../src-tauri/icons/icon.png");
/// Panels draw tray icons at 16–48 px; the item sends this size, not the 256 px file.
const ICON_SIZE: u32 = 64;

/// What the tray's menu items do; the desktop shell implements it.
pub trait TrayActions: Send + Sync + 'static {
    fn open_window(&self);
    fn quit(&self);
}

#[derive(Debug, thiserror::Error)]
pub enum TrayError {
    #[error("the tray icon image: {0}")]
    Icon(#[from] image::ImageError),
    #[error("no tray on this desktop: {0}")]
    Service(#[from] ksni::Error),
}

/// The running tray; updates go to the panel at once.
pub struct Tray {
    handle: ksni::Handle<TrayItem>,
}

struct TrayItem {
    lang: Language,
    settings: Arc<LiveSettings>,
    presence: PresenceSetting,
    actions: Arc<dyn TrayActions>,
    /// As checked in the menu: the node's presence and the "mute all" setting.
    shown_presence: Presence,
    do_not_disturb: bool,
    unread: u32,
    title: String,
    normal: ksni::Icon,
    badged: ksni::Icon,
}

pub async fn spawn(
    lang: Language,
    settings: Arc<LiveSettings>,
    presence: PresenceSetting,
    actions: Arc<dyn TrayActions>,
) -> Result<Tray, TrayError> {
    let rgba = image::load_from_memory_with_format(ICON_PNG, image::ImageFormat::Png)?
        .thumbnail(ICON_SIZE, ICON_SIZE)
        .to_rgba8();
    let (width, height) = rgba.dimensions();
    let pixels = rgba.into_raw();
    let item = TrayItem {
        lang,
        do_not_disturb: settings.current().desktop.do_not_disturb,
        shown_presence: presence.get(),
        settings,
        presence,
        actions,
        unread: 0,
        title: super::shell::WINDOW_TITLE.to_string(),
        normal: argb_icon(&pixels, width, height),
        badged: argb_icon(&with_badge(&pixels, width, height), width, height),
    };
    // A panel that starts after us (or restarts) still gets the icon: without a
    // watcher or a host yet, the item waits for them instead of giving up.
    let handle = item.assume_sni_available(true).spawn().await?;
    Ok(Tray { handle })
}

impl Tray {
    /// Also called when the presence changed elsewhere (the UI, the idle timer).
    pub async fn show_presence(&self, presence: Presence) {
        self.handle.update(|t| t.shown_presence = presence).await;
    }

    pub async fn show_do_not_disturb(&self, on: bool) {
        self.handle.update(|t| t.do_not_disturb = on).await;
    }

    pub async fn show_unread(&self, total: u32, title: &str) {
        let title = title.to_string();
        self.handle
            .update(|t| {
                t.unread = total;
                t.title = title;
            })
            .await;
    }

    /// Takes the item off the bus (the panel removes the icon).
    pub async fn remove(&self) {
        self.handle.shutdown().await;
    }
}

impl ksni::Tray for TrayItem {
    fn id(&self) -> String {
        "lanchat".into()
    }

    fn title(&self) -> String {
        self.title.clone()
    }

    fn category(&self) -> ksni::Category {
        ksni::Category::Communications
    }

    fn icon_pixmap(&self) -> Vec<ksni::Icon> {
        let icon = if self.unread > 0 {
            &self.badged
        } else {
            &self.normal
        };
        vec![icon.clone()]
    }

    fn tool_tip(&self) -> ksni::ToolTip {
        ksni::ToolTip {
            title: self.title.clone(),
            ..Default::default()
        }
    }

    /// A left click on the icon opens the window (the menu is on the right button).
    fn activate(&mut self, _x: i32, _y: i32) {
        self.actions.open_window();
    }

    fn menu(&self) -> Vec<MenuItem<Self>> {
        let t = |key: &str| i18n::t(self.lang, key);
        let presence_options = Presence::ALL
            .iter()
            .map(|p| RadioItem {
                label: t(&format!("tray.presence.{}", p.key())),
                ..Default::default()
            })
            .collect();
        let selected = Presence::ALL
            .iter()
            .position(|p| *p == self.shown_presence)
            .unwrap_or(0);
        vec![
            StandardItem {
                label: t("tray.open"),
                activate: Box::new(|tray: &mut Self| tray.actions.open_window()),
                ..Default::default()
            }
            .into(),
            SubMenu {
                label: t("tray.status"),
                submenu: vec![RadioGroup {
                    selected,
                    select: Box::new(|tray: &mut Self, index: usize| {
                        if let Some(p) = Presence::ALL.get(index) {
                            tray.presence.set(*p);
                            tray.shown_presence = *p;
                        }
                    }),
                    options: presence_options,
                }
                .into()],
                ..Default::default()
            }
            .into(),
            CheckmarkItem {
                label: t("tray.mute_all"),
                checked: self.do_not_disturb,
                activate: Box::new(|tray: &mut Self| {
                    let muted = !tray.do_not_disturb;
                    tray.do_not_disturb = muted;
                    let settings = Arc::clone(&tray.settings);
                    tokio::spawn(async move {
                        let patch = serde_json::json!({"desktop": {"do_not_disturb": muted}});
                        if let Err(e) = settings.update(&patch).await {
                            tracing::warn!("mute all from the tray: {e}");
                        }
                    });
                }),
                ..Default::default()
            }
            .into(),
            MenuItem::Separator,
            StandardItem {
                label: t("tray.quit"),
                activate: Box::new(|tray: &mut Self| {
                    tracing::info!("quit from the tray");
                    tray.actions.quit();
                }),
                ..Default::default()
            }
            .into(),
        ]
    }
}

/// StatusNotifierItem pixmaps are ARGB32 in network byte order.
fn argb_icon(rgba: &[u8], width: u32, height: u32) -> ksni::Icon {
    let data = rgba
        .chunks_exact(4)
        .flat_map(|p| [p[3], p[0], p[1], p[2]])
        .collect();
    ksni::Icon {
        width: i32::try_from(width).unwrap_or(0),
        height: i32::try_from(height).unwrap_or(0),
        data,
    }
}

/// The icon with a red dot in its top right corner: something is unread.
fn with_badge(rgba: &[u8], w: u32, h: u32) -> Vec<u8> {
    let mut out = rgba.to_vec();
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
                if let Some(pixel) = out.get_mut(i..i + 4) {
                    pixel.copy_from_slice(&colour);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixmaps_are_argb_and_the_badge_marks_the_corner_only() {
        let icon = argb_icon(&[1, 2, 3, 4], 1, 1);
        assert_eq!(icon.data, vec![4, 1, 2, 3]);
        let plain = vec![0u8; 32 * 32 * 4];
        let badged = with_badge(&plain, 32, 32);
        let at = |x: usize, y: usize| &badged[(y * 32 + x) * 4..(y * 32 + x) * 4 + 4];
        assert_eq!(at(32 - 8, 8), &[214, 48, 49, 255], "the dot, top right");
        assert_eq!(at(2, 30), &[0, 0, 0, 0], "bottom left untouched");
    }
}
