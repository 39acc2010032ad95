use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    lanchat::logging::init();
    let cli = lanchat::cli::Cli::parse();
    match lanchat::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lanchat: {e:#}");
            // A client command says "no node runs" with its own status, for scripts.
            match e.downcast_ref::<lanchat::cli::remote::ClientError>() {
                Some(client) => ExitCode::from(client.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}
