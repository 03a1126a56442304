//! Behaviours that independent suites (fsx, pjdfstest) check and the other tests did not:
//! `copy_file_range` within one file, a directory's times after a change of its entries,
//! every name of a hard-linked file agreeing, link counts after rename and unlink, and the
//! errno of an impossible truncate. Each compares the mount with a local filesystem doing
//! the same calls, not only with the server.

mod support;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::*;

/// A time long past, for "did the directory's mtime move?" without waiting for the clock.
const OLD: i64 = 1_000_000_000;

macro_rules! setup {
    ($s:ident, $m:ident) => {
        let $s = Sshd::start();
        fs::create_dir($s.remote("w")).unwrap();
        let $m = Mount::new(&$s, "w", &[]);
    };
}

fn copy_range(fin: &File, off_in: i64, fout: &File, off_out: i64, len: usize) -> io::Result<usize> {
    let (mut i, mut o) = (off_in, off_out);
    let n =
        unsafe { libc::copy_file_range(fin.as_raw_fd(), &mut i, fout.as_raw_fd(), &mut o, len, 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn rw(p: &Path) -> File {
    OpenOptions::new().read(true).write(true).open(p).unwrap()
}

fn set_mtime(p: &Path, secs: i64) {
    let t = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    let c = cstr(p);
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [t, t].as_ptr(), 0) };
    assert_eq!(
        r,
        0,
        "utimensat {}: {}",
        p.display(),
        io::Error::last_os_error()
    );
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `copy_file_range` to another offset of the same file, through one descriptor and
/// through two, gives what a local filesystem gives; so does an overlapping range (EINVAL),
/// a range past the end, and a copy between two names of one hard-linked file.
#[test]
fn copy_file_range_within_one_file_matches_a_local_filesystem() {
    setup!(s, m);
    let local = TempDir::new("cfr-local");
    let data = random_bytes(300_000, 9);
    for dir in [m.path(""), local.path().to_path_buf()] {
        let p = dir.join("f");
        fs::write(&p, &data).unwrap();
        fs::hard_link(&p, dir.join("g")).unwrap();
        let f = rw(&p);
        assert_eq!(
            copy_range(&f, 0, &f, 200_000, 50_000).unwrap(),
            50_000,
            "{}: same descriptor",
            dir.display()
        );
        let f2 = rw(&p);
        assert_eq!(
            copy_range(&f, 10_000, &f2, 290_000, 20_000).unwrap(),
            20_000,
            "{}: two descriptors of one file, growing it",
            dir.display()
        );
        assert_errno(
            copy_range(&f, 0, &f, 1000, 5000),
            libc::EINVAL,
            "overlapping ranges of one file",
        );
        assert_eq!(
            copy_range(&f, 1_000_000, &f2, 0, 100).unwrap(),
            0,
            "past EOF"
        );
        let g = rw(&dir.join("g"));
        assert_eq!(
            copy_range(&g, 100, &f, 5, 7).unwrap(),
            7,
            "{}: from another name of the file",
            dir.display()
        );
    }
    let want = fs::read(local.path().join("f")).unwrap();
    assert_eq!(want.len(), 310_000);
    let got = fs::read(m.path("f")).unwrap();
    assert!(got == want, "the mount's copy differs from the local one");
    let on_server = fs::read(s.remote("w/f")).unwrap();
    assert!(
        on_server == want,
        "the server's copy differs from the local one"
    );
}

/// A directory's mtime moves with every change of its entries made through the mount, at
/// once, as on a local disk (make, rsync and file managers look at it).
#[test]
fn directory_mtime_moves_with_every_namespace_change() {
    setup!(s, m);
    fs::create_dir(m.path("d")).unwrap();
    fs::create_dir(m.path("e")).unwrap();
    fs::write(m.path("d/file"), "x").unwrap();
    fs::create_dir(m.path("d/sub")).unwrap();
    let d = m.path("d");
    let e = m.path("e");
    type Change<'a> = (&'a str, Box<dyn Fn() -> io::Result<()> + 'a>, Vec<&'a Path>);
    let changes: Vec<Change> = vec![
        (
            "mkdir",
            Box::new(|| fs::create_dir(d.join("new"))),
            vec![&d],
        ),
        (
            "create",
            Box::new(|| File::create(d.join("c")).map(drop)),
            vec![&d],
        ),
        (
            "symlink",
            Box::new(|| std::os::unix::fs::symlink("c", d.join("l"))),
            vec![&d],
        ),
        (
            "link",
            Box::new(|| fs::hard_link(d.join("c"), d.join("h"))),
            vec![&d],
        ),
        (
            "unlink",
            Box::new(|| fs::remove_file(d.join("h"))),
            vec![&d],
        ),
        (
            "rmdir",
            Box::new(|| fs::remove_dir(d.join("new"))),
            vec![&d],
        ),
        (
            "rename within",
            Box::new(|| fs::rename(d.join("c"), d.join("c2"))),
            vec![&d],
        ),
        (
            "rename across",
            Box::new(|| fs::rename(d.join("file"), e.join("file"))),
            vec![&d, &e],
        ),
        (
            "rename of a directory across",
            Box::new(|| fs::rename(d.join("sub"), e.join("sub"))),
            vec![&d, &e],
        ),
    ];
    for (what, change, parents) in &changes {
        for p in [&d, &e] {
            set_mtime(p, OLD);
            // Seen through the mount first, so that the old time is what the caches hold.
            assert_eq!(fs::metadata(p).unwrap().mtime(), OLD);
        }
        let before = now_secs();
        change().unwrap_or_else(|err| panic!("{what}: {err}"));
        for p in parents {
            let mt = fs::metadata(p).unwrap().mtime();
            assert!(
                mt >= before - 1 && mt <= now_secs() + 1,
                "{what}: {} still shows mtime {mt} (server: {})",
                p.display(),
                fs::metadata(s.remote(&format!("w/{}", p.file_name().unwrap().to_str().unwrap())))
                    .unwrap()
                    .mtime()
            );
        }
    }
}

/// What is done through one name of a hard-linked file is seen through every other name at
/// once: size, data, mode, owner.
#[test]
fn every_name_of_a_hard_linked_file_agrees() {
    setup!(s, m);
    fs::write(m.path("a"), "").unwrap();
    fs::hard_link(m.path("a"), m.path("b")).unwrap();
    // Both names known to the caches before the change.
    assert_eq!(fs::metadata(m.path("a")).unwrap().len(), 0);
    assert_eq!(fs::metadata(m.path("b")).unwrap().len(), 0);
    File::options()
        .write(true)
        .open(m.path("b"))
        .unwrap()
        .set_len(77777)
        .unwrap();
    assert_eq!(
        fs::metadata(m.path("a")).unwrap().len(),
        77777,
        "size through a"
    );
    fs::set_permissions(m.path("a"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        fs::metadata(m.path("b")).unwrap().mode() & 0o7777,
        0o600,
        "mode through b"
    );
    std::os::unix::fs::chown(m.path("b"), Some(1234), Some(4321)).unwrap();
    let a = fs::metadata(m.path("a")).unwrap();
    assert_eq!((a.uid(), a.gid()), (1234, 4321), "owner through a");
    // The issue's sequence: truncate through one name, remove the other.
    fs::write(m.path("x"), "").unwrap();
    fs::hard_link(m.path("x"), m.path("y")).unwrap();
    let c = cstr(&m.path("y"));
    assert_eq!(unsafe { libc::truncate(c.as_ptr(), 77777) }, 0);
    fs::remove_file(m.path("x")).unwrap();
    assert_eq!(fs::metadata(m.path("y")).unwrap().len(), 77777, "stat y");
    assert_eq!(fs::read(m.path("y")).unwrap().len(), 77777, "cat y");
    assert_eq!(fs::metadata(s.remote("w/y")).unwrap().len(), 77777);
    // A write through one name, read through the other with a descriptor open on each.
    let fa = rw(&m.path("a"));
    let fb = rw(&m.path("b"));
    fa.write_all_at(b"through a", 10).unwrap();
    let mut buf = [0u8; 9];
    fb.read_exact_at(&mut buf, 10).unwrap();
    assert_eq!(&buf, b"through a");
    assert_eq!(fb.metadata().unwrap().len(), 77777);
}

/// Link counts follow renames over a name and unlinks, through the surviving names and
/// through the descriptor of an unlinked file (0, as on a local disk).
#[test]
fn link_counts_follow_rename_over_and_unlink() {
    setup!(s, m);
    // Made on the server before the mount saw the directory.
    fs::create_dir(s.remote("w/srv")).unwrap();
    fs::write(s.remote("w/srv/p"), "old").unwrap();
    fs::hard_link(s.remote("w/srv/p"), s.remote("w/srv/q")).unwrap();
    fs::hard_link(s.remote("w/srv/p"), s.remote("w/srv/p2")).unwrap();
    fs::write(s.remote("w/srv/r"), "new").unwrap();
    // Links made through the mount.
    fs::write(m.path("a"), "old").unwrap();
    fs::hard_link(m.path("a"), m.path("b")).unwrap();
    fs::write(m.path("c"), "new").unwrap();
    assert_eq!(fs::metadata(m.path("a")).unwrap().nlink(), 2);
    fs::rename(m.path("c"), m.path("b")).unwrap();
    assert_eq!(
        fs::metadata(m.path("a")).unwrap().nlink(),
        1,
        "a after mv c b"
    );
    assert_eq!(
        fs::metadata(m.path("b")).unwrap().nlink(),
        1,
        "b after mv c b"
    );
    // Links made on the server, learned from a listing. The kernel keeps what it was told
    // of another inode for attr_timeout (1 s); the mount must not keep it longer.
    assert_eq!(fs::read_dir(m.path("srv")).unwrap().count(), 4);
    assert_eq!(fs::metadata(m.path("srv/p")).unwrap().nlink(), 3);
    assert_eq!(fs::metadata(m.path("srv/q")).unwrap().nlink(), 3);
    fs::rename(m.path("srv/r"), m.path("srv/q")).unwrap();
    assert_eq!(fs::metadata(s.remote("w/srv/p")).unwrap().nlink(), 2);
    let nlink = |p: &str| fs::metadata(m.path(p)).unwrap().nlink();
    assert!(
        wait_until(Duration::from_secs(5), || nlink("srv/p") == 2),
        "p after mv r q: nlink {}",
        nlink("srv/p")
    );
    fs::remove_file(m.path("srv/p2")).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || nlink("srv/p") == 1),
        "p after rm p2: nlink {}",
        nlink("srv/p")
    );
    // An open file, unlinked.
    let f = File::create(m.path("open")).unwrap();
    assert_eq!(f.metadata().unwrap().nlink(), 1);
    fs::remove_file(m.path("open")).unwrap();
    assert_eq!(
        f.metadata().unwrap().nlink(),
        0,
        "fstat of an unlinked file"
    );
    let local = TempDir::new("nlink-local");
    let lf = File::create(local.path().join("open")).unwrap();
    fs::remove_file(local.path().join("open")).unwrap();
    assert_eq!(lf.metadata().unwrap().nlink(), 0);
}

