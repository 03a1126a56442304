use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

fn env() -> Env {
    Env {
        home: Some(PathBuf::from("/home/alice")),
        user: Some("alice".into()),
        ssh_auth_sock: Some(PathBuf::from("/run/agent.sock")),
        locale: None,
        state_home: None,
        root: false,
    }
}

fn try_parse(args: &[&str]) -> Result<Command, CliError> {
    parse(
        std::iter::once("sftpfs").chain(args.iter().copied()),
        &env(),
    )
}

fn mount(args: &[&str]) -> MountConfig {
    match try_parse(args) {
        Ok(Command::Mount(cfg)) => cfg,
        other => panic!("{args:?}: expected a mount, got {other:?}"),
    }
}

fn err(args: &[&str]) -> String {
    match try_parse(args) {
        Err(e) => e.to_string(),
        Ok(other) => panic!("{args:?}: expected an error, got {other:?}"),
    }
}

/// `host:dir /mnt` plus the given `-o` options.
fn with_o(opts: &str) -> MountConfig {
    mount(&["host:dir", "/mnt", "-o", opts])
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

#[test]
fn defaults() {
    let c = mount(&["example.com:", "/mnt/x"]);
    assert_eq!(c.source, "example.com:");
    assert_eq!(c.mountpoint, p("/mnt/x"));
    assert!(!c.foreground && !c.debug);
    let s = &c.ssh;
    assert_eq!(s.host, "example.com");
    assert_eq!(s.port, 22);
    assert_eq!(s.user, "alice");
    assert_eq!(
        s.identity_files,
        [
            p("/home/alice/.ssh/id_ed25519"),
            p("/home/alice/.ssh/id_ecdsa"),
            p("/home/alice/.ssh/id_rsa")
        ]
    );
    assert!(!s.identity_files_explicit);
    assert_eq!(
        s.user_known_hosts_files,
        [
            p("/home/alice/.ssh/known_hosts"),
            p("/home/alice/.ssh/known_hosts2")
        ]
    );
    assert_eq!(
        s.global_known_hosts_files,
        [
            p("/etc/ssh/ssh_known_hosts"),
            p("/etc/ssh/ssh_known_hosts2")
        ]
    );
    assert_eq!(s.strict_host_key_checking, StrictHostKeyChecking::Ask);
    assert!(!s.batch_mode && !s.password_stdin);
    assert_eq!(s.agent_socket, Some(p("/run/agent.sock")));
    assert_eq!(s.connect_timeout, Duration::from_secs(10));
    assert_eq!(s.server_alive_interval, Duration::from_secs(15));
    assert_eq!(s.server_alive_count_max, 3);
    assert_eq!(s.config_file, None);
    assert_eq!(c.ssh_explicit, SshExplicit::default());
    let f = &c.fs;
    assert_eq!(f.remote_dir, b"");
    assert!(!f.read_only && !f.allow_other && !f.allow_root && !f.default_permissions);
    assert_eq!((f.uid, f.gid, f.umask), (None, None, None));
    assert_eq!(f.request_timeout, Duration::from_secs(30));
    assert_eq!(f.entry_timeout, Duration::from_secs(1));
    assert_eq!(f.attr_timeout, Duration::from_secs(1));
    assert!(f.reconnect);
}

#[test]
fn defaults_without_home_or_agent() {
    let env = Env {
        home: None,
        user: Some("bob".into()),
        ssh_auth_sock: None,
        locale: None,
        state_home: None,
        root: false,
    };
    let Ok(Command::Mount(c)) = parse(["sftpfs", "h:", "/m"], &env) else {
        panic!()
    };
    assert!(c.ssh.identity_files.is_empty());
    assert!(c.ssh.user_known_hosts_files.is_empty());
    assert_eq!(c.ssh.agent_socket, None);
    assert_eq!(c.ssh.user, "bob");
    let e = parse(["sftpfs", "h:", "/m", "-o", "IdentityFile=~/k"], &env).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot expand '~' in -o IdentityFile: HOME is unset; give an absolute path"
    );
}

#[test]
fn no_local_user() {
    let env = Env::default();
    let e = parse(["sftpfs", "h:", "/m"], &env).unwrap_err();
    assert_eq!(e, CliError::NoUser);
    let Ok(Command::Mount(c)) = parse(["sftpfs", "bob@h:", "/m"], &env) else {
        panic!()
    };
    assert_eq!(c.ssh.user, "bob");
    let Ok(Command::Mount(c)) = parse(["sftpfs", "h:", "/m", "-oUser=carol"], &env) else {
        panic!()
    };
    assert_eq!(c.ssh.user, "carol");
}

#[test]
fn positional_order_variants() {
    for args in [
        &["-o", "ro", "-p", "2222", "u@h:/d", "/mnt"][..],
        &["u@h:/d", "-o", "ro", "/mnt", "-p", "2222"],
        &["u@h:/d", "/mnt", "-o", "ro", "-p", "2222"],
        &["-p2222", "u@h:/d", "-oro", "/mnt"],
        &["u@h:/d", "/mnt", "-p", "2222", "-o", "ro"],
        &["-o", "ro", "-p", "2222", "--", "u@h:/d", "/mnt"],
    ] {
        let c = mount(args);
        assert_eq!(
            (c.ssh.user.as_str(), c.ssh.host.as_str()),
            ("u", "h"),
            "{args:?}"
        );
        assert_eq!(c.fs.remote_dir, b"/d", "{args:?}");
        assert_eq!(c.mountpoint, p("/mnt"), "{args:?}");
        assert!(c.fs.read_only, "{args:?}");
        assert_eq!(c.ssh.port, 2222, "{args:?}");
    }
}

