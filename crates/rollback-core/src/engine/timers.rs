//! The engine's one timer: the deadlines of every parked watch in a heap,
//! and one task that wakes each watch when its deadline comes.
//!
//! A watch between two steps has no task: its run is parked in its slot
//! (see `slot`), and its deadline is an entry of about 40 bytes here. A
//! task a watch, asleep until its next measurement, cost 0.5 KB (tokio
//! pads a task's cell to cache lines) for each of the 10,000 targets of
//! the `serve` benchmark.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::slot::Slot;
use crate::lock;

struct Entry {
    at: Instant,
    /// The park it was set for: a slot parked again since ignores it.
    park: u64,
    slot: Weak<Slot>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.park).cmp(&(other.at, other.park))
    }
}

#[derive(Default)]
pub(super) struct Timers {
    due: Mutex<BinaryHeap<Reverse<Entry>>>,
    /// Woken when an entry earlier than every other is added.
    earlier: Notify,
    /// The task that wakes the watches, started by the first deadline (in
    /// the runtime of the watch that set it), again if its runtime ended.
    driver: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Timers {
    /// Wake the slot's parked run at `at`, unless it is parked again by then.
    pub(super) fn add(self: &Arc<Self>, at: Instant, park: u64, slot: Weak<Slot>) {
        let earliest = {
            let mut due = lock(&self.due);
            let earliest = due.peek().is_none_or(|e| at < e.0.at);
            due.push(Reverse(Entry { at, park, slot }));
            earliest
        };
        {
            let mut driver = lock(&self.driver);
            if driver.as_ref().is_none_or(|d| d.is_finished()) {
                *driver = Some(tokio::spawn(drive(self.clone())));
            }
        }
        if earliest {
            self.earlier.notify_one();
        }
    }

    /// Stop the driver (the engine is gone).
    pub(super) fn stop(&self) {
        if let Some(d) = lock(&self.driver).take() {
            d.abort();
        }
    }
}

async fn drive(timers: Arc<Timers>) {
    loop {
        // A notice of an earlier entry added from here on wakes the wait
        // (one left before it is taken at once: `notify_one` keeps it).
        let earlier = timers.earlier.notified();
        let next = lock(&timers.due).peek().map(|e| e.0.at);
        match next {
            None => earlier.await,
            Some(at) if at > Instant::now() => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = earlier => {}
                }
            }
            Some(_) => {}
        }
        let now = Instant::now();
        let mut fire = Vec::new();
        {
            let mut due = lock(&timers.due);
            while due.peek().is_some_and(|e| e.0.at <= now) {
                if let Some(Reverse(e)) = due.pop() {
                    fire.push(e);
                }
            }
            if due.is_empty() {
                // 10,000 entries once need not stay allocated.
                due.shrink_to(64);
            }
        }
        for e in fire {
            if let Some(slot) = e.slot.upgrade() {
                slot.wake(e.park);
            }
        }
    }
}
