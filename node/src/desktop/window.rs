//! The window process, from the node's side: `lanchat window-view` is started when
//! the window is to be shown and ends when the user closes it; the node keeps running
//! in the tray. Only that process loads GTK and WebKit, so the hidden app costs what a
//! headless node costs (docs/BENCHMARKS.md, "Desktop app").
//!
//! One task owns the child: requests (show, title, stop) and the child's exit arrive on
//! one channel, so there is never a second window process. The child says whether the
//! user sees it ([`FromWindow::Attended`]), which the notifier asks.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::window_protocol::{line, FromWindow, Start, ToWindow, CLOSED_BY_USER};

/// How long the window may take to close after its input ends before it is killed.
const CLOSE_GRACE: Duration = Duration::from_millis(1500);

pub struct WindowConfig {
    /// `lanchat`, whose `window-view` command is the window; None where it is not
    /// installed (the shell then runs with the tray and notifications only).
    pub binary: Option<PathBuf>,
    pub url: String,
    pub token: String,
    /// The user closed the window (not the node, not a crash).
    pub on_closed_by_user: Box<dyn Fn() + Send + Sync>,
}

/// Cheap to clone; every clone talks to the one task that owns the window process.
#[derive(Clone)]
pub struct WindowProcess {
    requests: mpsc::UnboundedSender<Request>,
    attended: Arc<AtomicBool>,
}

enum Request {
    Show(Option<String>),
    Title(String),
    Exited {
        generation: u64,
        status: Option<ExitStatus>,
    },
    Stop(oneshot::Sender<()>),
}

struct Running {
    generation: u64,
    stdin: ChildStdin,
    kill: CancellationToken,
}

impl WindowProcess {
    pub fn spawn(config: WindowConfig) -> (WindowProcess, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let window = WindowProcess {
            requests: tx.clone(),
            attended: Arc::new(AtomicBool::new(false)),
        };
        let owner = Owner {
            config,
            requests: tx,
            attended: Arc::clone(&window.attended),
            title: super::shell::WINDOW_TITLE.to_string(),
            running: None,
            next_generation: 0,
        };
        let task = tokio::spawn(owner.run(rx));
        (window, task)
    }

    /// Shows the window (starting its process when it is closed), optionally with a
    /// conversation open.
    pub fn show(&self, open: Option<String>) {
        let _ = self.requests.send(Request::Show(open));
    }

    pub fn set_title(&self, title: String) {
        let _ = self.requests.send(Request::Title(title));
    }

    /// Shown, focused and not minimised: the user sees new messages arrive.
    pub fn attended(&self) -> bool {
        self.attended.load(Ordering::Relaxed)
    }

    /// Closes the window (its input ends; killed after [`CLOSE_GRACE`]) and ends the
    /// task.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.requests.send(Request::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

struct Owner {
    config: WindowConfig,
    requests: mpsc::UnboundedSender<Request>,
    attended: Arc<AtomicBool>,
    title: String,
    running: Option<Running>,
    next_generation: u64,
}

impl Owner {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        while let Some(request) = rx.recv().await {
            match request {
                Request::Show(open) => self.show(open).await,
                Request::Title(title) => {
                    self.title = title.clone();
                    self.tell(&ToWindow::Title { title }).await;
                }
                Request::Exited { generation, status } => self.exited(generation, status),
                Request::Stop(done) => {
                    self.close(&mut rx).await;
                    let _ = done.send(());
                    return;
                }
            }
        }
    }

    async fn show(&mut self, open: Option<String>) {
        if self.running.is_some() {
            self.tell(&ToWindow::Show { open: open.clone() }).await;
            if self.running.is_some() {
                return;
            }
        }
        match self.start(open).await {
            Ok(running) => self.running = Some(running),
            Err(e) => tracing::error!("cannot open the window: {e}"),
        }
    }

    /// A line to the running window; a window that cannot be written to is gone.
    async fn tell(&mut self, message: &ToWindow) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        if let Err(e) = running.stdin.write_all(line(message).as_bytes()).await {
            tracing::debug!("the window process is gone: {e}");
            running.kill.cancel();
            self.running = None;
            self.attended.store(false, Ordering::Relaxed);
        }
    }

    async fn start(&mut self, open: Option<String>) -> std::io::Result<Running> {
        let binary = self.config.binary.clone().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} is not installed beside this program", super::APP_BINARY),
            )
        })?;
        let mut child = tokio::process::Command::new(&binary)
            .arg("window-view")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other("the window process has no pipes"));
        };
        let start = Start {
            url: self.config.url.clone(),
            token: self.config.token.clone(),
            title: self.title.clone(),
            open,
        };
        stdin.write_all(line(&start).as_bytes()).await?;
        self.next_generation += 1;
        let generation = self.next_generation;
        let kill = CancellationToken::new();
        tracing::info!(pid = child.id(), "window process started");
        tokio::spawn(follow_reports(stdout, Arc::clone(&self.attended)));
        tokio::spawn(wait_for_exit(
            child,
            generation,
            kill.clone(),
            self.requests.clone(),
        ));
        Ok(Running {
            generation,
            stdin,
            kill,
        })
    }

    fn exited(&mut self, generation: u64, status: Option<ExitStatus>) {
        if self.running.as_ref().map(|r| r.generation) != Some(generation) {
            return;
        }
        self.running = None;
        self.attended.store(false, Ordering::Relaxed);
        match status.and_then(|s| s.code()) {
            Some(CLOSED_BY_USER) => {
                tracing::info!("window closed");
                (self.config.on_closed_by_user)();
            }
            _ => tracing::warn!(?status, "the window process ended unexpectedly"),
        }
    }

    /// Ends the window's input (it closes), waits for it within the grace, kills it after.
    async fn close(&mut self, rx: &mut mpsc::UnboundedReceiver<Request>) {
        let Some(running) = self.running.take() else {
            return;
        };
        let Running {
            generation,
            stdin,
            kill,
        } = running;
        drop(stdin);
        let exited = async {
            while let Some(request) = rx.recv().await {
                if let Request::Exited { generation: g, .. } = request {
                    if g == generation {
                        return;
                    }
                }
            }
        };
        if tokio::time::timeout(CLOSE_GRACE, exited).await.is_err() {
            tracing::warn!("the window did not close in time: ending it");
            kill.cancel();
        }
        self.attended.store(false, Ordering::Relaxed);
    }
}

async fn follow_reports(stdout: ChildStdout, attended: Arc<AtomicBool>) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(text)) = lines.next_line().await {
        match serde_json::from_str::<FromWindow>(&text) {
            Ok(FromWindow::Attended { attended: now }) => {
                attended.store(now, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!("unexpected line from the window: {e}"),
        }
    }
}

async fn wait_for_exit(
    mut child: Child,
    generation: u64,
    kill: CancellationToken,
    requests: mpsc::UnboundedSender<Request>,
) {
    let status = tokio::select! {
        status = child.wait() => status.ok(),
        () = kill.cancelled() => {
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    };
    let _ = requests.send(Request::Exited { generation, status });
}
