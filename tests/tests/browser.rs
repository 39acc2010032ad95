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
    // A first start greets with the welcome (tests/tests/desktop_welcome.rs answers
    // it); put off here, it does not come back.
    browser
        .wait_for_text("[data-testid=welcome-dialog]", UI_LIMIT, |t| !t.is_empty())
        .await?;
    browser.click("[data-testid=welcome-later]").await?;
    wait_until(UI_LIMIT, "the welcome put off", || async {
        let s = node.get_json("v1/settings").await.ok()?;
        (s["ui"]["welcome_done"] == true).then_some(())
    })
    .await?;
    // The messenger is the first screen; the status is one click away.
    browser
        .wait_for_text("[data-testid=me-name]", UI_LIMIT, |t| !t.is_empty())
        .await?;
    browser.click("[data-testid=tab-status]").await?;

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
        .wait_for_text("[data-testid=tab-status]", UI_LIMIT, |t| t == "状态")
        .await?;
    browser.click("[data-testid=tab-status]").await?;
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
    browser
        .wait_for_text("[data-testid=tab-status]", UI_LIMIT, |t| !t.is_empty())
        .await?;
    browser.click("[data-testid=tab-status]").await?;
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
        .wait_for_text("[data-testid=me-name]", UI_LIMIT, |t| !t.is_empty())
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

/// The shared secret in the LAN tab: never shown, a weak one refused at its field,
/// "Generate" fills a strong one that saving keeps, and the open LAN is an explicit
/// choice with a warning at the field and a banner on every tab while it is on.
#[tokio::test]
async fn lan_tab_refuses_a_weak_secret_generates_one_and_flags_the_open_lan() -> anyhow::Result<()>
{
    let shots = artifacts_dir("browser")?;
    let tmp = tempfile::tempdir()?;
    let node = NodeProcess::serve(&tmp.path().join("node")).await?;
    let (status, body) = node
        .put_json(
            "v1/settings",
            &serde_json::json!({"ui": {"welcome_done": true}, "lan_mesh": {
                "listen_port": lanchat_tests::free_port()?,
                "discovery_port": lanchat_tests::free_udp_port()?,
                "allowed_subnets": ["127.0.0.0/8"]}}),
        )
        .await?;
    anyhow::ensure!(status.is_success(), "{body}");
    let browser = Browser::start().await?;
    open_ui(&browser, &node).await?;
    browser
        .wait_for_text("[data-testid=secret-hint]", UI_LIMIT, |t| {
            t.contains("12 characters")
        })
        .await?;

    // Too short: the node's 400 is shown at the secret, nothing is saved.
    browser
        .type_text("[data-testid=input-shared_secret]", "office")
        .await?;
    browser.click("[data-testid=save-settings]").await?;
    let error = browser
        .wait_for_text("[data-testid=error-shared_secret]", UI_LIMIT, |t| {
            !t.is_empty()
        })
        .await?;
    assert!(error.contains("12 characters"), "{error}");
    assert_eq!(
        node.get_json("v1/settings").await?["lan_mesh"]["secret_set"],
        false
    );

    // Generate: a strong secret in clear in the field, saved with the form.
    browser.click("[data-testid=generate-secret]").await?;
    let generated = wait_until(UI_LIMIT, "a generated secret in the field", || async {
        let v = input_value(&browser, "input-shared_secret").await.ok()?;
        (v.len() == 23 && v.split('-').count() == 4).then_some(v)
    })
    .await?;
    browser
        .screenshot(&shots.join("lan-settings-generated-secret.png"))
        .await?;
    browser.click("[data-testid=save-settings]").await?;
    browser
        .wait_for_text("[data-testid=save-status]", UI_LIMIT, |t| {
            t.starts_with("Saved")
        })
        .await?;
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(node.data_dir.join("settings.json"))?)?;
    assert_eq!(file["lan_mesh"]["shared_secret"], generated.as_str());
    let shown = node.get_json("v1/settings").await?;
    assert_eq!(shown["lan_mesh"]["secret_set"], true);
    // Never shown again: the field is empty (empty keeps it) and says so.
    assert_eq!(input_value(&browser, "input-shared_secret").await?, "");
    browser
        .wait_for_text("[data-testid=secret-hint]", UI_LIMIT, |t| {
            t.contains("never shown")
        })
        .await?;
    let page = browser.execute("return document.body.innerHTML").await?;
    assert!(!page.as_str().unwrap_or_default().contains(&generated));

    // The open LAN, chosen with the mesh on: a warning at the field, then a banner.
    assert!(browser
        .text("[data-testid=secret-warning]")
        .await?
        .is_none());
    browser.click("[data-testid=input-open_lan]").await?;
    browser
        .wait_for_text("[data-testid=secret-warning]", UI_LIMIT, |t| !t.is_empty())
        .await?;
    browser.click("[data-testid=input-enabled]").await?;
    browser.click("[data-testid=save-settings]").await?;
    browser
        .wait_for_text("[data-testid=save-status]", UI_LIMIT, |t| {
            t.starts_with("Saved")
        })
        .await?;
    let shown = node.get_json("v1/settings").await?;
    assert_eq!(shown["lan_mesh"]["open_lan"], true);
    assert_eq!(shown["lan_mesh"]["secret_set"], false);
    browser.click("[data-testid=tab-chat]").await?;
    browser
        .wait_for_text("[data-testid=access-banner]", UI_LIMIT, |t| {
            t.contains("Open LAN")
        })
        .await?;
    browser
        .screenshot(&shots.join("open-lan-banner.png"))
        .await?;
    browser.quit().await?;
    Ok(())
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

    // b is one of the messenger's users before the block.
    let b_user = format!("[data-testid=user-{}]", pair.b_id);
    browser.click("[data-testid=tab-chat]").await?;
    browser
        .wait_for_text(&b_user, UI_LIMIT, |t| !t.is_empty())
        .await?;
    browser.click("[data-testid=tab-lan]").await?;

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
    // …and from the messenger's users list.
    browser.click("[data-testid=tab-chat]").await?;
    browser
        .wait_for_text("[data-testid=users-section] h2", UI_LIMIT, |t| {
            t.eq_ignore_ascii_case("users")
        })
        .await?;
    wait_until(UI_LIMIT, "b to be gone from the users list", || async {
        browser.text(&b_user).await.ok()?.is_none().then_some(())
    })
    .await?;
    browser.click("[data-testid=tab-lan]").await?;

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

