//! Bad input not covered by `bad_input.rs`: servers that misbehave (no `sftp` subsystem;
//! malformed, oversized or truncated SFTP packets from a fake server reached with
//! `-o directport=PORT`), no usable authentication method, the hint of an unknown host key,
//! and malformed option values. Each: one clear line on stderr, a non-zero exit (not a
//! crash), nothing mounted and no process left behind.

mod support;

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use support::*;

/// Runs the binary (background mode) with `args` to its exit; its address space is capped,
/// so that an allocation sized by a hostile length field fails loudly (abort) instead of
/// passing unnoticed.
fn run_capped(home: &Path, args: Vec<OsString>) -> Run {
    let mut cmd = command_in(home);
    cmd.args(args);
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 3 << 30,
                rlim_max: 3 << 30,
            };
            libc::setrlimit(libc::RLIMIT_AS, &lim);
            Ok(())
        });
    }
    run_to_exit(cmd, home, FAIL_DEADLINE)
}

#[track_caller]
fn assert_mentions(line: &str, all: &[&str], any: &[&str]) {
    for a in all {
        assert!(
            line.contains(&a.to_lowercase()),
            "error line does not mention {a:?}: {line}"
        );
    }
    assert!(
        any.is_empty() || any.iter().any(|a| line.contains(&a.to_lowercase())),
        "error line mentions none of {any:?}: {line}"
    );
}

// ---------------------------------------------------------------------------------------------
// A fake SFTP server on a plain TCP port (for `-o directport=PORT`)

