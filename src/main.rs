//! The `moescope` binary: the desktop app (default) and the headless CLI.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // `moescope info … | head` closes our stdout early: end quietly, as Unix tools do, instead of
    // Rust's default of panicking in `println!` on the broken pipe.
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