/// A size the server's filesystem cannot hold is EFBIG (as the same call on that filesystem
/// gives), not EIO.
#[test]
fn an_impossible_truncate_gives_the_local_errno() {
    setup!(s, m);
    let huge: i64 = 999_999_999_999_999;
    let truncate = |p: &Path| {
        let c = cstr(p);
        if unsafe { libc::truncate(c.as_ptr(), huge) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    fs::write(s.remote("w/f"), "x").unwrap();
    fs::write(s.remote("local"), "x").unwrap();
    let want = truncate(&s.remote("local")).map_err(|e| e.raw_os_error().unwrap());
    let got = truncate(&m.path("f")).map_err(|e| e.raw_os_error().unwrap());
    assert_eq!(
        got.map_err(errno_name),
        want.map_err(errno_name),
        "truncate -s {huge} on the mount and on the server's own filesystem"
    );
    let f = File::options().write(true).open(m.path("f")).unwrap();
    assert_errno(f.set_len(huge as u64), want.unwrap_err(), "ftruncate");
    assert_eq!(fs::metadata(m.path("f")).unwrap().len(), 1);
}

/// The mtime a write gave a file survives a change that keeps it (`utimensat` with the
/// mtime `UTIME_OMIT`) and shows in the answer to a chown that changes nothing, as on a
/// local disk (found by fsx: the cache's pre-write mtime was sent back to the server).
#[test]
fn a_write_moves_the_mtime_whatever_attribute_change_follows() {
    setup!(s, m);
    let local = TempDir::new("mtime-local");
    for dir in [m.path(""), local.path().to_path_buf()] {
        let p = dir.join("f");
        let f = File::create_new(&p).unwrap();
        f.write_all_at(b"first", 0).unwrap();
        set_mtime(&p, OLD);
        let before = now_secs();
        f.write_all_at(b"second", 5).unwrap();
        std::os::unix::fs::chown(&p, Some(0), Some(0)).unwrap();
        let mt = fs::metadata(&p).unwrap().mtime();
        assert!(mt >= before - 1, "{}: after chown, mtime {mt}", p.display());
        let at = libc::timespec {
            tv_sec: (OLD + 5) as libc::time_t,
            tv_nsec: 0,
        };
        let omit = libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        };
        let c = cstr(&p);
        let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [at, omit].as_ptr(), 0) };
        assert_eq!(r, 0);
        drop(f);
        let st = fs::metadata(&p).unwrap();
        assert_eq!(st.atime(), OLD + 5, "{}", p.display());
        assert!(
            st.mtime() >= before - 1,
            "{}: mtime {}",
            p.display(),
            st.mtime()
        );
    }
    let st = fs::metadata(s.remote("w/f")).unwrap();
    assert!(
        st.mtime() > OLD + 5,
        "the server's mtime went back to {}",
        st.mtime()
    );
}

