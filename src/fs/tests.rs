//! The core against a real sftp-server, without FUSE.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use super::names::dir::Purpose;
use super::names::inode::ROOT_INO;
use super::write::write_behind::FUSE_WRITE_CACHE;
use super::*;
use crate::remote::testing::{ChildTransport, TempDir};
use crate::remote::{Pool, PoolOptions};

async fn mount_with(dir: &TempDir, opts: Options) -> (Arc<Filesystem>, Arc<ChildTransport>) {
    mount_hiding(dir, opts, vec![]).await
}

/// Against a server that does not offer the `hidden` extensions.
async fn mount_hiding(
    dir: &TempDir,
    opts: Options,
    hidden: Vec<&'static str>,
) -> (Arc<Filesystem>, Arc<ChildTransport>) {
    mount_on(dir, opts, ChildTransport::hiding(hidden)).await
}

async fn mount_on(
    dir: &TempDir,
    opts: Options,
    t: ChildTransport,
) -> (Arc<Filesystem>, Arc<ChildTransport>) {
    let t = Arc::new(t);
    let pool = Pool::connect(
        t.clone(),
        PoolOptions {
            max_conns: 2,
            timeout: std::time::Duration::from_secs(10),
            reconnect: true,
            idle: std::time::Duration::from_secs(60),
        },
    )
    .await
    .unwrap();
    let fs = Filesystem::new(pool, dir.0.as_os_str().as_bytes().to_vec(), opts);
    (fs, t)
}

/// An asynchronous mount whose journal (at most `max` bytes) is in a temp dir of its own,
/// returned to be kept as long as the mount.
async fn mount_journaled(
    dir: &TempDir,
    opts: Options,
    max: u64,
) -> (Arc<Filesystem>, Arc<ChildTransport>, TempDir) {
    let t = Arc::new(ChildTransport::hiding(vec![]));
    let pool = PoolOptions {
        max_conns: 2,
        timeout: std::time::Duration::from_secs(10),
        reconnect: true,
        idle: std::time::Duration::from_secs(60),
    };
    let pool = Pool::connect(t.clone(), pool).await.unwrap();
    let state = TempDir::new();
    let source = write::journal::directory::Source {
        user: "u".into(),
        host: "h".into(),
        port: 22,
        dir: dir.0.as_os_str().as_bytes().to_vec(),
    };
    let jdir = write::journal::directory::JournalDir::open(&state.0, &source).unwrap();
    let journal = write::journal::Journal::open(jdir, max, opts.write_behind_bytes).unwrap();
    let root = dir.0.as_os_str().as_bytes().to_vec();
    let fs = Filesystem::with_journal(pool, root, opts, Some(journal));
    (fs, t, state)
}

async fn mounted(dir: &TempDir) -> Arc<Filesystem> {
    mount_with(dir, Options::default()).await.0
}

const RW: i32 = libc::O_RDWR;

#[tokio::test]
async fn create_write_read_and_attributes() {
    let d = TempDir::new();
    let fs = mounted(&d).await;
    let (a, fh) = fs
        .create(
            ROOT_INO,
            b"f",
            libc::S_IFREG | 0o664,
            0o002,
            RW | libc::O_EXCL,
        )
        .await
        .unwrap();
    // The server's umask (022) must not take away the group write bit asked for.
    assert_eq!(a.perm, 0o664);
    assert_eq!(
        std::fs::metadata(d.join("f")).unwrap().mode() & 0o777,
        0o664
    );
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(
        fs.write(fh, 0, data.clone(), RW, 0).await.unwrap(),
        data.len() as u32
    );
    let back = fs.read(fh, 0, 2_000_000).await.unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back[..] == data[..]);
    assert_eq!(
        &fs.read(fh, 999_990, 100).await.unwrap()[..],
        &data[999_990..]
    );
    fs.fsync(fh).await.unwrap();
    fs.flush(fh).await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(std::fs::read(d.join("f")).unwrap(), data);
    let st = fs.getattr(a.ino.0, None).await.unwrap();
    assert_eq!(st.size, data.len() as u64);
    // O_EXCL on an existing name.
    let e = fs
        .create(ROOT_INO, b"f", libc::S_IFREG | 0o644, 0, RW | libc::O_EXCL)
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::EEXIST);
}

#[tokio::test]
async fn errors_are_disambiguated() {
    let d = TempDir::new();
    let fs = mounted(&d).await;
    std::fs::create_dir_all(d.join("full/sub")).unwrap();
    std::fs::write(d.join("file"), b"x").unwrap();
    assert_eq!(
        fs.lookup(ROOT_INO, b"nope").await.unwrap_err().errno,
        libc::ENOENT
    );
    assert_eq!(
        fs.mkdir(ROOT_INO, b"full", 0o755, 0)
            .await
            .unwrap_err()
            .errno,
        libc::EEXIST
    );
    assert_eq!(
        fs.rmdir(ROOT_INO, b"full").await.unwrap_err().errno,
        libc::ENOTEMPTY
    );
    assert_eq!(
        fs.rmdir(ROOT_INO, b"file").await.unwrap_err().errno,
        libc::ENOTDIR
    );
    assert_eq!(
        fs.unlink(ROOT_INO, b"full").await.unwrap_err().errno,
        libc::EISDIR
    );
    let dir = fs.lookup(ROOT_INO, b"full").await.unwrap();
    assert_eq!(
        fs.open(dir.ino.0, RW).await.unwrap_err().errno,
        libc::EISDIR
    );
    assert_eq!(
        fs.symlink(ROOT_INO, b"file", b"x").await.unwrap_err().errno,
        libc::EEXIST
    );
    std::fs::create_dir(d.join("empty")).unwrap();
    assert_eq!(
        fs.rename(ROOT_INO, b"empty", ROOT_INO, b"full", 0)
            .await
            .unwrap_err()
            .errno,
        libc::ENOTEMPTY
    );
    assert_eq!(
        fs.rename(
            ROOT_INO,
            b"file",
            ROOT_INO,
            b"empty",
            libc::RENAME_NOREPLACE
        )
        .await
        .unwrap_err()
        .errno,
        libc::EEXIST
    );
}

#[tokio::test]
async fn rename_keeps_inode_and_replaces_atomically() {
    let d = TempDir::new();
    let fs = mounted(&d).await;
    std::fs::write(d.join("a"), b"new").unwrap();
    std::fs::write(d.join("b"), b"old").unwrap();
    let a = fs.lookup(ROOT_INO, b"a").await.unwrap();
    fs.rename(ROOT_INO, b"a", ROOT_INO, b"b", 0).await.unwrap();
    assert_eq!(std::fs::read(d.join("b")).unwrap(), b"new");
    let b = fs.lookup(ROOT_INO, b"b").await.unwrap();
    assert_eq!(a.ino, b.ino);
    assert_eq!(fs.getattr(a.ino.0, None).await.unwrap().size, 3);
}

