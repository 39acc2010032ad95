use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    lanchat::logging::init();
    let cli = lanchat::cli::Cli::parse();
    match lanchat::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lanchat: {e:#}");
            ExitCode::FAILURE
        }
    }
}
