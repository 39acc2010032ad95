//! The first start and the keyboard, in a real browser (Chromium) against real nodes:
//! the welcome asks for a name (offered from the system account), the office secret or
//! an open LAN, and turns the mesh on; an administrator's preseed file answers it
//! before the first start; Ctrl+K jumps to a conversation. Screenshots of the new views
//! in en-US and zh-CN, light and dark, land in target/test-artifacts/desktop_welcome/.

use std::time::Duration;

use anyhow::ensure;
use lanchat_tests::chat::{dm, send_dm, wait_contact_online};
use lanchat_tests::webdriver::Browser;
use lanchat_tests::{
    artifacts_dir, free_port, free_udp_port, loopback_mesh_settings, wait_until, NodeProcess,
};

const UI_LIMIT: Duration = Duration::from_secs(30);

async fn settings(node: &NodeProcess) -> anyhow::Result<serde_json::Value> {
    node.get_json("v1/settings").await
}

#[tokio::test]
async fn the_welcome_sets_the_name_and_secret_and_turns_the_mesh_on() -> anyhow::Result<()> {
    let shots = artifacts_dir("desktop_welcome")?;
    let tmp = tempfile::tempdir()?;
    let node = NodeProcess::serve(&tmp.path().join("node")).await?;
    let status = node.get_json("v1/status").await?;
    let suggested = status["suggested_name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(!suggested.is_empty(), "a name is suggested: {status}");
    // Ports of its own, so turning the mesh on cannot collide with another test.
    let (status_code, _) = node
        .put_json(
            "v1/settings",
            &serde_json::json!({"lan_mesh": {"listen_port": free_port()?,
                "discovery_port": free_udp_port()?, "allowed_subnets": ["127.0.0.0/8"]},
                "ui": {"language": "en-US"}}),
        )
        .await?;
    ensure!(status_code.is_success());

    let browser = Browser::start().await?;
    browser
        .goto(&format!("{}#token={}", node.url, node.token))
        .await?;
    browser
        .wait_for_text("[data-testid=welcome-dialog]", UI_LIMIT, |t| {
            t.contains("Welcome")
        })
        .await?;
    let offered = browser
        .execute("return document.querySelector('[data-testid=welcome-name]').value")
        .await?;
    assert_eq!(
        offered,
        suggested.as_str(),
        "the name is offered from the system"
    );
    browser
        .screenshot(&shots.join("welcome-en-US-light.png"))
        .await?;
    browser.prefer_color_scheme("dark").await?;
    browser
        .screenshot(&shots.join("welcome-en-US-dark.png"))
        .await?;
    browser.prefer_color_scheme("light").await?;

    // The secret is asked for unless the open LAN is chosen explicitly.
    browser.click("[data-testid=welcome-start]").await?;
    browser
        .wait_for_text("[data-testid=welcome-secret-missing]", UI_LIMIT, |t| {
            !t.is_empty()
        })
        .await?;
    assert_eq!(settings(&node).await?["lan_mesh"]["enabled"], false);

    browser.clear("[data-testid=welcome-name]").await?;
    browser
        .type_text("[data-testid=welcome-name]", "  前台 Reception ")
        .await?;
    // A secret under 12 characters: the node's refusal is shown, nothing is saved.
    browser
        .type_text("[data-testid=welcome-secret]", "too short")
        .await?;
    browser.click("[data-testid=welcome-start]").await?;
    let refusal = browser
        .wait_for_text("[data-testid=welcome-error]", UI_LIMIT, |t| !t.is_empty())
        .await?;
    ensure!(refusal.contains("12 characters"), "{refusal}");
    assert_eq!(settings(&node).await?["ui"]["welcome_done"], false);
    browser.clear("[data-testid=welcome-secret]").await?;
    browser
        .type_text("[data-testid=welcome-secret]", "office secret")
        .await?;
    browser.click("[data-testid=welcome-start]").await?;
    let saved = wait_until(UI_LIMIT, "the answers saved", || async {
        let s = settings(&node).await.ok()?;
        (s["ui"]["welcome_done"] == true).then_some(s)
    })
    .await?;
    assert_eq!(saved["lan_mesh"]["display_name"], "前台 Reception");
    // The API never shows the secret; the settings file holds it.
    assert_eq!(saved["lan_mesh"]["secret_set"], true);
    assert!(saved["lan_mesh"].get("shared_secret").is_none());
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(node.data_dir.join("settings.json"))?)?;
    assert_eq!(file["lan_mesh"]["shared_secret"], "office secret");
    assert_eq!(saved["lan_mesh"]["enabled"], true);
    wait_until(UI_LIMIT, "the mesh running", || async {
        let s = node.get_json("v1/status").await.ok()?;
        (s["mesh_state"] == "running").then_some(())
    })
    .await?;
    browser
        .wait_for_text("[data-testid=me-name]", UI_LIMIT, |t| {
            t.contains("前台 Reception")
        })
        .await?;
    ensure!(
        browser
            .text("[data-testid=welcome-dialog]")
            .await?
            .is_none(),
        "the welcome is gone"
    );
    // And it stays answered.
    browser.goto(&node.url).await?;
    browser
        .wait_for_text("[data-testid=me-name]", UI_LIMIT, |t| t.contains("前台"))
        .await?;
    ensure!(browser
        .text("[data-testid=welcome-dialog]")
        .await?
        .is_none());

    // The notification settings, in both languages and themes.
    browser.click("[data-testid=tab-lan]").await?;
    browser
        .wait_for_text("[data-testid=desktop-settings]", UI_LIMIT, |t| {
            t.contains("Notifications")
        })
        .await?;
    browser
        .execute("document.querySelector('[data-testid=desktop-settings]').scrollIntoView(); return true")
        .await?;
    browser
        .screenshot(&shots.join("desktop-settings-en-US-light.png"))
        .await?;
    browser
        .click("[data-testid=desktop-do_not_disturb]")
        .await?;
    wait_until(UI_LIMIT, "do not disturb saved", || async {
        let s = settings(&node).await.ok()?;
        (s["desktop"]["do_not_disturb"] == true).then_some(())
    })
    .await?;
    browser.click("[data-testid=lang-zh-CN]").await?;
    browser.prefer_color_scheme("dark").await?;
    browser
        .wait_for_text("[data-testid=desktop-settings]", UI_LIMIT, |t| {
            t.contains("通知")
        })
        .await?;
    browser
        .execute("document.querySelector('[data-testid=desktop-settings]').scrollIntoView(); return true")
        .await?;
    browser
        .screenshot(&shots.join("desktop-settings-zh-CN-dark.png"))
        .await?;
    browser.quit().await?;
    Ok(())
}

