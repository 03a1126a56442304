//! Every filesystem operation through a real mount, with ordinary system calls, checked
//! against the server's side of the directory.

mod support;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::*;

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn set_mtime(p: &Path, secs: i64) {
    let f = File::options().write(true).open(p).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs as u64))
        .unwrap();
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn utimens(p: &Path, atime: libc::timespec, mtime: libc::timespec) -> std::io::Result<()> {
    let c = cstr(p);
    let times = [atime, mtime];
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn ts(sec: i64, nsec: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as _,
    }
}

fn access(p: &Path, how: i32) -> std::io::Result<()> {
    let c = cstr(p);
    if unsafe { libc::access(c.as_ptr(), how) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn statvfs(p: &Path) -> libc::statvfs {
    let c = cstr(p);
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    assert_eq!(
        r,
        0,
        "statvfs {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    st
}

fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    let (a, b) = (cstr(from), cstr(to));
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A started server with `DIR/home/w` and a mount of it.
macro_rules! setup {
    ($s:ident, $m:ident) => {
        setup!($s, $m, &[])
    };
    ($s:ident, $m:ident, $opts:expr) => {
        let $s = Sshd::start();
        fs::create_dir($s.remote("w")).unwrap();
        let $m = Mount::new(&$s, "w", $opts);
    };
}

// ---------------------------------------------------------------------------------------------
// lookup / getattr

#[test]
fn getattr_reports_the_servers_size_mode_mtime_and_owner() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let f = s.remote("w/file");
    fs::write(&f, b"twelve bytes").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&f, Some(1234), Some(2345)).unwrap();
    set_mtime(&f, 1_000_000_000);
    fs::create_dir(s.remote("w/dir")).unwrap();
    fs::set_permissions(s.remote("w/dir"), fs::Permissions::from_mode(0o711)).unwrap();
    std::os::unix::fs::symlink("file", s.remote("w/link")).unwrap();
    let exe = s.remote("w/exe");
    fs::write(&exe, b"#!/bin/sh\n").unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o4755)).unwrap();

    let m = Mount::new(&s, "w", &[]);
    let md = fs::metadata(m.path("file")).unwrap();
    assert!(md.is_file());
    assert_eq!(md.size(), 12);
    assert_eq!(md.mode() & 0o7777, 0o640);
    assert_eq!(md.mode() & libc::S_IFMT, libc::S_IFREG);
    assert_eq!(md.mtime(), 1_000_000_000);
    assert_eq!(md.uid(), 1234);
    assert_eq!(md.gid(), 2345);
    assert!(
        md.blocks() * 512 >= 12,
        "st_blocks {} too small",
        md.blocks()
    );
    // Large buffers in cat, cp and stdio: fewer, larger requests over SFTP.
    assert_eq!(md.blksize(), 1 << 20, "st_blksize");

    let d = fs::metadata(m.path("dir")).unwrap();
    assert!(d.is_dir());
    assert_eq!(d.mode() & 0o7777, 0o711);

    let l = fs::symlink_metadata(m.path("link")).unwrap();
    assert!(l.file_type().is_symlink());
    assert_eq!(l.size(), 4, "a symlink's size is the length of its target");
    assert_eq!(fs::metadata(m.path("link")).unwrap().size(), 12);

    assert_eq!(mode(&m.path("exe")), 0o4755);
    assert_eq!(
        fs::metadata(m.path("")).unwrap().mode() & libc::S_IFMT,
        libc::S_IFDIR
    );
    assert_errno(
        fs::metadata(m.path("missing")),
        libc::ENOENT,
        "stat missing",
    );
}

// ---------------------------------------------------------------------------------------------
// setattr

#[test]
fn chmod_changes_the_servers_mode() {
    setup!(s, m);
    fs::write(m.path("f"), "x").unwrap();
    for want in [0o600, 0o755, 0o4711, 0o1777, 0o000, 0o644] {
        fs::set_permissions(m.path("f"), fs::Permissions::from_mode(want)).unwrap();
        assert_eq!(
            mode(&s.remote("w/f")),
            want,
            "server mode after chmod {want:o}"
        );
        assert_eq!(mode(&m.path("f")), want, "mount mode after chmod {want:o}");
    }
    fs::create_dir(m.path("d")).unwrap();
    fs::set_permissions(m.path("d"), fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(mode(&s.remote("w/d")), 0o700);
}

#[test]
fn chown_changes_the_servers_owner_and_keeps_what_is_not_given() {
    setup!(s, m);
    fs::write(m.path("f"), "x").unwrap();
    std::os::unix::fs::chown(m.path("f"), Some(1234), Some(2345)).unwrap();
    let md = fs::metadata(s.remote("w/f")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 2345));
    // Only the uid: the gid must stay (SFTP sends both; a naive client sends gid 0).
    std::os::unix::fs::chown(m.path("f"), Some(4321), None).unwrap();
    let md = fs::metadata(s.remote("w/f")).unwrap();
    assert_eq!((md.uid(), md.gid()), (4321, 2345));
    // Only the gid.
    std::os::unix::fs::chown(m.path("f"), None, Some(5432)).unwrap();
    let md = fs::metadata(s.remote("w/f")).unwrap();
    assert_eq!((md.uid(), md.gid()), (4321, 5432));
    let md = fs::metadata(m.path("f")).unwrap();
    assert_eq!((md.uid(), md.gid()), (4321, 5432));
}

#[test]
fn chown_clears_setuid_and_setgid_as_a_local_disk_does() {
    setup!(s, m);
    fs::create_dir(s.remote("ref")).unwrap();
    let me = fs::metadata(s.remote("w")).unwrap();
    let owner = (Some(me.uid()), Some(me.gid()));
    for (name, want) in [("suid", 0o4755), ("sgid", 0o2755), ("sgid-nox", 0o2745)] {
        // The same steps on the mount and, as a reference, on the server's local disk.
        let local = s.remote(&format!("ref/{name}"));
        fs::write(m.path(name), "x").unwrap();
        fs::write(&local, "x").unwrap();
        fs::set_permissions(m.path(name), fs::Permissions::from_mode(want)).unwrap();
        fs::set_permissions(&local, fs::Permissions::from_mode(want)).unwrap();
        assert_eq!(mode(&m.path(name)), want, "{name} before chown");
        // To the owner it already has: tar and cp -a do this.
        std::os::unix::fs::chown(m.path(name), owner.0, owner.1).unwrap();
        std::os::unix::fs::chown(&local, owner.0, owner.1).unwrap();
        let expected = mode(&local);
        assert_eq!(
            mode(&s.remote(&format!("w/{name}"))),
            expected,
            "{name} on the server"
        );
        assert_eq!(mode(&m.path(name)), expected, "{name} on the mount");
    }
    assert_eq!(
        mode(&s.remote("ref/suid")),
        0o755,
        "the reference clears setuid"
    );
    // A directory keeps its setgid bit.
    fs::create_dir(m.path("d")).unwrap();
    fs::set_permissions(m.path("d"), fs::Permissions::from_mode(0o2755)).unwrap();
    std::os::unix::fs::chown(m.path("d"), owner.0, owner.1).unwrap();
    assert_eq!(mode(&s.remote("w/d")), 0o2755);
    assert_eq!(mode(&m.path("d")), 0o2755);
}