/// Two descriptors of one file write the same bytes in turn: the later write wins, as on a
/// local disk, although each descriptor's writes are answered before they land and the two
/// may travel on different connections (found by fsx: the older bytes landed last).
#[test]
fn the_later_of_two_descriptors_writes_wins() {
    setup!(s, m);
    for round in 0..30u64 {
        let name = format!("f{round}");
        let p = m.path(&name);
        fs::write(&p, "").unwrap();
        let (a, b) = (rw(&p), rw(&p));
        let (old, new) = (
            random_bytes(200_000, round),
            random_bytes(150_000, round + 100),
        );
        a.write_all_at(&old, 0).unwrap();
        b.write_all_at(&new, 20_000).unwrap();
        drop(a);
        b.sync_all().unwrap();
        let mut want = old.clone();
        want[20_000..170_000].copy_from_slice(&new);
        let got = fs::read(s.remote(&format!("w/{name}"))).unwrap();
        assert!(got == want, "round {round}: the older write landed last");
    }
}

/// A rename over one name of a hard-linked file leaves the others with one link fewer, not
/// none (found by fsx: `link b c; rename l b; stat c` gave nlink 0).
#[test]
fn a_rename_over_one_name_of_a_linked_file_keeps_the_others() {
    setup!(s, m);
    let local = TempDir::new("rename-over-link");
    for dir in [m.path(""), local.path().to_path_buf()] {
        fs::write(dir.join("b"), "linked").unwrap();
        fs::hard_link(dir.join("b"), dir.join("c")).unwrap();
        fs::write(dir.join("l"), "other").unwrap();
        assert_eq!(fs::metadata(dir.join("c")).unwrap().nlink(), 2);
        fs::rename(dir.join("l"), dir.join("b")).unwrap();
        assert_eq!(
            fs::metadata(dir.join("c")).unwrap().nlink(),
            1,
            "{}",
            dir.display()
        );
        fs::hard_link(dir.join("c"), dir.join("d")).unwrap();
        fs::hard_link(dir.join("c"), dir.join("e")).unwrap();
        fs::rename(dir.join("b"), dir.join("d")).unwrap();
        assert_eq!(
            fs::metadata(dir.join("c")).unwrap().nlink(),
            2,
            "{}",
            dir.display()
        );
        assert_eq!(
            fs::metadata(dir.join("e")).unwrap().nlink(),
            2,
            "{}",
            dir.display()
        );
    }
    assert_eq!(fs::metadata(s.remote("w/c")).unwrap().nlink(), 2);
}

