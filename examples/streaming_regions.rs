//! Run with `cargo run --example streaming_regions`: no server, no configuration.
#[path = "scenarios/mod.rs"]
mod scenarios;

fn main() -> std::process::ExitCode {
    scenarios::run_main(scenarios::streaming_regions, |o| {
        scenarios::rolled_back_to(o, &["codec-1", "codec-1", "codec-1"])
    })
}
