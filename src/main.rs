//! The `moescope` binary: the desktop app (default) and the headless CLI.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // One line: library errors already name the file and the problem.
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
