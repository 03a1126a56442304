//! Bad input: one clear line on stderr (`sftpfs: ...`), a non-zero exit, no mount and no
//! process left behind. The phrases checked are loose enough to survive rewording but fail
//! on a generic error.

mod support;

use std::ffi::OsString;
use std::fs;
use std::net::TcpListener;
use std::time::Duration;
use support::*;

/// Runs the binary in background mode (no `-f`) to its exit.
fn run(s: &Sshd, args: Vec<OsString>) -> Run {
    let mut cmd = s.command();
    cmd.args(args);
    run_to_exit(cmd, &s.dir, FAIL_DEADLINE)
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

#[test]
fn missing_mountpoint() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let mnt = s.dir.join("no-such-mountpoint");
    let r = run(&s, s.mount_args("w", &mnt, &[]));
    let line = failed_cleanly(&r, &mnt);
    assert_mentions(
        &line,
        &["no-such-mountpoint"],
        &["no such", "not exist", "does not exist", "not found"],
    );
    assert!(!mnt.exists(), "the mountpoint was created");
}

#[test]
fn mountpoint_that_is_a_file() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let mnt = s.dir.join("a-file-mountpoint");
    fs::write(&mnt, "file").unwrap();
    let r = run(&s, s.mount_args("w", &mnt, &[]));
    let line = failed_cleanly(&r, &mnt);
    assert_mentions(&line, &["a-file-mountpoint", "not a directory"], &[]);
    assert_eq!(fs::read_to_string(&mnt).unwrap(), "file");
}

#[test]
fn remote_dir_that_does_not_exist() {
    let s = Sshd::start();
    let mnt = s.mountpoint();
    let r = run(&s, s.mount_args("no-such-remote-dir", &mnt, &[]));
    let line = failed_cleanly(&r, &mnt);
    assert_mentions(
        &line,
        &["no-such-remote-dir"],
        &["no such", "not exist", "does not exist", "not found"],
    );
}

#[test]
fn remote_dir_that_is_a_file() {
    let s = Sshd::start();
    fs::write(s.remote("remote-file"), "x").unwrap();
    let mnt = s.mountpoint();
    let r = run(&s, s.mount_args("remote-file", &mnt, &[]));
    let line = failed_cleanly(&r, &mnt);
    assert_mentions(&line, &["remote-file", "not a directory"], &[]);
}

#[test]
fn absolute_remote_dir_that_does_not_exist() {
    let s = Sshd::start();
    let mnt = s.mountpoint();
    let r = run(&s, s.mount_args("/no/such/absolute/dir", &mnt, &[]));
    let line = failed_cleanly(&r, &mnt);
    assert_mentions(
        &line,
        &["/no/such/absolute/dir"],
        &["no such", "not exist", "does not exist", "not found"],
    );
}

