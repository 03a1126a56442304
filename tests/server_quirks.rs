//! Servers that behave unlike OpenSSH's defaults, played by a real sshd behind a proxy that
//! misbehaves on purpose: one connection per user.

mod support;

use std::fs;
use std::time::Duration;

use support::proxy::Proxy;
use support::*;

#[test]
fn a_server_allowing_one_connection_per_user_mounts_and_serves_fully() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let big = random_bytes(24 << 20, 11);
    fs::write(s.remote("w/big"), &big).unwrap();
    let proxy = Proxy::start(s.port);
    proxy.limit(1);
    let m = Mount::via_port(&s, proxy.port(), "w", &["debug"]);
    // A long sequential read would take a second handle on another member: there is none.
    assert_eq!(fs::read(m.path("big")).unwrap(), big);
    fs::write(m.path("new"), b"written").unwrap();
    assert_eq!(fs::read(s.remote("w/new")).unwrap(), b"written");
    assert_eq!(fs::read_dir(m.path("")).unwrap().count(), 2);
    assert!(proxy.refused() >= 1, "the pool tried more connections");
    assert_eq!(proxy.live(), 1);
    let said = m.stderr().matches("running with fewer connections").count();
    assert_eq!(said, 1, "said once:\n{}", m.stderr());
    drop(m);
    assert!(wait_until(Duration::from_secs(10), || proxy.live() == 0));
}

#[test]
fn tar_x_on_a_server_refusing_setstat_keeps_every_byte_and_never_fails_close() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let src = s.local("src");
    fs::create_dir_all(src.join("d")).unwrap();
    for i in 0..5 {
        fs::write(src.join(format!("d/f{i}")), random_bytes(70_000, i)).unwrap();
    }
    let tarball = s.local("t.tar");
    sh(
        &s.local(""),
        "tar",
        &[
            "cf",
            tarball.to_str().unwrap(),
            "-C",
            src.to_str().unwrap(),
            "d",
        ],
    );
    // Refuses mode and time changes, as servers over object stores and attribute policies.
    let server = s.sftp_server_script("no-setstat", "", "", "-P setstat,fsetstat,lsetstat");
    for (opts, ok) in [
        (vec![server.as_str()], false),
        (vec![server.as_str(), "attr_refusals=ignore"], true),
    ] {
        let m = Mount::new(&s, "w", &opts);
        let out = std::process::Command::new("tar")
            .args(["xf", tarball.to_str().unwrap(), "-C"])
            .arg(m.path(""))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("Cannot close"), "{opts:?}: {err}");
        assert_eq!(out.status.success(), ok, "{opts:?}: {err}");
        for i in 0..5 {
            let name = format!("w/d/f{i}");
            assert_eq!(
                fs::read(s.remote(&name)).unwrap(),
                random_bytes(70_000, i),
                "{name}"
            );
        }
        drop(m);
        fs::remove_dir_all(s.remote("w/d")).unwrap();
    }
}
