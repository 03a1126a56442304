//! `sftpfs status` (issue 13) on real mounts: the fields it shows move with what the mount
//! does, and the socket it asks is closed to other users.

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use support::*;

fn status(args: &[&str]) -> Output {
    Command::new(binary())
        .arg("status")
        .args(args)
        .output()
        .expect("run sftpfs status")
}

fn json_of(m: &Path) -> Value {
    let out = status(&["--json", m.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "sftpfs status --json: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

fn sum(v: &Value, field: &str) -> u64 {
    v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[field].as_u64().unwrap())
        .sum()
}

fn socket_of(m: &Path) -> PathBuf {
    sftpfs::status::socket::path_for(&fs::canonicalize(m).unwrap())
}

#[test]
fn status_shows_the_mount_and_its_counters_follow_what_it_does() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let data = random_bytes(3 << 20, 5);
    fs::write(s.remote("w/big"), &data).unwrap();
    fs::create_dir(s.remote("w/d")).unwrap();
    fs::write(s.remote("w/d/f"), b"x").unwrap();
    let m = Mount::new(&s, "w", &[]);
    let mp = fs::canonicalize(m.path("")).unwrap();

    let v = json_of(&mp);
    assert_eq!(v["mountpoint"], mp.to_str().unwrap());
    assert_eq!(v["transport"], "ssh");
    assert_eq!(v["sftp_version"], 3);
    assert!(v["server"].as_str().unwrap().contains("OpenSSH"), "{v}");
    assert_eq!(v["connections"][0]["state"], "up");
    assert!(v["connections"][0]["rtt_seconds"].as_f64().unwrap() > 0.0);
    assert!(v["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(v["open_files"], 0);

    // Bytes move when a file is read.
    let before = sum(&v, "bytes_in");
    assert_eq!(fs::read(m.path("big")).unwrap(), data);
    let after = sum(&json_of(&mp), "bytes_in");
    assert!(
        after >= before + data.len() as u64,
        "bytes in went from {before} to {after} for a {} byte read",
        data.len()
    );

    // An open file counts; written data is acknowledged by the time close returns.
    let mut f = fs::File::create(m.path("new")).unwrap();
    f.write_all(&random_bytes(1 << 20, 6)).unwrap();
    assert_eq!(json_of(&mp)["open_files"], 1);
    drop(f);
    let v = json_of(&mp);
    assert_eq!(v["unacknowledged_write_bytes"], 0);
    assert!(sum(&v, "bytes_out") >= 1 << 20);
    // The kernel releases a file after close returns, without waiting.
    assert!(wait_until(Duration::from_secs(10), || json_of(&mp)
        ["open_files"]
        == 0));

    // An error answered to a program is counted, with its path.
    assert!(fs::remove_dir(m.path("d")).is_err());
    let v = json_of(&mp);
    assert_eq!(v["errors"]["by_errno"]["ENOTEMPTY"], 1, "{v}");
    let last = v["errors"]["recent"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["op"].as_str(), last["path"].as_str()),
        (Some("rmdir"), Some("d"))
    );
    // A name that is not there is an everyday answer, not an error; so is an access() check
    // that answers no (`test -x` of a file without the bit: EACCES, even for root).
    assert!(fs::metadata(m.path("nothing-here")).is_err());
    fs::set_permissions(m.path("d/f"), fs::Permissions::from_mode(0o644)).unwrap();
    for _ in 0..3 {
        let test_x = run_to_exit(
            {
                let mut c = Command::new("test");
                c.arg("-x").arg(m.path("d/f"));
                c
            },
            &s.dir,
            FAIL_DEADLINE,
        );
        assert_eq!(
            test_x.status.and_then(|st| st.code()),
            Some(1),
            "{test_x:?}"
        );
    }
    assert_eq!(json_of(&mp)["errors"]["total"], 1, "{}", json_of(&mp));

    // The same as text and as Prometheus text, and in the list of all mounts.
    let text = String::from_utf8(status(&[mp.to_str().unwrap()]).stdout).unwrap();
    if std::env::var_os("SFTPFS_SHOW_STATUS").is_some() {
        eprintln!("{text}");
    }
    for want in [
        "connections:",
        "#0 up",
        "errors since mount: 1 (ENOTEMPTY 1)",
        "rmdir d: ENOTEMPTY",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    let prom = String::from_utf8(status(&["--prometheus", mp.to_str().unwrap()]).stdout).unwrap();
    let sample = format!(
        "sftpfs_connection_up{{mountpoint=\"{}\",member=\"0\"}} 1\n",
        mp.display()
    );
    assert!(prom.contains(&sample), "{sample:?} not in:\n{prom}");
    assert!(prom.contains("# TYPE sftpfs_connection_received_bytes_total counter"));
    let all = String::from_utf8(status(&[]).stdout).unwrap();
    assert!(
        all.lines()
            .any(|l| l.starts_with(&format!("{}  ", mp.display()))),
        "{all}"
    );
}

#[test]
fn status_socket_is_for_its_user_only_and_goes_with_the_mount() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", &[]);
    let sock = socket_of(&m.path(""));
    let meta = fs::symlink_metadata(&sock).expect("the mount's socket exists");
    assert_eq!(meta.mode() & 0o777, 0o600, "socket mode");
    let dir = fs::metadata(sock.parent().unwrap()).unwrap();
    assert_eq!(
        dir.permissions().mode() & 0o777,
        0o700,
        "socket directory mode"
    );
    // Another user cannot reach it.
    let other = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "python3",
            "-c",
        ])
        .arg(format!(
            "import socket; s = socket.socket(socket.AF_UNIX); s.connect('{}'); \
             s.sendall(b'status\\n'); print(s.recv(100))",
            sock.display()
        ))
        .output()
        .unwrap();
    assert!(
        !other.status.success(),
        "user nobody got: {:?}",
        other.stdout
    );
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    drop(m);
    assert!(
        wait_until(Duration::from_secs(10), || !sock.exists()),
        "socket left behind"
    );
}

#[test]
fn status_of_what_is_not_a_mount_or_with_bad_flags_is_one_clear_line() {
    let tmp = TempDir::new("status");
    for (args, want) in [
        (
            vec![tmp.path().to_str().unwrap()],
            "is not an sftpfs mount of yours",
        ),
        (vec!["--bogus"], "status: unknown option '--bogus'"),
        (vec!["--json", "--prometheus"], "cannot go together"),
        (vec!["/no/such/dir"], "/no/such/dir"),
    ] {
        let out = status(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn status_watch_redraws_every_second() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", &[]);
    let mut child = KillOnDrop(
        Command::new(binary())
            .args(["status", "--watch", "--json"])
            .arg(m.path(""))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut uptimes = Vec::new();
    while uptimes.len() < 3 {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) else {
            break;
        };
        let v: Value = serde_json::from_str(&line).unwrap();
        uptimes.push(v["uptime_seconds"].as_f64().unwrap());
    }
    drop(child);
    assert_eq!(uptimes.len(), 3, "three redraws: {uptimes:?}");
    assert!(
        uptimes[2] - uptimes[0] >= 1.5,
        "a second apart: {uptimes:?}"
    );
}