/// Messages travel between nodes in well under a second; the limit only bounds a
/// failure on a loaded machine.
const DELIVERY_LIMIT: Duration = Duration::from_secs(30);
/// WebDriver key codes (W3C): modifiers stay pressed until NULL within one call.
const KEY_ENTER: char = '\u{E007}';
const KEY_SHIFT: char = '\u{E008}';
const KEY_NULL: char = '\u{E000}';
const KEY_ESCAPE: char = '\u{E00C}';
const KEY_TAB: char = '\u{E004}';
const KEY_BACKSPACE: char = '\u{E003}';

/// Opens a node's UI (the messenger is the first screen) in English.
async fn open_messenger(browser: &Browser, node: &NodeProcess) -> anyhow::Result<()> {
    browser
        .goto(&format!("{}#token={}", node.url, node.token))
        .await?;
    browser
        .wait_for_text("[data-testid=me-name]", UI_LIMIT, |t| !t.is_empty())
        .await?;
    browser.click("[data-testid=lang-en-US]").await?;
    browser
        .wait_for_text("[data-testid=users-section] h2", UI_LIMIT, |t| {
            t.eq_ignore_ascii_case("users")
        })
        .await?;
    Ok(())
}

/// An attribute of the first element matching `css` (`None`: no such element).
async fn attr(browser: &Browser, css: &str, name: &str) -> anyhow::Result<Option<String>> {
    let v = browser
        .execute(&format!(
            "return document.querySelector({css:?})?.getAttribute({name:?}) ?? null"
        ))
        .await?;
    Ok(v.as_str().map(str::to_string))
}

async fn post_json(
    node: &NodeProcess,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let resp = node
        .http()
        .post(node.api_url(path))
        .bearer_auth(&node.token)
        .json(body)
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await?;
    anyhow::ensure!(status.is_success(), "POST {path}: {status}: {text}");
    Ok(serde_json::from_str(&text)?)
}

