//! The daemon's side of `sftpfs verify`: the regular files at or below some paths of the
//! mount, listed on the server (many directories at once), each with the digest the server
//! computes now (`ServerHashes::hash_many`: pipelined extension requests, or a few exec runs
//! of many files each) and, when this mount wrote it whole since, the digest of what it sent.

use futures::StreamExt;
use tokio::sync::mpsc;

use crate::fs::names::inode::{join, RelPath};
use crate::fs::{Filesystem, FsError};
use crate::remote::hash::{Algo, HashError};

/// One file's answer.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Below the mount root, in local names.
    pub path: RelPath,
    pub size: u64,
    /// The server's digest, or why there is none (errno and text).
    pub server: Result<Vec<u8>, (i32, String)>,
    /// What this mount sent when it last wrote the file whole (same size), if it did.
    pub sent: Option<Vec<u8>>,
}

/// Directories listed at once.
const LISTINGS_PARALLEL: usize = 16;
/// Files handed to the hashing at once: its answers come back this many at a time.
const CHUNK: usize = 2000;

impl Filesystem {
    /// The algorithm `sftpfs verify` uses: the best the server computes.
    pub async fn verify_algorithm(&self) -> Result<Algo, String> {
        let hashes = self
            .integrity
            .opts
            .hashes
            .as_ref()
            .ok_or("this mount computes no hashes")?;
        match hashes.best().await {
            Some(a) => Ok(a),
            None => Err(format!(
                "the server computes no hash: {}",
                hashes.status().missing
            )),
        }
    }

    /// Sends to `out` each regular file at or below `roots` (paths below the mount root),
    /// with its digests; a root that cannot be read is one answer with its error.
    pub async fn verify_tree(&self, roots: Vec<RelPath>, algo: Algo, out: mpsc::Sender<Verified>) {
        let Some(hashes) = self.integrity.opts.hashes.clone() else {
            return;
        };
        // What was queued lands first; with the server away the walk's own requests fail
        // and say so.
        let _ = self.settle().await;
        let files = self.walk(roots, &out).await;
        for chunk in files.chunks(CHUNK) {
            let to_hash: Vec<(Vec<u8>, u64)> = chunk
                .iter()
                .filter(|(_, size)| *size > 0)
                .map(|(p, size)| (self.remote(p), *size))
                .collect();
            let mut digests = hashes.hash_many(&to_hash, algo).await.into_iter();
            for (path, size) in chunk {
                let server = if *size == 0 {
                    // Nothing to ask: every server agrees on an empty file.
                    Ok(algo.digest(b""))
                } else {
                    match digests.next() {
                        Some(Ok(d)) => Ok(d),
                        Some(Err(e)) => Err(match e {
                            HashError::NoMeans(m) => (libc::ENODATA, m),
                            HashError::Failed(n, m) => (n, m),
                        }),
                        None => Err((libc::EIO, "no answer".into())),
                    }
                };
                let ino = self.inodes.lock().unwrap().ino_for(path);
                let sent = (self.integrity.digests.sent(ino))
                    .filter(|s| s.size == *size && s.algo == algo)
                    .map(|s| s.digest);
                let v = Verified {
                    path: path.clone(),
                    size: *size,
                    server,
                    sent,
                };
                if out.send(v).await.is_err() {
                    return;
                }
            }
        }
    }

    /// The regular files at or below `roots`, with their sizes, listed from the server.
    async fn walk(&self, roots: Vec<RelPath>, out: &mpsc::Sender<Verified>) -> Vec<(RelPath, u64)> {
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        for root in roots {
            match self.lstat_remote(&root).await {
                Ok(a) if a.is_dir() => dirs.push(root),
                Ok(a) if a.file_type() == Some(libc::S_IFREG) => {
                    files.push((root, a.size.unwrap_or(0)))
                }
                Ok(_) => {
                    let _ = out
                        .send(failed(
                            root,
                            libc::EINVAL,
                            "not a regular file or a directory",
                        ))
                        .await;
                }
                Err(e) => {
                    let e = FsError::from(e);
                    let _ = out.send(failed(root, e.errno, &e.to_string())).await;
                }
            }
        }
        while !dirs.is_empty() {
            // Boxed: a stream of borrowing futures is otherwise not provably `Send`.
            let lists: Vec<futures::future::BoxFuture<'_, _>> = dirs
                .drain(..)
                .map(|d| -> futures::future::BoxFuture<'_, _> {
                    Box::pin(async move {
                        let l = self.fetch_listing(&d).await;
                        (d, l)
                    })
                })
                .collect();
            let listed: Vec<_> = futures::stream::iter(lists)
                .buffer_unordered(LISTINGS_PARALLEL)
                .collect()
                .await;
            for (dir, listing) in listed {
                let listing = match listing {
                    Ok(l) => l,
                    Err(e) => {
                        let e = FsError::from(e);
                        let _ = out.send(failed(dir, e.errno, &e.to_string())).await;
                        continue;
                    }
                };
                let l = listing.lock().unwrap();
                let mut names: Vec<_> = l.entries.iter().collect();
                names.sort_by(|a, b| a.0.cmp(b.0));
                for (name, e) in names {
                    let path = join(&dir, name);
                    if e.attrs.is_dir() {
                        dirs.push(path);
                    } else if e.attrs.file_type() == Some(libc::S_IFREG) {
                        files.push((path, e.attrs.size.unwrap_or(0)));
                    }
                }
            }
        }
        files
    }
}

fn failed(path: RelPath, errno: i32, text: &str) -> Verified {
    Verified {
        path,
        size: 0,
        server: Err((errno, text.to_string())),
        sent: None,
    }
}
