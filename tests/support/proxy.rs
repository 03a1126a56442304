//! A TCP proxy on 127.0.0.1 for fault injection: it sits between the mount and sshd and can
//! delay, stall, cut or refuse connections, on command from the test.
//!
//! - [`Proxy::delay`]: latency per direction. Each chunk read is forwarded once its delay has
//!   passed, in order; chunks behind it are already on their way, so a delay does not cap the
//!   throughput (it is not a bandwidth limit).
//! - [`Proxy::stall`] / [`Proxy::resume`]: stop forwarding bytes in both directions, without
//!   closing anything; resume forwards what was held back.
//! - [`Proxy::cut`]: close every current connection (both sides); new ones are still accepted.
//! - [`Proxy::refuse`] / [`Proxy::admit`]: close new connections as soon as they are accepted.
//! - [`Proxy::bytes`]: bytes it forwarded so far, both directions, every connection: what
//!   crossed the link.
//!
//! Dropping the proxy stops it: the listener and every connection are shut down and all its
//! threads joined (each is bounded: blocked reads and writes end when their socket is shut
//! down, a delay ends when it has passed).
//!
//! Only `std`: `bench/` and `examples/netproxy.rs` include this file with `#[path]`.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes read from a socket at once.
const CHUNK: usize = 256 * 1024;
/// Bytes held in one direction of one connection (read but not yet written): bounds memory,
/// and is far above what one direction needs in flight to sustain its speed with a delay.
const MAX_QUEUED: usize = 64 << 20;

/// Which way bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From the client (the mount) to the server (sshd).
    Up,
    /// From the server to the client.
    Down,
}

#[derive(Default)]
struct Control {
    delay_up: Duration,
    delay_down: Duration,
    stalled: bool,
    refusing: bool,
    /// Refuse new connections while this many are open (a server's per-user limit).
    max_live: Option<usize>,
    stopping: bool,
}

struct Shared {
    control: Mutex<Control>,
    /// Signalled on every change of `control`.
    changed: Condvar,
    conns: Mutex<Vec<Arc<Conn>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    accepted: AtomicUsize,
    refused: AtomicUsize,
    /// Bytes read from either side (client to server, server to client).
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

impl Shared {
    fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One proxied connection: both sockets, so that `cut` and `drop` can shut them down.
struct Conn {
    client: TcpStream,
    server: TcpStream,
    closed: AtomicBool,
    /// Directions that ended in an orderly way (EOF passed on); at 2 the connection is over.
    halves_done: AtomicUsize,
}

impl Conn {
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

/// Chunks read and not yet written, each with the moment it may be written.
struct Queue {
    items: Mutex<Pending>,
    cond: Condvar,
}

#[derive(Default)]
struct Pending {
    chunks: VecDeque<(Instant, Vec<u8>)>,
    /// Bytes in `chunks`.
    bytes: usize,
    /// The input ended: nothing more will be queued.
    ended: bool,
}

pub struct Proxy {
    port: u16,
    target: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy on a free port of 127.0.0.1 to `127.0.0.1:target_port`.
    pub fn start(target_port: u16) -> Proxy {
        Proxy::start_on(0, target_port).expect("start the proxy")
    }

