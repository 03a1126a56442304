//! The daemon's side of `sftpfs verify` on the mount's socket. After the request line
//! `verify`, the command sends the paths to verify (below the mount root, in hex: any
//! bytes), one a line, then an empty line. The daemon answers JSON lines: first
//! `{"algorithm": NAME}` (or `{"error": TEXT}`), then one per regular file
//! (`{"path": HEX, "size": N, "digest": HEX}`, or `"errno"` and `"error"` instead of the
//! digest; `"sent"`: the digest of what this mount last wrote whole to it), then
//! `{"done": true}`.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::report::errno_name;
use super::server::{hex, unhex};
use crate::fs::Filesystem;
use crate::remote::hash;

/// Paths one request may name, and the longest line (a path of 4096 bytes, in hex).
const MAX_ROOTS: usize = 100_000;
const MAX_LINE: u64 = 8 * 1024 + 2;

/// `read_ahead`: what was read of the request after its first line.
pub async fn serve(
    read_ahead: Vec<u8>,
    stream: UnixStream,
    fs: &Filesystem,
) -> std::io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(std::io::Cursor::new(read_ahead).chain(rd));
    let mut roots = Vec::new();
    loop {
        let mut line = String::new();
        let mut limited = (&mut rd).take(MAX_LINE);
        let read = limited.read_line(&mut line);
        let n = match tokio::time::timeout(std::time::Duration::from_secs(10), read).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        let l = line.trim_end_matches('\n');
        if n == 0 || !line.ends_with('\n') {
            return send(
                &mut wr,
                &serde_json::json!({ "error": "incomplete request" }),
            )
            .await;
        }
        if l.is_empty() {
            break;
        }
        match unhex(l) {
            Some(p) if roots.len() < MAX_ROOTS => roots.push(p),
            _ => {
                let e = serde_json::json!({ "error": "bad path in verify request" });
                return send(&mut wr, &e).await;
            }
        }
    }
    let algo = match fs.verify_algorithm().await {
        Ok(a) => a,
        Err(e) => return send(&mut wr, &serde_json::json!({ "error": e })).await,
    };
    send(&mut wr, &serde_json::json!({ "algorithm": algo.name() })).await?;
    let (tx, mut rx) = mpsc::channel(1024);
    let walk = fs.verify_tree(roots, algo, tx);
    let answer = async move {
        while let Some(v) = rx.recv().await {
            let mut line = serde_json::json!({ "path": hex(&v.path), "size": v.size });
            match &v.server {
                Ok(d) => line["digest"] = hash::hex(d).into(),
                Err((errno, text)) => {
                    line["errno"] = errno_name(*errno).into();
                    line["error"] = text.clone().into();
                }
            }
            if let Some(s) = &v.sent {
                line["sent"] = hash::hex(s).into();
            }
            // The command went away: the walk stops at its next answer.
            if send(&mut wr, &line).await.is_err() {
                break;
            }
        }
        wr
    };
    let ((), mut wr) = futures::future::join(walk, answer).await;
    send(&mut wr, &serde_json::json!({ "done": true })).await?;
    wr.shutdown().await
}

async fn send(
    wr: &mut tokio::net::unix::OwnedWriteHalf,
    v: &serde_json::Value,
) -> std::io::Result<()> {
    wr.write_all(format!("{v}\n").as_bytes()).await
}