/// open(O_TRUNC) of a file another descriptor has written (and still holds) empties it for
/// every view: stat by name and through either descriptor, reads through the first one, and
/// after both are closed — as on a local filesystem. fsx found the size of the writes kept.
#[test]
fn a_truncating_open_beside_a_writing_descriptor_empties_the_file() {
    setup!(s, m);
    let local = TempDir::new("otrunc-local");
    let data = random_bytes(5000, 3);
    let run = |dir: &Path| {
        let p = dir.join("f");
        let mut seen = Vec::new();
        let fd = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&p)
            .unwrap();
        fd.write_all_at(&data, 0).unwrap();
        // Read back, so that any read-ahead of the first descriptor holds the old bytes.
        let mut buf = vec![0; 5000];
        assert_eq!(fd.read_at(&mut buf, 0).unwrap(), 5000);
        let t = OpenOptions::new()
            .read(true)
            .write(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        let size = |what: &str, seen: &mut Vec<(String, u64)>, fd: Option<&File>| {
            let n = match fd {
                Some(f) => f.metadata().unwrap().len(),
                None => fs::symlink_metadata(&p).unwrap().len(),
            };
            seen.push((what.to_string(), n));
        };
        size("lstat after O_TRUNC", &mut seen, None);
        size("fstat of the writer", &mut seen, Some(&fd));
        size("fstat of the truncating fd", &mut seen, Some(&t));
        let n = fd.read_at(&mut buf, 0).unwrap();
        seen.push(("read through the writer".into(), n as u64));
        t.write_all_at(b"abc", 0).unwrap();
        size("lstat after 3 bytes at 0", &mut seen, None);
        fd.write_all_at(b"xyz", 10).unwrap();
        size("lstat after 3 bytes at 10", &mut seen, None);
        drop(fd);
        size("lstat after closing the writer", &mut seen, None);
        size("fstat of the truncating fd", &mut seen, Some(&t));
        drop(t);
        size("lstat after closing both", &mut seen, None);
        (seen, fs::read(&p).unwrap())
    };
    let (want, want_data) = run(local.path());
    let (got, got_data) = run(&m.path(""));
    assert_eq!(got, want, "mount vs local filesystem");
    assert_eq!(got_data, want_data, "contents, mount vs local");
    assert_eq!(fs::read(s.remote("w/f")).unwrap(), want_data, "server");
}

