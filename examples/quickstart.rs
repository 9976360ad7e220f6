//! Run with `cargo run --example quickstart`: no server, no configuration.
#[path = "scenarios/mod.rs"]
mod scenarios;

fn main() -> std::process::ExitCode {
    scenarios::run_main(scenarios::quickstart, |o| {
        scenarios::rolled_back_to(o, &["v1"])
    })
}
