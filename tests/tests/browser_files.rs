//! Files in the UI (issue 17), in a real headless Chromium against two real nodes on
//! loopback:
//!
//! - `files_dropped_and_pasted_in_the_ui_reach_the_peer`: A drops an image on the DM
//!   with B and pastes another into the composer; both show as thumbnails on A, arrive
//!   on B with their attachments, download by themselves (under the auto-download size)
//!   byte for byte, and B's UI shows them, saves one and opens the full-size viewer.
//! - `the_desktop_window_opens_a_received_file_and_shows_it_in_its_folder`: a browser
//!   shows Save but neither Open nor Show in folder; the page marked as the desktop
//!   window (`lanchat.desktop` in sessionStorage, as the window's init script does)
//!   shows both, and they export the file into B's downloads folder and start B's
//!   opener (`LANCHAT_OPENER`, a script recording its arguments) with `open <path>` and
//!   `reveal <path>`; on A, which runs without a desktop, Open shows the node's
//!   `no_desktop` error in the row.

use std::time::Duration;

use lanchat_tests::chat::{dm, wait_contact_online};
use lanchat_tests::files::write_opener;
use lanchat_tests::webdriver::Browser;
use lanchat_tests::{artifacts_dir, wait_until, LoopbackPair, NodeProcess, PairPlan, Side};
use serde_json::Value;

const UI_LIMIT: Duration = Duration::from_secs(30);
const DELIVERY_LIMIT: Duration = Duration::from_secs(30);

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

/// A valid RGB PNG of `width`×`height` in one colour (stored, uncompressed deflate),
/// so the test needs no image library and each colour is a different file.
fn png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut typed = kind.to_vec();
        typed.extend_from_slice(data);
        out.extend_from_slice(&typed);
        out.extend_from_slice(&crc32(&typed).to_be_bytes());
    }
    // Each row: filter byte 0 (none), then its pixels.
    let row: Vec<u8> = std::iter::once(0)
        .chain(rgb.iter().copied().cycle().take(width as usize * 3))
        .collect();
    let raw = row.repeat(height as usize);
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());

    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A JavaScript expression building a `File` of these bytes.
fn js_file(bytes: &[u8], name: &str, mime: &str) -> String {
    let list = bytes
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(",");
    format!("new File([new Uint8Array([{list}])], {name:?}, {{type: {mime:?}}})")
}

/// The messages of a conversation as a node's API lists them (newest page).
async fn messages(node: &NodeProcess, conversation: &str) -> anyhow::Result<Vec<Value>> {
    let page = node
        .get_json(&format!(
            "v1/conversations/{conversation}/messages?limit=50"
        ))
        .await?;
    Ok(page["messages"].as_array().cloned().unwrap_or_default())
}

/// The attachment named `name` (or whose name starts with it) among the messages.
fn attachment_named(messages: &[Value], name: impl Fn(&str) -> bool) -> Option<Value> {
    messages
        .iter()
        .flat_map(|m| m["attachments"].as_array().cloned().unwrap_or_default())
        .find(|a| a["name"].as_str().is_some_and(&name))
}

async fn count(browser: &Browser, css: &str) -> anyhow::Result<u64> {
    let v = browser
        .execute(&format!("return document.querySelectorAll({css:?}).length"))
        .await?;
    Ok(v.as_u64().unwrap_or(0))
}

