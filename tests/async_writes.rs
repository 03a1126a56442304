//! The asynchronous write mode (`-o async_writes`, issue 12): nothing is lost silently. A
//! queued operation that fails is reported by the next fsync and by `sftpfs sync`, and shows
//! in the log and in `sftpfs status`; a connection killed with a full queue loses nothing;
//! unmounting sends everything first.

mod support;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::proxy::Proxy;
use support::*;

fn queued(mnt: &Path) -> u64 {
    status_json(mnt)["async_writes"]["queued_operations"]
        .as_u64()
        .unwrap_or(0)
}

/// A mount that has made its first file (made synchronously: it tells the owner new files
/// get on the server).
fn first_file(m: &Mount) {
    fs::write(m.path("first"), b"1").unwrap();
}

#[test]
fn a_failed_queued_operation_is_reported_by_fsync_sync_the_log_and_status() {
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w/d")).unwrap();
    fs::write(s.remote("w/other"), b"x").unwrap();
    // No revalidation: the mount keeps believing d is a directory.
    let m = Mount::new(&s, "w", &["async_writes", "revalidate=0"]);
    first_file(&m);
    assert_eq!(fs::read_dir(m.path("d")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(m.path("")).unwrap().count(), 3);
    // Behind the mount's back, d becomes a file: a file made in it cannot be created.
    fs::remove_dir(s.remote("w/d")).unwrap();
    fs::write(s.remote("w/d"), b"not a directory").unwrap();
    // Answered once queued (or, if the server's refusal came first, refused at close).
    let early = fs::write(m.path("d/f"), b"lost?").is_err();
    let mut other = fs::OpenOptions::new()
        .write(true)
        .open(m.path("first"))
        .unwrap();
    other.write_all(b"2").unwrap();
    let fsync = other.sync_all();
    assert!(
        early || fsync.is_err(),
        "neither the close of d/f nor the next fsync reported the failed create"
    );
    let v = status_json(&m.path(""));
    assert!(
        v["async_writes"]["failed_operations"].as_u64().unwrap() >= 1,
        "{v}"
    );
    let prom = Command::new(binary())
        .args(["status", "--prometheus"])
        .arg(m.path(""))
        .output()
        .unwrap();
    let prom = String::from_utf8_lossy(&prom.stdout);
    let failed = (prom.lines())
        .find(|l| l.starts_with("sftpfs_async_failed_operations_total{"))
        .and_then(|l| l.rsplit_once(' '))
        .map(|(_, n)| n.to_string());
    assert!(
        failed.is_some_and(|n| n.parse::<u64>().unwrap() >= 1),
        "{prom}"
    );
    assert!(
        v["errors"]["recent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "d/f" && e["op"] == "create"),
        "{v}"
    );
    // Another failure, reported by `sftpfs sync` (exit 1, naming it).
    fs::remove_file(s.remote("w/other")).unwrap();
    fs::remove_file(m.path("other")).unwrap();
    let out = sftpfs_sync(&m.path(""));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "sftpfs sync: {said}");
    assert!(said.contains("unlink of other"), "{said}");
    // Reported once: the next sync has nothing to say.
    assert!(sftpfs_sync(&m.path("")).status.success());
    // And the log says what failed, with its path.
    assert!(
        m.stderr().contains("queued create of d/f failed"),
        "{}",
        m.stderr()
    );
}

#[test]
fn a_connection_killed_with_a_full_queue_loses_nothing() {
    let s = Sshd::start();
    small_files(&s.local("src/t"), 1, 200);
    let archive = tarball(&s.local("src"), "t");
    fs::create_dir(s.remote("w")).unwrap();
    let p = Proxy::start(s.port);
    p.delay(Duration::from_millis(10));
    let m = Mount::via_port(&s, p.port(), "w", &["async_writes", "max_conns=1"]);
    first_file(&m);
    let tar = Command::new("tar")
        .args(["-xf", archive.to_str().unwrap()])
        .current_dir(m.path(""))
        .spawn()
        .unwrap();
    let mut tar = KillOnDrop(tar);
    // Cut every connection while files are being sent and the queue holds more: once some
    // landed, the proxy holds everything back (tar goes on into the journal) until the
    // queue holds 50 operations, sent and unsent.
    let on_server = || fs::read_dir(s.remote("w/t/d00")).map_or(0, |d| d.count());
    let deadline = Instant::now() + Duration::from_secs(60);
    while on_server() < 20 {
        assert!(Instant::now() < deadline, "no file reached the server");
        std::thread::sleep(Duration::from_millis(2));
    }
    p.stall();
    while queued(&m.path("")) < 50 {
        assert!(
            Instant::now() < deadline,
            "the queue never held 50 operations"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    p.cut();
    p.resume();
    assert!(tar.0.wait().unwrap().success(), "tar failed");
    let out = sftpfs_sync(&m.path(""));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    same_tree(&s.local("src/t"), &s.remote("w/t"));
    let v = status_json(&m.path(""));
    assert!(
        v["connections"][0]["reconnects"].as_u64().unwrap() >= 1,
        "{v}"
    );
}

#[test]
fn unmounting_sends_everything_queued_first() {
    let s = Sshd::start();
    small_files(&s.local("src/t"), 3, 90);
    let archive = tarball(&s.local("src"), "t");
    fs::create_dir(s.remote("w")).unwrap();
    let p = Proxy::start(s.port);
    p.delay(Duration::from_millis(20));
    let mut m = Mount::via_port(&s, p.port(), "w", &["async_writes", "max_conns=1"]);
    first_file(&m);
    sh(&m.path(""), "tar", &["-xf", archive.to_str().unwrap()]);
    assert!(
        queued(&m.path("")) > 0,
        "tar's work was all sent before it returned"
    );
    m.stop(Stop::Fusermount);
    same_tree(&s.local("src/t"), &s.remote("w/t"));
}

#[test]
fn a_file_larger_than_the_queue_streams_through_it() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", &["async_writes"]);
    first_file(&m);
    // More than the queue holds (32 MiB): the writer waits for room, never for its close.
    let data = random_bytes(40 << 20, 9);
    fs::write(m.path("big"), &data).unwrap();
    let out = sftpfs_sync(&m.path(""));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        fs::read(s.remote("w/big")).unwrap() == data,
        "the server's copy differs"
    );
    assert_eq!(fs::read(m.path("big")).unwrap(), data);
}

/// git's filemode probe, many times over from several threads: a file is written, closed,
/// renamed, and its mode flipped twice by name, while the kernel's release of its descriptor
/// reaches the mount at about the same time. A change queued after the file's CLOSE must go
/// by name, not through the closed handle (the server answers that with a failure).
#[test]
fn mode_changes_by_name_racing_the_release_of_the_file_all_land() {
    use std::os::unix::fs::PermissionsExt;
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", &["async_writes"]);
    first_file(&m);
    const THREADS: usize = 4;
    const ROUNDS: usize = 100;
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let m = &m;
            scope.spawn(move || {
                for i in 0..ROUNDS {
                    let lock = m.path(&format!("c{t}-{i}.lock"));
                    let name = m.path(&format!("c{t}-{i}"));
                    fs::write(&lock, format!("{t} {i}\n")).unwrap();
                    fs::rename(&lock, &name).unwrap();
                    for mode in [0o755, 0o640] {
                        fs::set_permissions(&name, fs::Permissions::from_mode(mode)).unwrap();
                    }
                }
            });
        }
    });
    let out = sftpfs_sync(&m.path(""));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for t in 0..THREADS {
        for i in 0..ROUNDS {
            let p = s.remote(&format!("w/c{t}-{i}"));
            let meta = fs::metadata(&p).unwrap();
            assert_eq!(meta.permissions().mode() & 0o7777, 0o640, "{}", p.display());
            assert_eq!(fs::read_to_string(&p).unwrap(), format!("{t} {i}\n"));
        }
    }
}
