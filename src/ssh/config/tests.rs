use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::*;
use crate::config::StrictHostKeyChecking;

fn env() -> Env {
    Env {
        home: Some(PathBuf::from("/home/alice")),
        user: Some("alice".into()),
        ssh_auth_sock: None,
        locale: None,
        state_home: None,
        root: false,
    }
}

fn base(alias: &str) -> SshConfig {
    let mut c = crate::ssh::test_support::config(alias, 22);
    c.host_alias = alias.into();
    c.user = "alice".into();
    c.identity_files = vec!["/home/alice/.ssh/id_ed25519".into()];
    c.identity_files_explicit = false;
    c
}

fn parsed(text: &str, host: &str) -> HostSettings {
    let dir = crate::ssh::test_support::TempDir::new();
    let f = dir.path().join("config");
    std::fs::write(&f, text).unwrap();
    parse_for_host(&[f], host, Some(Path::new("/home/alice")))
}

#[test]
fn parser_first_value_wins_and_patterns_match() {
    let text = "# comment\n\
        Host web !web2 *.example\n\
        \tHostName 10.0.0.1\n\
        \tPort=2222\n\
        \tIdentityFile ~/.ssh/a\n\
        Host *\n\
        \tPort 22\n\
        \tIdentityFile \"/keys/b %r\"\n\
        \tUser = bob\n\
        \tProxyCommand nc %h %p\n\
        \tProxyJump nowhere\n\
        Match exec \"true\"\n\
        \tUser never\n";
    let s = parsed(text, "web");
    assert_eq!(s.first("hostname"), Some("10.0.0.1"));
    assert_eq!(s.first("port"), Some("2222"));
    assert_eq!(s.first("user"), Some("bob"));
    assert_eq!(s.all("identityfile"), ["~/.ssh/a", "/keys/b %r"]);
    assert_eq!(s.first("proxycommand"), Some("nc %h %p"));
    assert_eq!(s.first("proxyjump"), None);
    let s = parsed(text, "web2");
    assert_eq!(s.first("hostname"), None);
    assert_eq!(s.first("port"), Some("22"));
    let s = parsed(text, "A.EXAMPLE");
    assert_eq!(s.first("hostname"), Some("10.0.0.1"));
}

#[test]
fn parser_follows_includes() {
    let dir = crate::ssh::test_support::TempDir::new();
    let d = dir.path();
    std::fs::create_dir(d.join("conf.d")).unwrap();
    std::fs::write(d.join("conf.d/1.conf"), "Host x\n  Port 7\n").unwrap();
    std::fs::write(d.join("conf.d/2.conf"), "Host x\n  Port 8\n  User u\n").unwrap();
    let main = d.join("config");
    std::fs::write(&main, format!("Include {}/conf.d/*.conf\n", d.display())).unwrap();
    let s = parse_for_host(&[main], "x", None);
    assert_eq!(s.first("port"), Some("7"));
    assert_eq!(s.first("user"), Some("u"));
}

#[test]
fn apply_respects_the_command_line_and_expands_tokens() {
    let s = parsed(
        "Host alias\n HostName %h.lan\n User bob\n Port 2200\n \
         IdentityFile ~/.ssh/%r@%h\n UserKnownHostsFile ~/kh /k/%n\n \
         StrictHostKeyChecking accept-new\n ServerAliveInterval 1m\n ConnectTimeout 5\n \
         Ciphers aes128-ctr,not-a-cipher\n Compression yes\n IdentitiesOnly yes\n \
         HostKeyAlias keyname\n ProxyJump j1,carol@j2:23\n",
        "alias",
    );
    let mut c = base("alias");
    let explicit = SshExplicit {
        port: true,
        ..SshExplicit::default()
    };
    c.port = 2022;
    apply(&mut c, &explicit, &s, &env()).unwrap();
    assert_eq!(c.host, "alias.lan");
    assert_eq!(c.host_alias, "alias");
    assert_eq!(c.user, "bob");
    assert_eq!(c.port, 2022, "-p wins over Port");
    assert_eq!(
        c.identity_files,
        [PathBuf::from("/home/alice/.ssh/bob@alias.lan")]
    );
    assert!(!c.identity_files_explicit);
    assert_eq!(
        c.user_known_hosts_files,
        [PathBuf::from("/home/alice/kh"), PathBuf::from("/k/alias")]
    );
    assert_eq!(c.strict_host_key_checking, StrictHostKeyChecking::AcceptNew);
    assert_eq!(c.server_alive_interval, Duration::from_secs(60));
    assert_eq!(c.connect_timeout, Duration::from_secs(5));
    assert_eq!(c.ciphers, Some(vec!["aes128-ctr".to_string()]));
    assert!(c.compression && c.identities_only);
    assert_eq!(c.host_key_alias.as_deref(), Some("keyname"));
    assert_eq!(
        c.proxy,
        Some(Proxy::Jump(vec!["j1".into(), "carol@j2:23".into()]))
    );
}

