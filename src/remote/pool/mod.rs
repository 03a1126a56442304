//! The connection pool: SFTP sessions, each over its own connection, replaced when one dies.
//! The only place that (re)connects. It starts with one member and grows while parallel work
//! needs more (`demand.rs`).

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::bounds::probe_wait;
use super::error::{RemoteError, Result};
use super::profile::Profile;
use super::sftp::Sftp;
use super::stats::{ConnStats, MemberState, MemberStatus, PoolStatus};
use super::transport::Transport;

mod demand;

pub use demand::Other;

/// One live SFTP session of the pool.
pub struct Conn {
    pub sftp: Sftp,
    pub slot: usize,
    /// Changes with every reconnect of the slot: handles from another generation are void.
    pub generation: u64,
    _keep_alive: Box<dyn Any + Send + Sync>,
}

impl Conn {
    pub fn is_alive(&self) -> bool {
        !self.sftp.is_closed()
    }
}

struct Slot {
    current: RwLock<Option<Arc<Conn>>>,
    /// A background connect of this member is under way.
    starting: AtomicBool,
    /// The server refused this member its connection when the pool grew.
    refused: AtomicBool,
    /// Held while (re)connecting, so a dead connection is replaced once, not by every waiter.
    connecting: tokio::sync::Mutex<()>,
    reconnects: AtomicU64,
    /// The counters of this member's sessions before the current one, summed.
    earlier: std::sync::Mutex<ConnStats>,
}

pub struct PoolOptions {
    pub max_conns: usize,
    /// Per-request deadline; also how long a request waits for a reconnect.
    pub timeout: Duration,
    pub reconnect: bool,
    /// How long a member beyond the first stays connected with nothing to do (`pool_idle`).
    pub idle: Duration,
}

pub struct Pool {
    transport: Arc<dyn Transport>,
    /// Shared with the watchers of the sessions (`watch_silence`).
    slots: Arc<Vec<Slot>>,
    opts: PoolOptions,
    generation: AtomicU64,
    /// When the last attempt to reconnect failed (any member: it is one server). Whoever
    /// waited behind it, or comes soon after, fails at once instead of waiting another
    /// deadline for the same answer.
    failed_at: std::sync::Mutex<Option<Instant>>,
    /// Without `reconnect`: a connection was lost, so the mount is dead, every member alike.
    dead: std::sync::atomic::AtomicBool,
    /// What the sessions learned of the server, shared by all of them.
    profile: std::sync::Mutex<Option<Arc<Profile>>>,
    /// Growth and rest: refusals, counts, the watch over members at rest.
    demand: demand::Demand,
    /// Sessions opened since the mount (the first, members added, reconnects).
    opened: AtomicU64,
}

const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// After a failed reconnect, requests fail at once for this long (at most half the deadline).
const COOL_DOWN: Duration = Duration::from_secs(5);

impl Pool {
    /// Connects the first member now (so the mount fails early on bad input); the others
    /// connect when parallel work needs them (`demand.rs`).
    pub async fn connect(
        transport: Arc<dyn Transport>,
        opts: PoolOptions,
    ) -> std::result::Result<Arc<Pool>, String> {
        let n = opts.max_conns.max(1);
        let pool = Pool {
            transport,
            slots: Arc::new(
                (0..n)
                    .map(|_| Slot {
                        current: RwLock::new(None),
                        refused: AtomicBool::new(false),
                        starting: AtomicBool::new(false),
                        connecting: tokio::sync::Mutex::new(()),
                        reconnects: AtomicU64::new(0),
                        earlier: Default::default(),
                    })
                    .collect(),
            ),
            opts,
            generation: AtomicU64::new(0),
            failed_at: std::sync::Mutex::new(None),
            dead: AtomicBool::new(false),
            profile: std::sync::Mutex::new(None),
            demand: demand::Demand::default(),
            opened: AtomicU64::new(0),
        };
        let first = pool.open_conn(0).await?;
        *pool.slots[0].current.write().unwrap() = Some(Arc::new(first));
        Ok(Arc::new(pool))
    }

    /// What the sessions learned of the server (after the first connected).
    pub fn profile(&self) -> Option<Arc<Profile>> {
        self.profile.lock().unwrap().clone()
    }

    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// Whether the connection is lost and logging in again needs a person.
    pub fn needs_person(&self) -> bool {
        self.transport.needs_person()
    }

    /// A person logs in again (`sftpfs reauth`); then the members reconnect at their next
    /// request, and open files are re-opened as after any reconnect.
    pub async fn reauth(
        &self,
        asker: Arc<dyn crate::ssh::Asker>,
    ) -> std::result::Result<(), String> {
        self.transport.reauth(asker).await?;
        *self.failed_at.lock().unwrap() = None;
        Ok(())
    }

