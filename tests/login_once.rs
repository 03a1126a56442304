//! Logins that need a person (issue 13). A login that took a one-time code
//! (keyboard-interactive, as TOTP servers ask) is asked once: the pool's other sessions are
//! channels of that one connection. When that connection is lost, the mount says it needs
//! authentication, and `sftpfs reauth` logs it in again, asking on its own terminal; open
//! files carry on. The server is AsyncSSH accepting each code once; sftpfs runs on a
//! pseudo-terminal (`script`) where the test types the code.

mod support;

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::proxy::Proxy;
use support::*;

const DEADLINE: Duration = Duration::from_secs(20);

/// Mounts `w` of `server` through `port` on a terminal, typing `code` when asked.
fn mount_typing(server: &Server, port: u16, conns: usize, code: &str) -> (OnTty, PathBuf) {
    fs::create_dir(server.remote("w")).unwrap();
    let mnt = server.mountpoint();
    // The server's key, under the port sftpfs connects to (a proxy's, maybe).
    let known_hosts = server.local("known_hosts");
    let entry = fs::read_to_string(&server.known_hosts).unwrap();
    fs::write(
        &known_hosts,
        entry.replace(&format!("]:{} ", server.port), &format!("]:{port} ")),
    )
    .unwrap();
    let line = format!(
        "{} root@127.0.0.1:w {} -f -p {port} -o UserKnownHostsFile={},StrictHostKeyChecking=yes,max_conns={conns}",
        binary().display(),
        mnt.display(),
        known_hosts.display()
    );
    let mut tty = OnTty::run(&line, Some(&mnt));
    tty.answer("Verification code:", code);
    assert!(
        wait_until(DEADLINE, || is_mounted(&mnt)),
        "not mounted; sftpfs said:\n{}\nserver:\n{}",
        tty.said(),
        server.log_text()
    );
    (tty, mnt)
}

#[test]
fn a_one_time_code_is_asked_once_and_the_pool_shares_its_connection() {
    let server = Server::asyncssh_one_time_code("424242");
    let (mut tty, mnt) = mount_typing(&server, server.port, 4, "424242");
    // Parallel reads of long files make the pool grow: its sessions are channels of the one
    // connection.
    let files: Vec<Vec<u8>> = (0..3).map(|i| random_bytes(20 << 20, i)).collect();
    for (i, data) in files.iter().enumerate() {
        fs::write(server.remote(&format!("w/big{i}")), data).unwrap();
    }
    std::thread::scope(|sc| {
        for (i, data) in files.iter().enumerate() {
            let path = mnt.join(format!("big{i}"));
            sc.spawn(move || assert!(fs::read(&path).unwrap() == *data, "big{i} differs"));
        }
    });
    assert!(
        members_up(&mnt) >= 2,
        "{} of 4 sessions up; server:\n{}",
        members_up(&mnt),
        server.log_text()
    );
    fs::write(mnt.join("f"), b"written").unwrap();
    assert_eq!(fs::read(server.remote("w/f")).unwrap(), b"written");
    let said = tty.said().to_string();
    assert_eq!(
        said.matches("Verification code:").count(),
        1,
        "asked again:\n{said}"
    );
    let log = server.log_text();
    // (The harness's own probe of the banner is a connection too, without a login.)
    assert_eq!(log.matches("Beginning auth for user").count(), 1, "{log}");
    assert_eq!(log.matches("one-time code accepted").count(), 1, "{log}");
    assert_eq!(log.matches("one-time code refused").count(), 0, "{log}");
}

#[test]
fn after_the_connection_is_lost_reauth_logs_in_again_and_open_files_carry_on() {
    let server = Server::asyncssh_one_time_code("111111,222222");
    let proxy = Proxy::start(server.port);
    let (_tty, mnt) = mount_typing(&server, proxy.port(), 2, "111111");
    let first = random_bytes(300_000, 1);
    let second = random_bytes(200_000, 2);
    let mut f = fs::File::create(mnt.join("f")).unwrap();
    f.write_all(&first).unwrap();
    f.sync_all().unwrap();
    assert_eq!(status_json(&mnt)["needs_authentication"], false);

    // Every connection lost: a new login would need a new code.
    proxy.cut();
    assert!(
        wait_until(DEADLINE, || {
            // Accesses fail fast meanwhile; each one tries to reconnect.
            let _ = fs::metadata(mnt.join("f"));
            status_json(&mnt)["needs_authentication"] == true
        }),
        "status never said it needs authentication: {}",
        status_json(&mnt)
    );
    let text = Command::new(binary())
        .arg("status")
        .arg(&mnt)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("needs authentication"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );

    // `sftpfs reauth` on another terminal asks for the code, and the mount carries on.
    let mut reauth = OnTty::run(
        &format!("{} reauth {}", binary().display(), mnt.display()),
        None,
    );
    reauth.answer("Verification code:", "222222");
    assert!(
        wait_until(DEADLINE, || matches!(reauth.child.try_wait(), Ok(Some(_)))),
        "sftpfs reauth did not finish: {}",
        reauth.said()
    );
    let st = reauth.child.wait().unwrap();
    assert!(st.success(), "sftpfs reauth failed: {}", reauth.said());
    assert_eq!(status_json(&mnt)["needs_authentication"], false);

    f.write_all(&second).unwrap();
    drop(f);
    let mut all = first.clone();
    all.extend_from_slice(&second);
    assert!(
        fs::read(server.remote("w/f")).unwrap() == all,
        "the server's bytes"
    );
    let log = server.log_text();
    assert_eq!(log.matches("one-time code accepted").count(), 2, "{log}");
}
