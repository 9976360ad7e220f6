//! The examples' scenarios, run as tests: each must end where the tutorial says.

#[path = "../examples/quickstart.rs"]
mod quickstart;
#[path = "../examples/scenarios/mod.rs"]
mod scenarios;

use rollback::core::Phase;
use scenarios::*;

#[tokio::test(start_paused = true)]
async fn quickstart_rolls_the_canary_back_and_verifies() {
    let out = SharedOut::default();
    let (end, now) = quickstart::quickstart(out.clone()).await.unwrap();
    assert!(matches!(end, Phase::RolledBack { .. }), "{end:?}");
    assert_eq!(now.as_str(), "v1");
    let text = out.text();
    for line in [
        "+01:30  shop/checkout    error_rate on v2 = 0.013 -> fail (success condition not met) [success < 0.01]",
        "+02:00  shop/checkout    decision rollback: roll back from v2 to v1 (rollback-engine): probe error_rate failed 2 times (failure_limit 1); last value 0.021 against success < 0.01",
        "+04:00  shop/checkout    decision complete: rollback to v1 verified",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn ecommerce_checkout_rolls_back_on_rising_5xx() {
    let o = ecommerce_checkout(SharedOut::default()).await.unwrap();
    assert!(rolled_back_to(&o, &["v41"]), "{o:?}");
}

#[tokio::test(start_paused = true)]
async fn banking_alert_rolls_back_once_despite_repeats() {
    let out = SharedOut::default();
    let o = banking_latency(out.clone()).await.unwrap();
    assert!(rolled_back_to(&o, &["v7"]), "{o:?}");
    let text = out.text();
    assert!(
        text.contains("PaymentsLatencyHigh (a1b2c3@2026-11-27T12:01:10Z): accepted"),
        "{text}"
    );
    assert!(text.contains("rollbacks performed: 1"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn streaming_rolls_back_every_region_that_got_the_codec() {
    let o = streaming_regions(SharedOut::default()).await.unwrap();
    assert!(
        rolled_back_to(&o, &["codec-1", "codec-1", "codec-1"]),
        "{o:?}"
    );
    assert!(
        matches!(o.targets[1].1, Phase::RolledBack { .. }),
        "us-east was rolled back: {o:?}"
    );
    assert!(
        matches!(o.targets[2].1, Phase::Promoted { .. }),
        "ap-south never had codec-2: {o:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn recommender_moves_back_to_the_previous_model() {
    let o = recommender_ctr(SharedOut::default()).await.unwrap();
    assert!(rolled_back_to(&o, &["6"]), "{o:?}");
}
