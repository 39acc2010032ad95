//! The UI in a real headless Chromium against a real `lanchat serve` node.

use std::time::Duration;

use lanchat_tests::webdriver::Browser;
use lanchat_tests::{artifacts_dir, wait_until, LoopbackPair, NodeProcess};

const UI_LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn status_page_shows_the_node_and_switches_language() -> anyhow::Result<()> {
    let shots = artifacts_dir("browser")?;
    let tmp = tempfile::tempdir()?;
    let node = NodeProcess::serve(&tmp.path().join("node")).await?;
    let status = node.get_json("v1/status").await?;
    let node_id = status["node_id"].as_str().unwrap_or_default().to_string();
    assert_eq!(node_id.len(), 26);

    let browser = Browser::start().await?;
    browser
        .goto(&format!("{}#token={}", node.url, node.token))
        .await?;

    let shown = browser
        .wait_for_text("[data-testid=node-id]", UI_LIMIT, |t| !t.is_empty())
        .await?;
    assert_eq!(shown, node_id, "the page shows the node id from the API");
    let href = browser.execute("return location.href").await?;
    assert!(
        !href.as_str().unwrap_or_default().contains("token"),
        "the token is removed from the address bar: {href}"
    );
    assert_eq!(
        browser.text("[data-testid=version]").await?.as_deref(),
        status["version"].as_str()
    );

    browser.click("[data-testid=lang-en-US]").await?;
    browser
        .wait_for_text("[data-testid=status-heading]", UI_LIMIT, |t| {
            t == "This node"
        })
        .await?;
    assert_eq!(
        browser.text("[data-testid=mesh-state]").await?.as_deref(),
        Some("Off")
    );
    browser.screenshot(&shots.join("status-en-US.png")).await?;

    browser.click("[data-testid=lang-zh-CN]").await?;
    browser
        .wait_for_text("[data-testid=status-heading]", UI_LIMIT, |t| t == "本节点")
        .await?;
    assert_eq!(
        browser.text("[data-testid=mesh-state]").await?.as_deref(),
        Some("已关闭")
    );
    assert_eq!(
        browser
            .execute("return document.documentElement.lang")
            .await?,
        "zh-CN"
    );
    browser.screenshot(&shots.join("status-zh-CN.png")).await?;

    // The choice is saved in the node, so it survives a reload (and a new window port).
    wait_until(UI_LIMIT, "ui.language saved as zh-CN", || async {
        let s = node.get_json("v1/settings").await.ok()?;
        (s["ui"]["language"] == "zh-CN").then_some(())
    })
    .await?;
    browser.goto(&node.url).await?;
    browser
        .wait_for_text("[data-testid=status-heading]", UI_LIMIT, |t| t == "本节点")
        .await?;
    browser
        .wait_for_text("[data-testid=node-id]", UI_LIMIT, |t| t == node_id)
        .await?;

    browser.click("[data-testid=lang-en-US]").await?;
    browser
        .wait_for_text("[data-testid=status-heading]", UI_LIMIT, |t| {
            t == "This node"
        })
        .await?;

    // Without its token the page says what to do instead of showing nothing.
    browser
        .execute("sessionStorage.clear(); return true")
        .await?;
    browser.goto(&node.url).await?;
    let error = browser
        .wait_for_text("[data-testid=status-error]", UI_LIMIT, |t| !t.is_empty())
        .await?;
    assert!(error.contains("access token"), "{error}");
    browser
        .screenshot(&shots.join("status-no-token.png"))
        .await?;

    browser.quit().await?;
    Ok(())
}

async fn open_ui(browser: &Browser, node: &NodeProcess) -> anyhow::Result<()> {
    browser
        .goto(&format!("{}#token={}", node.url, node.token))
        .await?;
    browser
        .wait_for_text("[data-testid=node-id]", UI_LIMIT, |t| !t.is_empty())
        .await?;
    browser.click("[data-testid=lang-en-US]").await?;
    browser.click("[data-testid=tab-lan]").await?;
    Ok(())
}

