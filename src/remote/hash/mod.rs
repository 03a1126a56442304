//! Hashes of remote files computed on the server, so that nothing but a digest crosses the
//! link. By the best means the server offers, in this order:
//!
//! 1. the SFTP server's own `check-file-*` extension (ProFTPD: md5, sha1, sha224 to sha512),
//!    or `md5-hash-*` for MD5 (`check_file.rs`);
//! 2. a hash program run over an SSH exec channel of the same connection (`sha256sum`,
//!    `sha1sum`, `md5sum`, `b2sum`, ...; BSD's `sha256 -q`, `md5 -q`), found by one probe per
//!    mount (`shell.rs`), or the one `-o hash_command=` names.
//!
//! What none of them can compute is `NoMeans`, with the reason (the status shows it).

pub mod algo;
pub mod check_file;
mod group;
pub mod shell;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;

pub use algo::{hex, Algo, Hasher};
use check_file::{Target, CHECK_FILE_ALGOS};
use shell::{Answer, PerFile, Tool};

use super::exec::{ExecError, ExecLimits};
use super::profile::Ext;
use super::{Conn, Handle, Pool, RemoteError, Transport};

/// One file's digest, or why there is none.
pub type Hashed = Result<Vec<u8>, HashError>;

/// `-o hash_command=`: how hashes may be computed by a command on the server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HashCommand {
    /// Look for the usual programs (one probe per mount).
    #[default]
    Probe,
    /// This command, `%s` standing for the path, computing this algorithm.
    Given(Algo, String),
    /// `hash_command=none`: never run a command on the server.
    Forbidden,
}

impl HashCommand {
    /// `hash_command=VALUE`: `none`, or `[ALGO:]COMMAND` with `%s` for the path; without
    /// `ALGO:` the algorithm is read from the program's name (`sha256sum`, `md5`, `b2sum`).
    pub fn parse(v: &str) -> Result<HashCommand, &'static str> {
        if v == "none" {
            return Ok(HashCommand::Forbidden);
        }
        let (algo, cmd) = match v.split_once(':') {
            Some((a, c)) if Algo::from_name(a.as_bytes()).is_some() => {
                (Algo::from_name(a.as_bytes()), c)
            }
            _ => (None, v),
        };
        if !cmd.contains("%s") {
            return Err("a command with %s where the file's path goes, or none");
        }
        let named = || {
            let program = cmd.split_whitespace().next().unwrap_or("");
            let base = program.rsplit('/').next().unwrap_or(program);
            // Longest names first: sha256 before sha2..., b2sum as blake2b.
            [
                ("sha224", Algo::Sha224),
                ("sha256", Algo::Sha256),
                ("sha384", Algo::Sha384),
                ("sha512", Algo::Sha512),
                ("sha1", Algo::Sha1),
                ("md5", Algo::Md5),
                ("b2sum", Algo::Blake2b),
                ("blake2", Algo::Blake2b),
            ]
            .into_iter()
            .find(|(n, _)| base.contains(n))
            .map(|(_, a)| a)
        };
        match algo.or_else(named) {
            Some(a) => Ok(HashCommand::Given(a, cmd.to_string())),
            None => Err("ALGO:COMMAND (e.g. sha256:myhash %s): the algorithm cannot be told from the program's name"),
        }
    }
}

/// Why no hash came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// The server cannot compute this algorithm by any means: ENODATA.
    #[error("{0}")]
    NoMeans(String),
    /// The file could not be hashed: its errno.
    #[error("{1}")]
    Failed(i32, String),
}

impl HashError {
    pub fn errno(&self) -> i32 {
        match self {
            HashError::NoMeans(_) => libc::ENODATA,
            HashError::Failed(e, _) => *e,
        }
    }

    fn remote(e: RemoteError) -> HashError {
        HashError::Failed(e.errno(), e.to_string())
    }
}

/// How one algorithm is computed here.
#[derive(Debug, Clone)]
enum Route {
    CheckFile,
    Md5Hash,
    Exec(ExecHow),
}

#[derive(Debug, Clone)]
enum ExecHow {
    Tool(Tool),
    Template(String),
}

