//! The `voxhub` binary: `voxhub serve` runs the platform; every other command is a client of
//! a running server's API (`voxhub login`, `user`, `class`, `invite`, `token`, `audit`), and
//! `voxhub bench` measures a server under load.

mod bench;
mod cli;
mod client;
mod config;
mod serve;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