/// A page of a `MAP_SHARED` mapping made through an `O_APPEND` descriptor is written back at
/// its own offset: `O_APPEND` is about `write(2)`, not about the page cache (fsx found the
/// page appended at the end instead).
#[test]
fn an_mmap_write_through_an_o_append_descriptor_stays_in_place() {
    setup!(s, m);
    let local = TempDir::new("mmap-append-local");
    let data = random_bytes(20_000, 11);
    for dir in [m.path(""), local.path().to_path_buf()] {
        let p = dir.join("f");
        fs::write(&p, &data).unwrap();
        let f = OpenOptions::new().read(true).append(true).open(&p).unwrap();
        unsafe {
            let map = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            );
            assert_ne!(map, libc::MAP_FAILED, "{}: mmap", dir.display());
            std::ptr::copy_nonoverlapping(b"0123456789".as_ptr(), map as *mut u8, 10);
            assert_eq!(libc::msync(map, 4096, libc::MS_SYNC), 0, "msync");
            assert_eq!(libc::munmap(map, 4096), 0);
        }
        drop(f);
    }
    let want = fs::read(local.path().join("f")).unwrap();
    assert_eq!(want.len(), 20_000);
    let got = fs::read(m.path("f")).unwrap();
    assert_eq!(got.len(), want.len(), "size through the mount");
    assert!(
        got == want,
        "the mount's contents differ from the local ones"
    );
    let on_server = fs::read(s.remote("w/f")).unwrap();
    assert!(
        on_server == want,
        "the server's contents differ from the local ones"
    );
}

