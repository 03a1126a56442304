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
pub fn start(fs: Arc<Filesystem>, info: MountInfo) -> Result<Listening, String> {
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
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (fs, info) = (fs.clone(), info.clone());
            tokio::spawn(async move {
                if let Err(e) = answer(stream, &fs, &info).await {
                    tracing::debug!("status socket: {e}");
                }
            });
        }
    });
    Ok(Listening { path })
}

async fn answer(stream: UnixStream, fs: &Filesystem, info: &MountInfo) -> std::io::Result<()> {
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
    let reply = match line.trim() {
        "status" => super::report::build(&fs.status(), info),
        other => serde_json::json!({ "error": format!("unknown request '{other}'") }),
    };
    wr.write_all(reply.to_string().as_bytes()).await?;
    wr.write_all(b"\n").await?;
    wr.shutdown().await
}
