//! `voxhub-supervise <workload dir>`: the supervisor of one local workload, as a binary of
//! its own (the voxhub binary offers the same as `voxhub supervise <dir>`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut arguments = std::env::args_os().skip(1);
    match (arguments.next(), arguments.next()) {
        (Some(dir), None) => voxhub_exec::local::supervise_main(std::path::Path::new(&dir)),
        _ => {
            eprintln!("usage: voxhub-supervise <workload directory>");
            ExitCode::from(2)
        }
    }
}
