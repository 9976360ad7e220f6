//! The inputs of a machine.

use crate::{Actor, Command, Measurement};

/// An input of the machine.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// Time passed. Send at [`Machine::next_deadline`](super::Machine::next_deadline) (or later).
    Tick,
    /// Probe number `probe` (policy order) measured.
    Measured {
        /// The probe's index in the policy.
        probe: usize,
        /// What it measured.
        measurement: Measurement,
    },
    /// Probe number `probe` could not measure.
    ProbeError {
        /// The probe's index in the policy.
        probe: usize,
    },
    /// An alert fired for this target. Duplicate keys are ignored.
    Trigger {
        /// The alert's identity; Alertmanager's fingerprint plus startsAt.
        key: String,
        /// What it says.
        summary: String,
    },
    /// An authorized operator command.
    Command {
        /// What the operator asked for; a command the phase does not allow
        /// is answered with [`Decision::Rejected`](super::Decision::Rejected).
        command: Command,
        /// Who gave it (already authorized by the driver).
        actor: Actor,
    },
    /// The rollback asked for completed and converged.
    RollbackSucceeded,
    /// The rollback asked for failed for good (after the driver's retries).
    RollbackFailed {
        /// The backend's error, with its causes.
        error: String,
    },
}
