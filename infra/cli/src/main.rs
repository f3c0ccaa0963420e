//! `dirsync`: the operator CLI and local runtime. It runs the same code as
//! the Lambda functions — the admin API's handlers, the worker, the engine —
//! over the embedded store (or DynamoDB) and local secret files. Exit codes
//! are [`exit::Exit`]'s.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod client;
mod cmd;
mod demo;
mod exit;
mod local;
mod out;
mod progress;
mod serve;

#[tokio::main]
async fn main() -> ExitCode {
    match cli::Cli::parse().run().await {
        Ok(()) => exit::Exit::Done.into(),
        Err(f) => {
            eprintln!("dirsync: {}", f.message);
            f.exit.into()
        }
    }
}
