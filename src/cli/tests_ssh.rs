//! The ssh_config-style options (`HostName`, `ProxyJump`, `Ciphers`...) and sshfs's other
//! transports (`ssh_command`, `sftp_server`, `directport`, `passive`).

use std::path::PathBuf;

use super::*;
use crate::config::{Proxy, TransportKind};

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

fn with_o(opts: &str) -> MountConfig {
    mount(&["alias:dir", "/mnt", "-o", opts])
}

#[test]
fn host_alias_and_host_name() {
    let c = mount(&["alias:dir", "/mnt"]);
    assert_eq!(
        (c.ssh.host.as_str(), c.ssh.host_alias.as_str()),
        ("alias", "alias")
    );
    assert!(!c.ssh_explicit.host);
    let c = with_o("HostName=10.1.2.3");
    assert_eq!(c.ssh.host, "10.1.2.3");
    assert_eq!(c.ssh.host_alias, "alias");
    assert!(c.ssh_explicit.host);
    assert!(err(&["h:", "/m", "-o", "HostName=-oProxyCommand=x"]).contains("HostName"));
    let c = with_o("HostKeyAlias=k,IdentitiesOnly=yes");
    assert_eq!(c.ssh.host_key_alias.as_deref(), Some("k"));
    assert!(c.ssh.identities_only && c.ssh_explicit.identities_only);
}

#[test]
fn proxies() {
    let c = with_o("ProxyJump=bob@j1:2222,j2,ro");
    assert_eq!(
        c.ssh.proxy,
        Some(Proxy::Jump(vec!["bob@j1:2222".into(), "j2".into()]))
    );
    assert!(
        c.fs.read_only,
        "an option after the list is still an option"
    );
    assert!(c.ssh_explicit.proxy);
    let c = mount(&["h:", "/m", "-o", "ProxyJump=a\\,b"]);
    assert_eq!(c.ssh.proxy, Some(Proxy::Jump(vec!["a".into(), "b".into()])));
    assert_eq!(with_o("ProxyJump=none").ssh.proxy, None);
    assert!(with_o("ProxyJump=none").ssh_explicit.proxy);
    assert!(err(&["h:", "/m", "-o", "ProxyJump=-x"]).contains("cannot start with '-'"));
    let c = mount(&["h:", "/m", "-o", "ProxyCommand=nc %h %p"]);
    assert_eq!(c.ssh.proxy, Some(Proxy::Command("nc %h %p".into())));
    assert_eq!(with_o("proxycommand=none").ssh.proxy, None);
}

#[test]
fn algorithms() {
    let c = with_o("Ciphers=aes128-ctr,aes256-gcm@openssh.com,Compression=yes");
    assert_eq!(
        c.ssh.ciphers,
        Some(vec!["aes128-ctr".into(), "aes256-gcm@openssh.com".into()])
    );
    assert!(c.ssh.compression && c.ssh_explicit.compression);
    let c = with_o("MACs=+hmac-sha1,KexAlgorithms=curve25519-sha256");
    assert_eq!(c.ssh.macs.as_ref().unwrap().last().unwrap(), "hmac-sha1");
    assert_eq!(c.ssh.kex_algorithms, Some(vec!["curve25519-sha256".into()]));
    let e = err(&["h:", "/m", "-o", "Ciphers=aes128-ctr,blowfish-cbc"]);
    assert!(
        e.starts_with("-o Ciphers: unsupported cipher 'blowfish-cbc' (sftpfs supports: "),
        "{e}"
    );
    let e = err(&[
        "h:",
        "/m",
        "-o",
        "KexAlgorithms=sntrup761x25519-sha512@openssh.com",
    ]);
    assert!(e.contains("'sntrup761x25519-sha512@openssh.com'"), "{e}");
    let e = err(&["h:", "/m", "-o", "MACs=umac-64-etm@openssh.com"]);
    assert!(
        e.contains("unsupported MAC 'umac-64-etm@openssh.com'"),
        "{e}"
    );
    // -C is sshfs's (and ssh's) compression flag.
    let c = mount(&["h:", "/m", "-C"]);
    assert!(c.ssh.compression && c.ssh_explicit.compression);
    assert!(!mount(&["h:", "/m"]).ssh.compression);
}

#[test]
fn ssh_options_are_kept_for_a_system_ssh() {
    let c = with_o("IdentityFile=~/k,port=2222,BatchMode=yes,ProxyJump=a,b,ro");
    assert_eq!(
        c.ssh.command_line_options,
        [
            ("IdentityFile".to_string(), "~/k".to_string()),
            ("BatchMode".into(), "yes".into()),
            ("ProxyJump".into(), "a,b".into()),
        ]
    );
}

#[test]
fn transports() {
    assert_eq!(mount(&["h:", "/m"]).transport.kind(), TransportKind::Ssh);
    // `\\` in -o is one `\` for ssh_command, which escapes the space.
    let c = mount(&["h:", "/m", "-o", "ssh_command=ssh -i /k\\\\ y -o X=1"]);
    assert_eq!(
        c.transport.kind(),
        TransportKind::Command(vec![
            "ssh".into(),
            "-i".into(),
            "/k y".into(),
            "-o".into(),
            "X=1".into()
        ])
    );
    assert!(err(&["h:", "/m", "-o", "ssh_command= "]).contains("ssh_command"));
    let c = with_o("sftp_server=/usr/lib/openssh/sftp-server");
    assert_eq!(
        c.ssh.sftp_server.as_deref(),
        Some("/usr/lib/openssh/sftp-server")
    );
    assert_eq!(
        with_o("directport=7000").transport.kind(),
        TransportKind::Direct(7000)
    );
    assert!(err(&["h:", "/m", "-o", "directport=0"]).contains("directport"));
    // sshfs's precedence: passive, then directport, then ssh_command.
    assert_eq!(
        with_o("directport=7000,passive,ssh_command=ssh")
            .transport
            .kind(),
        TransportKind::Passive
    );
    assert_eq!(
        with_o("ssh_command=ssh,directport=7000").transport.kind(),
        TransportKind::Direct(7000)
    );
    // passive needs no host, as in sshfs; anything else does.
    let c = mount(&[":/srv", "/m", "-o", "passive"]);
    assert_eq!(c.fs.remote_dir, b"/srv");
    assert!(err(&[":/srv", "/m"]).contains("the host is empty"));
}
