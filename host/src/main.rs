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
    // The command runs in a task on a worker thread, as `serve`'s loops do:
    // awaited by the main thread's `block_on`, every await on a spawned task
    // (each `wasi:http` request is one) would be a wake-up across threads.
    let command = runtime.block_on(async { tokio::spawn(cli.command.execute()).await });
    match command {
        Ok(Ok(status)) => status.into(),
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            // A panic's message is already on stderr.
            eprintln!("error: levelhost stopped on an internal error ({e})");
            ExitCode::from(101)
        }
    }
}