/// An `O_APPEND` write lands at the end the file has for its other descriptors, also while
/// their writes are still on their way to the server (write-behind, on other connections):
/// before the append (the server's end is short of the file's) and after it (a later write
/// may overtake it). Several rounds, as the order in which the server sees them varies.
#[test]
fn an_o_append_write_lands_at_the_end_other_descriptors_see() {
    setup!(s, m);
    let local = TempDir::new("append-local");
    let appended = random_bytes(65_451, 12);
    let later = random_bytes(20_547, 13);
    let big = random_bytes(1 << 20, 14);
    for round in 0..6 {
        let name = format!("f{round}");
        let mut reads = Vec::new();
        for dir in [m.path(""), local.path().to_path_buf()] {
            let p = dir.join(&name);
            let a = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&p)
                .unwrap();
            let b = rw(&p);
            b.set_len(35_100).unwrap();
            let append = || OpenOptions::new().read(true).append(true).open(&p).unwrap();
            // What fsx did: the append, then a write through another descriptor.
            let mut c = append();
            io::Write::write_all(&mut c, &appended).unwrap();
            a.write_all_at(&later, 100_551).unwrap();
            let mut buf = vec![0u8; 30_000];
            let n = a.read_at(&mut buf, 93_437).unwrap();
            buf.truncate(n);
            reads.push(buf);
            assert_eq!(
                a.metadata().unwrap().len(),
                121_098,
                "{}: size",
                p.display()
            );
            // The other way round: a big write still travelling when the append comes.
            let mut d = append();
            b.write_all_at(&big, 200_000).unwrap();
            io::Write::write_all(&mut d, &appended).unwrap();
            let want = 200_000 + big.len() as u64 + appended.len() as u64;
            assert_eq!(d.metadata().unwrap().len(), want, "{}: size", p.display());
        }
        assert!(
            reads[0] == reads[1],
            "round {round}: pread after the writes differs"
        );
        let want = fs::read(local.path().join(&name)).unwrap();
        let got = fs::read(m.path(&name)).unwrap();
        assert_eq!(
            got.len(),
            want.len(),
            "round {round}: size through the mount"
        );
        assert!(
            got == want,
            "round {round}: the mount's contents differ from the local ones"
        );
        let on_server = fs::read(s.remote(&format!("w/{name}"))).unwrap();
        assert!(
            on_server == want,
            "round {round}: the server's contents differ"
        );
    }
}

