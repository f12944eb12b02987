//! A deadline queue for many state machines: one entry per (deadline, key), stale entries
//! skipped lazily.
//!
//! Each transaction exposes `poll_timeout()`; whenever it may have changed, the owner
//! [`schedule`](TimerQueue::schedule)s the new deadline. Old entries stay in the heap and are
//! discarded when they surface if they no longer match the machine's current deadline, which keeps
//! re-arming O(log n) without a cancel operation.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// A min-heap of `(deadline, key)`.
#[derive(Debug)]
pub struct TimerQueue<K: Ord> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord> Default for TimerQueue<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord + Clone> TimerQueue<K> {
    /// Adds a deadline for `key`.
    pub fn schedule(&mut self, at: Instant, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest deadline, stale or not.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns the next key whose deadline is at or before `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<K> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, k))| k),
            _ => None,
        }
    }

    /// Number of entries, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Entries the heap can hold without growing.
    pub fn capacity(&self) -> usize {
        self.heap.capacity()
    }

    /// Gives memory back down to `min` entries (or the current length).
    pub fn shrink_to(&mut self, min: usize) {
        self.heap.shrink_to(min);
    }

    /// True when no entry is queued.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        q.schedule(t0 + Duration::from_secs(2), 2u32);
        q.schedule(t0 + Duration::from_secs(1), 1u32);
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(q.pop_expired(t0), None);
        assert_eq!(q.pop_expired(t0 + Duration::from_secs(5)), Some(1));
        assert_eq!(q.pop_expired(t0 + Duration::from_secs(5)), Some(2));
        assert!(q.is_empty());
    }
}
