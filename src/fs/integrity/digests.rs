//! The digests a mount knows, per file (by inode number):
//!
//! - what the server computed, valid while the file's (size, mtime) is what it was then and
//!   no change of this mount began since (a write in the same second keeps the mtime): the
//!   xattrs answer from it, and `listxattr` lists only these, never computing anything;
//! - what this mount sent of a file it wrote whole (`verify_writes`), kept until this
//!   mount changes the file's data again: what `sftpfs verify` compares the server's
//!   digest with when it has no local copy to hash.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use crate::fs::names::inode::AttrMark;
use crate::remote::hash::Algo;

/// Files whose digests are kept (each a few hundred bytes).
const KEPT: usize = 65_536;

/// What a file was when a digest was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub size: u64,
    pub mtime: u32,
    /// The mount's changes of the file then (see `InodeTable::attr_mark`).
    pub mark: AttrMark,
}

#[derive(Debug)]
struct ServerDigests {
    version: Version,
    digests: Vec<(Algo, Vec<u8>)>,
}

/// The bytes this mount wrote, whole, to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub algo: Algo,
    pub digest: Vec<u8>,
    pub size: u64,
}

pub struct Digests {
    server: Mutex<LruCache<u64, ServerDigests>>,
    sent: Mutex<LruCache<u64, Sent>>,
}

impl Default for Digests {
    fn default() -> Self {
        let n = NonZeroUsize::new(KEPT).expect("not zero");
        Digests {
            server: Mutex::new(LruCache::new(n)),
            sent: Mutex::new(LruCache::new(n)),
        }
    }
}

impl Digests {
    /// The server's `algo` digest of file `ino` as it is now (`now`), if known.
    pub fn server(&self, ino: u64, now: Version, algo: Algo) -> Option<Vec<u8>> {
        let mut c = self.server.lock().unwrap();
        let e = c.get(&ino)?;
        if e.version != now {
            c.pop(&ino);
            return None;
        }
        e.digests
            .iter()
            .find(|(a, _)| *a == algo)
            .map(|(_, d)| d.clone())
    }

    /// The algorithms whose server digests of `ino` as it is now are known.
    pub fn known(&self, ino: u64, now: Version) -> Vec<Algo> {
        let mut c = self.server.lock().unwrap();
        match c.get(&ino) {
            Some(e) if e.version == now => {
                let mut v: Vec<Algo> = e.digests.iter().map(|(a, _)| *a).collect();
                v.sort();
                v
            }
            Some(_) => {
                c.pop(&ino);
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// The server computed `digest` of `ino` when it was `version`.
    pub fn put_server(&self, ino: u64, version: Version, algo: Algo, digest: Vec<u8>) {
        let mut c = self.server.lock().unwrap();
        match c.get_mut(&ino) {
            Some(e) if e.version == version => {
                e.digests.retain(|(a, _)| *a != algo);
                e.digests.push((algo, digest));
            }
            _ => {
                c.put(
                    ino,
                    ServerDigests {
                        version,
                        digests: vec![(algo, digest)],
                    },
                );
            }
        }
    }

    /// This mount wrote the whole of `ino`: `sent`.
    pub fn put_sent(&self, ino: u64, sent: Sent) {
        self.sent.lock().unwrap().put(ino, sent);
    }

    /// What this mount last wrote whole to `ino`, unless it changed its data since.
    pub fn sent(&self, ino: u64) -> Option<Sent> {
        self.sent.lock().unwrap().get(&ino).cloned()
    }

    /// This mount changes the data of `ino` (a write, a truncation, a copy into it): what
    /// it sent before is not the file any more, nor is what the server computed.
    pub fn data_changed(&self, ino: u64) {
        self.sent.lock().unwrap().pop(&ino);
        self.server.lock().unwrap().pop(&ino);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_holds_while_the_file_is_as_it_was() {
        let d = Digests::default();
        let v = Version {
            size: 3,
            mtime: 100,
            mark: Some((2, 2)),
        };
        d.put_server(7, v, Algo::Sha256, vec![1]);
        d.put_server(7, v, Algo::Md5, vec![2]);
        assert_eq!(d.server(7, v, Algo::Sha256), Some(vec![1]));
        assert_eq!(d.known(7, v), vec![Algo::Sha256, Algo::Md5]);
        // Another mtime, size or change of the mount: gone.
        for other in [
            Version { mtime: 101, ..v },
            Version { size: 4, ..v },
            Version {
                mark: Some((3, 3)),
                ..v
            },
        ] {
            d.put_server(7, v, Algo::Sha256, vec![1]);
            assert_eq!(d.server(7, other, Algo::Sha256), None);
            assert_eq!(d.known(7, v), vec![], "dropped");
        }
        d.put_sent(
            7,
            Sent {
                algo: Algo::Sha256,
                digest: vec![9],
                size: 3,
            },
        );
        d.put_server(7, v, Algo::Sha256, vec![1]);
        assert!(d.sent(7).is_some());
        d.data_changed(7);
        assert_eq!(d.sent(7), None);
        assert_eq!(d.server(7, v, Algo::Sha256), None);
    }
}
