//! The `sigil` command line: `serve`, `init`, `ca`, `config`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
