//! End-to-end integrity (issue 23): the server's hashes as extended attributes, computed by
//! a hash program over an SSH exec channel of a private sshd (its login shell); `-o
//! verify_writes` against a server that stores other bytes than it was sent (a relay in
//! front of OpenSSH's sftp-server, `corrupting_sftp_server.py`); `sftpfs verify`.

mod support;

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::IntoRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

/// Names a wrongly quoted command would take for others (`a b` as `a` and `b`, `new\nline`
/// as two lines), for options, or run: each must hash its own file and nothing else.
const TRICKY: [&[u8]; 8] = [
    b"a b",
    b"it's \"quoted\"",
    b"new\nline",
    b"-rf",
    b"--help",
    b"$(touch pwned)`touch pwned2`;touch pwned3",
    b"caf\xe9 \xff",
    b"back\\slash*?",
];
/// Decoys: what a name split or cut by a wrong quoting would name instead.
const DECOYS: [&str; 5] = ["a", "b", "new", "line", "it"];

fn getxattr(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let p = cstr(path);
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 1024];
    let r = unsafe {
        libc::getxattr(
            p.as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

fn listxattr(path: &Path) -> Vec<String> {
    let p = cstr(path);
    let mut buf = vec![0u8; 4096];
    let r =
        unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    assert!(r >= 0, "listxattr: {}", std::io::Error::last_os_error());
    buf.truncate(r as usize);
    buf.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn setxattr(path: &Path, name: &str, value: &[u8]) -> i32 {
    let p = cstr(path);
    let n = CString::new(name).unwrap();
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr() as *const libc::c_void,
            value.len(),
            0,
        )
    };
    if r < 0 {
        std::io::Error::last_os_error().raw_os_error().unwrap()
    } else {
        0
    }
}

/// What `program` (sha256sum, md5sum) prints for the server's own file: the truth.
fn on_server(program: &str, path: &Path) -> String {
    let out = Command::new(program).arg("--").arg(path).output().unwrap();
    assert!(out.status.success(), "{program} {path:?}");
    String::from_utf8_lossy(&out.stdout)
        .trim_start_matches('\\')
        .split(' ')
        .next()
        .unwrap()
        .to_string()
}

fn path_of(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}

/// Writes `data` to a new file through the mount and closes it: close(2)'s own result (a
/// `File` dropped ignores it).
fn write_and_close(path: &Path, data: &[u8]) -> Result<(), i32> {
    let mut f = fs::File::create(path).map_err(|e| e.raw_os_error().unwrap())?;
    f.write_all(data).map_err(|e| e.raw_os_error().unwrap())?;
    let fd = f.into_raw_fd();
    if unsafe { libc::close(fd) } != 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap());
    }
    Ok(())
}

fn make_tricky_tree(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    for (i, n) in TRICKY.iter().enumerate() {
        fs::write(path_of(dir, n), random_bytes(1000 + i * 77, i as u64)).unwrap();
    }
    for (i, d) in DECOYS.iter().enumerate() {
        fs::write(dir.join(d), format!("decoy {i}")).unwrap();
    }
}

fn nothing_ran(s: &Sshd) {
    for p in ["pwned", "pwned2", "pwned3"] {
        let found = Command::new("find")
            .arg(&s.dir)
            .args(["-name", p])
            .output()
            .unwrap();
        assert!(
            found.stdout.is_empty(),
            "a name ran as a command: {found:?}"
        );
    }
}

#[test]
fn hash_xattrs_are_the_servers_digests_of_the_named_files() {
    let s = Sshd::start();
    let w = s.remote("w");
    make_tricky_tree(&w);
    let m = Mount::new(&s, "w", &[]);
    for n in TRICKY
        .iter()
        .copied()
        .chain(DECOYS.iter().map(|d| d.as_bytes()))
    {
        let shown = String::from_utf8_lossy(n);
        let p = path_of(&m.mnt, n);
        assert!(
            listxattr(&p).is_empty(),
            "{shown:?}: listed before any was computed"
        );
        let got = getxattr(&p, "user.sftpfs.sha256")
            .unwrap_or_else(|e| panic!("{shown:?}: {}\n{}", errno_name(e), m.stderr()));
        let want = on_server("sha256sum", &path_of(&w, n));
        assert_eq!(String::from_utf8_lossy(&got), want, "{shown:?}");
        let md5 = getxattr(&p, "user.sftpfs.md5").unwrap();
        assert_eq!(
            String::from_utf8_lossy(&md5),
            on_server("md5sum", &path_of(&w, n))
        );
        let listed = listxattr(&p);
        assert!(
            listed.contains(&"user.sftpfs.sha256".to_string())
                && listed.contains(&"user.sftpfs.md5".to_string()),
            "{shown:?}: {listed:?}"
        );
    }
    nothing_ran(&s);

    // A change on the server (another size): the next answer is the new file's.
    let f = path_of(&m.mnt, b"a b");
    fs::write(
        path_of(&w, b"a b"),
        b"changed on the server, longer than before...",
    )
    .unwrap();
    assert!(
        wait_until(std::time::Duration::from_secs(10), || {
            getxattr(&f, "user.sftpfs.sha256")
                .ok()
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                == Some(on_server("sha256sum", &path_of(&w, b"a b")))
        }),
        "the digest of the changed file"
    );
    // Read-only; other names as before (SFTP keeps none); a directory has no digest.
    assert_eq!(setxattr(&f, "user.sftpfs.sha256", b"0"), libc::EPERM);
    assert_eq!(setxattr(&f, "user.other", b"0"), libc::EOPNOTSUPP);
    assert_eq!(getxattr(&f, "user.other"), Err(libc::EOPNOTSUPP));
    assert_eq!(getxattr(&f, "user.sftpfs.nosuch"), Err(libc::ENODATA));
    assert_eq!(getxattr(&m.mnt, "user.sftpfs.sha256"), Err(libc::ENODATA));
}