#[test]
fn missing_and_extra_positionals() {
    assert_eq!(
        err(&[]),
        "missing the SOURCE and the MOUNTPOINT; usage: sftpfs [user@]host:[dir] MOUNTPOINT [options]"
    );
    assert_eq!(
        err(&["-o", "ro"]),
        "missing the SOURCE and the MOUNTPOINT; usage: sftpfs [user@]host:[dir] MOUNTPOINT [options]"
    );
    assert_eq!(
        err(&["h:/d"]),
        "missing the MOUNTPOINT; usage: sftpfs [user@]host:[dir] MOUNTPOINT [options]"
    );
    assert_eq!(
        err(&["h:/d", "/m", "extra"]),
        "unexpected argument 'extra' found; see 'sftpfs --help'"
    );
    assert_eq!(err(&["h:/d", ""]), "the mountpoint must not be empty");
}

#[test]
fn unknown_flags_and_missing_flag_values() {
    assert_eq!(
        err(&["h:", "/m", "-x"]),
        "unexpected argument '-x' found; see 'sftpfs --help'"
    );
    assert_eq!(
        err(&["h:", "/m", "--foo"]),
        "unexpected argument '--foo' found; see 'sftpfs --help'"
    );
    let e = err(&["h:", "/m", "-o"]);
    assert!(
        e.contains("'-o <OPT[=VAL],...>'") && !e.contains('\n'),
        "{e}"
    );
    let e = err(&["h:", "/m", "-p"]);
    assert!(e.contains("-p <PORT>") && !e.contains('\n'), "{e}");
}

#[test]
fn source_forms() {
    let c = mount(&["bob@example.com:/srv/data", "/m"]);
    assert_eq!(
        (c.ssh.user.as_str(), c.ssh.host.as_str()),
        ("bob", "example.com")
    );
    assert_eq!(c.fs.remote_dir, b"/srv/data");
    assert!(c.ssh_explicit.user);

    // default user, relative dir, empty dir
    let c = mount(&["example.com:projects/x", "/m"]);
    assert_eq!(c.ssh.user, "alice");
    assert!(!c.ssh_explicit.user);
    assert_eq!(c.fs.remote_dir, b"projects/x");
    assert_eq!(mount(&["h:", "/m"]).fs.remote_dir, b"");

    // the first ':' splits; later ':' and '@' belong to the dir
    let c = mount(&["u@h:/a:b@c", "/m"]);
    assert_eq!((c.ssh.user.as_str(), c.ssh.host.as_str()), ("u", "h"));
    assert_eq!(c.fs.remote_dir, b"/a:b@c");
    // the last '@' before the host ends the user (user@domain logins)
    let c = mount(&["alice@corp.example@h:", "/m"]);
    assert_eq!(
        (c.ssh.user.as_str(), c.ssh.host.as_str()),
        ("alice@corp.example", "h")
    );
}

#[test]
fn ipv6_sources() {
    let c = mount(&["[::1]:/srv", "/m"]);
    assert_eq!(c.ssh.host, "::1");
    assert_eq!(c.fs.remote_dir, b"/srv");
    assert_eq!(c.source, "[::1]:/srv");
    let c = mount(&["bob@[fe80::1%eth0]:", "/m"]);
    assert_eq!(
        (c.ssh.user.as_str(), c.ssh.host.as_str()),
        ("bob", "fe80::1%eth0")
    );
    assert_eq!(c.fs.remote_dir, b"");
    let c = mount(&["[2001:db8::2]:rel/dir", "/m", "-p", "2200"]);
    assert_eq!((c.ssh.host.as_str(), c.ssh.port), ("2001:db8::2", 2200));
    assert_eq!(c.fs.remote_dir, b"rel/dir");

    assert_eq!(
        err(&["[::1:/srv", "/m"]),
        "source must be [user@]host:[dir], got '[::1:/srv'"
    );
    assert_eq!(
        err(&["[::1]x:/srv", "/m"]),
        "invalid hostname '[::1]x' in '[::1]x:/srv': '[' without ']' before ':'"
    );
    assert_eq!(
        err(&["[]:/srv", "/m"]),
        "invalid hostname '[]' in '[]:/srv': the host is empty"
    );
}

