//! "Open" and "Show in folder" in the real desktop window (issue 17): the desktop app
//! under Xvfb with a session bus and dunst (`desktop_session`), a headless peer on
//! loopback sending it a file, and the system's tools replaced at their usual places —
//! an `xdg-open` first in `PATH` that records its arguments, and a file manager that
//! this test serves on the session bus as `org.freedesktop.FileManager1`, recording
//! `ShowItems` — so the product's own opener code runs (no `LANCHAT_OPENER`).
//!
//! `the_window_opens_a_received_file_and_shows_it_in_its_folder`: the file's
//! notification opens the window on the conversation; the window shows Open and Show in
//! folder (read by OCR; a browser shows neither, `browser_files`); clicking Open
//! (found on screen by OCR, clicked with xdotool) exports the file into the downloads
//! folder and runs `xdg-open <file>`; clicking Show in folder asks the file manager to
//! show `file:///…/report-q3.txt`; with no file manager on the bus, Show in folder
//! opens the folder with `xdg-open <folder>` instead.
//!
//! Screenshots, logs and the downloads folder stay in `target/test-artifacts/desktop_open/`.

mod desktop_session;

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{ensure, Context};
use desktop_session::{write_pair, DesktopSession, LIMIT};
use lanchat_tests::chat::{dm, wait_contact_online};
use lanchat_tests::files::write_recording_script;
use lanchat_tests::{artifacts_dir, wait_until, NodeProcess};

/// A file manager on the session bus that only records what it was asked to show.
struct FakeFileManager {
    shown: Arc<Mutex<Vec<Vec<String>>>>,
}

#[zbus::interface(name = "org.freedesktop.FileManager1")]
impl FakeFileManager {
    fn show_items(&self, uris: Vec<String>, _startup_id: String) {
        self.shown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(uris);
    }
}

/// Where `word` is on screen (the middle of the first box OCR reads it in), in screen
/// pixels; `None` when no pass reads it.
fn find_word(
    session: &DesktopSession,
    shot: &Path,
    word: &str,
) -> anyhow::Result<Option<(i64, i64)>> {
    session.screenshot(shot)?;
    let prepared = shot.with_extension("find.png");
    let (shot_s, prepared_s) = (
        shot.to_string_lossy().into_owned(),
        prepared.to_string_lossy().into_owned(),
    );
    for steps in [
        &[
            "-resize",
            "200%",
            "-colorspace",
            "Gray",
            "-level",
            "10%,90%",
        ][..],
        &[
            "-resize",
            "200%",
            "-colorspace",
            "Gray",
            "-threshold",
            "75%",
        ][..],
    ] {
        let mut args = vec![shot_s.as_str()];
        args.extend_from_slice(steps);
        args.push(&prepared_s);
        session.run("convert", &args)?;
        let tsv = session.run("tesseract", &[&prepared_s, "stdout", "--psm", "11", "tsv"])?;
        for line in tsv.lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() < 12 || cols[11].trim() != word {
                continue;
            }
            let n = |i: usize| cols[i].parse::<i64>().unwrap_or(0);
            // The image was read at twice the screen's size.
            return Ok(Some(((n(6) + n(8) / 2) / 2, (n(7) + n(9) / 2) / 2)));
        }
    }
    Ok(None)
}

/// Clicks `word` where OCR finds it on screen.
async fn click_word(session: &DesktopSession, shot: &Path, word: &str) -> anyhow::Result<()> {
    let (x, y) = wait_until(LIMIT, &format!("{word:?} on screen"), || async {
        find_word(session, shot, word).ok().flatten()
    })
    .await?;
    session.run(
        "xdotool",
        &["mousemove", &x.to_string(), &y.to_string(), "click", "1"],
    )?;
    Ok(())
}