#[test]
fn truncate_up_and_down() {
    setup!(s, m);
    fs::write(m.path("f"), b"0123456789").unwrap();
    let f = OpenOptions::new().write(true).open(m.path("f")).unwrap();
    f.set_len(4).unwrap();
    assert_eq!(fs::read(s.remote("w/f")).unwrap(), b"0123");
    f.set_len(8).unwrap();
    drop(f);
    assert_eq!(fs::read(s.remote("w/f")).unwrap(), b"0123\0\0\0\0");
    assert_eq!(fs::metadata(m.path("f")).unwrap().size(), 8);
    // truncate(2) by path, without an open file.
    let c = cstr(&m.path("f"));
    assert_eq!(unsafe { libc::truncate(c.as_ptr(), 3 << 20) }, 0);
    assert_eq!(fs::metadata(s.remote("w/f")).unwrap().len(), 3 << 20);
    assert_eq!(unsafe { libc::truncate(c.as_ptr(), 0) }, 0);
    assert_eq!(fs::metadata(s.remote("w/f")).unwrap().len(), 0);
    assert_eq!(fs::read(m.path("f")).unwrap(), b"");
}

#[test]
fn utimens_sets_times_including_utime_now_and_omit() {
    setup!(s, m);
    fs::write(m.path("f"), "x").unwrap();
    utimens(&m.path("f"), ts(981_173_106, 0), ts(1_000_000_000, 0)).unwrap();
    let md = fs::metadata(s.remote("w/f")).unwrap();
    assert_eq!(md.atime(), 981_173_106);
    assert_eq!(md.mtime(), 1_000_000_000);
    assert_eq!(fs::metadata(m.path("f")).unwrap().mtime(), 1_000_000_000);

    // UTIME_OMIT for atime, explicit mtime: atime must stay.
    utimens(&m.path("f"), ts(0, libc::UTIME_OMIT), ts(1_100_000_000, 0)).unwrap();
    let md = fs::metadata(s.remote("w/f")).unwrap();
    assert_eq!(md.atime(), 981_173_106, "UTIME_OMIT changed atime");
    assert_eq!(md.mtime(), 1_100_000_000);

    // UTIME_NOW for both.
    let before = now_secs();
    utimens(&m.path("f"), ts(0, libc::UTIME_NOW), ts(0, libc::UTIME_NOW)).unwrap();
    let after = now_secs();
    let md = fs::metadata(s.remote("w/f")).unwrap();
    assert!(
        md.mtime() >= before - 1 && md.mtime() <= after + 1,
        "UTIME_NOW gave mtime {} (now {before}..{after})",
        md.mtime()
    );
    assert!(md.atime() >= before - 1 && md.atime() <= after + 1);
    let mm = fs::metadata(m.path("f")).unwrap();
    assert!(mm.mtime() >= before - 1 && mm.mtime() <= after + 1);
}

// ---------------------------------------------------------------------------------------------
// readdir

