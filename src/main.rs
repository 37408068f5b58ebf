//! The `sigil` command line (every command; the `core` feature). The gateway host's binary
//! is `sigil-gateway` (`src/gateway_main.rs`).

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
