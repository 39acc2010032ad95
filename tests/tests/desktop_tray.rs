//! The tray and the single instance, end to end under Xvfb with a session bus, a
//! StatusNotifierWatcher (the panel's side of the tray) and dunst: hidden, the app is
//! one process without GTK or WebKit, the window a child process while shown; the tray
//! shows the unread count; a second launch on the same data directory hands over to the running
//! app (which shows its window) instead of starting a second node, while another data
//! directory runs beside it; "Quit" in the tray menu — clicked over D-Bus as a panel
//! does — says goodbye to the LAN and keeps what was not yet delivered.

mod desktop_session;

use std::process::Command;
use std::time::Instant;

use anyhow::{ensure, Context};
use api_types::{Event, MessageStatus};
use desktop_session::{write_settings, DesktopSession, LIMIT};
use lanchat_tests::chat::{dm, send_dm, wait_contact_online, wait_history, EventRecorder};
use lanchat_tests::{
    artifacts_dir, free_udp_port, lanchat_bin, loopback_mesh_settings, wait_until, NodeProcess,
};
use zbus::zvariant::{OwnedValue, Value};

/// The app's tray item as the watcher lists it: (bus name, object path).
async fn tray_item(bus: &zbus::Connection) -> anyhow::Result<Option<(String, String)>> {
    let reply = bus
        .call_method(
            Some("org.kde.StatusNotifierWatcher"),
            "/StatusNotifierWatcher",
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &(
                "org.kde.StatusNotifierWatcher",
                "RegisteredStatusNotifierItems",
            ),
        )
        .await?;
    let value: OwnedValue = reply.body().deserialize()?;
    let items: Vec<String> = value.try_into()?;
    // Registered as a bus name (ksni) or as "name/path".
    Ok(items.first().map(|item| match item.split_once('/') {
        Some((name, path)) => (name.to_string(), format!("/{path}")),
        None => (item.clone(), String::new()),
    }))
}

async fn item_property(
    bus: &zbus::Connection,
    (name, path): &(String, String),
    property: &str,
) -> anyhow::Result<OwnedValue> {
    let reply = bus
        .call_method(
            Some(name.as_str()),
            path.as_str(),
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &("org.kde.StatusNotifierItem", property),
        )
        .await?;
    Ok(reply.body().deserialize()?)
}

/// The item's object path: the one the watcher was given, or the specification's
/// default for an item registered by bus name (ksni's).
fn item_path(registered: &str) -> String {
    if registered.is_empty() {
        "/StatusNotifierItem".to_string()
    } else {
        registered.to_string()
    }
}

/// Clicks the menu item labelled `label`, as a panel does (com.canonical.dbusmenu).
async fn click_menu(
    bus: &zbus::Connection,
    name: &str,
    menu: &str,
    label: &str,
) -> anyhow::Result<()> {
    for id in 0..64i32 {
        let Ok(reply) = bus
            .call_method(
                Some(name),
                menu,
                Some("com.canonical.dbusmenu"),
                "GetProperty",
                &(id, "label"),
            )
            .await
        else {
            continue;
        };
        let value: OwnedValue = reply.body().deserialize()?;
        if String::try_from(value).ok().as_deref() == Some(label) {
            bus.call_method(
                Some(name),
                menu,
                Some("com.canonical.dbusmenu"),
                "Event",
                &(id, "clicked", Value::from(0i32), 0u32),
            )
            .await?;
            return Ok(());
        }
    }
    anyhow::bail!("no menu item labelled {label:?}")
}

fn maps_window_libraries(pid: u32) -> anyhow::Result<bool> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    Ok(maps.contains("libgtk-3") || maps.contains("libwebkit2gtk"))
}

/// The process's children (the kernel lists them per thread; the main thread's are
/// the ones it spawned from there, and the node spawns from its runtime's threads).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut found: Vec<u32> = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