/// The line of `sftpfs status` about hashes.
fn hashes_line(mnt: &Path) -> String {
    let out = Command::new(binary())
        .arg("status")
        .arg(mnt)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("hashes on the server"))
        .unwrap_or_else(|| panic!("no hashes line:\n{text}"))
        .to_string()
}

/// A mount of `w` with `verify_writes` (and `extra`) on a server with no hashes fails up
/// front, saying why, and mounts nothing.
fn verify_writes_refused(s: &Sshd, extra: &[&str]) {
    let mnt = s.mountpoint();
    let mut opts = extra.to_vec();
    opts.push("verify_writes");
    let mut cmd = s.command();
    cmd.args(s.mount_args("w", &mnt, &opts)).arg("-f");
    let run = run_to_exit(cmd, &s.dir, FAIL_DEADLINE);
    let err = run.one_line_error();
    assert!(
        err.contains("verify_writes") && err.contains("no hash"),
        "{err}"
    );
    assert!(!is_mounted(&mnt));
}

#[test]
fn without_a_means_to_hash_xattrs_are_enodata_and_verify_writes_is_refused_up_front() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    fs::write(s.remote("w/f"), b"data").unwrap();
    let m = Mount::new(&s, "w", &["hash_command=none"]);
    assert_eq!(
        getxattr(&m.path("f"), "user.sftpfs.sha256"),
        Err(libc::ENODATA)
    );
    let line = hashes_line(&m.mnt);
    assert!(
        line.contains("none (") && line.contains("hash_command=none"),
        "{line}"
    );
    drop(m);

    verify_writes_refused(&s, &["hash_command=none"]);
}

/// A host that allows SFTP and nothing else, as many hosting accounts do (`ForceCommand
/// internal-sftp`): every exec runs the SFTP server instead of the hash program. The probe
/// must see that there is no shell, within its deadline, never take the SFTP server's
/// silence or bytes for a digest: hashes are ENODATA, `sftpfs status` says why, and
/// `verify_writes` is refused up front.
#[test]
fn a_host_that_forces_sftp_on_every_exec_has_no_hashes_and_says_so() {
    let s = Sshd::start_with("root", |c| {
        let home = c
            .lines()
            .find_map(|l| l.strip_prefix("Subsystem sftp "))
            .expect("the subsystem line")
            .to_string();
        format!("{c}ForceCommand {home}\n")
    });
    fs::create_dir(s.remote("w")).unwrap();
    fs::write(s.remote("w/f"), b"data").unwrap();
    let m = Mount::new(&s, "w", &[]);
    assert_eq!(fs::read(m.path("f")).unwrap(), b"data", "SFTP itself works");
    let asked = std::time::Instant::now();
    assert_eq!(
        getxattr(&m.path("f"), "user.sftpfs.sha256"),
        Err(libc::ENODATA)
    );
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(25),
        "the hash waited {:?}",
        asked.elapsed()
    );
    let line = hashes_line(&m.mnt);
    assert!(line.contains("none ("), "{line}");
    drop(m);

    verify_writes_refused(&s, &[]);
}

/// A mount through the corrupting relay; its control file (write `flip` to corrupt).
fn corrupting_mount<'a>(s: &'a Sshd, extra: &[&str]) -> (Mount<'a>, PathBuf) {
    let control = s.local("control");
    fs::write(&control, "").unwrap();
    let relay = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corrupting_sftp_server.py");
    let wrapper = format!("python3 {} {} ", relay.display(), control.display());
    let server = s.sftp_server_script("corrupting.sh", "", &wrapper, "");
    let mut opts = vec![server.as_str()];
    opts.extend_from_slice(extra);
    (Mount::new(s, "w", &opts), control)
}

