//! What a watch shares with the engine and the watch's handles: its phase
//! (written by the run, read by anyone), its inbox of operator commands
//! and alerts (written by the engine, read by the run), and the run itself
//! while it is parked.
//!
//! A watch has no task of its own between two steps. When its run has
//! nothing to do until its next deadline it parks here, and the engine's
//! timer (`timers`) holds the deadline. The deadline, or an input, starts a
//! task that carries the run on until it parks again. The inbox and the
//! parked run are under one lock, so an input never finds the run neither
//! parked nor running: at most one task runs a watch at a time.
//!
//! 240 bytes a watch (the run parked in it is 448 more). The tokio channels
//! the phase and inbox replace cost 1.2 KB a watch (a `watch` channel keeps
//! eight `Notify`s against contention, an `mpsc` channel's state is
//! cache-padded and its first block holds 32 messages), and a sleeping
//! task 0.5 KB; with 10,000
//! watches in `serve` that was a fifth of the memory per target. A watch has
//! one writer of each half and at most a few messages a minute, so a mutex
//! and a `Notify` do.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tracing::Instrument as _;

use super::Input;
use super::run::{Wake, WatchRun};
use super::timers::Timers;
use crate::lock;
use crate::machine::Phase;

/// How many inputs wait for the run before a sender waits for room.
const INBOX: usize = 64;

#[derive(Default)]
struct Mailbox {
    inbox: VecDeque<Box<Input>>,
    /// The run between two steps, with no task.
    parked: Option<Box<WatchRun>>,
    /// The task carrying the run on, when it is not parked.
    active: Option<tokio::task::AbortHandle>,
    /// Counts the parks: a deadline set for an earlier one is stale.
    parks: u64,
}

