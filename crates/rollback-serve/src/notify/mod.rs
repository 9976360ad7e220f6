//! Notifications: rollback started, done, verified, escalated, frozen and
//! awaiting approval, to Slack, Microsoft Teams (Workflows) and generic
//! webhooks.
//!
//! The [`Notifier`] is an [`AuditSink`]: it reads the engine's records as
//! they are written (in order per target), turns the six events into
//! [`Notice`]s and puts each on the bounded queue of every channel that
//! takes it. It never waits for a delivery: a full queue drops the notice,
//! counts it and audits it. One task per channel delivers its queue in
//! order, retrying transport errors, 408, 429 and 5xx with backoff (a 429's
//! `Retry-After` is honoured up to the longest wait); a delivery that
//! fails for good is counted and audited (`notification_failed`).
//!
//! - `notice`: what a notification says;
//! - `slack`, `teams`, `webhook`: each channel's payload;
//! - `sender`: delivery with retries.

mod notice;
mod sender;
mod slack;
mod teams;
mod text;
mod webhook;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use rollback_core::audit::{ActionKind, AuditEntry, AuditRecord, AuditSink};
use rollback_core::machine::{Breach, DecisionKind, PhaseKind};
use rollback_core::time::Clock;
use rollback_core::{Actor, Result, RevisionId, TargetId};
use tokio::sync::mpsc;

pub use notice::{Notice, NoticeKind};
pub use webhook::WEBHOOK_VERSION;

pub(crate) use notice::NextSteps;
use sender::Sender;

use crate::config::{ChannelKind, ServeConfig};
use crate::metrics::Metrics;

/// What the notifier remembers of a target's rollback between its records.
#[derive(Debug, Clone, Default)]
struct Pending {
    breach: Option<Breach>,
    to: Option<RevisionId>,
}

struct Channel {
    name: Arc<str>,
    events: Option<BTreeSet<NoticeKind>>,
    queue: mpsc::Sender<Arc<Notice>>,
    capacity: usize,
}

/// The channels of one configuration and the policy facts the texts use.
struct Setup {
    channels: Vec<Channel>,
    next: NextSteps,
}

struct Inner {
    metrics: Arc<Metrics>,
    /// Where notification failures are audited: every sink but this one.
    audit: Arc<dyn AuditSink>,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    pending: Mutex<HashMap<TargetId, Pending>>,
    setup: RwLock<Arc<Setup>>,
    workers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// Turns audit records into notifications and queues them; see the
/// [module docs](self).
#[derive(Clone)]
pub(crate) struct Notifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let setup = self.setup();
        let names: Vec<&str> = setup.channels.iter().map(|c| &*c.name).collect();
        f.debug_struct("Notifier")
            .field("channels", &names)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Notifier {
    pub(crate) fn new(
        metrics: Arc<Metrics>,
        audit: Arc<dyn AuditSink>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Notifier {
            inner: Arc::new(Inner {
                metrics,
                audit,
                clock,
                // Redirects are not followed: a webhook URL that redirects
                // is a misconfiguration to see, not to chase.
                http: reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap_or_default(),
                pending: Mutex::new(HashMap::new()),
                setup: RwLock::new(Arc::new(Setup {
                    channels: Vec::new(),
                    next: NextSteps {
                        verify: Duration::ZERO,
                    },
                })),
                workers: Mutex::new(Vec::new()),
            }),
        }
    }

    fn setup(&self) -> Arc<Setup> {
        self.inner
            .setup
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Use the channels of `config` from now on, with the policy's
    /// `verify` for the texts. Notices already queued on the old channels
    /// are still delivered.
    pub(crate) fn configure(&self, config: &ServeConfig, verify: Duration) {
        let n = &config.notifications;
        let mut channels = Vec::new();
        for (i, c) in n.channels.iter().enumerate() {
            let Some((kind, url)) = c.kind() else {
                continue;
            };
            let name: Arc<str> = config.channel_name(i).into();
            let (tx, rx) = mpsc::channel(n.queue);
            let sender = Sender {
                name: name.clone(),
                kind,
                url: url.clone(),
                auth: if kind == ChannelKind::Webhook {
                    c.auth.clone()
                } else {
                    None
                },
                http: self.inner.http.clone(),
                timeout: n.timeout,
                retry: n.retry,
            };
            let notifier = self.clone();
            let worker = tokio::spawn(async move { notifier.deliver_all(sender, rx).await });
            lock(&self.inner.workers).push(worker);
            channels.push(Channel {
                name,
                events: c.events.as_ref().map(|e| e.iter().copied().collect()),
                queue: tx,
                capacity: n.queue,
            });
        }
        *self.inner.setup.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Setup {
            channels,
            next: NextSteps { verify },
        });
    }

    /// Stop taking notices and let the channels deliver what is queued,
    /// for at most `within`. Returns how many channel workers were still
    /// busy at the bound.
    pub(crate) async fn close(&self, within: Duration) -> usize {
        *self.inner.setup.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Setup {
            channels: Vec::new(),
            next: self.setup().next,
        });
        let workers = std::mem::take(&mut *lock(&self.inner.workers));
        let deadline = tokio::time::Instant::now() + within;
        let mut busy = 0;
        for mut w in workers {
            if tokio::time::timeout_at(deadline, &mut w).await.is_err() {
                w.abort();
                busy += 1;
            }
        }
        busy
    }