fn flipped(control: &Path) -> u64 {
    let p = format!("{}.flipped", control.display());
    fs::read_to_string(p)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn verify_writes_fails_close_and_fsync_with_eio_when_the_server_stores_other_bytes() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let (m, control) = corrupting_mount(&s, &["verify_writes"]);
    let data = random_bytes(300_000, 1);
    // An honest server: every close succeeds, and is counted verified.
    write_and_close(&m.path("good"), &data).unwrap();
    assert_eq!(fs::read(s.remote("w/good")).unwrap(), data);

    fs::write(&control, "flip").unwrap();
    assert_eq!(write_and_close(&m.path("bad one"), &data), Err(libc::EIO));
    let stored = fs::read(s.remote("w/bad one")).unwrap();
    assert_ne!(stored, data, "the server stored other bytes");
    assert!(flipped(&control) >= 1);
    let mut f = fs::File::create(m.path("synced")).unwrap();
    f.write_all(&data).unwrap();
    assert_eq!(
        f.sync_all().map_err(|e| e.raw_os_error()),
        Err(Some(libc::EIO))
    );
    let fd = f.into_raw_fd();
    assert_ne!(unsafe { libc::close(fd) }, 0, "close reports it too");
    let log = m.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("bad one") && l.contains("not what was written")),
        "the log names the file:\n{log}"
    );
    let st = status_json(&m.mnt);
    let v = &st["verify_writes"];
    assert!(v["verified"].as_u64().unwrap() >= 1, "{st}");
    assert!(v["mismatched"].as_u64().unwrap() >= 2, "{st}");
    drop(m);

    // The same server without verify_writes: the corruption passes silently (what the
    // option is for).
    let (m, _control) = corrupting_mount(&s, &[]);
    fs::write(&control, "flip").unwrap();
    write_and_close(&m.path("unchecked"), &data).unwrap();
    assert_ne!(fs::read(s.remote("w/unchecked")).unwrap(), data);
}

/// `tar x` of `files` small files into `x` of an asynchronous mount, `sftpfs sync`: all on
/// the server.
fn tar_x_and_sync(s: &Sshd, m: &Mount, files: usize) {
    small_files(&s.local("src/t"), 3, files);
    let archive = tarball(&s.local("src"), "t");
    fs::create_dir(m.path("x")).unwrap();
    sh(&m.path("x"), "tar", &["-xf", archive.to_str().unwrap()]);
    let out = sftpfs_sync(&m.mnt);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    same_tree(&s.local("src/t"), &s.remote("w/x/t"));
}

/// With `async_writes` the program's close is answered before the data is sent: the check
/// runs once the file's writes were answered, before its queued CLOSE, and a mismatch is
/// that close's failure — returned by the next `fsync` and reported by `sftpfs sync`.
#[test]
fn verify_writes_with_async_writes_fails_the_queued_close_and_sync_reports_it() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let journal = TempDir::new("journal");
    let journal_dir = format!("journal_dir={}", journal.path().display());
    let (m, control) = corrupting_mount(&s, &["verify_writes", "async_writes", &journal_dir]);
    let data = random_bytes(300_000, 2);
    // The first file is made the usual way (it tells the owner new files get).
    write_and_close(&m.path("first"), b"1").unwrap();
    // Each file in a directory just made through the mount: the mount knows the name is
    // free there, so the create is queued (elsewhere the server would be asked).
    let queued_write = |name: &str| {
        let dir = m.path(&format!("in-{}", name.replace(' ', "-")));
        fs::create_dir(&dir).unwrap();
        write_and_close(&dir.join(name), &data)
    };
    let on_server = |name: &str| {
        fs::read(s.remote(&format!("w/in-{}/{name}", name.replace(' ', "-")))).unwrap()
    };
    queued_write("good").unwrap();
    // And a tree of small files by tar: none cries wolf.
    tar_x_and_sync(&s, &m, 40);
    assert_eq!(on_server("good"), data);
    let st = status_json(&m.mnt);
    assert!(
        st["verify_writes"]["verified"].as_u64().unwrap() >= 41,
        "{st}"
    );
    assert_eq!(st["verify_writes"]["mismatched"], 0, "{st}");

    fs::write(&control, "flip").unwrap();
    // Answered at once, as the asynchronous mode does; the failure comes with the queue.
    queued_write("bad one").unwrap();
    let probe = fs::File::create(m.path("in-bad-one/probe")).unwrap();
    assert_eq!(
        probe.sync_all().map_err(|e| e.raw_os_error()),
        Err(Some(libc::EIO)),
        "fsync after the corrupted file's close"
    );
    drop(probe);
    queued_write("bad two").unwrap();
    let out = sftpfs_sync(&m.mnt);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "sftpfs sync: {said}");
    assert!(
        said.contains("bad two"),
        "sftpfs sync names the file: {said}"
    );
    for name in ["bad one", "bad two"] {
        assert_ne!(on_server(name), data);
    }
    let log = m.stderr();
    for name in ["bad one", "bad two"] {
        assert!(
            log.lines()
                .any(|l| l.contains(name) && l.contains("not what was written")),
            "the log names {name}:\n{log}"
        );
    }
    let st = status_json(&m.mnt);
    assert!(
        st["verify_writes"]["mismatched"].as_u64().unwrap() >= 2,
        "{st}"
    );
}

