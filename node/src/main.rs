use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    lanchat_node::prepare_process();
    lanchat_node::logging::init();
    let cli = lanchat_node::cli::Cli::parse();
    match lanchat_node::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => lanchat_node::exit_with(&e),
    }
}
