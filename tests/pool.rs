//! The connection pool grows with demand and shrinks at rest (issue 21): a mount costs the
//! server one connection (two sshd processes) at rest, more only while parallel work needs
//! them, and a connection the server refuses is no error. Counted on the server's side (sshd's
//! processes), by `sftpfs status`, and in the log; never timed.

mod support;

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::*;

const DEADLINE: Duration = Duration::from_secs(30);
/// Files above 16 MiB read sequentially take a second handle on another member.
const BIG: usize = 20 << 20;

fn members_with_reads(v: &Value) -> usize {
    v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["requests_by_type"]["read"].as_u64().unwrap_or(0) > 0)
        .count()
}

/// A server with `w/` holding `n` files `big0`.. of [`BIG`] random bytes each.
fn server_with_big_files(s: &Sshd, n: usize) -> Vec<Vec<u8>> {
    fs::create_dir(s.remote("w")).unwrap();
    (0..n)
        .map(|i| {
            let data = random_bytes(BIG, i as u64);
            fs::write(s.remote(&format!("w/big{i}")), &data).unwrap();
            data
        })
        .collect()
}

/// Reads the big files through the mount, all at once, and checks every byte.
fn read_in_parallel(m: &Mount, files: &[Vec<u8>]) {
    std::thread::scope(|sc| {
        for (i, data) in files.iter().enumerate() {
            let path = m.path(&format!("big{i}"));
            sc.spawn(move || assert!(fs::read(&path).unwrap() == *data, "big{i} differs"));
        }
    });
}

/// The server's processes for our connections: two per connection with OpenSSH.
fn server_processes(s: &Sshd) -> usize {
    s.connection_pids().len()
}