/// Another actor appends to the files on the server while this mount's queued copies of
/// them land (`async_writes`): a file someone else changed is `changed`, never a mismatch,
/// and no close or sync fails for it.
#[test]
fn verify_writes_with_async_writes_never_calls_another_writer_corruption() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let journal = TempDir::new("journal");
    let journal_dir = format!("journal_dir={}", journal.path().display());
    let m = Mount::new(&s, "w", &["verify_writes", "async_writes", &journal_dir]);
    write_and_close(&m.path("first"), b"1").unwrap();
    fs::create_dir(m.path("x")).unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let actor = {
        let (dir, stop) = (s.remote("w/x"), stop.clone());
        std::thread::spawn(move || {
            let mut appended = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let f = fs::OpenOptions::new().append(true).open(e.path());
                    if f.and_then(|mut f| f.write_all(b"+")).is_ok() {
                        appended += 1;
                    }
                }
            }
            appended
        })
    };
    const FILES: u64 = 30;
    for i in 0..FILES {
        let data = random_bytes(20_000, i);
        write_and_close(&m.path(&format!("x/f{i}")), &data).unwrap();
    }
    let out = sftpfs_sync(&m.mnt);
    stop.store(true, Ordering::SeqCst);
    let appended = actor.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = status_json(&m.mnt);
    let v = &st["verify_writes"];
    eprintln!("the other writer appended {appended} times: {v}");
    assert_eq!(v["mismatched"], 0, "{st}");
    assert_eq!(v["failed"], 0, "{st}");
    let counted = v["verified"].as_u64().unwrap() + v["changed"].as_u64().unwrap();
    assert!(counted > FILES, "every file checked (and first): {st}");
}

fn verify(args: &[&OsStr], dir: &Path) -> Run {
    let mut cmd = Command::new(binary());
    cmd.arg("verify").args(args);
    run_to_exit(cmd, dir, FAIL_DEADLINE)
}

#[test]
fn sftpfs_verify_reports_exactly_the_file_that_differs_with_its_exit_status() {
    let s = Sshd::start();
    let w = s.remote("w");
    make_tricky_tree(&w.join("t"));
    fs::create_dir_all(w.join("t/sub")).unwrap();
    fs::write(w.join("t/sub/deep"), random_bytes(50_000, 9)).unwrap();
    fs::write(w.join("t/empty"), b"").unwrap();
    let local = s.local("copy");
    sh(
        &s.dir,
        "cp",
        &["-a", w.join("t").to_str().unwrap(), local.to_str().unwrap()],
    );
    let m = Mount::new(&s, "w", &[]);
    let t = m.path("t");
    let against = |extra: &[&OsStr]| {
        let mut a: Vec<&OsStr> = vec![OsStr::new("--against"), local.as_os_str()];
        a.extend_from_slice(extra);
        a.push(t.as_os_str());
        verify(&a, &s.dir)
    };
    let run = against(&[]);
    assert_eq!(
        run.status.unwrap().code(),
        Some(0),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    let files = TRICKY.len() + DECOYS.len() + 2;
    assert_eq!(
        run.stdout.lines().filter(|l| l.starts_with("OK ")).count(),
        files,
        "{}",
        run.stdout
    );
    nothing_ran(&s);

    // One byte of one file flipped on the server: that file, and only it.
    let victim = path_of(&w.join("t"), b"new\nline");
    let mut bytes = fs::read(&victim).unwrap();
    bytes[500] ^= 1;
    fs::write(&victim, &bytes).unwrap();
    let run = against(&[OsStr::new("--json")]);
    assert_eq!(run.status.unwrap().code(), Some(1), "{}", run.stderr);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let bad: Vec<&serde_json::Value> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["result"] != "OK")
        .collect();
    assert_eq!(bad.len(), 1, "{doc}");
    assert_eq!(bad[0]["result"], "MISMATCH");
    assert!(
        bad[0]["path"].as_str().unwrap().ends_with("/new\\nline"),
        "{doc}"
    );
    assert_eq!(doc["summary"]["ok"], files - 1);

    // A file only in the local copy.
    fs::write(local.join("extra"), b"x").unwrap();
    fs::write(&victim, fs::read(local.join("new\nline")).unwrap()).unwrap();
    let run = against(&[]);
    assert_eq!(run.status.unwrap().code(), Some(1));
    let not_ok: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| !l.starts_with("OK "))
        .collect();
    assert_eq!(not_ok.len(), 1, "{}", run.stdout);
    assert!(
        not_ok[0].starts_with("MISSING") && not_ok[0].ends_with("/extra  (only in the local copy)"),
        "{not_ok:?}"
    );

    // Without a local copy and nothing written through the mount: nothing to compare (2).
    let run = verify(&[m.path("t/sub/deep").as_os_str()], &s.dir);
    assert_eq!(run.status.unwrap().code(), Some(2), "{}", run.stdout);
    assert!(run.stdout.starts_with("UNKNOWN "), "{}", run.stdout);

    // Bad input: one line, non-zero.
    let outside = s.local("");
    let run = verify(&[outside.as_os_str()], &s.dir);
    let err = run.one_line_error();
    assert!(err.contains("not inside an sftpfs mount"), "{err}");
    let run = verify(&[], &s.dir);
    assert!(run.one_line_error().contains("which files"));
    let run = verify(
        &[
            OsStr::new("--against"),
            OsStr::new("/nonexistent-x"),
            t.as_os_str(),
        ],
        &s.dir,
    );
    assert!(run.one_line_error().contains("--against"));
}

