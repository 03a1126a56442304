//! Concurrency and scale: 8 writers and 8 readers at once (on different files, and on one
//! file with the writers on disjoint regions), 1000 files open at once, and file names that
//! are not UTF-8. Every byte is checked, through the mount and on the server.

mod support;

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use support::*;

const THREADS: usize = 8;

/// Reads `len` bytes at `off` (fewer only at end of file).
fn read_at_most(f: &File, off: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match f.read_at(&mut buf[got..], off + got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// Cheap per-thread randomness for offsets and lengths.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Joins every thread, re-raising the first panic with its message.
fn join_all(handles: Vec<thread::JoinHandle<()>>) {
    let mut first = None;
    for h in handles {
        if let Err(e) = h.join() {
            first.get_or_insert(e);
        }
    }
    if let Some(e) = first {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn eight_writers_and_eight_readers_on_different_files() {
    const SIZE: usize = 3 << 20;
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    // The readers' files exist on the server from the start.
    for i in 0..THREADS {
        fs::write(
            s.remote(&format!("w/r{i}")),
            random_bytes(SIZE, 100 + i as u64),
        )
        .unwrap();
    }
    let m = Mount::new(&s, "w", &[]);
    let writers_done = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for i in 0..THREADS {
        let path = m.path(&format!("o{i}"));
        let done = writers_done.clone();
        handles.push(thread::spawn(move || {
            // Random-sized chunks, in order, then a few rewrites at random offsets.
            let data = random_bytes(SIZE, 200 + i as u64);
            let f = File::create(&path).unwrap();
            let mut rng = Rng(0x1234_5678 + i as u64);
            let mut off = 0usize;
            while off < SIZE {
                let n = (1 + rng.below(300_000) as usize).min(SIZE - off);
                f.write_all_at(&data[off..off + n], off as u64).unwrap();
                off += n;
            }
            for _ in 0..20 {
                let o = rng.below(SIZE as u64 - 5000) as usize;
                f.write_all_at(&data[o..o + 5000], o as u64).unwrap();
            }
            f.sync_all().unwrap();
            drop(f);
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    for i in 0..THREADS {
        let path = m.path(&format!("r{i}"));
        let done = writers_done.clone();
        handles.push(thread::spawn(move || {
            let want = random_bytes(SIZE, 100 + i as u64);
            let mut rng = Rng(0x9876_5432 + i as u64);
            let mut rounds = 0;
            // Whole reads through new descriptors and random reads, until the writers end.
            while rounds < 3 || done.load(Ordering::SeqCst) < THREADS {
                let got = fs::read(&path).unwrap();
                assert!(got == want, "reader {i}: whole read differs");
                let f = File::open(&path).unwrap();
                for _ in 0..20 {
                    let off = rng.below(SIZE as u64);
                    let len = 1 + rng.below(400_000) as usize;
                    let got = read_at_most(&f, off, len).unwrap();
                    let end = (off as usize + len).min(SIZE);
                    assert!(
                        got == want[off as usize..end],
                        "reader {i}: read of [{off}, {end}) differs"
                    );
                }
                rounds += 1;
                assert!(rounds < 10_000, "reader {i}: the writers never finished");
            }
        }));
    }
    join_all(handles);
    for i in 0..THREADS {
        let want = random_bytes(SIZE, 200 + i as u64);
        assert!(
            fs::read(m.remote(&format!("o{i}"))).unwrap() == want,
            "server copy of writer {i}'s file differs"
        );
        assert!(
            fs::read(m.path(&format!("o{i}"))).unwrap() == want,
            "writer {i}'s file read back through the mount differs"
        );
    }
}

#[test]
fn eight_writers_on_disjoint_regions_and_eight_readers_of_one_file() {
    const REGION: usize = 1 << 20;
    const SIZE: usize = THREADS * REGION;
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let old = Arc::new(random_bytes(SIZE, 300));
    let new = Arc::new(random_bytes(SIZE, 301));
    fs::write(s.remote("w/shared"), &*old).unwrap();
    let m = Mount::new(&s, "w", &[]);
    let path = m.path("shared");
    let writers_done = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for i in 0..THREADS {
        let (path, new, done) = (path.clone(), new.clone(), writers_done.clone());
        handles.push(thread::spawn(move || {
            let f = OpenOptions::new().write(true).open(&path).unwrap();
            let mut rng = Rng(0xabcd + i as u64);
            let base = i * REGION;
            // The region in pieces, in a scrambled order.
            let mut pieces: Vec<usize> = (0..REGION).step_by(32 << 10).collect();
            for k in (1..pieces.len()).rev() {
                pieces.swap(k, rng.below(k as u64 + 1) as usize);
            }
            for p in pieces {
                let n = (32 << 10).min(REGION - p);
                let o = base + p;
                f.write_all_at(&new[o..o + n], o as u64).unwrap();
            }
            f.sync_all().unwrap();
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    for i in 0..THREADS {
        let (path, old, new, done) = (path.clone(), old.clone(), new.clone(), writers_done.clone());
        handles.push(thread::spawn(move || {
            let f = File::open(&path).unwrap();
            let mut rng = Rng(0x5555 + i as u64);
            let mut rounds = 0;
            while rounds < 50 || done.load(Ordering::SeqCst) < THREADS {
                let off = rng.below(SIZE as u64) as usize;
                let len = 1 + rng.below(256 << 10) as usize;
                let got = read_at_most(&f, off as u64, len).unwrap();
                let end = (off + len).min(SIZE);
                assert_eq!(got.len(), end - off, "reader {i}: short read at {off}");
                // While the writers run, every byte is the old or the new one.
                for (k, b) in got.iter().enumerate() {
                    let at = off + k;
                    assert!(
                        *b == old[at] || *b == new[at],
                        "reader {i}: byte {at} is {b:#04x}, neither old {:#04x} nor new {:#04x}",
                        old[at],
                        new[at]
                    );
                }
                rounds += 1;
                assert!(rounds < 100_000, "reader {i}: the writers never finished");
            }
        }));
    }
    join_all(handles);
    let check = |what: &str, got: Vec<u8>| {
        assert_eq!(got.len(), SIZE, "{what}: size");
        if let Some(i) = (0..SIZE).find(|&i| got[i] != new[i]) {
            panic!(
                "{what}: byte {i} (region {}) is not the new one",
                i / REGION
            );
        }
    };
    check("server copy", fs::read(m.remote("shared")).unwrap());
    check(
        "read through the mount",
        fs::read(m.path("shared")).unwrap(),
    );
}

/// Raises the soft limit of open files to at least `n` (up to the hard limit).
fn allow_open_files(n: u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
    }
    if r.rlim_cur < n {
        r.rlim_cur = n.min(r.rlim_max);
        unsafe {
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
    assert!(
        r.rlim_cur >= n,
        "cannot have {n} files open: RLIMIT_NOFILE is {}",
        r.rlim_cur
    );
}

#[test]
fn a_thousand_files_open_at_once() {
    const N: usize = 1000;
    allow_open_files(N as u64 * 2 + 100);
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    fs::create_dir(s.remote("w/old")).unwrap();
    for i in 0..N {
        fs::write(s.remote(&format!("w/old/{i}")), format!("old file {i}\n")).unwrap();
    }
    let m = Mount::new(&s, "w", &[]);
    let t0 = std::time::Instant::now();
    let content = |i: usize| format!("file {i} of {N}: {}\n", "x".repeat(i % 97)).into_bytes();

    // 1000 new files, created and kept open.
    let created: Vec<File> = (0..N)
        .map(|i| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(m.path(&format!("f{i}")))
                .unwrap_or_else(|e| panic!("create f{i} with {i} files open: {e}"))
        })
        .collect();
    // And 1000 existing ones, opened for reading: 2000 open at once.
    let existing: Vec<File> = (0..N)
        .map(|i| {
            File::open(m.path(&format!("old/{i}")))
                .unwrap_or_else(|e| panic!("open old/{i} with {} files open: {e}", N + i))
        })
        .collect();
    for (i, f) in created.iter().enumerate() {
        f.write_all_at(&content(i), 0)
            .unwrap_or_else(|e| panic!("write f{i}: {e}"));
    }
    // Read back through every descriptor, in another order than written.
    for i in (0..N).rev() {
        let got = read_at_most(&created[i], 0, 4096).unwrap_or_else(|e| panic!("read f{i}: {e}"));
        assert_eq!(got, content(i), "f{i} read back through its descriptor");
        let got =
            read_at_most(&existing[i], 0, 4096).unwrap_or_else(|e| panic!("read old/{i}: {e}"));
        assert_eq!(got, format!("old file {i}\n").into_bytes(), "old/{i}");
    }
    // fsync and close every one: no error may be lost.
    for (i, f) in created.into_iter().enumerate() {
        f.sync_all().unwrap_or_else(|e| panic!("fsync f{i}: {e}"));
    }
    drop(existing);
    eprintln!(
        "stress: 1000 created + 1000 opened, written, read back and closed in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    for i in 0..N {
        assert_eq!(
            fs::read(m.remote(&format!("f{i}"))).unwrap(),
            content(i),
            "server copy of f{i}"
        );
    }
    let mut m = m;
    let start = std::time::Instant::now();
    let status = m.stop(Stop::Fusermount);
    assert!(
        status.success(),
        "exit status after fusermount3 -u: {status}"
    );
    eprintln!(
        "stress: 2000 files closed, unmounted and exited in {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

fn name(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

fn listing(dir: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    v.sort();
    v
}

#[test]
fn names_that_are_not_utf8_list_open_rename_and_unlink() {
    let latin1 = b"caf\xe9.txt";
    let renamed = b"caf\xe9-\xfc\xdf.txt";
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let server = |n: &[u8]| -> PathBuf { s.remote("w").join(name(n)) };
    fs::write(server(latin1), "made on the server\n").unwrap();
    // A directory with such a name, with a file in it.
    fs::create_dir(server(b"d\xe9j\xe0")).unwrap();
    fs::write(server(b"d\xe9j\xe0").join("inner"), "inner\n").unwrap();
    let m = Mount::new(&s, "w", &[]);
    let mnt = |n: &[u8]| -> PathBuf { m.path("").join(name(n)) };

    // readdir shows the exact bytes.
    assert_eq!(
        listing(&m.path("")),
        vec![latin1.to_vec(), b"d\xe9j\xe0".to_vec()],
        "readdir through the mount"
    );
    // open and read; stat; a path through a non-UTF-8 directory.
    assert_eq!(
        fs::read_to_string(mnt(latin1)).unwrap(),
        "made on the server\n"
    );
    assert!(fs::metadata(mnt(latin1)).unwrap().is_file());
    assert_eq!(
        fs::read_to_string(mnt(b"d\xe9j\xe0").join("inner")).unwrap(),
        "inner\n"
    );
    // Written through the mount, seen on the server.
    fs::write(mnt(latin1), "changed through the mount\n").unwrap();
    assert_eq!(
        fs::read_to_string(server(latin1)).unwrap(),
        "changed through the mount\n"
    );
    // rename to another non-UTF-8 name.
    fs::rename(mnt(latin1), mnt(renamed)).unwrap();
    assert!(
        !server(latin1).exists(),
        "the old name is still on the server"
    );
    assert_eq!(
        fs::read_to_string(server(renamed)).unwrap(),
        "changed through the mount\n"
    );
    assert_eq!(
        listing(&m.path("")),
        vec![renamed.to_vec(), b"d\xe9j\xe0".to_vec()],
        "readdir after the rename"
    );
    // A file created through the mount with a non-UTF-8 name lands with exactly those bytes.
    let made = b"\xff\xfe-made-here.bin";
    fs::write(mnt(made), "from the mount").unwrap();
    assert_eq!(fs::read_to_string(server(made)).unwrap(), "from the mount");
    // unlink both; rmdir-able directory after removing its file.
    fs::remove_file(mnt(renamed)).unwrap();
    fs::remove_file(mnt(made)).unwrap();
    fs::remove_file(mnt(b"d\xe9j\xe0").join("inner")).unwrap();
    fs::remove_dir(mnt(b"d\xe9j\xe0")).unwrap();
    assert!(
        listing(&s.remote("w")).is_empty(),
        "left on the server: {:?}",
        listing(&s.remote("w"))
    );
    assert!(listing(&m.path("")).is_empty());
}

/// The stress above with the connections killed once in the middle: the writers' bytes
/// still all arrive (each file's writes are replayed on a new connection).
#[test]
fn writers_and_readers_survive_a_connection_kill() {
    const SIZE: usize = 4 << 20;
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    for i in 0..4 {
        fs::write(s.remote(&format!("w/r{i}")), random_bytes(SIZE, 500 + i)).unwrap();
    }
    let m = Mount::new(
        &s,
        "w",
        &[
            "ServerAliveInterval=2",
            "ServerAliveCountMax=2",
            "timeout=10",
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for i in 0..4u64 {
        let (path, progress) = (m.path(&format!("o{i}")), progress.clone());
        handles.push(thread::spawn(move || {
            let data = random_bytes(SIZE, 600 + i);
            let f = File::create(&path).unwrap();
            for (k, chunk) in data.chunks(64 << 10).enumerate() {
                f.write_all_at(chunk, (k * (64 << 10)) as u64)
                    .unwrap_or_else(|e| panic!("writer {i}: {e}"));
                progress.fetch_add(1, Ordering::SeqCst);
            }
            f.sync_all()
                .unwrap_or_else(|e| panic!("writer {i}: fsync: {e}"));
        }));
    }
    for i in 0..4u64 {
        let (path, stop, progress) = (m.path(&format!("r{i}")), stop.clone(), progress.clone());
        handles.push(thread::spawn(move || {
            let want = random_bytes(SIZE, 500 + i);
            while !stop.load(Ordering::SeqCst) {
                let got = fs::read(&path).unwrap_or_else(|e| panic!("reader {i}: {e}"));
                assert!(got == want, "reader {i}: wrong bytes");
                progress.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    // Kill once the work is well under way.
    assert!(
        wait_until(std::time::Duration::from_secs(60), || progress
            .load(Ordering::SeqCst)
            >= 100),
        "no progress"
    );
    let killed = s.kill_connections();
    assert!(killed > 0);
    let (writers, readers): (Vec<_>, Vec<_>) = {
        let mut h = handles;
        let r = h.split_off(4);
        (h, r)
    };
    join_all(writers);
    stop.store(true, Ordering::SeqCst);
    join_all(readers);
    for i in 0..4u64 {
        assert!(
            fs::read(m.remote(&format!("o{i}"))).unwrap() == random_bytes(SIZE, 600 + i),
            "server copy of o{i} differs"
        );
    }
}
