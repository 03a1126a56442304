//! sshfs's other transports: `ssh_command=` (the system ssh as a child process),
//! `sftp_server=` (a server command instead of the subsystem), `directport=` (SFTP straight
//! over TCP) and `passive` (SFTP on sftpfs's own stdin/stdout). Everything above the transport
//! is the same, so a round trip of a file through the mount is what is checked. Mounts end
//! through the harness's `Drop` (how a mount stops is tested elsewhere).

mod support;

use std::fs;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use support::{isolate_from_mounts, Mount, Sshd};

const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

fn check_round_trip(m: &Mount, name: &str) {
    let data = support::random_bytes(300_000, name.len() as u64);
    fs::write(m.path(name), &data).unwrap();
    assert_eq!(fs::read(m.remote(name)).unwrap(), data);
    let moved = format!("{name}.d/{name}");
    fs::create_dir(m.path(&format!("{name}.d"))).unwrap();
    fs::rename(m.path(name), m.path(&moved)).unwrap();
    assert_eq!(fs::read(m.path(&moved)).unwrap(), data);
    assert!(m.remote(&moved).exists());
}

/// The system ssh with the test's key and known_hosts, as `ssh_command`.
fn ssh_command(sshd: &Sshd) -> String {
    format!(
        "ssh_command=ssh -F none -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes \
         -o BatchMode=yes",
        sshd.client_key.display(),
        sshd.known_hosts.display()
    )
}

fn mount_with<'a>(sshd: &'a Sshd, source: &str, args: &[&str]) -> Mount<'a> {
    let mnt = sshd.mountpoint();
    let mut cmd = sshd.command();
    cmd.arg(source).arg(&mnt).args(args).arg("-f");
    let dir = source.split_once(':').map(|(_, d)| d).unwrap_or("");
    Mount::spawn_foreground(sshd, cmd, mnt, sshd.resolve(dir)).unwrap_or_else(|e| panic!("{e}"))
}

/// `ssh` processes that are children of `pid`.
fn ssh_children(pid: i32) -> Vec<i32> {
    let parent = |p: i32| -> Option<i32> {
        let stat = fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| parent(p) == Some(pid))
        .filter(|p| fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "ssh"))
        .collect()
}

#[test]
fn ssh_command_runs_the_system_ssh() {
    let sshd = Sshd::start();
    let port = sshd.port.to_string();
    let source = sshd.target("");
    let m = mount_with(&sshd, &source, &["-p", &port, "-o", &ssh_command(&sshd)]);
    check_round_trip(&m, "sshcmd.bin");
    let pid = m.pid().unwrap();
    assert!(
        !ssh_children(pid).is_empty(),
        "no ssh child of the mount process"
    );
    drop(m);
}

/// A hash attribute of `path` (`user.sftpfs.sha256`): the digest, or the errno.
fn sha256_xattr(path: &Path) -> Result<String, i32> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 256];
    let r = unsafe {
        libc::getxattr(
            p.as_ptr(),
            c"user.sftpfs.sha256".as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap());
    }
    buf.truncate(r as usize);
    Ok(String::from_utf8(buf).unwrap())
}

/// With `ssh_command=`, the server's hashes come from one more run of that command (`ssh
/// HOST sh`), the names on its standard input: the right file, however its name is made
/// (issue 23 item 1).
#[test]
fn ssh_command_hashes_by_running_sh_through_it() {
    let sshd = Sshd::start();
    let name = "it's a \"name\" $(touch pwned)";
    fs::write(sshd.home().join(name), b"hash me").unwrap();
    fs::write(sshd.home().join("it"), b"a decoy").unwrap();
    let port = sshd.port.to_string();
    let m = mount_with(
        &sshd,
        &sshd.target(""),
        &["-p", &port, "-o", &ssh_command(&sshd)],
    );
    let out = Command::new("sha256sum")
        .arg("--")
        .arg(sshd.home().join(name))
        .output()
        .unwrap();
    let want = String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(sha256_xattr(&m.path(name)), Ok(want));
    assert!(
        !sshd.home().join("pwned").exists(),
        "a name ran as a command"
    );
}

