//! Run with `cargo run --example banking_latency`: no server, no configuration.
#[path = "scenarios/mod.rs"]
mod scenarios;

fn main() -> std::process::ExitCode {
    scenarios::run_main(scenarios::banking_latency, |o| {
        scenarios::rolled_back_to(o, &["v7"])
    })
}
