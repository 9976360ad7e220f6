//! Who calls the operator API: bearer tokens mapped to actors, and the
//! grants the engine's authorizer judges their commands by. Both are
//! replaced whole on a reload (a revoked token stops working at once).

use std::sync::{Arc, RwLock};

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use rollback_core::auth::{Authorizer, CommandKind, Denied, Grants};
use rollback_core::http::Secret;
use rollback_core::{Actor, TargetId};
use subtle::ConstantTimeEq;

use crate::config::ServeConfig;

/// The operators of one configuration.
#[derive(Debug, Default)]
struct Operators {
    tokens: Vec<(Secret, Actor)>,
    grants: Grants,
}

impl Operators {
    fn from_config(config: &ServeConfig) -> Self {
        let mut grants = Grants::new();
        let mut tokens = Vec::new();
        for o in &config.operators {
            let actor = Actor::new(o.actor.clone());
            tokens.push((o.token.clone(), actor.clone()));
            grants = match &o.targets {
                None => grants.allow(actor, o.commands.iter().copied()),
                Some(t) => grants.allow_on(actor, o.commands.iter().copied(), t.iter().cloned()),
            };
        }
        Operators { tokens, grants }
    }
}

/// Why a request has no actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unauthenticated(pub(crate) &'static str);

/// The current operators: the tokens for the API, the grants for the
/// engine ([`Authorizer`]).
#[derive(Debug, Default)]
pub(crate) struct OperatorAccess {
    current: RwLock<Arc<Operators>>,
}

impl OperatorAccess {
    pub(crate) fn new(config: &ServeConfig) -> Self {
        OperatorAccess {
            current: RwLock::new(Arc::new(Operators::from_config(config))),
        }
    }

    fn current(&self) -> Arc<Operators> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Use the operators of `config` from now on.
    pub(crate) fn replace(&self, config: &ServeConfig) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(Operators::from_config(config));
    }

    /// The actor whose token the request carries (`Authorization: Bearer
    /// TOKEN`). Every token is compared in constant time, so the answer's
    /// timing tells nothing about which one nearly matched.
    pub(crate) fn actor(&self, headers: &HeaderMap) -> Result<Actor, Unauthenticated> {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(Unauthenticated(
                "send one header `Authorization: Bearer TOKEN` with a token of serve.operators",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(Unauthenticated(
                "the Authorization header is not `Bearer TOKEN`",
            ))?;
        let operators = self.current();
        let mut found = None;
        for (secret, actor) in &operators.tokens {
            if bool::from(secret.expose().as_bytes().ct_eq(token.as_bytes())) && found.is_none() {
                found = Some(actor.clone());
            }
        }
        found.ok_or(Unauthenticated("the token is not one of serve.operators"))
    }
}

impl Authorizer for OperatorAccess {
    fn authorize(
        &self,
        actor: &Actor,
        command: CommandKind,
        target: &TargetId,
    ) -> Result<(), Denied> {
        self.current().grants.authorize(actor, command, target)
    }
}