#[test]
fn readdir_lists_every_entry_with_its_type_even_past_one_batch() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let mut want = std::collections::BTreeSet::new();
    for i in 0..250 {
        let name = format!("file-{i:03}");
        fs::write(s.remote(&format!("w/{name}")), vec![b'x'; i]).unwrap();
        want.insert(name);
    }
    fs::create_dir(s.remote("w/subdir")).unwrap();
    std::os::unix::fs::symlink("file-001", s.remote("w/symlink")).unwrap();
    want.insert("subdir".into());
    want.insert("symlink".into());
    fs::set_permissions(s.remote("w/file-007"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(s.remote("w/file-007"), Some(1234), Some(2345)).unwrap();
    set_mtime(&s.remote("w/file-007"), 1_000_000_000);

    let m = Mount::new(&s, "w", &[]);
    let mut got = std::collections::BTreeSet::new();
    for e in fs::read_dir(m.path("")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let ft = e.file_type().unwrap();
        match name.as_str() {
            "subdir" => assert!(ft.is_dir()),
            "symlink" => assert!(ft.is_symlink()),
            _ => {
                assert!(ft.is_file(), "{name} is not a file");
                let i: usize = name[5..].parse().unwrap();
                assert_eq!(e.metadata().unwrap().len(), i as u64, "size of {name}");
            }
        }
        assert!(got.insert(name.clone()), "{name} listed twice");
    }
    assert_eq!(got, want);

    // `ls -l` (readdirplus and getattr): type, mode, owner, size, mtime of one entry.
    let out = sh(&m.mnt, "ls", &["-ln", "--time-style=+%s", "."]);
    let line = out
        .lines()
        .find(|l| l.ends_with(" file-007"))
        .unwrap_or_else(|| panic!("ls -l does not list the file:\n{out}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f[0].trim_end_matches(['.', '+']), "-rw-r-----", "{line}");
    assert_eq!(f[1], "1", "link count: {line}");
    assert_eq!((f[2], f[3]), ("1234", "2345"), "{line}");
    assert_eq!(f[4], "7", "{line}");
    assert_eq!(f[5], "1000000000", "{line}");
    let dirline = out.lines().find(|l| l.ends_with(" subdir")).unwrap();
    assert!(dirline.starts_with('d'), "{dirline}");
    let linkline = out
        .lines()
        .find(|l| l.contains(" symlink -> file-001"))
        .unwrap();
    assert!(linkline.starts_with('l'), "{linkline}");
}

#[test]
fn readdir_sees_entries_made_through_the_mount() {
    setup!(s, m);
    for i in 0..130 {
        fs::write(m.path(&format!("n{i}")), "").unwrap();
    }
    fs::create_dir(m.path("d")).unwrap();
    let names: std::collections::BTreeSet<String> = fs::read_dir(m.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 131);
    assert!(names.contains("n129") && names.contains("d"));
    let server: std::collections::BTreeSet<String> = fs::read_dir(s.remote("w"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, server);
    // An empty directory lists nothing (and no error).
    assert_eq!(fs::read_dir(m.path("d")).unwrap().count(), 0);
}

// ---------------------------------------------------------------------------------------------
// open / read / write

#[test]
fn large_file_written_through_the_mount_arrives_intact() {
    setup!(s, m);
    let data = random_bytes(5 << 20, 0x5eed);
    fs::write(m.path("big"), &data).unwrap();
    let server = fs::read(s.remote("w/big")).unwrap();
    assert_eq!(server.len(), data.len());
    assert!(server == data, "server bytes differ from what was written");
    let back = fs::read(m.path("big")).unwrap();
    assert!(back == data, "bytes read back through the mount differ");
}

#[test]
fn large_server_file_reads_intact_sequentially_and_at_offsets() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let data = random_bytes((5 << 20) + 12345, 0xfeed);
    fs::write(s.remote("w/big"), &data).unwrap();
    let m = Mount::new(&s, "w", &[]);
    let got = fs::read(m.path("big")).unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "sequential read differs");
    let f = File::open(m.path("big")).unwrap();
    for off in [
        0usize,
        1,
        4095,
        131_072,
        261_119,
        1 << 20,
        (5 << 20) + 12000,
    ] {
        let mut buf = vec![0u8; 1000];
        let n = f.read_at(&mut buf, off as u64).unwrap();
        let end = (off + 1000).min(data.len());
        assert_eq!(n, end - off, "short read at {off}");
        assert_eq!(&buf[..n], &data[off..end], "pread at {off}");
    }
    // Past the end: 0 bytes.
    let mut buf = [0u8; 10];
    assert_eq!(f.read_at(&mut buf, data.len() as u64 + 10).unwrap(), 0);
}

#[test]
fn pwrite_in_the_middle_of_a_file() {
    setup!(s, m);
    fs::write(m.path("f"), vec![b'.'; 300_000]).unwrap();
    let f = OpenOptions::new().write(true).open(m.path("f")).unwrap();
    f.write_at(b"MIDDLE", 150_000).unwrap();
    f.write_at(b"END", 299_997).unwrap();
    f.write_at(b"PAST", 300_010).unwrap(); // leaves a hole
    drop(f);
    let got = fs::read(s.remote("w/f")).unwrap();
    assert_eq!(got.len(), 300_014);
    assert_eq!(&got[150_000..150_006], b"MIDDLE");
    assert_eq!(&got[149_999..150_000], b".");
    assert_eq!(&got[299_997..300_000], b"END");
    assert_eq!(&got[300_000..300_010], &[0u8; 10]);
    assert_eq!(&got[300_010..], b"PAST");
}

#[test]
fn read_and_write_through_one_descriptor() {
    setup!(s, m);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.path("rw"))
        .unwrap();
    f.write_all(b"hello world").unwrap();
    f.seek(SeekFrom::Start(6)).unwrap();
    let mut buf = String::new();
    f.read_to_string(&mut buf).unwrap();
    assert_eq!(buf, "world");
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(b"HELLO").unwrap();
    drop(f);
    assert_eq!(fs::read_to_string(s.remote("w/rw")).unwrap(), "HELLO world");
}

#[test]
fn create_exclusive_gives_eexist_the_second_time() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    fs::write(s.remote("w/on-server"), "exists").unwrap();
    let m = Mount::new(&s, "w", &[]);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(m.path("new"))
        .unwrap();
    f.write_all(b"first").unwrap();
    drop(f);
    assert_eq!(fs::read_to_string(s.remote("w/new")).unwrap(), "first");
    assert_eq!(mode(&s.remote("w/new")), 0o600, "create mode");
    assert_errno(
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(m.path("new")),
        libc::EEXIST,
        "second O_CREAT|O_EXCL",
    );
    assert_errno(
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(m.path("on-server")),
        libc::EEXIST,
        "O_CREAT|O_EXCL of a file made on the server",
    );
    assert_eq!(fs::read_to_string(s.remote("w/new")).unwrap(), "first");
    assert_eq!(
        fs::read_to_string(s.remote("w/on-server")).unwrap(),
        "exists"
    );
}

#[test]
fn create_exclusive_race_on_the_server_gives_eexist() {
    setup!(s, m);
    // The kernel has no cached entry for "raced" when the file appears on the server, so the
    // CREATE reaches the server: its failure must come back as EEXIST.
    assert!(fs::metadata(m.path("raced")).is_err());
    fs::write(s.remote("w/raced"), "server").unwrap();
    let r = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.path("raced"));
    assert_errno(
        r,
        libc::EEXIST,
        "O_EXCL on a file the server made after a negative lookup",
    );
    assert_eq!(fs::read_to_string(s.remote("w/raced")).unwrap(), "server");
}

#[test]
fn open_with_o_trunc_empties_the_server_file() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    fs::write(s.remote("w/f"), "a long original content\n").unwrap();
    let m = Mount::new(&s, "w", &[]);
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.path("f"))
        .unwrap();
    assert_eq!(
        fs::metadata(s.remote("w/f")).unwrap().len(),
        0,
        "after open(O_TRUNC)"
    );
    f.write_all(b"short\n").unwrap();
    drop(f);
    assert_eq!(fs::read_to_string(s.remote("w/f")).unwrap(), "short\n");
    assert_eq!(fs::read_to_string(m.path("f")).unwrap(), "short\n");
    // O_CREAT|O_TRUNC of an existing file (what a shell's `>` does).
    fs::write(m.path("f"), "again\n").unwrap();
    assert_eq!(fs::read_to_string(s.remote("w/f")).unwrap(), "again\n");
}

#[test]
fn o_append_appends_at_the_servers_end() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    fs::write(s.remote("w/log"), "one\n").unwrap();
    let m = Mount::new(&s, "w", &[]);
    let append = || OpenOptions::new().append(true).open(m.path("log")).unwrap();
    let mut f = append();
    f.write_all(b"two\n").unwrap();
    f.write_all(b"three\n").unwrap();
    drop(f);
    assert_eq!(
        fs::read_to_string(s.remote("w/log")).unwrap(),
        "one\ntwo\nthree\n"
    );

    // The file grows on the server behind the mount's back; an append must still land at
    // the server's end, not at the size the mount saw before.
    let mut srv = OpenOptions::new()
        .append(true)
        .open(s.remote("w/log"))
        .unwrap();
    srv.write_all(b"server-side line\n").unwrap();
    drop(srv);
    let mut f = append();
    f.write_all(b"four\n").unwrap();
    drop(f);
    assert_eq!(
        fs::read_to_string(s.remote("w/log")).unwrap(),
        "one\ntwo\nthree\nserver-side line\nfour\n"
    );
}

