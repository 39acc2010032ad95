//! `lanchat-node window`: the node with its desktop shell around it — the tray, the
//! notifier, the unread count in the title and tooltip, the autostart entry, and the
//! window process ([`super::window`]). A second launch on the same data directory asks
//! the running node to show its window (`POST /api/v1/window/show`) and exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::notifier::{self, NotifierParts};
use super::presence::PresenceSetting;
use super::tray::{self, Tray, TrayActions};
use super::window::{WindowConfig, WindowProcess};
use super::{autostart, unread};
use crate::live_settings::LiveSettings;
use crate::node::{Node, NodeConfig};
use crate::shutdown_signal::ShutdownSignal;

pub const WINDOW_TITLE: &str = "lanchat";

pub fn run(data_dir: PathBuf, api_addr: SocketAddr, hidden: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        crate::cli::has_display(),
        "no display for a window (DISPLAY and WAYLAND_DISPLAY are unset): run `lanchat serve` \
         for a headless node, whose UI opens in a browser"
    );
    if crate::cli::remote::show_window(&data_dir)? {
        println!(
            "lanchat already runs on {}: its window is shown.",
            data_dir.display()
        );
        return Ok(());
    }
    let runtime = crate::node_runtime()?;
    let shutdown = runtime.block_on(async { ShutdownSignal::install() });
    let node = runtime
        .block_on(Node::start(NodeConfig { data_dir, api_addr }))
        .context("cannot start the node")?;
    runtime.block_on(async move {
        let quit = CancellationToken::new();
        let shell = DesktopShell::start(&node, hidden, quit.clone()).await;
        tokio::select! {
            () = shutdown.wait() => {}
            () = quit.cancelled() => {}
        }
        // Goodbye to the LAN while the window closes: a quit is done within 2 s.
        tokio::join!(shell.stop(), node.stop());
    });
    Ok(())
}

struct DesktopShell {
    stop: CancellationToken,
    window: WindowProcess,
    tray: Option<Arc<Tray>>,
    tasks: Vec<JoinHandle<()>>,
}

/// The tray's and the notifier's view of the window and of quitting.
struct Actions {
    window: WindowProcess,
    quit: CancellationToken,
}

impl TrayActions for Actions {
    fn open_window(&self) {
        self.window.show(None);
    }

    fn quit(&self) {
        // The node stops after: goodbye to the LAN, links closed, the outbox kept.
        self.quit.cancel();
    }
}

impl notifier::Shell for Actions {
    fn attended(&self) -> bool {
        self.window.attended()
    }

    fn open_conversation(&self, conversation_id: &str) {
        self.window.show(Some(conversation_id.to_string()));
    }
}

impl DesktopShell {
    async fn start(node: &Node, hidden: bool, quit: CancellationToken) -> DesktopShell {
        let stop = CancellationToken::new();
        let settings = node.settings();
        let presence = PresenceSetting::from(node.presence());
        let lang = settings
            .current()
            .ui
            .language
            .unwrap_or_else(notifier::system_language);
        let closed_settings = Arc::clone(&settings);
        let closed_quit = quit.clone();
        let (window, window_task) = WindowProcess::spawn(WindowConfig {
            binary: super::app_binary(),
            url: node.url().to_string(),
            token: node.token().to_string(),
            on_closed_by_user: Box::new(move || {
                if !closed_settings.current().desktop.close_to_tray {
                    tracing::info!("window closed and closing to the tray is off: quitting");
                    closed_quit.cancel();
                }
            }),
        });
        let actions = Arc::new(Actions {
            window: window.clone(),
            quit,
        });
        let tray = match tray::spawn(
            lang,
            Arc::clone(&settings),
            presence.clone(),
            Arc::clone(&actions) as Arc<dyn TrayActions>,
        )
        .await
        {
            Ok(tray) => Some(Arc::new(tray)),
            // A desktop without a tray still gets the window and notifications.
            Err(e) => {
                tracing::warn!("no tray icon: {e}");
                None
            }
        };
        if !hidden {
            window.show(None);
        }
        let mut tasks = vec![window_task];
        tasks.push(notifier::spawn(NotifierParts {
            settings: Arc::clone(&settings),
            store: node.store(),
            events: node.events(),
            presence: presence.clone(),
            shell: actions as Arc<dyn notifier::Shell>,
            stop: stop.clone(),
        }));
        let (title_window, title_tray) = (window.clone(), tray.clone());
        tasks.push(unread::spawn(
            node.store(),
            node.events(),
            move |total| {
                let title = unread::title(total, WINDOW_TITLE);
                title_window.set_title(title.clone());
                if let Some(tray) = title_tray.clone() {
                    tokio::spawn(async move { tray.show_unread(total, &title).await });
                }
            },
            stop.clone(),
        ));
        if let Some(tray) = &tray {
            tasks.push(follow_presence(Arc::clone(tray), presence, stop.clone()));
        }
        tasks.push(follow_settings(
            tray.clone(),
            settings,
            node.data_dir().to_path_buf(),
            stop.clone(),
        ));
        tasks.push(answer_show_requests(node, window.clone(), stop.clone()));
        DesktopShell {
            stop,
            window,
            tray,
            tasks,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.window.stop().await;
        if let Some(tray) = &self.tray {
            tray.remove().await;
        }
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::warn!("a desktop task failed: {e}");
            }
        }
    }
}

/// `POST /api/v1/window/show` (a second launch) shows the window.
fn answer_show_requests(
    node: &Node,
    window: WindowProcess,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let requests = node.window_door().connect();
    tokio::spawn(async move {
        let Some(mut requests) = requests else {
            return;
        };
        loop {
            tokio::select! {
                request = requests.recv() => match request {
                    Some(open) => {
                        tracing::info!("asked to show the window (a second launch?)");
                        window.show(open);
                    }
                    None => break,
                },
                () = stop.cancelled() => break,
            }
        }
    })
}

/// Keeps the tray's status on the node's presence, whoever changed it (the UI's
/// picker, `PUT /api/v1/presence`, the idle timer, the tray itself).
fn follow_presence(
    tray: Arc<Tray>,
    presence: PresenceSetting,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let mut changes = presence.subscribe();
    tokio::spawn(async move {
        loop {
            let now = PresenceSetting::shown(changes.borrow_and_update().presence);
            tray.show_presence(now).await;
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                () = stop.cancelled() => break,
            }
        }
    })
}

/// Applies settings the shell owns whenever they change: the autostart entry and the
/// tray's "mute all" check.
fn follow_settings(
    tray: Option<Arc<Tray>>,
    settings: Arc<LiveSettings>,
    data_dir: PathBuf,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let mut changes = settings.subscribe();
    tokio::spawn(async move {
        let mut applied: Option<bool> = None;
        loop {
            let desktop = changes.borrow_and_update().desktop.clone();
            if let Some(tray) = &tray {
                tray.show_do_not_disturb(desktop.do_not_disturb).await;
            }
            if applied != Some(desktop.autostart) {
                let dir = data_dir.clone();
                let enabled = desktop.autostart;
                match tokio::task::spawn_blocking(move || autostart::apply(enabled, &dir)).await {
                    Ok(Ok(())) => applied = Some(enabled),
                    Ok(Err(e)) => tracing::warn!("autostart: {e}"),
                    Err(e) => tracing::warn!("autostart task: {e}"),
                }
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                () = stop.cancelled() => break,
            }
        }
    })
}
