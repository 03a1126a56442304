//! The core against a real sftp-server, without FUSE.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use super::inode::ROOT_INO;
use super::*;
use crate::remote::testing::{server, TempDir};

async fn mounted(dir: &TempDir) -> Filesystem {
    let sftp = server().await;
    Filesystem::new(
        Arc::new(sftp),
        dir.0.as_os_str().as_bytes().to_vec(),
        Options {
            policy: AttrPolicy::default(),
            read_only: false,
        },
    )
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
    assert_eq!(fs.write(fh, 0, &data).await.unwrap(), data.len() as u32);
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
    fs.write(fh, 0, b"hello").await.unwrap();
    fs.unlink(ROOT_INO, b"tmp").await.unwrap();
    assert!(!d.join("tmp").exists());
    fs.write(fh, 5, b" world").await.unwrap();
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
    let s = fs.symlink(ROOT_INO, b"s", b"../elsewhere/f").await.unwrap();
    assert_eq!(fs.readlink(s.ino.0).await.unwrap(), b"../elsewhere/f");
    assert_eq!(
        std::fs::read_link(d.join("s"))
            .unwrap()
            .as_os_str()
            .as_bytes(),
        b"../elsewhere/f"
    );
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
    let sftp = server().await;
    let fs = Filesystem::new(
        Arc::new(sftp),
        d.0.as_os_str().as_bytes().to_vec(),
        Options {
            policy: AttrPolicy::default(),
            read_only: true,
        },
    );
    assert_eq!(
        fs.mkdir(ROOT_INO, b"x", 0o755, 0).await.unwrap_err().errno,
        libc::EROFS
    );
    assert!(!d.join("x").exists());
}
