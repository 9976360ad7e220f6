//! One rollback as a value: what [`crate::MlflowRollbacker`] found in the
//! registry, and the writes that remain, each a named step.
//!
//! A rollback from version F to version T, decided at D, leaves:
//! - F tagged bad (`rollback.health`, with the reason and D);
//! - the alias on T;
//! - the move record `rollback.move.<alias>.<D millis>` on T and on F, whose
//!   `hooks` says whether the post-rollback hooks have all succeeded.
//!
//! [`RollbackPlan::read`] compares that with what the registry holds and
//! keeps only what is missing, so the same request after an interruption
//! (the engine's retry, or a restarted process) completes the rollback and
//! writes each record once.

use std::fmt;
use std::sync::Arc;

use rollback_core::steps::Steps;
use rollback_core::{
    Error, ErrorKind, Result, RevisionHealth, RollbackOutcome, RollbackRequest, TargetId, Timestamp,
};

use crate::revision::{MAX_REASON_CHARS, clip, health_tags, tags};
use crate::target::{Model, version_number};
use crate::{AliasMove, HooksState, ModelVersion, Pointer, PostRollbackHook};

/// What a rollback will write, read from the registry before anything
/// changes. Its `Display` says it in words: "tag version 3 bad …; move alias
/// champion … from version 3 to version 2; record the move …".
#[derive(Debug, Clone)]
pub struct RollbackPlan {
    target: TargetId,
    model: String,
    pointer: Pointer,
    to: String,
    /// The version the rollback leaves, if any.
    from: Option<String>,
    /// The health tags `from` lacks, in the order they are written.
    tag_bad: Vec<(&'static str, String)>,
    move_pointer: bool,
    key: String,
    /// The move record, with the hooks' state it is written with.
    record: AliasMove,
    /// The versions that lack the record.
    record_on: Vec<String>,
    /// The hooks to run: all of them while the record says `pending`.
    hooks: Vec<Arc<dyn PostRollbackHook>>,
    /// The versions whose record says `pending`, to say `done` once the
    /// hooks succeeded.
    finish_on: Vec<String>,
}

/// `rollback.move.<alias>.<millis>`: one key per rollback.
pub(crate) fn move_key(pointer: &Pointer, decided_at: Timestamp) -> String {
    format!(
        "{}{}.{}",
        tags::MOVE_PREFIX,
        pointer.tag_component(),
        decided_at.as_millis()
    )
}

/// The move record kept under `key` on `version`, if one is there.
fn record_in(version: &ModelVersion, key: &str) -> Option<AliasMove> {
    let value = version.tag(key)?;
    match serde_json::from_str(value) {
        Ok(record) => Some(record),
        Err(e) => {
            tracing::warn!(version = %version.version, key, error = %e, "a move tag that is not a move record will be rewritten");
            None
        }
    }
}

/// `version 3`, or `unset` for no version.
fn version_text(v: Option<&str>) -> String {
    v.map_or("unset".to_owned(), |v| format!("version {v}"))
}

/// `version 2`, `versions 2 and 3`.
fn versions_text(vs: &[String]) -> String {
    match vs {
        [one] => format!("version {one}"),
        _ => format!("versions {}", vs.join(" and ")),
    }
}

/// The versions a rollback touches, as the registry holds them now.
struct Found {
    to: ModelVersion,
    /// The version left: the one the pointer points at; once the pointer
    /// is on `to`, the one the move record names, or else the request.
    from: Option<ModelVersion>,
    already_at: bool,
}

impl Found {
    async fn read(m: &Model, request: &RollbackRequest, key: &str) -> Result<Found> {
        let to = ready_version(m, request).await?;
        let current = m
            .pointed()
            .await
            .map_err(|e| m.context(e))?
            .map(|v| v.version);
        let already_at = current.as_deref() == Some(to.version.as_str());
        let from = if already_at {
            record_in(&to, key)
                .map(|r| r.from)
                .unwrap_or_else(|| request.from.as_ref().map(|f| f.to_string()))
                .filter(|f| *f != to.version)
        } else {
            refuse_a_moved_pointer(m, request, current.as_deref())?;
            current
        };
        let from = match &from {
            Some(f) => read_left_version(m, f, already_at).await?,
            None => None,
        };
        Ok(Found {
            to,
            from,
            already_at,
        })
    }

