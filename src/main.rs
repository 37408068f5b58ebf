//! The `sigil` command line (every command; the `core` feature). The gateway host's binary
//! is `sigil-gateway` (`src/gateway_main.rs`).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