#[tokio::test]
async fn tray_shows_unread_second_launch_hands_over_and_quit_says_goodbye() -> anyhow::Result<()> {
    let root = artifacts_dir("desktop_tray")?;
    std::fs::remove_dir_all(&root)?;
    std::fs::create_dir_all(&root)?;
    let session = DesktopSession::start(&root.join("session")).await?;
    let bus = zbus::connection::Builder::address(session.bus.as_str())?
        .build()
        .await?;
    let (pa, pb) = (free_udp_port()?, free_udp_port()?);
    let (a_id, sa) = loopback_mesh_settings("Desk", pa, pb, "office")?;
    let (b_id, sb) = loopback_mesh_settings("Peer", pb, pa, "office")?;
    let (dir_a, dir_b) = (root.join("a"), root.join("b"));
    write_settings(&dir_a, sa.clone())?;
    write_settings(&dir_b, sb)?;
    let env = session.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut a = NodeProcess::start(&dir_a, &["window", "--hidden"], &env).await?;
    let b = NodeProcess::serve(&dir_b).await?;
    wait_contact_online(&a, &b_id, true, LIMIT).await?;
    wait_contact_online(&b, &a_id, true, LIMIT).await?;

    // Hidden, the app is one process that loads no window library: the tray and the
    // notifier live in the node, the window is a process of its own.
    let a_pid = a.pid().context("a runs")?;
    ensure!(
        !maps_window_libraries(a_pid)?,
        "the hidden app maps GTK or WebKit"
    );
    ensure!(children(a_pid).is_empty(), "no window process while hidden");

    // The tray item: registered with the watcher, titled "lanchat" while nothing is
    // unread, with the count once something is (panels show the title or the tooltip),
    // and a red dot on the icon.
    let (name, registered) = wait_until(LIMIT, "the tray item registered", || async {
        tray_item(&bus).await.ok().flatten()
    })
    .await
    .with_context(|| a.log())?;
    let item = (name.clone(), item_path(&registered));
    let text = |v: OwnedValue| String::try_from(v).unwrap_or_default();
    let pixmap = |v: OwnedValue| Vec::<(i32, i32, Vec<u8>)>::try_from(v).unwrap_or_default();
    assert_eq!(text(item_property(&bus, &item, "Title").await?), "lanchat");
    let icon_before = pixmap(item_property(&bus, &item, "IconPixmap").await?);
    assert!(
        icon_before
            .iter()
            .any(|(w, h, data)| *w > 0 && data.len() == (w * h * 4) as usize),
        "an ARGB icon"
    );
    send_dm(&b, &dm(&a_id), "are you there?").await?;
    wait_until(LIMIT, "the unread count in the tray", || async {
        let t = text(item_property(&bus, &item, "Title").await.ok()?);
        (t == "(1) lanchat").then_some(())
    })
    .await
    .with_context(|| a.log())?;
    let icon_after = pixmap(item_property(&bus, &item, "IconPixmap").await?);
    assert_ne!(icon_before, icon_after, "the icon shows the unread state");

    // A second launch on the same data directory: no second node; the running app
    // shows its window.
    let api_before = std::fs::read_to_string(dir_a.join("api.json"))?;
    let second = Command::new(lanchat_bin()?)
        .args(["window", "--data-dir"])
        .arg(&dir_a)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .output()?;
    ensure!(
        second.status.success(),
        "the second launch hands over and exits cleanly: {}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir_a.join("api.json"))?,
        api_before,
        "still the first node"
    );
    wait_until(LIMIT, "the running app to show its window", || {
        let shown = !session.visible_windows("lanchat").is_empty();
        async move { shown.then_some(()) }
    })
    .await
    .with_context(|| a.log())?;
    assert!(a.is_running());
    let window_process = children(a_pid);
    ensure!(
        window_process.len() == 1 && maps_window_libraries(window_process[0])?,
        "the window is the node's one child process, with WebKit: {window_process:?}"
    );

    // Autostart: the setting writes an XDG autostart entry that starts this profile
    // hidden, and removes it again.
    let autostart = root.join("session/config/autostart");
    let (status, _) = a
        .put_json(
            "v1/settings",
            &serde_json::json!({"desktop": {"autostart": true}}),
        )
        .await?;
    ensure!(status.is_success(), "autostart on: {status}");
    let entry = wait_until(LIMIT, "the autostart entry", || {
        let found = std::fs::read_dir(&autostart)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path());
        async move { found }
    })
    .await?;
    let text = std::fs::read_to_string(&entry)?;
    assert!(
        text.contains("--data-dir") && text.contains("--hidden"),
        "{text}"
    );
    session.run("desktop-file-validate", &[&entry.to_string_lossy()])?;
    let (status, _) = a
        .put_json(
            "v1/settings",
            &serde_json::json!({"desktop": {"autostart": false}}),
        )
        .await?;
    ensure!(status.is_success(), "autostart off: {status}");
    wait_until(LIMIT, "the autostart entry removed", || {
        let gone = !entry.exists();
        async move { gone.then_some(()) }
    })
    .await?;

    // Another data directory runs beside it.
    let dir_c = root.join("c");
    let (pc, pd) = (free_udp_port()?, free_udp_port()?);
    let (_, mut sc) = loopback_mesh_settings("Other profile", pc, pd, "elsewhere")?;
    sc["lan_mesh"]["enabled"] = serde_json::json!(false);
    write_settings(&dir_c, sc)?;
    let mut c = NodeProcess::start(&dir_c, &["window", "--hidden"], &env).await?;
    ensure!(
        c.get_json("v1/status").await.is_ok(),
        "a second profile runs"
    );
    assert!(c.stop().await?.success());

    // Quit from the tray right after sending: the peer hears goodbye (not a timeout),
    // the process ends, and the message arrives — at once, or from the outbox kept
    // for the next start.
    let events = EventRecorder::start(&b).await?;
    let menu = zbus::zvariant::OwnedObjectPath::try_from(item_property(&bus, &item, "Menu").await?)
        .context("the item's menu path")?
        .to_string();
    let pending = send_dm(&a, &dm(&b_id), "see you tomorrow").await?;
    let clicked = Instant::now();
    click_menu(&bus, &name, &menu, "Quit lanchat").await?;
    let exited = wait_until(LIMIT, "the app to quit", || {
        let running = a.is_running();
        async move { (!running).then_some(()) }
    })
    .await;
    let quit_took = clicked.elapsed();
    exited.with_context(|| a.log())?;
    println!("tray quit: process gone {quit_took:?} after the click");
    events
        .wait_for(LIMIT, "the desktop node offline by goodbye", |events| {
            events.iter().find_map(|e| match e {
                Event::PeerOffline { peer, reason } if peer.peer_id == a_id => Some(reason.clone()),
                _ => None,
            })
        })
        .await
        .and_then(|reason| {
            ensure!(reason == "goodbye", "offline by {reason}, not goodbye");
            Ok(())
        })?;
    assert!(!dir_a.join("api.json").exists(), "a clean stop");

    let a = NodeProcess::serve(&dir_a).await?;
    wait_history(
        &b,
        &dm(&a_id),
        LIMIT,
        "the message sent before quitting",
        |h| h.iter().any(|m| m.id == pending.id),
    )
    .await?;
    wait_history(&a, &dm(&b_id), LIMIT, "it delivered", |h| {
        h.iter()
            .any(|m| m.id == pending.id && m.status == MessageStatus::Delivered)
    })
    .await?;
    Ok(())
}
