//! What a command ended in, as an exit code; with several targets the
//! worst wins.

use rollback::machine::PhaseKind;

/// How a command (or one target's watch) ended. Ordered from best to worst
/// as the gate ranks them: `Healthy < RolledBack < TimedOut < HumansMustLook
/// < Error`, so the worst of several is their `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Exit 0: promoted, healthy, or the command succeeded.
    Healthy,
    /// Exit 3: rolled back (and verified, where the policy verifies).
    RolledBack,
    /// Exit 5: the watch timed out and is left resumable.
    TimedOut,
    /// Exit 4: escalated, frozen, or breached in a dry run.
    HumansMustLook,
    /// Exit 1: any other error.
    Error,
}

impl Outcome {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Healthy => 0,
            Outcome::Error => 1,
            Outcome::RolledBack => 3,
            Outcome::HumansMustLook => 4,
            Outcome::TimedOut => 5,
        }
    }

    /// What a watch that ended in `phase` (or was still in it when the
    /// watch stopped) means for the gate: a phase that is not terminal
    /// means the watch timed out.
    pub fn of_phase(phase: PhaseKind) -> Outcome {
        match phase {
            PhaseKind::Promoted => Outcome::Healthy,
            PhaseKind::RolledBack => Outcome::RolledBack,
            PhaseKind::Escalated | PhaseKind::Frozen | PhaseKind::DryRunBreached => {
                Outcome::HumansMustLook
            }
            _ => Outcome::TimedOut,
        }
    }

    /// The worst of several outcomes; `Healthy` for none.
    pub fn worst(outcomes: impl IntoIterator<Item = Outcome>) -> Outcome {
        outcomes.into_iter().max().unwrap_or(Outcome::Healthy)
    }

    /// `healthy`, `rolled_back`, `timed_out`, `humans_must_look`, `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Healthy => "healthy",
            Outcome::RolledBack => "rolled_back",
            Outcome::TimedOut => "timed_out",
            Outcome::HumansMustLook => "humans_must_look",
            Outcome::Error => "error",
        }
    }
}

/// The exit code of a watch stopped by a signal, as shells report it:
/// 128 + the signal's number (SIGINT 130, SIGTERM 143).
pub fn signal_code(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_wins_in_the_documented_order() {
        use Outcome::*;
        // 1 > 4 > 5 > 3 > 0
        let order = [Healthy, RolledBack, TimedOut, HumansMustLook, Error];
        for (i, a) in order.iter().enumerate() {
            for b in &order[i..] {
                assert_eq!(Outcome::worst([*a, *b]), *b, "{a:?} and {b:?}");
                assert_eq!(Outcome::worst([*b, *a]), *b);
            }
        }
        assert_eq!(Outcome::worst([]), Healthy);
        let codes: Vec<u8> = order.iter().rev().map(|o| o.code()).collect();
        assert_eq!(codes, [1, 4, 5, 3, 0]);
    }

    #[test]
    fn phases_map_to_the_gate() {
        assert_eq!(Outcome::of_phase(PhaseKind::Promoted).code(), 0);
        assert_eq!(Outcome::of_phase(PhaseKind::RolledBack).code(), 3);
        for p in [
            PhaseKind::Escalated,
            PhaseKind::Frozen,
            PhaseKind::DryRunBreached,
        ] {
            assert_eq!(Outcome::of_phase(p).code(), 4);
        }
        for p in [
            PhaseKind::Observing,
            PhaseKind::Verifying,
            PhaseKind::AwaitingApproval,
            PhaseKind::Paused,
        ] {
            assert_eq!(Outcome::of_phase(p).code(), 5);
        }
        assert_eq!((signal_code(2), signal_code(15)), (130, 143));
    }
}
