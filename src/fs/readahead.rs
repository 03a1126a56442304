//! Read-ahead for one open file: once reads run sequentially, keep a window of SFTP READs in
//! flight ahead of the reader, doubling it as the run continues, so the kernel's 128 KiB
//! requests are answered from memory. A read elsewhere drops the window: random access pays
//! nothing for it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::future::{BoxFuture, Shared};

use crate::remote::RemoteError;

pub type ChunkFuture = Shared<BoxFuture<'static, Result<Bytes, RemoteError>>>;

/// How far from the expected offset a read may land and still belong to the run.
const NEAR: u64 = 2 * 1024 * 1024;

/// The first window of a sequential run.
const INITIAL_WINDOW: u64 = 1024 * 1024;

/// One READ in flight or done, counted against the mount-wide read-ahead budget.
pub struct Chunk {
    pub len: u32,
    pub data: ChunkFuture,
    budget: Arc<AtomicUsize>,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.len as usize, Ordering::Relaxed);
    }
}

#[derive(Default)]
pub struct ReadAhead {
    /// Where a sequential reader reads next.
    next: u64,
    window: u64,
    chunks: BTreeMap<u64, Chunk>,
    /// The file's size when known: no reading ahead past it.
    pub size_hint: Option<u64>,
}

/// Limits for `plan`.
pub struct Window {
    pub chunk: u32,
    pub max: u64,
    pub total: Arc<AtomicUsize>,
    pub total_max: usize,
}

impl ReadAhead {
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.window = 0;
    }

    /// The chunks that make up `[off, off + size)` — from the window, started now if need
    /// be — or `None` when the read is not part of a sequential run (read it directly).
    pub fn plan(
        &mut self,
        off: u64,
        size: u32,
        w: &Window,
        fetch: impl Fn(u64, u32) -> ChunkFuture,
    ) -> Option<Vec<(u64, ChunkFuture)>> {
        let cs = w.chunk as u64;
        let end = off + size as u64;
        let in_window = self
            .chunks
            .range(..=off)
            .next_back()
            .is_some_and(|(o, c)| off < o + c.len as u64);
        // The kernel's synchronous and asynchronous read-ahead requests may arrive out of
        // order: a read near where the run is counts as part of it.
        let near = off.saturating_add(NEAR) >= self.next && off <= self.next + self.window + NEAR;
        let sequential = off == self.next || in_window || (self.window > 0 && near);
        self.next = if sequential { self.next.max(end) } else { end };
        if !sequential {
            self.clear();
            return None;
        }
        self.window = if self.window == 0 {
            INITIAL_WINDOW
        } else {
            (self.window * 2).min(w.max)
        };
        // What the reader has passed is not needed again.
        self.chunks.retain(|o, c| o + c.len as u64 > off);
        let start = off / cs * cs;
        let mut ahead = end + self.window;
        if let Some(size) = self.size_hint {
            ahead = ahead.min(size.max(end));
        }
        let mut o = start;
        while o < ahead {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.chunks.entry(o) {
                let wanted_now = o < end;
                let used = w.total.load(Ordering::Relaxed);
                if !wanted_now && used + w.chunk as usize > w.total_max {
                    break;
                }
                w.total.fetch_add(w.chunk as usize, Ordering::Relaxed);
                slot.insert(Chunk {
                    len: w.chunk,
                    data: fetch(o, w.chunk),
                    budget: w.total.clone(),
                });
            }
            o += cs;
        }
        Some(
            self.chunks
                .range(start..end)
                .map(|(&o, c)| (o, c.data.clone()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::sync::Mutex;

    fn window(total: &Arc<AtomicUsize>) -> Window {
        Window {
            chunk: 100,
            max: 800,
            total: total.clone(),
            total_max: 1000,
        }
    }

    #[test]
    fn sequential_reads_grow_a_bounded_window_and_random_reads_do_not() {
        let total = Arc::new(AtomicUsize::new(0));
        let fetched = Arc::new(Mutex::new(Vec::new()));
        let f = {
            let fetched = fetched.clone();
            move |o: u64, l: u32| {
                fetched.lock().unwrap().push(o);
                async move { Ok(Bytes::from(vec![0u8; l as usize])) }
                    .boxed()
                    .shared()
            }
        };
        let mut ra = ReadAhead::default();
        let w = window(&total);
        let got = ra.plan(0, 150, &w, &f).unwrap();
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![0, 100]);
        // The window runs ahead, limited by the mount-wide budget of 1000 bytes.
        assert!(fetched.lock().unwrap().len() > 2);
        assert!(total.load(Ordering::Relaxed) <= 1000);
        let before = fetched.lock().unwrap().len();
        ra.plan(150, 150, &w, &f).unwrap();
        assert!(fetched.lock().unwrap().len() >= before);
        // The kernel's read-ahead may come a little out of order: still the same run.
        assert!(ra.plan(500, 100, &w, &f).is_some());
        assert!(ra.plan(400, 100, &w, &f).is_some());
        // A jump far away is not sequential: no plan, window dropped, budget returned.
        assert!(ra.plan(50_000_000, 100, &w, &f).is_none());
        assert_eq!(total.load(Ordering::Relaxed), 0);
        // ...and a read following it starts a new run.
        assert!(ra.plan(50_000_100, 100, &w, &f).is_some());
    }

    #[test]
    fn no_reading_past_the_known_size() {
        let total = Arc::new(AtomicUsize::new(0));
        let count = Arc::new(Mutex::new(0));
        let f = {
            let count = count.clone();
            move |_o: u64, _l: u32| {
                *count.lock().unwrap() += 1;
                async { Ok(Bytes::new()) }.boxed().shared()
            }
        };
        let mut ra = ReadAhead {
            size_hint: Some(250),
            ..ReadAhead::default()
        };
        ra.plan(0, 100, &window(&total), &f).unwrap();
        assert_eq!(*count.lock().unwrap(), 3, "chunks 0, 100, 200 and no more");
    }
}