    /// Deliver a channel's queue in order until it is closed.
    async fn deliver_all(&self, sender: Sender, mut rx: mpsc::Receiver<Arc<Notice>>) {
        while let Some(notice) = rx.recv().await {
            match sender.deliver(&notice).await {
                Ok(attempts) => {
                    tracing::info!(channel = %sender.name, event = %notice.event, target = %notice.target, attempts, "notification sent");
                    self.inner.metrics.notification(&sender.name, "sent");
                }
                Err((attempts, error)) => {
                    tracing::warn!(channel = %sender.name, event = %notice.event, target = %notice.target, attempts, "notification failed: {error}");
                    self.inner.metrics.notification(&sender.name, "failed");
                    self.audit_failure(&notice, &sender.name, attempts, error)
                        .await;
                }
            }
        }
    }

    async fn audit_failure(&self, notice: &Notice, channel: &str, attempts: u32, error: String) {
        let record = AuditRecord {
            at: self.inner.clock.now(),
            target: notice.target.clone(),
            revision: notice.revision.clone(),
            actor: Actor::engine(),
            entry: AuditEntry::NotificationFailed {
                channel: channel.to_owned(),
                notification: notice.event.as_str().to_owned(),
                attempts,
                error,
            },
        };
        if let Err(e) = self.inner.audit.record(&record).await {
            tracing::error!(error = %e.full_message(), "audit record could not be stored: {record}");
        }
    }

    /// Forget what is remembered of a target (it is no longer supervised).
    pub(crate) fn forget(&self, target: &TargetId) {
        lock(&self.inner.pending).remove(target);
    }

    /// The notice a record makes, if any; remembers what later records of
    /// the same rollback need.
    fn notice_for(&self, r: &AuditRecord, next: &NextSteps) -> Option<Notice> {
        let mut pending = lock(&self.inner.pending);
        let (event, breach, to, detail) = match &r.entry {
            AuditEntry::WatchStarted { .. } => {
                pending.remove(&r.target);
                return None;
            }
            AuditEntry::Decided {
                decision: DecisionKind::Rollback,
                breach,
                to,
                ..
            } => {
                pending.insert(
                    r.target.clone(),
                    Pending {
                        breach: breach.clone(),
                        to: to.clone(),
                    },
                );
                return None;
            }
            AuditEntry::Decided {
                decision: DecisionKind::AwaitApproval,
                breach,
                to,
                detail,
            } => {
                pending.insert(
                    r.target.clone(),
                    Pending {
                        breach: breach.clone(),
                        to: to.clone(),
                    },
                );
                (
                    NoticeKind::AwaitingApproval,
                    breach.clone(),
                    to.clone(),
                    detail.clone(),
                )
            }
            AuditEntry::ActionStarted {
                action: ActionKind::Rollback,
                subject,
                attempt: 1,
            } => {
                let p = pending.get(&r.target).cloned().unwrap_or_default();
                let detail = format!("the rollback to {subject} is being carried out");
                (
                    NoticeKind::RollbackStarted,
                    p.breach,
                    Some(subject.clone()),
                    detail,
                )
            }
            AuditEntry::Transition { from, to } => {
                let event = match (from, to) {
                    (PhaseKind::RollingBack, PhaseKind::Verifying) => NoticeKind::RollbackDone,
                    (PhaseKind::RollingBack, PhaseKind::RolledBack) => NoticeKind::RollbackDone,
                    (PhaseKind::Verifying, PhaseKind::RolledBack) => NoticeKind::RollbackVerified,
                    _ => return None,
                };
                // A rollback that ends in rolled_back is over: forget it.
                let p = if *to == PhaseKind::RolledBack {
                    pending.remove(&r.target).unwrap_or_default()
                } else {
                    pending.get(&r.target).cloned().unwrap_or_default()
                };
                let detail = match (event, &p.to) {
                    (NoticeKind::RollbackVerified, Some(to)) => {
                        format!("the rollback to {to} is verified")
                    }
                    (_, Some(to)) => format!("the target runs {to} again"),
                    _ => "the rollback is done".to_owned(),
                };
                (event, p.breach, p.to, detail)
            }
            AuditEntry::Decided {
                decision: decision @ (DecisionKind::Escalate | DecisionKind::Freeze),
                breach,
                detail,
                ..
            } => {
                let p = pending.remove(&r.target).unwrap_or_default();
                let event = if *decision == DecisionKind::Escalate {
                    NoticeKind::Escalated
                } else {
                    NoticeKind::Frozen
                };
                (event, breach.clone().or(p.breach), p.to, detail.clone())
            }
            _ => return None,
        };
        drop(pending);
        let next_text = next.after(event, &r.target, &r.revision, to.as_ref(), &detail);
        Some(Notice {
            event,
            target: r.target.clone(),
            at: r.at,
            revision: r.revision.clone(),
            to,
            breach,
            detail,
            next: next_text,
        })
    }
}

#[async_trait]
impl AuditSink for Notifier {
    async fn record(&self, record: &AuditRecord) -> Result<()> {
        let setup = self.setup();
        let Some(notice) = self.notice_for(record, &setup.next) else {
            return Ok(());
        };
        let notice = Arc::new(notice);
        for c in &setup.channels {
            if c.events
                .as_ref()
                .is_some_and(|e| !e.contains(&notice.event))
            {
                continue;
            }
            if let Err(e) = c.queue.try_send(notice.clone()) {
                let why = match e {
                    mpsc::error::TrySendError::Full(_) => format!(
                        "dropped: the channel's queue of {} notifications is full",
                        c.capacity
                    ),
                    mpsc::error::TrySendError::Closed(_) => {
                        "dropped: the channel is shutting down".to_owned()
                    }
                };
                tracing::warn!(channel = %c.name, event = %notice.event, target = %notice.target, "notification {why}");
                self.inner.metrics.notification(&c.name, "dropped");
                self.audit_failure(&notice, &c.name, 0, why).await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