#[test]
fn bad_sources() {
    assert_eq!(
        err(&["example.com", "/m"]),
        "source must be [user@]host:[dir], got 'example.com'"
    );
    assert_eq!(
        err(&["/local/dir", "/m"]),
        "source must be [user@]host:[dir], got '/local/dir'"
    );
    assert_eq!(
        err(&[":/srv", "/m"]),
        "invalid hostname '' in ':/srv': the host is empty"
    );
    assert_eq!(
        err(&["u@:/srv", "/m"]),
        "invalid hostname '' in 'u@:/srv': the host is empty"
    );
    // after `--` a leading '-' reaches the source: it is a bad host, never an option
    assert_eq!(
        err(&["--", "-oProxyCommand=x:dir", "/m"]),
        "invalid hostname '-oProxyCommand=x' in '-oProxyCommand=x:dir': a host cannot start with '-'"
    );
    // without `--`, clap reads it as the option `-o ProxyCommand=x:dir`, never as a host
    assert_eq!(
        err(&["-oProxyCommand=x:dir", "/m"]),
        "missing the MOUNTPOINT; usage: sftpfs [user@]host:[dir] MOUNTPOINT [options]"
    );
    assert_eq!(
        err(&["u@-h:dir", "/m"]),
        "invalid hostname '-h' in 'u@-h:dir': a host cannot start with '-'"
    );
    for bad in [
        "a b:/d",
        "a\tb:/d",
        "a\u{7}:/d",
        "a/b:/d",
        "a;b:/d",
        "a$(x):/d",
        "a`x`:/d",
    ] {
        let e = err(&[bad, "/m"]);
        assert!(e.starts_with("invalid hostname "), "{bad:?}: {e}");
    }
    assert!(err(&["@h:/d", "/m"]).starts_with("invalid user name '' in '@h:/d'"));
    assert_eq!(
        err(&["-u@h:/d", "/m"]),
        "unexpected argument '-u' found; see 'sftpfs --help'"
    );
    assert!(err(&["--", "-u@h:/d", "/m"]).starts_with("invalid user name '-u' in '-u@h:/d'"));
    assert!(err(&["a|b@h:/d", "/m"]).starts_with("invalid user name 'a|b'"));
}

#[test]
fn non_utf8_dir_and_mountpoint_are_kept_as_bytes() {
    let src = OsString::from_vec(b"h:/srv/caf\xe9".to_vec());
    let mnt = OsString::from_vec(b"/mnt/\xff".to_vec());
    let args = [OsString::from("sftpfs"), src, mnt.clone()];
    let Ok(Command::Mount(c)) = parse(args, &env()) else {
        panic!()
    };
    assert_eq!(c.fs.remote_dir, b"/srv/caf\xe9");
    assert_eq!(c.mountpoint, PathBuf::from(mnt));
    assert_eq!(c.source, "h:/srv/caf\u{fffd}");
}

#[test]
fn ssh_options() {
    let c = with_o("port=2022");
    assert_eq!(c.ssh.port, 2022);
    assert!(c.ssh_explicit.port);
    assert_eq!(with_o("Port=2023").ssh.port, 2023);
    assert_eq!(with_o("PORT=2024").ssh.port, 2024);

    let c = with_o("User=bob");
    assert_eq!(c.ssh.user, "bob");
    assert!(c.ssh_explicit.user);
    assert_eq!(with_o("USER=bob").ssh.user, "bob");
    // user@ in the source wins over User=
    assert_eq!(
        mount(&["carol@h:", "/m", "-o", "User=bob"]).ssh.user,
        "carol"
    );
    // lower-case `user` (with or without a value) is mount(8)'s, ignored
    assert_eq!(with_o("user").ssh.user, "alice");
    assert_eq!(with_o("user=root").ssh.user, "alice");

    let c = with_o("IdentityFile=~/.ssh/work,identityfile=/etc/k");
    assert_eq!(
        c.ssh.identity_files,
        [p("/home/alice/.ssh/work"), p("/etc/k")]
    );
    assert!(c.ssh.identity_files_explicit);

    let c = with_o("UserKnownHostsFile=~/kh /tmp/kh2");
    assert_eq!(
        c.ssh.user_known_hosts_files,
        [p("/home/alice/kh"), p("/tmp/kh2")]
    );
    assert!(c.ssh_explicit.user_known_hosts_files);
    assert!(with_o("UserKnownHostsFile=none")
        .ssh
        .user_known_hosts_files
        .is_empty());
    let c = with_o("GlobalKnownHostsFile=/g1");
    assert_eq!(c.ssh.global_known_hosts_files, [p("/g1")]);
    assert!(with_o("GlobalKnownHostsFile=none")
        .ssh
        .global_known_hosts_files
        .is_empty());

    use StrictHostKeyChecking as S;
    for (v, want) in [
        ("yes", S::Yes),
        ("accept-new", S::AcceptNew),
        ("no", S::No),
        ("off", S::No),
        ("ask", S::Ask),
        ("Accept-New", S::AcceptNew),
    ] {
        let c = with_o(&format!("StrictHostKeyChecking={v}"));
        assert_eq!(c.ssh.strict_host_key_checking, want, "{v}");
        assert!(c.ssh_explicit.strict_host_key_checking);
    }
    assert_eq!(
        with_o("stricthostkeychecking=yes")
            .ssh
            .strict_host_key_checking,
        S::Yes
    );

    assert!(with_o("BatchMode=yes").ssh.batch_mode);
    assert!(!with_o("BatchMode=yes,BatchMode=no").ssh.batch_mode);
    assert!(with_o("BatchMode=yes").ssh_explicit.batch_mode);
    assert!(with_o("password_stdin").ssh.password_stdin);

    let c = with_o("ConnectTimeout=5,ServerAliveInterval=0,ServerAliveCountMax=7");
    assert_eq!(c.ssh.connect_timeout, Duration::from_secs(5));
    assert_eq!(c.ssh.server_alive_interval, Duration::ZERO);
    assert_eq!(c.ssh.server_alive_count_max, 7);
    assert!(c.ssh_explicit.connect_timeout);
    assert!(c.ssh_explicit.server_alive_interval && c.ssh_explicit.server_alive_count_max);
    assert_eq!(
        with_o("ConnectTimeout=1m30s").ssh.connect_timeout,
        Duration::from_secs(90)
    );
    assert_eq!(
        with_o("ServerAliveInterval=2M").ssh.server_alive_interval,
        Duration::from_secs(120)
    );
}

