//! Request multiplexer over one SFTP byte stream: any number of requests in flight, each
//! matched to its reply by id, each with a deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};

use super::error::{RemoteError, Result};
use super::protocol::{
    decode_response, decode_version, Packet, Response, SSH_FXP_EXTENDED, SSH_FXP_READ,
    SSH_FXP_WRITE,
};
use super::stats::{ConnStats, Counters, Tally};

/// Largest reply we accept. OpenSSH's packets are at most 256 KiB (`limits@openssh.com`);
/// anything far beyond that is a broken or hostile server, not a reason to allocate.
pub const MAX_INCOMING_PACKET: usize = 1024 * 1024;

/// Each waiting request: where its reply goes, when it was sent if its round trip is
/// measured, and the tally its bytes count in, if any.
type Pending = HashMap<
    u32,
    (
        oneshot::Sender<Response>,
        Option<std::time::Instant>,
        Option<Arc<Tally>>,
    ),
>;

struct Shared {
    pending: Mutex<Pending>,
    counters: Counters,
    closed: AtomicBool,
    /// Why the session ended, when the server broke the protocol: every request that
    /// fails because of it says so, instead of a bare "connection lost".
    fatal: Mutex<Option<RemoteError>>,
    /// `fatal` was handed out for the log (once).
    fatal_reported: AtomicBool,
}

impl Shared {
    /// Fails every waiting request; later ones fail at once.
    fn close(&self) {
        let mut p = self.pending.lock().unwrap();
        self.closed.store(true, Ordering::SeqCst);
        p.clear();
    }

    fn close_with(&self, e: RemoteError) {
        self.fatal.lock().unwrap().get_or_insert(e);
        self.close();
    }

    /// The error for a request cut off by the end of the session.
    fn lost(&self) -> RemoteError {
        self.fatal
            .lock()
            .unwrap()
            .clone()
            .unwrap_or(RemoteError::ConnectionLost)
    }
}

pub struct Client {
    tx: mpsc::UnboundedSender<Bytes>,
    shared: Arc<Shared>,
    next_id: AtomicU32,
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

        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
            fatal: Mutex::new(None),
            fatal_reported: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(wr, rx, shared.clone()));
        tokio::spawn(read_loop(rd, shared.clone()));
        Ok((
            Client {
                tx,
                shared,
                next_id: AtomicU32::new(1),
                timeout,
            },
            hello,
        ))
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Why the session ended, when the server broke the protocol; only to the first caller.
    pub fn broken_by_once(&self) -> Option<RemoteError> {
        let e = self.shared.fatal.lock().unwrap().clone()?;
        (!self.shared.fatal_reported.swap(true, Ordering::SeqCst)).then_some(e)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn stats(&self) -> ConnStats {
        let in_flight = self.shared.pending.lock().unwrap().len();
        self.shared.counters.snapshot(in_flight)
    }

    /// Sends a request built by `build` (given the id) and waits for its reply or the deadline.
    pub async fn request(&self, build: impl FnOnce(u32) -> Packet) -> Result<Response> {
        self.send(build)?.wait().await
    }

    /// Queues a request now, in call order; the reply is awaited separately. Lets callers
    /// fix the order of requests on the wire before they give up control.
    pub fn send(&self, build: impl FnOnce(u32) -> Packet) -> Result<PendingReply> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply_tx, reply_rx) = oneshot::channel();
        let packet = build(id).finish();
        // READ and WRITE replies wait for data: not a measure of the link.
        let timed = !matches!(packet.get(4), Some(&SSH_FXP_READ | &SSH_FXP_WRITE));
        {
            let mut p = self.shared.pending.lock().unwrap();
            if self.shared.closed.load(Ordering::SeqCst) {
                return Err(self.shared.lost());
            }
            let kind = packet.get(4).copied().unwrap_or(0);
            let kind = if kind == SSH_FXP_EXTENDED { 0 } else { kind };
            self.shared.counters.queued(kind, p.is_empty());
            let tally = Tally::current();
            if let Some(t) = &tally {
                t.sent(packet.len());
            }
            p.insert(id, (reply_tx, timed.then(std::time::Instant::now), tally));
        }
        if self.tx.send(packet).is_err() {
            self.shared.pending.lock().unwrap().remove(&id);
            return Err(RemoteError::ConnectionLost);
        }
        Ok(PendingReply {
            rx: reply_rx,
            id,
            shared: self.shared.clone(),
            timeout: self.timeout,
        })
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
    pub async fn wait(self) -> Result<Response> {
        match tokio::time::timeout(self.timeout, self.rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(self.shared.lost()),
            Err(_) => {
                self.shared.pending.lock().unwrap().remove(&self.id);
                Err(RemoteError::Timeout(self.timeout))
            }
        }
    }
}

async fn read_packet<R: AsyncRead + Unpin>(rd: &mut R) -> Result<Bytes> {
    let mut len = [0u8; 4];
    rd.read_exact(&mut len)
        .await
        .map_err(|_| RemoteError::ConnectionLost)?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_INCOMING_PACKET {
        return Err(RemoteError::Protocol(format!(
            "bad reply len: {len} (a server's packet holds 1 to {MAX_INCOMING_PACKET} bytes)"
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
                let waiter = shared.pending.lock().unwrap().remove(&id);
                match waiter {
                    // The waiter may have timed out meanwhile; nothing to do then.
                    Some((w, sent, tally)) => {
                        if let Some(t) = sent {
                            shared.counters.round_trip(t.elapsed());
                        }
                        if let Some(t) = tally {
                            t.received(body_len);
                        }
                        drop(w.send(resp))
                    }
                    None => tracing::debug!("reply to unknown or expired request {id}"),
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
