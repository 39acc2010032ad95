//! A desktop session for the desktop tests, made of real parts: an X server (Xvfb), a
//! D-Bus session bus, and dunst as the notification service, read back with `dunstctl`.
//! Everything is started by the test and ended by PID when the session drops.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use lanchat_tests::{poll_until, wait_until};

pub const LIMIT: Duration = Duration::from_secs(60);

pub struct DesktopSession {
    children: Vec<Child>,
    pub display: String,
    pub bus: String,
    dir: PathBuf,
}

impl DesktopSession {
    pub async fn start(dir: &Path) -> anyhow::Result<DesktopSession> {
        std::fs::create_dir_all(dir)?;
        let mut session = DesktopSession {
            children: Vec::new(),
            display: String::new(),
            bus: String::new(),
            dir: dir.to_path_buf(),
        };
        let n = (99..400)
            .find(|n| {
                !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                    && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
            })
            .context("no free X display number")?;
        session.display = format!(":{n}");
        session.spawn(
            Command::new("Xvfb").args([
                &session.display,
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
            ]),
            "Xvfb (install xvfb; scripts/setup.sh does)",
        )?;
        let socket = format!("/tmp/.X11-unix/X{n}");
        wait_until(Duration::from_secs(20), "Xvfb to listen", || {
            let ready = Path::new(&socket).exists();
            async move { ready.then_some(()) }
        })
        .await?;

        let bus_path = dir.join("bus");
        session.bus = format!("unix:path={}", bus_path.display());
        // A session bus that starts nothing by itself (no service directories): only
        // what the test starts runs, and no second notification server is activated
        // by a query that comes before dunst has registered.
        let bus_config = dir.join("bus.conf");
        std::fs::write(
            &bus_config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>{}</listen>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                session.bus
            ),
        )?;
        let config_arg = format!("--config-file={}", bus_config.display());
        session.spawn(
            Command::new("dbus-daemon").args(["--nofork", &config_arg]),
            "dbus-daemon (install dbus)",
        )?;
        wait_until(Duration::from_secs(20), "the session bus", || {
            let ready = bus_path.exists();
            async move { ready.then_some(()) }
        })
        .await?;

        // The panel's side of the tray: a StatusNotifierWatcher, with which the app's
        // tray icon registers (and exports its menu, as a panel reads it).
        let bus_env = session.bus.clone();
        session.spawn(
            Command::new("status-notifier-watcher").env("DBUS_SESSION_BUS_ADDRESS", &bus_env),
            "status-notifier-watcher (install haskell-status-notifier-item-utils)",
        )?;