#[test]
fn fs_options() {
    let c = with_o("ro,allow_other,allow_root,default_permissions,uid=1000,gid=100,umask=022");
    assert!(c.fs.read_only && c.fs.allow_other && c.fs.allow_root && c.fs.default_permissions);
    assert_eq!(
        (c.fs.uid, c.fs.gid, c.fs.umask),
        (Some(1000), Some(100), Some(0o22))
    );
    assert!(!with_o("ro,rw").fs.read_only);
    assert!(with_o("rw,ro").fs.read_only);
    assert_eq!(with_o("umask=0077").fs.umask, Some(0o77));

    let c = with_o("timeout=5,entry_timeout=0.5,attr_timeout=0");
    assert_eq!(c.fs.request_timeout, Duration::from_secs(5));
    assert_eq!(c.fs.entry_timeout, Duration::from_millis(500));
    assert_eq!(c.fs.attr_timeout, Duration::ZERO);
    assert_eq!(
        with_o("timeout=2.5").fs.request_timeout,
        Duration::from_millis(2500)
    );
    assert_eq!(
        with_o("entry_timeout=.25").fs.entry_timeout,
        Duration::from_millis(250)
    );

    assert!(with_o("reconnect").fs.reconnect);
    assert!(!with_o("noreconnect").fs.reconnect);
    assert!(with_o("noreconnect,reconnect").fs.reconnect);
}

#[test]
fn flags() {
    let c = mount(&["h:", "/m", "-f"]);
    assert!(c.foreground && !c.debug);
    let c = mount(&["h:", "/m", "-d"]);
    assert!(c.foreground && c.debug);
    let c = with_o("debug");
    assert!(c.foreground && c.debug);
    let c = mount(&["-f", "-f", "h:", "/m", "-d", "-d"]);
    assert!(c.foreground && c.debug);
    // -C and -s are accepted and change nothing
    let c = mount(&["-C", "-s", "h:", "/m"]);
    assert!(!c.foreground && !c.debug);
    let c = mount(&["-Cs", "h:", "/m"]);
    assert_eq!(c.ssh.port, 22);

    let c = mount(&["h:", "/m", "-F", "~/.ssh/other", "-F", "/etc/ssh/cfg"]);
    assert_eq!(c.ssh.config_file, Some(p("/etc/ssh/cfg")));
    let c = mount(&["h:", "/m", "-F", "~/.ssh/other"]);
    assert_eq!(c.ssh.config_file, Some(p("/home/alice/.ssh/other")));
    assert_eq!(
        mount(&["h:", "/m", "-Fnone"]).ssh.config_file,
        Some(p("none"))
    );
}

#[test]
fn option_lists_and_repeats() {
    // a,b=c lists, in one -o and across several; empty items are skipped
    let c = mount(&[
        "h:",
        "/m",
        "-o",
        "ro,uid=5,,gid=6",
        "-o",
        "allow_other",
        "-oport=23",
    ]);
    assert!(c.fs.read_only && c.fs.allow_other);
    assert_eq!((c.fs.uid, c.fs.gid, c.ssh.port), (Some(5), Some(6), 23));
    // the last value wins, across -o and -p, in command-line order
    assert_eq!(
        mount(&["h:", "/m", "-o", "uid=1,uid=2", "-o", "uid=3"])
            .fs
            .uid,
        Some(3)
    );
    assert_eq!(mount(&["-p", "1", "h:", "/m", "-o", "port=2"]).ssh.port, 2);
    assert_eq!(mount(&["-o", "port=2", "h:", "/m", "-p", "1"]).ssh.port, 1);
    assert_eq!(mount(&["-p", "1", "-p", "3", "h:", "/m"]).ssh.port, 3);
    assert_eq!(
        mount(&["-oPort=4", "-p5", "-oport=6", "h:", "/m"]).ssh.port,
        6
    );
    // IdentityFile accumulates, in order
    let c = mount(&[
        "h:",
        "/m",
        "-o",
        "IdentityFile=/a",
        "-oIdentityFile=/b,IdentityFile=/c",
    ]);
    assert_eq!(c.ssh.identity_files, [p("/a"), p("/b"), p("/c")]);
    // a backslash escapes a comma, as in sshfs
    let c = with_o(r"IdentityFile=/keys/a\,b,ro");
    assert_eq!(c.ssh.identity_files, [p("/keys/a,b")]);
    assert!(c.fs.read_only);
    // values may contain '='
    assert_eq!(with_o("IdentityFile=/k=v").ssh.identity_files, [p("/k=v")]);
}

#[test]
fn ignored_mount_options() {
    let c = with_o(
        "_netdev,noauto,auto,nofail,user,users,nouser,owner,group,defaults,\
         x-systemd.automount,x-systemd.requires=network-online.target,\
         x-systemd.idle-timeout=60,x-gvfs-show,x-gvfs-name=Srv,comment=hello,\
         dev,nodev,suid,nosuid,atime,noatime,relatime,sync,async,rw,exec",
    );
    let plain = mount(&["host:dir", "/mnt"]);
    assert_eq!(format!("{c:?}"), format!("{plain:?}"));
}

