//! Request multiplexer over one SFTP byte stream: any number of requests in flight, each
//! matched to its reply by id, each with a deadline. A request past its deadline makes the
//! connection suspect (`health.rs`); a reply to an id never issued breaks it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};

use super::error::{RemoteError, Result};
use super::health;
use super::protocol::{
    decode_response, decode_version, Packet, Response, SSH_FXP_EXTENDED, SSH_FXP_READ,
    SSH_FXP_WRITE,
};
use super::stats::{ConnStats, Counters, Tally};

use super::bounds::MAX_PACKET;

/// One waiting request: where its reply goes, when it was sent if its round trip is
/// measured, the tally its bytes count in, if any, and the bytes of file data it moves (see
/// [`Shared::bulk`]).
struct Waiting {
    reply: oneshot::Sender<Response>,
    sent: Option<std::time::Instant>,
    tally: Option<Arc<Tally>>,
    bulk: u32,
}

/// The waiting requests by id, and the sum of their `bulk`.
#[derive(Default)]
struct Pending {
    by_id: HashMap<u32, Waiting>,
    bulk: u64,
}

impl Pending {
    fn take(&mut self, id: u32) -> Option<Waiting> {
        let w = self.by_id.remove(&id)?;
        self.bulk -= w.bulk as u64;
        Some(w)
    }

    fn clear(&mut self) {
        self.by_id.clear();
        self.bulk = 0;
    }
}

pub(super) struct Shared {
    pending: Mutex<Pending>,
    pub(super) counters: Counters,
    closed: AtomicBool,
    /// Why the session ended, when the server broke the protocol or stopped answering: every
    /// request that fails because of it says so, instead of a bare "connection lost".
    fatal: Mutex<Option<RemoteError>>,
    /// `fatal` was handed out for the log (once).
    fatal_reported: AtomicBool,
    /// The id of the next request: the ids before it were issued (modulo 2^32).
    next_id: AtomicU32,
    /// Where requests go, for a probe (weak: the session ends when its client is dropped).
    tx: mpsc::WeakUnboundedSender<Bytes>,
    pub(super) timeout: Duration,
    /// A probe of the connection is under way (`health.rs`); always, for a session that is
    /// never to be declared dead.
    pub(super) probing: AtomicBool,
    /// The reader and writer tasks: ended at once when the connection is declared dead (a
    /// silent peer would hold them, and the socket, for ever).
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Becomes true when the session ends.
    ended: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    /// Bytes of file data in flight: asked for by READs, carried by WRITEs, not yet answered.
    /// How busy the connection is with transfers, for the pool's decision to grow.
    pub(super) fn bulk(&self) -> u64 {
        self.pending.lock().unwrap().bulk
    }

    /// Fails every waiting request; later ones fail at once.
    fn close(&self) {
        let mut p = self.pending.lock().unwrap();
        self.closed.store(true, Ordering::SeqCst);
        p.clear();
        self.ended.send_replace(true);
    }

    fn went_silent(&self) -> bool {
        matches!(*self.fatal.lock().unwrap(), Some(RemoteError::Silent(_)))
    }

    fn close_with(&self, e: RemoteError) {
        self.fatal.lock().unwrap().get_or_insert(e);
        self.close();
    }

    /// Ends the session because the server stopped answering: what waits fails with `e`, the
    /// byte stream is dropped.
    pub(super) fn declare_dead(&self, e: RemoteError) {
        self.close_with(e);
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// The error for a request cut off by the end of the session.
    fn lost(&self) -> RemoteError {
        self.fatal
            .lock()
            .unwrap()
            .clone()
            .unwrap_or(RemoteError::ConnectionLost)
    }

    /// Whether this session issued `id` (its reply may come after the request expired): one
    /// of the 2^31 ids before the next one. Any other id is a reply to nothing.
    fn issued(&self, id: u32) -> bool {
        let age = self.next_id.load(Ordering::SeqCst).wrapping_sub(id);
        (1..=1 << 31).contains(&age)
    }

    /// A sender of requests while the client lives (for a probe).
    pub(super) fn sender(&self) -> Option<mpsc::UnboundedSender<Bytes>> {
        self.tx.upgrade()
    }

    /// Queues a request on `tx`; see [`Client::send`].
    pub(super) fn send(
        self: &Arc<Self>,
        tx: &mpsc::UnboundedSender<Bytes>,
        build: impl FnOnce(u32) -> Packet,
    ) -> Result<PendingReply> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (reply_tx, reply_rx) = oneshot::channel();
        let packet = build(id).finish();
        let kind = packet.get(4).copied().unwrap_or(0);
        // READ and WRITE replies wait for data: not a measure of the link.
        let timed = !matches!(kind, SSH_FXP_READ | SSH_FXP_WRITE);
        let bulk = match kind {
            // A READ ends with the length it asks for.
            SSH_FXP_READ => packet
                .len()
                .checked_sub(4)
                .and_then(|at| packet.get(at..))
                .map_or(0, |l| u32::from_be_bytes(l.try_into().unwrap_or_default())),
            SSH_FXP_WRITE => packet.len() as u32,
            _ => 0,
        };
        {
            let mut p = self.pending.lock().unwrap();
            if self.closed.load(Ordering::SeqCst) {
                return Err(self.lost());
            }
            let kind = if kind == SSH_FXP_EXTENDED { 0 } else { kind };
            self.counters.queued(kind, p.by_id.is_empty());
            let tally = Tally::current();
            if let Some(t) = &tally {
                t.sent(packet.len());
            }
            let sent = timed.then(std::time::Instant::now);
            p.by_id.insert(
                id,
                Waiting {
                    reply: reply_tx,
                    sent,
                    tally,
                    bulk,
                },
            );
            p.bulk += bulk as u64;
        }
        if tx.send(packet).is_err() {
            self.pending.lock().unwrap().take(id);
            return Err(RemoteError::ConnectionLost);
        }
        Ok(PendingReply {
            rx: reply_rx,
            id,
            shared: self.clone(),
            timeout: self.timeout,
        })
    }
}

