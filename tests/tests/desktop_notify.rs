//! Desktop notifications end to end: the desktop app (hidden in the tray) under Xvfb
//! with a real session bus and dunst as the notification service, a headless peer on
//! loopback writing to it. Read back as a person would see them: dunst's count and
//! history; clicked through dunst (`dunstctl action`), which opens the window on the
//! conversation (the UI marks it read). Closing the window keeps the app in the tray,
//! unless that setting is off: then it quits.

mod desktop_session;

use anyhow::{ensure, Context};
use desktop_session::{write_settings, DesktopSession, LIMIT};
use lanchat_tests::chat::{dm, send_dm, wait_contact_online, wait_history};
use lanchat_tests::{
    artifacts_dir, free_udp_port, loopback_mesh_settings, wait_until, NodeProcess,
};

const DESKTOP_NAME: &str = "Li Wei";
const PEER_NAME: &str = "Zhang";

async fn unread(node: &NodeProcess, conversation: &str) -> anyhow::Result<u64> {
    let list = node.get_json("v1/conversations").await?;
    Ok(list
        .as_array()
        .context("conversation list")?
        .iter()
        .find(|c| c["id"] == conversation)
        .and_then(|c| c["unread"].as_u64())
        .unwrap_or(0))
}

/// Waits for the desktop app's log to say `needle` (its notifier logs every decision):
/// the point at which a message has been handled, shown or not.
async fn wait_log(node: &NodeProcess, needle: &str, times: usize) -> anyhow::Result<()> {
    wait_until(LIMIT, needle, || {
        let n = node.log().matches(needle).count();
        async move { (n >= times).then_some(()) }
    })
    .await
    .with_context(|| node.log())
}