    /// A proxy on `127.0.0.1:listen_port` (0: any free port) to `127.0.0.1:target_port`.
    pub fn start_on(listen_port: u16, target_port: u16) -> io::Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", listen_port))?;
        let port = listener.local_addr()?.port();
        let target = SocketAddr::from(([127, 0, 0, 1], target_port));
        let shared = Arc::new(Shared {
            control: Mutex::new(Control::default()),
            changed: Condvar::new(),
            conns: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
        });
        let sh = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name(format!("proxy-{port}-accept"))
            .spawn(move || accept_loop(listener, target, sh))?;
        Ok(Proxy {
            port,
            target,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The port the proxy listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port connections are forwarded to (127.0.0.1).
    pub fn target_port(&self) -> u16 {
        self.target.port()
    }

    /// Delays every chunk in direction `dir` by `d` from now on (chunks already read keep
    /// theirs).
    pub fn delay_dir(&self, dir: Dir, d: Duration) {
        let mut c = self.shared.control();
        match dir {
            Dir::Up => c.delay_up = d,
            Dir::Down => c.delay_down = d,
        }
        self.shared.changed.notify_all();
    }

    /// Delays both directions by `d` (a round trip then takes `2 * d` more).
    pub fn delay(&self, d: Duration) {
        self.delay_dir(Dir::Up, d);
        self.delay_dir(Dir::Down, d);
    }

    /// Stops forwarding bytes, both ways, on every connection (also new ones); nothing is
    /// closed and nothing is lost.
    pub fn stall(&self) {
        self.shared.control().stalled = true;
        self.shared.changed.notify_all();
    }

    /// Forwards again what `stall` held back, and everything after it.
    pub fn resume(&self) {
        self.shared.control().stalled = false;
        self.shared.changed.notify_all();
    }

    /// Closes every current connection on both sides. New connections are still accepted.
    pub fn cut(&self) {
        let conns: Vec<Arc<Conn>> = std::mem::take(&mut *self.shared.conns.lock().unwrap());
        for c in conns {
            c.close();
        }
        self.shared.changed.notify_all();
    }

    /// From now on, closes new connections as soon as they are accepted.
    pub fn refuse(&self) {
        self.shared.control().refusing = true;
    }

    /// From now on, closes a new connection at once while `n` are open, as a server that
    /// allows `n` connections per user does.
    pub fn limit(&self, n: usize) {
        self.shared.control().max_live = Some(n);
    }

    /// Undoes `refuse`.
    pub fn admit(&self) {
        self.shared.control().refusing = false;
    }

    /// Connections accepted and forwarded so far (not counting refused ones).
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections closed at once because of `refuse`.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Connections currently open (neither side closed yet).
    /// Bytes read from either side so far (each is forwarded to the other).
    pub fn bytes(&self) -> u64 {
        self.shared.bytes_up.load(Ordering::SeqCst) + self.shared.bytes_down.load(Ordering::SeqCst)
    }

    pub fn live(&self) -> usize {
        let mut conns = self.shared.conns.lock().unwrap();
        conns.retain(|c| !c.closed.load(Ordering::SeqCst));
        conns.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.control().stopping = true;
        self.shared.changed.notify_all();
        // Wake the acceptor: it sees `stopping` and returns.
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(1),
        );
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        self.cut();
        let threads = std::mem::take(&mut *self.shared.threads.lock().unwrap());
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, target: SocketAddr, sh: Arc<Shared>) {
    for incoming in listener.incoming() {
        if sh.control().stopping {
            return;
        }
        let client = match incoming {
            Ok(c) => c,
            Err(_) => continue,
        };
        let max_live = sh.control().max_live;
        let full = max_live.is_some_and(|m| {
            let mut conns = sh.conns.lock().unwrap();
            conns.retain(|c| !c.closed.load(Ordering::SeqCst));
            conns.len() >= m
        });
        if sh.control().refusing || full {
            sh.refused.fetch_add(1, Ordering::SeqCst);
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let server = match TcpStream::connect_timeout(&target, Duration::from_secs(5)) {
            Ok(s) => s,
            Err(_) => {
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        let (Ok(c3), Ok(s3)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        let conn = Arc::new(Conn {
            client,
            server,
            closed: AtomicBool::new(false),
            halves_done: AtomicUsize::new(0),
        });
        sh.conns.lock().unwrap().push(conn.clone());
        sh.accepted.fetch_add(1, Ordering::SeqCst);
        let mut threads = Vec::new();
        threads.extend(pump(&sh, &conn, Dir::Up, c2, s2));
        threads.extend(pump(&sh, &conn, Dir::Down, s3, c3));
        let mut all = sh.threads.lock().unwrap();
        all.retain(|t| !t.is_finished());
        all.extend(threads);
    }
}

/// Starts the two threads of one direction: a reader that stamps each chunk with the moment
/// it may leave, and a writer that sends chunks in order once their moment has come.
fn pump(
    sh: &Arc<Shared>,
    conn: &Arc<Conn>,
    dir: Dir,
    mut from: TcpStream,
    mut to: TcpStream,
) -> Vec<JoinHandle<()>> {
    let q = Arc::new(Queue {
        items: Mutex::new(Pending::default()),
        cond: Condvar::new(),
    });
    let (sh_r, q_r, conn_r) = (sh.clone(), q.clone(), conn.clone());
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        loop {
            // While stalled, read nothing: the sender's TCP window fills and it waits.
            if !wait_unstalled(&sh_r, &conn_r) {
                break;
            }
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            match dir {
                Dir::Up => &sh_r.bytes_up,
                Dir::Down => &sh_r.bytes_down,
            }
            .fetch_add(n as u64, Ordering::SeqCst);
            let delay = {
                let c = sh_r.control();
                match dir {
                    Dir::Up => c.delay_up,
                    Dir::Down => c.delay_down,
                }
            };
            let due = Instant::now() + delay;
            let mut items = q_r.items.lock().unwrap();
            while items.bytes >= MAX_QUEUED && !conn_r.closed.load(Ordering::SeqCst) {
                items = q_r
                    .cond
                    .wait_timeout(items, Duration::from_millis(100))
                    .unwrap()
                    .0;
            }
            items.chunks.push_back((due, buf[..n].to_vec()));
            items.bytes += n;
            q_r.cond.notify_all();
        }
        // End of input: the writer sends what is queued, then passes the end on.
        q_r.items.lock().unwrap().ended = true;
        q_r.cond.notify_all();
    });
    let (sh_w, q_w, conn_w) = (sh.clone(), q, conn.clone());
    let writer = std::thread::spawn(move || {
        loop {
            let (due, data) = {
                let mut items = q_w.items.lock().unwrap();
                loop {
                    if conn_w.closed.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Some(front) = items.chunks.pop_front() {
                        items.bytes -= front.1.len();
                        q_w.cond.notify_all();
                        break front;
                    }
                    if items.ended {
                        // The other side ended its output: pass the half-close on.
                        let _ = to.shutdown(Shutdown::Write);
                        if conn_w.halves_done.fetch_add(1, Ordering::SeqCst) == 1 {
                            conn_w.close();
                        }
                        return;
                    }
                    items = q_w
                        .cond
                        .wait_timeout(items, Duration::from_millis(100))
                        .unwrap()
                        .0;
                }
            };
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if !wait_unstalled(&sh_w, &conn_w) || to.write_all(&data).is_err() {
                break;
            }
        }
        conn_w.close();
    });
    vec![reader, writer]
}

/// Waits while the proxy is stalled; false when the connection was closed or the proxy stops.
fn wait_unstalled(sh: &Shared, conn: &Conn) -> bool {
    let mut c = sh.control();
    loop {
        if c.stopping || conn.closed.load(Ordering::SeqCst) {
            return false;
        }
        if !c.stalled {
            return true;
        }
        c = sh
            .changed
            .wait_timeout(c, Duration::from_millis(100))
            .unwrap()
            .0;
    }
}
