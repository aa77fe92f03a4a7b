//! The `levelhost` command.

use std::process::ExitCode;

use clap::Parser as _;
use level_host::cli::Cli;

fn main() -> ExitCode {
    // Like any Unix filter, end quietly when the reader goes away
    // (`levelhost check | head -1`) instead of panicking on a closed pipe.
    sigpipe::reset();
    let cli = Cli::parse();
    level_host::cli::init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli.command.execute()) {
        Ok(status) => status.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
