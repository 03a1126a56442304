//! Ownership translation, as sshfs's `idmap=user` and `idmap=file` (`uidfile=`, `gidfile=`,
//! `nomap=`): what owners a mount shows, and what `chown` through it sends to the server.

mod support;

use std::fs;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::Path;

use support::*;

fn owner(p: &Path) -> (u32, u32) {
    let m = fs::metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
    (m.uid(), m.gid())
}

fn server_file(path: &Path, uid: u32, gid: u32) {
    fs::write(path, "x").unwrap();
    chown(path, Some(uid), Some(gid)).unwrap();
}

#[test]
fn idmap_user_shows_the_remote_user_as_the_local_one() {
    // The server's user is nobody (65534:65534), who owns the remote home; the mounting
    // user is root (0:0).
    let s = Sshd::start_as("nobody");
    let (nobody, nogroup) = user_ids("nobody");
    server_file(&s.remote("mine.txt"), nobody, nogroup);
    server_file(&s.remote("other.txt"), 1234, 1234);

    let plain = Mount::new(&s, "", &[]);
    assert_eq!(owner(&plain.path("mine.txt")), (nobody, nogroup));
    drop(plain);

    let m = Mount::new(&s, "", &["idmap=user"]);
    let me = unsafe { (libc::getuid(), libc::getgid()) };
    assert_eq!(owner(&m.path("")), me, "the mount root (the remote home)");
    assert_eq!(owner(&m.path("mine.txt")), me);
    assert_eq!(owner(&m.path("other.txt")), (1234, 1234), "other ids pass");
    // A file made through the mount belongs to the remote user, and shows as ours.
    fs::write(m.path("made.txt"), "y").unwrap();
    assert_eq!(owner(&s.remote("made.txt")), (nobody, nogroup));
    assert_eq!(owner(&m.path("made.txt")), me);
    // chown to ourselves sends the remote user's ids (which nobody may "change" to).
    chown(m.path("mine.txt"), Some(me.0), Some(me.1)).expect("chown to the mapped user");
    assert_eq!(owner(&s.remote("mine.txt")), (nobody, nogroup));
    drop(m);

    // Without idmap the same chown asks the server for uid 0, which nobody may not.
    let plain = Mount::new(&s, "", &[]);
    // (SFTP has only "permission denied" for it: EACCES.)
    let e = errno(chown(plain.path("mine.txt"), Some(me.0), Some(me.1)));
    assert!(
        e == libc::EACCES || e == libc::EPERM,
        "chown to root as the remote user nobody, without idmap: {}",
        errno_name(e)
    );
}

/// `name:id` files owned by root, mode 0644.
fn id_file(s: &Sshd, name: &str, text: &str) -> String {
    let p = s.local(name);
    fs::write(&p, text).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    p.display().to_string()
}

#[test]
fn idmap_file_maps_ids_by_name() {
    let s = Sshd::start();
    // remote ids: daemon=2001, nobody=2003, a name unknown here=2004; 2002 has no name
    let uids = id_file(
        &s,
        "uids",
        "# remote users\ndaemon:2001\nnobody:2003\nno-such-local-user:2004\n",
    );
    let gids = id_file(&s, "gids", "daemon:x:2001:\n");
    server_file(&s.remote("a"), 2001, 2001);
    server_file(&s.remote("b"), 2002, 2002);
    let (daemon_uid, daemon_gid) = user_ids("daemon");
    let (nobody, _) = user_ids("nobody");

    let opts = [
        "idmap=file".to_string(),
        format!("uidfile={uids}"),
        format!("gidfile={gids}"),
    ];
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    let m = Mount::new(&s, "", &opts);
    assert_eq!(owner(&m.path("a")), (daemon_uid, daemon_gid));
    // nomap=error (the default): an unmapped remote owner shows as the overflow id
    assert_eq!(owner(&m.path("b")), (65534, 65534));
    chown(m.path("a"), Some(nobody), None).expect("chown to a mapped user");
    assert_eq!(owner(&s.remote("a")), (2003, 2001));
    chown(m.path("a"), Some(daemon_uid), Some(daemon_gid)).unwrap();
    assert_eq!(owner(&s.remote("a")), (2001, 2001));
    // chown to a local id without a mapping is refused, and nothing changes
    let (games, _) = user_ids("games");
    assert_errno(
        chown(m.path("a"), Some(games), None),
        libc::EPERM,
        "chown to an unmapped uid with nomap=error",
    );
    assert_eq!(owner(&s.remote("a")), (2001, 2001));
    drop(m);

    // nomap=ignore: unmapped ids pass unchanged both ways
    let mut ignore = opts.clone();
    ignore.push("nomap=ignore");
    let m = Mount::new(&s, "", &ignore);
    assert_eq!(owner(&m.path("b")), (2002, 2002));
    assert_eq!(owner(&m.path("a")), (daemon_uid, daemon_gid));
    chown(m.path("b"), Some(games), None).unwrap();
    assert_eq!(owner(&s.remote("b")).0, games);
}

#[test]
fn idmap_file_refuses_an_unsafe_or_broken_file() {
    let s = Sshd::start();
    let mnt = s.mountpoint();
    let writable = id_file(&s, "open-uids", "daemon:2001\n");
    fs::set_permissions(&writable, fs::Permissions::from_mode(0o666)).unwrap();
    let broken = id_file(&s, "broken-uids", "daemon:2001\njust-a-name\n");
    for (file, expected) in [
        (writable.as_str(), "writable by other users"),
        (broken.as_str(), "broken-uids:2: expected name:id"),
    ] {
        let mut cmd = s.command();
        let idmap = format!("idmap=file,uidfile={file}");
        cmd.args(s.mount_args("", &mnt, &[&idmap]));
        let line = run_to_exit(cmd, &s.dir, FAIL_DEADLINE).one_line_error();
        assert!(line.contains(expected), "{line}");
        assert!(!is_mounted(&mnt));
    }
}
