//! The UI in a real headless Chromium against a real `lanchat serve` node.

use std::time::Duration;

use lanchat_tests::webdriver::Browser;
use lanchat_tests::{artifacts_dir, wait_until, NodeProcess};

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
