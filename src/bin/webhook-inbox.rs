//! `webhook-inbox`: see and fix what an inbox of tower-webhook holds, from a terminal.
//! Everything is in [`tower_webhook::inbox::cli`].

fn main() -> std::process::ExitCode {
    tower_webhook::inbox::cli::main()
}
