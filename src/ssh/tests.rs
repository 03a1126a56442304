//! End-to-end tests of connect + host key + authentication + sftp against a private sshd.

use std::fs;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::test_support::{self, keygen, public_key_text, Agent, Sshd, TempDir};
use super::{Connector, SshError};
use crate::config::StrictHostKeyChecking;

/// SFTP INIT (version 3) and check the server answers VERSION.
async fn sftp_handshake(stream: &mut super::SftpStream) {
    stream
        .write_all(&[0, 0, 0, 5, 1, 0, 0, 0, 3])
        .await
        .unwrap();
    stream.flush().await.unwrap();
    let mut header = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut header))
        .await
        .expect("VERSION in time")
        .unwrap();
    assert_eq!(header[4], 2, "SSH_FXP_VERSION");
    let len = u32::from_be_bytes(header[..4].try_into().unwrap()) as usize;
    let mut rest = vec![0u8; len - 1];
    stream.read_exact(&mut rest).await.unwrap();
    assert_eq!(&rest[..4], &[0, 0, 0, 3], "version 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_authenticates_and_opens_sftp() {
    let sshd = Sshd::start();
    let connector = Connector::new(sshd.config());
    let conn = connector.connect().await.unwrap();
    assert!(!conn.is_closed());
    let mut stream = conn.open_sftp().await.unwrap();
    sftp_handshake(&mut stream).await;
    // Several channels on one connection, and several connections from one connector.
    let mut second = conn.open_sftp().await.unwrap();
    sftp_handshake(&mut second).await;
    let other = connector.connect().await.unwrap();
    sftp_handshake(&mut other.open_sftp().await.unwrap()).await;

    conn.disconnect().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !conn.is_closed() {
        assert!(tokio::time::Instant::now() < deadline, "still open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!other.is_closed());
}

/// What the pool needs: shareable connector and connection, a `Send` connect future (to
/// spawn it) and a stream that can move into a task.
#[test]
fn types_fit_the_pool() {
    fn shared<T: Send + Sync + 'static>() {}
    fn stream<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static>() {}
    fn send<T: Send>(_: &T) {}
    shared::<Connector>();
    shared::<super::SshConnection>();
    shared::<SshError>();
    stream::<super::SftpStream>();
    let connector = Connector::new(test_support::config("127.0.0.1", 1));
    send(&connector.connect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_outlives_the_connection_value() {
    let sshd = Sshd::start();
    let conn = Connector::new(sshd.config()).connect().await.unwrap();
    let mut stream = conn.open_sftp().await.unwrap();
    drop(conn);
    sftp_handshake(&mut stream).await;
}

/// ServerAliveInterval/CountMax reach russh: a frozen server is noticed, not waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_notices_a_frozen_server() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    /// Stopped server processes, killed whatever the test's outcome.
    struct Frozen(Vec<i32>);
    impl Drop for Frozen {
        fn drop(&mut self) {
            for &pid in &self.0 {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }

    let sshd = Sshd::start();
    let mut cfg = sshd.config();
    cfg.server_alive_interval = Duration::from_secs(1);
    cfg.server_alive_count_max = 2;
    let conn = Connector::new(cfg).connect().await.unwrap();
    let frozen = Frozen(sshd.session_pids());
    assert!(!frozen.0.is_empty());
    for &pid in &frozen.0 {
        kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !conn.is_closed() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "frozen server not noticed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(frozen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_key_is_refused() {
    let sshd = Sshd::start();
    for strict in [StrictHostKeyChecking::Yes, StrictHostKeyChecking::Ask] {
        let mut cfg = sshd.config();
        cfg.strict_host_key_checking = strict;
        cfg.user_known_hosts_files = vec![sshd.dir.path().join("missing")];
        let err = Connector::new(cfg).connect().await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, SshError::HostKeyUnknown { .. }), "{msg}");
        let want = format!(
            "host key for [127.0.0.1]:{} is not known (ssh-ed25519 SHA256:",
            sshd.port
        );
        assert!(msg.starts_with(&want), "{msg}");
        assert!(
            msg.ends_with(&format!(
                "to trust it, run: ssh -p {} 127.0.0.1 once, or mount with -o StrictHostKeyChecking=accept-new",
                sshd.port
            )),
            "{msg}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_new_records_the_key() {
    use std::os::unix::fs::PermissionsExt;
    let sshd = Sshd::start();
    let file = sshd.dir.path().join("new-dir/known_hosts");
    let mut cfg = sshd.config();
    cfg.strict_host_key_checking = StrictHostKeyChecking::AcceptNew;
    cfg.user_known_hosts_files = vec![file.clone()];
    Connector::new(cfg.clone()).connect().await.unwrap();
    let recorded = fs::read_to_string(&file).unwrap();
    let expected = fs::read_to_string(&sshd.known_hosts).unwrap();
    assert_eq!(recorded, expected);
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Now known: strict checking passes.
    cfg.strict_host_key_checking = StrictHostKeyChecking::Yes;
    Connector::new(cfg).connect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_names_file_and_line() {
    let sshd = Sshd::start();
    let other = keygen(sshd.dir.path(), "other", "");
    let file = sshd.dir.path().join("changed_known_hosts");
    fs::write(
        &file,
        format!(
            "# comment\nexample.org {}\n[127.0.0.1]:{}\t{}\n",
            public_key_text(&other),
            sshd.port,
            public_key_text(&other)
        ),
    )
    .unwrap();
    for strict in [StrictHostKeyChecking::No, StrictHostKeyChecking::AcceptNew] {
        let mut cfg = sshd.config();
        cfg.strict_host_key_checking = strict;
        cfg.user_known_hosts_files = vec![file.clone()];
        let err = Connector::new(cfg).connect().await.unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, SshError::HostKeyChanged { line: 3, .. }),
            "{msg}"
        );
        assert!(msg.starts_with(&format!(
            "HOST KEY FOR [127.0.0.1]:{} HAS CHANGED",
            sshd.port
        )));
        assert!(msg.contains(&format!("{}:3", file.display())), "{msg}");
        assert!(!msg.contains('\n'));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_fails_authentication() {
    let sshd = Sshd::start();
    let wrong = keygen(sshd.dir.path(), "wrong", "");
    let mut cfg = sshd.config();
    cfg.identity_files = vec![wrong];
    let err = Connector::new(cfg).connect().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "authentication failed for {}@127.0.0.1 (tried: publickey)",
            test_support::current_user()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_mode_does_not_ask_for_passwords() {
    let sshd = Sshd::start_with(
        true,
        "PasswordAuthentication yes\nKbdInteractiveAuthentication yes\n",
    );
    let mut cfg = sshd.config();
    cfg.identity_files = vec![];
    let err = Connector::new(cfg).connect().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "no usable authentication method for {}@127.0.0.1 (server offers: publickey, \
             password, keyboard-interactive; keyboard-interactive and password not tried: \
             BatchMode is on)",
            test_support::current_user()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_key_is_skipped_in_batch_mode() {
    let sshd = Sshd::start();
    let locked = keygen(sshd.dir.path(), "locked", "secret passphrase");
    fs::write(
        sshd.dir.path().join("authorized_keys"),
        format!("{}\n", public_key_text(&locked)),
    )
    .unwrap();
    let mut cfg = sshd.config();
    cfg.identity_files = vec![locked.clone()];
    let msg = Connector::new(cfg).connect().await.unwrap_err().to_string();
    assert!(
        msg.starts_with("no usable authentication method for"),
        "{msg}"
    );
    assert!(msg.contains("server offers: publickey"), "{msg}");
    assert!(
        msg.contains(&format!("key {} needs a passphrase", locked.display())),
        "{msg}"
    );
    assert!(!msg.contains("secret passphrase"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticates_with_the_agent() {
    let sshd = Sshd::start();
    let agent = Agent::start(sshd.dir.path(), &sshd.client_key);
    let mut cfg = sshd.config();
    // Not explicit: a missing file is skipped, so only the agent can succeed.
    cfg.identity_files = vec![sshd.dir.path().join("absent")];
    cfg.identity_files_explicit = false;
    cfg.agent_socket = Some(agent.socket.clone());
    let conn = Connector::new(cfg).connect().await.unwrap();
    sftp_handshake(&mut conn.open_sftp().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_sftp_subsystem_is_reported() {
    let sshd = Sshd::start_with(false, "");
    let conn = Connector::new(sshd.config()).connect().await.unwrap();
    let Err(err) = conn.open_sftp().await else {
        panic!("sftp subsystem opened");
    };
    assert_eq!(err.to_string(), "server does not offer the sftp subsystem");
}

#[tokio::test]
async fn refused_connection() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = Connector::new(test_support::config("127.0.0.1", port))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("connection to 127.0.0.1 port {port} refused")
    );
}

#[tokio::test]
async fn silent_server_times_out() {
    // Accepts TCP but never speaks SSH.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            open.push(s);
        }
    });
    let mut cfg = test_support::config("127.0.0.1", port);
    cfg.connect_timeout = Duration::from_millis(300);
    let err = Connector::new(cfg).connect().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("connection to 127.0.0.1 port {port} timed out after 0.3s")
    );
}

#[tokio::test]
async fn non_ssh_server_fails_the_handshake() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let err = Connector::new(test_support::config("127.0.0.1", port))
        .connect()
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("SSH handshake with 127.0.0.1 port {port} failed")),
        "{msg}"
    );
}

#[test]
fn temp_dirs_are_removed() {
    let path = {
        let d = TempDir::new();
        d.path().to_path_buf()
    };
    assert!(!path.exists());
}

/// The prompts, for real: runs [`tty_child`] on a pseudo-terminal made by script(1) and
/// answers like a user would. Checks the host key question, that an encrypted key the server
/// would refuse is never unlocked, a retried passphrase, and that a second connection does
/// not ask again.
#[test]
fn prompts_on_the_terminal() {
    use std::io::{BufReader, Write};
    use std::process::{Command, Stdio};

    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("script(1) not available; skipped");
        return;
    }
    let sshd = Sshd::start();
    let dir = sshd.dir.path();
    let unlisted = keygen(dir, "unlisted", "other passphrase");
    let locked = keygen(dir, "locked", "right passphrase");
    fs::write(
        dir.join("authorized_keys"),
        format!("{}\n", public_key_text(&locked)),
    )
    .unwrap();
    let known_hosts = dir.join("tty_known_hosts");
    let exe = std::env::current_exe().unwrap();
    let command = format!(
        "{} --exact ssh::tests::tty_child --ignored --nocapture --test-threads=1",
        exe.display()
    );
    let mut child = Command::new("script")
        .args(["-q", "-f", "-e", "-c", &command, "/dev/null"])
        .env("SFTPFS_TEST_PORT", sshd.port.to_string())
        .env("SFTPFS_TEST_KNOWN_HOSTS", &known_hosts)
        .env(
            "SFTPFS_TEST_KEYS",
            format!("{}:{}", unlisted.display(), locked.display()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    // Answer each prompt as it appears (script's output is the terminal's).
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while std::io::Read::read(&mut reader, &mut byte).unwrap_or(0) == 1 {
            buf.push(byte[0]);
            // Prompts end without a newline: hand over on ": ", "? " and newlines.
            if byte[0] == b'\n' || buf.ends_with(b": ") || buf.ends_with(b"? ") {
                let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
                buf.clear();
            }
        }
    });
    let mut transcript = String::new();
    let mut passphrase_prompts = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(chunk) = rx.recv_timeout(left) else {
            break;
        };
        transcript.push_str(&chunk);
        if chunk.contains("Are you sure you want to continue connecting") {
            input.write_all(b"yes\n").unwrap();
        } else if chunk.contains("Enter passphrase for key") {
            passphrase_prompts += 1;
            // The prompt is printed a moment before echo is turned off: typing at once
            // could be echoed.
            std::thread::sleep(Duration::from_millis(300));
            let answer: &[u8] = if passphrase_prompts == 1 {
                b"wrong\n"
            } else {
                b"right passphrase\n"
            };
            input.write_all(answer).unwrap();
        }
        input.flush().unwrap();
    }
    let status = child.wait().unwrap();
    assert!(transcript.contains("CHILD OK"), "{transcript}");
    assert!(status.success(), "{transcript}");
    assert_eq!(
        transcript
            .matches("Are you sure you want to continue connecting")
            .count(),
        1,
        "{transcript}"
    );
    assert!(
        transcript.contains("ED25519 key fingerprint is SHA256:"),
        "{transcript}"
    );
    assert!(
        transcript.contains("Bad passphrase, try again."),
        "{transcript}"
    );
    assert_eq!(passphrase_prompts, 2, "{transcript}");
    assert!(
        !transcript.contains(&unlisted.display().to_string()),
        "{transcript}"
    );
    assert!(!transcript.contains("right passphrase"), "{transcript}");
    let recorded = fs::read_to_string(&known_hosts).unwrap();
    assert_eq!(recorded, fs::read_to_string(&sshd.known_hosts).unwrap());
}

/// Run by [`prompts_on_the_terminal`] on a pseudo-terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by prompts_on_the_terminal"]
async fn tty_child() {
    let var = |name| std::env::var(name).expect(name);
    let port: u16 = var("SFTPFS_TEST_PORT").parse().unwrap();
    let mut cfg = test_support::config("127.0.0.1", port);
    cfg.batch_mode = false;
    cfg.strict_host_key_checking = StrictHostKeyChecking::Ask;
    cfg.user_known_hosts_files = vec![var("SFTPFS_TEST_KNOWN_HOSTS").into()];
    cfg.identity_files = var("SFTPFS_TEST_KEYS").split(':').map(Into::into).collect();
    let connector = Connector::new(cfg);
    let result = async {
        let first = connector.connect().await?;
        sftp_handshake(&mut first.open_sftp().await?).await;
        // Must neither ask about the host key nor the passphrase again.
        let second = connector.connect().await?;
        sftp_handshake(&mut second.open_sftp().await?).await;
        Ok::<_, SshError>(())
    }
    .await;
    match result {
        Ok(()) => println!("CHILD OK"),
        Err(e) => panic!("CHILD FAILED: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// ProxyJump, ProxyCommand, algorithms, sftp_server, HostKeyAlias, IdentitiesOnly

/// ProxyJump through the same server: the tunnel is a direct-tcpip channel of a first
/// connection; a chain `a,b` nests two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_jump_through_one_and_two_hosts() {
    let sshd = Sshd::start();
    let mut cfg = sshd.config();
    cfg.proxy = Some(crate::config::Proxy::Jump(vec!["jump".into()]));
    cfg.jump_hosts = vec![sshd.config()];
    let conn = Connector::new(cfg.clone()).connect().await.unwrap();
    sftp_handshake(&mut conn.open_sftp().await.unwrap()).await;
    // sshd logs the forwarding it did for us.
    cfg.jump_hosts = vec![sshd.config(), sshd.config()];
    let conn2 = Connector::new(cfg).connect().await.unwrap();
    sftp_handshake(&mut conn2.open_sftp().await.unwrap()).await;
    // The tunnel lives as long as the connection through it.
    conn.disconnect().await;
    sftp_handshake(&mut conn2.open_sftp().await.unwrap()).await;
}

/// Without resolution, the ProxyJump specs are used as written with this config's settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_jump_from_specs() {
    let sshd = Sshd::start();
    let mut cfg = sshd.config();
    let user = cfg.user.clone();
    cfg.proxy = Some(crate::config::Proxy::Jump(vec![format!(
        "{user}@127.0.0.1:{}",
        sshd.port
    )]));
    let conn = Connector::new(cfg.clone()).connect().await.unwrap();
    sftp_handshake(&mut conn.open_sftp().await.unwrap()).await;
    // A jump host that refuses: the error names it.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    cfg.proxy = Some(crate::config::Proxy::Jump(vec![format!(
        "127.0.0.1:{free}"
    )]));
    let err = Connector::new(cfg).connect().await.unwrap_err().to_string();
    assert_eq!(err, format!("connection to 127.0.0.1 port {free} refused"));
}