/// A directory made in a setgid directory inherits the bit, as the server's filesystem
/// gives it (fsx: the mount took it away again).
#[test]
fn mkdir_keeps_a_setgid_bit_inherited_from_the_parent() {
    setup!(s, m);
    let local = TempDir::new("setgid-local");
    for dir in [m.path(""), local.path().to_path_buf()] {
        fs::create_dir(dir.join("g")).unwrap();
        fs::set_permissions(dir.join("g"), fs::Permissions::from_mode(0o2755)).unwrap();
        fs::create_dir(dir.join("g/sub")).unwrap();
        let mode = fs::metadata(dir.join("g/sub")).unwrap().mode() & 0o7777;
        assert_eq!(mode & 0o2000, 0o2000, "{}: mode {mode:o}", dir.display());
    }
    let mode = fs::metadata(s.remote("w/g/sub")).unwrap().mode() & 0o7777;
    assert_eq!(mode & 0o2000, 0o2000, "server: mode {mode:o}");
}

/// fsync of one descriptor puts on the server what every descriptor of the file wrote.
#[test]
fn fsync_covers_the_writes_of_every_descriptor_of_the_file() {
    setup!(s, m);
    fs::write(m.path("f"), "").unwrap();
    let (a, b) = (rw(&m.path("f")), rw(&m.path("f")));
    let data = random_bytes(3 << 20, 5);
    a.write_all_at(&data, 0).unwrap();
    b.sync_all().unwrap();
    let got = fs::read(s.remote("w/f")).unwrap();
    assert!(
        got == data,
        "the server has {} of {} bytes",
        got.len(),
        data.len()
    );
}

#[test]
fn an_open_with_o_trunc_right_after_close_leaves_the_file_empty() {
    // The kernel sends RELEASE after close(2) has returned: the closing handle's last FSTAT
    // may be answered before the truncating open reaches the server, and must not bring
    // the old size back (fsx found it).
    setup!(s, m);
    let data = random_bytes(400_000, 5);
    for round in 0..30 {
        let p = m.path("f");
        let f = rw_create(&p);
        for chunk in data.chunks(20_000) {
            io::Write::write_all(&mut &f, chunk).unwrap();
        }
        drop(f);
        let g = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        assert_eq!(g.metadata().unwrap().len(), 0, "round {round}: fstat");
        assert_eq!(
            fs::symlink_metadata(&p).unwrap().len(),
            0,
            "round {round}: lstat"
        );
    }
    assert_eq!(fs::metadata(s.remote("w/f")).unwrap().len(), 0);
}

fn rw_create(p: &Path) -> File {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(p)
        .unwrap()
}

/// Runs `rename(2)` as the unprivileged user 65534 (pjdfstest's `-u 65534 -g 65534`).
fn rename_as_nobody(from: &Path, to: &Path) -> io::Result<()> {
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args([
            "/usr/bin/python3",
            "-c",
            "import os, sys\ntry:\n    os.rename(sys.argv[1], sys.argv[2])\n\
             except OSError as e:\n    sys.exit(e.errno)",
        ])
        .arg(from)
        .arg(to)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run setpriv (util-linux) and python3");
    match out.status.code() {
        Some(0) => Ok(()),
        Some(e) => Err(io::Error::from_raw_os_error(e)),
        None => panic!("rename as nobody died: {out:?}"),
    }
}

/// What pjdfstest's `create_file TYPE NAME UID GID` makes: the file, given to `owner`.
fn make_owned(kind: &str, p: &Path, owner: u32) {
    match kind {
        "regular" => drop(File::create(p).unwrap()),
        "symlink" => std::os::unix::fs::symlink("test", p).unwrap(),
        _ => unreachable!(),
    }
    std::os::unix::fs::lchown(p, Some(owner), Some(owner))
        .unwrap_or_else(|e| panic!("lchown {} just made ({kind}): {e}", p.display()));
}