    /// Each member's state and counters, and the pool's growth, for `sftpfs status`.
    pub fn status(&self) -> PoolStatus {
        let members = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let current = s.current.read().unwrap().clone();
                let busy = s.starting.load(Ordering::Relaxed) || s.connecting.try_lock().is_err();
                let state = match &current {
                    Some(c) if c.is_alive() => MemberState::Up,
                    _ if busy => MemberState::Connecting,
                    Some(_) => MemberState::Down,
                    None if s.refused.load(Ordering::Relaxed) => MemberState::Refused,
                    None => MemberState::Idle,
                };
                MemberStatus {
                    slot: i,
                    state,
                    current: current.map(|c| c.sftp.stats()),
                    earlier: s.earlier.lock().unwrap().clone(),
                    reconnects: s.reconnects.load(Ordering::Relaxed),
                }
            })
            .collect();
        PoolStatus {
            members,
            idle: self.opts.idle,
            sessions_opened: self.opened.load(Ordering::Relaxed),
            closed_at_rest: self.demand.closed_at_rest(),
            refused: self.demand.refusal(),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.opts.timeout
    }

    async fn open_conn(&self, slot: usize) -> std::result::Result<Conn, String> {
        let opened = self.transport.open().await?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        let mut sftp = Sftp::start_with(opened.stream, self.opts.timeout, opened.banner.as_deref())
            .await
            .map_err(|e| format!("SFTP session failed to start: {e}"))?;
        {
            let mut shared = self.profile.lock().unwrap();
            match &*shared {
                Some(p) if p.same_server(sftp.profile()) => sftp.adopt_profile(p),
                _ => {
                    // The first session, or another server answers after a reconnect.
                    tracing::info!("{}", sftp.profile().describe());
                    *shared = Some(sftp.profile().clone());
                }
            }
        }
        if self.opts.reconnect {
            self.watch_silence(&sftp);
        } else {
            // Nothing could replace it: a server that is only slow must not end the mount.
            sftp.never_declare_dead();
        }
        Ok(Conn {
            sftp,
            slot,
            generation: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
            _keep_alive: opened.keep_alive,
        })
    }

    /// When `sftp` is found silent, the other members talk to the same server: each is
    /// probed at once, not at the deadline of its own next request.
    fn watch_silence(&self, sftp: &Sftp) {
        let ended = sftp.ended();
        let slots = self.slots.clone();
        tokio::spawn(async move {
            if !ended.await {
                return;
            }
            for s in slots.iter() {
                if let Some(c) = s.current.read().unwrap().as_ref().filter(|c| c.is_alive()) {
                    c.sftp.suspect();
                }
            }
        });
    }

    /// Whether a member that was connected has lost its connection.
    fn any_lost(&self) -> bool {
        self.slots.iter().any(|s| {
            s.current
                .read()
                .unwrap()
                .as_ref()
                .is_some_and(|c| !c.is_alive())
        })
    }

    fn live(&self, slot: usize) -> Option<Arc<Conn>> {
        if self.dead.load(Ordering::SeqCst) {
            return None;
        }
        self.slots[slot]
            .current
            .read()
            .unwrap()
            .as_ref()
            .filter(|c| c.is_alive())
            .cloned()
    }

    /// The session of `slot`, reconnecting it (with backoff, within the request deadline)
    /// when it died. Without `reconnect`, a dead first member stays dead.
    pub async fn get(self: &Arc<Self>, slot: usize) -> Result<Arc<Conn>> {
        if !self.opts.reconnect && self.any_lost() {
            self.dead.store(true, Ordering::SeqCst);
        }
        if self.dead.load(Ordering::SeqCst) {
            return Err(RemoteError::ConnectionLost);
        }
        if let Some(c) = self.live(slot) {
            return Ok(c);
        }
        // One deadline for waiting and reconnecting: a request never waits more than that.
        let arrived = Instant::now();
        let deadline = arrived + self.patience(slot);
        let Ok(_g) = tokio::time::timeout_at(deadline, self.slots[slot].connecting.lock()).await
        else {
            return Err(RemoteError::ConnectionLost);
        };
        if let Some(c) = self.live(slot) {
            return Ok(c);
        }
        if self.recently_failed(arrived) {
            return Err(RemoteError::ConnectionLost);
        }
        let (had_one, broken) = match &*self.slots[slot].current.read().unwrap() {
            Some(c) => (true, c.sftp.broken_by_once()),
            None => (false, None),
        };
        // Said once per broken connection, here and not where the packet was read: at mount
        // time the same error is the mount's one-line failure.
        if let Some(e) = &broken {
            tracing::error!("pool member {slot}: {e}");
        }
        if had_one && !self.opts.reconnect {
            tracing::error!("connection lost and reconnect is off: every access fails from now on");
            self.dead.store(true, Ordering::SeqCst);
            return Err(RemoteError::ConnectionLost);
        }
        if !had_one && slot != 0 {
            // The pool grows by this member: one try; a refusal is no error (`demand.rs`).
            let opened = tokio::time::timeout_at(deadline, self.open_conn(slot)).await;
            return match opened {
                Ok(Ok(c)) => Ok(self.joined(slot, c)),
                Ok(Err(e)) => {
                    self.refused(slot, &e);
                    Err(RemoteError::ConnectionLost)
                }
                Err(_) => {
                    self.refused(slot, "no answer within the request deadline");
                    Err(RemoteError::ConnectionLost)
                }
            };
        }
        let mut delay = FIRST_RETRY;
        loop {
            match tokio::time::timeout_at(deadline, self.open_conn(slot)).await {
                Ok(Ok(c)) => {
                    if had_one {
                        tracing::warn!("reconnected (pool member {slot})");
                    }
                    // The server answers again: nobody need fail fast any more.
                    *self.failed_at.lock().unwrap() = None;
                    let c = Arc::new(c);
                    let old = self.slots[slot].current.write().unwrap().replace(c.clone());
                    if let Some(old) = old {
                        self.retire(slot, &old);
                        self.slots[slot].reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(c);
                }
                Ok(Err(e)) => {
                    tracing::warn!("reconnect of pool member {slot} failed: {e}");
                    if self.transport.needs_person() {
                        // Trying again cannot help until someone logs in: fail fast.
                        *self.failed_at.lock().unwrap() = Some(Instant::now());
                        return Err(RemoteError::ConnectionLost);
                    }
                }
                Err(_) => {}
            }
            if Instant::now() + delay >= deadline {
                *self.failed_at.lock().unwrap() = Some(Instant::now());
                return Err(RemoteError::ConnectionLost);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY);
        }
    }

    /// How long a request waits for `slot` to be (re)connected: its deadline, or only a
    /// probe's wait once the server was found not answering at all (its last session went
    /// silent): a server that answers nothing is not waited for a whole deadline per request.
    fn patience(&self, slot: usize) -> Duration {
        let silent = self.slots[slot]
            .current
            .read()
            .unwrap()
            .as_ref()
            .is_some_and(|c| c.sftp.went_silent());
        if silent {
            probe_wait(self.opts.timeout).min(self.opts.timeout)
        } else {
            self.opts.timeout
        }
    }

    /// Whether a (re)connect of `slot` failed after `since`, or so recently that trying
    /// again now would only make the caller wait another deadline for the same answer.
    /// After the cool-down the next request tries again, so the mount recovers on its own.
    fn recently_failed(&self, since: Instant) -> bool {
        let cool_down = (self.opts.timeout / 2).min(COOL_DOWN);
        self.failed_at
            .lock()
            .unwrap()
            .is_some_and(|t| t > since || t.elapsed() < cool_down)
    }

    /// The session of `slot`, or, when that member cannot be had, any live one (an open
    /// file being re-opened may move).
    pub async fn get_or_live(self: &Arc<Self>, slot: usize) -> Result<Arc<Conn>> {
        match self.get(slot).await {
            Ok(c) => Ok(c),
            Err(e) => (0..self.slots.len()).find_map(|s| self.live(s)).ok_or(e),
        }
    }

    /// (Re)connects `slot` in the background, once at a time.
    fn start(self: &Arc<Self>, slot: usize) {
        let s = &self.slots[slot];
        if self.dead.load(Ordering::SeqCst) || s.starting.swap(true, Ordering::SeqCst) {
            return;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            let _ = pool.get(slot).await;
            pool.slots[slot].starting.store(false, Ordering::SeqCst);
        });
    }

    /// Folds the counters of `slot`'s session `old`, which leaves the pool, into the
    /// member's totals.
    fn retire(&self, slot: usize, old: &Conn) {
        let s = old.sftp.stats();
        let mut e = self.slots[slot].earlier.lock().unwrap();
        *e = ConnStats {
            in_flight: 0,
            rtt: None,
            ..e.plus(&s)
        };
    }

    /// Ends every session (at unmount).
    pub fn shutdown(&self) {
        for s in self.slots.iter() {
            if let Some(c) = s.current.read().unwrap().as_ref() {
                c.sftp.shutdown();
            }
        }
    }
}
