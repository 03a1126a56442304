//! Sending the queue: the dispatcher takes what may go (`order.rs`) and sends it, a file's
//! writes and attribute changes on its handle in journal order, the rest from tasks of
//! their own. A lost connection is not a failure of what was queued: the operation is sent
//! again on a new one (a file re-opened, with what it had unanswered), and while the server
//! cannot be reached at all the queue waits, probed with backoff, and drains by itself once
//! it answers again. Sent again after a lost answer (or at replay), an operation that the
//! server already did is recognised as done (a directory there, a name gone, a rename made).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::join;
use futures::FutureExt;

use super::record::Base;
use super::{JFile, Op, Picked, Unreported};
use crate::fs::names::inode::{parent_of, RelPath};
use crate::fs::{Filesystem, FsError};
use crate::remote::protocol::*;
use crate::remote::{Attrs, Conn, Handle, RemoteError};

/// The server is probed this often at first while it cannot be reached, then less.
const PROBE_FIRST: Duration = Duration::from_secs(1);
const PROBE_MAX: Duration = Duration::from_secs(30);
/// A removal, or a rename over a name, based on what the server said longer ago than this
/// (its listing, or its wait in the queue) checks first that the server's file is still the
/// one the mount saw. Younger, it is sent as it is: `rm -rf` lists each directory just
/// before removing its files, and one LSTAT more for each would cost it a round trip per
/// file (7.09× sshfs at 40 ms RTT instead of 11.6×, see bench/RESULTS.md). After the server
/// was away, or at replay, someone may have changed it meanwhile.
const STALE_BASE: Duration = Duration::from_secs(10);

/// How an operation ended, when the server did not refuse it.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
    Sent,
    /// It was done already (its answer was lost, or replay found it there).
    AlreadyThere,
    /// Its target changed on the server: this mount's version went to this name (or, for
    /// a removal, the server's file was left alone).
    Conflict(Option<RelPath>),
    /// Nothing to send (a write answered before the restart, its file not diverted).
    Skipped,
}

type Sent = Result<Outcome, RemoteError>;

impl Filesystem {
    /// Sends what may go, until the journal closes.
    pub(super) async fn dispatch(self: Arc<Self>) {
        let j = self.journal().expect("asynchronous mode");
        loop {
            let notified = j.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if j.closed.load(Ordering::SeqCst) {
                return;
            }
            for p in j.pick() {
                self.start(p);
            }
            notified.await;
        }
    }

    /// Sends one operation. A file's writes and attribute changes are put on the wire here,
    /// in journal order (they share its handle); the rest go from their own tasks.
    fn start(self: &Arc<Self>, p: Picked) {
        let fs = self.clone();
        if p.unreadable {
            let e = RemoteError::Protocol("the journal lost this write's data".into());
            fs.finished(&p, Err(e));
            return;
        }
        if let (Some(f), true) = (&p.file, p.op.on_handle()) {
            let diverted = f.diverted.lock().unwrap().is_some();
            if f.failed() || (p.only_if_diverted && !diverted) {
                fs.finished(&p, Ok(Outcome::Skipped));
                return;
            }
            let Some((conn, h)) = f.handle.lock().unwrap().clone() else {
                let e = RemoteError::Status {
                    code: SSH_FX_FAILURE,
                    message: "the file was never opened on the server".into(),
                };
                fs.finished(&p, Err(e));
                return;
            };
            // Kept, with its bytes, until answered: a new connection gets it again.
            let bytes = self.journal().and_then(|j| j.take_bytes(p.key));
            f.sent.lock().unwrap().insert(p.key, (p.op.clone(), bytes));
            let sent = send_on(&conn, &h, &p.op);
            let f = f.clone();
            tokio::spawn(async move {
                let mut r = sent.await;
                let mut tries = 0;
                while let Err(e) = &r {
                    if !e.is_connection() {
                        break;
                    }
                    tries += 1;
                    if tries > 1 && !fs.wait_for_server(e).await {
                        return;
                    }
                    r = fs.send_again(&f, &conn, p.key, &p.op).await;
                }
                f.sent.lock().unwrap().remove(&p.key);
                fs.finished(&p, r.map(|()| Outcome::Sent));
            });
            return;
        }
        tokio::spawn(async move {
            let r = fs.run(&p).await;
            if let Some(r) = r {
                fs.finished(&p, r);
            }
        });
    }

