//! Run with `cargo run --example ecommerce_checkout`: no server, no configuration.
#[path = "scenarios/mod.rs"]
mod scenarios;

fn main() -> std::process::ExitCode {
    scenarios::run_main(scenarios::ecommerce_checkout, |o| {
        scenarios::rolled_back_to(o, &["v41"])
    })
}
