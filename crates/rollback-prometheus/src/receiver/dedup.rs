//! Which alerts were already handed to the sink.

use std::collections::{HashSet, VecDeque};

/// The keys of alerts handed over (bounded, oldest forgotten first) and
/// those being handed over right now.
pub(super) struct Dedup {
    seen: HashSet<String>,
    order: VecDeque<String>,
    in_flight: HashSet<String>,
    capacity: usize,
}

impl Dedup {
    /// Remember up to `capacity` keys.
    pub(super) fn new(capacity: usize) -> Self {
        Dedup {
            seen: HashSet::new(),
            order: VecDeque::new(),
            in_flight: HashSet::new(),
            capacity,
        }
    }

    /// Reserve `key`; false when it was seen or is being handled.
    pub(super) fn reserve(&mut self, key: &str) -> bool {
        if self.seen.contains(key) || self.in_flight.contains(key) {
            return false;
        }
        self.in_flight.insert(key.to_owned());
        true
    }

    /// Release `key`, remembering it as handled if `remember`.
    pub(super) fn finish(&mut self, key: &str, remember: bool) {
        self.in_flight.remove(key);
        if remember && self.capacity > 0 && self.seen.insert(key.to_owned()) {
            self.order.push_back(key.to_owned());
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_is_bounded_and_forgets_the_oldest() {
        let mut d = Dedup {
            seen: HashSet::new(),
            order: VecDeque::new(),
            in_flight: HashSet::new(),
            capacity: 2,
        };
        assert!(d.reserve("a"));
        assert!(!d.reserve("a"), "in flight");
        d.finish("a", true);
        assert!(!d.reserve("a"), "seen");
        for k in ["b", "c"] {
            assert!(d.reserve(k));
            d.finish(k, true);
        }
        assert_eq!(d.seen.len(), 2);
        assert!(d.reserve("a"), "a was forgotten");
        d.finish("a", false);
        assert!(d.reserve("a"), "not remembered after a failure");
    }
}