/// What the exec channel offers, found once.
#[derive(Debug, Clone)]
enum ExecMeans {
    Tools(Vec<Tool>),
    Template(Algo, String),
    None(String),
}

/// Counts for `sftpfs status`.
#[derive(Debug, Default)]
struct Counters {
    computed: AtomicU64,
    failed: AtomicU64,
    /// Commands run on the server (exec channels opened), probes aside.
    exec_runs: AtomicU64,
}

/// Bytes a second a server is assumed to hash at least (a slow disk): how long a hash may
/// take beyond a request's deadline.
const HASH_RATE: u64 = 20 << 20;
/// Files in one exec run, and bytes of their quoted names.
const BATCH_FILES: usize = 500;
const BATCH_NAME_BYTES: usize = 128 << 10;
/// Exec runs at once (each a channel; OpenSSH allows 10 sessions a connection).
const EXEC_PARALLEL: usize = 4;
/// Extension requests in flight at once.
const REQUESTS_PARALLEL: usize = 64;

pub struct ServerHashes {
    pool: Arc<Pool>,
    transport: Arc<dyn Transport>,
    command: HashCommand,
    timeout: Duration,
    exec: tokio::sync::OnceCell<ExecMeans>,
    /// Exec runs at once, whoever asks (closes checked together, as an asynchronous mount's
    /// queue sends many, and `sftpfs verify`'s batches): they take turns instead of opening
    /// a channel each and outwaiting their deadline behind one another.
    exec_slots: tokio::sync::Semaphore,
    /// Single files waiting for an exec run (see `group.rs`).
    gathering: group::Gathering,
    me: Weak<ServerHashes>,
    counters: Counters,
}

impl std::fmt::Debug for ServerHashes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHashes")
            .field("command", &self.command)
            .field("exec", &self.exec.get())
            .finish_non_exhaustive()
    }
}

/// What `sftpfs status` says of hashes.
#[derive(Debug, Clone, Default)]
pub struct HashStatus {
    /// The algorithms and how: `sha256, md5 by check-file; sha512 by exec (sha512sum)`.
    pub means: String,
    /// Why some or all cannot be had (no extension, no shell, no program); empty if none.
    pub missing: String,
    pub computed: u64,
    pub failed: u64,
    pub exec_runs: u64,
}

impl ServerHashes {
    pub fn new(
        pool: Arc<Pool>,
        transport: Arc<dyn Transport>,
        command: HashCommand,
        timeout: Duration,
    ) -> Arc<ServerHashes> {
        Arc::new_cyclic(|me| ServerHashes {
            pool,
            transport,
            command,
            timeout,
            exec: tokio::sync::OnceCell::new(),
            exec_slots: tokio::sync::Semaphore::new(EXEC_PARALLEL),
            gathering: group::Gathering::default(),
            me: me.clone(),
            counters: Counters::default(),
        })
    }

    fn has(&self, e: Ext) -> bool {
        self.pool.profile().is_some_and(|p| p.has(e))
    }

    /// What the exec channel offers: probed at the first need, once per mount.
    async fn exec_means(&self) -> &ExecMeans {
        self.exec
            .get_or_init(|| async {
                let means = self.probe().await;
                match &means {
                    ExecMeans::Tools(t) => tracing::info!(
                        "hashes by a command on the server: {}",
                        t.iter().map(|t| t.program).collect::<Vec<_>>().join(", ")
                    ),
                    ExecMeans::Template(a, c) => {
                        tracing::info!("{a} hashes by the command '{c}' on the server")
                    }
                    ExecMeans::None(why) => tracing::info!("no hashes by a command: {why}"),
                }
                means
            })
            .await
    }

