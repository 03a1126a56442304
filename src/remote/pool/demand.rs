//! When the pool grows and when it shrinks. A mount starts with one connection, as sshfs's
//! does: at rest it costs the server one login and one connection. More open only while
//! parallel work needs them, and close again once they had nothing to do for `pool_idle`.
//!
//! The growth signal is file data in flight. One connection is one pipeline on the server
//! (sshd's cipher on one core, then sftp-server), and a single sequential transfer fills it: a
//! member with [`BUSY`] bytes of READs asked or WRITEs sent and not yet answered is busy. New
//! work (a file to open, metadata) goes to the first member that is not busy, so that work
//! gathers on few members and the others come to rest; when every live member is busy, it
//! goes to the least busy one and the pool grows by one member in the background (nobody
//! waits for a handshake). A long sequential read asks for another member for its second
//! handle ([`Pool::other`]): it gets a member that is not busy, or the pool grows and a later
//! read of the run takes the new one. So one `cat` of a big file makes two connections, two
//! copies at once three or four, an `ls` beside a copy gets a member of its own, and editing,
//! building or browsing stay on one.
//!
//! A member beyond the first rests when for `pool_idle` it sent no request, had none in
//! flight, and nothing held it: no open file's handle (its handles live on that connection),
//! no second handle of a read, no file fetched ahead, no operation under way. Then it is
//! closed. The first member stays: it is the mount's connection at rest (reconnected when
//! lost).
//!
//! A connection the server refuses while the pool grows (OpenSSH's `MaxStartups` or
//! `MaxSessions`, a per-user limit) is no error: the work goes on with the members there are,
//! the log says so once, `sftpfs status` shows when and why, and the pool tries to grow
//! again only after [`REFUSED_PAUSE`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{Conn, Pool};
use crate::remote::error::Result;
use crate::remote::stats::Refusal;

/// Bytes of file data in flight that make a member busy: the first window of one sequential
/// read, a few writes behind.
pub const BUSY: u64 = 1 << 20;

/// After a refusal, the pool does not try to grow for this long.
pub const REFUSED_PAUSE: Duration = Duration::from_secs(60);

/// How often members at rest are looked for: a quarter of `pool_idle`, within these bounds.
const LOOK_MIN: Duration = Duration::from_millis(250);
const LOOK_MAX: Duration = Duration::from_secs(15);

#[derive(Default)]
pub(super) struct Demand {
    /// The last refusal, and when (monotonic) it came.
    refusal: Mutex<Option<(Instant, Refusal)>>,
    closed_at_rest: AtomicU64,
    /// The watch over members at rest runs (only while the pool has more than one).
    watching: AtomicBool,
}

impl Demand {
    pub fn closed_at_rest(&self) -> u64 {
        self.closed_at_rest.load(Ordering::Relaxed)
    }

    pub fn refusal(&self) -> Option<Refusal> {
        self.refusal
            .lock()
            .unwrap()
            .as_ref()
            .map(|(_, r)| r.clone())
    }
}

/// Another member for a second handle of a long read.
pub enum Other {
    /// This one.
    Live(Arc<Conn>),
    /// None now; the pool is growing: ask again.
    Soon,
    /// None, and the pool cannot grow.
    Never,
}

impl Pool {
    /// A session for new work (metadata, or a file to pin to it): the first live member that
    /// is not busy; when all are, the least busy one, and the pool grows. Waits only when no
    /// member is live (reconnecting the first within the request deadline).
    pub async fn any(self: &Arc<Self>) -> Result<Arc<Conn>> {
        let pick = self.idle_or_least_busy(None);
        if let Ok(c) | Err(Some(c)) = &pick {
            if c.slot != 0 && self.live(0).is_none() {
                // The member kept at rest comes back, in the background.
                self.start(0);
            }
        }
        match pick {
            Ok(c) => Ok(c),
            Err(Some(c)) => {
                self.grow();
                Ok(c)
            }
            Err(None) => self.get(0).await,
        }
    }

    /// A live member other than `slot`, for a second handle of a long read (see [`Other`]).
    pub fn other(self: &Arc<Self>, slot: usize) -> Other {
        match self.idle_or_least_busy(Some(slot)) {
            Ok(c) => Other::Live(c),
            Err(_) if self.grow() => Other::Soon,
            Err(Some(c)) => Other::Live(c),
            Err(None) => Other::Never,
        }
    }

    /// The first live member (but `except`) that is not busy; else the least busy one, if
    /// any is live.
    fn idle_or_least_busy(
        &self,
        except: Option<usize>,
    ) -> std::result::Result<Arc<Conn>, Option<Arc<Conn>>> {
        let mut least: Option<(u64, Arc<Conn>)> = None;
        for slot in (0..self.slots.len()).filter(|&s| Some(s) != except) {
            let Some(c) = self.live(slot) else {
                continue;
            };
            let bulk = c.sftp.bulk_in_flight();
            if bulk < BUSY {
                return Ok(c);
            }
            if least.as_ref().is_none_or(|(b, _)| bulk < *b) {
                least = Some((bulk, c));
            }
        }
        Err(least.map(|(_, c)| c))
    }