async fn input_value(browser: &Browser, testid: &str) -> anyhow::Result<String> {
    let v = browser
        .execute(&format!(
            "return document.querySelector('[data-testid={testid}]')?.value ?? null"
        ))
        .await?;
    Ok(v.as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn lan_tab_validates_saves_lists_peers_and_blocks() -> anyhow::Result<()> {
    let shots = artifacts_dir("browser")?;
    let mut pair = LoopbackPair::start("office", "office").await?;
    let b_row = format!("[data-testid=peer-row-{}]", pair.b_id);
    let browser = Browser::start().await?;
    open_ui(&browser, &pair.a).await?;

    // The discovered-nodes table lists b, live.
    let row = browser
        .wait_for_text(&b_row, UI_LIMIT, |t| t.contains("bravo"))
        .await?;
    assert!(row.contains("Online"), "{row}");
    assert!(browser
        .text("[data-testid=secret-warning]")
        .await?
        .is_none());
    browser.screenshot(&shots.join("lan-settings.png")).await?;

    // A bad subnet: the node's 400 is shown at the field, and nothing is saved.
    browser
        .type_text("[data-testid=add-allowed_subnets]", "bad")
        .await?;
    browser
        .click("[data-testid=add-allowed_subnets-button]")
        .await?;
    browser.click("[data-testid=save-settings]").await?;
    let error = browser
        .wait_for_text("[data-testid=error-allowed_subnets]", UI_LIMIT, |t| {
            !t.is_empty()
        })
        .await?;
    assert!(
        error.contains("allowed_subnets") && error.contains("bad"),
        "{error}"
    );
    browser
        .screenshot(&shots.join("lan-settings-error.png"))
        .await?;
    let saved = pair.a.get_json("v1/settings").await?;
    assert_eq!(
        saved["lan_mesh"]["allowed_subnets"],
        serde_json::json!(["127.0.0.0/8"])
    );

    // Fix it, rename, save: applied and persisted across a restart.
    browser
        .click("[data-testid='remove-allowed_subnets-bad']")
        .await?;
    browser.clear("[data-testid=input-display_name]").await?;
    browser
        .type_text("[data-testid=input-display_name]", "Alpha desk")
        .await?;
    browser.click("[data-testid=save-settings]").await?;
    browser
        .wait_for_text("[data-testid=save-status]", UI_LIMIT, |t| {
            t.starts_with("Saved")
        })
        .await?;
    assert!(browser
        .text("[data-testid=error-allowed_subnets]")
        .await?
        .is_none());
    let saved = pair.a.get_json("v1/settings").await?;
    assert_eq!(saved["lan_mesh"]["display_name"], "Alpha desk");

    let dir = pair.a.data_dir.clone();
    pair.a.stop().await?;
    pair.a = NodeProcess::serve(&dir).await?;
    open_ui(&browser, &pair.a).await?;
    wait_until(
        UI_LIMIT,
        "the saved name in the form after a restart",
        || async {
            let v = input_value(&browser, "input-display_name").await.ok()?;
            (v == "Alpha desk").then_some(())
        },
    )
    .await?;

    // Block b from the table: it leaves the list and shows under blocked nodes.
    browser
        .wait_for_text(&b_row, UI_LIMIT, |t| t.contains("Online"))
        .await?;
    browser
        .click(&format!("[data-testid=block-{}]", pair.b_id))
        .await?;
    wait_until(UI_LIMIT, "b to leave the table", || async {
        browser.text(&b_row).await.ok()?.is_none().then_some(())
    })
    .await?;
    browser
        .wait_for_text(
            &format!("[data-testid=unblock-{}]", pair.b_id),
            UI_LIMIT,
            |t| t == "Unblock",
        )
        .await?;
    browser
        .screenshot(&shots.join("lan-settings-blocked.png"))
        .await?;

    // Dark mode follows the system setting.
    browser.prefer_color_scheme("dark").await?;
    let background = browser
        .execute("return getComputedStyle(document.documentElement).backgroundColor")
        .await?;
    assert_eq!(background, "rgb(22, 24, 29)", "dark background");
    browser
        .screenshot(&shots.join("lan-settings-dark.png"))
        .await?;
    browser.click("[data-testid=tab-status]").await?;
    browser.screenshot(&shots.join("status-dark.png")).await?;
    browser.quit().await?;
    Ok(())
}
