//! `sigil gateway` alone, for builds without the `core` feature: the gateway host's binary,
//! with no token, store or CA code in it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sigil's SCEP gateway (a build without the core: it can only run the gateway).
#[derive(Parser, Debug)]
#[command(name = "sigil", version, about)]
struct Cli {
    /// Configuration file (TOML) with a [gateway] section.
    #[arg(short, long, global = true, env = "SIGIL_CONFIG")]
    config: Option<PathBuf>,
    /// Log format: human or json.
    #[arg(long, global = true, value_parser = ["human", "json"])]
    log_format: Option<String>,
    /// Log filter, e.g. info (RUST_LOG wins).
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the SCEP gateway.
    Gateway,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Gateway = cli.command;
    match sigil::gateway::run_command(
        cli.config.as_deref(),
        cli.log_format.as_deref(),
        cli.log_level.as_deref(),
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
