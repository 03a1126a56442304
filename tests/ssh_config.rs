//! ssh_config: a `Host` alias and everything ssh would apply to it (`-F file`), the command
//! line winning over the file, `ProxyJump` (once and chained) and `ProxyCommand` through the
//! test's own sshd, algorithm lists, and the built-in parser used when `ssh` is not installed.
//! Mounts end through the harness's `Drop` (how a mount stops is tested elsewhere).

mod support;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{run_to_exit, Mount, Sshd, FAIL_DEADLINE};

/// A `Host NAME` block that reaches `sshd` with the test's key and known_hosts.
fn host_block(sshd: &Sshd, name: &str) -> String {
    format!(
        "Host {name}\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  \
         UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
        sshd.port,
        sshd.user,
        sshd.client_key.display(),
        sshd.known_hosts.display()
    )
}

fn write_config(sshd: &Sshd, text: &str) -> PathBuf {
    let path = sshd.local("ssh_config");
    fs::write(&path, text).unwrap();
    path
}

/// `sftpfs SOURCE MNT -F config ARGS... -f`, mounted.
fn mount_with_config<'a>(
    sshd: &'a Sshd,
    source: &str,
    config: &Path,
    args: &[&str],
) -> Result<Mount<'a>, String> {
    let mnt = sshd.mountpoint();
    let mut cmd = sshd.command();
    cmd.arg(source)
        .arg(&mnt)
        .arg("-F")
        .arg(config)
        .args(args)
        .arg("-f");
    let dir = source.split_once(':').map(|(_, d)| d).unwrap_or("");
    Mount::spawn_foreground(sshd, cmd, mnt, sshd.resolve(dir))
}

/// A file written through the mount is on the server, and back.
fn check_round_trip(m: &Mount, name: &str) {
    fs::write(m.path(name), b"through ssh_config\n").unwrap();
    assert_eq!(fs::read(m.remote(name)).unwrap(), b"through ssh_config\n");
    assert_eq!(fs::read(m.path(name)).unwrap(), b"through ssh_config\n");
}

/// Successful logins sshd has logged so far.
fn logins(sshd: &Sshd) -> usize {
    fs::read_to_string(&sshd.log)
        .unwrap_or_default()
        .matches("Accepted publickey")
        .count()
}

/// Established TCP connections of process `pid` (its socket inodes in /proc/net/tcp).
fn tcp_connections(pid: i32) -> usize {
    let inodes: HashSet<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 9 && f[3] == "01" && inodes.contains(f[9]))
        .count()
}

/// Each connection of the mount through `hops` jump hosts costs `hops + 1` logins: sshd
/// logged that many per TCP connection the mount process holds.
fn assert_tunnelled(m: &Mount, sshd: &Sshd, logins_before: usize, hops: usize) {
    // Pool members may still be connecting: wait until both sides agree.
    let count = || {
        let conns = tcp_connections(m.pid().unwrap());
        (conns, logins(sshd) - logins_before)
    };
    let settled = support::wait_until(Duration::from_secs(10), || {
        let (conns, logins) = count();
        conns >= 1 && logins == conns * (hops + 1)
    });
    let (conns, logins) = count();
    assert!(
        settled,
        "{conns} TCP connection(s) of the mount process should carry {} logins each, \
         sshd logged {logins}",
        hops + 1
    );
}

#[test]
fn host_alias_from_the_config_file() {
    let sshd = Sshd::start();
    let config = write_config(&sshd, &host_block(&sshd, "myserver"));
    let m = mount_with_config(&sshd, "myserver:", &config, &[]).unwrap_or_else(|e| panic!("{e}"));
    check_round_trip(&m, "alias.txt");
    drop(m);
}

/// Wildcards, the first value winning, and the command line winning over the file.
#[test]
fn command_line_wins_over_the_config_file() {
    let sshd = Sshd::start();
    let text = format!(
        "Host srv-*\n  Port 1\n  User nobody-here\n{}",
        host_block(&sshd, "*")
    );
    let config = write_config(&sshd, &text);
    // The file says port 1 and a user that does not exist: -p and user@ fix both.
    let source = format!("{}@srv-a:", sshd.user);
    let port = sshd.port.to_string();
    let m = mount_with_config(&sshd, &source, &config, &["-p", &port])
        .unwrap_or_else(|e| panic!("{e}"));
    check_round_trip(&m, "wins.txt");
    drop(m);
    // Without them, the file's wrong port is used: refused.
    let mut cmd = sshd.command();
    cmd.arg("srv-a:")
        .arg(sshd.mountpoint())
        .arg("-F")
        .arg(&config);
    let run = run_to_exit(cmd, &sshd.dir, FAIL_DEADLINE);
    let line = run.one_line_error();
    assert!(line.contains("port 1"), "{line}");
}

/// Without `ssh` on the PATH the built-in parser reads the file.
#[test]
fn builtin_parser_without_ssh_installed() {
    let sshd = Sshd::start();
    let config = write_config(&sshd, &host_block(&sshd, "parsed"));
    let empty = sshd.local("empty-path");
    fs::create_dir(&empty).unwrap();
    let mnt = sshd.mountpoint();
    let mut cmd = sshd.command();
    cmd.env("PATH", &empty)
        .arg("parsed:")
        .arg(&mnt)
        .arg("-F")
        .arg(&config)
        .args(["-f", "-d"]);
    let m = Mount::spawn_foreground(&sshd, cmd, mnt, sshd.home()).unwrap_or_else(|e| panic!("{e}"));
    check_round_trip(&m, "parsed.txt");
    assert!(
        m.stderr().contains("ssh is not installed"),
        "the parser was not used:\n{}",
        m.stderr()
    );
    drop(m);
}

