//! What a watch's task shares with the engine and the watch's handles: its
//! phase (written by the task, read by anyone) and its inbox of operator
//! commands and alerts (written by the engine, read by the task).
//!
//! One allocation of about 250 bytes a watch. The tokio channels it
//! replaces cost 1.2 KB a watch (a `watch` channel keeps eight `Notify`s
//! against contention, an `mpsc` channel's state is cache-padded and its
//! first block holds 32 messages), which with 10,000 watches in `serve` was
//! a fifth of the memory per target. A watch has one writer of each half and
//! at most a few messages a minute, so a mutex and a `Notify` do.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use super::Input;
use crate::lock;
use crate::machine::Phase;

/// How many inputs wait for the task before a sender waits for room.
const INBOX: usize = 64;

pub(super) struct Slot {
    phase: Mutex<Phase>,
    /// Woken when the phase changes or the task ends.
    phase_changed: Notify,
    /// The task has ended: the phase is final.
    ended: AtomicBool,
    inbox: Mutex<VecDeque<Box<Input>>>,
    /// Woken when an input arrives or the inbox closes.
    arrived: Notify,
    /// Woken when room is made in the inbox or it closes.
    room: Notify,
    /// The inbox takes no more inputs: the engine dropped the watch, or its
    /// task ended.
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

impl Slot {
    pub(super) fn new(phase: Phase) -> Self {
        Slot {
            phase: Mutex::new(phase),
            phase_changed: Notify::new(),
            ended: AtomicBool::new(false),
            inbox: Mutex::new(VecDeque::new()),
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

    /// Publish a new phase (the task does).
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

    /// Wait until the phase satisfies `f`, or the task ends; the phase then.
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

    /// The task has ended (or was aborted): waiters see the last phase, and
    /// no input is taken any more.
    pub(super) fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
        self.phase_changed.notify_waiters();
        self.close();
    }

    /// Take no more inputs; the task reads what is queued, then `None`.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.arrived.notify_one();
        self.room.notify_waiters();
    }

    /// Queue an input for the task, waiting for room when 64 wait already.
    /// Gives it back when the inbox is closed.
    pub(super) async fn send(&self, input: Box<Input>) -> Result<(), Box<Input>> {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                if self.closed.load(Ordering::SeqCst) {
                    return Err(input);
                }
                let mut inbox = lock(&self.inbox);
                if inbox.len() < INBOX {
                    inbox.push_back(input);
                    drop(inbox);
                    self.arrived.notify_one();
                    return Ok(());
                }
            }
            room.await;
        }
    }

    /// The next input (only the task calls this); `None` once the inbox is
    /// closed and empty.
    pub(super) async fn recv(&self) -> Option<Box<Input>> {
        loop {
            {
                let mut inbox = lock(&self.inbox);
                if let Some(input) = inbox.pop_front() {
                    if inbox.is_empty() {
                        // A quiet watch keeps no buffer.
                        inbox.shrink_to_fit();
                    }
                    drop(inbox);
                    self.room.notify_one();
                    return Some(input);
                }
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
