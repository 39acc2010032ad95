//! The desktop window: a Tauri webview showing the UI that the in-process node serves
//! on loopback. The UI talks to the node over the same local API as in a browser; the
//! window only hands it the token (an init script puts it in sessionStorage before the
//! page's own scripts run), so no Tauri IPC is exposed to the page.

use std::sync::Mutex;

use anyhow::Context;
use tauri::{RunEvent, WebviewUrl, WebviewWindowBuilder};

use crate::node::Node;
use crate::shutdown_signal::ShutdownSignal;

pub const WINDOW_TITLE: &str = "lanchat";

pub fn run(
    runtime: tokio::runtime::Runtime,
    node: Node,
    shutdown: ShutdownSignal,
) -> anyhow::Result<()> {
    tauri::async_runtime::set(runtime.handle().clone());
    let url: tauri::Url = node.url().parse().context("node URL")?;
    let token_js = serde_json::to_string(node.token()).context("token")?;
    let init_script = format!(
        "try {{ window.sessionStorage.setItem('lanchat.token', {token_js}); }} catch (e) {{}}"
    );

    let app = tauri::Builder::default()
        .setup(move |app| {
            WebviewWindowBuilder::new(app, "main", WebviewUrl::External(url))
                .title(WINDOW_TITLE)
                .inner_size(1100.0, 720.0)
                .min_inner_size(800.0, 560.0)
                .initialization_script(&init_script)
                .build()?;
            Ok(())
        })
        .build(tauri::generate_context!())
        .context("cannot open the window")?;

    let handle = app.handle().clone();
    runtime.spawn(async move {
        shutdown.wait().await;
        handle.exit(0);
    });

    // The event loop never returns; the node is stopped from its exit event.
    let node = Mutex::new(Some(node));
    app.run(move |_app, event| {
        if let RunEvent::Exit = event {
            let node = node.lock().ok().and_then(|mut n| n.take());
            if let Some(node) = node {
                tauri::async_runtime::block_on(node.stop());
            }
        }
    });
    Ok(())
}