pub struct Client {
    tx: mpsc::UnboundedSender<Bytes>,
    shared: Arc<Shared>,
    timeout: Duration,
}

/// What the server said in its VERSION reply.
pub struct ServerHello {
    pub version: u32,
    pub extensions: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Client {
    /// Sends INIT, waits (bounded) for VERSION, then starts the reader and writer tasks.
    pub async fn start<S>(stream: S, timeout: Duration) -> Result<(Client, ServerHello)>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let hello = tokio::time::timeout(timeout, async {
            wr.write_all(&Packet::init(3).finish())
                .await
                .map_err(|_| RemoteError::ConnectionLost)?;
            wr.flush().await.map_err(|_| RemoteError::ConnectionLost)?;
            let body = read_packet(&mut rd).await?;
            let (version, extensions) =
                decode_version(body).map_err(|e| RemoteError::Protocol(e.to_string()))?;
            Ok::<_, RemoteError>(ServerHello {
                version,
                extensions,
            })
        })
        .await
        .map_err(|_| RemoteError::Timeout(timeout))??;
        if hello.version < 3 {
            return Err(RemoteError::Protocol(format!(
                "server speaks SFTP version {}, need 3",
                hello.version
            )));
        }

        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
            fatal: Mutex::new(None),
            fatal_reported: AtomicBool::new(false),
            next_id: AtomicU32::new(1),
            tx: tx.downgrade(),
            timeout,
            probing: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
            ended: tokio::sync::watch::Sender::new(false),
        });
        let writer = tokio::spawn(write_loop(wr, rx, shared.clone()));
        let reader = tokio::spawn(read_loop(rd, shared.clone()));
        shared
            .tasks
            .lock()
            .unwrap()
            .extend([writer.abort_handle(), reader.abort_handle()]);
        Ok((
            Client {
                tx,
                shared,
                timeout,
            },
            hello,
        ))
    }

    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Why the session ended, when the server broke the protocol or stopped answering; only
    /// to the first caller.
    pub fn broken_by_once(&self) -> Option<RemoteError> {
        let e = self.shared.fatal.lock().unwrap().clone()?;
        (!self.shared.fatal_reported.swap(true, Ordering::SeqCst)).then_some(e)
    }

    /// The session was ended because the server stopped answering (not a closed stream).
    pub fn went_silent(&self) -> bool {
        self.shared.went_silent()
    }

    /// Resolves when the session ends: true when it went silent. Holds no sender of
    /// requests (the session still ends when its client is dropped).
    pub fn ended(&self) -> impl std::future::Future<Output = bool> + Send + 'static {
        let shared = self.shared.clone();
        let mut ended = shared.ended.subscribe();
        async move {
            let _ = ended.wait_for(|e| *e).await;
            shared.went_silent()
        }
    }

    /// Probes the connection now (another one to the same server went silent).
    pub fn suspect(&self) {
        health::suspect(&self.shared);
    }

    /// Never probes this session (nothing could replace it): its requests only time out.
    pub fn never_declare_dead(&self) {
        self.shared.probing.store(true, Ordering::SeqCst);
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn stats(&self) -> ConnStats {
        let in_flight = self.shared.pending.lock().unwrap().by_id.len();
        self.shared.counters.snapshot(in_flight)
    }

    /// Bytes of file data in flight (see [`Shared::bulk`]).
    pub fn bulk_in_flight(&self) -> u64 {
        self.shared.bulk()
    }

    /// Sends a request built by `build` (given the id) and waits for its reply or the deadline.
    pub async fn request(&self, build: impl FnOnce(u32) -> Packet) -> Result<Response> {
        self.send(build)?.wait().await
    }

    /// Queues a request now, in call order; the reply is awaited separately. Lets callers
    /// fix the order of requests on the wire before they give up control.
    pub fn send(&self, build: impl FnOnce(u32) -> Packet) -> Result<PendingReply> {
        self.shared.send(&self.tx, build)
    }

    /// Stops the session: pending requests fail, the stream is shut down.
    pub fn shutdown(&self) {
        self.shared.close();
    }
}