/// pjdfstest `rename/09.t` and `rename/10.t` in `top`, for the kinds of file SFTP can make:
/// a file is renamed by the unprivileged user 65534 back and forth between a sticky directory
/// and a plain one, over nothing and over a file of each kind, with each of the owners the
/// scripts try for the sticky directory and the file. What each step answered, as lines:
/// the errno of a call, or for `lstat` whether the name holds the file that was moved (its
/// inode) and its owner.
fn sticky_renames(top: &Path) -> Vec<String> {
    let (n0, n1) = (top.join("n0"), top.join("n1"));
    fs::create_dir(top).unwrap();
    fs::create_dir(&n0).unwrap();
    fs::set_permissions(&n0, fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir(&n1).unwrap();
    std::os::unix::fs::chown(&n1, Some(65534), Some(65534)).unwrap();
    let (from, to) = (n0.join("n2"), n1.join("n3"));
    let mut log = Vec::new();
    let answer = |r: io::Result<()>| match r {
        Ok(()) => "0".to_string(),
        Err(e) => errno_name(e.raw_os_error().unwrap_or(0)),
    };
    let look = |p: &Path, ino: u64| match fs::symlink_metadata(p) {
        Ok(md) => format!(
            "{},{},{}",
            if md.ino() == ino { "moved" } else { "other" },
            md.uid(),
            md.gid()
        ),
        Err(e) => errno_name(e.raw_os_error().unwrap_or(0)),
    };
    for kind in ["regular", "symlink"] {
        // (owner of the sticky directory, owner of the file): both the user's, then each
        // of the others, as the scripts' four blocks.
        let mut owners = vec![(65534, 65534)];
        for id in [0, 65533] {
            owners.extend([(65534, id), (id, 65534), (id, id)]);
        }
        for (dir_owner, file_owner) in owners {
            std::os::unix::fs::chown(&n0, Some(dir_owner), Some(dir_owner)).unwrap();
            make_owned(kind, &from, file_owner);
            let ino = fs::symlink_metadata(&from).unwrap().ino();
            for over in [None, Some("regular"), Some("symlink")] {
                log.push(format!(
                    "{kind} in a dir of {dir_owner}, owned by {file_owner}, over {over:?}"
                ));
                if let Some(o) = over {
                    make_owned(o, &to, 65534);
                }
                log.push(format!("rename: {}", answer(rename_as_nobody(&from, &to))));
                log.push(format!("old name: {}", look(&from, ino)));
                log.push(format!("new name: {}", look(&to, ino)));
                log.push(format!("back: {}", answer(rename_as_nobody(&to, &from))));
                log.push(format!("old name: {}", look(&from, ino)));
                log.push(format!("new name: {}", look(&to, ino)));
                if fs::symlink_metadata(&to).is_ok() {
                    fs::remove_file(&to).unwrap();
                }
            }
            fs::remove_file(&from).unwrap();
        }
    }
    log
}

/// pjdfstest `rename/09.t` and `rename/10.t` (the kinds of file SFTP can make; the others
/// are EPERM on `mknod` through the mount, as with sshfs): the mount answers each step as a
/// local disk does, on an `allow_other,default_permissions` mount as the unprivileged user
/// 65534. A name cache outliving a rename would show as the old name still `lstat`ing.
#[test]
fn renames_between_a_sticky_and_a_plain_directory_answer_as_a_local_disk() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    fs::set_permissions(s.remote("w"), fs::Permissions::from_mode(0o755)).unwrap();
    let m = Mount::new(&s, "w", &["allow_other", "default_permissions"]);
    let local = TempDir::new("sticky-rename");
    let want = sticky_renames(&local.path().join("t"));
    let got = sticky_renames(&m.path("t"));
    assert!(want.iter().any(|l| l == "rename: 0"), "{want:?}");
    assert!(
        want.iter()
            .any(|l| l.starts_with("rename: ") && l != "rename: 0"),
        "refused renames too: {want:?}"
    );
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(g, w, "step {i}, after {:?}", &want[i.saturating_sub(6)..i]);
    }
    assert_eq!(got.len(), want.len());
}