#[tokio::test]
async fn messenger_dm_between_two_nodes() -> anyhow::Result<()> {
    let shots = artifacts_dir("browser")?;
    let pair = LoopbackPair::start("office", "office").await?;
    // Each side's DM conversation with the other.
    let dm_on_a = format!("dm:lan:{}", pair.b_id);
    let dm_on_b = format!("dm:lan:{}", pair.a_id);
    let a = Browser::start().await?;
    let b = Browser::start().await?;
    open_messenger(&a, &pair.a).await?;
    open_messenger(&b, &pair.b).await?;

    // A's Users section lists B, online, with its address, without any reload.
    let user_b = format!("[data-testid=user-{}]", pair.b_id);
    let row = a
        .wait_for_text(&user_b, UI_LIMIT, |t| t.contains("bravo"))
        .await?;
    assert!(row.contains("127.0.0.1:"), "B's address is shown: {row}");
    wait_until(UI_LIMIT, "B shown online in A's users", || async {
        let online = attr(&a, &user_b, "data-online").await.ok()??;
        (online == "true").then_some(())
    })
    .await?;
    let groups = a.text("[data-testid=groups-empty]").await?;
    assert_eq!(groups.as_deref(), Some("No groups yet."));

    // A opens B and sends a two-line DM: Shift+Enter is a newline, Enter sends.
    a.click(&user_b).await?;
    a.wait_for_text("[data-testid=conversation-title]", UI_LIMIT, |t| {
        t == "bravo"
    })
    .await?;
    a.wait_for_text("[data-testid=history-empty]", UI_LIMIT, |t| !t.is_empty())
        .await?;
    let typed = format!("Hello bravo{KEY_SHIFT}{KEY_ENTER}{KEY_NULL}second line{KEY_ENTER}");
    a.type_text("[data-testid=composer]", &typed).await?;
    let text = "Hello bravo\nsecond line";
    wait_until(UI_LIMIT, "the DM in A's history", || async {
        let shown = a.shown_messages().await.ok()?;
        shown
            .iter()
            .any(|(t, outgoing, _)| t == text && *outgoing)
            .then_some(())
    })
    .await?;
    assert_eq!(
        a.execute("return document.querySelector('[data-testid=composer]').value")
            .await?,
        "",
        "the composer is empty after sending"
    );
    // The node stored exactly that text (the lines kept).
    let page = pair
        .a
        .get_json(&format!("v1/conversations/{dm_on_a}/messages?limit=10"))
        .await?;
    assert_eq!(page["messages"][0]["text"], text, "{page}");
    assert_eq!(
        page["messages"].as_array().map(Vec::len),
        Some(1),
        "sent once: {page}"
    );
    // It is listed under Chats on A, with the preview of its first line.
    let chat_on_a = format!("[data-testid='chat-{dm_on_a}']");
    a.wait_for_text(&chat_on_a, UI_LIMIT, |t| t.contains("Hello bravo"))
        .await?;
    a.screenshot(&shots.join("messenger-sent-light.png"))
        .await?;

    // --- From here on the message must travel to B (the transport). ---

    // B's UI shows it without a reload, with an unread badge and the count in the title.
    let chat_on_b = format!("[data-testid='chat-{dm_on_b}']");
    b.wait_for_text(&chat_on_b, DELIVERY_LIMIT, |t| t.contains("Hello bravo"))
        .await?;
    b.wait_for_text(
        &format!("{chat_on_b} [data-testid=unread-badge]"),
        UI_LIMIT,
        |t| t == "1",
    )
    .await?;
    wait_until(UI_LIMIT, "(1) in B's title", || async {
        let title = b.execute("return document.title").await.ok()?;
        (title == "(1) lanchat").then_some(())
    })
    .await?;
    b.screenshot(&shots.join("messenger-unread-light.png"))
        .await?;

    // B opens it: read (badge and title count gone), then replies.
    b.click(&chat_on_b).await?;
    wait_until(UI_LIMIT, "the DM in B's history", || async {
        let shown = b.shown_messages().await.ok()?;
        shown
            .iter()
            .any(|(t, outgoing, _)| t == text && !*outgoing)
            .then_some(())
    })
    .await?;
    assert_eq!(
        b.text("[data-testid=unread-separator]").await?.as_deref(),
        Some("New messages"),
        "the new messages are marked"
    );
    wait_until(UI_LIMIT, "B's unread badge to go", || async {
        let badge = b
            .text(&format!("{chat_on_b} [data-testid=unread-badge]"))
            .await
            .ok()?;
        let title = b.execute("return document.title").await.ok()?;
        (badge.is_none() && title == "lanchat").then_some(())
    })
    .await?;
    let reply = "Hi alpha, 收到";
    b.type_text("[data-testid=composer]", &format!("{reply}{KEY_ENTER}"))
        .await?;

    // A, looking at the conversation, sees the reply arrive (and it counts as read).
    wait_until(DELIVERY_LIMIT, "B's reply in A's history", || async {
        let shown = a.shown_messages().await.ok()?;
        shown
            .iter()
            .any(|(t, outgoing, _)| t == reply && !*outgoing)
            .then_some(())
    })
    .await?;

    // Both outgoing messages end read (delivered, then each reader had the
    // conversation open: its read receipt came back), on both screens, without a reload.
    for (browser, own) in [(&a, text), (&b, reply)] {
        wait_until(DELIVERY_LIMIT, &format!("{own:?} read"), || async {
            let shown = browser.shown_messages().await.ok()?;
            shown
                .iter()
                .any(|(t, outgoing, status)| t == own && *outgoing && status == "read")
                .then_some(())
        })
        .await?;
    }
    let read_label = attr(
        &a,
        "[data-testid=message-list] .message.outgoing .state",
        "title",
    )
    .await?;
    assert_eq!(read_label.as_deref(), Some("Read"), "the tick says read");

    // B chooses "busy" in its presence picker: its own dot, A's Users row and A's
    // peers list show it, without a reload.
    b.execute(
        "const s = document.querySelector('[data-testid=presence-picker]'); \
         s.value = 'busy'; s.dispatchEvent(new Event('change', {bubbles: true})); return true",
    )
    .await?;
    wait_until(UI_LIMIT, "B's own dot busy", || async {
        let p = attr(&b, "[data-testid=me-presence]", "data-presence")
            .await
            .ok()??;
        (p == "busy").then_some(())
    })
    .await?;
    wait_until(DELIVERY_LIMIT, "B busy in A's users", || async {
        let p = attr(&a, &user_b, "data-presence").await.ok()??;
        (p == "busy").then_some(())
    })
    .await?;
    let row = a.text(&user_b).await?.unwrap_or_default();
    assert!(row.contains("Busy"), "the row says busy: {row}");
    let peers = pair.a.get_json("v1/peers").await?;
    assert_eq!(peers[0]["presence"], "busy", "{peers}");
    a.screenshot(&shots.join("messenger-presence-busy-light.png"))
        .await?;
    wait_until(UI_LIMIT, "A's title without unread", || async {
        let title = a.execute("return document.title").await.ok()?;
        (title == "lanchat").then_some(())
    })
    .await?;
    assert_eq!(
        a.text(&format!("{chat_on_a} [data-testid=unread-badge]"))
            .await?,
        None
    );
    // On another tab A does not see the conversation: a new message counts as unread
    // (in the tab and the title) until A comes back to it.
    a.click("[data-testid=tab-status]").await?;
    let later = "One more thing";
    b.type_text("[data-testid=composer]", &format!("{later}{KEY_ENTER}"))
        .await?;
    a.wait_for_text("[data-testid=unread-total]", DELIVERY_LIMIT, |t| t == "1")
        .await?;
    wait_until(UI_LIMIT, "(1) in A's title", || async {
        let title = a.execute("return document.title").await.ok()?;
        (title == "(1) lanchat").then_some(())
    })
    .await?;
    a.click("[data-testid=tab-chat]").await?;
    wait_until(UI_LIMIT, "A's unread cleared on coming back", || async {
        let title = a.execute("return document.title").await.ok()?;
        let total = a.text("[data-testid=unread-total]").await.ok()?;
        (title == "lanchat" && total.is_none()).then_some(())
    })
    .await?;
    let shown = a.shown_messages().await?;
    assert!(shown.iter().any(|(t, _, _)| t == later), "{shown:?}");
    a.screenshot(&shots.join("messenger-chat-light.png"))
        .await?;
    b.screenshot(&shots.join("messenger-chat-b-light.png"))
        .await?;

    a.prefer_color_scheme("dark").await?;
    let background = a
        .execute("return getComputedStyle(document.documentElement).backgroundColor")
        .await?;
    assert_eq!(background, "rgb(22, 24, 29)", "dark background");
    a.screenshot(&shots.join("messenger-chat-dark.png")).await?;
    a.click("[data-testid=lang-zh-CN]").await?;
    a.wait_for_text("[data-testid=users-section] h2", UI_LIMIT, |t| t == "用户")
        .await?;
    a.screenshot(&shots.join("messenger-chat-dark-zh-CN.png"))
        .await?;

    a.quit().await?;
    b.quit().await?;
    Ok(())
}

