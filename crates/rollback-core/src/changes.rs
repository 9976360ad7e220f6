//! Word of a target's changes ([`Target::changes`](crate::Target::changes)):
//! a backend marks its [`ChangeSender`] when the target may run another
//! revision, and a supervisor checks its [`Changes`] with one atomic load.
//!
//! Like a tokio `watch` channel of `()`, in 80 bytes: a `watch` channel is
//! 344 (eight `Notify`s against contention), which every supervised target
//! kept; with 10,000 targets in `serve` that was 3 MB for a word that comes
//! a few times a day.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let (tx, mut rx) = rollback_core::changes::channel();
//! assert_eq!(rx.has_changed(), Ok(false));
//! tx.send();
//! assert_eq!(rx.has_changed(), Ok(true));
//! rx.mark_seen();
//! assert_eq!(rx.has_changed(), Ok(false));
//! drop(tx);
//! assert!(rx.changed().await.is_err(), "no sender is left");
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Word {
    /// Bumped by each [`ChangeSender::send`].
    version: AtomicU64,
    senders: AtomicUsize,
    receivers: AtomicUsize,
    /// Woken on each change, and when the last sender or receiver goes.
    notify: Notify,
}

/// The backend's end: marks every [`Changes`] it gave changed. Cloning
/// shares it; when the last clone is dropped the receivers learn that no
/// more word will come.
pub struct ChangeSender {
    word: Arc<Word>,
}

/// A supervisor's end of a target's word of changes.
pub struct Changes {
    word: Arc<Word>,
    /// The version last seen.
    seen: u64,
}

/// No sender is left: no more word will come (the target is polled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the target gives no more word of changes")
    }
}

impl std::error::Error for Closed {}

/// A sender and its first receiver.
pub fn channel() -> (ChangeSender, Changes) {
    let tx = ChangeSender::new();
    let rx = tx.subscribe();
    (tx, rx)
}

impl ChangeSender {
    /// A sender with no receiver yet ([`ChangeSender::subscribe`] gives them).
    pub fn new() -> Self {
        let word = Arc::new(Word::default());
        word.senders.store(1, Ordering::SeqCst);
        ChangeSender { word }
    }

    /// Mark every receiver changed.
    pub fn send(&self) {
        self.word.version.fetch_add(1, Ordering::SeqCst);
        self.word.notify.notify_waiters();
    }

    /// A receiver that has seen everything sent so far.
    pub fn subscribe(&self) -> Changes {
        self.word.receivers.fetch_add(1, Ordering::SeqCst);
        Changes {
            seen: self.word.version.load(Ordering::SeqCst),
            word: self.word.clone(),
        }
    }

    /// How many receivers there are.
    pub fn receivers(&self) -> usize {
        self.word.receivers.load(Ordering::SeqCst)
    }

    /// Wait until no receiver is left (what a backend runs to notice
    /// changes stops then).
    pub async fn closed(&self) {
        loop {
            let gone = self.word.notify.notified();
            tokio::pin!(gone);
            // Registered before looking, so a drop in between wakes it.
            gone.as_mut().enable();
            if self.receivers() == 0 {
                return;
            }
            gone.await;
        }
    }
}

impl Default for ChangeSender {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for ChangeSender {
    fn clone(&self) -> Self {
        self.word.senders.fetch_add(1, Ordering::SeqCst);
        ChangeSender {
            word: self.word.clone(),
        }
    }
}

impl Drop for ChangeSender {
    fn drop(&mut self) {
        if self.word.senders.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.word.notify.notify_waiters();
        }
    }
}

impl fmt::Debug for ChangeSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeSender")
            .field("receivers", &self.receivers())
            .finish_non_exhaustive()
    }
}

impl Changes {
    /// Whether word came since it was last seen; [`Closed`] once no sender
    /// is left and nothing unseen remains.
    pub fn has_changed(&self) -> Result<bool, Closed> {
        if self.word.version.load(Ordering::SeqCst) != self.seen {
            return Ok(true);
        }
        if self.word.senders.load(Ordering::SeqCst) == 0 {
            return Err(Closed);
        }
        Ok(false)
    }

    /// Take the word as seen.
    pub fn mark_seen(&mut self) {
        self.seen = self.word.version.load(Ordering::SeqCst);
    }

    /// Wait for word not seen yet, and take it as seen; [`Closed`] once no
    /// sender is left.
    pub async fn changed(&mut self) -> Result<(), Closed> {
        let word = Arc::clone(&self.word);
        loop {
            let notified = word.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.has_changed()? {
                self.mark_seen();
                return Ok(());
            }
            notified.await;
        }
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        if self.word.receivers.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.word.notify.notify_waiters();
        }
    }
}

impl fmt::Debug for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changes")
            .field("has_changed", &self.has_changed())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_word_is_small() {
        // The allocation: the Arc's two counts and the word.
        assert!(16 + std::mem::size_of::<Word>() <= 96);
    }

    #[tokio::test]
    async fn every_receiver_gets_word_and_a_waiter_is_woken() {
        let tx = ChangeSender::new();
        let (mut a, b) = (tx.subscribe(), tx.subscribe());
        assert_eq!(tx.receivers(), 2);
        let waiter = tokio::spawn(async move { a.changed().await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        tx.clone().send();
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!(b.has_changed(), Ok(true));
        // Subscribed after: nothing unseen.
        assert_eq!(tx.subscribe().has_changed(), Ok(false));
    }

    #[tokio::test]
    async fn the_sender_learns_when_the_last_receiver_goes_and_receivers_when_the_last_sender_does()
    {
        let (tx, rx) = channel();
        let rx2 = tx.subscribe();
        let closed = tokio::spawn({
            let tx = tx.clone();
            async move { tx.closed().await }
        });
        drop(rx);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!closed.is_finished(), "one receiver is left");
        drop(rx2);
        tokio::time::timeout(Duration::from_secs(1), closed)
            .await
            .expect("closed once no receiver is left")
            .unwrap();

        let (tx, mut rx) = channel();
        let tx2 = tx.clone();
        tx.send();
        drop(tx);
        drop(tx2);
        // What was sent before is still seen, then it is closed.
        assert_eq!(rx.changed().await, Ok(()));
        assert_eq!(rx.has_changed(), Err(Closed));
        assert_eq!(rx.changed().await, Err(Closed));
    }
}