fn port_with_nothing_listening() -> u16 {
    // Bound then closed: nothing listens there afterwards.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

#[test]
fn refused_port() {
    let s = Sshd::start();
    let mnt = s.mountpoint();
    let mut args = s.mount_args("", &mnt, &[]);
    args[3] = port_with_nothing_listening().to_string().into();
    let r = run(&s, args);
    let line = failed_cleanly(&r, &mnt);
    assert_mentions(&line, &["refused"], &[]);
}

#[test]
fn refused_port_in_the_foreground() {
    let s = Sshd::start();
    let mnt = s.mountpoint();
    let mut args = s.mount_args("", &mnt, &[]);
    args[3] = port_with_nothing_listening().to_string().into();
    args.push("-f".into());
    let r = run(&s, args);
    let line = failed_cleanly(&r, &mnt);
    assert_mentions(&line, &["refused"], &[]);
}

#[test]
fn unknown_host_name() {
    let s = Sshd::start();
    let mnt = s.mountpoint();
    let mut args = s.mount_args("", &mnt, &[]);
    args[0] = "root@host.invalid:".into();
    let r = run(&s, args);
    let line = failed_cleanly(&r, &mnt);
    assert_mentions(
        &line,
        &["host.invalid"],
        &[
            "not known",
            "resolve",
            "lookup",
            "no address",
            "unknown host",
        ],
    );
}

#[test]
fn connect_timeout_on_a_silent_server() {
    let s = Sshd::start();
    // Accepts TCP connections but never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mnt = s.mountpoint();
    let mut args = s.mount_args("", &mnt, &["ConnectTimeout=2"]);
    args[3] = port.to_string().into();
    let r = run(&s, args);
    let line = failed_cleanly(&r, &mnt);
    assert_mentions(&line, &[], &["timed out", "timeout", "time out"]);
    assert!(
        r.elapsed < Duration::from_secs(20),
        "took {:?} with ConnectTimeout=2",
        r.elapsed
    );
    drop(silent);
}

#[test]
fn wrong_identity_fails_authentication() {
    let s = Sshd::start();
    let other = s.local("other_key");
    keygen(&other);
    let mnt = s.mountpoint();
    let args = s.mount_args_with("", &mnt, "IdentityFile", &other);
    let r = run(&s, args);
    let line = failed_cleanly(&r, &mnt);
    assert_mentions(
        &line,
        &[],
        &["authenticat", "permission denied", "auth failed"],
    );
    assert!(!line.contains("host key"), "{line}");
}

#[test]
fn missing_identity_file_is_named() {
    let s = Sshd::start();
    let mnt = s.mountpoint();
    let missing = s.local("no_such_key");
    let args = s.mount_args_with("", &mnt, "IdentityFile", &missing);
    let r = run(&s, args);
    let line = failed_cleanly(&r, &mnt);
    assert_mentions(&line, &["no_such_key"], &[]);
}

#[test]
fn unknown_host_key_with_strict_checking() {
    let s = Sshd::start();
    let empty = s.local("known_hosts_empty");
    fs::write(&empty, "").unwrap();
    let mnt = s.mountpoint();
    let args = s.mount_args_with("", &mnt, "UserKnownHostsFile", &empty);
    let r = run(&s, args);
    let line = failed_cleanly(&r, &mnt);
    assert_mentions(&line, &["host key", "127.0.0.1"], &[]);
    // A way to trust it: accept-new, ssh-keyscan, or connecting once with ssh.
    assert_mentions(
        &line,
        &[],
        &["accept-new", "ssh-keyscan", "known_hosts", "ssh "],
    );
    // And the key itself, so that it can be checked out of band.
    assert_mentions(&line, &[], &["sha256:", "ed25519"]);
    assert!(
        !line.contains("changed"),
        "an unknown key is not a changed key: {line}"
    );
    assert_eq!(
        fs::read_to_string(&empty).unwrap(),
        "",
        "the key was recorded"
    );
}

#[test]
fn unknown_host_key_in_batch_mode_without_strict_option() {
    // ssh's default (ask) with BatchMode=yes and no terminal: refuse.
    let s = Sshd::start();
    let empty = s.local("known_hosts_empty");
    fs::write(&empty, "").unwrap();
    let mnt = s.mountpoint();
    let mut args = s.mount_args("", &mnt, &[]);
    args[5] = format!(
        "IdentityFile={},UserKnownHostsFile={},BatchMode=yes",
        s.client_key.display(),
        empty.display()
    )
    .into();
    let r = run(&s, args);
    let line = failed_cleanly(&r, &mnt);
    assert_mentions(&line, &["host key"], &[]);
    assert_eq!(fs::read_to_string(&empty).unwrap(), "");
}

#[test]
fn changed_host_key_names_the_file_and_line() {
    let s = Sshd::start();
    let other = s.local("other_host_key");
    let other_pub = keygen(&other);
    let kh = s.local("known_hosts_changed");
    fs::write(
        &kh,
        format!("# a comment line\n[127.0.0.1]:{} {other_pub}\n", s.port),
    )
    .unwrap();
    let mnt = s.mountpoint();
    for policy in ["yes", "accept-new", "no"] {
        let mut args = s.mount_args("", &mnt, &[]);
        args[5] = format!(
            "IdentityFile={},UserKnownHostsFile={},StrictHostKeyChecking={policy},BatchMode=yes",
            s.client_key.display(),
            kh.display()
        )
        .into();
        let r = run(&s, args);
        let line = failed_cleanly(&r, &mnt);
        assert_mentions(&line, &["changed", &format!("{}:2", kh.display())], &[]);
    }
}

#[test]
fn unknown_option_is_named() {
    let s = Sshd::start();
    let mnt = s.mountpoint();
    let r = run(&s, s.mount_args("", &mnt, &["bogus"]));
    let line = failed_cleanly(&r, &mnt);
    assert_mentions(&line, &["unknown", "option", "bogus"], &[]);

    let r = run(&s, s.mount_args("", &mnt, &["frobnicate=3"]));
    let line = failed_cleanly(&r, &mnt);
    assert_mentions(&line, &["unknown", "frobnicate"], &[]);
}

#[test]
fn missing_positionals() {
    let s = Sshd::start();
    // Nothing at all.
    let r = run(&s, vec![]);
    let status = r.status.expect("still running with no arguments");
    assert!(
        status.code().is_some_and(|c| c != 0),
        "{status}: {}",
        r.stderr
    );
    let err = r.stderr.to_lowercase();
    assert!(
        err.contains("usage") || err.contains("required") || err.contains("missing"),
        "no usage hint: {}",
        r.stderr
    );
    // A source but no mountpoint.
    let r = run(&s, vec![s.target("").into()]);
    let status = r.status.expect("still running with one positional");
    assert!(
        status.code().is_some_and(|c| c != 0),
        "{status}: {}",
        r.stderr
    );
    assert!(
        r.stderr.to_lowercase().contains("mountpoint"),
        "the error does not say the mountpoint is missing: {}",
        r.stderr
    );
    // A source without a colon is not a remote.
    let mnt = s.mountpoint();
    let mut args = s.mount_args("", &mnt, &[]);
    args[0] = "just-a-host-no-colon".into();
    let r = run(&s, args);
    let status = r.status.expect("still running");
    assert!(
        status.code().is_some_and(|c| c != 0),
        "{status}: {}",
        r.stderr
    );
    assert!(!is_mounted(&mnt));
}

#[test]
fn help_and_version_exit_0() {
    let s = Sshd::start();
    let r = run(&s, vec!["-h".into()]);
    assert!(
        r.status.is_some_and(|s| s.success()),
        "{:?} {}",
        r.status,
        r.stderr
    );
    let help = r.stdout.to_lowercase();
    assert!(help.contains("usage"), "{}", r.stdout);
    assert!(help.contains("mountpoint"), "{}", r.stdout);
    let r = run(&s, vec!["-V".into()]);
    assert!(
        r.status.is_some_and(|s| s.success()),
        "{:?} {}",
        r.status,
        r.stderr
    );
    assert!(
        r.stdout.contains(env!("CARGO_PKG_VERSION")),
        "-V does not print the version: {}",
        r.stdout
    );
}

#[test]
fn mountpoint_that_is_already_mounted() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    fs::write(s.remote("w/f"), "first").unwrap();
    let m = Mount::new(&s, "w", &[]);
    let r = run(&s, s.mount_args("w", &m.mnt, &[]));
    let line = r.one_line_error();
    assert_mentions(&line, &["already"], &[]);
    // The first mount still works and is still the only one there.
    assert_eq!(fs::read_to_string(m.path("f")).unwrap(), "first");
    assert_eq!(
        mountinfo()
            .iter()
            .filter(|i| i.mount_point == m.mnt)
            .count(),
        1,
        "a second mount was stacked on the first"
    );
}