#[test]
fn sftpfs_verify_compares_with_what_a_verify_writes_mount_wrote() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", &["verify_writes"]);
    let data = random_bytes(100_000, 3);
    write_and_close(&m.path("f"), &data).unwrap();
    let run = verify(&[m.path("f").as_os_str()], &s.dir);
    assert_eq!(
        run.status.unwrap().code(),
        Some(0),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    // Flipped on the server afterwards, size kept: verify says so.
    let mut bytes = data.clone();
    bytes[99_999] ^= 0x80;
    fs::write(s.remote("w/f"), &bytes).unwrap();
    let run = verify(&[m.path("f").as_os_str()], &s.dir);
    assert_eq!(
        run.status.unwrap().code(),
        Some(1),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.starts_with("MISMATCH"), "{}", run.stdout);
    assert!(
        run.stdout.contains("what this mount wrote"),
        "{}",
        run.stdout
    );
}

/// Opens `path` for writing without truncating it.
fn open_rw(path: &Path) -> fs::File {
    fs::OpenOptions::new().write(true).open(path).unwrap()
}

fn close(f: fs::File) -> Result<(), i32> {
    if unsafe { libc::close(f.into_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap());
    }
    Ok(())
}

/// Two descriptors on the mount write one file between them, in order: the file the
/// server holds is checked whole, so a server corrupting it fails the closes; a write
/// elsewhere (not in order) leaves nothing to compare, and no close fails on an honest
/// server.
#[test]
fn verify_writes_with_two_writers_on_the_mount_neither_cries_wolf_nor_hides_corruption() {
    use std::io::{Seek, SeekFrom};
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let (m, control) = corrupting_mount(&s, &["verify_writes"]);
    let (a, b) = (random_bytes(200_000, 5), random_bytes(150_000, 6));
    for corrupt in [false, true] {
        fs::write(&control, if corrupt { "flip" } else { "" }).unwrap();
        let p = m.path(&format!("two-{corrupt}"));
        let mut first = fs::File::create(&p).unwrap();
        first.write_all(&a).unwrap();
        let mut second = open_rw(&p);
        second.seek(SeekFrom::Start(a.len() as u64)).unwrap();
        second.write_all(&b).unwrap();
        let (r2, r1) = (close(second), close(first));
        let stored = fs::read(s.remote(&format!("w/two-{corrupt}"))).unwrap();
        assert_eq!(stored.len(), a.len() + b.len());
        if corrupt {
            assert_ne!(stored[..a.len()], a[..]);
            assert!(
                r2 == Err(libc::EIO) && r1 == Err(libc::EIO),
                "{r2:?} {r1:?}"
            );
        } else {
            assert_eq!(stored, [a.clone(), b.clone()].concat());
            assert_eq!((r2, r1), (Ok(()), Ok(())));
        }
    }
    // A second writer rewriting the middle: not in order, not checked, not an error.
    fs::write(&control, "").unwrap();
    let p = m.path("rewritten");
    let mut first = fs::File::create(&p).unwrap();
    first.write_all(&a).unwrap();
    let mut second = open_rw(&p);
    second.seek(SeekFrom::Start(1000)).unwrap();
    second.write_all(b"the middle").unwrap();
    assert_eq!((close(second), close(first)), (Ok(()), Ok(())));
    // Other tests' forked children may flush the descriptors too: counts are at least.
    let v = &status_json(&m.mnt)["verify_writes"];
    assert!(v["verified"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["unchecked"].as_u64().unwrap() >= 1, "{v}");
}

/// The file changed on the server by another program after the mount's writes landed
/// (longer, or replaced by a file of as many bytes, by a rename): not this mount's
/// transfer failing. Its close succeeds, the log and status say it changed.
#[test]
fn verify_writes_does_not_call_a_change_on_the_server_corruption() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", &["verify_writes", "debug"]);
    let data = random_bytes(100_000, 7);
    for (i, how) in ["append", "replace"].iter().enumerate() {
        let name = format!("changed-{how}");
        let mut f = fs::File::create(m.path(&name)).unwrap();
        f.write_all(&data).unwrap();
        let server = s.remote(&format!("w/{name}"));
        assert!(
            wait_until(std::time::Duration::from_secs(10), || {
                fs::read(&server).is_ok_and(|d| d == data)
            }),
            "the writes landed"
        );
        // Until the mount took the landed file's size and time (its debug log says).
        let landed = format!("landed: {} bytes sent", data.len());
        assert!(
            wait_until(std::time::Duration::from_secs(10), || {
                m.stderr().matches(&landed).count() > i
            }),
            "{}",
            m.stderr()
        );
        match *how {
            "append" => {
                let mut o = fs::OpenOptions::new().append(true).open(&server).unwrap();
                o.write_all(b"appended on the server").unwrap();
            }
            _ => {
                // Changed whole in one step (no fork either: another process's copy of the
                // descriptor closed at exec flushes it, and checks it, in between).
                let mut other = data.clone();
                other[10] ^= 1;
                let tmp = s.remote("w/.tmp");
                fs::write(&tmp, &other).unwrap();
                let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
                let t = fs::File::options().write(true).open(&tmp).unwrap();
                t.set_modified(later).unwrap();
                fs::rename(&tmp, &server).unwrap();
            }
        }
        assert_eq!(close(f), Ok(()), "{how}: {}", m.stderr());
        // A flush by a forked child of another test (its copy of the descriptor closed at
        // exec) may check the file once more: at least once each.
        let v = &status_json(&m.mnt)["verify_writes"];
        assert!(v["changed"].as_u64().unwrap() > i as u64, "{how}: {v}");
        assert_eq!(v["mismatched"], 0, "{how}: {v}");
    }
    assert!(
        m.stderr().contains("changed on the server after"),
        "{}",
        m.stderr()
    );
}

