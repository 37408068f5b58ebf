//! `sigil-gateway`: the gateway host's binary, with no token, store or CA code in it. Built
//! always (`cargo build --no-default-features` builds only this one); the full `sigil` also
//! runs the gateway as `sigil gateway`.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sigil's SCEP gateway: the public front that forwards SCEP, CRL and OCSP to `sigil serve`
/// nodes over mutual TLS, and holds no key, PIN or database URL.
#[derive(Parser, Debug)]
#[command(name = "sigil-gateway", version, about)]
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
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the SCEP gateway (the default).
    Gateway,
    /// This binary has only the gateway: `serve`, `init` and the rest are in `sigil`.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Other(args)) = &cli.command {
        eprintln!(
            "error: `{}` is not a command of sigil-gateway: this binary has only the gateway (it is built without the core feature); `sigil {}` is in the full `sigil` binary",
            args.first().map(String::as_str).unwrap_or(""),
            args.join(" ")
        );
        return ExitCode::from(2);
    }
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