pub(super) struct Slot {
    phase: Mutex<Phase>,
    /// Woken when the phase changes or the run ends.
    phase_changed: Notify,
    /// The run has ended: the phase is final.
    ended: AtomicBool,
    mailbox: Mutex<Mailbox>,
    /// Woken when an input arrives or the inbox closes (for a run that
    /// waits for inputs while a rollback runs).
    arrived: Notify,
    /// Woken when room is made in the inbox or it closes.
    room: Notify,
    /// The inbox takes no more inputs: the engine dropped the watch, or its
    /// run ended.
    closed: AtomicBool,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("phase", &*lock(&self.phase))
            .field("ended", &self.ended.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What became of a run that asked to park.
pub(super) enum Parked {
    /// Parked: its deadline or an input carries it on.
    Yes,
    /// An input came meanwhile: carry on with it.
    Busy(Box<WatchRun>),
    /// The inbox is closed and empty: the run has ended (dropped).
    Ended,
}

impl Slot {
    pub(super) fn new(phase: Phase) -> Self {
        Slot {
            phase: Mutex::new(phase),
            phase_changed: Notify::new(),
            ended: AtomicBool::new(false),
            mailbox: Mutex::new(Mailbox::default()),
            arrived: Notify::new(),
            room: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    pub(super) fn phase(&self) -> Phase {
        lock(&self.phase).clone()
    }

    /// Apply `f` to the phase now, without copying it.
    pub(super) fn with_phase<R>(&self, f: impl FnOnce(&Phase) -> R) -> R {
        f(&lock(&self.phase))
    }

    /// Publish a new phase (the run does).
    pub(super) fn set_phase(&self, phase: &Phase) {
        {
            let mut p = lock(&self.phase);
            if *p == *phase {
                return;
            }
            *p = phase.clone();
        }
        self.phase_changed.notify_waiters();
    }

    /// Wait until the phase satisfies `f`, or the run ends; the phase then.
    pub(super) async fn wait_for(&self, mut f: impl FnMut(&Phase) -> bool) -> Phase {
        loop {
            let changed = self.phase_changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a change in between wakes it.
            changed.as_mut().enable();
            {
                let p = lock(&self.phase);
                if f(&p) || self.ended.load(Ordering::SeqCst) {
                    return p.clone();
                }
            }
            changed.await;
        }
    }

    /// Whether the run has ended (or was aborted).
    pub(super) fn is_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// The run has ended (or was aborted): waiters see the last phase, and
    /// no input is taken any more.
    pub(super) fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
        self.phase_changed.notify_waiters();
        self.close();
    }

    /// Take no more inputs; the run reads what is queued, then ends (a
    /// parked run ends at once: nothing is queued for it).
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // Dropped outside the lock: the run's drop ends this slot.
        let parked = lock(&self.mailbox).parked.take();
        drop(parked);
        self.arrived.notify_one();
        self.room.notify_waiters();
    }

    /// Stop the task carrying the run on, if one is (`Engine::unwatch`).
    pub(super) fn abort(&self) {
        if let Some(task) = lock(&self.mailbox).active.take() {
            task.abort();
        }
    }

    /// Carry the run on in a task of its own, from `wake`.
    pub(super) fn start(&self, run: Box<WatchRun>, wake: Wake) {
        let mut mailbox = lock(&self.mailbox);
        Self::spawn(&mut mailbox, run, wake);
    }

    /// Spawned with the lock held, so the task cannot park before its
    /// handle is kept.
    fn spawn(mailbox: &mut Mailbox, run: Box<WatchRun>, wake: Wake) {
        let span = run.span();
        let task = tokio::spawn(run.drive(wake).instrument(span));
        mailbox.active = Some(task.abort_handle());
    }

    /// Park the run until `at` (never, with `None`) or the next input.
    pub(super) fn park(
        self: &Arc<Self>,
        run: Box<WatchRun>,
        at: Option<tokio::time::Instant>,
        timers: &Arc<Timers>,
    ) -> Parked {
        let mut mailbox = lock(&self.mailbox);
        if !mailbox.inbox.is_empty() {
            return Parked::Busy(run);
        }
        if self.closed.load(Ordering::SeqCst) {
            drop(mailbox);
            drop(run);
            return Parked::Ended;
        }
        mailbox.parked = Some(run);
        mailbox.active = None;
        mailbox.parks += 1;
        let park = mailbox.parks;
        drop(mailbox);
        if let Some(at) = at {
            timers.add(at, park, Arc::downgrade(self));
        }
        Parked::Yes
    }

    /// The deadline of park number `park` has come: carry the run on,
    /// unless it was parked again since (an input woke it).
    pub(super) fn wake(&self, park: u64) {
        let mut mailbox = lock(&self.mailbox);
        if mailbox.parks == park
            && let Some(run) = mailbox.parked.take()
        {
            Self::spawn(&mut mailbox, run, Wake::Step);
        }
    }

    /// Queue an input for the run, waiting for room when 64 wait already;
    /// a parked run is carried on to read it. Gives it back when the inbox
    /// is closed.
    pub(super) async fn send(&self, input: Box<Input>) -> Result<(), Box<Input>> {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                if self.closed.load(Ordering::SeqCst) {
                    return Err(input);
                }
                let mut mailbox = lock(&self.mailbox);
                if mailbox.inbox.len() < INBOX {
                    mailbox.inbox.push_back(input);
                    if let Some(run) = mailbox.parked.take() {
                        Self::spawn(&mut mailbox, run, Wake::Step);
                        return Ok(());
                    }
                    drop(mailbox);
                    self.arrived.notify_one();
                    return Ok(());
                }
            }
            room.await;
        }
    }

    /// The next input queued, if any (only the run calls this).
    pub(super) fn try_recv(&self) -> Option<Box<Input>> {
        let mut mailbox = lock(&self.mailbox);
        let input = mailbox.inbox.pop_front()?;
        if mailbox.inbox.is_empty() {
            // A quiet watch keeps no buffer.
            mailbox.inbox.shrink_to_fit();
        }
        drop(mailbox);
        self.room.notify_one();
        Some(input)
    }