#[tokio::test]
async fn unlinked_open_file_keeps_working() {
    let d = TempDir::new();
    let fs = mounted(&d).await;
    let (a, fh) = fs
        .create(ROOT_INO, b"tmp", libc::S_IFREG | 0o600, 0, RW)
        .await
        .unwrap();
    fs.write(fh, 0, b"hello".to_vec(), RW, 0).await.unwrap();
    fs.unlink(ROOT_INO, b"tmp").await.unwrap();
    assert!(!d.join("tmp").exists());
    fs.write(fh, 5, b" world".to_vec(), RW, 0).await.unwrap();
    assert_eq!(&fs.read(fh, 0, 100).await.unwrap()[..], b"hello world");
    assert_eq!(fs.getattr(a.ino.0, None).await.unwrap().size, 11);
    let t = fs
        .setattr(
            a.ino.0,
            Some(fh),
            SetAttr {
                size: Some(5),
                ..SetAttr::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(t.size, 5);
    fs.release(fh).await.unwrap();
    fs.forget(a.ino.0, 1);
    assert_eq!(fs.inodes.lock().unwrap().len(), 1, "only the root is left");
}

#[tokio::test]
async fn hard_links_symlinks_and_setattr() {
    let d = TempDir::new();
    let fs = mounted(&d).await;
    std::fs::write(d.join("f"), b"data").unwrap();
    let f = fs.lookup(ROOT_INO, b"f").await.unwrap();
    let l = fs.link(f.ino.0, ROOT_INO, b"g").await.unwrap();
    assert_eq!(l.ino, f.ino);
    assert_eq!(l.nlink, 2);
    assert_eq!(
        std::fs::metadata(d.join("g")).unwrap().ino(),
        std::fs::metadata(d.join("f")).unwrap().ino()
    );
    let s = fs.symlink(ROOT_INO, b"s", b"sub/f").await.unwrap();
    assert_eq!(fs.readlink(s.ino.0).await.unwrap(), b"sub/f");
    assert_eq!(
        std::fs::read_link(d.join("s"))
            .unwrap()
            .as_os_str()
            .as_bytes(),
        b"sub/f"
    );
    // A target with `..` is stored as given but refused (contain_symlinks, as sshfs 3.7.6).
    let out = fs
        .symlink(ROOT_INO, b"out", b"../elsewhere/f")
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_link(d.join("out"))
            .unwrap()
            .as_os_str()
            .as_bytes(),
        b"../elsewhere/f"
    );
    assert_eq!(fs.readlink(out.ino.0).await.unwrap_err().errno, libc::EPERM);
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(981_173_106);
    let a = fs
        .setattr(
            f.ino.0,
            None,
            SetAttr {
                mode: Some(0o100600),
                mtime: Some(SetTime::At(t)),
                ..SetAttr::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(a.perm, 0o600);
    assert_eq!(a.mtime, t);
    let m = std::fs::metadata(d.join("f")).unwrap();
    assert_eq!((m.mode() & 0o777, m.mtime()), (0o600, 981_173_106));
    // atime untouched by an mtime-only change.
    assert_ne!(m.atime(), 0);
}

#[tokio::test]
async fn readdir_serves_all_entries_with_offsets() {
    let d = TempDir::new();
    let fs = mounted(&d).await;
    for i in 0..250 {
        std::fs::write(d.join(&format!("n{i:03}")), b"").unwrap();
    }
    std::fs::write(d.join("caf\u{e9}"), b"").unwrap();
    let fh = fs.opendir(ROOT_INO).await.unwrap();
    let mut names = Vec::new();
    let mut offset = 0;
    loop {
        let mut batch = 0;
        fs.readdir(fh, offset, true, |e| {
            if batch == 40 {
                return false;
            }
            batch += 1;
            offset = e.offset;
            names.push(e.name.to_vec());
            true
        })
        .unwrap();
        if batch == 0 {
            break;
        }
    }
    fs.releasedir(fh);
    assert_eq!(names.len(), 253);
    assert_eq!(&names[..2], &[b".".to_vec(), b"..".to_vec()]);
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 253, "no entry twice");
    // readdirplus counted one lookup per entry: the nodes exist now.
    let ino = fs.inodes.lock().unwrap().ino_for(b"n007");
    assert!(fs.inodes.lock().unwrap().get(ino).is_some());
}

#[tokio::test]
async fn read_only_refuses_changes() {
    let d = TempDir::new();
    let (fs, _) = mount_with(
        &d,
        Options {
            read_only: true,
            ..Options::default()
        },
    )
    .await;
    assert_eq!(
        fs.mkdir(ROOT_INO, b"x", 0o755, 0).await.unwrap_err().errno,
        libc::EROFS
    );
    assert!(!d.join("x").exists());
}

#[tokio::test]
async fn writes_survive_a_dead_connection_and_are_replayed_in_order() {
    let d = TempDir::new();
    let (fs, t) = mount_with(&d, Options::default()).await;
    let (_a, fh) = fs
        .create(ROOT_INO, b"f", libc::S_IFREG | 0o644, 0, RW)
        .await
        .unwrap();
    let mut model = vec![0u8; 3_000_000];
    for round in 0..3u8 {
        // Overlapping rewrites: order on the wire matters.
        for (i, chunk) in model.chunks_mut(700_000).enumerate() {
            chunk.fill(round * 10 + i as u8);
        }
        for (i, chunk) in model.chunks(700_000).enumerate() {
            fs.write(fh, (i * 700_000) as u64, chunk.to_vec(), RW, 0)
                .await
                .unwrap();
        }
        // Kill every server mid-flight: unacknowledged writes must be replayed.
        t.kill_all();
    }
    fs.flush(fh).await.unwrap();
    assert_eq!(&fs.read(fh, 0, 3_000_000).await.unwrap()[..], &model[..]);
    fs.release(fh).await.unwrap();
    assert!(std::fs::read(d.join("f")).unwrap() == model);
    assert!(
        t.opened.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "reconnected"
    );
}

#[tokio::test]
async fn a_refused_write_is_reported_at_flush_and_close() {
    let d = TempDir::new();
    let fs = mounted(&d).await;
    std::fs::write(d.join("ro"), b"x").unwrap();
    let a = fs.lookup(ROOT_INO, b"ro").await.unwrap();
    // A read-only handle: the server refuses the write, which was already answered.
    let o = fs.open(a.ino.0, libc::O_RDONLY).await.ok().unwrap();
    fs.write(o.fh, 0, b"data".to_vec(), RW, 0).await.unwrap();
    let e = fs.flush(o.fh).await.unwrap_err();
    assert_ne!(e.errno, 0);
    // Every close of the open file reports it (another may be a forked child's), then
    // fsync once, and the last close is quiet about what was reported.
    assert_eq!(fs.flush(o.fh).await.unwrap_err().errno, e.errno);
    assert_eq!(fs.fsync(o.fh).await.unwrap_err().errno, e.errno);
    fs.fsync(o.fh).await.unwrap();
    fs.release(o.fh).await.unwrap();
    assert_eq!(std::fs::read(d.join("ro")).unwrap(), b"x");
}

#[tokio::test]
async fn sequential_reads_use_read_ahead_and_match_the_file() {
    let d = TempDir::new();
    let fs = mounted(&d).await;
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(d.join("big"), &data).unwrap();
    let a = fs.lookup(ROOT_INO, b"big").await.unwrap();
    let o = fs.open(a.ino.0, libc::O_RDONLY).await.ok().unwrap();
    let mut got = Vec::new();
    let mut off = 0u64;
    loop {
        let b = fs.read(o.fh, off, 131072).await.unwrap();
        if b.is_empty() {
            break;
        }
        off += b.len() as u64;
        got.extend_from_slice(&b);
    }
    assert!(got == data);
    // Random reads are right too.
    for &(o2, n) in &[(4_999_990u64, 100u32), (12_345, 7), (3_000_000, 300_000)] {
        let b = fs.read(o.fh, o2, n).await.unwrap();
        let end = (o2 as usize + n as usize).min(data.len());
        assert_eq!(&b[..], &data[o2 as usize..end]);
    }
    fs.release(o.fh).await.unwrap();
    assert_eq!(
        fs.readahead_bytes.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test]
async fn mode_and_times_of_a_new_file_are_set_behind_its_writes_and_replayed() {
    use std::os::unix::fs::PermissionsExt;
    let d = TempDir::new();
    let (fs, t) = mount_with(&d, Options::default()).await;
    let excl = RW | libc::O_CREAT | libc::O_EXCL;
    let (a, fh) = fs
        .create(ROOT_INO, b"f", libc::S_IFREG | 0o600, 0, excl)
        .await
        .unwrap();
    let ino = a.ino.0;
    fs.write(fh, 0, b"content".to_vec(), RW, 0).await.unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    let set = |mode, mtime| SetAttr {
        mode,
        uid: None,
        gid: None,
        size: None,
        atime: None,
        mtime,
    };
    // As tar does it: times, then mode, both answered at once with what they will be.
    let got = fs
        .setattr(ino, None, set(None, Some(SetTime::At(when))))
        .await
        .unwrap();
    assert_eq!(got.mtime, when);
    assert_eq!(got.size, 7, "the size the write implies");
    // With the server frozen, the answers still come at once: nothing waits for it. The
    // chown to the owner it has (tar, cp -a) costs nothing either.
    t.signal_all(libc::SIGSTOP);
    let me = std::fs::metadata(d.join("f")).unwrap();
    let chown = SetAttr {
        uid: Some(me.uid()),
        gid: Some(me.gid()),
        ..set(None, None)
    };
    let at_once = std::time::Duration::from_secs(3);
    let got = tokio::time::timeout(at_once, fs.setattr(ino, None, chown))
        .await
        .expect("the no-op chown waited for the server")
        .unwrap();
    assert_eq!(got.size, 7);
    let got = tokio::time::timeout(at_once, fs.setattr(ino, None, set(Some(0o644), None)))
        .await
        .expect("setattr waited for the server")
        .unwrap();
    assert_eq!(got.perm, 0o644);
    assert!(fs.files.get(fh).unwrap().has_pending(), "queued");
    // The connection dies with the FSETSTAT unanswered: it is replayed after the writes.
    t.kill_all();
    fs.flush(fh).await.unwrap();
    let md = std::fs::metadata(d.join("f")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o644);
    assert_eq!(md.mtime(), 1_000_000_000);
    assert_eq!(std::fs::read(d.join("f")).unwrap(), b"content");
    // A stat waits for them and asks the server.
    let st = fs.getattr(ino, None).await.unwrap();
    assert_eq!((st.perm, st.mtime), (0o644, when));
    fs.release(fh).await.unwrap();
    // A file opened without O_EXCL (maybe not ours) is changed the usual way.
    let a = fs.lookup(ROOT_INO, b"f").await.unwrap();
    let o = fs.open(a.ino.0, RW).await.ok().unwrap();
    let f = fs.files.get(o.fh).unwrap();
    assert!(!f.made_here.load(std::sync::atomic::Ordering::SeqCst));
    fs.setattr(a.ino.0, None, set(Some(0o640), None))
        .await
        .unwrap();
    assert!(!f.has_pending(), "nothing queued");
    assert_eq!(
        std::fs::metadata(d.join("f")).unwrap().permissions().mode() & 0o7777,
        0o640
    );
    fs.release(o.fh).await.unwrap();
}

#[tokio::test]
async fn a_long_sequential_read_uses_two_connections_and_survives_losing_one() {
    use super::handle::Second;
    let d = TempDir::new();
    let (fs, t) = mount_with(&d, Options::default()).await;
    // One member at first: the read itself makes the pool grow.
    assert_eq!(t.opened.load(std::sync::atomic::Ordering::SeqCst), 1);
    let data: Vec<u8> = (0..24_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(d.join("big"), &data).unwrap();
    let a = fs.lookup(ROOT_INO, b"big").await.unwrap();
    let o = fs.open(a.ino.0, libc::O_RDONLY).await.ok().unwrap();
    let f = fs.files.get(o.fh).unwrap();
    let mut got = Vec::new();
    let (mut second_slot, mut killed) = (None, false);
    while got.len() < data.len() {
        let b = fs.read(o.fh, got.len() as u64, 1 << 20).await.unwrap();
        assert!(!b.is_empty(), "early end of file at {}", got.len());
        got.extend_from_slice(&b);
        if let Second::Ready(c, _) = &*f.second.lock().unwrap() {
            second_slot.get_or_insert(c.slot);
        }
        if let (Some(slot), false, true) = (second_slot, killed, got.len() > 12_000_000) {
            // The second connection dies mid-read: its chunks go back to the first.
            t.kill_nth(slot);
            killed = true;
        }
    }
    assert!(second_slot.is_some(), "the read never got a second handle");
    let n = f.second_chunks.load(std::sync::atomic::Ordering::Relaxed);
    assert!(n >= 10, "the second handle served {n} chunks");
    assert!(killed);
    assert!(got == data, "bytes differ");
    fs.release(o.fh).await.unwrap();
    assert!(matches!(*f.second.lock().unwrap(), Second::Unavailable));
}

/// A write into a file whose size the cache does not hold (cache off, or its entry gone
/// when another descriptor's writes landed): the size it implies is the file's, not its end.
#[tokio::test]
async fn a_write_inside_a_file_of_unknown_size_keeps_the_size() {
    let d = TempDir::new();
    let (fs, _) = mount_with(
        &d,
        Options {
            cache: CacheOptions {
                enabled: false,
                ..CacheOptions::default()
            },
            ..Options::default()
        },
    )
    .await;
    std::fs::write(d.join("big"), vec![b'x'; 100_000]).unwrap();
    let ino = fs.lookup(ROOT_INO, b"big").await.unwrap().ino.0;
    let o = fs.open(ino, RW).await.unwrap();
    fs.write(o.fh, 10, b"hello".to_vec(), RW, 0).await.unwrap();
    // Answered with the size the queued write implies (no drain, unlike getattr).
    assert_eq!(fs.lookup(ROOT_INO, b"big").await.unwrap().size, 100_000);
    fs.release(o.fh).await.unwrap();
    assert_eq!(fs.getattr(ino, None).await.unwrap().size, 100_000);
    assert_eq!(std::fs::metadata(d.join("big")).unwrap().len(), 100_000);
}

#[tokio::test]
async fn lookups_after_a_listing_cost_no_round_trip_and_server_changes_show_after_the_ttl() {
    let d = TempDir::new();
    let (fs, _) = mount_with(
        &d,
        Options {
            cache: CacheOptions {
                stat_ttl: std::time::Duration::from_millis(300),
                dir_ttl: std::time::Duration::from_millis(300),
                negative_ttl: std::time::Duration::from_millis(300),
                ..CacheOptions::default()
            },
            ..Options::default()
        },
    )
    .await;
    std::fs::write(d.join("a"), b"1").unwrap();
    let fh = fs.opendir(ROOT_INO).await.unwrap();
    fs.releasedir(fh);
    // Made on the server after the listing: not seen until the listing expires.
    std::fs::write(d.join("b"), b"22").unwrap();
    assert_eq!(
        fs.lookup(ROOT_INO, b"b").await.unwrap_err().errno,
        libc::ENOENT
    );
    assert_eq!(fs.lookup(ROOT_INO, b"a").await.unwrap().size, 1);
    // A local change is visible at once.
    fs.mkdir(ROOT_INO, b"m", 0o755, 0).await.unwrap();
    assert!(fs.lookup(ROOT_INO, b"m").await.is_ok());
    std::fs::write(d.join("m/inside"), b"").unwrap();
    assert_eq!(
        fs.lookup(fs.lookup(ROOT_INO, b"m").await.unwrap().ino.0, b"inside")
            .await
            .unwrap_err()
            .errno,
        libc::ENOENT,
        "a directory made here is known empty until the listing times out"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match fs.lookup(ROOT_INO, b"b").await {
            Ok(a) => {
                assert_eq!(a.size, 2);
                break;
            }
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(e) => panic!("server change never became visible: {e}"),
        }
    }
}

#[tokio::test]
async fn copy_file_range_copies_on_the_server() {
    let d = TempDir::new();
    let fs = mounted(&d).await;
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(d.join("src"), &data).unwrap();
    let s = fs.lookup(ROOT_INO, b"src").await.unwrap();
    let i = fs.open(s.ino.0, libc::O_RDONLY).await.ok().unwrap();
    let (_, o) = fs
        .create(ROOT_INO, b"dst", libc::S_IFREG | 0o644, 0, libc::O_WRONLY)
        .await
        .unwrap();
    assert_eq!(
        fs.copy_file_range(i.fh, 0, o, 0, 1 << 30).await.unwrap(),
        1_000_000
    );
    assert_eq!(
        fs.copy_file_range(i.fh, 1_000_000, o, 0, 10).await.unwrap(),
        0
    );
    fs.release(o).await.unwrap();
    fs.release(i.fh).await.unwrap();
    assert!(std::fs::read(d.join("dst")).unwrap() == data);
}

/// The server refuses what it cannot copy (OpenSSH: one file as both ends): EOPNOTSUPP, on
/// which the kernel copies through read and write, never EIO.
#[tokio::test]
async fn copy_file_range_leaves_to_the_kernel_what_the_server_cannot_copy() {
    let d = TempDir::new();
    let fs = mounted(&d).await;
    std::fs::write(d.join("f"), vec![7u8; 100_000]).unwrap();
    let f = fs.lookup(ROOT_INO, b"f").await.unwrap();
    let a = fs.open(f.ino.0, libc::O_RDWR).await.ok().unwrap();
    let b = fs.open(f.ino.0, libc::O_RDWR).await.ok().unwrap();
    for (i, o) in [(a.fh, a.fh), (a.fh, b.fh)] {
        let e = fs.copy_file_range(i, 0, o, 50_000, 10).await.unwrap_err();
        assert_eq!(e.errno, libc::EOPNOTSUPP);
    }
    fs.release(a.fh).await.unwrap();
    fs.release(b.fh).await.unwrap();
}

/// A change through one name of a hard-linked file is seen through the other at once; a
/// change of a directory's entries drops the directory's attributes (its mtime moved).
#[tokio::test]
async fn attributes_belong_to_the_file_and_entries_to_the_directory() {
    let d = TempDir::new();
    let fs = mounted(&d).await;
    std::fs::create_dir(d.join("dir")).unwrap();
    let dir = fs.lookup(ROOT_INO, b"dir").await.unwrap();
    let (a, fh) = fs
        .create(dir.ino.0, b"a", libc::S_IFREG | 0o644, 0, libc::O_WRONLY)
        .await
        .unwrap();
    fs.release(fh).await.unwrap();
    fs.link(a.ino.0, ROOT_INO, b"b").await.unwrap();
    let b = fs.lookup(ROOT_INO, b"b").await.unwrap();
    assert_eq!((b.ino, b.nlink), (a.ino, 2));
    let set = SetAttr {
        size: Some(777),
        mode: Some(0o600),
        ..SetAttr::default()
    };
    fs.setattr(a.ino.0, None, set).await.unwrap();
    // The kernel asks by inode; the cache answers by name: every name must agree.
    for name in [&b"dir/a"[..], b"b"] {
        let e = fs.cache.attrs(name).expect("cached");
        assert_eq!(e.attrs.size, Some(777), "{}", String::from_utf8_lossy(name));
        assert_eq!(e.attrs.permissions.unwrap() & 0o7777, 0o600);
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.join("dir"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let old = std::fs::metadata(d.join("dir")).unwrap().mtime();
    let stat = |fs: &Arc<Filesystem>, ino| {
        let fs = fs.clone();
        async move { fs.getattr(ino, None).await.unwrap() }
    };
    assert_eq!(stat(&fs, dir.ino.0).await.perm, 0o700);
    fs.unlink(dir.ino.0, b"a").await.unwrap();
    assert!(
        fs.cache.attrs(b"dir").is_none(),
        "the directory's times moved"
    );
    assert_eq!(stat(&fs, b.ino.0).await.nlink, 1);
    assert!(std::fs::metadata(d.join("dir")).unwrap().mtime() >= old);
}

/// open(O_TRUNC) while another descriptor that wrote the file is open: the size its writes
/// implied and the data its read-ahead holds end with the truncate, as after a setattr.
#[tokio::test]
async fn a_truncating_open_ends_the_size_and_read_ahead_of_another_descriptor() {
    let d = TempDir::new();
    let fs = mounted(&d).await;
    let (a, fh) = fs
        .create(ROOT_INO, b"f", libc::S_IFREG | 0o644, 0, RW | libc::O_EXCL)
        .await
        .unwrap();
    let ino = a.ino.0;
    let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    fs.write(fh, 0, data.clone(), RW, 0).await.unwrap();
    // A sequential run: read-ahead fetches past what was asked.
    for off in [0u64, 131_072] {
        let b = fs.read(fh, off, 131_072).await.unwrap();
        assert_eq!(&b[..], &data[off as usize..off as usize + 131_072]);
    }
    let t = fs.open(ino, RW | libc::O_TRUNC).await.unwrap().fh;
    assert_eq!(std::fs::metadata(d.join("f")).unwrap().len(), 0);
    assert_eq!(fs.getattr(ino, None).await.unwrap().size, 0, "stat by name");
    assert_eq!(fs.getattr(ino, Some(fh)).await.unwrap().size, 0, "fstat");
    assert!(
        fs.read(fh, 262_144, 131_072).await.unwrap().is_empty(),
        "read-ahead of the first descriptor outlived the truncate"
    );
    fs.write(t, 0, b"abc".to_vec(), RW, 0).await.unwrap();
    assert_eq!(fs.getattr(ino, None).await.unwrap().size, 3);
    for h in [fh, t] {
        fs.flush(h).await.unwrap();
        fs.release(h).await.unwrap();
        assert_eq!(fs.getattr(ino, None).await.unwrap().size, 3);
    }
    assert_eq!(std::fs::read(d.join("f")).unwrap(), b"abc");
}

#[tokio::test]
async fn o_append_writes_go_at_the_end_this_mount_knows_and_cache_writes_stay_put() {
    let d = TempDir::new();
    let (fs, t) = mount_with(&d, Options::default()).await;
    std::fs::write(d.join("f"), vec![b'a'; 100]).unwrap();
    let ino = fs.lookup(ROOT_INO, b"f").await.unwrap().ino.0;
    // Grown behind the mount's back: the kernel still says 100, open's LSTAT says 150.
    std::fs::write(d.join("f"), vec![b'a'; 150]).unwrap();
    let append = RW | libc::O_APPEND;
    let a = fs.open(ino, append).await.unwrap().fh;
    fs.write(a, 100, b"one".to_vec(), append, 0).await.unwrap();
    // Writeback of an mmap page through the O_APPEND handle: at its own offset.
    fs.write(a, 0, b"page".to_vec(), append, FUSE_WRITE_CACHE)
        .await
        .unwrap();
    // Another descriptor's write, perhaps still travelling, sets the end for the next append.
    let b = fs.open(ino, RW).await.unwrap().fh;
    fs.write(b, 1000, vec![b'b'; 1000], RW, 0).await.unwrap();
    fs.write(a, 153, b"two".to_vec(), append, 0).await.unwrap();
    assert_eq!(fs.getattr(ino, None).await.unwrap().size, 2003);
    // A reconnect re-opens the handle without SSH_FXF_APPEND: replayed and later writes
    // land where they were placed.
    fs.write(a, 0, b"PAGE".to_vec(), append, FUSE_WRITE_CACHE)
        .await
        .unwrap();
    t.kill_all();
    fs.write(a, 0, b"three".to_vec(), append, 0).await.unwrap();
    fs.release(b).await.unwrap();
    fs.release(a).await.unwrap();
    let mut want = vec![b'a'; 150];
    want[..4].copy_from_slice(b"PAGE");
    want.extend_from_slice(b"one");
    want.resize(1000, 0);
    want.extend_from_slice(&[b'b'; 1000]);
    want.extend_from_slice(b"twothree");
    assert!(std::fs::read(d.join("f")).unwrap() == want);
}

/// Waits until the filesystem has seen the connection of open file `fh` die.
async fn until_dead(fs: &Filesystem, fh: u64) {
    let f = fs.files.get(fh).unwrap();
    for _ in 0..500 {
        if !f.current().0.is_alive() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the killed connection still looks alive");
}

/// A file renamed over while open cannot be re-opened after its connection dies: a write to
/// it fails as a whole. Answered before the re-open was tried, it would fail only the next
/// write, and the kernel (which splits a write(2) at the first page boundary) would report
/// a short write of bytes that never landed.
#[tokio::test]
async fn a_write_to_a_file_that_cannot_be_reopened_fails_whole() {
    let d = TempDir::new();
    let (fs, t) = mount_with(&d, Options::default()).await;
    let (_, fh) = fs
        .create(ROOT_INO, b"victim", libc::S_IFREG | 0o644, 0, RW)
        .await
        .unwrap();
    fs.write(fh, 0, vec![1; 5000], RW, 0).await.unwrap();
    fs.flush(fh).await.unwrap();
    std::fs::write(d.join("other"), b"new").unwrap();
    fs.lookup(ROOT_INO, b"other").await.unwrap();
    fs.rename(ROOT_INO, b"other", ROOT_INO, b"victim", 0)
        .await
        .unwrap();
    t.kill_all();
    until_dead(&fs, fh).await;
    let e = fs.write(fh, 5000, vec![2; 3000], RW, 0).await.unwrap_err();
    assert_eq!(e.errno, libc::EIO);
    assert_eq!(fs.flush(fh).await.unwrap_err().errno, libc::EIO);
    fs.release(fh).await.unwrap();
    assert_eq!(std::fs::read(d.join("victim")).unwrap(), b"new");
}

/// copy_file_range on files whose connection died re-opens them, as every other request
/// on an open file does, instead of failing with EIO.
#[tokio::test]
async fn copy_file_range_after_a_dead_connection_reopens_the_files() {
    let d = TempDir::new();
    let (fs, t) = mount_with(&d, Options::default()).await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(d.join("src"), &data).unwrap();
    let s = fs.lookup(ROOT_INO, b"src").await.unwrap();
    let i = fs.open(s.ino.0, libc::O_RDONLY).await.ok().unwrap();
    let (_, o) = fs
        .create(ROOT_INO, b"dst", libc::S_IFREG | 0o644, 0, RW)
        .await
        .unwrap();
    t.kill_all();
    until_dead(&fs, i.fh).await;
    until_dead(&fs, o).await;
    assert_eq!(
        fs.copy_file_range(i.fh, 1000, o, 0, 100_000).await.unwrap(),
        100_000
    );
    fs.release(o).await.unwrap();
    fs.release(i.fh).await.unwrap();
    assert!(std::fs::read(d.join("dst")).unwrap() == data[1000..101_000]);
}

/// A listing answered while a link of the file travels may already count it; it must not
/// set the count that the link's own update then raises once more (fsx: nlink 4 for 3).
#[tokio::test]
async fn a_listing_answered_during_a_link_does_not_count_it_twice() {
    let d = TempDir::new();
    let fs = mounted(&d).await;
    std::fs::write(d.join("a"), "x").unwrap();
    std::fs::hard_link(d.join("a"), d.join("b")).unwrap();
    let a = fs.lookup(ROOT_INO, b"a").await.unwrap().ino.0;
    fs.listing_shared(b"", Purpose::Asked).await.unwrap();
    let nlink = |fs: &Arc<Filesystem>| fs.inodes.lock().unwrap().get(a).unwrap().nlink;
    assert_eq!(nlink(&fs), Some(2));
    let change = super::names::inode::InodeTable::begin_change(&fs.inodes, b"a");
    // The server made the link; a listing fetched now shows it.
    std::fs::hard_link(d.join("a"), d.join("c")).unwrap();
    fs.cache.clear();
    fs.listing_shared(b"", Purpose::Asked).await.unwrap();
    assert_eq!(nlink(&fs), Some(2), "learned while the link travelled");
    drop(change);
    fs.cache.clear();
    fs.listing_shared(b"", Purpose::Asked).await.unwrap();
    assert_eq!(nlink(&fs), Some(3));
}

#[tokio::test]
async fn rename_over_a_name_without_posix_rename_moves_the_old_file_aside() {
    let d = TempDir::new();
    let (fs, _t) = mount_hiding(&d, Options::default(), vec!["posix-rename@openssh.com"]).await;
    let c = fs.pool().get(0).await.unwrap();
    assert!(!c.sftp.profile().has(crate::remote::Ext::PosixRename));
    std::fs::write(d.join("new"), b"new").unwrap();
    std::fs::write(d.join("old"), b"old").unwrap();
    fs.lookup(ROOT_INO, b"new").await.unwrap();
    fs.lookup(ROOT_INO, b"old").await.unwrap();
    fs.rename(ROOT_INO, b"new", ROOT_INO, b"old", 0)
        .await
        .unwrap();
    assert_eq!(std::fs::read(d.join("old")).unwrap(), b"new");
    let left: Vec<_> = std::fs::read_dir(&d.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("old")],
        "nothing left aside"
    );
    // A directory in the way must be empty; a full one stays whole.
    std::fs::create_dir(d.join("src")).unwrap();
    std::fs::create_dir(d.join("full")).unwrap();
    std::fs::write(d.join("full/keep"), b"k").unwrap();
    fs.lookup(ROOT_INO, b"src").await.unwrap();
    fs.lookup(ROOT_INO, b"full").await.unwrap();
    let e = fs
        .rename(ROOT_INO, b"src", ROOT_INO, b"full", 0)
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::ENOTEMPTY);
    assert_eq!(std::fs::read(d.join("full/keep")).unwrap(), b"k");
    assert!(d.join("src").is_dir());
}

#[tokio::test]
async fn disable_hardlink_refuses_link_as_sshfs() {
    let d = TempDir::new();
    let opts = Options {
        hardlinks: false,
        ..Options::default()
    };
    let (fs, _t) = mount_with(&d, opts).await;
    std::fs::write(d.join("f"), b"x").unwrap();
    let f = fs.lookup(ROOT_INO, b"f").await.unwrap();
    let e = fs.link(f.ino.0, ROOT_INO, b"g").await.unwrap_err();
    assert_eq!(e.errno, libc::ENOSYS);
    assert!(!d.join("g").exists());
}

#[tokio::test]
async fn workaround_truncate_rewrites_the_file() {
    let d = TempDir::new();
    let opts = Options {
        workarounds: crate::config::Workarounds {
            truncate: true,
            ..Default::default()
        },
        ..Options::default()
    };
    let (fs, _t) = mount_with(&d, opts).await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(d.join("f"), &data).unwrap();
    let f = fs.lookup(ROOT_INO, b"f").await.unwrap();
    let size = |n| SetAttr {
        size: Some(n),
        ..SetAttr::default()
    };
    let a = fs.setattr(f.ino.0, None, size(100_000)).await.unwrap();
    assert_eq!(a.size, 100_000);
    assert_eq!(std::fs::read(d.join("f")).unwrap(), &data[..100_000]);
    let a = fs.setattr(f.ino.0, None, size(150_000)).await.unwrap();
    assert_eq!(a.size, 150_000);
    let mut want = data[..100_000].to_vec();
    want.resize(150_000, 0);
    assert_eq!(std::fs::read(d.join("f")).unwrap(), want);
    // Through an open file with writes queued: they land before the rewrite.
    let fh = fs.open(f.ino.0, RW).await.unwrap().fh;
    fs.write(fh, 0, b"head".to_vec(), RW, 0).await.unwrap();
    let a = fs.setattr(f.ino.0, Some(fh), size(10)).await.unwrap();
    assert_eq!(a.size, 10);
    assert_eq!(
        std::fs::read(d.join("f")).unwrap(),
        b"head\x04\x05\x06\x07\x08\x09"
    );
    fs.release(fh).await.unwrap();
    fs.setattr(f.ino.0, None, size(0)).await.unwrap();
    assert_eq!(std::fs::metadata(d.join("f")).unwrap().len(), 0);
}

#[tokio::test]
async fn workaround_fstat_asks_attributes_by_path() {
    // A file renamed on the server while open: its handle still answers FSTAT, its old
    // path nothing. The change goes through the handle either way; what is asked after it
    // shows which request the workaround sends.
    for (fstat, expect_ok) in [(false, true), (true, false)] {
        let d = TempDir::new();
        let opts = Options {
            workarounds: crate::config::Workarounds {
                fstat,
                ..Default::default()
            },
            ..Options::default()
        };
        let (fs, _t) = mount_with(&d, opts).await;
        std::fs::write(d.join("f"), b"x").unwrap();
        let f = fs.lookup(ROOT_INO, b"f").await.unwrap();
        let fh = fs.open(f.ino.0, RW).await.unwrap().fh;
        std::fs::rename(d.join("f"), d.join("moved")).unwrap();
        let set = SetAttr {
            mode: Some(0o100600),
            ..SetAttr::default()
        };
        let r = fs.setattr(f.ino.0, Some(fh), set).await;
        assert_eq!(r.is_ok(), expect_ok, "fstat workaround {fstat}: {r:?}");
        let mode = std::fs::metadata(d.join("moved")).unwrap().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the change itself went through the handle"
        );
        let _ = fs.release(fh).await;
    }
}

#[tokio::test]
async fn statfs_without_a_working_statvfs_shows_a_large_filesystem() {
    let d = TempDir::new();
    let (fs, _t) = mount_with(&d, Options::default()).await;
    let real = fs.statfs().await.unwrap();
    assert!(real.blocks > 0 && real.blocks != (1000 << 30) / 4096);
    // Not offered, or offered and refused (sftp-server -P): both a made-up 1000 GiB.
    for t in [
        ChildTransport::hiding(vec!["statvfs@openssh.com"]),
        ChildTransport::denying(vec!["statvfs"]),
    ] {
        let (fs, _t) = mount_on(&d, Options::default(), t).await;
        for _ in 0..2 {
            let v = fs.statfs().await.unwrap();
            assert_eq!(v.blocks * v.frsize, 1000 << 30);
            assert_eq!(v.bavail, v.blocks);
            assert_eq!(v.files, 1_000_000_000);
            assert_eq!(v.namemax, 255);
        }
        let c = fs.pool().get(0).await.unwrap();
        assert!(
            !c.sftp.profile().has(crate::remote::Ext::Statvfs),
            "not asked again"
        );
    }
}

#[tokio::test]
async fn a_refused_mode_change_behind_writes_never_fails_close() {
    // A server that refuses SETSTAT (object stores, attribute policies): tar and cp -p chmod
    // and utime every file they write; the data must land and close must succeed.
    let d = TempDir::new();
    let t = ChildTransport::denying(vec!["setstat", "fsetstat", "lsetstat"]);
    let (fs, _t) = mount_on(&d, Options::default(), t).await;
    let (a, fh) = fs
        .create(
            ROOT_INO,
            b"f",
            libc::S_IFREG | 0o644,
            0o022,
            RW | libc::O_EXCL,
        )
        .await
        .unwrap();
    fs.write(fh, 0, b"every byte".to_vec(), RW, 0)
        .await
        .unwrap();
    let chmod = SetAttr {
        mode: Some(0o100600),
        ..SetAttr::default()
    };
    // Queued behind the write, answered at once.
    fs.setattr(a.ino.0, Some(fh), chmod).await.unwrap();
    fs.flush(fh).await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(std::fs::read(d.join("f")).unwrap(), b"every byte");
    // From now on a change is asked for at once, and its refusal reaches the call.
    let (b, fh) = fs
        .create(
            ROOT_INO,
            b"g",
            libc::S_IFREG | 0o644,
            0o022,
            RW | libc::O_EXCL,
        )
        .await
        .unwrap();
    fs.write(fh, 0, b"more".to_vec(), RW, 0).await.unwrap();
    let e = fs.setattr(b.ino.0, Some(fh), chmod).await.unwrap_err();
    assert_eq!(e.errno, libc::EACCES);
    fs.release(fh).await.unwrap();
    assert_eq!(std::fs::read(d.join("g")).unwrap(), b"more");
}

#[tokio::test]
async fn a_server_that_empties_files_opened_for_writing_gets_no_such_open() {
    // rclone serve sftp without its cache truncates every file opened for writing.
    for truncating in [true, false] {
        let d = TempDir::new();
        let mut t = ChildTransport::hiding(vec!["posix-rename@openssh.com", "limits@openssh.com"]);
        t.write_opens_truncate = truncating;
        let (fs, _t) = mount_on(&d, Options::default(), t).await;
        std::fs::write(d.join("f"), b"precious").unwrap();
        std::fs::write(d.join("empty"), b"").unwrap();
        let f = fs.lookup(ROOT_INO, b"f").await.unwrap();
        let append = libc::O_WRONLY | libc::O_APPEND;
        match fs.open(f.ino.0, append).await {
            Ok(o) if !truncating => fs.release(o.fh).await.unwrap(),
            Err(e) if truncating => assert_eq!(e.errno, libc::EOPNOTSUPP),
            other => panic!("truncating {truncating}: {other:?}"),
        }
        assert_eq!(std::fs::read(d.join("f")).unwrap(), b"precious");
        // Reading, replacing whole, and writing an empty file stay possible.
        let o = fs.open(f.ino.0, libc::O_RDONLY).await.unwrap();
        fs.release(o.fh).await.unwrap();
        let e = fs.lookup(ROOT_INO, b"empty").await.unwrap();
        let o = fs.open(e.ino.0, libc::O_WRONLY).await.unwrap();
        fs.write(o.fh, 0, b"new".to_vec(), libc::O_WRONLY, 0)
            .await
            .unwrap();
        fs.release(o.fh).await.unwrap();
        assert_eq!(std::fs::read(d.join("empty")).unwrap(), b"new");
        let o = fs
            .open(f.ino.0, libc::O_WRONLY | libc::O_TRUNC)
            .await
            .unwrap();
        fs.write(o.fh, 0, b"replaced".to_vec(), libc::O_WRONLY, 0)
            .await
            .unwrap();
        fs.release(o.fh).await.unwrap();
        assert_eq!(std::fs::read(d.join("f")).unwrap(), b"replaced");
        let names: Vec<_> = std::fs::read_dir(&d.0)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names.len(),
            2,
            "the probe's scratch file is gone: {names:?}"
        );
    }
}

#[tokio::test]
async fn attr_refusals_ignore_lets_mode_and_time_changes_succeed() {
    let d = TempDir::new();
    std::fs::write(d.join("f"), b"x").unwrap();
    for ignore in [false, true] {
        let t = ChildTransport::denying(vec!["setstat", "fsetstat", "lsetstat"]);
        let opts = Options {
            ignore_attr_refusals: ignore,
            ..Options::default()
        };
        let (fs, _t) = mount_on(&d, opts, t).await;
        let f = fs.lookup(ROOT_INO, b"f").await.unwrap();
        let chmod = SetAttr {
            mode: Some(0o100600),
            ..SetAttr::default()
        };
        let r = fs.setattr(f.ino.0, None, chmod).await;
        match (ignore, r) {
            (false, Err(e)) => assert_eq!(e.errno, libc::EACCES),
            (true, Ok(a)) => assert_eq!(a.perm, 0o644, "the mode the file really has"),
            (i, r) => panic!("ignore {i}: {r:?}"),
        }
        // An owner change to the owner it has is nothing lost; to another one, refused.
        let me = fs.getattr(f.ino.0, None).await.unwrap().uid;
        let chown = |uid| SetAttr {
            uid: Some(uid),
            ..SetAttr::default()
        };
        if ignore {
            fs.setattr(f.ino.0, None, chown(me)).await.unwrap();
        }
        assert!(fs.setattr(f.ino.0, None, chown(me + 4242)).await.is_err());
        // A size change is data: never ignored.
        let size = SetAttr {
            size: Some(0),
            ..SetAttr::default()
        };
        assert!(fs.setattr(f.ino.0, None, size).await.is_err());
    }
}

#[tokio::test]
async fn without_hardlink_and_fsync_extensions_link_is_eperm_and_fsync_succeeds() {
    let d = TempDir::new();
    let t = ChildTransport::hiding(vec!["hardlink@openssh.com", "fsync@openssh.com"]);
    let (fs, _t) = mount_on(&d, Options::default(), t).await;
    std::fs::write(d.join("f"), b"x").unwrap();
    let f = fs.lookup(ROOT_INO, b"f").await.unwrap();
    let e = fs.link(f.ino.0, ROOT_INO, b"g").await.unwrap_err();
    assert_eq!(e.errno, libc::EPERM, "a filesystem without hard links");
    assert!(!d.join("g").exists());
    let o = fs.open(f.ino.0, RW).await.unwrap();
    fs.write(o.fh, 0, b"y".to_vec(), RW, 0).await.unwrap();
    fs.fsync(o.fh).await.unwrap();
    assert_eq!(
        std::fs::read(d.join("f")).unwrap(),
        b"y",
        "written before fsync answered"
    );
    fs.release(o.fh).await.unwrap();
}

#[tokio::test]
async fn a_long_read_from_a_server_that_caps_reads_is_whole() {
    // Without limits@openssh.com the first READs ask 255 KiB; a server serving 32 KiB
    // (Go's pkg/sftp) changes the READ size under a running read-ahead window.
    let d = TempDir::new();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(d.join("f"), &data).unwrap();
    let mut t = ChildTransport::hiding(vec!["limits@openssh.com"]);
    t.read_cap = Some(32 * 1024);
    let (fs, _t) = mount_on(&d, Options::default(), t).await;
    let f = fs.lookup(ROOT_INO, b"f").await.unwrap();
    let o = fs.open(f.ino.0, libc::O_RDONLY).await.unwrap();
    let mut got = Vec::new();
    let mut off = 0u64;
    loop {
        let b = fs.read(o.fh, off, 128 * 1024).await.unwrap();
        if b.is_empty() {
            break;
        }
        assert!(
            b.len() <= 128 * 1024,
            "a read longer than asked: {}",
            b.len()
        );
        off += b.len() as u64;
        got.extend_from_slice(&b);
    }
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the bytes read are the file's");
    fs.release(o.fh).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_handed_over_out_of_order_reach_the_server_in_file_order() {
    // The kernel sends its read-ahead as concurrent 1 MiB requests in any order; servers that
    // read a file as a stream (rclone's VFS) reopen it at every READ that jumps back.
    const MIB: u64 = 1 << 20;
    let d = TempDir::new();
    std::fs::write(d.join("f"), vec![7u8; 12 * MIB as usize]).unwrap();
    let reads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut t = ChildTransport::default();
    t.reads = Some(reads.clone());
    let (fs, _t) = mount_on(&d, Options::default(), t).await;
    let f = fs.lookup(ROOT_INO, b"f").await.unwrap();
    let o = fs.open(f.ino.0, libc::O_RDONLY).await.unwrap();
    reads.lock().unwrap().clear();
    assert_eq!(
        fs.read(o.fh, 0, MIB as u32).await.unwrap().len(),
        MIB as usize
    );
    for group in [[4u64, 3, 2, 1], [8, 7, 6, 5], [11, 10, 9, 12]] {
        let all =
            futures::future::join_all(group.map(|i| fs.read(o.fh, i * MIB, MIB as u32))).await;
        for (i, r) in group.iter().zip(all) {
            let want = if *i == 12 { 0 } else { MIB as usize };
            assert_eq!(r.unwrap().len(), want, "read at {i} MiB");
        }
    }
    fs.release(o.fh).await.unwrap();
    let sent = reads.lock().unwrap().clone();
    let mut sorted = sent.clone();
    sorted.sort();
    assert!(
        sent.len() >= 12 * 4,
        "the whole file was asked for: {sent:?}"
    );
    assert_eq!(sent, sorted, "READs went out of file order");
}

/// Sets `p`'s mtime (and atime) to `secs` since the epoch.
fn set_mtime(p: &std::path::Path, secs: i64) {
    let t = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [t, t].as_ptr(), 0) };
    assert_eq!(r, 0, "utimensat {}", p.display());
}

/// Requests of each SFTP type sent so far (`SSH_FXP_*` as index, EXTENDED as 0).
fn sent_by_type(fs: &Filesystem) -> [u64; 21] {
    let mut all = [0u64; 21];
    for m in fs.status().pool.members {
        if let Some(c) = m.current {
            for (a, n) in all.iter_mut().zip(c.by_type) {
                *a += n;
            }
        }
    }
    all
}

#[tokio::test]
async fn revalidation_checks_directories_in_use_and_names_what_changed() {
    use crate::remote::protocol::{SSH_FXP_OPENDIR, SSH_FXP_READDIR, SSH_FXP_STAT};
    let d = TempDir::new();
    std::fs::create_dir(d.join("sub")).unwrap();
    std::fs::write(d.join("sub/a"), b"a").unwrap();
    std::fs::write(d.join("sub/b"), b"b").unwrap();
    std::fs::create_dir(d.join("sub/k")).unwrap();
    // Last changed long ago: their mtimes say whether they changed since.
    set_mtime(&d.join("sub"), 1_000_000_000);
    set_mtime(&d.0, 1_000_000_000);
    let fs = mounted(&d).await;
    let period = std::time::Duration::from_secs(2);
    let sent = |fs: &Filesystem| -> u64 {
        fs.status()
            .pool
            .members
            .iter()
            .filter_map(|m| m.current.as_ref())
            .map(|c| c.requests)
            .sum()
    };
    // Nothing in use, nothing cached: a round sends nothing.
    let before = sent(&fs);
    assert!(fs.revalidate_round(period).await.is_empty());
    assert_eq!(sent(&fs), before);
    let sub = fs.lookup(ROOT_INO, b"sub").await.unwrap();
    let h = fs.opendir(sub.ino.0).await.unwrap();
    fs.releasedir(h);
    // The prefetch of the subdirectory's listing is done.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fs.cache.peek_listing(b"sub/k").is_none() {
        assert!(std::time::Instant::now() < end, "sub/k was not prefetched");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // In use, unchanged: its attributes are asked for, not its listing.
    let (types, cost) = (sent_by_type(&fs), fs.revalidation_cost());
    for _ in 0..3 {
        assert!(fs.revalidate_round(period).await.is_empty());
    }
    let now = sent_by_type(&fs);
    let delta = |t: u8| now[t as usize] - types[t as usize];
    assert!(
        delta(SSH_FXP_STAT) >= 3,
        "the directory was checked each round"
    );
    assert_eq!(
        (delta(SSH_FXP_OPENDIR), delta(SSH_FXP_READDIR)),
        (0, 0),
        "an unchanged directory was listed again"
    );
    let after = fs.revalidation_cost();
    assert_eq!(after.0 - cost.0, delta(SSH_FXP_STAT), "requests counted");
    assert!(
        after.1 > cost.1 && after.2 > cost.2,
        "bytes counted: {after:?}"
    );
    std::fs::write(d.join("sub/a"), b"longer").unwrap();
    std::fs::remove_file(d.join("sub/b")).unwrap();
    std::fs::write(d.join("sub/c"), b"c").unwrap();
    std::fs::remove_dir(d.join("sub/k")).unwrap();
    std::fs::write(d.join("sub/k"), b"now a file").unwrap();
    use super::names::revalidate::EntryFate::{Drop, Keep};
    let mut changed: Vec<(u64, Vec<u8>, _)> = fs
        .revalidate_round(period)
        .await
        .into_iter()
        .map(|n| (n.parent, n.name, n.entry))
        .collect();
    changed.sort();
    let names: Vec<(&[u8], _)> = changed.iter().map(|(_, n, e)| (n.as_slice(), *e)).collect();
    // Only a name gone or now another kind of file loses its entry in the kernel.
    assert_eq!(
        names,
        [(&b"a"[..], Keep), (b"b", Drop), (b"c", Keep), (b"k", Drop)]
    );
    assert!(changed.iter().all(|(p, _, _)| *p == sub.ino.0));
    // The cache now holds the server's view.
    let a = fs.lookup(sub.ino.0, b"a").await.unwrap();
    assert_eq!(a.size, 6);
    assert!(fs.lookup(sub.ino.0, b"b").await.is_err());
    // A file open for writing there: no listing is fetched while its writes travel (it
    // would carry old attributes); the cached one is dropped instead.
    let o = fs.open(a.ino.0, RW).await.unwrap();
    std::fs::write(d.join("sub/d"), b"d").unwrap();
    assert!(
        fs.revalidate_round(period).await.is_empty(),
        "listed while a file there is open for writing"
    );
    assert!(fs.cache.peek_listing(b"sub").is_none());
    fs.release(o.fh).await.unwrap();
}

/// More files open for reading than one round checks: each still gets its turn, so a
/// change to any of them is seen within a few rounds.
#[tokio::test]
async fn revalidation_gets_round_to_every_open_file() {
    use super::names::revalidate::MAX_OPEN_CHECKED;
    let d = TempDir::new();
    let n = MAX_OPEN_CHECKED + 10;
    for i in 0..n {
        std::fs::write(d.join(&format!("f{i}")), b"x").unwrap();
    }
    // The directory's mtime long past: its check says unchanged, only FSTATs can tell.
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    std::fs::File::open(d.join("."))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let fs = mounted(&d).await;
    let period = std::time::Duration::from_secs(2);
    let mut open = Vec::new();
    for i in 0..n {
        let f = fs
            .lookup(ROOT_INO, format!("f{i}").as_bytes())
            .await
            .unwrap();
        open.push((f.ino.0, fs.open(f.ino.0, libc::O_RDONLY).await.unwrap().fh));
    }
    // Two rounds see every file once (what each looked like); then all grow on the server.
    for _ in 0..2 {
        fs.revalidate_round(period).await;
    }
    for i in 0..n {
        std::fs::write(d.join(&format!("f{i}")), b"grown").unwrap();
    }
    let mut named = std::collections::HashSet::new();
    for _ in 0..2 {
        for s in fs.revalidate_round(period).await {
            named.insert(s.ino);
        }
    }
    let missed = open.iter().filter(|(ino, _)| !named.contains(ino)).count();
    assert_eq!(missed, 0, "open files never checked");
    for (_, fh) in open {
        fs.release(fh).await.unwrap();
    }
}

/// `tail -f` of a file the server appends to: the file is open here, its directory may not
/// change at all, and its attributes are cached; each round checks it with FSTAT.
#[tokio::test]
async fn revalidation_checks_files_open_here_with_fstat() {
    use super::names::revalidate::EntryFate::Keep;
    let d = TempDir::new();
    std::fs::write(d.join("log"), b"first\n").unwrap();
    let fs = mounted(&d).await;
    let period = std::time::Duration::from_secs(2);
    let f = fs.lookup(ROOT_INO, b"log").await.unwrap();
    let o = fs.open(f.ino.0, libc::O_RDONLY).await.unwrap();
    let names_it = |v: &[super::names::revalidate::StaleName]| {
        v.iter()
            .any(|n| n.ino == f.ino.0 && n.name == b"log" && n.entry == Keep)
    };
    assert!(!names_it(&fs.revalidate_round(period).await), "unchanged");
    std::io::Write::write_all(
        &mut std::fs::OpenOptions::new()
            .append(true)
            .open(d.join("log"))
            .unwrap(),
        b"second\n",
    )
    .unwrap();
    assert_eq!(
        fs.getattr(f.ino.0, Some(o.fh)).await.unwrap().size,
        6,
        "cached until checked"
    );
    assert!(
        names_it(&fs.revalidate_round(period).await),
        "grown on the server"
    );
    assert_eq!(fs.getattr(f.ino.0, Some(o.fh)).await.unwrap().size, 13);
    assert!(!names_it(&fs.revalidate_round(period).await), "told once");
    fs.release(o.fh).await.unwrap();
}

#[tokio::test]
async fn a_listing_opened_before_a_refresh_hands_out_entries_for_no_time() {
    // An `ls` whose opendir came before a refresh must not bring back, for the kernel's
    // entry time-out, a name the refresh just made the kernel forget.
    let d = TempDir::new();
    std::fs::create_dir(d.join("sub")).unwrap();
    std::fs::write(d.join("sub/b"), b"b").unwrap();
    let fs = mounted(&d).await;
    let sub = fs.lookup(ROOT_INO, b"sub").await.unwrap();
    let outdated_of = |fh| {
        let mut all = Vec::new();
        fs.readdir(fh, 0, true, |e| {
            all.push(e.outdated);
            true
        })
        .unwrap();
        all
    };
    let before = fs.opendir(sub.ino.0).await.unwrap();
    let other = fs.opendir(ROOT_INO).await.unwrap();
    assert!(outdated_of(before).iter().all(|o| !o));
    fs.refresh(b"sub");
    assert!(
        outdated_of(before).iter().all(|o| *o),
        "the snapshot predates it"
    );
    // A refresh counts as a change of every directory (listings on their way anywhere are
    // not kept), so another open listing's entries go for no time too: a lookup more each.
    let _ = outdated_of(other);
    let after = fs.opendir(sub.ino.0).await.unwrap();
    assert!(
        outdated_of(after).iter().all(|o| !o),
        "a snapshot taken after it"
    );
    for h in [before, other, after] {
        fs.releasedir(h);
    }
}

#[test]
fn within_is_at_or_below() {
    use super::names::inode::within;
    assert!(within(b"a/b", b""));
    assert!(within(b"a", b"a"));
    assert!(within(b"a/b", b"a"));
    assert!(!within(b"ab", b"a"));
    assert!(!within(b"b", b"a"));
}

/// The kernel's release of a descriptor and a chmod by name (git's filemode probe right
/// after it closed and renamed its config) meet: the chmod found the file still open, but
/// the CLOSE was queued first. The change must not go through the closed handle.
#[tokio::test]
async fn a_mode_change_queued_after_its_files_close_goes_by_name() {
    use std::os::unix::fs::PermissionsExt;
    use write::journal::Op;
    let d = TempDir::new();
    let opts = Options {
        async_writes: true,
        ..Options::default()
    };
    let (fs, _t, _state) = mount_journaled(&d, opts, 1 << 30).await;
    let excl = RW | libc::O_CREAT | libc::O_EXCL;
    // The first file is made synchronously: it tells the owner new files get.
    let (_, fh) = fs
        .create(ROOT_INO, b"first", 0o100644, 0, excl)
        .await
        .unwrap();
    fs.release(fh).await.unwrap();
    // The directory's attributes are known (a new file's owner and group follow them).
    fs.getattr(ROOT_INO, None).await.unwrap();
    let (_, fh) = fs.create(ROOT_INO, b"f", 0o100644, 0, excl).await.unwrap();
    assert!(Filesystem::is_async_fh(fh), "not a file of the journal");
    fs.write(fh, 0, b"content".to_vec(), RW, 0).await.unwrap();
    let f = fs.journal().unwrap().files.get(fh).unwrap();
    fs.enqueue(b"f", Some(&f), Op::Close).await.unwrap();
    // The CLOSE went out before the change came.
    fs.settle().await.unwrap();
    let mode = crate::remote::Attrs {
        permissions: Some(0o600),
        ..Default::default()
    };
    fs.enqueue(b"f", Some(&f), Op::FSetStat(mode))
        .await
        .unwrap();
    let failures = fs.sync_all().await;
    assert!(failures.is_empty(), "{failures:?}");
    let md = std::fs::metadata(d.join("f")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o600);
    assert_eq!(std::fs::read(d.join("f")).unwrap(), b"content");
}

/// A file made while the journal is full (the create waits for room) under a name whose
/// number belonged to another file, which the kernel forgets meanwhile: the file of the
/// journal and the entry handed to the kernel must have one number, or writes through it
/// never show in the attributes of the name.
#[tokio::test]
async fn a_file_created_while_the_queue_is_full_keeps_the_number_the_kernel_gets() {
    let d = TempDir::new();
    let opts = Options {
        async_writes: true,
        ..Options::default()
    };
    // A journal of 64 KiB: a few writes fill it (in less than the requests' deadline).
    let (fs, t, _state) = mount_journaled(&d, opts, 64 << 10).await;
    let excl = RW | libc::O_CREAT | libc::O_EXCL;
    let (_, fh) = fs
        .create(ROOT_INO, b"first", 0o100644, 0, excl)
        .await
        .unwrap();
    fs.release(fh).await.unwrap();
    fs.getattr(ROOT_INO, None).await.unwrap();
    // "b" had a number, and kept it when renamed away: the kernel still holds it.
    let (old, fh) = fs
        .create(ROOT_INO, b"renamed-and-made-again", 0o100644, 0, excl)
        .await
        .unwrap();
    fs.release(fh).await.unwrap();
    fs.rename(ROOT_INO, b"renamed-and-made-again", ROOT_INO, b"x", 0)
        .await
        .unwrap();
    // The server frozen, the journal fills with one file's writes.
    let (_, filler) = fs.create(ROOT_INO, b"f", 0o100644, 0, excl).await.unwrap();
    t.signal_all(libc::SIGSTOP);
    let mut at = 0;
    // Large writes, then small ones to the last bytes of room (the create's record,
    // with its longer name, is larger than a small write's).
    for len in [8 << 10, 1] {
        loop {
            let w = fs.write(filler, at, vec![b'x'; len], RW, 0);
            match tokio::time::timeout(std::time::Duration::from_millis(300), w).await {
                Ok(r) => r.unwrap(),
                Err(_) => break,
            };
            at += len as u64;
        }
    }
    let creating = tokio::spawn({
        let fs = fs.clone();
        async move {
            fs.create(ROOT_INO, b"renamed-and-made-again", 0o100644, 0, excl)
                .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        !creating.is_finished(),
        "the create found room in a full queue"
    );
    fs.forget(old.ino.0, 1);
    t.signal_all(libc::SIGCONT);
    // Once the server took what the journal held, the create has room (the journal is one
    // segment: nothing but the answers can wake it).
    let (new, fh) = tokio::time::timeout(std::time::Duration::from_secs(30), creating)
        .await
        .expect("the create waited for room after the journal emptied")
        .unwrap()
        .unwrap();
    fs.write(fh, 0, b"0123456789".to_vec(), RW, 0)
        .await
        .unwrap();
    let got = fs.getattr(new.ino.0, None).await.unwrap();
    assert_eq!(
        got.size, 10,
        "a write through the new file is not in its entry"
    );
    fs.release(fh).await.unwrap();
    fs.release(filler).await.unwrap();
    assert!(fs.sync_all().await.is_empty());
}
