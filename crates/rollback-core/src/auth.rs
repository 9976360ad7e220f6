//! Who may do what: actors, operator commands and the [`Authorizer`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::{RevisionId, TargetId};

/// Who did something: the engine itself, an alert, or a named operator.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Actor(String);

/// The engine's name as an actor.
const ENGINE: &str = "rollback-engine";

impl Actor {
    /// The engine acting on its own policy.
    pub fn engine() -> Self {
        Actor(ENGINE.into())
    }

    /// Whether this is the engine (without making an actor to compare).
    pub fn is_engine(&self) -> bool {
        self.0 == ENGINE
    }

    /// A named actor: a user (`alice@example.com`), a bot, a pipeline.
    pub fn new(name: impl Into<String>) -> Self {
        Actor(name.into())
    }

    /// The actor's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An operator command.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "command")]
#[non_exhaustive]
pub enum Command {
    /// Stop judging until resumed (measurements are still taken and recorded).
    Pause,
    /// Judge again; the bake time left when paused starts over from now.
    Resume,
    /// Approve the rollback a `manual` policy is waiting on.
    Approve,
    /// Roll back now: to `to`, or where the policy would roll back to.
    Rollback {
        /// The revision to restore; the policy's choice when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<RevisionId>,
    },
    /// Declare the watched revision good now.
    Promote,
}

impl Command {
    /// The kind of command, for authorization.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Pause => CommandKind::Pause,
            Command::Resume => CommandKind::Resume,
            Command::Approve => CommandKind::Approve,
            Command::Rollback { .. } => CommandKind::Rollback,
            Command::Promote => CommandKind::Promote,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Rollback { to: Some(to) } => write!(f, "rollback to {to}"),
            other => f.write_str(other.kind().as_str()),
        }
    }
}

/// The kinds of operator command.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CommandKind {
    /// [`Command::Pause`]
    Pause,
    /// [`Command::Resume`]
    Resume,
    /// [`Command::Approve`]
    Approve,
    /// [`Command::Rollback`]
    Rollback,
    /// [`Command::Promote`]
    Promote,
}

impl CommandKind {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Pause => "pause",
            CommandKind::Resume => "resume",
            CommandKind::Approve => "approve",
            CommandKind::Rollback => "rollback",
            CommandKind::Promote => "promote",
        }
    }
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an actor was denied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{actor} may not {command} target {target}: {reason}")]
pub struct Denied {
    /// Who asked.
    pub actor: Actor,
    /// What they asked.
    pub command: CommandKind,
    /// On which target.
    pub target: TargetId,
    /// Why not.
    pub reason: String,
}

/// Decides whether an actor may give a command on a target. Every denial is
/// audited by the driver.
///
/// # Contract
/// - Pure and fast: no I/O on the decision path (load grants up front).
/// - Returns `Err(Denied)` with a reason a human can act on.
pub trait Authorizer: fmt::Debug + Send + Sync + 'static {
    /// Allow or deny.
    fn authorize(
        &self,
        actor: &Actor,
        command: CommandKind,
        target: &TargetId,
    ) -> Result<(), Denied>;
}

/// Allows everything. For tests and single-user tools only.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, _: &Actor, _: CommandKind, _: &TargetId) -> Result<(), Denied> {
        Ok(())
    }
}

/// Grants by actor: each actor may give the listed commands, on every target
/// or on the listed ones. Everything else is denied.
#[derive(Debug, Default, Clone)]
pub struct Grants {
    grants: BTreeMap<Actor, Vec<Grant>>,
}

/// Commands an actor may give, on every target (`None`) or on some.
#[derive(Debug, Clone)]
struct Grant {
    commands: BTreeSet<CommandKind>,
    targets: Option<BTreeSet<TargetId>>,
}

impl Grants {
    /// No grants: everything denied.
    pub fn new() -> Self {
        Self::default()
    }

    /// Let `actor` give `commands` on every target.
    pub fn allow(mut self, actor: Actor, commands: impl IntoIterator<Item = CommandKind>) -> Self {
        self.grants.entry(actor).or_default().push(Grant {
            commands: commands.into_iter().collect(),
            targets: None,
        });
        self
    }

    /// Let `actor` give `commands` on `targets` only.
    pub fn allow_on(
        mut self,
        actor: Actor,
        commands: impl IntoIterator<Item = CommandKind>,
        targets: impl IntoIterator<Item = TargetId>,
    ) -> Self {
        self.grants.entry(actor).or_default().push(Grant {
            commands: commands.into_iter().collect(),
            targets: Some(targets.into_iter().collect()),
        });
        self
    }
}

impl Authorizer for Grants {
    fn authorize(
        &self,
        actor: &Actor,
        command: CommandKind,
        target: &TargetId,
    ) -> Result<(), Denied> {
        let deny = |reason: String| Denied {
            actor: actor.clone(),
            command,
            target: target.clone(),
            reason,
        };
        let Some(grants) = self.grants.get(actor) else {
            return Err(deny("the actor has no grants".into()));
        };
        let allowed = grants.iter().any(|g| {
            g.commands.contains(&command) && g.targets.as_ref().is_none_or(|t| t.contains(target))
        });
        if allowed {
            Ok(())
        } else {
            Err(deny(format!(
                "no grant covers `{}` on this target",
                command.as_str()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_engine_is_the_engine() {
        assert!(Actor::engine().is_engine());
        assert!(!Actor::new("alice@example.com").is_engine());
        assert!(!Actor::new("rollback-engine2").is_engine());
    }

    #[test]
    fn grants_allow_only_what_they_list() {
        let g = Grants::new()
            .allow(
                Actor::new("oncall"),
                [CommandKind::Approve, CommandKind::Rollback],
            )
            .allow_on(
                Actor::new("dev"),
                [CommandKind::Pause],
                [TargetId::new("shop/checkout")],
            );
        let t = TargetId::new("shop/checkout");
        let other = TargetId::new("bank/payments");
        assert!(
            g.authorize(&Actor::new("oncall"), CommandKind::Approve, &other)
                .is_ok()
        );
        assert!(
            g.authorize(&Actor::new("dev"), CommandKind::Pause, &t)
                .is_ok()
        );
        let e = g
            .authorize(&Actor::new("dev"), CommandKind::Pause, &other)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "dev may not pause target bank/payments: no grant covers `pause` on this target"
        );
        let e = g
            .authorize(&Actor::new("mallory"), CommandKind::Rollback, &t)
            .unwrap_err();
        assert!(e.reason.contains("no grants"));
    }
}