#[test]
fn fstab_style_invocation() {
    // what mount(8) runs for `u@h:/srv /mnt fuse.sftpfs _netdev,IdentityFile=...,ro 0 0`
    let c = mount(&[
        "u@h:/srv",
        "/mnt",
        "-o",
        "rw,nosuid,nodev,_netdev,x-systemd.automount,IdentityFile=/root/.ssh/id_ed25519,allow_other",
    ]);
    assert_eq!(c.ssh.identity_files, [p("/root/.ssh/id_ed25519")]);
    assert!(c.fs.allow_other && !c.fs.read_only && !c.foreground);
}

#[test]
fn unknown_options() {
    assert_eq!(
        err(&["h:", "/m", "-o", "foo"]),
        "unknown option 'foo' in -o; see 'sftpfs --help'"
    );
    assert_eq!(
        err(&["h:", "/m", "-o", "ro,bar=1"]),
        "unknown option 'bar' in -o; see 'sftpfs --help'"
    );
    // fuse/mount options match exactly
    assert_eq!(
        err(&["h:", "/m", "-o", "RO"]),
        "unknown option 'RO' in -o; see 'sftpfs --help'"
    );
    assert_eq!(
        err(&["h:", "/m", "-o", "x-systemdfoo"]),
        "unknown option 'x-systemdfoo' in -o; see 'sftpfs --help'"
    );
}

#[test]
fn bad_values() {
    let cases = [
        ("port=abc", "invalid value 'abc' for -o port (expected a number 1-65535)"),
        ("port=0", "invalid value '0' for -o port (expected a number 1-65535)"),
        ("Port=65536", "invalid value '65536' for -o Port (expected a number 1-65535)"),
        ("port=-1", "invalid value '-1' for -o port (expected a number 1-65535)"),
        ("port=", "invalid value '' for -o port (expected a number 1-65535)"),
        ("port", "-o port needs a value: -o port=N"),
        ("IdentityFile", "-o IdentityFile needs a value: -o IdentityFile=PATH"),
        ("IdentityFile=", "invalid value '' for -o IdentityFile (expected a file path)"),
        ("ro=1", "-o ro takes no value, got 'ro=1'"),
        ("debug=yes", "-o debug takes no value, got 'debug=yes'"),
        (
            "StrictHostKeyChecking=maybe",
            "invalid value 'maybe' for -o StrictHostKeyChecking (expected yes, accept-new, no, off or ask)",
        ),
        ("BatchMode=1", "invalid value '1' for -o BatchMode (expected yes or no)"),
        (
            "ConnectTimeout=0",
            "invalid value '0' for -o ConnectTimeout (expected whole seconds >= 1, e.g. 10 or 1m)",
        ),
        (
            "ConnectTimeout=1.5",
            "invalid value '1.5' for -o ConnectTimeout (expected whole seconds >= 1, e.g. 10 or 1m)",
        ),
        (
            "ServerAliveInterval=x",
            "invalid value 'x' for -o ServerAliveInterval (expected whole seconds, e.g. 15 or 1m; 0 = off)",
        ),
        (
            "ServerAliveCountMax=0",
            "invalid value '0' for -o ServerAliveCountMax (expected a whole number >= 1)",
        ),
        ("uid=-1", "invalid value '-1' for -o uid (expected a numeric user id)"),
        ("uid=4294967296", "invalid value '4294967296' for -o uid (expected a numeric user id)"),
        ("gid=wheel", "invalid value 'wheel' for -o gid (expected a numeric group id)"),
        ("umask=999", "invalid value '999' for -o umask (expected an octal mask such as 022)"),
        ("umask=77777", "invalid value '77777' for -o umask (expected an octal mask such as 022)"),
        ("timeout=0", "invalid value '0' for -o timeout (expected seconds > 0, e.g. 30 or 2.5)"),
        ("timeout=inf", "invalid value 'inf' for -o timeout (expected seconds > 0, e.g. 30 or 2.5)"),
        ("entry_timeout=-1", "invalid value '-1' for -o entry_timeout (expected seconds, e.g. 1 or 0.5)"),
        ("attr_timeout=1e3", "invalid value '1e3' for -o attr_timeout (expected seconds, e.g. 1 or 0.5)"),
        ("attr_timeout=1..2", "invalid value '1..2' for -o attr_timeout (expected seconds, e.g. 1 or 0.5)"),
        ("User=-oFoo", "invalid value '-oFoo' for -o User (expected a user name)"),
        (
            "UserKnownHostsFile= ",
            "invalid value ' ' for -o UserKnownHostsFile (expected paths separated by spaces, or none)",
        ),
    ];
    for (opt, want) in cases {
        assert_eq!(err(&["h:", "/m", "-o", opt]), want, "{opt}");
    }
    assert_eq!(
        err(&["h:", "/m", "-p", "abc"]),
        "invalid value 'abc' for -p (expected a number 1-65535)"
    );
    assert_eq!(
        err(&["h:", "/m", "-p", "70000"]),
        "invalid value '70000' for -p (expected a number 1-65535)"
    );
}

#[test]
fn errors_are_one_line_without_prefix() {
    for args in [
        &[][..],
        &["h:", "/m", "-x"],
        &["h:", "/m", "-o"],
        &["h", "/m"],
        &["h:", "/m", "-o", "nope"],
        &["h:", "/m", "a", "b"],
    ] {
        let e = err(args);
        assert!(
            !e.contains('\n') && !e.starts_with("sftpfs:") && !e.starts_with("error"),
            "{e}"
        );
    }
}