    async fn probe(&self) -> ExecMeans {
        match &self.command {
            HashCommand::Forbidden => {
                return ExecMeans::None("hash_command=none forbids commands".into())
            }
            HashCommand::Given(a, c) => return ExecMeans::Template(*a, c.clone()),
            HashCommand::Probe => {}
        }
        let limits = ExecLimits {
            max_output: 64 << 10,
            deadline: self.timeout,
        };
        match self
            .transport
            .exec("sh", &shell::probe_script(), limits)
            .await
        {
            Ok(out) => match shell::parse_probe(&out.stdout) {
                Some(t) if t.is_empty() => ExecMeans::None(
                    "no hash program on the server (sha256sum, sha1sum, md5sum, b2sum; \
                     BSD's sha256, md5)"
                        .into(),
                ),
                Some(t) => ExecMeans::Tools(t),
                None => ExecMeans::None(
                    "commands on the server give no shell (a forced SFTP server, \
                     ForceCommand?)"
                        .into(),
                ),
            },
            Err(ExecError::Failed(e)) => ExecMeans::None(format!("a command failed: {e}")),
            Err(ExecError::Unavailable(e) | ExecError::Refused(e)) => ExecMeans::None(e),
        }
    }

    /// How `algo` is computed: the SFTP server's extension first, else a command.
    async fn routes(&self, algo: Algo) -> Vec<Route> {
        let exec = self.exec_means().await;
        self.routes_with(algo, Some(exec))
    }

    /// `routes`, with what the exec channel offers if known (`None`: not probed yet).
    fn routes_with(&self, algo: Algo, exec: Option<&ExecMeans>) -> Vec<Route> {
        let mut r = Vec::new();
        if self.has(Ext::CheckFile) && CHECK_FILE_ALGOS.contains(&algo) {
            r.push(Route::CheckFile);
        }
        if algo == Algo::Md5 && self.has(Ext::Md5Hash) {
            r.push(Route::Md5Hash);
        }
        match exec {
            Some(ExecMeans::Tools(t)) => {
                if let Some(t) = t.iter().find(|t| t.algo == algo) {
                    r.push(Route::Exec(ExecHow::Tool(t.clone())));
                }
            }
            Some(ExecMeans::Template(a, c)) if *a == algo => {
                r.push(Route::Exec(ExecHow::Template(c.clone())))
            }
            _ => {}
        }
        r
    }

    /// The algorithms the server can compute, best first.
    pub async fn available(&self) -> Vec<Algo> {
        let mut v = Vec::new();
        for a in Algo::ALL {
            if !self.routes(a).await.is_empty() {
                v.push(a);
            }
        }
        v
    }

    /// The best algorithm the server can compute, if any.
    pub async fn best(&self) -> Option<Algo> {
        self.available().await.into_iter().next()
    }

    /// Why `algo` cannot be had: what is missing of each means.
    async fn why_not(&self, algo: Algo) -> String {
        let mut why = Vec::new();
        if !self.has(Ext::CheckFile) {
            why.push("the SFTP server has no check-file extension".to_string());
        } else {
            why.push(format!("check-file does not compute {algo}"));
        }
        match self.exec_means().await {
            ExecMeans::None(e) => why.push(e.clone()),
            _ => why.push(format!("no {algo} program on the server")),
        }
        format!("no {algo} hash on this server: {}", why.join("; "))
    }

    /// The digest of the file at `path` (absolute, on the server), by `algo`. With `open`,
    /// the file's handle, for the extension (the file itself, whatever its name is now).
    /// `size` is what the file is thought to hold: how long the server may take.
    pub async fn hash(
        &self,
        path: &[u8],
        open: Option<(&Arc<Conn>, &Handle)>,
        algo: Algo,
        size: u64,
    ) -> Result<Vec<u8>, HashError> {
        let r = self.hash_once(path, open, algo, size).await;
        self.count(&r);
        r
    }

    fn count<T>(&self, r: &Result<T, HashError>) {
        match r {
            Ok(_) => self.counters.computed.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.counters.failed.fetch_add(1, Ordering::Relaxed),
        };
    }

    async fn hash_once(
        &self,
        path: &[u8],
        open: Option<(&Arc<Conn>, &Handle)>,
        algo: Algo,
        size: u64,
    ) -> Result<Vec<u8>, HashError> {
        let patience = self.patience(size);
        for route in self.routes(algo).await {
            let r = match &route {
                Route::CheckFile | Route::Md5Hash => {
                    self.by_extension(&route, path, open, algo, patience).await
                }
                // A command that hashes many files in one run: with those asked meanwhile.
                Route::Exec(how @ ExecHow::Tool(t)) if t.zero => {
                    self.by_exec_gathered(how, algo, path, size).await
                }
                Route::Exec(how) => {
                    let got = self.by_exec(how, algo, &[path], patience).await;
                    got.into_iter()
                        .next()
                        .unwrap_or(Err(HashError::Failed(libc::EIO, "no answer".into())))
                }
            };
            match r {
                // The server turned out not to do it after all: the next means.
                Err(HashError::NoMeans(_)) => continue,
                r => return r,
            }
        }
        Err(HashError::NoMeans(self.why_not(algo).await))
    }

