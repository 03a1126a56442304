//! The daemon's side: answers `status` on the mount's socket, to its user and root only.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::fs::Filesystem;

/// What the status says of the mount besides what the core knows.
#[derive(Debug, Clone)]
pub struct MountInfo {
    pub mountpoint: PathBuf,
    pub source: String,
    pub user: String,
    pub host: String,
    pub port: u16,
    pub transport: String,
    pub remote_dir: String,
    pub pid: u32,
    /// `-o revalidate=`: how often what is in use is checked (zero: never).
    pub revalidate: std::time::Duration,
    pub started: SystemTime,
    pub started_at: Instant,
}

/// The socket while the mount lives; removed on drop.
pub struct Listening {
    path: PathBuf,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Starts answering on the mount's socket (on the current runtime). The error is one line;
/// the mount works without its socket.
pub fn start(
    fs: Arc<Filesystem>,
    info: MountInfo,
    refresher: Arc<super::refresh::Refresher>,
) -> Result<Listening, String> {
    super::socket::make_dir()?;
    let path = super::socket::path_for(&info.mountpoint);
    // Left behind by a daemon that was killed: nobody answers on it.
    if path.exists() && std::os::unix::net::UnixStream::connect(&path).is_err() {
        let _ = std::fs::remove_file(&path);
    }
    let listener = UnixListener::bind(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let info = Arc::new(info);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, most likely: waiting beats spinning on the error.
                    tracing::debug!("status socket: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (fs, info, refresher) = (fs.clone(), info.clone(), refresher.clone());
            tokio::spawn(async move {
                if let Err(e) = answer(stream, &fs, &info, &refresher).await {
                    tracing::debug!("status socket: {e}");
                }
            });
        }
    });
    Ok(Listening { path })
}

async fn answer(
    stream: UnixStream,
    fs: &Filesystem,
    info: &MountInfo,
    refresher: &Arc<super::refresh::Refresher>,
) -> std::io::Result<()> {
    let me = nix::unistd::getuid().as_raw();
    let peer = stream.peer_cred()?.uid();
    if peer != me && peer != 0 {
        tracing::debug!("status socket: user {peer} refused");
        return Ok(());
    }
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    // A request is one short line: nobody gets to make the daemon buffer more.
    let mut rd = BufReader::new(tokio::io::AsyncReadExt::take(rd, 4096));
    let read = rd.read_line(&mut line);
    if tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .is_err()
    {
        return Ok(());
    }
    let line = line.trim_end_matches('\n');
    if line == "reauth" {
        let stream = rd
            .into_inner()
            .into_inner()
            .reunite(wr)
            .map_err(std::io::Error::other)?;
        return reauth(stream, fs).await;
    }
    if line == "verify" {
        // The paths follow; what the reader already holds of them goes along.
        let read_ahead = rd.buffer().to_vec();
        let stream = rd
            .into_inner()
            .into_inner()
            .reunite(wr)
            .map_err(std::io::Error::other)?;
        return super::verify_server::serve(read_ahead, stream, fs).await;
    }
    let reply = match line.split_once(' ').unwrap_or((line, "")) {
        ("status", "") => super::report::build(&fs.status(), info),
        ("sync", "") => {
            let failed: Vec<_> = fs
                .sync_all()
                .await
                .into_iter()
                .map(|u| {
                    serde_json::json!({
                        "op": u.op,
                        "path": String::from_utf8_lossy(&u.path),
                        "errno": (u.errno != 0).then(|| super::report::errno_name(u.errno)),
                        "kept_as": u.kept_as.map(|k| String::from_utf8_lossy(&k).into_owned()),
                    })
                })
                .collect();
            serde_json::json!({ "failed": failed })
        }
        // The path in hex: any bytes, no quoting.
        ("refresh", hex) => match unhex(hex) {
            Some(path) => serde_json::json!({ "refreshed": refresher.refresh(&path).await }),
            None => serde_json::json!({ "error": "bad path in refresh request" }),
        },
        _ => serde_json::json!({ "error": format!("unknown request '{line}'") }),
    };
    wr.write_all(reply.to_string().as_bytes()).await?;
    wr.write_all(b"\n").await?;
    wr.shutdown().await
}

/// `sftpfs reauth`: the login's questions go to the asking terminal, one JSON line each
/// (`{"tell": text}`, `{"ask": prompt, "echo": bool}` answered by `{"answer": text}`), then
/// `{"ok": true}` or `{"error": text}`. Answers are used for this login only: never logged,
/// never kept beyond what the login keeps (a password, as at mount time; never a one-time
/// code).
async fn reauth(stream: UnixStream, fs: &Filesystem) -> std::io::Result<()> {
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    let asker = Arc::new(SocketAsker(std::sync::Mutex::new((
        std::io::BufReader::new(stream.try_clone()?),
        stream,
    ))));
    tracing::info!("sftpfs reauth: logging in again");
    let result = fs.reauth(asker.clone()).await;
    let last = match &result {
        Ok(()) => serde_json::json!({ "ok": true }),
        Err(e) => serde_json::json!({ "error": e }),
    };
    if let Err(e) = &result {
        tracing::warn!("sftpfs reauth: {e}");
    }
    tokio::task::spawn_blocking(move || asker.send(&last))
        .await
        .map_err(std::io::Error::other)?
}

struct SocketAsker(
    std::sync::Mutex<(
        std::io::BufReader<std::os::unix::net::UnixStream>,
        std::os::unix::net::UnixStream,
    )>,
);

impl SocketAsker {
    fn send(&self, v: &serde_json::Value) -> std::io::Result<()> {
        use std::io::Write;
        let mut g = self.0.lock().unwrap();
        g.1.write_all(format!("{v}\n").as_bytes())
    }
}

impl crate::ssh::Asker for SocketAsker {
    fn tell(&self, text: &str) -> std::io::Result<()> {
        self.send(&serde_json::json!({ "tell": text }))
    }

    fn ask(&self, prompt: &str, echo: bool) -> std::io::Result<String> {
        use std::io::BufRead;
        self.send(&serde_json::json!({ "ask": prompt, "echo": echo }))?;
        let mut g = self.0.lock().unwrap();
        let mut line = String::new();
        if g.0.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "sftpfs reauth went away",
            ));
        }
        let v: serde_json::Value = serde_json::from_str(&line).map_err(std::io::Error::other)?;
        Ok(v["answer"].as_str().unwrap_or_default().to_string())
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(super) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
