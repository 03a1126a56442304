//! A login that took a one-time code (keyboard-interactive, as TOTP servers ask) is asked
//! once: the pool's other sessions are channels of that one connection (issue 13). The
//! server is AsyncSSH accepting the code once; sftpfs runs on a pseudo-terminal (`script`)
//! where the test types the code.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::*;

const CODE: &str = "424242";

/// Unmounts (lazily) and kills the process that mounted, by pid, however the test ends.
struct Cleanup {
    mnt: PathBuf,
    child: Child,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(&self.mnt)
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connections_up(mnt: &Path) -> usize {
    let out = Command::new(binary())
        .args(["status", "--json"])
        .arg(mnt)
        .output()
        .unwrap();
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return 0;
    };
    v["connections"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|c| c["state"] == "up").count())
}

#[test]
fn a_one_time_code_is_asked_once_and_the_pool_shares_its_connection() {
    let server = Server::asyncssh_one_time_code(CODE);
    fs::create_dir(server.remote("w")).unwrap();
    let mnt = server.mountpoint();
    let line = format!(
        "{} root@127.0.0.1:w {} -f -p {} -o UserKnownHostsFile={},StrictHostKeyChecking=yes,max_conns=4",
        binary().display(),
        mnt.display(),
        server.port,
        server.known_hosts.display()
    );
    let child = Command::new("script")
        .args(["-qfec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script (util-linux)");
    let mut c = Cleanup {
        mnt: mnt.clone(),
        child,
    };
    let mut out = c.child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let mut seen = String::new();
    let read_until = |want: &str, seen: &mut String| {
        while !seen.contains(want) {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(b) => seen.push_str(&String::from_utf8_lossy(&b)),
                Err(_) => panic!("no {want:?} from sftpfs; it said:\n{seen}"),
            }
        }
    };
    read_until("Verification code:", &mut seen);
    let mut stdin = c.child.stdin.take().unwrap();
    stdin.write_all(format!("{CODE}\n").as_bytes()).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || is_mounted(&mnt)),
        "not mounted; sftpfs said:\n{seen}\nserver:\n{}",
        server.log_text()
    );
    // The pool's four sessions come up, over the one connection.
    assert!(
        wait_until(Duration::from_secs(20), || connections_up(&mnt) == 4),
        "{} of 4 sessions up; server:\n{}",
        connections_up(&mnt),
        server.log_text()
    );
    fs::write(mnt.join("f"), b"written").unwrap();
    assert_eq!(fs::read(server.remote("w/f")).unwrap(), b"written");
    while let Ok(b) = rx.try_recv() {
        seen.push_str(&String::from_utf8_lossy(&b));
    }
    assert_eq!(
        seen.matches("Verification code:").count(),
        1,
        "asked again:\n{seen}"
    );
    let log = server.log_text();
    // (The harness's own probe of the banner is a connection too, without a login.)
    assert_eq!(log.matches("Beginning auth for user").count(), 1, "{log}");
    assert_eq!(log.matches("one-time code accepted").count(), 1, "{log}");
    assert_eq!(log.matches("one-time code refused").count(), 0, "{log}");
    drop(stdin);
}