    /// How long a hash of `size` bytes may take.
    fn patience(&self, size: u64) -> Duration {
        self.timeout + Duration::from_secs(size / HASH_RATE)
    }

    async fn by_extension(
        &self,
        route: &Route,
        path: &[u8],
        open: Option<(&Arc<Conn>, &Handle)>,
        algo: Algo,
        patience: Duration,
    ) -> Result<Vec<u8>, HashError> {
        // By the handle first: the open file itself, whatever its name is now. A handle
        // open only for writing is refused (ProFTPD: EACCES, as the draft asks for read
        // access): then by name.
        let by_handle = match open {
            Some((c, h)) if c.is_alive() => {
                match ask_extension(route, c.clone(), Target::Handle(h), algo, patience).await {
                    Err(e) if matches!(e.errno(), libc::EACCES | libc::EPERM) => None,
                    r => Some(r),
                }
            }
            _ => None,
        };
        let r = match by_handle {
            Some(r) => r,
            None => {
                let c = self.pool.any().await.map_err(HashError::remote)?;
                let target = Target::Path(path);
                match ask_extension(route, c.clone(), target, algo, patience).await {
                    Err(e) if e.is_dead() => {
                        let c = self.pool.get(c.slot).await.map_err(HashError::remote)?;
                        ask_extension(route, c, target, algo, patience).await
                    }
                    r => r,
                }
            }
        };
        r.map_err(|e| match e {
            RemoteError::Unsupported(n) => HashError::NoMeans(format!("{n} refused")),
            e => HashError::remote(e),
        })
    }

    /// One exec run for `paths` (at most a batch), in its turn: each one's digest or error,
    /// in order.
    async fn by_exec(
        &self,
        how: &ExecHow,
        algo: Algo,
        paths: &[&[u8]],
        patience: Duration,
    ) -> Vec<Result<Vec<u8>, HashError>> {
        let _slot = self.exec_slots.acquire().await;
        self.exec_run(how, algo, paths, patience).await
    }

    /// `by_exec`, its exec slot held by the caller.
    async fn exec_run(
        &self,
        how: &ExecHow,
        algo: Algo,
        paths: &[&[u8]],
        patience: Duration,
    ) -> Vec<Result<Vec<u8>, HashError>> {
        let failed = |e: &ExecError| {
            paths
                .iter()
                .map(|_| {
                    Err(match e {
                        ExecError::Unavailable(m) | ExecError::Refused(m) => {
                            HashError::NoMeans(m.clone())
                        }
                        ExecError::Failed(m) => HashError::Failed(libc::EIO, m.clone()),
                    })
                })
                .collect::<Vec<_>>()
        };
        let limits = ExecLimits {
            max_output: 16 << 20,
            deadline: patience,
        };
        if let ExecHow::Tool(t) = how {
            if t.zero {
                self.counters.exec_runs.fetch_add(1, Ordering::Relaxed);
                let out = match self
                    .transport
                    .exec("sh", &shell::batch_script(t, paths), limits)
                    .await
                {
                    Ok(o) => o,
                    Err(e) => return failed(&e),
                };
                let got = shell::parse_batch(algo, &out.stdout, paths);
                let missing: Vec<&[u8]> = paths
                    .iter()
                    .zip(&got)
                    .filter(|(_, d)| d.is_none())
                    .map(|(p, _)| *p)
                    .collect();
                // The few that failed, again one by one: to learn why.
                let mut why = if missing.is_empty() {
                    Vec::new()
                } else {
                    self.per_file(&PerFile::Tool(t), algo, &missing, limits)
                        .await
                        .into_iter()
                        .rev()
                        .collect()
                };
                return got
                    .into_iter()
                    .map(|d| match d {
                        Some(d) => Ok(d),
                        None => why
                            .pop()
                            .unwrap_or(Err(HashError::Failed(libc::EIO, "not hashed".into()))),
                    })
                    .collect();
            }
        }
        let per = match how {
            ExecHow::Tool(t) => PerFile::Tool(t),
            ExecHow::Template(c) => PerFile::Template(c),
        };
        self.per_file(&per, algo, paths, limits).await
    }