        let config = dir.join("dunstrc");
        // Notifications stay until acted on, so the test can count and click them.
        std::fs::write(
            &config,
            "[global]\n    timeout = 0\n    idle_threshold = 0\n    history_length = 50\n\
             [urgency_low]\n    timeout = 0\n[urgency_normal]\n    timeout = 0\n\
             [urgency_critical]\n    timeout = 0\n",
        )?;
        let display = session.display.clone();
        let bus = session.bus.clone();
        session.spawn(
            Command::new("dunst")
                .arg("-config")
                .arg(&config)
                .env("DISPLAY", &display)
                .env("DBUS_SESSION_BUS_ADDRESS", &bus),
            "dunst (install dunst; scripts/setup.sh does)",
        )?;
        let probe = session.clone_env();
        wait_until(Duration::from_secs(20), "dunst on the session bus", || {
            let up = dunstctl_with(&probe, &["count", "displayed"]).is_ok();
            async move { up.then_some(()) }
        })
        .await?;
        Ok(session)
    }

    fn spawn(&mut self, cmd: &mut Command, what: &str) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.join(format!("{}.log", self.children.len())))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {what}"))?;
        self.children.push(child);
        Ok(())
    }

    fn clone_env(&self) -> Vec<(String, String)> {
        self.env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    /// For a process that belongs to this session.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DISPLAY", self.display.clone()),
            ("DBUS_SESSION_BUS_ADDRESS", self.bus.clone()),
            (
                "XDG_CONFIG_HOME",
                self.dir.join("config").display().to_string(),
            ),
            ("LANG", "C.UTF-8".to_string()),
        ]
    }

    pub fn dunstctl(&self, args: &[&str]) -> anyhow::Result<String> {
        dunstctl_with(&self.clone_env(), args)
    }

    /// Notifications on screen now.
    pub fn displayed(&self) -> anyhow::Result<u32> {
        Ok(self.dunstctl(&["count", "displayed"])?.trim().parse()?)
    }

    /// Closed notifications, newest first: (id, summary, body).
    pub fn history(&self) -> anyhow::Result<Vec<(i64, String, String)>> {
        let doc: serde_json::Value = serde_json::from_str(&self.dunstctl(&["history"])?)?;
        let items = doc["data"][0].as_array().cloned().unwrap_or_default();
        Ok(items
            .iter()
            .map(|n| {
                (
                    n["id"]["data"].as_i64().unwrap_or(-1),
                    n["summary"]["data"].as_str().unwrap_or("").to_string(),
                    n["body"]["data"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect())
    }

    pub fn run(&self, cmd: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(cmd)
            .args(args)
            .envs(self.clone_env())
            .output()
            .with_context(|| {
                format!("run {cmd} (is it installed? scripts/setup.sh installs it)")
            })?;
        if !out.status.success() {
            bail!("{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// X windows shown (mapped) whose name matches `pattern`.
    pub fn visible_windows(&self, pattern: &str) -> Vec<String> {
        self.run("xdotool", &["search", "--onlyvisible", "--name", pattern])
            .map(|out| out.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// What a window manager does when the user clicks a window's close button: a
    /// WM_DELETE_WINDOW message to the window (Xvfb runs no window manager; xdotool can
    /// only destroy a window, which no user can do).
    pub fn close_window(&self, window: &str) -> anyhow::Result<()> {
        const SCRIPT: &str = r#"
import ctypes, sys
x = ctypes.cdll.LoadLibrary("libX11.so.6")
x.XOpenDisplay.restype = ctypes.c_void_p
x.XOpenDisplay.argtypes = [ctypes.c_char_p]
x.XInternAtom.restype = ctypes.c_ulong
x.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
x.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
x.XFlush.argtypes = [ctypes.c_void_p]
class Msg(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                ("display", ctypes.c_void_p), ("window", ctypes.c_ulong),
                ("message_type", ctypes.c_ulong), ("format", ctypes.c_int), ("data", ctypes.c_long * 5)]
class Event(ctypes.Union):
    _fields_ = [("msg", Msg), ("pad", ctypes.c_long * 24)]
d = x.XOpenDisplay(None)
if not d:
    sys.exit("cannot open the display")
w = int(sys.argv[1])
e = Event()
e.msg.type = 33  # ClientMessage
e.msg.window = w
e.msg.message_type = x.XInternAtom(d, b"WM_PROTOCOLS", 0)
e.msg.format = 32
e.msg.data[0] = x.XInternAtom(d, b"WM_DELETE_WINDOW", 0)
x.XSendEvent(d, w, 0, 0, ctypes.byref(e))
x.XFlush(d)
"#;
        self.run("python3", &["-c", SCRIPT, window]).map(|_| ())
    }

    pub fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        self.run("import", &["-window", "root", &path.to_string_lossy()])
            .map(|_| ())
    }

    /// Takes a screenshot to `shot` and reads it by OCR several ways: one pass misses
    /// small text in bubbles that another reads, and which one varies with the
    /// machine. Tesseract reads black on white best, so the light UI is made grey and
    /// then black and white (a threshold) or stretched in contrast; each image is read
    /// in page-layout and sparse-text modes. Returns each pass's text, lower-cased with
    /// runs of white space made one space.
    pub fn read_screen(&self, shot: &Path) -> anyhow::Result<Vec<String>> {
        const PREPARED: [&[&str]; 2] = [
            &[
                "-resize",
                "200%",
                "-colorspace",
                "Gray",
                "-threshold",
                "75%",
            ],
            &[
                "-filter",
                "Lanczos",
                "-resize",
                "250%",
                "-colorspace",
                "Gray",
                "-level",
                "10%,90%",
            ],
        ];
        self.screenshot(shot)?;
        let shot_str = shot.to_string_lossy().into_owned();
        let mut texts = Vec::new();
        for (i, steps) in PREPARED.iter().enumerate() {
            let prepared = shot.with_extension(format!("ocr-{i}.png"));
            let prepared_str = prepared.to_string_lossy().into_owned();
            let mut args = vec![shot_str.as_str()];
            args.extend_from_slice(steps);
            args.push(&prepared_str);
            self.run("convert", &args)?;
            for psm in ["3", "11"] {
                let text = self.run("tesseract", &[&prepared_str, "stdout", "--psm", psm])?;
                texts.push(
                    text.split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                        .to_lowercase(),
                );
            }
        }
        Ok(texts)
    }

    /// Waits until one OCR pass of the screen reads every one of `needles` (compared
    /// lower-case); the error names the screenshot and says what was read instead.
    pub async fn wait_screen_text(&self, shot: &Path, needles: &[&str]) -> anyhow::Result<()> {
        let mut last = Vec::new();
        let found = poll_until(
            LIMIT,
            Duration::from_millis(500),
            "the text on screen",
            || {
                let read = self.read_screen(shot);
                let hit = match &read {
                    Ok(texts) => texts
                        .iter()
                        .any(|t| needles.iter().all(|n| t.contains(&n.to_lowercase()))),
                    Err(_) => false,
                };
                last = match read {
                    Ok(texts) => texts,
                    Err(e) => vec![format!("{e:#}")],
                };
                async move { hit.then_some(()) }
            },
        )
        .await;
        found.with_context(|| {
            format!(
                "{needles:?} not read on screen; last screenshot: {}; OCR read: {last:#?}",
                shot.display()
            )
        })
    }
}

fn dunstctl_with(env: &[(String, String)], args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("dunstctl")
        .args(args)
        .envs(env.iter().cloned())
        .output()
        .context("run dunstctl (install dunst; scripts/setup.sh does)")?;
    if !out.status.success() {
        bail!(
            "dunstctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Drop for DesktopSession {
    fn drop(&mut self) {
        // dunst first, the bus next, the X server last.
        for child in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes a settings file for a loopback mesh node with this name and language.
pub fn write_settings(dir: &Path, mut doc: serde_json::Value) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    doc["ui"] = serde_json::json!({"language": "en-US"});
    lanchat_tests::write_settings(dir, &doc)
}

/// Two nodes that find each other on loopback with the secret "office": "Li Wei" (the
/// desktop, in `root/a`) and "Zhang" (`root/b`), their settings written (English UI).
/// Returns (a's id, b's id, a's directory, b's directory).
pub fn write_pair(root: &Path) -> anyhow::Result<(String, String, PathBuf, PathBuf)> {
    let (pa, pb) = (
        lanchat_tests::free_udp_port()?,
        lanchat_tests::free_udp_port()?,
    );
    let (a_id, sa) = lanchat_tests::loopback_mesh_settings("Li Wei", pa, pb, "office")?;
    let (b_id, sb) = lanchat_tests::loopback_mesh_settings("Zhang", pb, pa, "office")?;
    let (dir_a, dir_b) = (root.join("a"), root.join("b"));
    write_settings(&dir_a, sa)?;
    write_settings(&dir_b, sb)?;
    Ok((a_id, b_id, dir_a, dir_b))
}