    /// An operation's answer: a failure is logged, counted and kept for the next fsync (and
    /// the file's own flush); the caches forget what it would have made true.
    fn finished(&self, p: &Picked, r: Sent) {
        let j = self.journal().expect("asynchronous mode");
        let err = match &r {
            Ok(_) => None,
            Err(e) => {
                let errno = FsError::from(e.clone()).errno;
                tracing::warn!(
                    "queued {} of {} failed: {e}",
                    p.op.name(),
                    String::from_utf8_lossy(&p.path)
                );
                self.errors_seen.note(crate::fs::errors_seen::SeenError {
                    at: std::time::SystemTime::now(),
                    op: p.op.name(),
                    path: p.path.clone(),
                    errno,
                });
                if let Some(f) = &p.file {
                    self.inodes.lock().unwrap().note_write_failed(f.ino);
                    f.fail(errno);
                }
                self.cache.invalidate(&p.path);
                self.cache.drop_listing(parent_of(&p.path));
                Some(Unreported {
                    op: p.op.name(),
                    path: p.path.clone(),
                    errno,
                    kept_as: None,
                })
            }
        };
        if p.replayed {
            j.replayed(p, &r);
        }
        j.finish(p.key, err);
    }

    /// Waits until the server answers again after `e` (a connection lost and not made
    /// again); false if the journal closed meanwhile (the operation stays in it).
    pub(super) async fn wait_for_server(self: &Arc<Self>, e: &RemoteError) -> bool {
        let j = self.journal().expect("asynchronous mode");
        self.server_away(e);
        loop {
            let notified = j.online.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if j.closed.load(Ordering::SeqCst) {
                return false;
            }
            if j.state.lock().unwrap().offline.is_none() {
                return true;
            }
            notified.await;
        }
    }

    /// The server cannot be reached (`e`): the journal keeps what is queued, the caches keep
    /// what they hold (answers come from them meanwhile, see `meta/offline.rs`), and a probe
    /// asks until it answers. Nothing in synchronous mode, where every change needs it.
    pub(in crate::fs) fn server_away(self: &Arc<Self>, e: &RemoteError) {
        let Some(j) = self.journal() else {
            return;
        };
        {
            let mut s = j.state.lock().unwrap();
            if s.offline.is_some() {
                return;
            }
            tracing::warn!(
                "the server cannot be reached ({e}): {} queued operations wait in the \
                 journal and are sent once it answers",
                s.ops.len()
            );
            s.offline = Some((SystemTime::now(), e.to_string()));
            s.last_error = Some(format!("server unreachable: {e}"));
            self.cache.set_away(true);
            let fs = self.clone();
            tokio::spawn(async move { fs.probe_until_back().await });
        }
        // Those settling fail now rather than wait for the server.
        j.done.notify_waiters();
    }

    /// Whether the server is away (see `server_away`).
    pub(in crate::fs) fn away(&self) -> bool {
        self.journal().is_some_and(|j| j.offline())
    }

    /// Asks the server, with backoff, until it answers; then what waits for it goes.
    async fn probe_until_back(self: Arc<Self>) {
        let j = self.journal().expect("asynchronous mode");
        let mut delay = PROBE_FIRST;
        loop {
            tokio::time::sleep(delay).await;
            if j.closed.load(Ordering::SeqCst) {
                return;
            }
            let root = self.remote(b"");
            let answered = match self.pool.any().await {
                Ok(c) => c.sftp.lstat(&root).await.map(|_| ()),
                Err(e) => Err(e),
            };
            match answered {
                Ok(()) => break,
                Err(e) => tracing::debug!("the server is still away: {e}"),
            }
            delay = (delay * 2).min(PROBE_MAX);
        }
        let waiting = {
            let mut s = j.state.lock().unwrap();
            s.offline = None;
            self.cache.set_away(false);
            s.ops.len()
        };
        tracing::warn!("the server answers again: sending the {waiting} queued operations");
        j.online.notify_waiters();
        j.wake.notify_one();
    }

