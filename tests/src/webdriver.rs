//! A small W3C WebDriver client for Debian's headless Chromium via `chromedriver`, and
//! for the real desktop window via `tauri-driver` and Debian's `WebKitWebDriver`.
//! Only what the tests need: navigate, find, read text, click, run a script, screenshot.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use serde_json::{json, Value};

use crate::{free_port, wait_until};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const WEBKIT_WEBDRIVER: &str = "/usr/bin/WebKitWebDriver";
/// The longest any one WebDriver command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);
/// The W3C name of an element reference in WebDriver answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Option<Child>,
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium session.
    pub async fn start() -> anyhow::Result<Browser> {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(bin).exists() {
                bail!("{bin} is missing: install Debian's chromium and chromium-driver (`make test` does)");
            }
        }
        let port = free_port()?;
        // Its own process group: chromedriver does not end the Chromium it started when
        // it is stopped, so the whole group is (see `stop_driver`).
        let driver = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start chromedriver")?;
        let profile = tempfile::tempdir()?;
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--window-size=1280,800",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args}
        }}});
        Browser::open(driver, port, profile, caps, "chromedriver").await
    }

    /// Starts `tauri-driver` (in front of Debian's `WebKitWebDriver`), which starts the
    /// desktop app `app` with `args` and `env` (its X display, session bus…) and drives
    /// its real window: the same WebKitGTK webview a person sees, not a browser.
    /// What the driver and the app print goes to `log`.
    pub async fn start_window(
        app: &Path,
        args: &[String],
        env: &[(&str, String)],
        log: &Path,
    ) -> anyhow::Result<Browser> {
        if !Path::new(WEBKIT_WEBDRIVER).exists() {
            bail!("{WEBKIT_WEBDRIVER} is missing: install Debian's webkit2gtk-driver (scripts/setup.sh does)");
        }
        let (port, native_port) = (free_port()?, free_port()?);
        // Its own process group: WebKitWebDriver and the app it started end with it.
        let mut cmd = Command::new("tauri-driver");
        cmd.process_group(0)
            .arg(format!("--port={port}"))
            .arg(format!("--native-port={native_port}"))
            .arg(format!("--native-driver={WEBKIT_WEBDRIVER}"))
            .stdin(Stdio::null());
        let log = std::fs::File::create(log)?;
        cmd.stdout(log.try_clone()?).stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let driver = cmd
            .spawn()
            .context("start tauri-driver (scripts/setup.sh installs it with cargo)")?;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "tauri:options": {"application": app, "args": args}
        }}});
        Browser::open(driver, port, tempfile::tempdir()?, caps, "tauri-driver").await
    }

    /// Waits for the driver listening on `port`, then opens a session with `caps`.
    async fn open(
        driver: Child,
        port: u16,
        profile: tempfile::TempDir,
        caps: Value,
        name: &str,
    ) -> anyhow::Result<Browser> {
        let mut browser = Browser {
            driver: Some(driver),
            base: format!("http://127.0.0.1:{port}"),
            // A command the driver never answers (WebKitWebDriver's screenshot of an
            // idle window has hung for minutes) fails the test instead of holding it.
            http: reqwest::Client::builder()
                .timeout(COMMAND_LIMIT)
                .build()
                .context("an HTTP client")?,
            _profile: profile,
        };
        let http = browser.http.clone();
        let status_url = format!("{}/status", browser.base);
        wait_until(
            Duration::from_secs(20),
            &format!("{name} to be ready"),
            || {
                let http = http.clone();
                let url = status_url.clone();
                async move {
                    let v: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
                    v["value"]["ready"].as_bool().filter(|r| *r)
                }
            },
        )
        .await?;
        let v = browser.call("POST", "/session", Some(caps)).await?;
        let session = v["sessionId"]
            .as_str()
            .with_context(|| format!("no session id from {name}"))?
            .to_string();
        browser.base = format!("{}/session/{session}", browser.base);
        Ok(browser)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .json(&body.unwrap_or_else(|| json!({}))),
        };
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let v: Value = resp.json().await?;
        if !status.is_success() {
            bail!("WebDriver {method} {path}: {status}: {}", v["value"]);
        }
        Ok(v["value"].clone())
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call("POST", "/url", Some(json!({ "url": url })))
            .await?;
        Ok(())
    }

    async fn find(&self, css: &str) -> anyhow::Result<Option<String>> {
        let url = format!("{}/element", self.base);
        let resp = self
            .http
            .post(&url)
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let v: Value = resp.json().await?;
        Ok(v["value"][ELEMENT_KEY].as_str().map(str::to_string))
    }

    /// The visible text of the first element matching `css`, if there is one.
    pub async fn text(&self, css: &str) -> anyhow::Result<Option<String>> {
        let Some(id) = self.find(css).await? else {
            return Ok(None);
        };
        let v = self
            .call("GET", &format!("/element/{id}/text"), None)
            .await?;
        Ok(v.as_str().map(str::to_string))
    }

    /// Waits until the element matching `css` has text for which `accept` holds.
    pub async fn wait_for_text(
        &self,
        css: &str,
        limit: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let accept = &accept;
        wait_until(limit, &format!("text of {css}"), || async move {
            self.text(css).await.ok().flatten().filter(|t| accept(t))
        })
        .await
    }

    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let id = self
            .find(css)
            .await?
            .with_context(|| format!("no element {css}"))?;
        self.call("POST", &format!("/element/{id}/click"), None)
            .await?;
        Ok(())
    }

    /// Types `text` into the element matching `css` (after what it already holds).
    pub async fn type_text(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let id = self
            .find(css)
            .await?
            .with_context(|| format!("no element {css}"))?;
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await?;
        Ok(())
    }

    /// Empties the input matching `css`.
    pub async fn clear(&self, css: &str) -> anyhow::Result<()> {
        let id = self
            .find(css)
            .await?
            .with_context(|| format!("no element {css}"))?;
        self.call("POST", &format!("/element/{id}/clear"), None)
            .await?;
        Ok(())
    }

    /// Makes the page see `prefers-color-scheme: dark` (or light), as a person's
    /// system setting would.
    pub async fn prefer_color_scheme(&self, scheme: &str) -> anyhow::Result<()> {
        let params = json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]});
        self.call(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": "Emulation.setEmulatedMedia", "params": params})),
        )
        .await?;
        Ok(())
    }

    /// Resizes the browser window (the outer size, as a person would).
    pub async fn set_window_size(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await?;
        Ok(())
    }

    /// The messages lanchat's UI shows in the open conversation: (text, outgoing,
    /// status).
    pub async fn shown_messages(&self) -> anyhow::Result<Vec<(String, bool, String)>> {
        let v = self
            .execute(
                "return [...document.querySelectorAll('[data-testid=message-list] .message')].map(e => \
                 [e.querySelector('[data-testid=message-text]').innerText, \
                  e.dataset.outgoing === 'true', e.dataset.status])",
            )
            .await?;
        Ok(serde_json::from_value(v)?)
    }

    pub async fn execute(&self, script: &str) -> anyhow::Result<Value> {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let v = self.call("GET", "/screenshot", None).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().context("screenshot is not a string")?)?;
        std::fs::write(path, png)?;
        Ok(())
    }

    /// Ends the session (Chromium exits) and stops chromedriver.
    pub async fn quit(mut self) -> anyhow::Result<()> {
        let result = self.call("DELETE", "", None).await.map(drop);
        self.stop_driver();
        result
    }

    fn stop_driver(&mut self) {
        if let Some(mut driver) = self.driver.take() {
            // The group is the driver's own (`process_group(0)`): the browser or app it
            // started, which a session never ended would otherwise outlive the test.
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{}", driver.id())])
                .status();
            let _ = driver.wait();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.stop_driver();
    }
}