/// The jump host cannot reach the target: the error says which did what.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_jump_to_a_closed_port() {
    let sshd = Sshd::start();
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = test_support::config("127.0.0.1", free);
    cfg.proxy = Some(crate::config::Proxy::Jump(vec!["j".into()]));
    cfg.jump_hosts = vec![sshd.config()];
    let err = Connector::new(cfg).connect().await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "jump host 127.0.0.1:{} could not open a connection to 127.0.0.1 port {free}",
            sshd.port
        )),
        "{err}"
    );
}

/// ProxyCommand: ssh's tokens expanded, the child's stdin/stdout carry the connection. The
/// command is the classic `ssh -W %h:%p jumphost` with the system ssh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_command_carries_the_connection() {
    let sshd = Sshd::start();
    let mut cfg = sshd.config();
    cfg.proxy = Some(crate::config::Proxy::Command(format!(
        "ssh -F none -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes \
         -o BatchMode=yes -p {} %r@127.0.0.1 -W %h:%p",
        sshd.client_key.display(),
        sshd.known_hosts.display(),
        sshd.port
    )));
    let conn = Connector::new(cfg.clone()).connect().await.unwrap();
    sftp_handshake(&mut conn.open_sftp().await.unwrap()).await;
    // A command that dies at once: the handshake error says it went through the command.
    cfg.proxy = Some(crate::config::Proxy::Command("false".into()));
    let err = Connector::new(cfg).connect().await.unwrap_err().to_string();
    assert!(err.contains("through ProxyCommand 'false'"), "{err}");
}