    /// Connects one more member in the background, unless one is connecting already, every
    /// member is there, or the server refused one lately. True when one is on its way.
    fn grow(self: &Arc<Self>) -> bool {
        if self.slots.iter().any(|s| s.starting.load(Ordering::SeqCst)) {
            return true;
        }
        if self.dead.load(Ordering::SeqCst)
            || self.transport.needs_person()
            || self.refused_lately()
        {
            return false;
        }
        let free = (1..self.slots.len()).find(|&s| self.slots[s].current.read().unwrap().is_none());
        match free {
            Some(s) => {
                self.start(s);
                true
            }
            None => false,
        }
    }

    fn refused_lately(&self) -> bool {
        let r = self.demand.refusal.lock().unwrap();
        r.as_ref()
            .is_some_and(|(at, _)| at.elapsed() < REFUSED_PAUSE)
    }

    /// `slot` connected as the pool grew.
    pub(super) fn joined(self: &Arc<Self>, slot: usize, c: super::Conn) -> Arc<Conn> {
        let c = Arc::new(c);
        self.slots[slot].refused.store(false, Ordering::Relaxed);
        *self.slots[slot].current.write().unwrap() = Some(c.clone());
        let up = (0..self.slots.len())
            .filter(|&s| self.live(s).is_some())
            .count();
        tracing::debug!("pool member {slot} connected for parallel work ({up} up)");
        self.watch_rest();
        c
    }

    /// The server would not give `slot` a connection: said once in the log, always in status.
    pub(super) fn refused(&self, slot: usize, why: &str) {
        self.slots[slot].refused.store(true, Ordering::Relaxed);
        let mut r = self.demand.refusal.lock().unwrap();
        let count = r.as_ref().map_or(0, |(_, r)| r.count) + 1;
        let up = (0..self.slots.len())
            .filter(|&s| self.live(s).is_some())
            .count();
        if count == 1 {
            tracing::warn!(
                "the server refused another connection ({why}); it may limit connections \
                 (sshd's MaxStartups or MaxSessions, or one per user): running with fewer \
                 connections ({up} now)"
            );
        } else {
            tracing::debug!("another connection refused ({why}); {up} up");
        }
        *r = Some((
            Instant::now(),
            Refusal {
                at: SystemTime::now(),
                count,
                reason: why.to_string(),
            },
        ));
    }

    /// Watches the members beyond the first while there are any, and closes each once at
    /// rest. Holds the pool only weakly: it ends with the pool.
    fn watch_rest(self: &Arc<Self>) {
        if self.demand.watching.swap(true, Ordering::SeqCst) {
            return;
        }
        let pool = Arc::downgrade(self);
        let look = (self.opts.idle / 4).clamp(LOOK_MIN, LOOK_MAX);
        let n = self.slots.len();
        tokio::spawn(async move {
            let mut seen = vec![None; n];
            loop {
                tokio::time::sleep(look).await;
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                if pool.close_at_rest(&mut seen) {
                    continue;
                }
                pool.demand.watching.store(false, Ordering::SeqCst);
                // A member that joined meanwhile found the watch still on: keep it on.
                if !pool.has_extra() || pool.demand.watching.swap(true, Ordering::SeqCst) {
                    return;
                }
            }
        });
    }

    /// Whether a member beyond the first is connected or connecting.
    fn has_extra(&self) -> bool {
        self.slots[1..]
            .iter()
            .any(|s| s.starting.load(Ordering::SeqCst) || s.current.read().unwrap().is_some())
    }

    /// Closes the members beyond the first that are at rest, and drops those whose connection
    /// died with nothing holding them (nothing needs them reconnected). `seen` holds, per
    /// member, its request count when last looked at and since when it has not changed.
    /// Returns whether any member beyond the first is left.
    fn close_at_rest(&self, seen: &mut [Option<(u64, Instant)>]) -> bool {
        for (slot, s) in self.slots.iter().enumerate().skip(1) {
            let Some(c) = s.current.read().unwrap().clone() else {
                seen[slot] = None;
                continue;
            };
            let stats = c.sftp.stats();
            let quiet = match seen[slot] {
                Some((requests, since)) if requests == stats.requests && stats.in_flight == 0 => {
                    since.elapsed() >= self.opts.idle
                }
                _ => {
                    seen[slot] = Some((stats.requests, Instant::now()));
                    false
                }
            };
            let dead = !c.is_alive();
            drop(c);
            if dead && !self.opts.reconnect {
                // Nothing replaces a lost connection: the mount is dead (as `get` decides).
                self.dead.store(true, Ordering::SeqCst);
            }
            if !quiet && !dead {
                continue;
            }
            // Not while it is being reconnected (a file on it is being re-opened).
            let Ok(_connecting) = s.connecting.try_lock() else {
                continue;
            };
            let taken = {
                let mut current = s.current.write().unwrap();
                // Only the pool holds it: nobody can take it any more once it is out.
                if current.as_ref().is_some_and(|c| Arc::strong_count(c) == 1) {
                    current.take()
                } else {
                    None
                }
            };
            if let Some(c) = taken {
                self.retire(slot, &c);
                c.sftp.shutdown();
                seen[slot] = None;
                if !dead {
                    self.demand.closed_at_rest.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        "pool member {slot} closed after {:?} at rest",
                        self.opts.idle
                    );
                }
            }
        }
        self.has_extra()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    use super::Other;
    use crate::remote::testing::ChildTransport;
    use crate::remote::{Pool, PoolOptions};