#[test]
fn help_and_version() {
    for flag in ["-h", "--help"] {
        let Ok(Command::Help(text)) = try_parse(&[flag]) else {
            panic!("{flag}")
        };
        assert!(
            text.starts_with("Usage: sftpfs [user@]host:[dir] MOUNTPOINT [options]\n"),
            "{text}"
        );
        for needle in [
            "-p <PORT>",
            "-o <OPT[=VAL],...>",
            "-F <FILE>",
            "-f",
            "-d",
            "-V, --version",
        ] {
            assert!(text.contains(needle), "{needle} not in help:\n{text}");
        }
        // every implemented option is in the help, one line each; the ignored and refused
        // ones are in the man page
        for spec in option_table().iter().filter(|o| o.is_implemented()) {
            assert!(text.contains(spec.name), "{} not in help", spec.name);
        }
        assert!(text.contains("man sftpfs"));
        assert!(text.contains("  IdentityFile=PATH "));
        assert!(text.contains("[default: 22]"));
    }
    // help wins over missing or bad positionals
    assert!(matches!(try_parse(&["h:", "-h"]), Ok(Command::Help(_))));
    let Ok(Command::Version(v)) = try_parse(&["-V"]) else {
        panic!()
    };
    assert_eq!(v, format!("sftpfs {}\n", env!("CARGO_PKG_VERSION")));
    assert!(matches!(try_parse(&["--version"]), Ok(Command::Version(_))));
}

#[test]
fn option_table_is_consistent() {
    let mut seen = std::collections::HashSet::new();
    for spec in option_table() {
        assert!(seen.insert(spec.name), "{} twice", spec.name);
        assert!(!spec.help.is_empty() && !spec.help.contains('\n'));
        // every entry finds itself
        let probe = spec.name.trim_end_matches('*');
        let found = options::lookup(probe).map(|s| s.name);
        assert_eq!(found, Some(spec.name));
        if spec.is_implemented() {
            assert!(!spec.sets.is_empty(), "{}", spec.name);
        }
    }
}

#[test]
fn split_items_unescapes() {
    let items = options::split_items(std::ffi::OsStr::new(r"a,b=c\,d,,e\\f,"));
    assert_eq!(items, [b"a".to_vec(), b"b=c,d".to_vec(), b"e\\f".to_vec()]);
}

#[test]
fn env_from_process_finds_a_user() {
    // USER, LOGNAME or the password database: one of them names whoever runs the tests.
    assert!(Env::from_process().user.is_some());
}

#[test]
fn exec_and_noexec() {
    assert!(!with_o("ro").fs.noexec);
    assert!(with_o("noexec").fs.noexec);
    assert!(!with_o("noexec,exec").fs.noexec);
}

#[test]
fn idmap_options() {
    use crate::config::{IdMapMode, NoMap};
    let c = with_o("idmap=user");
    assert_eq!(c.fs.idmap, IdMapMode::User);
    assert_eq!(c.fs.nomap, NoMap::Error);
    let c = with_o("idmap=file,uidfile=~/uids,gidfile=/etc/g,nomap=ignore");
    assert_eq!(c.fs.idmap, IdMapMode::File);
    assert_eq!(c.fs.uidfile, Some(p("/home/alice/uids")));
    assert_eq!(c.fs.gidfile, Some(p("/etc/g")));
    assert_eq!(c.fs.nomap, NoMap::Ignore);
    assert_eq!(with_o("idmap=file,gidfile=/g").fs.uidfile, None);
    assert_eq!(with_o("idmap=none").fs.idmap, IdMapMode::None);
    assert_eq!(
        err(&["h:", "/m", "-o", "idmap=names"]),
        "invalid value 'names' for -o idmap (expected none, user or file)"
    );
    assert_eq!(
        err(&["h:", "/m", "-o", "nomap=maybe"]),
        "invalid value 'maybe' for -o nomap (expected ignore or error)"
    );
    assert_eq!(
        err(&["h:", "/m", "-o", "idmap=file"]),
        "-o idmap=file needs -o uidfile=PATH or -o gidfile=PATH"
    );
    assert_eq!(
        err(&["h:", "/m", "-o", "uidfile=/u"]),
        "-o uidfile= and -o gidfile= take effect only with -o idmap=file; add it"
    );
}

#[test]
fn sshfs_options_accepted_and_ignored() {
    let c = with_o(
        "sshfs_debug,sync_readdir,no_readahead,sync_read,delay_connect,no_check_root,\
         ssh_protocol=2,workaround=none:rename:norenamexdev:buflimit:nofstat,\
         kernel_cache,auto_cache,noauto_cache,ac_attr_timeout=5,\
         no_rofd_flush,noforget,remember=10,auto_unmount,max_read=65536,big_writes,\
         large_read,nonempty",
    );
    let plain = mount(&["host:dir", "/mnt"]);
    assert_eq!(format!("{c:?}"), format!("{plain:?}"));
    for opt in option_table() {
        if opt.value == ValueKind::Ignored {
            assert!(
                opt.help.starts_with("ignored"),
                "{}: {}",
                opt.name,
                opt.help
            );
        }
    }
}