#[tokio::test]
async fn a_preseed_answers_the_first_start_and_a_bad_one_is_refused() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("node");
    std::fs::create_dir_all(&dir)?;
    let preseed = serde_json::json!({
        "lan_mesh": {"enabled": true, "shared_secret": "from IT", "listen_port": free_port()?,
            "discovery_port": free_udp_port()?, "allowed_subnets": ["127.0.0.0/8"]},
        "ui": {"welcome_done": true, "language": "zh-CN"},
        "desktop": {"notification_previews": false}
    });
    std::fs::write(dir.join("preseed.json"), preseed.to_string())?;
    let node = NodeProcess::serve(&dir).await?;
    let s = settings(&node).await?;
    assert_eq!(s["lan_mesh"]["enabled"], true);
    // A preseed's short secret loads (never shown by the API), flagged as weak.
    assert_eq!(s["lan_mesh"]["secret_set"], true);
    assert_eq!(s["lan_mesh"]["open_lan"], false);
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("settings.json"))?)?;
    assert_eq!(file["lan_mesh"]["shared_secret"], "from IT");
    let status = node.get_json("v1/status").await?;
    ensure!(
        status["warnings"]
            .as_array()
            .is_some_and(|w| w.iter().any(|w| w["code"] == "weak_secret")),
        "{status}"
    );
    assert_eq!(s["ui"]["welcome_done"], true);
    assert_eq!(s["desktop"]["notification_previews"], false);
    assert_eq!(s["lan_mesh"]["node_id"].as_str().map(str::len), Some(26));
    drop(node);

    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad)?;
    std::fs::write(
        bad.join("preseed.json"),
        r#"{"lan_mesh": {"listen_port": 0}}"#,
    )?;
    let err = match NodeProcess::serve(&bad).await {
        Ok(_) => anyhow::bail!("a bad preseed must stop the first start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("preseed.json") && err.contains("lan_mesh.listen_port"),
        "{err}"
    );
    assert!(!bad.join("settings.json").exists());
    Ok(())
}

