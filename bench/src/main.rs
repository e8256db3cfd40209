//! The `gopush-bench` binary: parses flags, runs one subcommand, prints the human summary to
//! stdout (progress lines go to stderr) or one JSON object with `--json`.

use std::process::ExitCode;

use bench::cli::{Cli, Command};
use bench::{run_conns, run_online, run_push, run_room, workers};
use clap::Parser;
use serde::Serialize;

fn print<R: Serialize + std::fmt::Display>(report: &R, json: bool) -> ExitCode {
    if json {
        match serde_json::to_string(report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("gopush-bench: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{report}");
    }
    ExitCode::SUCCESS
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Conns(a) => run_conns(a.config()).await.map(|r| print(&r, a.common.json)),
        Command::Push(a) => run_push(a.config(0)).await.map(|r| print(&r, a.common.json)),
        Command::Mpush(a) => run_push(a.push.config(a.batch.max(1))).await.map(|r| print(&r, a.push.common.json)),
        Command::Room(a) => run_room(a.config()).await.map(|r| print(&r, a.common.json)),
        Command::Online(a) => run_online(a.config()).await.map(|r| print(&r, a.json)),
        Command::Worker { spec } => workers::worker_main(&spec).await.map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("gopush-bench: {e}");
        ExitCode::FAILURE
    })
}