/// `directport=` has no SSH, so no exec channel: no hashes, at once.
#[test]
fn directport_has_no_hashes() {
    let sshd = Sshd::start();
    fs::write(sshd.home().join("f"), b"data").unwrap();
    let listener = SftpListener::start(&sshd.home());
    let home = sshd.home().display().to_string();
    let opt = format!("directport={}", listener.port);
    let m = mount_with(&sshd, &format!("127.0.0.1:{home}"), &["-o", &opt]);
    assert_eq!(sha256_xattr(&m.path("f")), Err(libc::ENODATA));
}

/// ssh options given with -o reach the system ssh (here the key and known_hosts).
#[test]
fn ssh_command_gets_the_ssh_options() {
    let sshd = Sshd::start();
    let opts = sshd.opts(&["ssh_command=ssh -F none"]);
    let port = sshd.port.to_string();
    let m = mount_with(&sshd, &sshd.target(""), &["-p", &port, "-o", &opts]);
    check_round_trip(&m, "opts.bin");
    drop(m);
}

/// `sftp_server=PATH` runs the server command instead of the `sftp` subsystem, with the
/// system ssh and with the built-in client.
#[test]
fn sftp_server_command() {
    let sshd = Sshd::start();
    let home = sshd.home().display().to_string();
    let source = sshd.target(&home);
    let port = sshd.port.to_string();
    let server = format!("sftp_server={SFTP_SERVER}");
    let m = mount_with(
        &sshd,
        &source,
        &["-p", &port, "-o", &ssh_command(&sshd), "-o", &server],
    );
    check_round_trip(&m, "viassh.bin");
    drop(m);
    let m = Mount::new(&sshd, &home, &[&server]);
    check_round_trip(&m, "builtin.bin");
    drop(m);
}

/// An sftp-server behind a TCP port (what inetd or socat would do): one server process per
/// connection, in its own mount namespace. Stops accepting on drop.
struct SftpListener {
    port: u16,
    stop: Arc<AtomicBool>,
    children: Arc<Mutex<Vec<Child>>>,
    thread: Option<JoinHandle<()>>,
}

impl SftpListener {
    fn start(start_dir: &Path) -> SftpListener {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let children = Arc::new(Mutex::new(Vec::new()));
        let (s, c, dir) = (stop.clone(), children.clone(), start_dir.to_path_buf());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let input = OwnedFd::from(conn.try_clone().unwrap());
                let mut cmd = Command::new(SFTP_SERVER);
                cmd.arg("-d")
                    .arg(&dir)
                    .stdin(Stdio::from(input))
                    .stdout(Stdio::from(OwnedFd::from(conn)))
                    .stderr(Stdio::null());
                isolate_from_mounts(&mut cmd);
                c.lock()
                    .unwrap()
                    .push(cmd.spawn().expect("start sftp-server"));
            }
        });
        SftpListener {
            port,
            stop,
            children,
            thread: Some(thread),
        }
    }

    fn connections(&self) -> usize {
        self.children.lock().unwrap().len()
    }
}

impl Drop for SftpListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for mut c in self.children.lock().unwrap().drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn directport_speaks_sftp_over_tcp() {
    // The sshd only provides the temp dir layout; no SSH is used.
    let sshd = Sshd::start();
    let listener = SftpListener::start(&sshd.home());
    let home = sshd.home().display().to_string();
    let opt = format!("directport={}", listener.port);
    let m = mount_with(&sshd, &format!("127.0.0.1:{home}"), &["-o", &opt]);
    check_round_trip(&m, "direct.bin");
    assert!(listener.connections() >= 1);
    drop(m);
}

#[test]
fn passive_speaks_sftp_on_stdin_and_stdout() {
    passive_round_trip("passive");
}

#[test]
fn slave_is_sshfs_old_name_of_passive() {
    passive_round_trip("slave");
}

fn passive_round_trip(option: &str) {
    let sshd = Sshd::start();
    let mut server = Command::new(SFTP_SERVER);
    server
        .arg("-d")
        .arg(sshd.home())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    isolate_from_mounts(&mut server);
    let mut server = server.spawn().expect("start sftp-server");
    let from_server = OwnedFd::from(server.stdout.take().unwrap());
    let to_server = OwnedFd::from(server.stdin.take().unwrap());
    let (rd, wr) = (from_server.as_raw_fd(), to_server.as_raw_fd());
    let mnt = sshd.mountpoint();
    let mut cmd = sshd.command();
    let home = sshd.home().display().to_string();
    // No host: as with sshfs, passive mode takes `:dir`.
    cmd.arg(format!(":{home}"))
        .arg(&mnt)
        .args(["-o", option, "-f"]);
    // After the harness's stdio set-up: stdin from the server, stdout to it.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(rd, 0) < 0 || libc::dup2(wr, 1) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let m = Mount::spawn_foreground(&sshd, cmd, mnt, sshd.home());
    drop((from_server, to_server));
    let m = m.unwrap_or_else(|e| panic!("{e}"));
    check_round_trip(&m, &format!("{option}.bin"));
    drop(m);
    // The server ends with the mount (its stdin closes).
    let ended = support::wait_until(support::EXIT_DEADLINE, || {
        server.try_wait().ok().flatten().is_some()
    });
    if !ended {
        let _ = server.kill();
    }
    let _ = server.wait();
    assert!(ended, "sftp-server still running after the unmount");
}