/// A request on the wire, waiting for its reply.
pub struct PendingReply {
    rx: oneshot::Receiver<Response>,
    id: u32,
    shared: Arc<Shared>,
    timeout: Duration,
}

impl PendingReply {
    /// Waits `patience` instead of the session's deadline (an answer the server computes
    /// first, as a file's hash).
    pub fn patient(mut self, patience: Duration) -> Self {
        self.timeout = patience.max(self.timeout);
        self
    }

    /// The reply, or an error at the deadline, which makes the connection suspect.
    pub async fn wait(mut self) -> Result<Response> {
        match tokio::time::timeout(self.timeout, &mut self.rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(self.shared.lost()),
            Err(_) => {
                self.shared.pending.lock().unwrap().take(self.id);
                health::suspect(&self.shared);
                Err(RemoteError::Timeout(self.timeout))
            }
        }
    }

    /// The reply if it comes within `d`: `None` when it did not (the request stays pending;
    /// `forget` it to give up). Used by the probe, which waits on its own terms.
    pub(super) async fn wait_within(&mut self, d: Duration) -> Option<Result<Response>> {
        match tokio::time::timeout(d, &mut self.rx).await {
            Ok(Ok(resp)) => Some(Ok(resp)),
            Ok(Err(_)) => Some(Err(self.shared.lost())),
            Err(_) => None,
        }
    }

    /// Gives up on the reply.
    pub(super) fn forget(self) {
        self.shared.pending.lock().unwrap().take(self.id);
    }
}

async fn read_packet<R: AsyncRead + Unpin>(rd: &mut R) -> Result<Bytes> {
    let mut len = [0u8; 4];
    rd.read_exact(&mut len)
        .await
        .map_err(|_| RemoteError::ConnectionLost)?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_PACKET {
        return Err(RemoteError::Protocol(format!(
            "bad reply len: {len} (a server's packet holds 1 to {MAX_PACKET} bytes)"
        )));
    }
    // Filled straight into spare capacity: no zeroing of up to 256 KiB per reply.
    let mut body = BytesMut::with_capacity(len);
    while body.len() < len {
        let n = (&mut *rd)
            .take((len - body.len()) as u64)
            .read_buf(&mut body)
            .await
            .map_err(|_| RemoteError::ConnectionLost)?;
        if n == 0 {
            return Err(RemoteError::ConnectionLost);
        }
    }
    Ok(body.freeze())
}

async fn read_loop<R: AsyncRead + Unpin>(mut rd: R, shared: Arc<Shared>) {
    loop {
        let body = match read_packet(&mut rd).await {
            Ok(b) => b,
            Err(e @ RemoteError::Protocol(_)) => {
                tracing::debug!("closing the SFTP session: {e}");
                shared.close_with(e);
                return;
            }
            Err(e) => {
                tracing::debug!("sftp reader stops: {e}");
                break;
            }
        };
        let body_len = body.len() + 4;
        shared.counters.received(body_len);
        match decode_response(body) {
            Ok((id, resp)) => {
                let waiter = shared.pending.lock().unwrap().take(id);
                match waiter {
                    Some(w) => {
                        if let Some(t) = w.sent {
                            shared.counters.round_trip(t.elapsed());
                        }
                        if let Some(t) = w.tally {
                            t.received(body_len);
                        }
                        drop(w.reply.send(resp))
                    }
                    // The waiter timed out meanwhile: a late reply, nothing to do.
                    None if shared.issued(id) => {
                        tracing::debug!("reply to expired request {id}")
                    }
                    // A reply to nothing: the stream cannot be trusted to match replies to
                    // requests any more (as with a bad length).
                    None => {
                        let e = RemoteError::Protocol(format!(
                            "a reply to request id {id}, which was never issued"
                        ));
                        tracing::debug!("closing the SFTP session: {e}");
                        shared.close_with(e);
                        return;
                    }
                }
            }
            Err(e) => {
                // Reported to every request it cuts off; the log is for -d only, so that a
                // mount that fails says it once, on one line.
                tracing::debug!("closing the SFTP session: {e}");
                shared.close_with(RemoteError::Protocol(e.to_string()));
                return;
            }
        }
    }
    shared.close();
}

async fn write_loop<W: AsyncWrite + Unpin>(
    wr: W,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    shared: Arc<Shared>,
) {
    let mut wr = BufWriter::with_capacity(256 * 1024, wr);
    while let Some(pkt) = rx.recv().await {
        if shared.closed.load(Ordering::SeqCst) {
            break;
        }
        shared.counters.sent(pkt.len());
        let mut res = wr.write_all(&pkt).await;
        // Coalesce whatever else is queued into the same flush.
        while res.is_ok() {
            match rx.try_recv() {
                Ok(more) => {
                    shared.counters.sent(more.len());
                    res = wr.write_all(&more).await
                }
                Err(_) => break,
            }
        }
        if res.is_ok() {
            res = wr.flush().await;
        }
        if let Err(e) = res {
            tracing::debug!("sftp writer stops: {e}");
            break;
        }
    }
    shared.close();
    let _ = wr.shutdown().await;
}
