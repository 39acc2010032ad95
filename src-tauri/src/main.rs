use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Whatever this process creates (database journals, temporary files, anything a
    // library writes) is this user's alone, whatever umask it was started with; the
    // data directory is also repaired at each start (`storage::data_dir`).
    let _previous = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
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
