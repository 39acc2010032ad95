//! The window process (`lanchat window-view`): a Tauri webview showing the UI that the
//! desktop node serves on loopback. The node starts it when the window is to be shown
//! and it ends when the user closes the window; the node, the tray and notifications
//! live on in the node process (`lanchat_node::desktop`), which never loads GTK or
//! WebKit.
//!
//! The node writes the UI's address and token as the first line of this process's
//! standard input, then requests (show, title); this process reports on its standard
//! output whether the user sees the window (`lanchat_node::desktop::window_protocol`).
//! When its input ends (the node quits, or died) the window closes.
//!
//! The UI talks to the node over the same local API as in a browser; the window only
//! hands it the token (an init script puts it in sessionStorage before the page's own
//! scripts run), so no Tauri IPC is exposed to the page. The node asks the page to open
//! a conversation with a DOM event (`lanchat:open`), or, when the window opens for that,
//! with `lanchat.open` in sessionStorage. `lanchat.desktop` in sessionStorage tells the
//! page it is the desktop window (it offers "Open" and "Show in folder" for files).

use std::io::{BufRead, Write};
use std::sync::Arc;

use anyhow::Context;
use lanchat_node::desktop::window_protocol::{line, FromWindow, Start, ToWindow};
use tauri::{
    AppHandle, Manager, RunEvent, WebviewUrl, WebviewWindow, WebviewWindowBuilder, WindowEvent,
};

const MAIN: &str = "main";

pub fn run_view() -> anyhow::Result<()> {
    let mut input = std::io::stdin().lock();
    let mut first = String::new();
    input
        .read_line(&mut first)
        .context("reading the node's address")?;
    let start: Start = serde_json::from_str(&first).context(
        "the first line is not the node's address (this process is started by the desktop node)",
    )?;
    drop(input);

    let app = tauri::Builder::default()
        .build(tauri::generate_context!())
        .context("cannot open the window")?;
    let window = open(app.handle(), &start)?;
    let reporter = Arc::new(Reporter::default());
    follow_window(&window, Arc::clone(&reporter));
    follow_node(app.handle().clone());

    app.run(move |_app, event| {
        if let RunEvent::Ready = event {
            reporter.report(&window);
        }
    });
    Ok(())
}

fn open(app: &AppHandle, start: &Start) -> anyhow::Result<WebviewWindow> {
    let url: tauri::Url = start.url.parse().context("the node's URL")?;
    let token_js = serde_json::to_string(&start.token)?;
    let open_js = start
        .open
        .as_ref()
        .and_then(|id| serde_json::to_string(id).ok())
        .map(|id| format!("window.sessionStorage.setItem('lanchat.open', {id});"))
        .unwrap_or_default();
    let init_script = format!(
        "try {{ window.sessionStorage.setItem('lanchat.token', {token_js}); window.sessionStorage.setItem('lanchat.desktop', '1'); {open_js} }} catch (e) {{}}"
    );
    let window = WebviewWindowBuilder::new(app, MAIN, WebviewUrl::External(url))
        .title(&start.title)
        .inner_size(1100.0, 720.0)
        .min_inner_size(800.0, 560.0)
        .initialization_script(&init_script)
        .build()
        .context("cannot open the window")?;
    let _ = window.set_focus();
    Ok(window)
}

/// Tells the node whether the user sees the window, when that changes.
#[derive(Default)]
struct Reporter {
    last: std::sync::Mutex<Option<bool>>,
}

impl Reporter {
    fn report(&self, window: &WebviewWindow) {
        let attended = window.is_visible().unwrap_or(false)
            && window.is_focused().unwrap_or(false)
            && !window.is_minimized().unwrap_or(false);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if *last == Some(attended) {
            return;
        }
        *last = Some(attended);
        let mut out = std::io::stdout().lock();
        let sent = out
            .write_all(line(&FromWindow::Attended { attended }).as_bytes())
            .and_then(|()| out.flush());
        if let Err(e) = sent {
            tracing::debug!("the node no longer listens: {e}");
        }
    }
}

fn follow_window(window: &WebviewWindow, reporter: Arc<Reporter>) {
    let watched = window.clone();
    window.on_window_event(move |event| {
        if matches!(
            event,
            WindowEvent::Focused(_) | WindowEvent::Resized(_) | WindowEvent::Moved(_)
        ) {
            reporter.report(&watched);
        }
    });
}

/// Reads the node's requests until its end of the pipe closes, then closes the window.
fn follow_node(app: AppHandle) {
    std::thread::spawn(move || {
        let input = std::io::stdin().lock();
        for text in input.lines() {
            let Ok(text) = text else { break };
            match serde_json::from_str::<ToWindow>(&text) {
                Ok(request) => {
                    let handle = app.clone();
                    let _ = app.run_on_main_thread(move || apply(&handle, request));
                }
                Err(e) => tracing::debug!("unexpected line from the node: {e}"),
            }
        }
        // The node quit (or died): the window goes with it, not as the user's close
        // (which exits with `CLOSED_BY_USER`).
        app.exit(1);
    });
}

fn apply(app: &AppHandle, request: ToWindow) {
    let Some(window) = app.get_webview_window(MAIN) else {
        return;
    };
    match request {
        ToWindow::Show { open } => {
            let _ = window.show();
            let _ = window.unminimize();
            let _ = window.set_focus();
            if let Some(id_js) = open.and_then(|id| serde_json::to_string(&id).ok()) {
                let _ = window.eval(format!(
                    "window.dispatchEvent(new CustomEvent('lanchat:open', {{ detail: {id_js} }}));"
                ));
            }
        }
        ToWindow::Title { title } => {
            let _ = window.set_title(&title);
        }
    }
}
