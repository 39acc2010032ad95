//! The desktop app: a Tauri webview showing the UI that the in-process node serves on
//! loopback, a tray icon, desktop notifications, one instance per data directory and
//! the autostart entry (the parts live in `crate::desktop`).
//!
//! The UI talks to the node over the same local API as in a browser; the window only
//! hands it the token (an init script puts it in sessionStorage before the page's own
//! scripts run), so no Tauri IPC is exposed to the page. The shell asks the page to
//! open a conversation with a DOM event (`lanchat:open`), or, for a window it creates
//! for that, with `lanchat.open` in sessionStorage. `lanchat.desktop` in sessionStorage
//! tells the page it is the desktop window (it offers "Open" and "Show in folder" for
//! files, which act on this desktop).
//!
//! Hidden to the tray, the window is destroyed rather than hidden: its WebKit processes
//! end and their memory is given back; showing it again loads the UI anew (about a
//! second), while the node keeps running in this process.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context;
use api_types::Event;
use storage::Store;
use tauri::{AppHandle, Manager, RunEvent, WebviewUrl, WebviewWindow, WebviewWindowBuilder};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::desktop::notifier::{self, NotifierParts, Shell};
use crate::desktop::presence::PresenceSetting;
use crate::desktop::tray::{self, Tray, TrayActions};
use crate::desktop::{autostart, instance, unread};
use lanchat_node::live_settings::LiveSettings;
use lanchat_node::node::{Node, NodeConfig};
use lanchat_node::shutdown_signal::ShutdownSignal;

pub const WINDOW_TITLE: &str = "lanchat";
const MAIN: &str = "main";

/// What the window needs from the started node.
struct NodeParts {
    url: tauri::Url,
    token_js: String,
    settings: Arc<LiveSettings>,
    store: Store,
    events: broadcast::Sender<Event>,
    data_dir: PathBuf,
    presence: PresenceSetting,
}

pub fn run(
    runtime: tokio::runtime::Runtime,
    config: NodeConfig,
    shutdown: ShutdownSignal,
    start_hidden: bool,
) -> anyhow::Result<()> {
    tauri::async_runtime::set(runtime.handle().clone());
    let shell: Arc<OnceLock<Arc<WindowShell>>> = Arc::new(OnceLock::new());
    let parts: Arc<Mutex<Option<NodeParts>>> = Arc::new(Mutex::new(None));
    let stop_tasks = CancellationToken::new();
    let tokio_handle = runtime.handle().clone();

    let app = tauri::Builder::default()
        .plugin(instance::plugin(&config.data_dir, {
            let shell = Arc::clone(&shell);
            move |_app| {
                if let Some(shell) = shell.get() {
                    shell.show(None);
                }
            }
        }))
        .setup({
            let shell = Arc::clone(&shell);
            let parts = Arc::clone(&parts);
            let stop_tasks = stop_tasks.clone();
            move |app| {
                // Setup runs on the main thread; the shell's tasks run on the node's runtime.
                let _runtime = tokio_handle.enter();
                let parts = parts
                    .lock()
                    .ok()
                    .and_then(|mut p| p.take())
                    .context("the node was not started before the window")?;
                let started = start_shell(app.handle(), parts, stop_tasks, start_hidden)?;
                let _ = shell.set(started);
                Ok(())
            }
        })
        .build(tauri::generate_context!())
        .context("cannot open the window")?;
    // A second launch on this data directory has handed over and exited in `build`.

    let node = runtime
        .block_on(Node::start(config))
        .context("cannot start the node")?;
    let url: tauri::Url = node.url().parse().context("node URL")?;
    let token_js = serde_json::to_string(node.token()).context("token")?;
    let (events, _) = broadcast::channel(256);
    forward_events(&runtime, node.events(), events.clone(), stop_tasks.clone());
    if let Ok(mut slot) = parts.lock() {
        *slot = Some(NodeParts {
            url,
            token_js,
            settings: node.settings(),
            store: node.store(),
            events,
            data_dir: node.data_dir().to_path_buf(),
            presence: PresenceSetting::from(node.presence()),
        });
    }

    // A signal is acted on once the event loop runs: an exit requested before it does
    // was lost (CI: SIGTERM 26 ms after the node started left the process running).
    let handle = app.handle().clone();
    let loop_running = Arc::new(tokio::sync::Notify::new());
    let running = Arc::clone(&loop_running);
    runtime.spawn(async move {
        shutdown.wait().await;
        running.notified().await;
        handle.exit(0);
    });

    // The event loop never returns; the node is stopped from its exit event.
    let node = Mutex::new(Some(node));
    app.run(move |app, event| match event {
        // Stores the permit when the waiter is not waiting yet.
        RunEvent::Ready => loop_running.notify_one(),
        // The last window closed (hidden to the tray): keep running unless the user
        // turned closing-to-tray off. A quit from the tray or a signal has a code.
        RunEvent::ExitRequested {
            code: None, api, ..
        } => {
            let keep = shell
                .get()
                .is_some_and(|s| s.settings.current().desktop.close_to_tray);
            if keep {
                api.prevent_exit();
            }
        }
        RunEvent::Exit => {
            stop_tasks.cancel();
            let node = node.lock().ok().and_then(|mut n| n.take());
            if let Some(node) = node {
                tauri::async_runtime::block_on(node.stop());
            }
            let _ = app;
        }
        _ => {}
    });
    Ok(())
}