#[test]
fn sshfs_options_refused_with_a_reason() {
    assert_eq!(
        err(&["h:", "/m", "-o", "ssh_protocol=1"]),
        "-o ssh_protocol=1 is not supported: SSH protocol 1 is obsolete and unsafe"
    );
    assert!(err(&["h:", "/m", "-o", "workaround=bogus"]).starts_with("invalid value 'bogus'"));
    assert!(err(&["h:", "/m", "-o", "workaround=all"]).starts_with("invalid value 'all'"));
}

#[test]
fn sshfs_options_that_were_refused_now_parse() {
    let c = mount(&[
        "h:",
        "/m",
        "-o",
        "direct_io,disable_hardlink,sshfs_sync,subdir=/a/b,rellinks,slave",
    ]);
    assert!(c.fs.direct_io && c.fs.disable_hardlink && c.fs.sync_writes && c.fs.rellinks);
    assert_eq!(c.fs.subdir, b"a/b");
    assert!(c.transport.passive);
    let c = mount(&[
        "h:",
        "/m",
        "-o",
        "dcache_clean_interval=7,cache_min_clean_interval=1.5",
    ]);
    assert_eq!(c.fs.dcache_clean_interval, Duration::from_secs(7));
    assert_eq!(c.fs.dcache_min_clean_interval, Duration::from_millis(1500));
    let c = mount(&["h:", "/m", "-o", "cache=no,cache_timeout=3"]);
    assert!(!c.fs.dir_cache);
    assert_eq!(c.fs.dcache_dir_timeout, Duration::from_secs(3));
    assert!(err(&["h:", "/m", "-o", "subdir=../x"]).contains("subdir"));
    for w in [
        "rename",
        "renamexdev",
        "truncate",
        "buflimit",
        "fstat",
        "createmode",
        "none",
    ] {
        mount(&["h:", "/m", "-o", &format!("workaround={w}")]);
    }
}

