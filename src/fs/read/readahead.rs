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

/// How far ahead of the run's front a read may land and still belong to the run.
const NEAR: u64 = 2 * 1024 * 1024;

/// How far behind the run's front a read may land and still belong to the run: the kernel
/// keeps its read-ahead (4 MiB on our mounts) in flight as 1 MiB requests, and FUSE hands
/// them over in any order.
const BEHIND: u64 = 8 * 1024 * 1024;

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

/// A chunk a read is made of. One the read covers whole has left the window: the read holds
/// it, and with it its share of the budget, until the read is done with its data.
pub struct Planned {
    pub offset: u64,
    pub data: ChunkFuture,
    _held: Option<Chunk>,
}

#[derive(Default)]
pub struct ReadAhead {
    /// Where a sequential reader reads next: the front of the run.
    next: u64,
    window: u64,
    /// Chunks are issued up to here: ahead of a run, each chunk is fetched once, even after
    /// a read took it out of `chunks`.
    issued: u64,
    chunks: BTreeMap<u64, Chunk>,
    /// The file's size when known: no reading ahead past it.
    pub size_hint: Option<u64>,
    /// The chunk size the window was cut in: when the connection's READ size changes (learned
    /// from a server that caps it, or after a reconnect), old chunks would overlap new ones.
    chunk: u32,
    /// Where the file's changes stood when the window's chunks were asked for (see
    /// `InodeTable::attr_mark`): after any change since, they may hold data from before it.
    pub mark: crate::fs::names::inode::AttrMark,
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
        self.issued = 0;
    }

    /// Drops what was fetched before the file's changes stood at `mark` (a write landed or
    /// began since): a short chunk from before an append would end the file too early, and
    /// the kernel fills what a read leaves short with zeros.
    pub fn keep_only_since(&mut self, mark: crate::fs::names::inode::AttrMark) {
        if self.mark != mark {
            self.clear();
            self.mark = mark;
        }
    }

    /// Starts with a whole file fetched elsewhere (read-ahead across files): `pieces` of
    /// `chunk` bytes from offset 0, held against the mount-wide budget `total` like chunks
    /// this window fetched.
    pub fn seed(&mut self, chunk: u32, pieces: &[Bytes], total: &Arc<AtomicUsize>) {
        self.clear();
        self.chunk = chunk;
        for (i, data) in pieces.iter().enumerate() {
            total.fetch_add(chunk as usize, Ordering::Relaxed);
            let ready: BoxFuture<'static, Result<Bytes, RemoteError>> =
                Box::pin(futures::future::ready(Ok(data.clone())));
            self.chunks.insert(
                i as u64 * chunk as u64,
                Chunk {
                    len: chunk,
                    data: futures::FutureExt::shared(ready),
                    budget: total.clone(),
                },
            );
        }
        self.issued = pieces.len() as u64 * chunk as u64;
    }

    /// The chunks that make up `[off, off + size)` — from the window, started now if need
    /// be — or `None` when the read is not part of a sequential run (read it directly).
    pub fn plan(
        &mut self,
        off: u64,
        size: u32,
        w: &Window,
        fetch: impl Fn(u64, u32) -> ChunkFuture,
    ) -> Option<Vec<Planned>> {
        if self.chunk != w.chunk {
            self.clear();
            self.chunk = w.chunk;
        }
        let cs = w.chunk as u64;
        let end = off + size as u64;
        let in_window = self
            .chunks
            .range(..=off)
            .next_back()
            .is_some_and(|(o, c)| off < o + c.len as u64);
        let near = off.saturating_add(BEHIND) >= self.next && off <= self.next + self.window + NEAR;
        // The kernel hands its first read-ahead requests over out of order too (1 MiB, then
        // 0): close enough to the last read starts a run.
        let starts = self.window == 0 && self.next > 0 && off.abs_diff(self.next) <= NEAR;
        let sequential = off == self.next || in_window || (self.window > 0 && near) || starts;
        self.next = if sequential { self.next.max(end) } else { end };
        if !sequential {
            self.clear();
            return None;
        }
        let start = off / cs * cs;
        self.window = if self.window == 0 {
            self.issued = start;
            INITIAL_WINDOW
        } else {
            (self.window * 2).min(w.max)
        };
        // Far behind the front: skipped, or passed long ago.
        let floor = self.next.saturating_sub(BEHIND);
        self.chunks.retain(|o, c| o + c.len as u64 > floor);
        let needed_to = end.div_ceil(cs) * cs;
        let mut ahead = self.next + self.window;
        if let Some(size) = self.size_hint {
            ahead = ahead.min(size.max(end));
        }
        let fetch_at = |o: u64, chunks: &mut BTreeMap<u64, Chunk>| {
            w.total.fetch_add(w.chunk as usize, Ordering::Relaxed);
            chunks.insert(
                o,
                Chunk {
                    len: w.chunk,
                    data: fetch(o, w.chunk),
                    budget: w.total.clone(),
                },
            );
        };
        // READs go out in file order: first what lies between the window and this read (the
        // kernel's read-ahead arrives out of order, and servers that read a file as a stream,
        // like rclone's, pay for every jump back), within the budget; then what this read
        // needs, whatever the budget; then the window ahead, within it.
        let mut o = self.issued;
        while o < start && start - o <= self.window + NEAR {
            if w.total.load(Ordering::Relaxed) + w.chunk as usize > w.total_max {
                break;
            }
            if !self.chunks.contains_key(&o) {
                fetch_at(o, &mut self.chunks);
            }
            o += cs;
        }
        if o >= start {
            self.issued = self.issued.max(start);
        }
        for o in (start..needed_to).step_by(cs as usize) {
            if !self.chunks.contains_key(&o) {
                fetch_at(o, &mut self.chunks);
            }
        }
        let mut o = self.issued.max(needed_to);
        while o < ahead {
            if !self.chunks.contains_key(&o) {
                if w.total.load(Ordering::Relaxed) + w.chunk as usize > w.total_max {
                    break;
                }
                fetch_at(o, &mut self.chunks);
            }
            o += cs;
        }
        self.issued = self.issued.max(o);
        // A chunk this read covers whole leaves the window (the kernel keeps those pages):
        // out-of-order reads must not keep it until the front passes it.
        let offsets: Vec<u64> = self.chunks.range(start..end).map(|(&o, _)| o).collect();
        let planned = offsets
            .into_iter()
            .map(|o| {
                let whole = o >= off && o + cs <= end;
                let held = if whole { self.chunks.remove(&o) } else { None };
                let data = match &held {
                    Some(c) => c.data.clone(),
                    None => self.chunks[&o].data.clone(),
                };
                Planned {
                    offset: o,
                    data,
                    _held: held,
                }
            })
            .collect();
        Some(planned)
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
        assert_eq!(
            got.iter().map(|g| g.offset).collect::<Vec<_>>(),
            vec![0, 100]
        );
        // The window runs ahead, limited by the mount-wide budget of 1000 bytes.
        assert!(fetched.lock().unwrap().len() > 2);
        assert!(total.load(Ordering::Relaxed) <= 1000);
        let before = fetched.lock().unwrap().len();
        ra.plan(150, 150, &w, &f).unwrap();
        assert!(fetched.lock().unwrap().len() >= before);
        // The kernel's read-ahead may come a little out of order: still the same run.
        assert!(ra.plan(500, 100, &w, &f).is_some());
        assert!(ra.plan(400, 100, &w, &f).is_some());
        // A jump far away is not sequential: no plan, window dropped, budget returned once
        // the reads holding chunks are done with them.
        assert!(ra.plan(50_000_000, 100, &w, &f).is_none());
        assert_eq!(
            total.load(Ordering::Relaxed),
            100,
            "chunk 0, held by the first read"
        );
        drop(got);
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

    #[test]
    fn out_of_order_reads_stay_in_the_run_and_fetch_each_chunk_once() {
        const MIB: u64 = 1 << 20;
        let total = Arc::new(AtomicUsize::new(0));
        let fetched = Arc::new(Mutex::new(Vec::new()));
        let f = {
            let fetched = fetched.clone();
            move |o: u64, _l: u32| {
                fetched.lock().unwrap().push(o);
                async { Ok(Bytes::new()) }.boxed().shared()
            }
        };
        let w = Window {
            chunk: 256 * 1024,
            max: 8 * MIB,
            total: total.clone(),
            total_max: 16 << 20,
        };
        let mut ra = ReadAhead {
            size_hint: Some(64 * MIB),
            ..ReadAhead::default()
        };
        // The kernel's first read, then 1 MiB requests of a 4 MiB read-ahead, handed over
        // out of order.
        let mut order: Vec<u64> = vec![0];
        for group in (1..64).collect::<Vec<u64>>().chunks(4) {
            order.extend(group.iter().rev());
        }
        for i in order {
            assert!(
                ra.plan(i * MIB, MIB as u32, &w, &f).is_some(),
                "read at {i} MiB"
            );
            assert!(total.load(Ordering::Relaxed) <= w.total_max);
        }
        let mut offsets = fetched.lock().unwrap().clone();
        let n = offsets.len();
        offsets.sort();
        offsets.dedup();
        assert_eq!(offsets.len(), n, "a chunk was fetched twice");
        assert_eq!(n, 256, "the whole file, no more");
        // ...and asked for in file order, although the reads came out of order.
        assert_eq!(
            *fetched.lock().unwrap(),
            offsets,
            "a READ went out of order"
        );
    }
}