#[tokio::test]
async fn messenger_search_finds_chinese_and_english_messages() -> anyhow::Result<()> {
    let shots = artifacts_dir("browser")?;
    let pair = LoopbackPair::start("office", "office").await?;
    let dm = format!("dm:lan:{}", pair.b_id);
    let path = format!("v1/conversations/{dm}/messages");
    // A stores what it sends at once, delivered or not: the history to search in. The
    // English message is followed by more than a page of others, so opening it at the
    // hit needs older pages.
    let chinese = "明天下午三点在二号会议室开会";
    let english = "The quarterly report is ready for review";
    post_json(&pair.a, &path, &serde_json::json!({ "text": chinese })).await?;
    post_json(&pair.a, &path, &serde_json::json!({ "text": english })).await?;
    for n in 0..60 {
        let text = format!("filler message {n}");
        post_json(&pair.a, &path, &serde_json::json!({ "text": text })).await?;
    }

    let browser = Browser::start().await?;
    open_messenger(&browser, &pair.a).await?;

    // Keyboard: Enter on a user opens the DM; the newest page shows, and scrolling to
    // the top loads the older one.
    let user_b = format!("[data-testid=user-{}]", pair.b_id);
    browser
        .wait_for_text(&user_b, UI_LIMIT, |t| t.contains("bravo"))
        .await?;
    browser.type_text(&user_b, &KEY_ENTER.to_string()).await?;
    browser
        .wait_for_text("[data-testid=conversation-title]", UI_LIMIT, |t| {
            t == "bravo"
        })
        .await?;
    wait_until(UI_LIMIT, "the newest page", || async {
        let shown = browser.shown_messages().await.ok()?;
        (shown.len() == 50).then_some(())
    })
    .await?;
    assert!(browser.text("[data-testid=load-older]").await?.is_some());
    browser
        .execute(
            "const h = document.querySelector('[data-testid=message-list]'); \
             h.scrollTop = -h.scrollHeight; h.dispatchEvent(new Event('scroll')); return true",
        )
        .await?;
    wait_until(UI_LIMIT, "the older page after scrolling up", || async {
        let shown = browser.shown_messages().await.ok()?;
        (shown.len() == 62 && shown[0].0 == chinese).then_some(())
    })
    .await?;
    browser
        .wait_for_text("[data-testid=history-start]", UI_LIMIT, |t| !t.is_empty())
        .await?;

    // An unsent text stays with its conversation while the user looks elsewhere.
    browser
        .type_text("[data-testid=composer]", "unsent draft")
        .await?;

    // Ctrl+Shift+F goes to the search box from anywhere (Ctrl+K is the switcher).
    browser
        .type_text("[data-testid=message-list]", "\u{E009}\u{E008}f\u{E000}")
        .await?;
    wait_until(
        UI_LIMIT,
        "the search box focused by Ctrl+Shift+F",
        || async {
            let focused = browser
                .execute("return document.activeElement?.dataset?.testid ?? null")
                .await
                .ok()?;
            (focused == "search-input").then_some(())
        },
    )
    .await?;

    browser
        .type_text("[data-testid=search-input]", "会议室")
        .await?;
    let hits = browser
        .wait_for_text("[data-testid=search-hits]", UI_LIMIT, |t| {
            t.contains(chinese)
        })
        .await?;
    assert!(!hits.contains(english), "{hits}");
    assert_eq!(
        browser
            .text("[data-testid=search-hits] mark")
            .await?
            .as_deref(),
        Some("会议室"),
        "the query is highlighted"
    );
    browser.screenshot(&shots.join("search-zh.png")).await?;

    // Escape clears the search and shows the messenger again.
    browser
        .type_text("[data-testid=search-input]", &KEY_ESCAPE.to_string())
        .await?;
    wait_until(UI_LIMIT, "the search results to close", || async {
        let results = browser.text("[data-testid=search-results]").await.ok()?;
        results.is_none().then_some(())
    })
    .await?;
    assert_eq!(
        input_value(&browser, "search-input").await?,
        "",
        "Escape empties the box"
    );
    assert_eq!(
        input_value(&browser, "composer").await?,
        "unsent draft",
        "the draft is kept"
    );

    browser
        .type_text("[data-testid=search-input]", "QUARTERLY report")
        .await?;
    browser
        .wait_for_text("[data-testid=search-hits]", UI_LIMIT, |t| {
            t.contains(english)
        })
        .await?;
    let hits = browser.text("[data-testid=search-hits]").await?;
    assert!(
        !hits.unwrap_or_default().contains(chinese),
        "only the English one"
    );
    browser.screenshot(&shots.join("search-en.png")).await?;

    // A click opens the conversation at the hit (older pages loaded), highlighted.
    browser.click("[data-testid^=search-hit-]").await?;
    browser
        .wait_for_text(
            ".message.highlight [data-testid=message-text]",
            UI_LIMIT,
            |t| t == english,
        )
        .await?;
    assert_eq!(
        browser
            .text("[data-testid=conversation-title]")
            .await?
            .as_deref(),
        Some("bravo")
    );
    let in_view = browser
        .execute(
            "const r = document.querySelector('.message.highlight').getBoundingClientRect(); \
             const h = document.querySelector('[data-testid=message-list]').getBoundingClientRect(); \
             return r.top >= h.top && r.bottom <= h.bottom",
        )
        .await?;
    assert_eq!(in_view, true, "the hit is scrolled into view");
    let days = browser
        .text("[data-testid=day-separator]")
        .await?
        .unwrap_or_default();
    assert_eq!(days, "Today", "a day separator above today's messages");
    browser.screenshot(&shots.join("search-jump.png")).await?;
    browser.quit().await?;
    Ok(())
}

