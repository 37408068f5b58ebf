//! The `sigil` command line. With the `core` feature (the default) every command; without it,
//! only `sigil gateway`.

#[cfg(feature = "core")]
mod cli;
#[cfg(not(feature = "core"))]
mod gateway_cli;

fn main() -> std::process::ExitCode {
    #[cfg(feature = "core")]
    return cli::main();
    #[cfg(not(feature = "core"))]
    return gateway_cli::main();
}