    /// The next input (only the run calls this); `None` once the inbox is
    /// closed and empty.
    pub(super) async fn recv(&self) -> Option<Box<Input>> {
        loop {
            if let Some(input) = self.try_recv() {
                return Some(input);
            }
            if self.closed.load(Ordering::SeqCst) {
                return None;
            }
            // One receiver: a permit left by an input that arrived between
            // the look and here wakes this at once.
            self.arrived.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::machine::PhaseKind;
    use crate::{Timestamp, Trigger, TriggerOutcome};

    fn input(key: &str) -> Box<Input> {
        let (reply, _) = tokio::sync::oneshot::channel::<TriggerOutcome>();
        Box::new(Input::Trigger {
            trigger: Trigger {
                key: key.to_owned(),
                summary: "s".to_owned(),
            },
            reply,
        })
    }

    fn key(i: &Input) -> &str {
        match i {
            Input::Trigger { trigger, .. } => &trigger.key,
            Input::Command { .. } => "command",
            Input::Supersede { .. } => "supersede",
        }
    }

    fn observing(at: i64) -> Phase {
        Phase::Observing {
            bake_until: Timestamp::from_millis(at),
        }
    }

    #[tokio::test]
    async fn inputs_arrive_in_order_and_a_full_inbox_makes_the_sender_wait() {
        let slot = Arc::new(Slot::new(observing(0)));
        for i in 0..INBOX {
            slot.send(input(&i.to_string())).await.ok().unwrap();
        }
        let waiting = tokio::spawn({
            let slot = slot.clone();
            async move { slot.send(input("last")).await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the 65th input must wait for room");
        assert_eq!(key(&slot.recv().await.unwrap()), "0");
        assert!(waiting.await.unwrap(), "room was made: the input is taken");
        for i in 1..INBOX {
            assert_eq!(key(&slot.recv().await.unwrap()), i.to_string());
        }
        assert_eq!(key(&slot.recv().await.unwrap()), "last");
    }

    #[tokio::test]
    async fn a_closed_inbox_gives_inputs_back_and_drains_then_ends() {
        let slot = Arc::new(Slot::new(observing(0)));
        slot.send(input("queued")).await.ok().unwrap();
        let receiver = tokio::spawn({
            let slot = slot.clone();
            async move {
                let mut keys = Vec::new();
                while let Some(i) = slot.recv().await {
                    keys.push(key(&i).to_owned());
                }
                keys
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        slot.send(input("second")).await.ok().unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        slot.close();
        assert_eq!(receiver.await.unwrap(), ["queued", "second"]);
        let back = slot.send(input("late")).await.unwrap_err();
        assert_eq!(key(&back), "late");
    }

    #[tokio::test]
    async fn a_sender_waiting_for_room_is_let_go_when_the_inbox_closes() {
        let slot = Arc::new(Slot::new(observing(0)));
        for i in 0..INBOX {
            slot.send(input(&i.to_string())).await.ok().unwrap();
        }
        let waiting = tokio::spawn({
            let slot = slot.clone();
            async move { slot.send(input("x")).await.is_err() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        slot.end();
        assert!(waiting.await.unwrap());
    }

    #[tokio::test]
    async fn waiters_see_each_phase_they_wait_for_and_the_last_when_the_task_ends() {
        let slot = Arc::new(Slot::new(observing(0)));
        let waiter = tokio::spawn({
            let slot = slot.clone();
            async move { slot.wait_for(|p| p.kind() == PhaseKind::Verifying).await }
        });
        let ender = tokio::spawn({
            let slot = slot.clone();
            async move { slot.wait_for(|p| p.kind().is_terminal()).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        slot.set_phase(&observing(5));
        assert_eq!(slot.phase(), observing(5));
        let verifying = Phase::Verifying {
            restored: crate::RevisionId::new("v1"),
            until: Timestamp::from_millis(9),
        };
        slot.set_phase(&verifying);
        assert_eq!(waiter.await.unwrap(), verifying);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!ender.is_finished());
        slot.end();
        assert_eq!(
            ender.await.unwrap(),
            verifying,
            "the task ended: its last phase"
        );
    }
}