/// ProFTPD computes hashes itself (`check-file-name`/`check-file-handle`): the digests are
/// its, equal to sha256sum/md5sum of its files, and verify_writes works with no shell at
/// all (ProFTPD has none to offer).
#[test]
fn proftpd_hashes_by_check_file_without_a_shell() {
    let server = Server::proftpd(true);
    let w = server.remote("w");
    make_tricky_tree(&w);
    let m = server.mount("w", &["verify_writes"]);
    for n in [&b"a b"[..], b"-rf", b"new\nline", b"caf\xe9 \xff"] {
        let p = path_of(&m.mnt, n);
        let got =
            getxattr(&p, "user.sftpfs.sha256").unwrap_or_else(|e| panic!("{}", errno_name(e)));
        assert_eq!(
            String::from_utf8_lossy(&got),
            on_server("sha256sum", &path_of(&w, n))
        );
        let md5 = getxattr(&p, "user.sftpfs.md5").unwrap();
        assert_eq!(
            String::from_utf8_lossy(&md5),
            on_server("md5sum", &path_of(&w, n))
        );
    }
    // blake2b: neither check-file nor a command here.
    assert_eq!(
        getxattr(&m.path("a"), "user.sftpfs.blake2b"),
        Err(libc::ENODATA)
    );
    let data = random_bytes(70_000, 4);
    write_and_close(&m.path("written"), &data).unwrap();
    assert_eq!(fs::read(w.join("written")).unwrap(), data);
    let st = status_json(&m.mnt);
    assert!(
        st["verify_writes"]["verified"].as_u64().unwrap() >= 1,
        "{st}\n{}",
        m.stderr()
    );
    let means = st["hashes"]["means"].as_str().unwrap();
    assert!(means.contains("by check-file"), "{st}");
}

/// What crosses the link (counted by a relay in front of sshd): a server-side hash of a
/// 64 MiB file is a few KiB of exec channel; verify_writes adds a few KiB to a 32 MiB
/// write, not a second copy.
#[test]
fn hashes_cost_kilobytes_on_the_link_not_the_file() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let big = random_bytes(64 << 20, 8);
    fs::write(s.remote("w/big"), &big).unwrap();
    let proxy = support::proxy::Proxy::start(s.port);
    let m = Mount::via_port(&s, proxy.port(), "w", &["verify_writes"]);
    // The probe at mount is done once the status shows the command's means.
    assert!(wait_until(std::time::Duration::from_secs(10), || {
        status_json(&m.mnt)["hashes"]["means"]
            .as_str()
            .is_some_and(|t| t.contains("a command"))
    }));
    let before = proxy.bytes();
    let got = getxattr(&m.path("big"), "user.sftpfs.sha256").unwrap();
    let hashed = proxy.bytes() - before;
    assert_eq!(
        String::from_utf8_lossy(&got),
        on_server("sha256sum", &s.remote("w/big"))
    );
    eprintln!("getxattr of 64 MiB: {hashed} bytes on the link");
    assert!(hashed < 16 << 10, "{hashed} bytes");

    let data = random_bytes(32 << 20, 9);
    let before = proxy.bytes();
    write_and_close(&m.path("copy"), &data).unwrap();
    let wrote = proxy.bytes() - before;
    let v = &status_json(&m.mnt)["verify_writes"];
    assert!(v["verified"].as_u64().unwrap() >= 1, "{v}");
    eprintln!("32 MiB written with verify_writes: {wrote} bytes on the link");
    assert!(wrote < data.len() as u64 + (1 << 20), "{wrote} bytes");
}

