//! Run with `cargo run --example recommender_ctr`: no server, no configuration.
#[path = "scenarios/mod.rs"]
mod scenarios;

fn main() -> std::process::ExitCode {
    scenarios::run_main(scenarios::recommender_ctr, |o| {
        scenarios::rolled_back_to(o, &["6"])
    })
}