#[tokio::test]
async fn ctrl_k_jumps_to_a_conversation() -> anyhow::Result<()> {
    let shots = artifacts_dir("desktop_welcome")?;
    let tmp = tempfile::tempdir()?;
    let (pa, pb) = (free_udp_port()?, free_udp_port()?);
    let (a_id, sa) = loopback_mesh_settings("Li Wei", pa, pb, "office")?;
    let (b_id, sb) = loopback_mesh_settings("Zhang San", pb, pa, "office")?;
    for (name, doc) in [("a", sa), ("b", sb)] {
        std::fs::create_dir_all(tmp.path().join(name))?;
        lanchat_tests::write_settings(&tmp.path().join(name), &doc)?;
    }
    let a = NodeProcess::serve(&tmp.path().join("a")).await?;
    let b = NodeProcess::serve(&tmp.path().join("b")).await?;
    // Each must know the other: b sends, a shows it.
    wait_contact_online(&a, &b_id, true, UI_LIMIT).await?;
    wait_contact_online(&b, &a_id, true, UI_LIMIT).await?;
    send_dm(&b, &dm(&a_id), "ping").await?;

    let browser = Browser::start().await?;
    browser
        .goto(&format!("{}#token={}", a.url, a.token))
        .await?;
    browser
        .wait_for_text("[data-testid=me-name]", UI_LIMIT, |t| t.contains("Li Wei"))
        .await?;
    browser.click("[data-testid=lang-en-US]").await?;
    // Ctrl+K (from wherever the focus is), type part of the name, Enter.
    browser
        .type_text("[data-testid=search-input]", "\u{E009}k\u{E000}")
        .await?;
    browser
        .wait_for_text("[data-testid=switcher-list]", UI_LIMIT, |t| {
            t.contains("Zhang San")
        })
        .await?;
    browser
        .type_text("[data-testid=switcher-filter]", "zhang")
        .await?;
    browser
        .screenshot(&shots.join("switcher-en-US-light.png"))
        .await?;
    browser
        .type_text("[data-testid=switcher-filter]", "\u{E007}")
        .await?;
    browser
        .wait_for_text("[data-testid=conversation-title]", UI_LIMIT, |t| {
            t == "Zhang San"
        })
        .await?;
    ensure!(
        browser.text("[data-testid=switcher]").await?.is_none(),
        "the switcher closed"
    );
    // Escape closes it without choosing.
    browser.click("[data-testid=lang-zh-CN]").await?;
    browser.prefer_color_scheme("dark").await?;
    browser
        .type_text("[data-testid=composer]", "\u{E009}k\u{E000}")
        .await?;
    browser
        .wait_for_text("[data-testid=switcher-list]", UI_LIMIT, |t| !t.is_empty())
        .await?;
    browser
        .screenshot(&shots.join("switcher-zh-CN-dark.png"))
        .await?;
    browser
        .type_text("[data-testid=switcher-filter]", "\u{E00C}")
        .await?;
    wait_until(UI_LIMIT, "Escape to close the switcher", || async {
        browser
            .text("[data-testid=switcher]")
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await?;
    browser.quit().await?;
    Ok(())
}