    async fn per_file(
        &self,
        how: &PerFile<'_>,
        algo: Algo,
        paths: &[&[u8]],
        limits: ExecLimits,
    ) -> Vec<Result<Vec<u8>, HashError>> {
        self.counters.exec_runs.fetch_add(1, Ordering::Relaxed);
        match self
            .transport
            .exec("sh", &shell::per_file_script(how, paths), limits)
            .await
        {
            Ok(out) => shell::parse_per_file(algo, &out.stdout, paths.len())
                .into_iter()
                .map(|a| match a {
                    Answer::Digest(d) => Ok(d),
                    Answer::Failed(e) => Err(HashError::Failed(
                        e,
                        format!(
                            "the server's hash command failed ({})",
                            crate::status::report::errno_name(e)
                        ),
                    )),
                })
                .collect(),
            Err(e) => paths
                .iter()
                .map(|_| {
                    Err(match &e {
                        ExecError::Unavailable(m) | ExecError::Refused(m) => {
                            HashError::NoMeans(m.clone())
                        }
                        ExecError::Failed(m) => HashError::Failed(libc::EIO, m.clone()),
                    })
                })
                .collect(),
        }
    }

    /// The digests of many files (absolute paths, with their sizes), in order: the
    /// extension's requests pipelined, or a few exec runs of many files each.
    pub async fn hash_many(
        &self,
        files: &[(Vec<u8>, u64)],
        algo: Algo,
    ) -> Vec<Result<Vec<u8>, HashError>> {
        let routes = self.routes(algo).await;
        let Some(route) = routes.first() else {
            let why = self.why_not(algo).await;
            return files
                .iter()
                .map(|_| Err(HashError::NoMeans(why.clone())))
                .collect();
        };
        let results = match route {
            // Boxed: a stream of borrowing futures is otherwise not provably `Send`.
            Route::Exec(how) => {
                let runs: Vec<BoxFuture<'_, Vec<Hashed>>> = batches(files)
                    .into_iter()
                    .map(|range| -> BoxFuture<'_, _> {
                        let files = &files[range];
                        Box::pin(async move {
                            let paths: Vec<&[u8]> = files.iter().map(|f| f.0.as_slice()).collect();
                            let bytes: u64 = files.iter().map(|f| f.1).sum();
                            self.by_exec(how, algo, &paths, self.patience(bytes)).await
                        })
                    })
                    .collect();
                let runs = futures::stream::iter(runs).buffered(EXEC_PARALLEL);
                runs.collect::<Vec<_>>()
                    .await
                    .into_iter()
                    .flatten()
                    .collect()
            }
            _ => {
                let asks: Vec<BoxFuture<'_, Result<Vec<u8>, HashError>>> = files
                    .iter()
                    .map(|(p, size)| -> BoxFuture<'_, _> {
                        Box::pin(self.hash_once(p, None, algo, *size))
                    })
                    .collect();
                futures::stream::iter(asks)
                    .buffered(REQUESTS_PARALLEL)
                    .collect::<Vec<_>>()
                    .await
            }
        };
        for r in &results {
            self.count(r);
        }
        results
    }

    /// For `sftpfs status`: what can be had and how, and why not the rest (the exec
    /// channel as far as it was probed: at mount, in the background).
    pub fn status(&self) -> HashStatus {
        let exec = self.exec.get();
        let mut by: Vec<(String, Vec<Algo>)> = Vec::new();
        for a in Algo::ALL {
            let how = match self.routes_with(a, exec).first() {
                Some(Route::CheckFile) => "check-file".to_string(),
                Some(Route::Md5Hash) => "md5-hash".to_string(),
                Some(Route::Exec(_)) => "a command on the server".to_string(),
                None => continue,
            };
            match by.iter_mut().find(|(h, _)| *h == how) {
                Some((_, v)) => v.push(a),
                None => by.push((how, vec![a])),
            }
        }
        let means = by
            .iter()
            .map(|(how, v)| {
                let names: Vec<&str> = v.iter().map(|a| a.name()).collect();
                format!("{} by {how}", names.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ");
        let mut missing = Vec::new();
        if !self.has(Ext::CheckFile) && !self.has(Ext::Md5Hash) {
            missing.push("no check-file or md5-hash extension".to_string());
        }
        match exec {
            Some(ExecMeans::None(e)) => missing.push(e.clone()),
            None => missing.push("commands on the server not probed yet".to_string()),
            Some(_) => {}
        }
        HashStatus {
            means,
            missing: missing.join("; "),
            computed: self.counters.computed.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            exec_runs: self.counters.exec_runs.load(Ordering::Relaxed),
        }
    }
}

/// One hash request by the SFTP server's extension (`route`), on `c`.
async fn ask_extension(
    route: &Route,
    c: Arc<Conn>,
    target: Target<'_>,
    algo: Algo,
    patience: Duration,
) -> Result<Vec<u8>, RemoteError> {
    match route {
        Route::Md5Hash => check_file::md5_hash(&c.sftp, target, patience).await,
        _ => check_file::check_file(&c.sftp, target, algo, patience).await,
    }
}

/// `files` cut into exec batches (see [`batch_len`]).
fn batches(files: &[(Vec<u8>, u64)]) -> Vec<std::ops::Range<usize>> {
    let mut v = Vec::new();
    let mut start = 0;
    while start < files.len() {
        let n = batch_len(files[start..].iter().map(|(p, _)| p.as_slice()));
        v.push(start..start + n);
        start += n;
    }
    v
}

/// How many of `names`, from the first, one exec run takes: at most [`BATCH_FILES`] files
/// and [`BATCH_NAME_BYTES`] bytes of names, and always the first (a longer name goes alone).
fn batch_len<'a>(names: impl IntoIterator<Item = &'a [u8]>) -> usize {
    let (mut n, mut bytes) = (0, 0);
    for p in names {
        if n > 0 && (n >= BATCH_FILES || bytes + p.len() > BATCH_NAME_BYTES) {
            break;
        }
        bytes += p.len() + 3;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_command_values() {
        assert_eq!(HashCommand::parse("none"), Ok(HashCommand::Forbidden));
        assert_eq!(
            HashCommand::parse("sha256sum %s"),
            Ok(HashCommand::Given(Algo::Sha256, "sha256sum %s".into()))
        );
        assert_eq!(
            HashCommand::parse("/usr/bin/md5 -q %s"),
            Ok(HashCommand::Given(Algo::Md5, "/usr/bin/md5 -q %s".into()))
        );
        assert_eq!(
            HashCommand::parse("b2sum %s"),
            Ok(HashCommand::Given(Algo::Blake2b, "b2sum %s".into()))
        );
        assert_eq!(
            HashCommand::parse("sha1:my-hash --file %s"),
            Ok(HashCommand::Given(Algo::Sha1, "my-hash --file %s".into()))
        );
        assert!(HashCommand::parse("sha256sum").is_err(), "no %s");
        assert!(HashCommand::parse("myhash %s").is_err(), "which algorithm?");
    }

    #[test]
    fn batches_are_bounded() {
        let files: Vec<(Vec<u8>, u64)> = (0..1234).map(|i| (vec![b'a'; 10 + i % 7], 0)).collect();
        let b = batches(&files);
        assert_eq!(b.first().unwrap().start, 0);
        assert_eq!(b.last().unwrap().end, files.len());
        assert!(b.iter().all(|r| r.len() <= BATCH_FILES && !r.is_empty()));
        assert!(b.windows(2).all(|w| w[0].end == w[1].start));
        let long: Vec<(Vec<u8>, u64)> = (0..100).map(|_| (vec![b'x'; 4000], 0)).collect();
        assert!(batches(&long)
            .iter()
            .all(|r| r.len() * 4003 <= BATCH_NAME_BYTES));
        assert!(batches(&[]).is_empty());
    }
}
