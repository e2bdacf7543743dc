//! The overflow queue: requests over a limit wait in line for capacity, per meter key,
//! highest priority first, then first come first served.
//!
//! Only the head of a line checks the store; the others sleep until they become head. A
//! newcomer whose priority is higher than every head of its keys' lines checks at once
//! (it overtakes); otherwise it joins the line behind. A waiter that goes away (client
//! disconnect drops the request future) leaves its line and wakes the next head.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

type Place = (Reverse<u8>, u64);

#[derive(Default)]
struct Line {
    waiters: BTreeMap<Place, Arc<Notify>>,
}

#[derive(Default)]
pub(crate) struct Queues {
    waiting: AtomicUsize,
    seq: AtomicU64,
    lines: Mutex<HashMap<String, Line>>,
}

impl Queues {
    fn lines(&self) -> MutexGuard<'_, HashMap<String, Line>> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of requests waiting.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// The key of a line, among `keys`, whose head has at least `priority` (the newcomer
    /// must wait behind it), if any.
    pub(crate) fn blocked_by<'k>(
        &self,
        keys: impl Iterator<Item = &'k str>,
        priority: u8,
    ) -> Option<&'k str> {
        if self.waiting() == 0 {
            return None;
        }
        let lines = self.lines();
        keys.into_iter().find(|k| {
            lines
                .get(*k)
                .and_then(|l| l.waiters.keys().next())
                .is_some_and(|(Reverse(p), _)| *p >= priority)
        })
    }

    /// Joins the line of `key`.
    pub(crate) fn join(self: &Arc<Self>, key: &str, priority: u8) -> Waiter {
        let place = (Reverse(priority), self.seq.fetch_add(1, Ordering::Relaxed));
        let notify = Arc::new(Notify::new());
        let mut lines = self.lines();
        let line = lines.entry(key.to_owned()).or_default();
        line.waiters.insert(place, notify.clone());
        self.waiting.fetch_add(1, Ordering::AcqRel);
        Waiter {
            queues: self.clone(),
            key: key.to_owned(),
            place,
            notify,
        }
    }
}

/// A place in a line; leaving (drop) wakes the next head.
pub(crate) struct Waiter {
    queues: Arc<Queues>,
    key: String,
    place: Place,
    notify: Arc<Notify>,
}

impl Waiter {
    /// Whether this waiter is at the head of its line.
    pub(crate) fn is_head(&self) -> bool {
        self.queues
            .lines()
            .get(&self.key)
            .and_then(|l| l.waiters.keys().next())
            == Some(&self.place)
    }

    /// Resolves when this waiter may have become head (or the line changed).
    pub(crate) async fn turn(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut lines = self.queues.lines();
        if let Some(line) = lines.get_mut(&self.key) {
            line.waiters.remove(&self.place);
            match line.waiters.values().next() {
                Some(next) => next.notify_one(),
                None => {
                    lines.remove(&self.key);
                }
            }
        }
        self.queues.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}