/// Checks while the file is being written: another descriptor opened and closed (a check
/// at each close) beside a writer that never pauses, on an honest server. No check may call
/// the bytes still on their way a mismatch; the writer's own close is verified.
#[test]
fn verify_writes_checks_beside_a_running_writer_never_fail_wrongly() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", &["verify_writes"]);
    let p = m.path("growing");
    let mut w = fs::File::create(&p).unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let closes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let closer = {
        let (p, done, count) = (p.clone(), done.clone(), closes.clone());
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            let mut n = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
                if let Err(e) = close(f) {
                    failures.push(e);
                }
                n += 1;
                count.store(n, std::sync::atomic::Ordering::SeqCst);
            }
            (n, failures)
        })
    };
    let mut all = Vec::new();
    // Until the other descriptor was closed (and checked) 8 times, at most 12 MB.
    for i in 0..3_000u64 {
        if closes.load(std::sync::atomic::Ordering::SeqCst) >= 8 {
            break;
        }
        let chunk = random_bytes(4000, 100 + i);
        w.write_all(&chunk).unwrap();
        all.extend_from_slice(&chunk);
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (closes, failures) = closer.join().unwrap();
    assert_eq!(close(w), Ok(()), "{}", m.stderr());
    assert!(
        failures.is_empty(),
        "{failures:?} in {closes} closes:\n{}",
        m.stderr()
    );
    assert_eq!(fs::read(s.remote("w/growing")).unwrap(), all);
    let v = &status_json(&m.mnt)["verify_writes"];
    assert_eq!(v["mismatched"], 0, "{v}");
    assert!(v["verified"].as_u64().unwrap() >= 1, "{v}");
    eprintln!("{closes} closes beside the writer: {v}");
}

/// An asynchronous `tar x` through a slow link with `verify_writes`: the queue's closes come
/// many at once, and their hashes go together, many files to one command run on the server,
/// instead of a run (an exec channel's round trips) each. All verified.
#[test]
fn verify_writes_with_async_writes_hashes_many_closes_in_one_run() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let journal = TempDir::new("journal");
    let journal_dir = format!("journal_dir={}", journal.path().display());
    let p = support::proxy::Proxy::start(s.port);
    p.delay(std::time::Duration::from_millis(20));
    let m = Mount::via_port(
        &s,
        p.port(),
        "w",
        &["verify_writes", "async_writes", &journal_dir],
    );
    write_and_close(&m.path("first"), b"1").unwrap();
    tar_x_and_sync(&s, &m, 120);
    let st = status_json(&m.mnt);
    let verified = st["verify_writes"]["verified"].as_u64().unwrap();
    let runs = st["hashes"]["exec_runs"].as_u64().unwrap();
    eprintln!("{verified} files verified in {runs} command runs");
    assert!(verified >= 121, "{st}");
    assert_eq!(st["verify_writes"]["mismatched"], 0, "{st}");
    assert!(
        runs * 4 <= verified,
        "{verified} files verified in {runs} command runs"
    );
}

/// Seconds of `f`, run once.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = std::time::Instant::now();
    let r = f();
    (r, t.elapsed().as_secs_f64())
}

