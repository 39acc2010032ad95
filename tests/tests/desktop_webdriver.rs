//! One conversation driven through the real desktop window by WebDriver (issue 18):
//! `tauri-driver` in front of Debian's `WebKitWebDriver` starts the desktop app under
//! Xvfb with its own session bus (`desktop_session`), and the test works the window's
//! own WebKitGTK webview as a person would — the contact in the rail, the composer,
//! Enter — while a headless peer on loopback answers through its API.
//!
//! `a_conversation_through_the_real_window`: the window lists the peer online, opens
//! the DM, sends a typed message (the peer's node stores exactly that text), shows the
//! peer's reply without a reload, and marks its own message read once the peer has read
//! it. Screenshots (of the X screen: WebKitWebDriver's own screenshot of an idle window
//! can hang) and logs stay in `target/test-artifacts/desktop_webdriver/`.

mod desktop_session;

use anyhow::Context;
use desktop_session::{write_pair, DesktopSession, LIMIT};
use lanchat_tests::chat::dm;
use lanchat_tests::webdriver::Browser;
use lanchat_tests::{artifacts_dir, lanchat_bin, wait_until, NodeProcess};
use serde_json::{json, Value};

const KEY_ENTER: char = '\u{E007}';

/// The rendered text of the first element matching `css` (`innerText`: WebKitWebDriver's
/// "element text" of a row of several blocks is its first block only).
async fn inner_text(window: &Browser, css: &str) -> Option<String> {
    let css = serde_json::to_string(css).ok()?;
    let v = window
        .execute(&format!(
            "return document.querySelector({css})?.innerText ?? null"
        ))
        .await
        .ok()?;
    v.as_str().map(str::to_string)
}

async fn wait_inner_text(
    window: &Browser,
    css: &str,
    accept: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    let accept = &accept;
    wait_until(LIMIT, &format!("the text of {css}"), || async move {
        inner_text(window, css).await.filter(|t| accept(t))
    })
    .await
}

async fn texts_on(node: &NodeProcess, conversation: &str) -> Option<Vec<String>> {
    let page: Value = node
        .get_json(&format!(
            "v1/conversations/{conversation}/messages?limit=20"
        ))
        .await
        .ok()?;
    Some(
        page["messages"]
            .as_array()?
            .iter()
            .filter_map(|m| m["text"].as_str().map(str::to_string))
            .collect(),
    )
}

#[tokio::test]
async fn a_conversation_through_the_real_window() -> anyhow::Result<()> {
    let root = artifacts_dir("desktop_webdriver")?;
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let session = DesktopSession::start(&root.join("session")).await?;

    let (a_id, b_id, dir_a, dir_b) = write_pair(&root)?;
    let b = NodeProcess::serve(&dir_b).await?;

    let args = vec![
        "window".to_string(),
        "--data-dir".to_string(),
        dir_a.display().to_string(),
    ];
    let window = Browser::start_window(
        &lanchat_bin()?,
        &args,
        &session.env(),
        &root.join("window.log"),
    )
    .await
    .context("the desktop window under tauri-driver")?;
    let result = async {
        // The rail lists Zhang, online, without a reload.
        let user_b = format!("[data-testid=user-{b_id}]");
        wait_inner_text(&window, &user_b, |t| t.contains("Zhang")).await?;
        wait_until(LIMIT, "Zhang online in the window", || async {
            let online = window
                .execute(&format!(
                    "return document.querySelector('{user_b}')?.dataset.online ?? null"
                ))
                .await
                .ok()?;
            (online == json!("true")).then_some(())
        })
        .await?;
        session.screenshot(&root.join("window-rail.png"))?;

        // Li Wei opens the DM and types a message; Enter sends it.
        window.click(&user_b).await?;
        wait_inner_text(&window, "[data-testid=conversation-title]", |t| {
            t == "Zhang"
        })
        .await?;
        let hello = "Hello Zhang, 你好 — from the window";
        window
            .type_text("[data-testid=composer]", &format!("{hello}{KEY_ENTER}"))
            .await?;
        wait_until(LIMIT, "the message in the window's history", || async {
            let shown = window.shown_messages().await.ok()?;
            shown
                .iter()
                .any(|(t, outgoing, _)| t == hello && *outgoing)
                .then_some(())
        })
        .await?;
        let on_b = dm(&a_id);
        wait_until(LIMIT, "the message on Zhang's node", || async {
            texts_on(&b, &on_b)
                .await
                .filter(|texts| texts.iter().any(|t| t == hello))
                .map(drop)
        })
        .await?;

        // Zhang reads it (the read receipt goes back) and replies through the API.
        let resp = b
            .http()
            .post(b.api_url(&format!("v1/conversations/{on_b}/read")))
            .bearer_auth(&b.token)
            .json(&json!({}))
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "read: {}", resp.status());
        let reply = "收到, thanks";
        let resp = b
            .http()
            .post(b.api_url(&format!("v1/conversations/{on_b}/messages")))
            .bearer_auth(&b.token)
            .json(&json!({ "text": reply }))
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "reply: {}", resp.status());

        // The window shows the reply, and its own message read, without a reload.
        wait_until(
            LIMIT,
            "the reply and the read mark in the window",
            || async {
                let shown = window.shown_messages().await.ok()?;
                let replied = shown
                    .iter()
                    .any(|(t, outgoing, _)| t == reply && !*outgoing);
                let read = shown
                    .iter()
                    .any(|(t, outgoing, status)| t == hello && *outgoing && status == "read");
                (replied && read).then_some(())
            },
        )
        .await?;
        session.screenshot(&root.join("window-conversation.png"))?;
        anyhow::Ok(())
    }
    .await;
    if result.is_err() {
        let _ = session.screenshot(&root.join("window-failed.png"));
        let ids = window
            .execute("return [...document.querySelectorAll('[data-testid^=user-]')].map(e => e.dataset.testid)")
            .await;
        eprintln!("user rows in the window: {ids:?}");
    }
    let quit = window.quit().await;
    result.with_context(|| {
        format!(
            "window log: {}",
            std::fs::read_to_string(root.join("window.log")).unwrap_or_default()
        )
    })?;
    // Ending the session closes the app: nothing of it is left running.
    quit?;
    Ok(())
}
