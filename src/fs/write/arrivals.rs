//! The order in which the kernel sent writes and reads. Each request runs in a task of its
//! own, so a READ can be served before a WRITE the kernel sent earlier is queued. Usually
//! the page cache hides that, but not when the kernel dropped the pages the write had just
//! filled (another program's `open`, a size change) and reads them again: the read must then
//! see the write, or the kernel caches what the server had before it, and fills what a short
//! answer leaves with zeros. A write is noted when it arrives (in the FUSE thread, in the
//! kernel's order) until it is queued; a read waits for the writes of its file noted before it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Default)]
pub struct Arrivals {
    next: AtomicU64,
    /// Writes that arrived and are not queued yet: arrival number → node.
    unplaced: Mutex<BTreeMap<u64, u64>>,
    placed: Notify,
}

/// A write of node `ino` that arrived; queued (or failed) when dropped.
pub struct Arrival {
    seq: u64,
    arrivals: Arc<Arrivals>,
}

impl Drop for Arrival {
    fn drop(&mut self) {
        self.arrivals.unplaced.lock().unwrap().remove(&self.seq);
        self.arrivals.placed.notify_waiters();
    }
}

impl Arrivals {
    /// A write of `ino` arrives: call in the order the kernel sent the requests.
    pub fn write(self: &Arc<Self>, ino: u64) -> Arrival {
        let seq = self.next.fetch_add(1, Ordering::SeqCst);
        self.unplaced.lock().unwrap().insert(seq, ino);
        Arrival {
            seq,
            arrivals: self.clone(),
        }
    }

    /// Where arrivals stand now: a read arriving now comes after every write before this.
    pub fn now(&self) -> u64 {
        self.next.load(Ordering::SeqCst)
    }

    /// Waits until every write of `ino` that arrived before `now` is queued.
    pub async fn placed_before(&self, ino: u64, now: u64) {
        loop {
            let notified = self.placed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let waiting = (self.unplaced.lock().unwrap().range(..now)).any(|(_, &i)| i == ino);
            if !waiting {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_waits_for_the_writes_of_its_file_that_arrived_before_it() {
        let a = Arc::new(Arrivals::default());
        let w1 = a.write(7);
        let other = a.write(8);
        let read_at = a.now();
        let late = a.write(7);
        let waiter = {
            let a = a.clone();
            tokio::spawn(async move { a.placed_before(7, read_at).await })
        };
        tokio::task::yield_now().await;
        drop(other);
        drop(late);
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "returned before the earlier write was queued"
        );
        drop(w1);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("still waiting once the earlier write was queued")
            .unwrap();
    }
}