    /// Runs an operation that does not go on a file's handle. `None` if the journal closed
    /// while it waited for the server (it stays in the journal).
    async fn run(self: &Arc<Self>, p: &Picked) -> Option<Sent> {
        match (&p.op, &p.file) {
            (Op::Open { pflags, attrs }, Some(f)) => self.run_open(p, f, *pflags, attrs).await,
            (
                Op::Resume {
                    done_end,
                    total_end,
                },
                Some(f),
            ) => self.run_resume(p, f, *done_end, *total_end).await,
            (Op::Close, Some(f)) => self.run_close(p, f).await,
            _ => self.run_by_name(p).await,
        }
    }

    /// A live connection for new work, waiting for the server while it cannot be reached;
    /// `None` once the journal closed.
    async fn conn(self: &Arc<Self>) -> Option<Arc<Conn>> {
        loop {
            match self.pool.any().await {
                Ok(c) => return Some(c),
                Err(e) => {
                    if !self.wait_for_server(&e).await {
                        return None;
                    }
                }
            }
        }
    }

    async fn run_close(self: &Arc<Self>, p: &Picked, f: &Arc<JFile>) -> Option<Sent> {
        // Its writes were all answered (a CLOSE waits for them): what the server holds is
        // what it will keep. Its name there is the one it had when its CLOSE was queued
        // (what came later on that name waits for the CLOSE).
        let verify = f.verify.lock().unwrap().take();
        let handle = f.handle.lock().unwrap().clone();
        let checked = match (verify, handle) {
            (Some(q), Some(h)) => {
                let path = self.diverted_path(&p.path, p.seq);
                self.verify_queued(f.ino, path, h, q).await
            }
            _ => Ok(()),
        };
        let mut tries = 0;
        loop {
            let Some((c, h)) = f.handle.lock().unwrap().clone() else {
                return Some(Ok(Outcome::Sent));
            };
            let r = match c.sftp.close(&h).await {
                // Re-opened on a new connection (what was unanswered sent again), then
                // closed there.
                Err(e) if e.is_connection() => match self.remake(f, &c).await {
                    Ok(()) => {
                        let (c, h) = f.handle.lock().unwrap().clone().expect("recovered");
                        c.sftp.close(&h).await
                    }
                    Err(e) => Err(e),
                },
                r => r,
            };
            match r {
                Err(e) if e.is_connection() => {
                    tries += 1;
                    if tries > 1 && !self.wait_for_server(&e).await {
                        return None;
                    }
                }
                r => return Some(r.and(checked.clone()).map(|()| Outcome::Sent)),
            }
        }
    }

    /// Mkdir, removals, renames and attribute changes by name.
    async fn run_by_name(self: &Arc<Self>, p: &Picked) -> Option<Sent> {
        let from = self.diverted_path(&p.path, p.seq);
        let to = match &p.op {
            Op::Rename(to) => Some(self.diverted_path(to, p.seq)),
            _ => None,
        };
        let mut again = p.replayed;
        let mut tries = 0;
        loop {
            let c = self.conn().await?;
            let r = match self.check_base(&c, p, &from, to.as_deref(), again).await {
                Ok(Some(done)) => return Some(Ok(done)),
                Ok(None) => self.send_by_name(&c, &p.op, &from, to.as_deref()).await,
                Err(e) => Err(e),
            };
            match r {
                Err(e) if e.is_connection() => {
                    tries += 1;
                    if tries > 1 && !self.wait_for_server(&e).await {
                        return None;
                    }
                    // The first attempt may have done it before its answer was lost.
                    again = true;
                    tracing::debug!("queued {}: connection lost ({e}); once more", p.op.name());
                }
                Err(e) if again && self.took_effect(&c, &p.op, &from, to.as_deref()).await => {
                    tracing::debug!("queued {} of {}: done already ({e})", p.op.name(), {
                        String::from_utf8_lossy(&p.path)
                    });
                    return Some(Ok(Outcome::AlreadyThere));
                }
                r => return Some(r.map(|()| Outcome::Sent)),
            }
        }
    }