#[tokio::test]
async fn the_window_opens_a_received_file_and_shows_it_in_its_folder() -> anyhow::Result<()> {
    let root = artifacts_dir("desktop_open")?;
    std::fs::remove_dir_all(&root)?;
    std::fs::create_dir_all(&root)?;
    let session = DesktopSession::start(&root.join("session")).await?;

    // The file manager, on the session bus.
    let shown = Arc::new(Mutex::new(Vec::new()));
    let file_manager = zbus::connection::Builder::address(session.bus.as_str())?
        .name("org.freedesktop.FileManager1")?
        .serve_at(
            "/org/freedesktop/FileManager1",
            FakeFileManager {
                shown: Arc::clone(&shown),
            },
        )?
        .build()
        .await?;

    // xdg-open, first in PATH.
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin)?;
    let record = root.join("xdg-open-calls.txt");
    write_recording_script(&bin.join("xdg-open"), &record)?;
    let calls = || std::fs::read_to_string(&record).unwrap_or_default();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let downloads = root.join("downloads");

    let (a_id, b_id, dir_a, dir_b) = write_pair(&root)?;
    let mut env = session.env();
    env.push(("PATH", path));
    env.push(("XDG_DOWNLOAD_DIR", downloads.display().to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut a = NodeProcess::start(&dir_a, &["window", "--hidden"], &env).await?;
    let b = NodeProcess::serve(&dir_b).await?;
    wait_contact_online(&a, &b_id, true, LIMIT).await?;

    // Zhang sends a file; the desktop downloads it by itself and notifies.
    let bytes = b"Q3: revenue up, costs down.\n".repeat(200);
    let resp = b
        .http()
        .post(b.api_url(&format!(
            "v1/conversations/{}/files?name=report-q3.txt",
            dm(&a_id)
        )))
        .bearer_auth(&b.token)
        .body(bytes.clone())
        .send()
        .await?;
    ensure!(resp.status().as_u16() == 201, "{}", resp.text().await?);
    let conversation = dm(&b_id);
    let file_id = wait_until(LIMIT, "the file complete on the desktop", || async {
        let page = a
            .get_json(&format!("v1/conversations/{conversation}/messages"))
            .await
            .ok()?;
        let attachment = page["messages"]
            .as_array()?
            .iter()
            .flat_map(|m| m["attachments"].as_array().cloned().unwrap_or_default())
            .find(|f| f["name"] == "report-q3.txt")?;
        (attachment["state"] == "available")
            .then(|| attachment["file_id"].as_str().map(str::to_string))
            .flatten()
    })
    .await
    .with_context(|| a.log())?;
    wait_until(LIMIT, "the notification", || async {
        (session.displayed().ok()? >= 1).then_some(())
    })
    .await
    .with_context(|| a.log())?;
    session.dunstctl(&["action", "0"])?;
    wait_until(LIMIT, "the window to open", || {
        let found = session.visible_windows("lanchat").into_iter().next();
        async move { found }
    })
    .await
    .with_context(|| a.log())?;
    let result = async {
        session
            .wait_screen_text(
                &root.join("window-file.png"),
                &["report-q3.txt", "show in folder"],
            )
            .await?;

        // Open: exported, then xdg-open with the file.
        let exported = downloads.join("lanchat").join("report-q3.txt");
        click_word(&session, &root.join("click-open.png"), "Open").await?;
        let want = format!("1|{}", exported.display());
        wait_until(LIMIT, "xdg-open started with the file", || async {
            calls().lines().any(|l| l == want).then_some(())
        })
        .await?;
        ensure!(std::fs::read(&exported)? == bytes, "the exported bytes");

        // Show in folder: the file manager is asked to show the file.
        click_word(&session, &root.join("click-reveal.png"), "folder").await?;
        let uri = format!("file://{}", exported.display());
        wait_until(LIMIT, "the file manager asked to show the file", || {
            let asked = shown
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|uris| uris == std::slice::from_ref(&uri));
            async move { asked.then_some(()) }
        })
        .await?;
        ensure!(
            calls().lines().count() == 1,
            "no xdg-open for a shown folder: {}",
            calls()
        );
        Ok(())
    }
    .await;
    let result = result.with_context(|| a.log());
    session.screenshot(&root.join("end.png"))?;
    result?;

    // No file manager on the bus: the folder is opened instead.
    drop(file_manager);
    let resp = a
        .http()
        .post(a.api_url(&format!("v1/files/{file_id}/reveal")))
        .bearer_auth(&a.token)
        .send()
        .await?;
    ensure!(resp.status().as_u16() == 200, "{}", resp.text().await?);
    let folder = format!("1|{}", downloads.join("lanchat").display());
    wait_until(LIMIT, "xdg-open started with the folder", || async {
        calls().lines().any(|l| l == folder).then_some(())
    })
    .await
    .with_context(|| format!("{}\n{}", calls(), a.log()))?;

    drop(b);
    ensure!(a.stop().await?.success(), "exits cleanly on SIGTERM");
    Ok(())
}