/// Drops the kernel's cached pages of a file read through the mount, so that the next read
/// goes to sftpfs again.
fn forget_pages(f: &fs::File) {
    // SAFETY: a valid descriptor; advice only.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

#[test]
fn an_idle_mount_holds_one_connection_and_parallel_reads_grow_the_pool_until_rest() {
    let s = Sshd::start();
    let files = server_with_big_files(&s, 3);
    fs::write(s.remote("w/small"), b"small").unwrap();
    let m = Mount::new(&s, "w", &["pool_idle=1"]);
    let mp = m.path("");

    // Everyday work, one thing after another: one connection (one login), as sshfs.
    for _ in 0..20 {
        assert_eq!(fs::read(m.path("small")).unwrap(), b"small");
        assert_eq!(fs::read_dir(&mp).unwrap().count(), 4);
    }
    // Nothing else connects on its own (the pool used to connect all its members after the
    // mount, in the background): a bounded wait for what must not happen.
    assert!(
        !wait_until(Duration::from_secs(3), || server_processes(&s) > 2),
        "more connections than one at rest: {} server processes",
        server_processes(&s)
    );
    let v = status_json(&mp);
    assert_eq!(server_processes(&s), 2, "{v}");
    assert_eq!(members_up(&mp), 1, "{v}");
    assert_eq!(v["pool"]["sessions_opened"], 1, "{v}");

    // Three big files read at once: more members carry them.
    read_in_parallel(&m, &files);
    let v = status_json(&mp);
    assert!(
        members_with_reads(&v) > 1,
        "one member read everything: {v}"
    );
    let opened = v["pool"]["sessions_opened"].as_u64().unwrap();
    assert!(opened >= 2, "{v}");
    assert!(
        opened <= 4,
        "more sessions than max_conns without a reconnect: {v}"
    );

    // Then, with nothing to do for pool_idle (1 s), the extra members close: the server is
    // back to one connection, and the mount works on.
    assert!(
        wait_until(DEADLINE, || server_processes(&s) == 2
            && members_up(&mp) == 1),
        "still {} server processes, {} members up: {}",
        server_processes(&s),
        members_up(&mp),
        status_json(&mp)
    );
    let v = status_json(&mp);
    assert_eq!(
        v["pool"]["closed_at_rest"].as_u64().unwrap(),
        opened - 1,
        "{v}"
    );
    assert_eq!(v["connections"][0]["reconnects"], 0, "{v}");
    read_in_parallel(&m, &files[..1]);
    assert_eq!(fs::read(m.path("small")).unwrap(), b"small");
}

/// A member holding an open file (its handle lives on that connection) is not closed at
/// rest, while a reader elsewhere keeps the pool busy and after it stopped; closing the file
/// lets it go.
#[test]
fn an_open_file_keeps_its_member_through_rest_and_works_after_it() {
    let s = Sshd::start();
    let files = server_with_big_files(&s, 1);
    for i in 0..40 {
        fs::write(s.remote(&format!("w/s{i}")), format!("small {i}")).unwrap();
    }
    let m = Mount::new(&s, "w", &["pool_idle=1"]);
    let mp = m.path("");

    // A reader streams big0 again and again: member 0 stays busy, the pool grows.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, path, data) = (stop.clone(), m.path("big0"), files[0].clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let mut f = fs::File::open(&path).unwrap();
                let mut got = Vec::with_capacity(data.len());
                f.read_to_end(&mut got).unwrap();
                assert!(got == data, "big0 differs");
                forget_pages(&f);
            }
        })
    };
    // Meanwhile small files are opened and kept open, until one lives on another member.
    let mut held = Vec::new();
    let mut extra = None;
    for i in 0..40 {
        let mut f = fs::File::open(m.path(&format!("s{i}"))).unwrap();
        let mut text = String::new();
        f.read_to_string(&mut text).unwrap();
        assert_eq!(text, format!("small {i}"));
        held.push((i, f));
        let v = status_json(&mp);
        extra = v["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["member"] != 0 && c["open_files"].as_u64().unwrap_or(0) > 0)
            .map(|c| c["member"].as_u64().unwrap());
        if extra.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    reader.join().unwrap();
    let extra = extra.unwrap_or_else(|| {
        panic!(
            "no file opened on another member while member 0 was busy: {}",
            status_json(&mp)
        )
    });

    // Well past pool_idle, the member of the open files is still up; others may have gone.
    let member_up = |mp: &Path| status_json(mp)["connections"][extra as usize]["state"] == "up";
    assert!(
        !wait_until(Duration::from_secs(4), || !member_up(&mp)),
        "member {extra} closed under an open file: {}",
        status_json(&mp)
    );
    // The files read through their handles as before (no reconnect, no re-open).
    for (i, f) in held.iter_mut() {
        let mut text = String::new();
        forget_pages(f);
        std::io::Seek::rewind(f).unwrap();
        f.read_to_string(&mut text).unwrap();
        assert_eq!(text, format!("small {i}"));
    }
    let v = status_json(&mp);
    assert_eq!(v["connections"][extra as usize]["reconnects"], 0, "{v}");

    // Closed: the member rests and closes, and the mount is back to one connection.
    held.clear();
    assert!(
        wait_until(DEADLINE, || server_processes(&s) == 2
            && members_up(&mp) == 1),
        "{} server processes: {}",
        server_processes(&s),
        status_json(&mp)
    );
    assert_eq!(fs::read(m.path("s3")).unwrap(), b"small 3");
}

/// OpenSSH's `MaxStartups`: while another client holds the only unauthenticated slot, every
/// new connection is dropped. The pool cannot grow; the mount carries on with its one
/// connection and says so once, in the log and in status.
#[test]
fn connections_refused_by_max_startups_leave_the_mount_working_and_are_said_once() {
    let s = Sshd::start_with("root", |c| c.replace("MaxStartups 100", "MaxStartups 1"));
    let files = server_with_big_files(&s, 3);
    let m = Mount::new(&s, "w", &["debug"]);
    let mp = m.path("");
    // A client that connects and never logs in holds the slot (LoginGraceTime: 2 minutes).
    let _squatter = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    assert!(
        wait_until(DEADLINE, || server_processes(&s) >= 3),
        "sshd does not serve the unauthenticated client"
    );
    let before = server_processes(&s);

    for _ in 0..3 {
        read_in_parallel(&m, &files);
    }
    let v = status_json(&mp);
    assert!(
        v["pool"]["refused"]["count"].as_u64().unwrap_or(0) >= 1,
        "{v}"
    );
    assert_eq!(members_up(&mp), 1, "{v}");
    assert_eq!(server_processes(&s), before, "{v}");
    let text = std::process::Command::new(binary())
        .arg("status")
        .arg(&mp)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("the server refused another connection at"),
        "{text}"
    );
    let log = m.stderr();
    assert_eq!(
        log.matches("running with fewer connections").count(),
        1,
        "said once:\n{log}"
    );
    assert!(!log.contains("ERROR"), "{log}");
}