/// The desktop tasks subscribe to one in-process copy of the node's event stream.
fn forward_events(
    runtime: &tokio::runtime::Runtime,
    mut from: broadcast::Receiver<Event>,
    to: broadcast::Sender<Event>,
    stop: CancellationToken,
) {
    runtime.spawn(async move {
        loop {
            let event = tokio::select! {
                e = from.recv() => e,
                _ = stop.cancelled() => break,
            };
            match event {
                Ok(event) => {
                    let _ = to.send(event);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let _ = to.send(Event::Resync);
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

fn start_shell(
    app: &AppHandle,
    parts: NodeParts,
    stop: CancellationToken,
    start_hidden: bool,
) -> anyhow::Result<Arc<WindowShell>> {
    let settings = Arc::clone(&parts.settings);
    let lang = settings
        .current()
        .ui
        .language
        .unwrap_or_else(notifier::system_language);
    let presence = parts.presence.clone();
    let shell = Arc::new(WindowShell {
        app: app.clone(),
        url: parts.url,
        token_js: parts.token_js,
        settings: Arc::clone(&settings),
        title: Mutex::new(WINDOW_TITLE.to_string()),
        tray: OnceLock::new(),
    });
    match tray::build(
        app,
        lang,
        Arc::clone(&settings),
        presence.clone(),
        Arc::clone(&shell) as Arc<dyn TrayActions>,
    ) {
        Ok(tray) => {
            let _ = shell.tray.set(tray);
        }
        // A desktop without a tray still gets the window and notifications.
        Err(e) => tracing::warn!("no tray icon: {e}"),
    }
    if !start_hidden {
        shell.show(None);
    }

    notifier::spawn(NotifierParts {
        settings: Arc::clone(&settings),
        store: parts.store.clone(),
        events: parts.events.subscribe(),
        presence,
        shell: Arc::clone(&shell) as Arc<dyn Shell>,
        stop: stop.clone(),
    });
    let title_shell = Arc::clone(&shell);
    unread::spawn(
        parts.store,
        parts.events.subscribe(),
        move |total| title_shell.on_main_thread(move |shell| shell.show_unread(total)),
        stop.clone(),
    );
    follow_presence(Arc::clone(&shell), parts.presence.clone(), stop.clone());
    follow_settings(Arc::clone(&shell), parts.data_dir, stop);
    Ok(shell)
}

/// Keeps the tray's status check on the node's presence, whoever changed it (the UI's
/// picker, `PUT /api/v1/presence`, the idle timer, the tray itself).
fn follow_presence(shell: Arc<WindowShell>, presence: PresenceSetting, stop: CancellationToken) {
    let mut changes = presence.subscribe();
    tauri::async_runtime::spawn(async move {
        loop {
            let now = PresenceSetting::shown(changes.borrow_and_update().presence);
            shell.on_main_thread(move |shell| {
                if let Some(tray) = shell.tray.get() {
                    tray.show_presence(now);
                }
            });
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                _ = stop.cancelled() => break,
            }
        }
    });
}

/// Applies settings the shell owns whenever they change: the autostart entry and the
/// tray's "mute all" check.
fn follow_settings(shell: Arc<WindowShell>, data_dir: PathBuf, stop: CancellationToken) {
    let mut changes = shell.settings.subscribe();
    tauri::async_runtime::spawn(async move {
        let mut applied: Option<bool> = None;
        loop {
            let desktop = changes.borrow_and_update().desktop.clone();
            let do_not_disturb = desktop.do_not_disturb;
            shell.on_main_thread(move |shell| {
                if let Some(tray) = shell.tray.get() {
                    tray.show_do_not_disturb(do_not_disturb);
                }
            });
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
                _ = stop.cancelled() => break,
            }
        }
    });
}

pub struct WindowShell {
    app: AppHandle,
    url: tauri::Url,
    token_js: String,
    settings: Arc<LiveSettings>,
    /// The title with the unread count, for the window now and one created later.
    title: Mutex<String>,
    tray: OnceLock<Arc<Tray>>,
}

impl WindowShell {
    /// Runs `f` on the event loop's thread without waiting for it. Tauri's window and
    /// menu setters wait for the main thread to run them: called from the node's
    /// runtime while the main thread waits for the node to stop (the exit event), they
    /// blocked both of its workers and the stop never finished (a SIGTERM right after
    /// the start left the process running).
    fn on_main_thread(self: &Arc<Self>, f: impl FnOnce(&WindowShell) + Send + 'static) {
        let shell = Arc::clone(self);
        if let Err(e) = self.app.run_on_main_thread(move || f(&shell)) {
            tracing::debug!("the event loop has ended: {e}");
        }
    }

    fn window(&self) -> Option<WebviewWindow> {
        self.app.get_webview_window(MAIN)
    }

    fn current_title(&self) -> String {
        self.title
            .lock()
            .map(|t| t.clone())
            .unwrap_or_else(|_| WINDOW_TITLE.to_string())
    }

    /// Shows the window (creating it when it was released), optionally with a
    /// conversation open.
    pub fn show(&self, open: Option<&str>) {
        if let Some(window) = self.window() {
            let _ = window.show();
            let _ = window.unminimize();
            let _ = window.set_focus();
            if let Some(id) = open {
                if let Ok(id_js) = serde_json::to_string(id) {
                    let _ = window.eval(format!(
                        "window.dispatchEvent(new CustomEvent('lanchat:open', {{ detail: {id_js} }}));"
                    ));
                }
            }
            return;
        }
        let open_js = open
            .and_then(|id| serde_json::to_string(id).ok())
            .map(|id| format!("window.sessionStorage.setItem('lanchat.open', {id});"))
            .unwrap_or_default();
        let init_script = format!(
            "try {{ window.sessionStorage.setItem('lanchat.token', {}); window.sessionStorage.setItem('lanchat.desktop', '1'); {open_js} }} catch (e) {{}}",
            self.token_js
        );
        let built =
            WebviewWindowBuilder::new(&self.app, MAIN, WebviewUrl::External(self.url.clone()))
                .title(self.current_title())
                .inner_size(1100.0, 720.0)
                .min_inner_size(800.0, 560.0)
                .initialization_script(&init_script)
                .build();
        match built {
            Ok(window) => {
                let _ = window.set_focus();
            }
            Err(e) => tracing::error!("cannot open the window: {e}"),
        }
    }

    fn show_unread(&self, total: u32) {
        let title = unread::title(total, WINDOW_TITLE);
        if let Ok(mut t) = self.title.lock() {
            *t = title.clone();
        }
        if let Some(window) = self.window() {
            let _ = window.set_title(&title);
        }
        if let Some(tray) = self.tray.get() {
            tray.show_unread(total, &title);
        }
    }
}

impl TrayActions for WindowShell {
    fn open_window(&self, _app: &AppHandle) {
        self.show(None);
    }

    fn quit(&self, app: &AppHandle) {
        // The exit event stops the node: goodbye to the LAN, links closed, the outbox
        // kept in the database for the next start.
        app.exit(0);
    }
}

impl Shell for WindowShell {
    fn attended(&self) -> bool {
        self.window().is_some_and(|w| {
            w.is_visible().unwrap_or(false)
                && w.is_focused().unwrap_or(false)
                && !w.is_minimized().unwrap_or(false)
        })
    }

    fn open_conversation(&self, conversation_id: &str) {
        self.show(Some(conversation_id));
    }
}