    async fn pool(t: &Arc<ChildTransport>, idle: Duration) -> Arc<Pool> {
        let opts = PoolOptions {
            max_conns: 3,
            timeout: Duration::from_secs(10),
            reconnect: true,
            idle,
        };
        Pool::connect(t.clone(), opts).await.unwrap()
    }

    async fn until(what: &str, mut cond: impl FnMut() -> bool) {
        let end = tokio::time::Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(tokio::time::Instant::now() < end, "never: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_member_beyond_the_first_rests_once_nothing_holds_it() {
        let t = Arc::new(ChildTransport::default());
        let pool = pool(&t, Duration::from_millis(200)).await;
        assert_eq!(t.opened.load(Ordering::SeqCst), 1);
        // Asked for another member (a long read's second handle): the pool grows.
        assert!(matches!(pool.other(0), Other::Soon));
        until("a second member", || pool.live(1).is_some()).await;
        let Other::Live(held) = pool.other(0) else {
            panic!("no second member")
        };
        assert_eq!(held.slot, 1);
        // Held (an open file's handle lives on it): it stays, well past `idle`.
        held.sftp.realpath(b".").await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(pool.live(1).is_some(), "closed while held");
        assert_eq!(pool.status().closed_at_rest, 0);
        drop(held);
        until("the second member at rest", || pool.live(1).is_none()).await;
        until("its server gone", || t.live_children() == 1).await;
        let s = pool.status();
        assert_eq!((s.closed_at_rest, s.sessions_opened), (1, 2));
        // The first member stays, and new work goes there.
        assert_eq!(pool.any().await.unwrap().slot, 0);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(pool.live(0).is_some());
    }

    #[tokio::test]
    async fn a_refused_connection_leaves_the_pool_as_it_is_and_is_counted() {
        let t = Arc::new(ChildTransport::at_most(1));
        let pool = pool(&t, Duration::from_secs(60)).await;
        assert!(matches!(pool.other(0), Other::Soon));
        until("the refusal", || pool.status().refused.is_some()).await;
        let s = pool.status();
        assert_eq!(s.refused.as_ref().unwrap().count, 1);
        assert_eq!(s.members[1].state, crate::remote::MemberState::Refused);
        // No second try for a while: a long read does without its second handle.
        assert!(matches!(pool.other(0), Other::Never));
        assert_eq!(t.opened.load(Ordering::SeqCst), 1);
        let c = pool.any().await.unwrap();
        assert_eq!(c.slot, 0);
        c.sftp.realpath(b".").await.unwrap();
    }

    /// A request arriving for a member just as the watch closes it at rest (an open file's
    /// member, asked for by slot): it gets the member, or the member is connected again for it;
    /// it never fails or hangs. Phases vary around the moment of closing.
    #[tokio::test]
    async fn a_request_racing_the_close_at_rest_gets_a_session() {
        let t = Arc::new(ChildTransport::default());
        let pool = pool(&t, Duration::from_millis(100)).await;
        for round in 0..20u64 {
            if pool.live(1).is_none() {
                let _ = pool.other(0);
                until("a second member", || pool.live(1).is_some()).await;
            }
            // The watch looks every 250 ms: pauses from 0 to ~600 ms land before, at and after.
            tokio::time::sleep(Duration::from_millis(round * 31 % 600)).await;
            let (a, b) = tokio::join!(pool.get(1), pool.any());
            for c in [a, b] {
                let c = c.unwrap_or_else(|e| panic!("round {round}: {e}"));
                c.sftp.realpath(b".").await.unwrap();
            }
        }
        let s = pool.status();
        assert!(
            s.closed_at_rest >= 1,
            "never closed at rest: the race was not run"
        );
        // Every session beyond the first either lives in the pool or was closed: none leaks.
        until("only the first member left", || pool.live(1).is_none()).await;
        until("one server", || t.live_children() == 1).await;
        assert_eq!(pool.status().members[0].reconnects, 0);
    }
}