#[tokio::test]
async fn messenger_shows_a_failed_message_and_retries_it() -> anyhow::Result<()> {
    let shots = artifacts_dir("browser")?;
    let mut pair = LoopbackPair::start("office", "office").await?;
    let user_b = format!("[data-testid=user-{}]", pair.b_id);
    let browser = Browser::start().await?;
    open_messenger(&browser, &pair.a).await?;
    browser
        .wait_for_text(&user_b, UI_LIMIT, |t| t.contains("bravo"))
        .await?;
    browser.click(&user_b).await?;
    browser
        .wait_for_text("[data-testid=conversation-title]", UI_LIMIT, |t| {
            t == "bravo"
        })
        .await?;

    // B goes away; A's message to it waits (pending), then blocking B gives it up.
    let b_dir = pair.b.data_dir.clone();
    pair.b.stop().await?;
    let text = "Are you there?";
    browser
        .type_text("[data-testid=composer]", &format!("{text}{KEY_ENTER}"))
        .await?;
    wait_until(UI_LIMIT, "the message pending", || async {
        let shown = browser.shown_messages().await.ok()?;
        shown
            .iter()
            .any(|(t, _, s)| t == text && s == "pending")
            .then_some(())
    })
    .await?;
    post_json(
        &pair.a,
        &format!("v1/peers/{}/block", pair.b_id),
        &serde_json::json!({}),
    )
    .await?;
    wait_until(UI_LIMIT, "the message failed, live", || async {
        let shown = browser.shown_messages().await.ok()?;
        shown
            .iter()
            .any(|(t, _, s)| t == text && s == "failed")
            .then_some(())
    })
    .await?;
    let retry = "[data-testid^=retry-]";
    assert_eq!(browser.text(retry).await?.as_deref(), Some("Retry"));
    browser
        .screenshot(&shots.join("messenger-failed.png"))
        .await?;

    // While B is blocked a retry is refused, and the reason is shown in words.
    browser.click(retry).await?;
    browser
        .wait_for_text(".failed-row .error", UI_LIMIT, |t| !t.is_empty())
        .await?;

    // Unblocked and back: Retry sends it again, and it is delivered.
    post_json(
        &pair.a,
        &format!("v1/peers/{}/unblock", pair.b_id),
        &serde_json::json!({}),
    )
    .await?;
    pair.b = NodeProcess::serve(&b_dir).await?;
    browser.click(retry).await?;
    wait_until(DELIVERY_LIMIT, "the retried message delivered", || async {
        let shown = browser.shown_messages().await.ok()?;
        shown
            .iter()
            .any(|(t, _, s)| t == text && s == "delivered")
            .then_some(())
    })
    .await?;
    assert!(
        browser.text(retry).await?.is_none(),
        "no Retry once delivered"
    );
    let on_b = pair
        .b
        .get_json(&format!("v1/conversations/dm:lan:{}/messages", pair.a_id))
        .await?;
    assert_eq!(on_b["messages"][0]["text"], text, "{on_b}");
    browser.quit().await?;
    Ok(())
}

/// The id of the group called `name` on `node` (from its API).
async fn group_id_named(node: &NodeProcess, name: &str) -> anyhow::Result<String> {
    let list = node.get_json("v1/groups").await?;
    list.as_array()
        .into_iter()
        .flatten()
        .find(|g| g["name"] == name)
        .and_then(|g| g["id"].as_str())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no group {name:?} on the node: {list}"))
}