#[test]
fn name_charsets() {
    use crate::config::NameCharsetConfig;
    use crate::fs::names::charset::Charset;
    let utf8 = Charset::Whatwg(encoding_rs::UTF_8);
    let cs = |server, local| Some(NameCharsetConfig { server, local });
    // Off unless asked for.
    assert_eq!(with_o("ro").fs.name_charsets, None);
    assert!(!with_o("ro").fs.modules_subdir);
    // modules=iconv alone: UTF-8 on the server, the locale's (here none: UTF-8) locally.
    assert_eq!(with_o("modules=iconv").fs.name_charsets, cs(utf8, utf8));
    // from_code / to_code alone turn the module on, in iconv's spellings.
    let c = with_o("from_code=ISO-8859-1");
    assert_eq!(c.fs.name_charsets, cs(Charset::Latin1, utf8));
    let c = with_o("modules=iconv,from_code=latin1,to_code=UTF8");
    assert_eq!(c.fs.name_charsets, cs(Charset::Latin1, utf8));
    let c = with_o("to_code=EUC-JP");
    assert_eq!(
        c.fs.name_charsets,
        cs(utf8, Charset::Whatwg(encoding_rs::EUC_JP))
    );
    let c = with_o("from_code=CP1251,to_code=KOI8-R");
    assert_eq!(
        c.fs.name_charsets,
        cs(
            Charset::Whatwg(encoding_rs::WINDOWS_1251),
            Charset::Whatwg(encoding_rs::KOI8_R)
        )
    );
    // modules: both known ones, in any order; subdir is only recorded.
    for m in ["subdir:iconv", "iconv:subdir"] {
        let c = with_o(&format!("modules={m},subdir=s"));
        assert!(c.fs.modules_subdir, "{m}");
        assert_eq!(c.fs.name_charsets, cs(utf8, utf8), "{m}");
    }
    let c = with_o("modules=subdir,subdir=s");
    assert!(c.fs.modules_subdir);
    assert!(err(&["h:", "/m", "-o", "modules=subdir"]).contains("needs -o subdir=DIR"));
    assert!(with_o("async_writes").fs.async_writes);
    assert!(err(&["h:", "/m", "-o", "async_writes,sshfs_sync"]).contains("use one of them"));
    assert_eq!(c.fs.name_charsets, None);
    // The last modules= wins, as in libfuse.
    let c = with_o("modules=iconv:subdir,modules=subdir,subdir=s");
    assert_eq!(c.fs.name_charsets, None);
    // to_code's default: the codeset of LC_ALL / LC_CTYPE / LANG (as Env found it).
    let local = |locale: Option<&str>| {
        let env = Env {
            locale: locale.map(String::from),
            ..env()
        };
        match parse(["sftpfs", "h:", "/m", "-o", "modules=iconv"], &env) {
            Ok(Command::Mount(c)) => Ok(c.fs.name_charsets.unwrap().local),
            Err(e) => Err(e.to_string()),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(local(Some("en_US.ISO-8859-1")), Ok(Charset::Latin1));
    assert_eq!(
        local(Some("de_DE.iso885915@euro")),
        local(Some("x.ISO-8859-15"))
    );
    assert_eq!(
        local(Some("ja_JP.eucJP")),
        Ok(Charset::Whatwg(encoding_rs::EUC_JP))
    );
    assert_eq!(local(Some("en_US.UTF-8")), Ok(utf8));
    for plain in [
        None,
        Some("C"),
        Some("POSIX"),
        Some("C.UTF-8"),
        Some("en_US"),
    ] {
        assert_eq!(local(plain), Ok(utf8), "{plain:?}");
    }
    assert_eq!(
        local(Some("xx_XX.BOGUS-9")).unwrap_err(),
        "-o to_code: its default, the locale's character set 'BOGUS-9', is not one sftpfs can \
         use; give -o to_code=CHARSET"
    );
    let e = Env {
        locale: Some("xx_XX.BOGUS-9".into()),
        ..env()
    };
    assert!(
        parse(["sftpfs", "h:", "/m", "-o", "to_code=UTF-8"], &e).is_ok(),
        "an explicit to_code needs no locale"
    );
}

#[test]
fn name_charset_errors() {
    assert_eq!(
        err(&["h:", "/m", "-o", "from_code=UTF-16"]),
        "-o from_code=UTF-16 is not supported: file names need a character set in which '/' is \
         the byte 0x2F (not UTF-16, UTF-32 or ISO-2022)"
    );
    for bad in ["to_code=UTF-32", "from_code=ISO-2022-JP", "to_code=UCS-2"] {
        let e = err(&["h:", "/m", "-o", bad]);
        let name = bad.split('=').next().unwrap();
        assert!(
            e.starts_with(&format!("-o {bad} is not supported: ")),
            "{e}"
        );
        assert!(e.contains(name) && !e.contains('\n'), "{e}");
    }
    assert_eq!(
        err(&["h:", "/m", "-o", "from_code=bogus"]),
        "invalid value 'bogus' for -o from_code (expected a character set, e.g. UTF-8, \
         ISO-8859-1, EUC-JP, SHIFT_JIS, CP1251, KOI8-R)"
    );
    assert!(err(&["h:", "/m", "-o", "to_code="]).starts_with("invalid value '' for -o to_code"));
    assert_eq!(
        err(&["h:", "/m", "-o", "modules=bogus"]),
        "-o modules: unknown module 'bogus'; the known modules are iconv and subdir"
    );
    assert_eq!(
        err(&["h:", "/m", "-o", "modules=iconv:subdir:zip"]),
        "-o modules: unknown module 'zip'; the known modules are iconv and subdir"
    );
    assert!(err(&["h:", "/m", "-o", "modules="]).starts_with("invalid value '' for -o modules"));
    assert_eq!(
        err(&["h:", "/m", "-o", "modules"]),
        "-o modules needs a value: -o modules=M1[:M2...]"
    );
}

fn helper(args: &[&str]) -> Result<Command, CliError> {
    parse(
        std::iter::once("/sbin/mount.sftpfs").chain(args.iter().copied()),
        &env(),
    )
}

#[test]
fn mount_helper_command_line() {
    // what mount(8) runs for `u@h:/srv /mnt/srv sftpfs ro,port=2222,_netdev,user 0 0`
    let Ok(Command::Mount(c)) = helper(&[
        "u@h:/srv",
        "/mnt/srv",
        "-n",
        "-o",
        "ro,port=2222,IdentityFile=/root/k,_netdev,nofail,user,users",
    ]) else {
        panic!()
    };
    assert_eq!((c.ssh.user.as_str(), c.ssh.host.as_str()), ("u", "h"));
    assert_eq!(c.mountpoint, p("/mnt/srv"));
    assert_eq!(c.ssh.port, 2222);
    assert_eq!(c.ssh.identity_files, [p("/root/k")]);
    assert!(c.fs.read_only);
    // a helper goes to the background like a plain mount: -f is mount's "fake"
    assert!(!c.foreground);
    assert!(matches!(
        helper(&["h:", "/m", "-f", "-o", "ro"]),
        Ok(Command::Fake)
    ));
    // a fake mount still checks the options
    assert!(helper(&["h:", "/m", "-f", "-o", "bogus"]).is_err());
    // -s (sloppy): unknown options are dropped, known ones still checked
    let Ok(Command::Mount(c)) = helper(&["h:", "/m", "-s", "-o", "bogus,ro"]) else {
        panic!()
    };
    assert!(c.fs.read_only);
    assert!(helper(&["h:", "/m", "-s", "-o", "port=x"]).is_err());
    assert_eq!(
        helper(&["h:", "/m", "-o", "bogus"])
            .unwrap_err()
            .to_string(),
        "unknown option 'bogus' in -o; see 'sftpfs --help'"
    );
    assert!(helper(&["h:"])
        .unwrap_err()
        .to_string()
        .contains("usage: mount.sftpfs SOURCE MOUNTPOINT"));
    // the ordinary name still parses the ordinary way (-f is foreground)
    assert!(mount(&["h:", "/m", "-f"]).foreground);
}

#[test]
fn completions_for_three_shells() {
    for (shell, needle) in [
        ("bash", "_sftpfs()"),
        ("zsh", "#compdef sftpfs"),
        ("fish", "complete -c sftpfs"),
    ] {
        let Ok(Command::Completions(text)) = try_parse(&["--completions", shell]) else {
            panic!("{shell}")
        };
        assert!(text.contains(needle), "{shell}:\n{text}");
        assert!(text.contains("completions"), "{shell}");
    }
    assert!(err(&["--completions", "tcsh"]).contains("tcsh"));
    // a source named like the flag is still a source
    assert_eq!(mount(&["completions:", "/m"]).ssh.host, "completions");
}
