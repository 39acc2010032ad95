//! Opening an exported file with the desktop's default application, and showing it in
//! its folder (issue 17): what "Open" and "Show in folder" do once the file is a real
//! file ([`super::export`]).
//!
//! - open: `xdg-open FILE`;
//! - show in folder: `org.freedesktop.FileManager1.ShowItems` on the session bus (the
//!   file manager opens the folder with the file selected), else `xdg-open FOLDER`.
//!
//! Programs are started directly (never through a shell; the path is one argument, and
//! an absolute one, so it cannot pass for an option), with no input or output, in a
//! process group of their own (a Ctrl+C for the node does not close the user's
//! document), and never waited for by the request: a task reaps each one and logs a
//! failure. `LANCHAT_OPENER=PROG` (read at start; for tests) replaces both:
//! `PROG open FILE` and `PROG reveal FILE`, nothing on D-Bus.
//!
//! A node with no desktop session (neither `DISPLAY` nor `WAYLAND_DISPLAY`, e.g.
//! `lanchat serve` on a server) has nothing to open on: [`OpenError::NoDesktop`],
//! before anything is exported.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The environment variable that replaces the system opener (tests).
pub const OPENER_ENV: &str = "LANCHAT_OPENER";
const XDG_OPEN: &str = "xdg-open";
/// The file manager gets this long to answer `ShowItems` before `xdg-open` shows the
/// folder instead.
const SHOW_ITEMS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("this node runs without a desktop session (no DISPLAY or WAYLAND_DISPLAY): there is nothing to open files on")]
    NoDesktop,
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
}

/// What "Open" and "Show in folder" run, chosen at start.
#[derive(Debug, Clone)]
pub struct Opener {
    /// A desktop session to open on.
    desktop: bool,
    /// `LANCHAT_OPENER`, when set.
    program: Option<PathBuf>,
}

impl Opener {
    /// From this process's environment: the desktop session and `LANCHAT_OPENER`.
    pub fn from_env() -> Opener {
        let program = std::env::var_os(OPENER_ENV)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        if let Some(p) = &program {
            tracing::info!(program = %p.display(), "files are opened with {OPENER_ENV}");
        }
        Opener {
            desktop: crate::cli::has_display(),
            program,
        }
    }

    /// Whether there is a desktop to open files on.
    pub fn check(&self) -> Result<(), OpenError> {
        if self.desktop {
            Ok(())
        } else {
            Err(OpenError::NoDesktop)
        }
    }

    /// Opens `file` (absolute) with the desktop's default application for it.
    pub fn open(&self, file: &Path) -> Result<(), OpenError> {
        self.check()?;
        match &self.program {
            Some(program) => spawn(program.as_os_str(), &["open".into(), file.into()]),
            None => spawn(XDG_OPEN.as_ref(), &[file.into()]),
        }
    }

    /// Shows `file` (absolute) selected in its folder. The file manager is asked in the
    /// background; the folder is opened instead when it cannot be asked.
    pub fn reveal(&self, file: &Path) -> Result<(), OpenError> {
        self.check()?;
        if let Some(program) = &self.program {
            return spawn(program.as_os_str(), &["reveal".into(), file.into()]);
        }
        let file = file.to_path_buf();
        tokio::spawn(async move {
            match tokio::time::timeout(SHOW_ITEMS_TIMEOUT, show_items(&file)).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => tracing::info!("no file manager on D-Bus ({e}): opening the folder"),
                Err(_) => tracing::info!("the file manager did not answer: opening the folder"),
            }
            let folder = file.parent().unwrap_or(&file);
            if let Err(e) = spawn(XDG_OPEN.as_ref(), &[folder.into()]) {
                tracing::warn!("cannot show {}: {e}", file.display());
            }
        });
        Ok(())
    }
}

#[zbus::proxy(
    interface = "org.freedesktop.FileManager1",
    default_service = "org.freedesktop.FileManager1",
    default_path = "/org/freedesktop/FileManager1"
)]
trait FileManager1 {
    fn show_items(&self, uris: &[&str], startup_id: &str) -> zbus::Result<()>;
}

async fn show_items(file: &Path) -> zbus::Result<()> {
    let connection = zbus::Connection::session().await?;
    let proxy = FileManager1Proxy::new(&connection).await?;
    proxy.show_items(&[&file_uri(file)], "").await
}

/// `file://` and the path, every byte but unreserved ones and `/` percent-encoded.
fn file_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file://");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri
}

/// Starts `program` with `args` detached from the request: no shell, no input or
/// output, its own process group; a task waits for it (so it is reaped) and logs how
/// it ended.
fn spawn(program: &std::ffi::OsStr, args: &[OsString]) -> Result<(), OpenError> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .map_err(|source| OpenError::Spawn {
            program: program.to_string_lossy().into_owned(),
            source,
        })?;
    let name = program.to_string_lossy().into_owned();
    tokio::spawn(async move {
        match child.wait().await {
            Ok(status) if status.success() => tracing::debug!(program = %name, "opener done"),
            Ok(status) => tracing::warn!(program = %name, "the opener failed: {status}"),
            Err(e) => tracing::warn!(program = %name, "cannot wait for the opener: {e}"),
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uris_encode_everything_but_plain_characters() {
        assert_eq!(
            file_uri(Path::new("/home/u/Downloads/lanchat/季度 报告#1.pdf")),
            "file:///home/u/Downloads/lanchat/%E5%AD%A3%E5%BA%A6%20%E6%8A%A5%E5%91%8A%231.pdf"
        );
        assert_eq!(file_uri(Path::new("/a/b%c?d")), "file:///a/b%25c%3Fd");
    }

    #[test]
    fn without_a_desktop_nothing_is_started() {
        let opener = Opener {
            desktop: false,
            program: Some(PathBuf::from("/nonexistent/opener")),
        };
        assert!(matches!(
            opener.open(Path::new("/tmp/x")),
            Err(OpenError::NoDesktop)
        ));
        assert!(matches!(
            opener.reveal(Path::new("/tmp/x")),
            Err(OpenError::NoDesktop)
        ));
    }

    #[tokio::test]
    async fn the_program_gets_the_verb_and_the_path_as_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("argv");
        let script = dir.path().join("opener.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{}'\n",
                record.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let opener = Opener {
            desktop: true,
            program: Some(script),
        };
        let odd = Path::new("/tmp/a b; $(touch x)\n'q'.txt");
        opener.open(odd).unwrap();
        // The second waits for the first (the record is appended in order).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&record).map_or(true, |r| r.lines().count() < 3) {
            assert!(
                std::time::Instant::now() < deadline,
                "the opener did not run"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        opener.reveal(odd).unwrap();
        while std::fs::read_to_string(&record).map_or(true, |r| r.lines().count() < 6) {
            assert!(
                std::time::Instant::now() < deadline,
                "the opener did not run"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            std::fs::read_to_string(&record).unwrap(),
            "open\n/tmp/a b; $(touch x)\n'q'.txt\nreveal\n/tmp/a b; $(touch x)\n'q'.txt\n"
        );
        let missing = Opener {
            desktop: true,
            program: Some(PathBuf::from("/nonexistent/opener")),
        };
        assert!(matches!(missing.open(odd), Err(OpenError::Spawn { .. })));
    }
}