#[tokio::test]
async fn files_dropped_and_pasted_in_the_ui_reach_the_peer() -> anyhow::Result<()> {
    let shots = artifacts_dir("browser_files")?;
    let pair = LoopbackPair::start("office", "office").await?;
    let dm_on_a = dm(&pair.b_id);
    let dm_on_b = dm(&pair.a_id);
    pair.explain(wait_contact_online(&pair.a, &pair.b_id, true, DELIVERY_LIMIT).await)?;
    let dropped = png(48, 32, [200, 40, 40]);
    let pasted = png(40, 30, [30, 90, 220]);

    let a = Browser::start().await?;
    open_messenger(&a, &pair.a).await?;
    a.click(&format!("[data-testid=user-{}]", pair.b_id))
        .await?;
    a.wait_for_text("[data-testid=conversation-title]", UI_LIMIT, |t| {
        t == "bravo"
    })
    .await?;

    // A drop: dragging files over the conversation shows the drop zone, dropping sends.
    let drag = format!(
        "const dt = new DataTransfer(); dt.items.add({}); window.__lanchatDrop = dt; \
         const target = document.querySelector('[data-testid=conversation]'); \
         for (const type of ['dragenter', 'dragover']) {{ \
           target.dispatchEvent(new DragEvent(type, {{bubbles: true, cancelable: true, dataTransfer: dt}})); \
         }} \
         return true",
        js_file(&dropped, "dropped.png", "image/png")
    );
    a.execute(&drag).await?;
    wait_until(UI_LIMIT, "the drop zone shown while dragging", || async {
        (count(&a, "[data-testid=drop-zone]").await.ok()? == 1).then_some(())
    })
    .await?;
    a.screenshot(&shots.join("drop-zone.png")).await?;
    let prevented = a
        .execute(
            "const target = document.querySelector('[data-testid=conversation]'); \
             const ev = new DragEvent('drop', {bubbles: true, cancelable: true, dataTransfer: window.__lanchatDrop}); \
             target.dispatchEvent(ev); \
             return ev.defaultPrevented",
        )
        .await?;
    assert_eq!(
        prevented, true,
        "the page takes the drop (the browser would open the file)"
    );
    wait_until(UI_LIMIT, "the drop zone gone after the drop", || async {
        (count(&a, "[data-testid=drop-zone]").await.ok()? == 0).then_some(())
    })
    .await?;

    // A paste of an image into the composer sends it as a screenshot; text stays.
    a.type_text("[data-testid=composer]", "draft kept").await?;
    let paste = format!(
        "const dt = new DataTransfer(); dt.items.add({}); \
         const composer = document.querySelector('[data-testid=composer]'); composer.focus(); \
         const ev = new ClipboardEvent('paste', {{bubbles: true, cancelable: true, clipboardData: dt}}); \
         composer.dispatchEvent(ev); \
         return ev.defaultPrevented",
        js_file(&pasted, "image.png", "image/png")
    );
    let prevented = a.execute(&paste).await?;
    assert_eq!(
        prevented, true,
        "the pasted image is the page's, not the text area's"
    );

    // A shows both as thumbnails, in its own messages, available here.
    wait_until(UI_LIMIT, "two thumbnails on A", || async {
        (count(
            &a,
            "[data-testid=message-list] [data-testid=attachment-thumb]",
        )
        .await
        .ok()?
            >= 2)
            .then_some(())
    })
    .await?;
    assert_eq!(
        a.execute("return document.querySelector('[data-testid=composer]').value")
            .await?,
        "draft kept",
        "a pasted image leaves the typed text alone"
    );
    let on_a = messages(&pair.a, &dm_on_a).await?;
    let sent_drop = attachment_named(&on_a, |n| n == "dropped.png")
        .ok_or_else(|| anyhow::anyhow!("no dropped.png on A: {on_a:?}"))?;
    let sent_paste = attachment_named(&on_a, |n| {
        n.starts_with("screenshot-") && n.ends_with(".png")
    })
    .ok_or_else(|| anyhow::anyhow!("no screenshot-….png on A: {on_a:?}"))?;
    for a_file in [&sent_drop, &sent_paste] {
        assert_eq!(a_file["state"], "available", "{a_file}");
        assert!(
            a_file["path"].is_null(),
            "a single file has no folder: {a_file}"
        );
    }
    assert_eq!(sent_drop["size"], dropped.len() as u64);
    assert_eq!(sent_paste["size"], pasted.len() as u64);
    let drop_id = sent_drop["file_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let paste_id = sent_paste["file_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for id in [&drop_id, &paste_id] {
        let css = format!("[data-testid=attachment][data-file-id='{id}']");
        wait_until(UI_LIMIT, "A's attachment shown available", || async {
            let state = a
                .execute(&format!(
                    "return document.querySelector({css:?})?.dataset.state ?? null"
                ))
                .await
                .ok()?;
            (state == "available").then_some(())
        })
        .await?;
    }
    a.screenshot(&shots.join("sent-a.png")).await?;

    // B has both messages with their attachments, downloads them by itself (20 MB
    // auto-download by default) and serves exactly the bytes A sent.
    let on_b = pair.explain(
        wait_until(DELIVERY_LIMIT, "both files available on B", || async {
            let list = messages(&pair.b, &dm_on_b).await.ok()?;
            let d = attachment_named(&list, |n| n == "dropped.png")?;
            let p = attachment_named(&list, |n| n.starts_with("screenshot-"))?;
            (d["state"] == "available" && p["state"] == "available").then_some(list)
        })
        .await,
    )?;
    let got_drop = attachment_named(&on_b, |n| n == "dropped.png")
        .ok_or_else(|| anyhow::anyhow!("no dropped.png on B"))?;
    assert_eq!(got_drop["file_id"], drop_id.as_str());
    assert_eq!(got_drop["mime"], "image/png");
    assert!(
        got_drop["thumbnail"]
            .as_str()
            .is_some_and(|t| t.starts_with("data:image/")),
        "an image carries its thumbnail: {got_drop}"
    );
    for (id, bytes) in [(&drop_id, &dropped), (&paste_id, &pasted)] {
        let resp = pair.b.get(&format!("v1/files/{id}")).await?;
        assert!(
            resp.status().is_success(),
            "GET v1/files/{id}: {}",
            resp.status()
        );
        let body = resp.bytes().await?;
        assert_eq!(body.as_ref(), bytes.as_slice(), "B serves the same bytes");
    }

    // B's UI: the list previews the file, the conversation shows the thumbnails.
    let b = Browser::start().await?;
    open_messenger(&b, &pair.b).await?;
    let chat_on_b = format!("[data-testid='chat-{dm_on_b}']");
    b.wait_for_text(&chat_on_b, UI_LIMIT, |t| t.contains("📎 "))
        .await?;
    b.click(&chat_on_b).await?;
    wait_until(UI_LIMIT, "two thumbnails on B", || async {
        (count(
            &b,
            "[data-testid=message-list] [data-testid=attachment-thumb]",
        )
        .await
        .ok()?
            >= 2)
            .then_some(())
    })
    .await?;
    let drop_row = format!("[data-testid=attachment][data-file-id='{drop_id}']");
    b.wait_for_text(
        &format!("{drop_row} [data-testid=attachment-state]"),
        UI_LIMIT,
        |t| t == "Ready",
    )
    .await?;

    // Save fetches the file with the token and hands it to the browser: no error shows
    // and the button comes back.
    b.click(&format!("{drop_row} [data-testid=attachment-save]"))
        .await?;
    b.wait_for_text(
        &format!("{drop_row} [data-testid=attachment-save]"),
        UI_LIMIT,
        |t| t == "Save",
    )
    .await?;
    assert_eq!(count(&b, &format!("{drop_row} [role=alert]")).await?, 0);

    // The thumbnail opens the full-size viewer with the real image (an object URL);
    // Escape closes it.
    b.click(&format!("{drop_row} .thumb")).await?;
    let natural = wait_until(UI_LIMIT, "the full image in the viewer", || async {
        let v = b
            .execute(
                "const img = document.querySelector('[data-testid=image-viewer-img]'); \
                 return img && img.complete && img.src.startsWith('blob:') ? img.naturalWidth : null",
            )
            .await
            .ok()?;
        v.as_u64().filter(|w| *w > 0)
    })
    .await?;
    assert_eq!(
        natural, 48,
        "the viewer shows the file itself, not the thumbnail"
    );
    b.screenshot(&shots.join("viewer-b.png")).await?;
    b.execute(
        "document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape', bubbles: true})); \
         return true",
    )
    .await?;
    wait_until(UI_LIMIT, "the viewer closed by Escape", || async {
        (count(&b, "[data-testid=image-viewer]").await.ok()? == 0).then_some(())
    })
    .await?;

    a.quit().await?;
    b.quit().await?;
    Ok(())
}

/// Marks the page as the desktop window (what the window's init script does) and
/// reloads it.
async fn as_desktop_window(browser: &Browser) -> anyhow::Result<()> {
    browser
        .execute(
            "window.__lanchatBeforeReload = true; \
             sessionStorage.setItem('lanchat.desktop', '1'); location.reload(); return true",
        )
        .await?;
    wait_until(UI_LIMIT, "the page reloaded", || async {
        let v = browser
            .execute(
                "return window.__lanchatBeforeReload === undefined && \
                 !!document.querySelector('[data-testid=me-name]')?.textContent",
            )
            .await
            .ok()?;
        (v == true).then_some(())
    })
    .await
}

#[tokio::test]
async fn the_desktop_window_opens_a_received_file_and_shows_it_in_its_folder() -> anyhow::Result<()>
{
    let plan = PairPlan::new("office-open-files", "office-open-files")?
        .keep_in_artifacts("browser_files/open")?;
    let root = plan
        .data_dir(Side::A)
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no root"))?
        .to_path_buf();
    let downloads = root.join("downloads-b");
    let record = root.join("opener-calls.txt");
    let script = write_opener(&root, &record)?;
    let script = script.to_string_lossy().into_owned();
    let downloads_env = downloads.to_string_lossy().into_owned();
    let a_downloads = root.join("downloads-a").to_string_lossy().into_owned();
    let pair = plan
        .env_both("LANCHAT_OPENER", &script)
        .env_both("WAYLAND_DISPLAY", "")
        .env(Side::A, "DISPLAY", "")
        .env(Side::A, "XDG_DOWNLOAD_DIR", &a_downloads)
        .env(Side::B, "DISPLAY", ":lanchat-test")
        .env(Side::B, "XDG_DOWNLOAD_DIR", &downloads_env)
        .start()
        .await?;
    let (a_id, b_id) = (pair.id(Side::A).to_string(), pair.id(Side::B).to_string());
    pair.explain(wait_contact_online(pair.node(Side::A), &b_id, true, DELIVERY_LIMIT).await)?;

    // A sends a file; B downloads it by itself.
    let bytes = "会议纪要: ship on Friday\n".repeat(100).into_bytes();
    let name = "会议纪要.txt";
    let a = pair.node(Side::A);
    let resp = a
        .http()
        .post(a.api_url(&format!(
            "v1/conversations/{}/files?name=%E4%BC%9A%E8%AE%AE%E7%BA%AA%E8%A6%81.txt",
            dm(&b_id)
        )))
        .bearer_auth(&a.token)
        .body(bytes.clone())
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 201, "{}", resp.text().await?);
    let b = pair.node(Side::B);
    let dm_on_b = dm(&a_id);
    let file_id = pair.explain(
        wait_until(DELIVERY_LIMIT, "the file available on B", || async {
            let list = messages(b, &dm_on_b).await.ok()?;
            let f = attachment_named(&list, |n| n == name)?;
            (f["state"] == "available")
                .then(|| f["file_id"].as_str().unwrap_or_default().to_string())
        })
        .await,
    )?;
    let row = format!("[data-testid=attachment][data-file-id='{file_id}']");

    // In a browser: Save, no Open or Show in folder.
    let browser = Browser::start().await?;
    open_messenger(&browser, b).await?;
    let chat_on_b = format!("[data-testid='chat-{dm_on_b}']");
    browser.click(&chat_on_b).await?;
    browser
        .wait_for_text(
            &format!("{row} [data-testid=attachment-save]"),
            UI_LIMIT,
            |t| t == "Save",
        )
        .await?;
    assert_eq!(
        count(&browser, &format!("{row} [data-testid=attachment-open]")).await?,
        0
    );
    assert_eq!(
        count(&browser, &format!("{row} [data-testid=attachment-reveal]")).await?,
        0
    );

    // In the desktop window: Open and Show in folder, acting on B's desktop.
    as_desktop_window(&browser).await?;
    browser.click(&chat_on_b).await?;
    browser
        .wait_for_text(
            &format!("{row} [data-testid=attachment-open]"),
            UI_LIMIT,
            |t| t == "Open",
        )
        .await?;
    assert_eq!(
        browser
            .text(&format!("{row} [data-testid=attachment-reveal]"))
            .await?
            .as_deref(),
        Some("Show in folder")
    );
    browser
        .screenshot(&artifacts_dir("browser_files")?.join("desktop-open-b.png"))
        .await?;
    let exported = downloads.join("lanchat").join(name);
    let calls = || std::fs::read_to_string(&record).unwrap_or_default();
    browser
        .click(&format!("{row} [data-testid=attachment-open]"))
        .await?;
    let opened = format!("2|open|{}", exported.display());
    pair.explain(
        wait_until(UI_LIMIT, "the opener started by Open", || async {
            calls().lines().any(|l| l == opened).then_some(())
        })
        .await,
    )?;
    assert_eq!(std::fs::read(&exported)?, bytes, "the exported file");
    browser
        .click(&format!("{row} [data-testid=attachment-reveal]"))
        .await?;
    let revealed = format!("2|reveal|{}", exported.display());
    pair.explain(
        wait_until(UI_LIMIT, "the opener started by Show in folder", || async {
            calls().lines().any(|l| l == revealed).then_some(())
        })
        .await,
    )?;
    assert_eq!(count(&browser, &format!("{row} [role=alert]")).await?, 0);
    browser.quit().await?;

    // A has no desktop: the node's error shows in the row, like any other.
    let on_a = Browser::start().await?;
    open_messenger(&on_a, a).await?;
    as_desktop_window(&on_a).await?;
    on_a.click(&format!("[data-testid='chat-{}']", dm(&b_id)))
        .await?;
    on_a.click(&format!("{row} [data-testid=attachment-open]"))
        .await?;
    on_a.wait_for_text(&format!("{row} [role=alert]"), UI_LIMIT, |t| {
        t.contains("without a desktop")
    })
    .await?;
    on_a.screenshot(&artifacts_dir("browser_files")?.join("desktop-open-no-desktop-a.png"))
        .await?;
    on_a.quit().await?;
    assert_eq!(calls().lines().count(), 2, "{}", calls());
    Ok(())
}