#[tokio::test]
async fn notifications_collapse_open_the_conversation_and_respect_mute_and_mentions(
) -> anyhow::Result<()> {
    // Data directories, logs and screenshots stay for a person to look at.
    let root = artifacts_dir("desktop_notify")?;
    std::fs::remove_dir_all(&root)?;
    std::fs::create_dir_all(&root)?;
    let session = DesktopSession::start(&root.join("session")).await?;
    let (pa, pb) = (free_udp_port()?, free_udp_port()?);
    let (a_id, sa) = loopback_mesh_settings(DESKTOP_NAME, pa, pb, "office")?;
    let (b_id, sb) = loopback_mesh_settings(PEER_NAME, pb, pa, "office")?;
    let (dir_a, dir_b) = (root.join("a"), root.join("b"));
    write_settings(&dir_a, sa)?;
    write_settings(&dir_b, sb)?;
    let env = session.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = NodeProcess::start(&dir_a, &["window", "--hidden"], &env).await?;
    let b = NodeProcess::serve(&dir_b).await?;
    wait_contact_online(&a, &b_id, true, LIMIT).await?;
    wait_contact_online(&b, &a_id, true, LIMIT).await?;
    assert!(
        session.visible_windows("lanchat").is_empty(),
        "--hidden starts in the tray"
    );

    // Two DMs to the hidden window: one notification, titled with the sender.
    let conversation = dm(&b_id);
    send_dm(&b, &dm(&a_id), "first one").await?;
    send_dm(&b, &dm(&a_id), "second <b>one</b>").await?;
    wait_history(&a, &conversation, LIMIT, "both DMs", |h| h.len() >= 2).await?;
    wait_log(&a, "notification shown", 2).await?;
    assert_eq!(session.displayed()?, 1, "two messages, one notification");
    assert_eq!(unread(&a, &conversation).await?, 2);

    // Clicking it (dunst invokes the default action) opens the window on that
    // conversation: the UI shows it and marks it read.
    session.dunstctl(&["action", "0"])?;
    let window = wait_until(LIMIT, "the window to open", || {
        let found = session.visible_windows("lanchat").into_iter().next();
        async move { found }
    })
    .await
    .with_context(|| a.log())?;
    wait_until(
        LIMIT,
        "the conversation to be read in the window",
        || async { (unread(&a, &conversation).await.ok()? == 0).then_some(()) },
    )
    .await
    .with_context(|| a.log())?;
    // And the person sees it: the conversation's messages on screen (read by OCR).
    session
        .wait_screen_text(
            &root.join("opened-from-notification.png"),
            &["first one", PEER_NAME],
        )
        .await?;
    let history = session.history()?;
    assert_eq!(history.len(), 1, "{history:?}");
    let (_, summary, body) = &history[0];
    assert_eq!(summary, PEER_NAME);
    assert!(body.contains("second"), "latest preview: {body}");
    assert!(
        body.contains('2'),
        "the count of collapsed messages: {body}"
    );

    // Closing the window keeps the app in the tray (the node still answers).
    session.close_window(&window)?;
    wait_until(LIMIT, "the window to close to the tray", || {
        let gone = session.visible_windows("lanchat").is_empty();
        async move { gone.then_some(()) }
    })
    .await?;
    ensure!(
        a.get_json("v1/status").await.is_ok(),
        "the node keeps running"
    );

    // A group with both; then the DM and the group muted.
    let (status, group) = b
        .http()
        .post(b.api_url("v1/groups"))
        .bearer_auth(&b.token)
        .json(&serde_json::json!({"name": "Team", "members": [a_id]}))
        .send()
        .await
        .map(|r| (r.status(), r))?;
    ensure!(status.is_success(), "create group: {status}");
    let group: serde_json::Value = group.json().await?;
    let group_conversation = group["conversation_id"]
        .as_str()
        .context("group conversation id")?
        .to_string();
    wait_until(LIMIT, "the group at the desktop node", || async {
        let list = a.get_json("v1/conversations").await.ok()?;
        list.as_array()?
            .iter()
            .any(|c| c["id"] == group_conversation.as_str())
            .then_some(())
    })
    .await?;
    let (status, _) = a
        .put_json(
            "v1/settings",
            &serde_json::json!({"desktop": {"muted_conversations": [conversation, group_conversation]}}),
        )
        .await?;
    ensure!(status.is_success(), "mute: {status}");

    send_dm(&b, &dm(&a_id), "muted dm").await?;
    send_dm(&b, &group_conversation, "muted group talk").await?;
    wait_history(
        &a,
        &group_conversation,
        LIMIT,
        "the muted group message",
        |h| h.iter().any(|m| m.text == "muted group talk"),
    )
    .await?;
    wait_history(&a, &conversation, LIMIT, "the muted DM", |h| {
        h.iter().any(|m| m.text == "muted dm")
    })
    .await?;
    // A mention gets through the muted group; everything before it was handled first
    // (the notifier takes events in order), so its notification is the only new one.
    send_dm(&b, &group_conversation, "@Li Wei can you look?").await?;
    wait_log(&a, "notification shown", 3).await?;
    assert_eq!(session.displayed()?, 1, "only the mention notified");
    session.dunstctl(&["close-all"])?;
    let history = session.history()?;
    assert_eq!(history.len(), 2, "{history:?}");
    let (_, summary, body) = &history[0];
    assert_eq!(summary, "Team");
    assert!(body.contains("@Li Wei"), "{body}");
    assert!(
        !history.iter().any(|(_, _, body)| body.contains("muted")),
        "{history:?}"
    );

    // With closing to the tray turned off, a window shown by a script
    // (`POST /api/v1/window/show`, what a second launch asks) and then closed quits the
    // app, cleanly.
    let (status, _) = a
        .put_json(
            "v1/settings",
            &serde_json::json!({"desktop": {"close_to_tray": false}}),
        )
        .await?;
    ensure!(status.is_success(), "close_to_tray off: {status}");
    let shown = a
        .http()
        .post(a.api_url("v1/window/show"))
        .bearer_auth(&a.token)
        .send()
        .await?;
    ensure!(
        shown.status().is_success(),
        "window/show: {}",
        shown.status()
    );
    let window = wait_until(LIMIT, "the window shown on request", || {
        let found = session.visible_windows("lanchat").into_iter().next();
        async move { found }
    })
    .await
    .with_context(|| a.log())?;
    drop(b);
    let mut a = a;
    session.close_window(&window)?;
    wait_until(LIMIT, "the app to quit with its window", || {
        let running = a.is_running();
        async move { (!running).then_some(()) }
    })
    .await
    .with_context(|| a.log())?;
    ensure!(
        a.log().contains("node stopped"),
        "a clean stop, not a crash: {}",
        a.log()
    );
    Ok(())
}