/// An sftp-server behind a TCP port whose first connection, at its `nth` reply, sends a
/// packet of length 0 instead and hangs up: a server that breaks the protocol mid-session.
/// Later connections are served properly.
fn start_breaking_listener(start_dir: &Path, nth: usize) -> u16 {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = start_dir.to_path_buf();
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let mut cmd = Command::new(SFTP_SERVER);
            cmd.arg("-d")
                .arg(&dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            isolate_from_mounts(&mut cmd);
            let mut child = cmd.spawn().expect("start sftp-server");
            let mut to_server = child.stdin.take().unwrap();
            let mut from_server = child.stdout.take().unwrap();
            let mut from_client = conn.try_clone().unwrap();
            // A plain loop: std::io::copy would splice, which waits for more than one packet.
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n @ 1..) = from_client.read(&mut buf) {
                    if to_server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
            std::thread::spawn(move || {
                let mut n = 0;
                loop {
                    let mut len = [0u8; 4];
                    if from_server.read_exact(&mut len).is_err() {
                        break;
                    }
                    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
                    if from_server.read_exact(&mut body).is_err() {
                        break;
                    }
                    n += 1;
                    if i == 0 && n == nth {
                        let _ = conn.write_all(&[0, 0, 0, 0]);
                        let _ = conn.shutdown(std::net::Shutdown::Both);
                        break;
                    }
                    if conn
                        .write_all(&len)
                        .and_then(|()| conn.write_all(&body))
                        .is_err()
                    {
                        break;
                    }
                }
                let _ = child.kill();
                let _ = child.wait();
            });
        }
    });
    port
}

#[test]
fn a_malformed_reply_mid_session_is_named_and_the_mount_reconnects() {
    let sshd = Sshd::start();
    fs::create_dir(sshd.remote("d")).unwrap();
    fs::write(sshd.remote("d/f"), b"still here").unwrap();
    // The first connection breaks a little after the mount (VERSION, limits, the root's
    // checks): during the listing and reads below.
    let port = start_breaking_listener(&sshd.home(), 12);
    let home = sshd.home().display().to_string();
    let opt = format!("directport={port},max_conns=1");
    let m = mount_with(&sshd, &format!("127.0.0.1:{home}"), &["-o", &opt]);
    let named = support::wait_until(Duration::from_secs(20), || {
        let _ = fs::read_dir(m.path("d")).map(|d| d.count());
        let _ = fs::read(m.path("d/f"));
        m.stderr().contains("bad reply len: 0")
    });
    assert!(
        named,
        "the log does not name the bad length:\n{}",
        m.stderr()
    );
    assert_eq!(fs::read(m.path("d/f")).unwrap(), b"still here");
    assert_eq!(
        m.stderr().matches("bad reply len").count(),
        1,
        "said once:\n{}",
        m.stderr()
    );
}

#[test]
fn the_log_names_the_server_and_what_it_lacks() {
    // One line at info level (shown by -d): the server's banner, its SFTP version, and what
    // is degraded on it (OpenSSH's sftp-server has every extension sftpfs uses).
    let sshd = Sshd::start();
    let m = Mount::new(&sshd, "", &["debug"]);
    let log = m.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("SFTP version"))
        .unwrap_or_else(|| panic!("no server line in the log:\n{log}"));
    assert!(line.contains("server SSH-2.0-OpenSSH_"), "{line}");
    assert!(line.contains("SFTP version 3"), "{line}");
    assert!(
        line.contains("every extension sftpfs uses is there"),
        "{line}"
    );
    assert_eq!(log.matches("SFTP version").count(), 1, "said once:\n{log}");
}
