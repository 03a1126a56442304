//! The connection pool: several SFTP sessions, each over its own connection, replaced when
//! one dies. The only place that (re)connects.

use std::any::Any;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::bounds::probe_wait;
use super::error::{RemoteError, Result};
use super::profile::Profile;
use super::sftp::Sftp;
use super::stats::{ConnStats, MemberState, MemberStatus};
use super::transport::Transport;

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
    starting: std::sync::atomic::AtomicBool,
    /// An extra member that could not be connected at all (e.g. the server limits
    /// sessions): its work goes to the first member.
    disabled: std::sync::atomic::AtomicBool,
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
}

pub struct Pool {
    transport: Arc<dyn Transport>,
    /// Shared with the watchers of the sessions (`watch_silence`).
    slots: Arc<Vec<Slot>>,
    opts: PoolOptions,
    generation: AtomicU64,
    next: AtomicUsize,
    /// When the last attempt to reconnect failed (any member: it is one server). Whoever
    /// waited behind it, or comes soon after, fails at once instead of waiting another
    /// deadline for the same answer.
    failed_at: std::sync::Mutex<Option<Instant>>,
    /// Without `reconnect`: a connection was lost, so the mount is dead, every member alike.
    dead: std::sync::atomic::AtomicBool,
    /// What the sessions learned of the server, shared by all of them.
    profile: std::sync::Mutex<Option<Arc<Profile>>>,
    /// The log said that the pool runs with fewer connections.
    fewer_said: std::sync::atomic::AtomicBool,
}

const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// After a failed reconnect, requests fail at once for this long (at most half the deadline).
const COOL_DOWN: Duration = Duration::from_secs(5);

impl Pool {
    /// Connects the first member now (so the mount fails early on bad input); the others
    /// connect on first use.
    pub async fn connect(
        transport: Arc<dyn Transport>,
        opts: PoolOptions,
    ) -> std::result::Result<Pool, String> {
        let n = opts.max_conns.max(1);
        let pool = Pool {
            transport,
            slots: Arc::new(
                (0..n)
                    .map(|_| Slot {
                        current: RwLock::new(None),
                        disabled: std::sync::atomic::AtomicBool::new(false),
                        starting: std::sync::atomic::AtomicBool::new(false),
                        connecting: tokio::sync::Mutex::new(()),
                        reconnects: AtomicU64::new(0),
                        earlier: Default::default(),
                    })
                    .collect(),
            ),
            opts,
            generation: AtomicU64::new(0),
            next: AtomicUsize::new(0),
            failed_at: std::sync::Mutex::new(None),
            dead: std::sync::atomic::AtomicBool::new(false),
            profile: std::sync::Mutex::new(None),
            fewer_said: std::sync::atomic::AtomicBool::new(false),
        };
        let first = pool.open_conn(0).await?;
        *pool.slots[0].current.write().unwrap() = Some(Arc::new(first));
        Ok(pool)
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

    /// Each member's state and counters, for `sftpfs status`.
    pub fn status(&self) -> Vec<MemberStatus> {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let current = s.current.read().unwrap().clone();
                let busy = s.starting.load(Ordering::Relaxed) || s.connecting.try_lock().is_err();
                let state = match &current {
                    _ if s.disabled.load(Ordering::Relaxed) => MemberState::Disabled,
                    Some(c) if c.is_alive() => MemberState::Up,
                    _ if busy => MemberState::Connecting,
                    Some(_) => MemberState::Down,
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
            .collect()
    }

    pub fn timeout(&self) -> Duration {
        self.opts.timeout
    }

    async fn open_conn(&self, slot: usize) -> std::result::Result<Conn, String> {
        let opened = self.transport.open().await?;
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

    /// A live member other than `slot`, if there is one (nothing is connected for it).
    pub fn live_other(&self, slot: usize) -> Option<Arc<Conn>> {
        let n = self.slots.len();
        (1..n).map(|i| (slot + i) % n).find_map(|s| self.live(s))
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
    pub async fn get(&self, slot: usize) -> Result<Arc<Conn>> {
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
            // A first connection of an extra member: one try, then do without it.
            return match self.open_conn(slot).await {
                Ok(c) => {
                    let c = Arc::new(c);
                    *self.slots[slot].current.write().unwrap() = Some(c.clone());
                    Ok(c)
                }
                Err(e) => {
                    // Once: a server that allows one connection per user refuses them all.
                    if !self.fewer_said.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "another connection to the server failed ({e}); the server may \
                             allow fewer per user: running with fewer connections"
                        );
                    }
                    self.slots[slot].disabled.store(true, Ordering::Relaxed);
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
                        let s = old.sftp.stats();
                        let mut e = self.slots[slot].earlier.lock().unwrap();
                        *e = ConnStats {
                            in_flight: 0,
                            rtt: None,
                            ..e.plus(&s)
                        };
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
    pub async fn get_or_live(&self, slot: usize) -> Result<Arc<Conn>> {
        match self.get(slot).await {
            Ok(c) => Ok(c),
            Err(e) => (0..self.slots.len()).find_map(|s| self.live(s)).ok_or(e),
        }
    }

    /// A session for new work (metadata, or a file to pin to it), spread round-robin over
    /// the members that are live; the others are (re)connected in the background, so no
    /// request waits for an SSH handshake while another member can serve it.
    pub async fn any(self: &Arc<Self>) -> Result<Arc<Conn>> {
        for _ in 0..self.slots.len() {
            let slot = self.pick();
            if let Some(c) = self.live(slot) {
                return Ok(c);
            }
            self.start(slot);
        }
        // Nothing live: wait for the first member (reconnecting it within the deadline).
        self.get(0).await
    }

    /// Connects every member in the background (after mounting).
    pub fn warm_up(self: &Arc<Self>) {
        for slot in 1..self.slots.len() {
            self.start(slot);
        }
    }

    /// (Re)connects `slot` in the background, once at a time.
    fn start(self: &Arc<Self>, slot: usize) {
        let s = &self.slots[slot];
        if s.disabled.load(Ordering::Relaxed)
            || self.dead.load(Ordering::SeqCst)
            || s.starting.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            let _ = pool.get(slot).await;
            pool.slots[slot].starting.store(false, Ordering::SeqCst);
        });
    }

    fn pick(&self) -> usize {
        let n = self.slots.len();
        for _ in 0..n {
            let s = self.next.fetch_add(1, Ordering::Relaxed) % n;
            if !self.slots[s].disabled.load(Ordering::Relaxed) {
                return s;
            }
        }
        0
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
