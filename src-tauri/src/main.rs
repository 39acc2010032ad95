use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    lanchat_node::prepare_process();
    // The window's web view draws without accelerated compositing, unless whoever
    // started us chose otherwise: its web process then holds about 75 MB less (PSS 126
    // instead of 201 MB idle, docs/BENCHMARKS.md, "Desktop app"), and a chat's page has
    // nothing that needs the GPU. Set here, before any thread or WebKit exists; the
    // node never reads it.
    if std::env::var_os("WEBKIT_DISABLE_COMPOSITING_MODE").is_none() {
        std::env::set_var("WEBKIT_DISABLE_COMPOSITING_MODE", "1");
    }
    lanchat_node::logging::init();
    let cli = lanchat_node::cli::Cli::parse();
    match lanchat::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lanchat: {e:#}");
            ExitCode::FAILURE
        }
    }
}