/// ProxyJump through the same server (the jump host is the sshd itself): each connection of
/// the mount is a login to the jump host plus one tunnelled through it. A chain `a,b` from the
/// command line nests two.
#[test]
fn proxy_jump_once_and_chained() {
    let sshd = Sshd::start();
    let text = format!(
        "{}  ProxyJump jump\n{}",
        host_block(&sshd, "target"),
        host_block(&sshd, "jump")
    );
    let config = write_config(&sshd, &text);
    let before = logins(&sshd);
    let m = mount_with_config(&sshd, "target:", &config, &[]).unwrap_or_else(|e| panic!("{e}"));
    check_round_trip(&m, "jump.txt");
    assert_tunnelled(&m, &sshd, before, 1);
    drop(m);

    let before = logins(&sshd);
    let m = mount_with_config(&sshd, "target:", &config, &["-o", "ProxyJump=jump,jump"])
        .unwrap_or_else(|e| panic!("{e}"));
    check_round_trip(&m, "jump2.txt");
    assert_tunnelled(&m, &sshd, before, 2);
    drop(m);
}

/// ProxyCommand from the config file, with ssh's tokens: the system ssh's `-W` carries the
/// connection.
#[test]
fn proxy_command_with_tokens() {
    let sshd = Sshd::start();
    let proxy = format!(
        "  ProxyCommand ssh -F none -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes \
         -o BatchMode=yes -p %p %r@%h -W %h:%p\n",
        sshd.client_key.display(),
        sshd.known_hosts.display()
    );
    let config = write_config(&sshd, &format!("{}{proxy}", host_block(&sshd, "viacmd")));
    let before = logins(&sshd);
    let m = mount_with_config(&sshd, "viacmd:", &config, &[]).unwrap_or_else(|e| panic!("{e}"));
    check_round_trip(&m, "cmd.txt");
    // The connections go through `ssh -W` children: the mount process has no TCP connection
    // of its own, and each ssh child logged in before ours did through it.
    assert_eq!(tcp_connections(m.pid().unwrap()), 0);
    let settled = support::wait_until(Duration::from_secs(10), || {
        let logins = logins(&sshd) - before;
        logins >= 2 && logins.is_multiple_of(2)
    });
    assert!(settled, "{} logins", logins(&sshd) - before);
    drop(m);
}

/// Algorithm lists: a cipher the SSH library lacks is an error that names it, from the command
/// line and from the config file; supported lists mount.
#[test]
fn algorithm_lists() {
    let sshd = Sshd::start();
    let config = write_config(&sshd, &host_block(&sshd, "algo"));
    let m = mount_with_config(
        &sshd,
        "algo:",
        &config,
        &[
            "-o",
            "Ciphers=aes256-ctr,aes128-ctr,MACs=hmac-sha2-512-etm@openssh.com,Compression=yes",
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    check_round_trip(&m, "algo.txt");
    drop(m);

    let mut cmd = sshd.command();
    cmd.arg("algo:")
        .arg(sshd.mountpoint())
        .arg("-F")
        .arg(&config)
        .args(["-o", "Ciphers=aes128-ctr,twofish-cbc"]);
    let line = run_to_exit(cmd, &sshd.dir, FAIL_DEADLINE).one_line_error();
    assert!(line.contains("unsupported cipher 'twofish-cbc'"), "{line}");

    // In the file, only OpenSSH's 3des-cbc: nothing sftpfs can offer, named.
    let config = write_config(
        &sshd,
        &format!("{}  Ciphers 3des-cbc\n", host_block(&sshd, "algo")),
    );
    let mut cmd = sshd.command();
    cmd.arg("algo:")
        .arg(sshd.mountpoint())
        .arg("-F")
        .arg(&config);
    let line = run_to_exit(cmd, &sshd.dir, FAIL_DEADLINE).one_line_error();
    assert!(line.contains("3des-cbc"), "{line}");
}

/// A broken config file: ssh's own complaint, on one line, and nothing mounted.
#[test]
fn broken_config_file_is_reported() {
    let sshd = Sshd::start();
    let config = write_config(&sshd, "Host x\n  NoSuchKeyword yes\n");
    let mut cmd = sshd.command();
    cmd.arg("x:").arg(sshd.mountpoint()).arg("-F").arg(&config);
    let line = run_to_exit(cmd, &sshd.dir, FAIL_DEADLINE).one_line_error();
    assert!(line.contains("nosuchkeyword"), "{line}");
    // A missing -F file is an error too, as in ssh.
    let mut cmd = sshd.command();
    cmd.arg("x:")
        .arg(sshd.mountpoint())
        .arg("-F")
        .arg(sshd.local("no-such-file"));
    let line = run_to_exit(cmd, &sshd.dir, FAIL_DEADLINE).one_line_error();
    assert!(line.contains("no-such-file"), "{line}");
}
