//! bench
use anyhow::Result; #[derive(clap::Args)] pub struct BenchArgs {} pub async fn run(_a: BenchArgs) -> Result<std::process::ExitCode> { Ok(std::process::ExitCode::SUCCESS) }
