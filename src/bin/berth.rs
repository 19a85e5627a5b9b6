//! The `berth` command: the operator and the tools around it. Parses the command line
//! and hands it to the command in `berth::cli`; nothing else happens here.

use std::process::ExitCode;

use berth::cli::{self, Cli, Command};
use clap::Parser;

/// jemalloc rather than glibc's malloc: the operator allocates from many threads
/// while watch events stream in, and glibc's per-thread arenas kept what bursts
/// freed (see the operator benchmark's peak RSS).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let done = |result: Result<(), String>| result.map(|()| ExitCode::SUCCESS);
    let result = match Cli::parse().command {
        Command::Run(args) => done(cli::run::run(*args)),
        Command::Crdgen(args) => done(cli::crdgen::crdgen(&args)),
        Command::Render(args) => done(cli::render::render_command(&args)),
        Command::Diff(args) => cli::render::diff_command(&args),
        Command::Approve(args) => done(cli::approve::approve(&args)),
        Command::Rollout(args) => done(cli::rollout::rollout(&args)),
        Command::Token(args) => done(cli::token::token(&args)),
        Command::WebhookConfig(args) => done(cli::webhook_config::webhook_config(&args)),
        Command::DevCredentials(args) => done(cli::dev::dev_credentials(&args)),
    };
    result.unwrap_or_else(|message| {
        eprintln!("berth: {message}");
        ExitCode::from(2)
    })
}