/// Accepts every connection on 127.0.0.1 and runs `serve` on it, in its own thread. Stops
/// (and closes what is open) on drop.
struct FakeServer {
    port: u16,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeServer {
    fn start(serve: fn(&mut TcpStream)) -> FakeServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let acceptor = std::thread::spawn(move || {
            for s in l.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut s) = s else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                    serve(&mut s);
                    // Hold the connection open (the client must not wait for more) until the
                    // client closes it or the test ends.
                    let mut buf = [0u8; 4096];
                    while !st.load(Ordering::SeqCst) {
                        match s.read(&mut buf) {
                            Ok(0) => return,
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => return,
                        }
                    }
                });
            }
        });
        FakeServer {
            port,
            stop,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

/// Reads one SFTP packet (u32 length, then the body); `None` at EOF or on a timeout.
fn read_packet(s: &mut TcpStream) -> Option<Vec<u8>> {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let len = u32::from_be_bytes(len) as usize;
    if len > 1 << 20 {
        return None;
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    Some(body)
}

/// Answers INIT with a proper VERSION 3 (no extensions).
fn handshake(s: &mut TcpStream) -> bool {
    match read_packet(s) {
        Some(p) if p.first() == Some(&1) => {
            let _ = s.write_all(&[0, 0, 0, 5, 2, 0, 0, 0, 3]);
            true
        }
        _ => false,
    }
}

/// The id of a request packet (type byte, then u32 id).
fn request_id(p: &[u8]) -> [u8; 4] {
    [p[1], p[2], p[3], p[4]]
}

/// Runs the binary against a fake server; returns its error line.
fn against_fake(serve: fn(&mut TcpStream)) -> String {
    let fake = FakeServer::start(serve);
    let tmp = TempDir::new("fake-sftp");
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let args: Vec<OsString> = vec![
        "127.0.0.1:dir".into(),
        mnt.clone().into(),
        "-o".into(),
        format!("directport={},timeout=5", fake.port).into(),
    ];
    let r = run_capped(tmp.path(), args);
    let line = failed_cleanly(&r, &mnt);
    assert!(
        r.elapsed < Duration::from_secs(20),
        "took {:?} to give up",
        r.elapsed
    );
    drop(fake);
    line
}

#[test]
fn directport_is_an_option() {
    // The fake-server tests below rely on it.
    let tmp = TempDir::new("help");
    let r = run_to_exit(
        {
            let mut c = command_in(tmp.path());
            c.arg("--help");
            c
        },
        tmp.path(),
        FAIL_DEADLINE,
    );
    assert!(r.stdout.contains("directport"), "{}", r.stdout);
}

#[test]
fn a_proper_fake_server_is_understood() {
    // The control case: a fake server that answers INIT, REALPATH and STAT sensibly gets past
    // the handshake; what fails later must not be the packet layer.
    let line = against_fake(|s| {
        if !handshake(s) {
            return;
        }
        // Answer every request with STATUS NO_SUCH_FILE.
        while let Some(p) = read_packet(s) {
            let id = request_id(&p);
            let mut body = vec![101];
            body.extend_from_slice(&id);
            body.extend_from_slice(&2u32.to_be_bytes());
            body.extend_from_slice(&0u32.to_be_bytes()); // empty message
            body.extend_from_slice(&0u32.to_be_bytes()); // empty language tag
            let _ = s.write_all(&(body.len() as u32).to_be_bytes());
            let _ = s.write_all(&body);
        }
    });
    assert_mentions(
        &line,
        &["dir"],
        &["no such", "not exist", "does not exist", "not found"],
    );
}

#[test]
fn oversized_packet_length_after_version() {
    let line = against_fake(|s| {
        if !handshake(s) {
            return;
        }
        if read_packet(s).is_some() {
            // A reply that claims almost 4 GiB.
            let _ = s.write_all(&0xFFFF_FFF0u32.to_be_bytes());
            let _ = s.write_all(&[104, 0, 0, 0, 0]);
        }
    });
    assert_mentions(
        &line,
        &[],
        &["packet", "too large", "oversized", "bytes", "protocol"],
    );
}

#[test]
fn oversized_version_packet() {
    let line = against_fake(|s| {
        if read_packet(s).is_some() {
            let _ = s.write_all(&0x7FFF_FFFFu32.to_be_bytes());
            let _ = s.write_all(&[2, 0, 0, 0, 3]);
        }
    });
    assert_mentions(
        &line,
        &[],
        &["packet", "too large", "oversized", "bytes", "protocol"],
    );
}

#[test]
fn garbage_instead_of_version() {
    // An SSH banner, as a server on the wrong port would send: read as a length, it is huge.
    let line = against_fake(|s| {
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n");
    });
    assert_mentions(
        &line,
        &[],
        &["packet", "protocol", "sftp", "version", "server"],
    );
}

#[test]
fn wrong_packet_type_instead_of_version() {
    let line = against_fake(|s| {
        if read_packet(s).is_some() {
            // STATUS where VERSION belongs.
            let _ = s.write_all(&[0, 0, 0, 13, 101, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
        }
    });
    assert_mentions(&line, &[], &["version", "protocol", "unexpected", "sftp"]);
}

#[test]
fn truncated_version_then_close() {
    let line = against_fake(|s| {
        if read_packet(s).is_some() {
            let _ = s.write_all(&[0, 0, 0, 5, 2, 0]);
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    });
    assert_mentions(
        &line,
        &[],
        &["closed", "eof", "lost", "protocol", "version", "end"],
    );
}

#[test]
fn closes_right_after_init() {
    let line = against_fake(|s| {
        let _ = read_packet(s);
        let _ = s.shutdown(std::net::Shutdown::Both);
    });
    assert_mentions(&line, &[], &["closed", "eof", "lost", "end", "connection"]);
}

#[test]
fn name_reply_with_a_huge_count_and_no_entries() {
    // REALPATH answered by NAME claiming 4 billion entries in a 9-byte packet: no allocation
    // by the count, a clean error.
    let line = against_fake(|s| {
        if !handshake(s) {
            return;
        }
        if let Some(p) = read_packet(s) {
            let id = request_id(&p);
            let mut body = vec![104];
            body.extend_from_slice(&id);
            body.extend_from_slice(&u32::MAX.to_be_bytes());
            let _ = s.write_all(&(body.len() as u32).to_be_bytes());
            let _ = s.write_all(&body);
        }
    });
    assert_mentions(
        &line,
        &[],
        &[
            "packet",
            "protocol",
            "malformed",
            "short",
            "truncated",
            "invalid",
        ],
    );
}

#[test]
fn reply_with_a_string_longer_than_its_packet() {
    // NAME with one entry whose file name claims 1 GiB.
    let line = against_fake(|s| {
        if !handshake(s) {
            return;
        }
        if let Some(p) = read_packet(s) {
            let id = request_id(&p);
            let mut body = vec![104];
            body.extend_from_slice(&id);
            body.extend_from_slice(&1u32.to_be_bytes());
            body.extend_from_slice(&(1u32 << 30).to_be_bytes());
            body.extend_from_slice(b"/x");
            let _ = s.write_all(&(body.len() as u32).to_be_bytes());
            let _ = s.write_all(&body);
        }
    });
    assert_mentions(
        &line,
        &[],
        &[
            "packet",
            "protocol",
            "malformed",
            "short",
            "truncated",
            "invalid",
        ],
    );
}

#[test]
fn silent_fake_server_times_out() {
    // Accepts, reads INIT, never answers: the request deadline ends it.
    let line = against_fake(|s| {
        let _ = read_packet(s);
    });
    assert_mentions(
        &line,
        &[],
        &["timed out", "timeout", "time out", "no answer", "no reply"],
    );
}

// ---------------------------------------------------------------------------------------------
// Real sshd, misconfigured

#[test]
fn server_without_the_sftp_subsystem() {
    let s = Sshd::start_with("root", |c| {
        c.lines()
            .filter(|l| !l.starts_with("Subsystem"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let mnt = s.mountpoint();
    let mut cmd = s.command();
    cmd.args(s.mount_args("", &mnt, &[]));
    let r = run_to_exit(cmd, &s.dir, FAIL_DEADLINE);
    let line = failed_cleanly(&r, &mnt);
    assert_mentions(&line, &["sftp"], &["subsystem", "not offer", "refused"]);
}

#[test]
fn no_usable_authentication_method() {
    // The server takes passwords only; the client may not ask for one (BatchMode=yes).
    let s = Sshd::start_with("root", |c| {
        c.replace("PubkeyAuthentication yes", "PubkeyAuthentication no")
            .replace("PasswordAuthentication no", "PasswordAuthentication yes")
    });
    let mnt = s.mountpoint();
    let mut cmd = s.command();
    cmd.args(s.mount_args("", &mnt, &[]));
    let r = run_to_exit(cmd, &s.dir, FAIL_DEADLINE);
    let line = failed_cleanly(&r, &mnt);
    assert_mentions(
        &line,
        &[],
        &[
            "no usable",
            "no supported",
            "authentication method",
            "permission denied",
            "authenticat",
        ],
    );
    // It says what the server wanted, or what was tried.
    assert_mentions(&line, &[], &["password", "publickey", "batchmode"]);
}

// ---------------------------------------------------------------------------------------------
// Malformed option values

#[test]
fn malformed_option_values_are_named() {
    let s = Sshd::start();
    let mnt = s.mountpoint();
    for (opt, name) in [
        ("port=abc", "port"),
        ("port=99999", "port"),
        ("ServerAliveInterval=soon", "serveraliveinterval"),
        ("ServerAliveCountMax=-1", "serveralivecountmax"),
        ("timeout=x", "timeout"),
        ("ConnectTimeout=1.5.2", "connecttimeout"),
        ("StrictHostKeyChecking=perhaps", "stricthostkeychecking"),
        ("max_conns=0", "max_conns"),
        ("uid=root", "uid"),
        ("umask=999", "umask"),
        ("idmap=sometimes", "idmap"),
        ("reconnect=yes", "reconnect"),
    ] {
        let mut cmd = s.command();
        cmd.args(s.mount_args("", &mnt, &[opt]));
        let r = run_to_exit(cmd, &s.dir, FAIL_DEADLINE);
        let line = failed_cleanly(&r, &mnt);
        assert!(
            line.contains(name),
            "-o {opt}: the error does not name the option: {line}"
        );
        assert!(
            !line.contains("authenticat") && !line.contains("connect to"),
            "-o {opt}: rejected only after connecting: {line}"
        );
    }
    // -p takes a port number.
    for p in ["0x16", "65536", ""] {
        let mut args = s.mount_args("", &mnt, &[]);
        args[3] = p.into();
        let mut cmd = s.command();
        cmd.args(args);
        let r = run_to_exit(cmd, &s.dir, FAIL_DEADLINE);
        let status = r.status.expect("still running");
        assert!(status.code().is_some_and(|c| c != 0), "-p {p:?}: {status}");
        assert!(
            r.stderr.to_lowercase().contains("port") || r.stderr.contains("-p"),
            "-p {p:?}: the error does not name the port: {}",
            r.stderr
        );
        assert!(!is_mounted(&mnt));
    }
}

#[test]
fn malformed_o_syntax() {
    let s = Sshd::start();
    let mnt = s.mountpoint();
    // A value without a name, and a value-taking option without its value.
    for (bad, what) in [("=3", "''"), ("IdentityFile", "identityfile")] {
        let mut cmd = s.command();
        cmd.args(s.mount_args("", &mnt, &[bad]));
        let r = run_to_exit(cmd, &s.dir, FAIL_DEADLINE);
        let line = failed_cleanly(&r, &mnt);
        assert!(line.contains(what), "-o {bad:?}: {line}");
    }
}

#[test]
fn zero_length_reply_names_the_bad_length() {
    let line = against_fake(|s| {
        if !handshake(s) {
            return;
        }
        if read_packet(s).is_some() {
            let _ = s.write_all(&0u32.to_be_bytes());
        }
    });
    // sshfs 3.7.6's words, which scripts look for.
    assert_mentions(&line, &["bad reply len: 0"], &[]);
}

#[test]
fn names_in_a_refused_reply_are_printed_as_text() {
    // The first request after VERSION is answered with two names where one was expected
    // (or where no names were): the error shows them as text, escaped, never as byte arrays.
    let line = against_fake(|s| {
        if !handshake(s) {
            return;
        }
        let mut first = true;
        while let Some(p) = read_packet(s) {
            let id = request_id(&p);
            let mut body;
            if first {
                body = vec![104];
                body.extend_from_slice(&id);
                body.extend_from_slice(&2u32.to_be_bytes());
                for name in [&b"/srv/\x1b[31mred"[..], b"/other"] {
                    body.extend_from_slice(&(name.len() as u32).to_be_bytes());
                    body.extend_from_slice(name);
                    body.extend_from_slice(&0u32.to_be_bytes()); // empty long name
                    body.extend_from_slice(&0u32.to_be_bytes()); // no attributes
                }
            } else {
                body = vec![101];
                body.extend_from_slice(&id);
                body.extend_from_slice(&2u32.to_be_bytes());
                body.extend_from_slice(&0u32.to_be_bytes());
                body.extend_from_slice(&0u32.to_be_bytes());
            }
            first = false;
            let _ = s.write_all(&(body.len() as u32).to_be_bytes());
            let _ = s.write_all(&body);
        }
    });
    assert_mentions(&line, &["/srv/", "/other"], &[]);
    assert!(
        !line.contains("[47, "),
        "names printed as byte arrays: {line}"
    );
    assert!(
        !line.contains('\x1b'),
        "a control character reached the terminal: {line:?}"
    );
}
