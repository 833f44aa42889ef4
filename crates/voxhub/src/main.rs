//! The `voxhub` binary: `voxhub serve` runs the platform; every other command is a client of
//! a running server's API (`voxhub login`, `user`, `class`, `invite`, `token`, `audit`), and
//! `voxhub bench` measures a server under load.

mod bench;
mod cli;
mod client;
mod config;
mod dataset_cli;
mod node;
mod serve;
mod workload_cli;

use clap::Parser;

/// Password hashing allocates 19 MiB at a time. glibc's malloc raises its mmap threshold
/// after the first such block is freed and from then on keeps freed blocks in its heaps,
/// so resident memory would grow with every login; a fixed threshold returns them at once.
fn bound_allocator_caching() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning and is called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

fn main() -> std::process::ExitCode {
    bound_allocator_caching();
    let args = cli::Cli::parse();
    // The supervisor of a workload is a small process of its own: no async runtime, no
    // server state, so it keeps running (and enforcing the time limit) if the server dies.
    if let cli::Command::Supervise { dir } = &args.command {
        return voxhub_exec::local::supervise_main(dir);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