/// Ciphers / KexAlgorithms / MACs / Compression reach the wire (sshd's debug log tells what
/// was negotiated); a cipher the server does not offer fails the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn algorithm_preferences_are_negotiated() {
    let sshd = Sshd::start_with(true, "LogLevel DEBUG\n");
    let mut cfg = sshd.config();
    cfg.ciphers = Some(vec!["aes128-ctr".into()]);
    cfg.macs = Some(vec!["hmac-sha2-256-etm@openssh.com".into()]);
    cfg.kex_algorithms = Some(vec!["ecdh-sha2-nistp256".into()]);
    cfg.compression = true;
    let conn = Connector::new(cfg.clone()).connect().await.unwrap();
    sftp_handshake(&mut conn.open_sftp().await.unwrap()).await;
    let log = fs::read_to_string(sshd.dir.path().join("sshd.log")).unwrap();
    assert!(log.contains("kex: algorithm: ecdh-sha2-nistp256"), "{log}");
    assert!(
        log.contains(
            "cipher: aes128-ctr MAC: hmac-sha2-256-etm@openssh.com compression: zlib@openssh.com"
        ),
        "{log}"
    );
    cfg.ciphers = Some(vec!["aes128-cbc".into()]);
    cfg.compression = false;
    let err = Connector::new(cfg).connect().await.unwrap_err().to_string();
    assert!(err.starts_with("SSH handshake with 127.0.0.1"), "{err}");
}