    fn versions(&self) -> impl Iterator<Item = &ModelVersion> {
        std::iter::once(&self.to).chain(&self.from)
    }
}

/// The copies of one move record, on the version restored and on the
/// version left, each as found (`None`: missing).
struct Copies(Vec<(String, Option<AliasMove>)>);

impl Copies {
    fn of(found: &Found, key: &str) -> Copies {
        Copies(
            found
                .versions()
                .map(|v| (v.version.clone(), record_in(v, key)))
                .collect(),
        )
    }

    /// The record as written, if any copy is there.
    fn record(&self) -> Option<AliasMove> {
        self.0.iter().find_map(|(_, r)| r.clone())
    }

    /// A copy says the hooks are done (the one on the version restored is
    /// updated first).
    fn hooks_done(&self) -> bool {
        self.0
            .iter()
            .any(|(_, r)| r.as_ref().is_some_and(|r| r.hooks == HooksState::Done))
    }

    fn missing(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|(_, r)| r.is_none())
            .map(|(v, _)| v.clone())
            .collect()
    }

    /// The versions whose copy will say `pending` once the missing ones
    /// are written with `state`.
    fn pending(&self, state: HooksState) -> Vec<String> {
        self.0
            .iter()
            .filter(|(_, r)| match r {
                None => state == HooksState::Pending,
                Some(r) => state == HooksState::Pending || r.hooks == HooksState::Pending,
            })
            .map(|(v, _)| v.clone())
            .collect()
    }
}

impl RollbackPlan {
    /// Read what the registry holds of the rollback `request` asks for,
    /// and plan what is missing. Changes nothing.
    pub(crate) async fn read(
        m: &Model,
        hooks: &[Arc<dyn PostRollbackHook>],
        request: &RollbackRequest,
    ) -> Result<RollbackPlan> {
        let key = move_key(&m.pointer, request.decided_at);
        let found = Found::read(m, request, &key).await?;
        let copies = Copies::of(&found, &key);
        let state = if hooks.is_empty() || copies.hooks_done() {
            HooksState::Done
        } else {
            HooksState::Pending
        };
        let from = found.from.as_ref().map(|v| v.version.clone());
        let mut record = copies
            .record()
            .unwrap_or_else(|| new_record(m, request, &found.to.version, &from));
        record.hooks = state;
        Ok(RollbackPlan {
            target: m.id.clone(),
            model: m.name.clone(),
            pointer: m.pointer.clone(),
            to: found.to.version.clone(),
            tag_bad: found
                .from
                .as_ref()
                .map(|v| missing_health_tags(v, request))
                .unwrap_or_default(),
            from,
            move_pointer: !found.already_at,
            key,
            record,
            record_on: copies.missing(),
            hooks: match state {
                HooksState::Pending => hooks.to_vec(),
                HooksState::Done => Vec::new(),
            },
            finish_on: copies.pending(state),
        })
    }

    /// Whether the alias moves (else it already points at the version).
    pub fn moves_pointer(&self) -> bool {
        self.move_pointer
    }

    /// Whether nothing is left to write: the rollback is complete.
    pub fn is_complete(&self) -> bool {
        !self.move_pointer
            && self.tag_bad.is_empty()
            && self.record_on.is_empty()
            && self.hooks.is_empty()
            && self.finish_on.is_empty()
    }

    /// The key of the move record, `rollback.move.<alias>.<millis>`.
    pub fn record_key(&self) -> &str {
        &self.key
    }

    /// Carry the plan out, one step per write, each announced to `steps`
    /// before it is made.
    pub(crate) async fn execute(&self, m: &Model, steps: &Steps) -> Result<RollbackOutcome> {
        self.tag_bad(m, steps).await?;
        self.move_pointer(m, steps).await?;
        self.record_move(m, steps).await?;
        self.run_hooks(steps).await?;
        self.finish_hooks(m, steps).await?;
        Ok(self.outcome())
    }

    async fn tag_bad(&self, m: &Model, steps: &Steps) -> Result<()> {
        let Some(from) = &self.from else {
            return Ok(());
        };
        for (key, value) in &self.tag_bad {
            steps
                .step_paced(&format!("tag version {from} bad: {key}"))
                .await?;
            m.client
                .set_model_version_tag(&m.name, from, key, value)
                .await
                .map_err(|e| m.context(e))?;
        }
        Ok(())
    }

    async fn move_pointer(&self, m: &Model, steps: &Steps) -> Result<()> {
        if !self.move_pointer {
            return Ok(());
        }
        let to = &self.to;
        steps
            .step_paced(&format!("move {} to version {to}", self.pointer.describe()))
            .await?;
        match &m.pointer {
            Pointer::Alias(alias) => m.client.set_alias(&m.name, alias, to).await,
            Pointer::Stage(stage) => {
                #[allow(deprecated)]
                let moved = m.client.transition_stage(&m.name, to, stage, true).await;
                moved.map(|_| ())
            }
        }
        .map_err(|e| m.context(e))?;
        tracing::info!(from = ?self.from, to = %to, "moved {}", self.pointer.describe());
        Ok(())
    }

