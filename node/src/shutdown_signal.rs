//! SIGINT and SIGTERM both mean "stop cleanly".
//!
//! The handlers are installed *before* the node starts serving: a signal that
//! arrives once the local API answers (a test or a service manager stopping the
//! node right after it came up) must be a clean stop, never the default action
//! that kills the process mid-write.

use tokio::signal::unix::{signal, Signal, SignalKind};

pub struct ShutdownSignal {
    handlers: Option<(Signal, Signal)>,
}

impl ShutdownSignal {
    /// Installs the handlers; needs a running tokio runtime context.
    pub fn install() -> Self {
        let handlers = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some((term, int)),
            _ => {
                tracing::error!("cannot install signal handlers; stop with SIGKILL");
                None
            }
        };
        Self { handlers }
    }

    /// Resolves on the first SIGTERM or SIGINT received since [`Self::install`].
    pub async fn wait(self) {
        let Some((mut term, mut int)) = self.handlers else {
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
            _ = int.recv() => tracing::info!("SIGINT received, stopping"),
        }
    }
}