/// sftp_server=PATH runs a command instead of the subsystem (the server has none here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_server_command_replaces_the_subsystem() {
    let sshd = Sshd::start_with(false, "");
    let mut cfg = sshd.config();
    cfg.sftp_server = Some("/usr/lib/openssh/sftp-server".into());
    let conn = Connector::new(cfg).connect().await.unwrap();
    sftp_handshake(&mut conn.open_sftp().await.unwrap()).await;
}

/// HostKeyAlias: known_hosts is searched under the alias, not the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_key_alias_names_the_known_hosts_entry() {
    let sshd = Sshd::start();
    let listed = fs::read_to_string(&sshd.known_hosts).unwrap();
    let key = listed.split_once(' ').unwrap().1.trim().to_string();
    let kh = sshd.dir.path().join("known_hosts_alias");
    fs::write(&kh, format!("[myserver]:{} {key}\n", sshd.port)).unwrap();
    let mut cfg = sshd.config();
    cfg.user_known_hosts_files = vec![kh];
    let err = Connector::new(cfg.clone()).connect().await.unwrap_err();
    assert!(matches!(err, SshError::HostKeyUnknown { .. }), "{err}");
    cfg.host_key_alias = Some("myserver".into());
    Connector::new(cfg).connect().await.unwrap();
}

/// IdentitiesOnly: an agent key that is not one of the identity files is not offered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_only_skips_other_agent_keys() {
    let sshd = Sshd::start();
    let agent = Agent::start(sshd.dir.path(), &sshd.client_key);
    let other = keygen(sshd.dir.path(), "other", "");
    let mut cfg = sshd.config();
    cfg.identity_files = vec![other];
    cfg.agent_socket = Some(agent.socket.clone());
    Connector::new(cfg.clone()).connect().await.unwrap();
    cfg.identities_only = true;
    let err = Connector::new(cfg.clone()).connect().await.unwrap_err();
    assert!(matches!(err, SshError::AuthFailed { .. }), "{err}");
    // The agent's key is used when it is one of the files.
    cfg.identity_files = vec![sshd.client_key.clone()];
    let _ = fs::remove_file(&sshd.client_key); // only its .pub is left: the agent must sign
    cfg.identity_files_explicit = false;
    Connector::new(cfg).connect().await.unwrap();
}