    async fn record_move(&self, m: &Model, steps: &Steps) -> Result<()> {
        self.write_record(
            m,
            steps,
            &self.record_on,
            &self.record,
            "record the move on",
        )
        .await
    }

    async fn run_hooks(&self, steps: &Steps) -> Result<()> {
        for hook in &self.hooks {
            steps
                .step_paced(&format!("run the post-rollback hook {}", hook.name()))
                .await?;
            if let Err(e) = hook.after_rollback(&self.record).await {
                let to = &self.to;
                return Err(Error::new(
                    e.kind(),
                    format!(
                        "target {}: {}, but the post-rollback hook {} failed: {}; serving may still run the old version until it reloads (a repeated rollback to version {to} runs the hooks again)",
                        self.target,
                        self.moved(),
                        hook.name(),
                        e.message(),
                    ),
                )
                .with_source(e));
            }
        }
        Ok(())
    }

    async fn finish_hooks(&self, m: &Model, steps: &Steps) -> Result<()> {
        let done = AliasMove {
            hooks: HooksState::Done,
            ..self.record.clone()
        };
        self.write_record(
            m,
            steps,
            &self.finish_on,
            &done,
            "mark the hooks done in the record on",
        )
        .await
    }

    /// Write `record` under the plan's key on each of `versions`.
    async fn write_record(
        &self,
        m: &Model,
        steps: &Steps,
        versions: &[String],
        record: &AliasMove,
        step: &str,
    ) -> Result<()> {
        let value = serde_json::to_string(record)
            .map_err(|e| Error::permanent(format!("encoding the move record: {e}")))?;
        for version in versions {
            steps
                .step_paced(&format!("{step} version {version}"))
                .await?;
            if let Err(e) = m
                .client
                .set_model_version_tag(&m.name, version, &self.key, &value)
                .await
            {
                // The message holds the cause and its chain.
                let e = m.context(e);
                return Err(Error::new(
                    e.kind(),
                    format!(
                        "{}, but writing its record {} on version {version} failed: {}; the same rollback asked again completes the record{}",
                        self.moved(),
                        self.key,
                        e.full_message(),
                        if self.hooks.is_empty() {
                            ""
                        } else {
                            " and runs the post-rollback hooks"
                        }
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `alias champion moved from version 3 to version 2`.
    fn moved(&self) -> String {
        format!(
            "{} moved from {} to version {}",
            self.pointer.describe(),
            version_text(self.from.as_deref()),
            self.to
        )
    }

    fn outcome(&self) -> RollbackOutcome {
        let pointer = format!(
            "{} of registered model {:?}",
            self.pointer.describe(),
            self.model
        );
        if self.move_pointer {
            let mut detail = format!(
                "moved {pointer} from {} to version {}",
                version_text(self.from.as_deref()),
                self.to
            );
            if let Some(from) = &self.from {
                detail.push_str(&format!(" and tagged version {from} bad"));
            }
            detail.push_str(&format!("; recorded as tag {}", self.key));
            if !self.hooks.is_empty() {
                detail.push_str(&format!("; ran {}", hooks_text(&self.hooks)));
            }
            return RollbackOutcome::RolledBack { detail };
        }
        let mut detail = format!("{pointer} already points at version {}", self.to);
        let completed = self.completed();
        if !completed.is_empty() {
            detail.push_str(&format!(
                "; completed the rollback recorded as tag {}: {}",
                self.key,
                completed.join(", ")
            ));
        }
        RollbackOutcome::AlreadyAt { detail }
    }

    /// What an interrupted rollback lacked, in words.
    fn completed(&self) -> Vec<String> {
        let mut done = Vec::new();
        if let (Some(from), false) = (&self.from, self.tag_bad.is_empty()) {
            done.push(format!("tagged version {from} bad"));
        }
        if !self.record_on.is_empty() {
            done.push(format!(
                "recorded the move on {}",
                versions_text(&self.record_on)
            ));
        }
        if !self.hooks.is_empty() {
            done.push("the post-rollback hooks that had failed ran again".to_owned());
        } else if !self.finish_on.is_empty() {
            done.push("marked its hooks done".to_owned());
        }
        done
    }
}

/// `1 post-rollback hook (NAME)`, `2 post-rollback hooks (A, B)`.
fn hooks_text(hooks: &[Arc<dyn PostRollbackHook>]) -> String {
    let names: Vec<&str> = hooks.iter().map(|h| h.name()).collect();
    format!(
        "{} post-rollback hook{} ({})",
        hooks.len(),
        if hooks.len() == 1 { "" } else { "s" },
        names.join(", ")
    )
}

impl fmt::Display for RollbackPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pointer = format!(
            "{} of registered model {:?}",
            self.pointer.describe(),
            self.model
        );
        if self.is_complete() {
            return write!(
                f,
                "nothing: {pointer} already points at version {}",
                self.to
            );
        }
        let mut parts = Vec::new();
        if let (Some(from), false) = (&self.from, self.tag_bad.is_empty()) {
            let keys: Vec<&str> = self.tag_bad.iter().map(|(k, _)| *k).collect();
            parts.push(format!("tag version {from} bad ({})", keys.join(", ")));
        }
        if self.move_pointer {
            parts.push(format!(
                "move {pointer} from {} to version {}",
                version_text(self.from.as_deref()),
                self.to
            ));
        }
        if !self.record_on.is_empty() {
            parts.push(format!(
                "record the move as tag {} on {}",
                self.key,
                versions_text(&self.record_on)
            ));
        }
        if !self.hooks.is_empty() {
            parts.push(format!("run {}", hooks_text(&self.hooks)));
        }
        if !self.finish_on.is_empty() {
            parts.push(format!(
                "mark the hooks done in the record on {}",
                versions_text(&self.finish_on)
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

/// The version to restore: it exists (else `NotFound`) and is `READY`.
async fn ready_version(m: &Model, request: &RollbackRequest) -> Result<ModelVersion> {
    let number = version_number(m, request.to.id())?;
    let to = m
        .client
        .get_model_version(&m.name, &number)
        .await
        .map_err(|e| m.context(e))?;
    if !to.is_ready() {
        return Err(Error::invalid(format!(
            "target {}: version {} of registered model {:?} is {} and cannot serve; choose a READY version",
            m.id,
            to.version,
            m.name,
            to.status.as_deref().unwrap_or("not ready")
        )));
    }
    Ok(to)
}

/// A rollback of a version nobody points at any more would undo a change
/// nobody judged.
fn refuse_a_moved_pointer(
    m: &Model,
    request: &RollbackRequest,
    current: Option<&str>,
) -> Result<()> {
    match (&request.from, current) {
        (Some(expected), Some(actual)) if expected.as_str() != actual => Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "target {}: {} now points at version {actual}, not at version {expected} that was judged; someone moved it meanwhile, so nothing was changed: judge the new version first",
                m.id,
                m.pointer.describe()
            ),
        )
        // Re-reading will find the same move: retrying cannot help.
        .with_retryable(false)),
        _ => Ok(()),
    }
}

/// The version the rollback leaves. Once the alias has moved, a version
/// deleted since cannot be completed, and is left out.
async fn read_left_version(
    m: &Model,
    version: &str,
    already_at: bool,
) -> Result<Option<ModelVersion>> {
    match m.client.get_model_version(&m.name, version).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if already_at && e.is_not_found() => {
            tracing::warn!(version, error = %e, "the version rolled away from is gone; its tags and record are left out");
            Ok(None)
        }
        Err(e) => Err(m.context(e)),
    }
}

/// The record a rollback writes, from the request alone, so that it is the
/// same on every try.
fn new_record(m: &Model, request: &RollbackRequest, to: &str, from: &Option<String>) -> AliasMove {
    let (alias, stage) = match &m.pointer {
        Pointer::Alias(a) => (Some(a.clone()), None),
        Pointer::Stage(s) => (None, Some(s.clone())),
    };
    AliasMove {
        model: m.name.clone(),
        alias,
        stage,
        from: from.clone(),
        to: to.to_owned(),
        reason: clip(&request.reason, MAX_REASON_CHARS),
        actor: request.actor.to_string(),
        at: request.decided_at.to_string(),
        at_ms: request.decided_at.as_millis(),
        hooks: HooksState::Pending,
    }
}

/// The health tags marking `version` bad for this rollback that it does
/// not hold yet.
fn missing_health_tags(
    version: &ModelVersion,
    request: &RollbackRequest,
) -> Vec<(&'static str, String)> {
    health_tags(RevisionHealth::Bad, &request.reason, request.decided_at)
        .into_iter()
        .flatten()
        .filter(|(key, value)| version.tag(key) != Some(value.as_str()))
        .collect()
}
