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
