//! Smoke test of the desktop window: `lanchat` under Xvfb opens a window titled
//! "lanchat" that renders the UI with data from its node. Checked from the outside, as
//! a person would: the X window's name, a screenshot that is not blank, and the text
//! read off the screenshot by OCR.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use lanchat_tests::{artifacts_dir, wait_until, NodeProcess};

const WINDOW_LIMIT: Duration = Duration::from_secs(60);
const DISPLAY_NAME: &str = "Window Smoke Test";

struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    async fn start() -> anyhow::Result<Xvfb> {
        let n = (99..300)
            .find(|n| {
                !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                    && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
            })
            .context("no free X display number")?;
        let display = format!(":{n}");
        let child = Command::new("Xvfb")
            .args([&display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start Xvfb (install xvfb; `make test` does)")?;
        let socket = format!("/tmp/.X11-unix/X{n}");
        wait_until(Duration::from_secs(20), "Xvfb to listen", || {
            let ready = Path::new(&socket).exists();
            async move { ready.then_some(()) }
        })
        .await?;
        Ok(Xvfb { child, display })
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &str, args: &[&str], display: &str) -> anyhow::Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .env("DISPLAY", display)
        .output()
        .with_context(|| format!("run {cmd} (is it installed? `make test` installs it)"))?;
    if !out.status.success() {
        bail!("{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn the_window_opens_titled_and_shows_the_node() -> anyhow::Result<()> {
    let shots = artifacts_dir("window")?;
    let xvfb = Xvfb::start().await?;
    let tmp = tempfile::tempdir()?;
    let data_dir = tmp.path().join("node");
    let node_id = lanchat_tests::keyed_node_id()?;
    let settings = serde_json::json!({
        "lan_mesh": {"node_id": node_id, "display_name": DISPLAY_NAME},
        "ui": {"language": "en-US"}
    });
    lanchat_tests::write_settings(&data_dir, &settings)?;

    let mut node = NodeProcess::start(&data_dir, &[], &[("DISPLAY", &xvfb.display)]).await?;
    let status = node.get_json("v1/status").await?;
    assert_eq!(status["node_id"], node_id.as_str());

    let display = xvfb.display.clone();
    let window = wait_until(WINDOW_LIMIT, "an X window named lanchat", || {
        let found = run("xdotool", &["search", "--name", "^lanchat$"], &display).ok();
        async move { found.and_then(|ids| ids.lines().next().map(str::to_string)) }
    })
    .await
    .with_context(|| node.log())?;
    assert_eq!(
        run("xdotool", &["getwindowname", &window], &display)?.trim(),
        "lanchat"
    );

    // Screenshot until the page has rendered the node's data (WebKit starts slowly).
    let shot = shots.join("window.png");
    let shot_str = shot.to_string_lossy().into_owned();
    // OCR reads small UI text far more reliably at twice the size.
    let ocr_input = tmp.path().join("ocr.png");
    let ocr_str = ocr_input.to_string_lossy().into_owned();
    let text = wait_until(WINDOW_LIMIT, "the UI to render the node's status", || {
        let text = run("import", &["-window", "root", &shot_str], &display)
            .and_then(|_| {
                run(
                    "convert",
                    &[&shot_str, "-resize", "200%", &ocr_str],
                    &display,
                )
            })
            .and_then(|_| run("tesseract", &[&ocr_str, "stdout"], &display))
            .ok();
        // The display name comes only from the node's API: seeing it proves the wasm UI
        // ran and fetched the status. (Bold headings OCR less reliably.)
        async move { text.filter(|t| t.contains(DISPLAY_NAME)) }
    })
    .await
    .with_context(|| format!("last screenshot: {}\n{}", shot.display(), node.log()))?;
    assert!(text.contains("lanchat"), "the app title is visible: {text}");

    let spread: f64 = run(
        "convert",
        &[&shot_str, "-format", "%[fx:standard_deviation]", "info:"],
        &display,
    )?
    .trim()
    .parse()?;
    assert!(
        spread > 0.02,
        "the screenshot is not blank (std dev {spread})"
    );

    assert!(
        node.stop().await?.success(),
        "window app exits cleanly on SIGTERM"
    );
    assert!(!data_dir.join("api.json").exists());
    Ok(())
}