    async fn send_by_name(
        &self,
        c: &Conn,
        op: &Op,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> Result<(), RemoteError> {
        let r = self.remote(from);
        match op {
            Op::Mkdir(a) => c.sftp.mkdir(&r, a).await,
            Op::Remove => c.sftp.remove(&r).await,
            Op::Rmdir => c.sftp.rmdir(&r).await,
            Op::Rename(_) => {
                let to = to.expect("a rename's target");
                c.sftp.posix_rename(&r, &self.remote(to)).await
            }
            Op::SetStat(a) => c.sftp.setstat(&r, a).await,
            _ => Ok(()),
        }
    }

    /// Before a rename over a name or a removal that waited (or is sent again): whether the
    /// server's file is still what the mount based the operation on. `Some(outcome)` when the
    /// operation must not be sent as it is (done already, or a conflict dealt with).
    async fn check_base(
        self: &Arc<Self>,
        c: &Conn,
        p: &Picked,
        from: &[u8],
        to: Option<&[u8]>,
        again: bool,
    ) -> Result<Option<Outcome>, RemoteError> {
        let waited = again
            || p.queued.elapsed().unwrap_or_default() > STALE_BASE
            || p.seen.is_none_or(|t| t.elapsed() > STALE_BASE);
        match (&p.op, p.base) {
            (Op::Rename(_), base @ (Base::Absent | Base::Seen { .. })) if waited => {
                let to = to.expect("a rename's target");
                if again
                    && lstat_opt(c, &self.remote(from)).await?.is_none()
                    && lstat_opt(c, &self.remote(to)).await?.is_some()
                {
                    return Ok(Some(Outcome::AlreadyThere));
                }
                let now = lstat_opt(c, &self.remote(to)).await?;
                if matches_base(base, now.as_ref()) {
                    return Ok(None);
                }
                // The target is someone else's now: ours goes beside it.
                let kept = self.free_conflict_name(c, to).await?;
                c.sftp
                    .posix_rename(&self.remote(from), &self.remote(&kept))
                    .await?;
                self.record_conflict(p, to, Some(&kept));
                Ok(Some(Outcome::Conflict(Some(kept))))
            }
            (Op::Remove, base @ Base::Seen { .. }) if waited => {
                let now = lstat_opt(c, &self.remote(from)).await?;
                if now.is_none() {
                    return Ok(Some(Outcome::AlreadyThere));
                }
                if matches_base(base, now.as_ref()) {
                    return Ok(None);
                }
                self.record_conflict(p, from, None);
                Ok(Some(Outcome::Conflict(None)))
            }
            _ => Ok(None),
        }
    }

    /// After a lost answer: whether `op` on `path` is done on the server.
    async fn took_effect(&self, c: &Conn, op: &Op, path: &[u8], to: Option<&[u8]>) -> bool {
        let st = |p: &[u8]| {
            let r = self.remote(p);
            async move { c.sftp.lstat(&r).await.ok() }
        };
        match op {
            Op::Mkdir(_) => st(path).await.is_some_and(|a| a.is_dir()),
            Op::Remove | Op::Rmdir => st(path).await.is_none(),
            Op::Rename(_) => {
                st(path).await.is_none() && st(to.expect("a rename's target")).await.is_some()
            }
            _ => false,
        }
    }

    /// The file's OPEN (with an LSTAT to learn the owner new files get). The name must be
    /// free (O_EXCL): the mount thought it was, and a file there now is someone else's,
    /// unless replay finds it holds nothing but what this mount wrote.
    async fn run_open(
        self: &Arc<Self>,
        p: &Picked,
        f: &Arc<JFile>,
        pflags: u32,
        attrs: &Attrs,
    ) -> Option<Sent> {
        let path = self.diverted_path(&p.path, p.seq);
        let first = (pflags | SSH_FXF_EXCL) & !SSH_FXF_TRUNC;
        let mut flags = first;
        let mut tries = 0;
        loop {
            let c = self.conn().await?;
            let r = self.remote(&path);
            let (h, st) = join(c.sftp.open(&r, flags, attrs), c.sftp.lstat(&r)).await;
            match h {
                Ok(h) => {
                    if let (
                        Ok(Attrs {
                            uid_gid: Some(o), ..
                        }),
                        Some(j),
                    ) = (st, self.journal())
                    {
                        j.learn_owner(o);
                    }
                    f.readable
                        .store(flags & SSH_FXF_READ != 0, Ordering::SeqCst);
                    *f.handle.lock().unwrap() = Some((c, h));
                    if path != p.path {
                        *f.diverted.lock().unwrap() = Some(path.clone());
                    }
                    return Some(Ok(Outcome::Sent));
                }
                Err(e) if e.is_connection() => {
                    tries += 1;
                    if tries > 1 && !self.wait_for_server(&e).await {
                        return None;
                    }
                    // Once more on a new connection; made by the first try, it is ours to
                    // truncate, not to refuse.
                    tracing::debug!("queued create: connection lost ({e}); once more");
                    flags = f.create_again;
                }
                Err(e) if flags == first && (e.is_failure() || e.errno() == libc::EEXIST) => {
                    let there = match lstat_opt(&c, &r).await {
                        Ok(a) => a,
                        Err(e) if e.is_connection() => continue,
                        Err(e) => return Some(Err(e)),
                    };
                    let Some(there) = there else {
                        return Some(Err(e));
                    };
                    if there.is_dir() {
                        return Some(Err(e));
                    }
                    if p.replayed && self.holds_only_ours(&c, &r, &there, f).await {
                        // Its answer was lost before the restart: ours, written again.
                        flags = f.create_again;
                        continue;
                    }
                    return Some(self.divert_file(p, f, &c, &path, attrs).await);
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Replay: a file whose OPEN was answered before the restart is opened again for the
    /// rest of its operations, if the server's file is as its answered writes left it.
    async fn run_resume(
        self: &Arc<Self>,
        p: &Picked,
        f: &Arc<JFile>,
        done_end: u64,
        total_end: u64,
    ) -> Option<Sent> {
        let path = self.diverted_path(&p.path, p.seq);
        loop {
            let c = self.conn().await?;
            let r = self.remote(&path);
            let there = match lstat_opt(&c, &r).await {
                Ok(a) => a,
                Err(e) if e.is_connection() => {
                    if !self.wait_for_server(&e).await {
                        return None;
                    }
                    continue;
                }
                Err(e) => return Some(Err(e)),
            };
            let size = there.as_ref().filter(|a| !a.is_dir()).and_then(|a| a.size);
            match size {
                Some(s) if done_end <= s && s <= total_end.max(done_end) => {
                    match c.sftp.open(&r, SSH_FXF_WRITE, &Attrs::default()).await {
                        Ok(h) => {
                            *f.handle.lock().unwrap() = Some((c, h));
                            if path != p.path {
                                *f.diverted.lock().unwrap() = Some(path.clone());
                            }
                            tracing::info!(
                                "resuming {} at {} of {} bytes",
                                String::from_utf8_lossy(&path),
                                done_end,
                                total_end
                            );
                            return Some(Ok(Outcome::Sent));
                        }
                        Err(e) if e.is_connection() => continue,
                        Err(e) => return Some(Err(e)),
                    }
                }
                _ => {
                    tracing::warn!(
                        "{} on the server is not what this mount left of it ({} bytes, not \
                         {done_end}..{total_end}): someone else changed it",
                        String::from_utf8_lossy(&path),
                        size.map_or("no file".into(), |s| s.to_string())
                    );
                    return Some(self.divert_file(p, f, &c, &path, &Attrs::default()).await);
                }
            }
        }
    }

    /// `f` conflicts with what the server has at `path`: it is created under a conflict
    /// name instead, where all its operations go.
    async fn divert_file(
        self: &Arc<Self>,
        p: &Picked,
        f: &Arc<JFile>,
        c: &Arc<Conn>,
        path: &[u8],
        attrs: &Attrs,
    ) -> Sent {
        let kept = self.free_conflict_name(c, path).await?;
        let flags = SSH_FXF_WRITE | SSH_FXF_CREAT | SSH_FXF_EXCL;
        let h = c.sftp.open(&self.remote(&kept), flags, attrs).await?;
        *f.handle.lock().unwrap() = Some((c.clone(), h));
        f.readable.store(false, Ordering::SeqCst);
        *f.diverted.lock().unwrap() = Some(kept.clone());
        self.record_conflict(p, path, Some(&kept));
        Ok(Outcome::Conflict(Some(kept)))
    }

    /// Request `key` (`op`) of `f` died with connection `failed`: the file is re-opened on a
    /// new one (once, by whoever comes first), and the request sent again there unless that
    /// re-open already did.
    async fn send_again(
        &self,
        f: &Arc<JFile>,
        failed: &Arc<Conn>,
        key: u64,
        op: &Op,
    ) -> Result<(), RemoteError> {
        self.remake(f, failed).await?;
        if key <= f.replayed_upto.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (c, h) = f.handle.lock().unwrap().clone().expect("re-opened");
        send_on(&c, &h, op).await
    }

    /// Re-opens `f` on a new connection after `failed` died, and sends again, in order,
    /// every request of it not answered yet (those answered are in the server's file).
    pub(in crate::fs) async fn remake(
        &self,
        f: &Arc<JFile>,
        failed: &Arc<Conn>,
    ) -> Result<(), RemoteError> {
        let _g = f.recovering.lock().await;
        if let Some((c, _)) = f.handle.lock().unwrap().as_ref() {
            if !Arc::ptr_eq(c, failed) && c.is_alive() {
                return Ok(());
            }
        }
        let diverted = f.diverted.lock().unwrap().clone();
        // A file whose name is gone cannot be opened again (SFTP has only paths); its old
        // name may be another file's by now.
        let path = match diverted {
            Some(p) => Some(p),
            None if f.from_replay => Some(f.path()),
            None => self.inodes.lock().unwrap().path(f.ino),
        };
        let Some(path) = path else {
            return Err(RemoteError::Status {
                code: SSH_FX_NO_SUCH_FILE,
                message: "the file's name was removed while it was open".into(),
            });
        };
        let c = self.pool.get_or_live(failed.slot).await?;
        let r = self.remote(&path);
        let h = c.sftp.open(&r, SSH_FXF_WRITE, &Attrs::default()).await?;
        let replay: Vec<_> = {
            let sent = f.sent.lock().unwrap();
            if let Some((&last, _)) = sent.iter().next_back() {
                f.replayed_upto.store(last, Ordering::SeqCst);
            }
            sent.values().map(|(op, _)| send_on(&c, &h, op)).collect()
        };
        f.readable.store(false, Ordering::SeqCst);
        *f.handle.lock().unwrap() = Some((c, h));
        tracing::info!(
            "re-made {} on a new connection, replaying {} requests",
            String::from_utf8_lossy(&path),
            replay.len()
        );
        for r in futures::future::join_all(replay).await {
            r?;
        }
        Ok(())
    }
}

/// Whether the server's `now` is what `base` says the mount saw.
fn matches_base(base: Base, now: Option<&Attrs>) -> bool {
    match (base, now) {
        (Base::Unchecked, _) => true,
        (Base::Absent, None) => true,
        (Base::Seen { size, mtime }, Some(a)) => {
            a.size == Some(size) && a.atime_mtime.map(|t| t.1) == Some(mtime)
        }
        _ => false,
    }
}

/// LSTAT, with a name that is not there as `None`.
async fn lstat_opt(c: &Conn, path: &[u8]) -> Result<Option<Attrs>, RemoteError> {
    match c.sftp.lstat(path).await {
        Ok(a) => Ok(Some(a)),
        Err(e) if e.is_status(SSH_FX_NO_SUCH_FILE) || e.is_status(SSH_FX_NO_SUCH_PATH) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Puts a write or an attribute change on `h` now; the future waits for its answer.
fn send_on(
    conn: &Conn,
    h: &Handle,
    op: &Op,
) -> futures::future::BoxFuture<'static, Result<(), RemoteError>> {
    match op {
        Op::Write(off, data) => conn.sftp.write_send(h, *off, data).boxed(),
        Op::FSetStat(a) => conn.sftp.fsetstat_send(h, a).boxed(),
        _ => futures::future::ready(Ok(())).boxed(),
    }
}