/// The numbers of issue 23 (`bench/integrity`; a release binary through `SFTPFS_TEST_BIN`):
/// a server-side hash of a large file through the xattr (time and bytes on the link) beside
/// `sha256sum` on the server; `sftpfs verify --against` of a tree of small files at 40 ms
/// RTT beside `rclone check` of the same tree over its sftp backend through the same link;
/// a large write with and without `verify_writes`. Sizes: `SFTPFS_BENCH_BIG_MB` (1024),
/// `SFTPFS_BENCH_FILES` (10 000), `SFTPFS_BENCH_WRITE_MB` (512).
#[test]
#[ignore = "a benchmark: bench/integrity"]
fn integrity_numbers() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (big_mb, files, write_mb) = (
        env("SFTPFS_BENCH_BIG_MB", 1024),
        env("SFTPFS_BENCH_FILES", 10_000),
        env("SFTPFS_BENCH_WRITE_MB", 512),
    );
    // rclone hashes one file per exec session, a few round trips each: the whole tree would
    // take it most of an hour, so it checks the first directories (100 files each).
    let rclone_files = env("SFTPFS_BENCH_RCLONE_FILES", 1000).min(files);
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let block = random_bytes(16 << 20, 23);
    {
        let mut f = fs::File::create(s.remote("w/big")).unwrap();
        for _ in 0..big_mb.div_ceil(16) {
            f.write_all(&block).unwrap();
        }
    }
    let counted = support::proxy::Proxy::start(s.port);
    fs::write(s.remote("w/small"), b"probe").unwrap();
    let m = Mount::via_port(&s, counted.port(), "w", &[]);
    // The first hash probes what the server offers: not part of the measurement.
    getxattr(&m.path("small"), "user.sftpfs.sha256").unwrap();
    // Both from the server's page cache: the file was just written.
    let (want, on_server_s) = timed(|| on_server("sha256sum", &s.remote("w/big")));
    let before = counted.bytes();
    let (got, xattr_s) = timed(|| getxattr(&m.path("big"), "user.sftpfs.sha256").unwrap());
    let link = counted.bytes() - before;
    assert_eq!(String::from_utf8_lossy(&got), want);
    drop(m);

    // verify_writes on a large write, loopback, default mode: cp from a local file.
    fs::write(s.local("src"), &block).unwrap();
    {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(s.local("src"))
            .unwrap();
        for _ in 1..write_mb.div_ceil(16) {
            f.write_all(&block).unwrap();
        }
    }
    let cp_with = |extra: &[&str], name: &str| {
        let m = Mount::new(&s, "w", extra);
        let (out, secs) = timed(|| {
            Command::new("cp")
                .arg(s.local("src"))
                .arg(m.path(name))
                .output()
                .unwrap()
        });
        assert!(out.status.success(), "cp: {out:?}");
        if !extra.is_empty() {
            let v = &status_json(&m.mnt)["verify_writes"];
            assert_eq!(v["verified"].as_u64(), Some(1), "{v}");
        }
        secs
    };
    let plain_s = cp_with(&[], "plain");
    let verified_s = cp_with(&["verify_writes"], "verified");

    // A tree of small files at 40 ms RTT: sftpfs verify --against, then rclone check.
    let local = s.local("tree");
    for i in 0..files {
        let d = local.join(format!("d{:03}", i / 100));
        if i % 100 == 0 {
            fs::create_dir_all(&d).unwrap();
        }
        fs::write(d.join(format!("f{i:05}")), random_bytes(4096, i as u64)).unwrap();
    }
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&local)
        .arg(s.remote("w/tree"))
        .status()
        .unwrap();
    assert!(copied.success());
    let slow = support::proxy::Proxy::start(s.port);
    slow.delay(std::time::Duration::from_millis(20));
    let m = Mount::via_port(&s, slow.port(), "w", &[]);
    let (run, verify_s) = timed(|| {
        let mut cmd = Command::new(binary());
        cmd.arg("verify")
            .arg("--against")
            .arg(&local)
            .arg(m.path("tree"));
        run_to_exit(cmd, &s.dir, std::time::Duration::from_secs(1800))
    });
    assert!(
        run.status.is_some_and(|s| s.success()),
        "sftpfs verify: {}",
        run.stderr
    );
    let remote = format!(
        ":sftp,host=127.0.0.1,port={},user=root,key_file={},known_hosts_file={}:{}",
        slow.port(),
        s.client_key.display(),
        s.known_hosts.display(),
        s.remote("w/tree").display()
    );
    let (out, rclone_s) = timed(|| {
        let mut c = Command::new("rclone");
        c.args(["check", "--config", "/dev/null", "--one-way"]);
        for d in 0..rclone_files.div_ceil(100) {
            c.arg("--include").arg(format!("/d{d:03}/**"));
        }
        c.arg(&local).arg(&remote).output().unwrap()
    });
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "rclone check: {said}");
    let hashes = said
        .lines()
        .find(|l| l.contains("matching files"))
        .and_then(|l| l.rsplit(": ").next())
        .unwrap_or("")
        .to_string();
    report(&format!(
        "\n| what | sftpfs | beside it | |\n|---|---:|---:|---|\n\
         | sha256 of a {big_mb} MiB file, getxattr (loopback) | {xattr_s:.2} s | {on_server_s:.2} s | `sha256sum` on the server; {link} bytes on the link |\n\
         | `cp` of {write_mb} MiB (loopback) | {verified_s:.2} s with `verify_writes` | {plain_s:.2} s without | {:.2}× |\n\
         | files of 4 KiB, 40 ms RTT | {verify_s:.2} s `sftpfs verify --against` of {files} | {rclone_s:.2} s `rclone check` of {rclone_files} | per file {:.1}× faster; rclone said: {hashes} |",
        verified_s / plain_s,
        (rclone_s / rclone_files as f64) / (verify_s / files as f64),
    ));
}