/// The `data-testid` of the element that has the focus.
async fn focused(browser: &Browser) -> anyhow::Result<String> {
    let v = browser
        .execute("return document.activeElement?.dataset?.testid ?? ''")
        .await?;
    Ok(v.as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn messenger_groups_created_chatted_in_and_renamed_from_the_ui() -> anyhow::Result<()> {
    let shots = artifacts_dir("browser")?;
    let pair = LoopbackPair::start("office", "office").await?;
    let a = Browser::start().await?;
    let b = Browser::start().await?;
    open_messenger(&a, &pair.a).await?;
    open_messenger(&b, &pair.b).await?;
    let user_b = format!("[data-testid=user-{}]", pair.b_id);
    wait_until(UI_LIMIT, "B online in A's users", || async {
        let online = attr(&a, &user_b, "data-online").await.ok()??;
        (online == "true").then_some(())
    })
    .await?;

    // Escape closes the dialog and gives the focus back to "New group".
    a.click("[data-testid=new-group]").await?;
    a.wait_for_text("[data-testid=create-group-dialog] h2", UI_LIMIT, |t| {
        t == "New group"
    })
    .await?;
    wait_until(UI_LIMIT, "the name field focused", || async {
        (focused(&a).await.ok()? == "group-name").then_some(())
    })
    .await?;
    a.type_text("[data-testid=group-name]", &KEY_ESCAPE.to_string())
        .await?;
    wait_until(UI_LIMIT, "the dialog closed by Escape", || async {
        let dialog = a.text("[data-testid=create-group-dialog]").await.ok()?;
        (dialog.is_none() && focused(&a).await.ok()? == "new-group").then_some(())
    })
    .await?;

    // Without a name the node refuses, and says so at the name field.
    a.click("[data-testid=new-group]").await?;
    a.click("[data-testid=create-group-submit]").await?;
    let error = a
        .wait_for_text("[data-testid=group-error-name]", UI_LIMIT, |t| {
            !t.is_empty()
        })
        .await?;
    assert!(error.contains("name"), "the field is named: {error}");
    assert!(
        pair.a.get_json("v1/groups").await?.as_array().map(Vec::len) == Some(0),
        "nothing created"
    );

    // Name it, find B with the filter, tick it; Enter in the name field creates.
    a.type_text("[data-testid=group-name]", "Release team")
        .await?;
    assert!(
        a.text("[data-testid=group-error-name]").await?.is_none(),
        "typing a name takes the complaint back"
    );
    a.type_text("[data-testid=group-member-filter]", "brav")
        .await?;
    let pick_b = format!("[data-testid=pick-{}]", pair.b_id);
    a.click(&pick_b).await?;
    a.wait_for_text("[data-testid=picked-count]", UI_LIMIT, |t| {
        t == "1 selected"
    })
    .await?;
    a.screenshot(&shots.join("group-create-dialog.png")).await?;
    a.type_text("[data-testid=group-name]", &KEY_ENTER.to_string())
        .await?;

    // A is in the new group's conversation at once.
    a.wait_for_text("[data-testid=conversation-title]", UI_LIMIT, |t| {
        t == "Release team"
    })
    .await?;
    assert!(a.text("[data-testid=create-group-dialog]").await?.is_none());
    let group_id = group_id_named(&pair.a, "Release team").await?;
    let row = format!("[data-testid='group-group:{group_id}']");
    a.wait_for_text(&row, UI_LIMIT, |t| t.contains("Release team"))
        .await?;

    // B's rail shows it without a reload.
    b.wait_for_text(&row, DELIVERY_LIMIT, |t| t.contains("Release team"))
        .await?;

    // A message typed in A's UI shows in B's, and B's reply in A's.
    let hello = "Release at 5, 五点发布";
    a.type_text("[data-testid=composer]", &format!("{hello}{KEY_ENTER}"))
        .await?;
    b.click(&row).await?;
    b.wait_for_text("[data-testid=conversation-title]", UI_LIMIT, |t| {
        t == "Release team"
    })
    .await?;
    wait_until(DELIVERY_LIMIT, "A's group message in B's UI", || async {
        let shown = b.shown_messages().await.ok()?;
        shown
            .iter()
            .any(|(t, outgoing, _)| t == hello && !*outgoing)
            .then_some(())
    })
    .await?;
    let reply = "Ready here";
    b.type_text("[data-testid=composer]", &format!("{reply}{KEY_ENTER}"))
        .await?;
    wait_until(DELIVERY_LIMIT, "B's reply in A's UI", || async {
        let shown = a.shown_messages().await.ok()?;
        shown
            .iter()
            .any(|(t, outgoing, _)| t == reply && !*outgoing)
            .then_some(())
    })
    .await?;

    // `@` completes a member's name: "@bra" offers bravo, Tab takes it, and the message
    // with the mention reaches B.
    a.type_text("[data-testid=composer]", "@bra").await?;
    a.wait_for_text("[data-testid=mention-option]", UI_LIMIT, |t| t == "@bravo")
        .await?;
    a.screenshot(&shots.join("group-mention.png")).await?;
    a.type_text("[data-testid=composer]", &KEY_TAB.to_string())
        .await?;
    wait_until(
        UI_LIMIT,
        "the completed mention in A's composer",
        || async {
            let value = input_value(&a, "composer").await.ok()?;
            let closed = a.text("[data-testid=mention-list]").await.ok()?.is_none();
            (value == "@bravo " && closed).then_some(())
        },
    )
    .await?;
    a.type_text("[data-testid=composer]", &format!("ship it{KEY_ENTER}"))
        .await?;
    wait_until(DELIVERY_LIMIT, "A's mention in B's UI", || async {
        let shown = b.shown_messages().await.ok()?;
        shown
            .iter()
            .any(|(t, outgoing, _)| t == "@bravo ship it" && !*outgoing)
            .then_some(())
    })
    .await?;
    // Escape closes the list without touching the text; a DM offers no names.
    a.type_text("[data-testid=composer]", "@b").await?;
    a.wait_for_text("[data-testid=mention-option]", UI_LIMIT, |t| t == "@bravo")
        .await?;
    a.type_text("[data-testid=composer]", &KEY_ESCAPE.to_string())
        .await?;
    wait_until(UI_LIMIT, "the mention list closed by Escape", || async {
        let closed = a.text("[data-testid=mention-list]").await.ok()?.is_none();
        let value = input_value(&a, "composer").await.ok()?;
        (closed && value == "@b").then_some(())
    })
    .await?;
    a.type_text(
        "[data-testid=composer]",
        &format!("{KEY_BACKSPACE}{KEY_BACKSPACE}"),
    )
    .await?;

    // A's group info panel, opened from the header by keyboard: both members, A owns.
    a.type_text("[data-testid=group-info-button]", &KEY_ENTER.to_string())
        .await?;
    a.wait_for_text("[data-testid=group-info-name]", UI_LIMIT, |t| {
        t == "Release team"
    })
    .await?;
    let member_b = format!("[data-testid=member-{}]", pair.b_id);
    let member_a = format!("[data-testid=member-{}]", pair.a_id);
    a.wait_for_text(&member_b, UI_LIMIT, |t| t.contains("bravo"))
        .await?;
    assert_eq!(
        a.text(&format!("{member_a} [data-testid=owner-badge]"))
            .await?
            .as_deref(),
        Some("Owner")
    );
    assert!(a
        .text(&format!("{member_b} [data-testid=owner-badge]"))
        .await?
        .is_none());
    assert!(
        a.text(&format!("[data-testid=remove-member-{}]", pair.b_id))
            .await?
            .is_some(),
        "the owner may remove B"
    );
    assert!(
        a.text("[data-testid=group-dissolve]").await?.is_some()
            && a.text("[data-testid=group-leave]").await?.is_none(),
        "the owner dissolves and cannot leave"
    );
    // B's panel: no member management, no dissolving; leaving instead.
    b.click("[data-testid=group-info-button]").await?;
    b.wait_for_text("[data-testid=group-info-name]", UI_LIMIT, |t| {
        t == "Release team"
    })
    .await?;
    assert!(b.text("[data-testid=group-add-members]").await?.is_none());
    assert!(b.text("[data-testid=group-dissolve]").await?.is_none());
    assert!(b.text("[data-testid=group-leave]").await?.is_some());
    b.click("[data-testid=group-info-close]").await?;

    // Renamed in A's panel (Enter saves): B's rail and header follow, live.
    a.click("[data-testid=group-rename]").await?;
    a.clear("[data-testid=group-rename-input]").await?;
    a.type_text(
        "[data-testid=group-rename-input]",
        &format!("Release crew{KEY_ENTER}"),
    )
    .await?;
    a.wait_for_text("[data-testid=group-info-name]", UI_LIMIT, |t| {
        t == "Release crew"
    })
    .await?;
    a.wait_for_text("[data-testid=conversation-title]", UI_LIMIT, |t| {
        t == "Release crew"
    })
    .await?;
    b.wait_for_text(&row, DELIVERY_LIMIT, |t| t.contains("Release crew"))
        .await?;
    b.wait_for_text("[data-testid=conversation-title]", UI_LIMIT, |t| {
        t == "Release crew"
    })
    .await?;

    // An announcement set in A's panel shows as a banner on top of B's conversation.
    a.click("[data-testid=group-edit-announcement]").await?;
    let notice = "Code freeze Friday 18:00 · 周五18点冻结代码";
    a.type_text("[data-testid=group-announcement-input]", notice)
        .await?;
    a.click("[data-testid=group-announcement-save]").await?;
    a.wait_for_text("[data-testid=group-info-announcement]", UI_LIMIT, |t| {
        t == notice
    })
    .await?;
    b.wait_for_text("[data-testid=announcement-banner]", DELIVERY_LIMIT, |t| {
        t.contains(notice)
    })
    .await?;

    // The panel at the smallest supported window, light and dark, English and Chinese.
    // The window's frame is not part of the page: size it so the page gets 1024×640.
    let frame = a
        .execute("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]")
        .await?;
    let frame_w = frame[0].as_u64().unwrap_or(0) as u32;
    let frame_h = frame[1].as_u64().unwrap_or(0) as u32;
    a.set_window_size(1024 + frame_w, 640 + frame_h).await?;
    a.wait_for_text(&member_b, UI_LIMIT, |t| t.contains("bravo"))
        .await?;
    let overflow = a
        .execute(
            "const p = document.querySelector('[data-testid=group-info]').getBoundingClientRect(); \
             return p.right <= window.innerWidth && p.left >= 0",
        )
        .await?;
    assert_eq!(overflow, true, "the panel fits the window");
    a.screenshot(&shots.join("group-info-light.png")).await?;
    b.screenshot(&shots.join("group-banner-b-light.png"))
        .await?;
    a.prefer_color_scheme("dark").await?;
    a.screenshot(&shots.join("group-info-dark.png")).await?;
    a.click("[data-testid=lang-zh-CN]").await?;
    a.wait_for_text("[data-testid=group-info] h2", UI_LIMIT, |t| t == "群组信息")
        .await?;
    a.screenshot(&shots.join("group-info-dark-zh-CN.png"))
        .await?;

    a.quit().await?;
    b.quit().await?;
    Ok(())
}

#[tokio::test]
async fn messenger_group_invitation_leave_and_dissolve() -> anyhow::Result<()> {
    let shots = artifacts_dir("browser")?;
    let pair = LoopbackPair::start("office", "office").await?;
    // B asks before joining groups.
    let (status, body) = pair
        .b
        .put_json(
            "v1/settings",
            &serde_json::json!({"lan_mesh": {"auto_accept_group_sync": false}}),
        )
        .await?;
    anyhow::ensure!(status.is_success(), "auto-accept off: {status}: {body}");
    let a = Browser::start().await?;
    let b = Browser::start().await?;
    open_messenger(&a, &pair.a).await?;
    open_messenger(&b, &pair.b).await?;
    for (browser, other) in [(&a, &pair.b_id), (&b, &pair.a_id)] {
        let user = format!("[data-testid=user-{other}]");
        wait_until(UI_LIMIT, "the other node online", || async {
            let online = attr(browser, &user, "data-online").await.ok()??;
            (online == "true").then_some(())
        })
        .await?;
    }

    let group = post_json(
        &pair.a,
        "v1/groups",
        &serde_json::json!({"name": "Ops 值班", "members": [pair.b_id]}),
    )
    .await?;
    let group_id = group["id"].as_str().unwrap_or_default().to_string();
    let row = format!("[data-testid='group-group:{group_id}']");

    // B sees the invitation, live, with who sent it; the group is not joined yet.
    let invitation = b
        .wait_for_text(
            &format!("[data-testid=invitation-{group_id}]"),
            DELIVERY_LIMIT,
            |t| t.contains("Ops 值班"),
        )
        .await?;
    assert!(invitation.contains("alpha"), "who invited: {invitation}");
    assert!(b.text(&row).await?.is_none(), "not in B's groups yet");
    b.screenshot(&shots.join("group-invitation.png")).await?;

    // Accepted: the invitation goes and the group is in B's rail.
    b.click(&format!("[data-testid=accept-{group_id}]")).await?;
    b.wait_for_text(&row, DELIVERY_LIMIT, |t| t.contains("Ops 值班"))
        .await?;
    wait_until(UI_LIMIT, "the invitation gone", || async {
        b.text("[data-testid=invitations]")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await?;

    // A watches the members in its info panel while B leaves from B's panel.
    a.click(&row).await?;
    a.click("[data-testid=group-info-button]").await?;
    let member_b = format!("[data-testid=member-{}]", pair.b_id);
    a.wait_for_text(&member_b, DELIVERY_LIMIT, |t| t.contains("bravo"))
        .await?;
    b.click(&row).await?;
    b.click("[data-testid=group-info-button]").await?;
    b.click("[data-testid=group-leave]").await?;
    let question = b
        .wait_for_text("[data-testid=group-confirm]", UI_LIMIT, |t| {
            t.contains("Leave")
        })
        .await?;
    assert!(question.contains("Ops 值班"), "{question}");
    b.click("[data-testid=group-confirm-yes]").await?;
    b.wait_for_text("[data-testid=group-standing]", UI_LIMIT, |t| {
        t.contains("no longer a member")
    })
    .await?;
    b.wait_for_text("[data-testid=composer-note]", UI_LIMIT, |t| {
        t.contains("no longer a member")
    })
    .await?;
    assert_eq!(
        b.execute("return document.querySelector('[data-testid=composer]').disabled")
            .await?,
        true,
        "B cannot send any more"
    );
    assert!(b.text("[data-testid=group-rename]").await?.is_none());
    b.screenshot(&shots.join("group-left.png")).await?;
    wait_until(DELIVERY_LIMIT, "B gone from A's panel", || async {
        a.text(&member_b).await.ok()?.is_none().then_some(())
    })
    .await?;

    // A dissolves it (confirmed): nobody sends or changes it any more.
    a.click("[data-testid=group-dissolve]").await?;
    a.click("[data-testid=group-confirm-yes]").await?;
    a.wait_for_text("[data-testid=group-standing]", UI_LIMIT, |t| {
        t.contains("dissolved")
    })
    .await?;
    a.wait_for_text("[data-testid=composer-note]", UI_LIMIT, |t| {
        t.contains("dissolved")
    })
    .await?;
    assert!(a.text("[data-testid=group-rename]").await?.is_none());
    assert!(a.text("[data-testid=group-dissolve]").await?.is_none());
    let on_a = pair.a.get_json(&format!("v1/groups/{group_id}")).await?;
    assert_eq!(on_a["dissolved"], true, "{on_a}");
    a.screenshot(&shots.join("group-dissolved.png")).await?;

    a.quit().await?;
    b.quit().await?;
    Ok(())
}

/// The page follows its node across a restart: the event stream drops when the node
/// stops, reconnects by itself when it is back (same address), and resyncs, so a message
/// that arrives afterwards shows without a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messenger_reconnects_when_its_node_comes_back() -> anyhow::Result<()> {
    let mut pair = LoopbackPair::start("office", "office").await?;
    let a = Browser::start().await?;
    open_messenger(&a, &pair.a).await?;
    let user_b = format!("[data-testid=user-{}]", pair.b_id);
    a.wait_for_text(&user_b, UI_LIMIT, |t| t.contains("bravo"))
        .await?;
    a.click(&user_b).await?;
    a.wait_for_text("[data-testid=conversation-title]", UI_LIMIT, |t| {
        t == "bravo"
    })
    .await?;
    // A mark on the page: gone if it reloads.
    a.execute("window.__lanchat_no_reload = true; return true")
        .await?;

    pair.restart_on_same_api_port(lanchat_tests::Side::A)
        .await?;
    let dm_on_b = format!("dm:lan:{}", pair.a_id);
    post_json(
        &pair.b,
        &format!("v1/conversations/{dm_on_b}/messages"),
        &serde_json::json!({"text": "after your restart"}),
    )
    .await?;
    wait_until(
        DELIVERY_LIMIT,
        "B's message in A's page after the restart",
        || async {
            let shown = a.shown_messages().await.ok()?;
            shown
                .iter()
                .any(|(t, outgoing, _)| t == "after your restart" && !outgoing)
                .then_some(())
        },
    )
    .await?;
    assert_eq!(
        a.execute("return window.__lanchat_no_reload === true")
            .await?,
        true,
        "the page was not reloaded"
    );
    Ok(())
}