/// Two writers and two readers at once on a fresh mount: the pool grows while writes are in
/// flight (their member busy, the reads' second handles going elsewhere), and every byte
/// written lands on the server, every byte read is right.
#[test]
fn the_pool_grows_while_writes_and_reads_are_in_flight_and_nothing_is_lost() {
    let s = Sshd::start();
    let files = server_with_big_files(&s, 2);
    let m = Mount::new(&s, "w", &[]);
    let mp = m.path("");
    let written: Vec<Vec<u8>> = (0..2).map(|i| random_bytes(BIG, 100 + i)).collect();
    std::thread::scope(|sc| {
        for (i, data) in written.iter().enumerate() {
            let path = m.path(&format!("new{i}"));
            sc.spawn(move || {
                let mut f = fs::File::create(&path).unwrap();
                for chunk in data.chunks(1 << 20) {
                    std::io::Write::write_all(&mut f, chunk).unwrap();
                }
                f.sync_all().unwrap();
            });
        }
        for (i, data) in files.iter().enumerate() {
            let path = m.path(&format!("big{i}"));
            sc.spawn(move || assert!(fs::read(&path).unwrap() == *data, "big{i} differs"));
        }
    });
    for (i, data) in written.iter().enumerate() {
        let got = fs::read(s.remote(&format!("w/new{i}"))).unwrap();
        assert!(got == *data, "new{i} differs on the server");
    }
    let v = status_json(&mp);
    assert!(v["pool"]["sessions_opened"].as_u64().unwrap() >= 2, "{v}");
    assert!(members_with_reads(&v) > 1, "{v}");
    let reconnects: u64 = v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["reconnects"].as_u64().unwrap())
        .sum();
    assert_eq!(reconnects, 0, "{v}");
}

/// The connections are cut (a proxy in front of sshd closes them all) while the pool grows
/// under parallel reads, and again while its extra members are about to close at rest: the
/// reads finish with the right bytes, the mount goes back to one connection, and it works.
/// A fresh mount each round: a cut that lands on a member still connecting counts as a
/// refusal, after which the pool does not grow for a minute.
#[test]
fn connections_cut_while_the_pool_grows_and_shrinks_lose_nothing() {
    let s = Sshd::start();
    let files = server_with_big_files(&s, 3);
    let p = support::proxy::Proxy::start(s.port);
    for round in 0..3 {
        let m = Mount::via_port(&s, p.port(), "w", &["pool_idle=1"]);
        let mp = m.path("");
        // Cut once the pool has grown, while the reads run.
        std::thread::scope(|sc| {
            sc.spawn(|| read_in_parallel(&m, &files));
            let grew = wait_until(DEADLINE, || {
                status_json(&mp)["pool"]["sessions_opened"]
                    .as_u64()
                    .unwrap()
                    > 1
            });
            p.cut();
            assert!(
                grew,
                "round {round}: the pool did not grow: {}",
                status_json(&mp)
            );
        });
        // Reads done: the extra members rest; cut again while they are about to close.
        p.cut();
        assert_eq!(fs::read_dir(&mp).unwrap().count(), files.len());
        assert!(
            wait_until(DEADLINE, || members_up(&mp) == 1 && p.live() == 1),
            "round {round}: {} members up, {} connections: {}",
            members_up(&mp),
            p.live(),
            status_json(&mp)
        );
        for i in 0..files.len() {
            forget_pages(&fs::File::open(m.path(&format!("big{i}"))).unwrap());
        }
        read_in_parallel(&m, &files);
        let v = status_json(&mp);
        assert_eq!(v["errors"]["total"], 0, "round {round}: {v}");
        assert!(!m.stderr().contains("panicked"), "{}", m.stderr());
    }
}