#[test]
fn command_line_identity_files_come_first() {
    let dir = crate::ssh::test_support::TempDir::new();
    let k = dir.path().join("k");
    std::fs::write(&k, "").unwrap();
    let s = parsed(
        &format!(
            "Host *\n IdentityFile {}\n IdentityFile /missing\n",
            k.display()
        ),
        "h",
    );
    let mut c = base("h");
    c.identity_files = vec!["/cli/key".into()];
    c.identity_files_explicit = true;
    apply(&mut c, &SshExplicit::default(), &s, &env()).unwrap();
    assert_eq!(c.identity_files, [PathBuf::from("/cli/key"), k]);
}

#[test]
fn jump_specs() {
    assert_eq!(
        parse_jump_spec("bob@h:2222").unwrap(),
        (Some("bob".into()), "h".into(), Some(2222))
    );
    assert_eq!(
        parse_jump_spec("ssh://[::1]:22").unwrap(),
        (None, "::1".into(), Some(22))
    );
    assert_eq!(parse_jump_spec("h").unwrap(), (None, "h".into(), None));
    assert!(parse_jump_spec("-oProxyCommand=x").is_err());
    assert!(parse_jump_spec("h:0").is_err());
    assert!(parse_proxy_jump("a,,b").is_ok());
    assert_eq!(parse_proxy_jump("none").unwrap(), None);
}

#[test]
fn tokens() {
    assert_eq!(
        expand_tokens("%h:%p %% %x", &[('h', "host"), ('p', "22")]),
        "host:22 % %x"
    );
}

#[test]
fn ssh_g_is_used_when_installed_and_changes_only_what_the_config_says() {
    if Command::new("ssh").arg("-V").output().is_err() {
        return; // no ssh: the parser is what runs, tested above
    }
    let dir = crate::ssh::test_support::TempDir::new();
    let f = dir.path().join("config");
    std::fs::write(
        &f,
        "Host alias\n HostName 127.0.0.9\n Port 2201\n User carol\n \
         IdentityFile /k/%r\n ProxyJump j\nHost j\n HostName 127.0.0.10\n",
    )
    .unwrap();
    let lookup = Lookup::new(Some(f.clone()), env());
    let s = lookup.host("alias", None, None).unwrap();
    assert!(!s.raw);
    assert_eq!(s.first("hostname"), Some("127.0.0.9"));
    assert_eq!(s.first("port"), Some("2201"));
    assert_eq!(s.first("user"), Some("carol"));
    assert_eq!(s.all("identityfile"), ["/k/%r"]);
    assert_eq!(s.first("proxyjump"), Some("j"));
    // ssh's defaults are not reported as settings.
    assert_eq!(s.first("ciphers"), None);
    assert_eq!(s.first("serveraliveinterval"), None);
    let s = lookup.host("alias", Some(2300), Some("dave")).unwrap();
    assert_eq!(s.first("port"), None, "-p given: same as without config");

    // The whole resolution, with a jump host from the same file.
    let mut cfg = base("alias");
    apply(
        &mut cfg,
        &SshExplicit::default(),
        &lookup.host("alias", None, None).unwrap(),
        &env(),
    )
    .unwrap();
    resolve_jumps(&mut cfg, &base("alias"), &lookup, 0).unwrap();
    let hops = &cfg.jump_hosts;
    assert_eq!(hops.len(), 1);
    assert_eq!(hops[0].host, "127.0.0.10");
    assert_eq!(hops[0].host_alias, "j");
    assert_eq!(hops[0].port, 22);

    // `Host *` with a ProxyJump that does not exclude the jump host: a loop, named.
    std::fs::write(&f, "Host *\n ProxyJump j\nHost j\n HostName 127.0.0.10\n").unwrap();
    let mut cfg = base("j");
    let e = resolve_host(&mut cfg, &SshExplicit::default(), &lookup, 0).unwrap_err();
    assert!(e.starts_with("ProxyJump loop via j"), "{e}");

    // A broken config file: ssh's own message, one line.
    std::fs::write(&f, "Host x\n NoSuchOption 1\n").unwrap();
    let e = match lookup.host("x", None, None) {
        Err(e) => e,
        Ok(s) => panic!("expected an error, got {s:?}"),
    };
    assert!(e.contains("NoSuchOption") || e.contains("line 2"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}