#[test]
fn fsync_puts_the_data_on_the_server_before_close() {
    setup!(s, m);
    let data = random_bytes(3 << 20, 7);
    let mut f = File::create(m.path("f")).unwrap();
    f.write_all(&data).unwrap();
    f.sync_all().unwrap();
    // Still open: after fsync everything written must be on the server.
    let server = fs::read(s.remote("w/f")).unwrap();
    assert_eq!(server.len(), data.len(), "server size after fsync");
    assert!(server == data, "server bytes after fsync differ");
    f.write_all(b"tail").unwrap();
    f.sync_data().unwrap();
    assert_eq!(
        fs::metadata(s.remote("w/f")).unwrap().len(),
        data.len() as u64 + 4
    );
    // A directory can be fsynced too (editors and git do it).
    File::open(m.path("")).unwrap().sync_all().unwrap();
}

#[test]
fn close_flushes_the_data_to_the_server() {
    setup!(s, m);
    for i in 0..5 {
        let data = random_bytes(600_000 + i * 1000, i as u64 + 1);
        let mut f = File::create(m.path("f")).unwrap();
        f.write_all(&data).unwrap();
        drop(f); // close(2) returns after FLUSH
        let server = fs::read(s.remote("w/f")).unwrap();
        assert!(
            server == data,
            "round {i}: server content differs right after close"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// mkdir / rmdir / unlink

#[test]
fn mkdir_and_rmdir_with_their_errors() {
    setup!(s, m);
    fs::create_dir(m.path("d")).unwrap();
    assert!(s.remote("w/d").is_dir());
    assert_errno(fs::create_dir(m.path("d")), libc::EEXIST, "mkdir existing");
    fs::write(m.path("d/inside"), "x").unwrap();
    assert_errno(
        fs::remove_dir(m.path("d")),
        libc::ENOTEMPTY,
        "rmdir non-empty",
    );
    assert!(s.remote("w/d/inside").exists());
    assert_errno(
        fs::remove_dir(m.path("nope")),
        libc::ENOENT,
        "rmdir missing",
    );
    assert_errno(
        fs::create_dir(m.path("nope/sub")),
        libc::ENOENT,
        "mkdir in missing dir",
    );
    assert_errno(
        fs::remove_dir(m.path("d/inside")),
        libc::ENOTDIR,
        "rmdir of a file",
    );
    fs::remove_file(m.path("d/inside")).unwrap();
    fs::remove_dir(m.path("d")).unwrap();
    assert!(!s.remote("w/d").exists());
    assert!(fs::metadata(m.path("d")).is_err());

    let c = cstr(&m.path("m750"));
    assert_eq!(unsafe { libc::mkdir(c.as_ptr(), 0o750) }, 0);
    assert_eq!(mode(&s.remote("w/m750")), 0o750 & !current_umask());
    fs::create_dir_all(m.path("a/b/c/d")).unwrap();
    assert!(s.remote("w/a/b/c/d").is_dir());
}

fn current_umask() -> u32 {
    let old = unsafe { libc::umask(0o022) };
    unsafe { libc::umask(old) };
    old as u32
}

#[test]
fn mkdir_on_a_name_the_server_made_after_a_negative_lookup_gives_eexist() {
    setup!(s, m);
    assert!(fs::metadata(m.path("late")).is_err());
    fs::create_dir(s.remote("w/late")).unwrap();
    assert_errno(fs::create_dir(m.path("late")), libc::EEXIST, "mkdir");
}

#[test]
fn rmdir_of_a_dir_filled_on_the_server_gives_enotempty() {
    setup!(s, m);
    fs::create_dir(m.path("d")).unwrap();
    assert_eq!(fs::read_dir(m.path("d")).unwrap().count(), 0);
    fs::write(s.remote("w/d/server-file"), "x").unwrap();
    assert_errno(fs::remove_dir(m.path("d")), libc::ENOTEMPTY, "rmdir");
    assert!(s.remote("w/d/server-file").exists());
}

#[test]
fn unlink_removes_the_server_file() {
    setup!(s, m);
    fs::write(m.path("f"), "x").unwrap();
    fs::remove_file(m.path("f")).unwrap();
    assert!(!s.remote("w/f").exists());
    assert_errno(fs::metadata(m.path("f")), libc::ENOENT, "stat after unlink");
    assert_errno(fs::remove_file(m.path("f")), libc::ENOENT, "unlink twice");
    fs::create_dir(m.path("d")).unwrap();
    assert_errno(
        fs::remove_file(m.path("d")),
        libc::EISDIR,
        "unlink of a directory",
    );
    // A file made on the server, never looked at through the mount.
    fs::write(s.remote("w/g"), "y").unwrap();
    wait_visible(&m.path("g"));
    fs::remove_file(m.path("g")).unwrap();
    assert!(!s.remote("w/g").exists());
    // A dangling symlink is removed, not its target.
    std::os::unix::fs::symlink("nowhere", m.path("dangling")).unwrap();
    fs::remove_file(m.path("dangling")).unwrap();
    assert!(fs::symlink_metadata(s.remote("w/dangling")).is_err());
}

// ---------------------------------------------------------------------------------------------
// rename

#[test]
fn rename_over_an_existing_file_replaces_it() {
    setup!(s, m);
    fs::write(m.path("target"), "old").unwrap();
    fs::write(m.path("new"), "new content").unwrap();
    let ino = fs::metadata(m.path("new")).unwrap().ino();
    fs::rename(m.path("new"), m.path("target")).unwrap();
    assert_eq!(
        fs::read_to_string(s.remote("w/target")).unwrap(),
        "new content"
    );
    assert!(!s.remote("w/new").exists());
    assert_eq!(fs::read_to_string(m.path("target")).unwrap(), "new content");
    assert_errno(
        fs::metadata(m.path("new")),
        libc::ENOENT,
        "old name after rename",
    );
    assert_eq!(
        fs::metadata(m.path("target")).unwrap().ino(),
        ino,
        "inode number of a renamed file"
    );
}

#[test]
fn rename_over_an_existing_file_is_atomic() {
    setup!(s, m);
    fs::write(s.remote("w/target"), "0").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let target = s.remote("w/target");
    let stop2 = stop.clone();
    // Watches the server side: the target must never be missing.
    let watcher = std::thread::spawn(move || {
        let mut misses = 0;
        let mut looks = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            looks += 1;
            if fs::symlink_metadata(&target).is_err() {
                misses += 1;
            }
        }
        (misses, looks)
    });
    for i in 1..=100 {
        fs::write(m.path("tmp"), i.to_string()).unwrap();
        fs::rename(m.path("tmp"), m.path("target")).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (misses, looks) = watcher.join().unwrap();
    assert_eq!(
        misses, 0,
        "the target was missing {misses} times out of {looks} looks during 100 renames over it"
    );
    assert_eq!(fs::read_to_string(s.remote("w/target")).unwrap(), "100");
}

#[test]
fn rename_noreplace_refuses_an_existing_target() {
    setup!(s, m);
    fs::write(m.path("a"), "a").unwrap();
    fs::write(m.path("b"), "b").unwrap();
    assert_errno(
        rename_noreplace(&m.path("a"), &m.path("b")),
        libc::EEXIST,
        "renameat2(RENAME_NOREPLACE)",
    );
    assert_eq!(fs::read_to_string(s.remote("w/a")).unwrap(), "a");
    assert_eq!(fs::read_to_string(s.remote("w/b")).unwrap(), "b");
    rename_noreplace(&m.path("a"), &m.path("c")).unwrap();
    assert!(!s.remote("w/a").exists());
    assert_eq!(fs::read_to_string(s.remote("w/c")).unwrap(), "a");
    // A target the mount has never seen (made on the server).
    fs::write(s.remote("w/d"), "d").unwrap();
    assert_errno(
        rename_noreplace(&m.path("c"), &m.path("d")),
        libc::EEXIST,
        "RENAME_NOREPLACE onto a file made on the server",
    );
    assert_eq!(fs::read_to_string(s.remote("w/d")).unwrap(), "d");
}

#[test]
fn rename_directories_and_their_contents_follow() {
    setup!(s, m);
    fs::create_dir_all(m.path("a/sub")).unwrap();
    fs::write(m.path("a/sub/f"), "deep").unwrap();
    let ino_f = fs::metadata(m.path("a/sub/f")).unwrap().ino();
    let ino_a = fs::metadata(m.path("a")).unwrap().ino();
    fs::create_dir(m.path("dest")).unwrap();
    fs::rename(m.path("a"), m.path("dest/b")).unwrap();
    assert_eq!(
        fs::read_to_string(s.remote("w/dest/b/sub/f")).unwrap(),
        "deep"
    );
    assert!(!s.remote("w/a").exists());
    assert_eq!(fs::read_to_string(m.path("dest/b/sub/f")).unwrap(), "deep");
    assert_eq!(fs::metadata(m.path("dest/b/sub/f")).unwrap().ino(), ino_f);
    assert_eq!(fs::metadata(m.path("dest/b")).unwrap().ino(), ino_a);
    assert!(fs::metadata(m.path("a/sub/f")).is_err());
    // Over an empty directory: replaced. Over a non-empty one: ENOTEMPTY.
    fs::create_dir(m.path("empty")).unwrap();
    fs::rename(m.path("dest/b"), m.path("empty")).unwrap();
    assert_eq!(
        fs::read_to_string(s.remote("w/empty/sub/f")).unwrap(),
        "deep"
    );
    fs::create_dir_all(m.path("full/x")).unwrap();
    assert_errno(
        fs::rename(m.path("empty"), m.path("full")),
        libc::ENOTEMPTY,
        "rename a dir over a non-empty dir",
    );
    // A file over a directory and a directory over a file.
    fs::write(m.path("file"), "f").unwrap();
    assert_errno(
        fs::rename(m.path("file"), m.path("full")),
        libc::EISDIR,
        "rename a file over a dir",
    );
    assert_errno(
        fs::rename(m.path("full"), m.path("file")),
        libc::ENOTDIR,
        "rename a dir over a file",
    );
    assert_errno(
        fs::rename(m.path("missing"), m.path("x")),
        libc::ENOENT,
        "rename a missing file",
    );
}

// ---------------------------------------------------------------------------------------------
// symlink / readlink / link

#[test]
fn symlink_and_readlink_keep_the_target_exactly() {
    // Targets leading out of the mount are shown only without containment (see below).
    setup!(s, m, &["no_contain_symlinks"]);
    fs::write(m.path("real"), "real").unwrap();
    for (link, target) in [
        ("rel", "real"),
        ("up", "../w/real"),
        ("abs", "/etc/hostname"),
        ("dangling", "does/not/exist"),
        ("spaces", "a b  c"),
    ] {
        std::os::unix::fs::symlink(target, m.path(link)).unwrap();
        assert_eq!(
            fs::read_link(s.remote(&format!("w/{link}"))).unwrap(),
            Path::new(target),
            "server-side target of {link}"
        );
        assert_eq!(
            fs::read_link(m.path(link)).unwrap(),
            Path::new(target),
            "readlink of {link} through the mount"
        );
        assert!(fs::symlink_metadata(m.path(link))
            .unwrap()
            .file_type()
            .is_symlink());
    }
    assert_eq!(fs::read_to_string(m.path("rel")).unwrap(), "real");
    std::os::unix::fs::symlink("x", s.remote("w/server-made")).unwrap();
    wait_visible(&m.path("server-made"));
    assert_eq!(
        fs::read_link(m.path("server-made")).unwrap(),
        Path::new("x")
    );
    assert_errno(
        std::os::unix::fs::symlink("y", m.path("rel")),
        libc::EEXIST,
        "symlink over an existing name",
    );
    assert_errno(
        fs::read_link(m.path("real")),
        libc::EINVAL,
        "readlink of a file",
    );
}

#[test]
fn symlinks_leading_out_of_the_mount_are_contained_by_default() {
    setup!(s, m);
    fs::create_dir(s.remote("w/d")).unwrap();
    // sshfs 3.7.6's rule is lexical: no absolute target, no `..` component anywhere.
    for (link, target, shown) in [
        ("d/safe", "sub/target", Some("sub/target")),
        ("d/safe_dot", "./sub/target", Some("./sub/target")),
        ("d/dots", "...", Some("...")),
        ("d/inside", "../real", None),
        ("d/dotdot", "../../outside", None),
        ("d/interleaved", "sub/../../etc/passwd", None),
        ("d/bare_dotdot", "..", None),
        ("abs", "/etc/passwd", None),
        ("abs-inside", "/anything/in/the/mount", None),
    ] {
        std::os::unix::fs::symlink(target, m.path(link)).unwrap();
        // Stored on the server exactly as given...
        assert_eq!(
            fs::read_link(s.remote(&format!("w/{link}"))).unwrap(),
            Path::new(target)
        );
        // ...but not handed to local programs when it leads out of the mount.
        match shown {
            Some(t) => assert_eq!(fs::read_link(m.path(link)).unwrap(), Path::new(t)),
            None => assert_errno(fs::read_link(m.path(link)), libc::EPERM, link),
        }
    }
    drop(m);
    // transform_symlinks: an absolute target inside the mount becomes relative.
    let root = s.resolve("w");
    std::os::unix::fs::symlink(root.join("d"), s.remote("w/d/self")).unwrap();
    std::os::unix::fs::symlink(root.join("d/inside"), s.remote("w/top")).unwrap();
    std::os::unix::fs::symlink(root.join("top"), s.remote("w/d/up")).unwrap();
    fs::write(s.remote("w/d/real"), "data").unwrap();
    std::os::unix::fs::symlink(root.join("d/real"), s.remote("w/d/sibling")).unwrap();
    let m = Mount::new(&s, "w", &["transform_symlinks"]);
    // sshfs 3.7.6's warning, word for word: scripts and sshfs's test suite match it.
    let warning = "warning: transform_symlinks with contain_symlinks may reject transformed \
                   links containing '..' - consider adding -o no_contain_symlinks";
    assert!(
        m.stderr().lines().any(|l| l == warning),
        "no line {warning:?} in:\n{}",
        m.stderr()
    );
    assert_eq!(fs::read_link(m.path("d/self")).unwrap(), Path::new("."));
    assert_eq!(fs::read_link(m.path("top")).unwrap(), Path::new("d/inside"));
    assert_eq!(
        fs::read_link(m.path("d/sibling")).unwrap(),
        Path::new("real")
    );
    assert_eq!(fs::read(m.path("d/sibling")).unwrap(), b"data");
    // Transformed to `../top`, then refused by contain_symlinks, as in sshfs.
    assert_errno(fs::read_link(m.path("d/up")), libc::EPERM, "d/up");
    assert_errno(
        fs::metadata(m.path("d/up")),
        libc::EPERM,
        "stat through d/up",
    );
    drop(m);
    let m = Mount::new(&s, "w", &["transform_symlinks", "no_contain_symlinks"]);
    assert_eq!(fs::read_link(m.path("d/up")).unwrap(), Path::new("../top"));
    assert!(!m.stderr().contains("warning"), "{}", m.stderr());
    // The last of contain_symlinks / no_contain_symlinks wins.
    drop(m);
    let m = Mount::new(&s, "w", &["contain_symlinks", "no_contain_symlinks"]);
    assert_eq!(
        fs::read_link(m.path("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    drop(m);
    let m = Mount::new(&s, "w", &["no_contain_symlinks", "contain_symlinks"]);
    assert_errno(fs::read_link(m.path("abs")), libc::EPERM, "abs");
}

#[test]
fn hard_link_shares_the_inode_and_counts_links() {
    setup!(s, m);
    fs::write(m.path("a"), "shared").unwrap();
    fs::hard_link(m.path("a"), m.path("b")).unwrap();
    let (sa, sb) = (
        fs::metadata(s.remote("w/a")).unwrap(),
        fs::metadata(s.remote("w/b")).unwrap(),
    );
    assert_eq!(sa.ino(), sb.ino(), "server: not a hard link");
    assert_eq!(sa.nlink(), 2);
    let (ma, mb) = (
        fs::metadata(m.path("a")).unwrap(),
        fs::metadata(m.path("b")).unwrap(),
    );
    assert_eq!(
        ma.ino(),
        mb.ino(),
        "mount: the two names have different inode numbers"
    );
    assert_eq!(ma.nlink(), 2, "st_nlink of the first name");
    assert_eq!(mb.nlink(), 2, "st_nlink of the second name");
    // A write through one name shows through the other.
    OpenOptions::new()
        .append(true)
        .open(m.path("b"))
        .unwrap()
        .write_all(b"+more")
        .unwrap();
    assert_eq!(fs::read_to_string(m.path("a")).unwrap(), "shared+more");
    assert_eq!(fs::read_to_string(s.remote("w/a")).unwrap(), "shared+more");
    fs::remove_file(m.path("a")).unwrap();
    assert_eq!(fs::metadata(m.path("b")).unwrap().nlink(), 1);
    assert_eq!(fs::metadata(s.remote("w/b")).unwrap().nlink(), 1);
    assert_errno(
        fs::hard_link(m.path("b"), m.path("b")),
        libc::EEXIST,
        "link onto an existing name",
    );
    assert_errno(
        fs::hard_link(m.path("missing"), m.path("c")),
        libc::ENOENT,
        "link of a missing file",
    );
}

// ---------------------------------------------------------------------------------------------
// statfs / access

#[test]
fn statfs_reports_the_servers_numbers() {
    setup!(s, m);
    let local = statvfs(&s.remote("w"));
    let mounted = statvfs(&m.path(""));
    let bytes = |blocks: u64, st: &libc::statvfs| blocks as u128 * st.f_frsize as u128;
    assert_eq!(
        bytes(mounted.f_blocks, &mounted),
        bytes(local.f_blocks, &local),
        "total size (f_blocks * f_frsize)"
    );
    // Free space moves while other tests write: allow 256 MiB.
    let tol: i128 = 256 << 20;
    let dfree = bytes(mounted.f_bfree, &mounted) as i128 - bytes(local.f_bfree, &local) as i128;
    let davail = bytes(mounted.f_bavail, &mounted) as i128 - bytes(local.f_bavail, &local) as i128;
    assert!(dfree.abs() < tol, "free bytes differ by {dfree}");
    assert!(davail.abs() < tol, "available bytes differ by {davail}");
    assert_eq!(mounted.f_files, local.f_files, "f_files");
    assert!(
        (mounted.f_ffree as i128 - local.f_ffree as i128).abs() < 100_000,
        "f_ffree {} vs {}",
        mounted.f_ffree,
        local.f_ffree
    );
    assert_eq!(mounted.f_namemax, local.f_namemax, "f_namemax");
    assert!(mounted.f_bsize > 0);
}

#[test]
fn access_checks_permission_bits() {
    setup!(s, m);
    fs::write(s.remote("w/f644"), "x").unwrap();
    fs::set_permissions(s.remote("w/f644"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(s.remote("w/f755"), "x").unwrap();
    fs::set_permissions(s.remote("w/f755"), fs::Permissions::from_mode(0o755)).unwrap();
    access(&m.path("f644"), libc::F_OK).unwrap();
    access(&m.path("f644"), libc::R_OK).unwrap();
    access(&m.path("f644"), libc::W_OK).unwrap();
    access(&m.path("f644"), libc::R_OK | libc::W_OK).unwrap();
    // Even root may not execute a file without any x bit.
    assert_errno(
        access(&m.path("f644"), libc::X_OK),
        libc::EACCES,
        "access(X_OK) of 0644",
    );
    access(&m.path("f755"), libc::X_OK).unwrap();
    access(&m.path(""), libc::X_OK | libc::W_OK).unwrap();
    assert_errno(
        access(&m.path("missing"), libc::F_OK),
        libc::ENOENT,
        "access of missing",
    );
}

// ---------------------------------------------------------------------------------------------
// open-unlink, errors, inode numbers

#[test]
fn an_unlinked_open_file_keeps_working() {
    setup!(s, m);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.path("tmpfile"))
        .unwrap();
    f.write_all(b"hello").unwrap();
    fs::remove_file(m.path("tmpfile")).unwrap();
    assert_errno(
        fs::metadata(m.path("tmpfile")),
        libc::ENOENT,
        "stat after unlink",
    );
    assert!(
        !fs::read_dir(m.path(""))
            .unwrap()
            .any(|e| e.unwrap().file_name() == "tmpfile"),
        "the unlinked name is still listed"
    );
    assert!(
        !s.remote("w/tmpfile").exists(),
        "the name is still on the server"
    );
    f.write_all(b" world").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut back = String::new();
    f.read_to_string(&mut back).unwrap();
    assert_eq!(back, "hello world");
    let big = random_bytes(400_000, 3);
    f.write_all(&big).unwrap();
    let mut tail = vec![0u8; big.len()];
    f.read_exact_at(&mut tail, 11).unwrap();
    assert!(
        tail == big,
        "data written after unlink reads back differently"
    );
    assert_eq!(
        f.metadata().unwrap().len(),
        11 + big.len() as u64,
        "fstat size"
    );
    // A new file may take the name while the old one is open.
    fs::write(m.path("tmpfile"), "new").unwrap();
    let mut again = vec![0u8; 5];
    f.read_exact_at(&mut again, 0).unwrap();
    assert_eq!(&again, b"hello");
    drop(f);
    assert_eq!(fs::read_to_string(s.remote("w/tmpfile")).unwrap(), "new");
    // Once closed, nothing is left behind on the server (no hidden leftovers).
    let clean = wait_until(Duration::from_secs(5), || {
        fs::read_dir(s.remote("w")).unwrap().count() == 1
    });
    let left: Vec<_> = fs::read_dir(s.remote("w"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(clean, "files left on the server after close: {left:?}");
}

#[test]
fn errors_map_to_the_errno_a_local_filesystem_gives() {
    setup!(s, m);
    fs::write(m.path("file"), "x").unwrap();
    fs::create_dir(m.path("dir")).unwrap();
    assert_errno(File::open(m.path("missing")), libc::ENOENT, "open missing");
    assert_errno(
        File::open(m.path("missing/x")),
        libc::ENOENT,
        "open in missing dir",
    );
    assert_errno(
        OpenOptions::new().write(true).open(m.path("dir")),
        libc::EISDIR,
        "open a directory for writing",
    );
    assert_errno(File::open(m.path("file/x")), libc::ENOTDIR, "open file/x");
    assert_errno(
        fs::create_dir(m.path("file/x")),
        libc::ENOTDIR,
        "mkdir file/x",
    );
    assert_errno(
        fs::read_dir(m.path("file")),
        libc::ENOTDIR,
        "opendir of a file",
    );
    let mut buf = [0u8; 4];
    let mut d = File::open(m.path("dir")).unwrap();
    assert_errno(d.read(&mut buf), libc::EISDIR, "read(2) of a directory");
}

#[test]
fn permission_denied_on_the_server_is_eacces() {
    // Root on the server bypasses permission bits, so log in as `nobody`.
    let s = Sshd::start_as("nobody");
    let (uid, gid) = user_ids("nobody");
    fs::create_dir(s.remote("w")).unwrap();
    std::os::unix::fs::chown(s.remote("w"), Some(uid), Some(gid)).unwrap();
    fs::write(s.remote("w/secret"), "secret").unwrap(); // owned by root
    fs::set_permissions(s.remote("w/secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir(s.remote("w/rootdir")).unwrap(); // owned by root, 0755
    fs::set_permissions(s.remote("w/rootdir"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(s.remote("w/rootdir/ro"), "ro").unwrap();
    fs::set_permissions(s.remote("w/rootdir/ro"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::create_dir(s.remote("w/closed")).unwrap();
    fs::set_permissions(s.remote("w/closed"), fs::Permissions::from_mode(0o700)).unwrap();
    let m = Mount::new(&s, "w", &[]);

    assert_errno(
        File::open(m.path("secret")),
        libc::EACCES,
        "open a 0600 root file",
    );
    assert_errno(
        OpenOptions::new().write(true).open(m.path("rootdir/ro")),
        libc::EACCES,
        "open a 0644 root file for writing",
    );
    assert_eq!(fs::read_to_string(m.path("rootdir/ro")).unwrap(), "ro");
    assert_errno(
        fs::create_dir(m.path("rootdir/new")),
        libc::EACCES,
        "mkdir in a root dir",
    );
    assert_errno(
        File::create(m.path("rootdir/new")),
        libc::EACCES,
        "create in a root dir",
    );
    assert_errno(
        fs::remove_file(m.path("rootdir/ro")),
        libc::EACCES,
        "unlink in a root dir",
    );
    // EACCES at opendir (as a local filesystem) or at the latest at the first readdir.
    let listing = fs::read_dir(m.path("closed")).and_then(|mut d| match d.next() {
        Some(Err(e)) => Err(e),
        other => Ok(other.map(|e| e.unwrap().file_name())),
    });
    assert_errno(listing, libc::EACCES, "listing a 0700 root dir");
    // A local filesystem says EPERM; SFTP has only PERMISSION_DENIED: accept either.
    let e = errno(fs::set_permissions(
        m.path("secret"),
        fs::Permissions::from_mode(0o666),
    ));
    assert!(
        e == libc::EPERM || e == libc::EACCES,
        "chmod of another user's file: {}",
        errno_name(e)
    );
    assert_eq!(mode(&s.remote("w/secret")), 0o600);
    // What nobody may do still works.
    fs::write(m.path("mine"), "mine").unwrap();
    assert_eq!(fs::metadata(s.remote("w/mine")).unwrap().uid(), uid);
}

#[test]
fn inode_numbers_are_stable_and_distinct() {
    setup!(s, m);
    fs::write(m.path("a"), "a").unwrap();
    fs::write(m.path("b"), "b").unwrap();
    fs::create_dir(m.path("d")).unwrap();
    let ia = fs::metadata(m.path("a")).unwrap().ino();
    let ib = fs::metadata(m.path("b")).unwrap().ino();
    let id = fs::metadata(m.path("d")).unwrap().ino();
    let iroot = fs::metadata(m.path("")).unwrap().ino();
    let all = [ia, ib, id, iroot];
    for (i, x) in all.iter().enumerate() {
        for y in &all[i + 1..] {
            assert_ne!(x, y, "two different files share an inode number");
        }
    }
    // Stable across lookups, through readdir, and while a file is held open.
    let held = File::open(m.path("a")).unwrap();
    for _ in 0..3 {
        assert_eq!(fs::metadata(m.path("a")).unwrap().ino(), ia);
    }
    for e in fs::read_dir(m.path("")).unwrap() {
        let e = e.unwrap();
        use std::os::unix::fs::DirEntryExt;
        let want = match e.file_name().to_str().unwrap() {
            "a" => ia,
            "b" => ib,
            "d" => id,
            other => panic!("unexpected entry {other}"),
        };
        assert_eq!(e.ino(), want, "d_ino of {:?}", e.file_name());
    }
    assert_eq!(held.metadata().unwrap().ino(), ia);
    // Renames keep the number, also into another directory and back.
    fs::rename(m.path("a"), m.path("d/a2")).unwrap();
    assert_eq!(fs::metadata(m.path("d/a2")).unwrap().ino(), ia);
    fs::rename(m.path("d"), m.path("d2")).unwrap();
    assert_eq!(fs::metadata(m.path("d2")).unwrap().ino(), id);
    assert_eq!(fs::metadata(m.path("d2/a2")).unwrap().ino(), ia);
    assert_eq!(held.metadata().unwrap().ino(), ia);
}

#[test]
fn read_only_mount_refuses_writes_with_erofs() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    fs::write(s.remote("w/f"), "content").unwrap();
    fs::create_dir(s.remote("w/d")).unwrap();
    let m = Mount::new(&s, "w", &["ro"]);
    let info = mount_at(&m.mnt).unwrap();
    assert!(
        info.options.split(',').any(|o| o == "ro"),
        "mount options {} lack ro",
        info.options
    );
    assert_eq!(fs::read_to_string(m.path("f")).unwrap(), "content");
    assert_eq!(fs::read_dir(m.path("")).unwrap().count(), 2);
    assert_errno(File::create(m.path("new")), libc::EROFS, "create");
    assert_errno(
        OpenOptions::new().write(true).open(m.path("f")),
        libc::EROFS,
        "open for writing",
    );
    assert_errno(fs::create_dir(m.path("nd")), libc::EROFS, "mkdir");
    assert_errno(fs::remove_file(m.path("f")), libc::EROFS, "unlink");
    assert_errno(fs::remove_dir(m.path("d")), libc::EROFS, "rmdir");
    assert_errno(fs::rename(m.path("f"), m.path("g")), libc::EROFS, "rename");
    assert_errno(
        fs::set_permissions(m.path("f"), fs::Permissions::from_mode(0o600)),
        libc::EROFS,
        "chmod",
    );
    assert_errno(
        std::os::unix::fs::symlink("f", m.path("l")),
        libc::EROFS,
        "symlink",
    );
    assert_errno(
        access(&m.path("f"), libc::W_OK),
        libc::EROFS,
        "access(W_OK)",
    );
    assert_eq!(fs::read_to_string(s.remote("w/f")).unwrap(), "content");
    assert_eq!(mode(&s.remote("w/f")), 0o644);
}

// ---------------------------------------------------------------------------------------------
// uid= gid= umask= allow_other default_permissions

#[test]
fn uid_gid_umask_options_override_what_is_reported() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    fs::write(s.remote("w/f777"), "x").unwrap();
    fs::set_permissions(s.remote("w/f777"), fs::Permissions::from_mode(0o777)).unwrap();
    fs::write(s.remote("w/f644"), "x").unwrap();
    fs::set_permissions(s.remote("w/f644"), fs::Permissions::from_mode(0o644)).unwrap();
    let m = Mount::new(&s, "w", &["uid=1234", "gid=2345", "umask=027"]);
    let md = fs::metadata(m.path("f777")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 2345));
    assert_eq!(md.mode() & 0o777, 0o750, "0777 file with umask=027");
    let md = fs::metadata(m.path("f644")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 2345));
    // As sshfs/libfuse: the mode becomes 0777 & ~umask, whatever the server says.
    assert_eq!(md.mode() & 0o777, 0o750, "0644 file with umask=027");
    // The server's files are unchanged.
    assert_eq!(fs::metadata(s.remote("w/f644")).unwrap().uid(), 0);
    assert_eq!(mode(&s.remote("w/f644")), 0o644);
}

fn as_nobody(args: &[&str]) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run setpriv (util-linux)")
}

#[test]
fn without_allow_other_other_users_are_kept_out() {
    setup!(s, m);
    fs::write(m.path("f"), "x").unwrap();
    fs::set_permissions(m.path("f"), fs::Permissions::from_mode(0o644)).unwrap();
    let out = as_nobody(&["cat", m.path("f").to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "nobody could read a mount without allow_other"
    );
}

#[test]
fn allow_other_lets_other_users_in_and_default_permissions_checks_modes() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    fs::write(s.remote("w/public"), "public").unwrap();
    fs::set_permissions(s.remote("w/public"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(s.remote("w/private"), "private").unwrap();
    fs::set_permissions(s.remote("w/private"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(s.remote("w"), fs::Permissions::from_mode(0o755)).unwrap();
    // allow_other alone implies default_permissions.
    let m = Mount::new(&s, "w", &["allow_other"]);
    let out = as_nobody(&["cat", m.path("public").to_str().unwrap()]);
    assert!(
        out.status.success(),
        "nobody cannot read a 0644 file with allow_other: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"public");
    // The server runs as root and would allow it: only the kernel's check refuses.
    let out = as_nobody(&["cat", m.path("private").to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "nobody read a 0600 root file despite default_permissions"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = as_nobody(&["touch", m.path("new").to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "nobody created a file in a 0755 root dir"
    );
    assert!(!s.remote("w/new").exists());
    drop(m);
    // Opting out leaves the check to the server, which runs as root here and allows it.
    let m = Mount::new(&s, "w", &["allow_other", "no_default_permissions"]);
    let out = as_nobody(&["cat", m.path("private").to_str().unwrap()]);
    assert_eq!(
        out.stdout, b"private",
        "no_default_permissions: only the server decides"
    );
}
