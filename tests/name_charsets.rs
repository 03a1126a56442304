//! File-name character sets (sshfs's `from_code=` / `to_code=`, libfuse's iconv module): a
//! Latin-1 server shown as UTF-8, names made through the mount stored in Latin-1, names the
//! server's set cannot hold refused with EILSEQ, and a UTF-8 server shown as Latin-1 whose
//! names outside Latin-1 stay listed and usable by their raw bytes.

mod support;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use support::*;

fn join(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}

fn names(dir: &Path) -> BTreeSet<Vec<u8>> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect()
}

fn set(items: &[&[u8]]) -> BTreeSet<Vec<u8>> {
    items.iter().map(|b| b.to_vec()).collect()
}

#[track_caller]
fn assert_eilseq<T: std::fmt::Debug>(r: io::Result<T>, what: &str) {
    match r {
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EILSEQ), "{what}: {e}"),
        Ok(v) => panic!("{what}: succeeded ({v:?}), expected EILSEQ"),
    }
}

#[test]
fn latin1_server_shows_utf8_names_and_gets_latin1_names() {
    let s = Sshd::start();
    let w = s.remote("w");
    fs::create_dir(&w).unwrap();
    fs::write(join(&w, b"caf\xe9"), "coffee").unwrap();
    fs::write(join(&w, b"na\xefve.txt"), "naive").unwrap();
    fs::create_dir(join(&w, b"\xc5ngstr\xf6m")).unwrap();
    fs::write(join(&w, b"\xc5ngstr\xf6m/\xe9t\xe9.txt"), "summer").unwrap();
    let m = Mount::new(
        &s,
        "w",
        &["modules=iconv,from_code=ISO-8859-1,to_code=UTF-8"],
    );

    // Listing, reading and stat through the UTF-8 names.
    assert_eq!(
        names(&m.path("")),
        set(&[
            "café".as_bytes(),
            "naïve.txt".as_bytes(),
            "Ångström".as_bytes()
        ])
    );
    assert_eq!(fs::read_to_string(m.path("café")).unwrap(), "coffee");
    assert_eq!(fs::metadata(m.path("naïve.txt")).unwrap().len(), 5);
    assert!(fs::metadata(m.path("Ångström")).unwrap().is_dir());
    assert_eq!(names(&m.path("Ångström")), set(&["été.txt".as_bytes()]));
    assert_eq!(
        fs::read_to_string(m.path("Ångström/été.txt")).unwrap(),
        "summer"
    );

    // Names made through the mount are Latin-1 on the server.
    fs::write(m.path("résumé.txt"), "cv").unwrap();
    assert_eq!(fs::read(join(&w, b"r\xe9sum\xe9.txt")).unwrap(), b"cv");
    fs::create_dir(m.path("Ünïcode")).unwrap();
    assert!(join(&w, b"\xdcn\xefcode").is_dir());
    fs::rename(m.path("résumé.txt"), m.path("Ünïcode/naïveté.txt")).unwrap();
    assert!(!join(&w, b"r\xe9sum\xe9.txt").exists());
    assert_eq!(
        fs::read(join(&w, b"\xdcn\xefcode/na\xefvet\xe9.txt")).unwrap(),
        b"cv"
    );
    assert_eq!(names(&m.path("Ünïcode")), set(&["naïveté.txt".as_bytes()]));

    // A symlink with a non-ASCII name and target: Latin-1 on the server, UTF-8 through the
    // mount, and it leads where it says.
    symlink("Ångström/été.txt", m.path("lien-é")).unwrap();
    assert_eq!(
        fs::read_link(join(&w, b"lien-\xe9"))
            .unwrap()
            .as_os_str()
            .as_bytes(),
        b"\xc5ngstr\xf6m/\xe9t\xe9.txt"
    );
    assert_eq!(
        fs::read_link(m.path("lien-é")).unwrap(),
        Path::new("Ångström/été.txt")
    );
    assert_eq!(fs::read_to_string(m.path("lien-é")).unwrap(), "summer");
    // One made on the server reads as UTF-8 too.
    symlink(OsStr::from_bytes(b"caf\xe9"), join(&w, b"to-cafe")).unwrap();
    wait_visible(&m.path("to-cafe"));
    assert_eq!(fs::read_link(m.path("to-cafe")).unwrap(), Path::new("café"));
    assert_eq!(fs::read_to_string(m.path("to-cafe")).unwrap(), "coffee");

    // Names with characters Latin-1 lacks: EILSEQ, and nothing is made on the server.
    let before = names(&w);
    assert_eilseq(fs::write(m.path("€uro"), "x"), "create €uro");
    assert_eilseq(fs::create_dir(m.path("日本")), "mkdir 日本");
    assert_eilseq(symlink("café", m.path("→café")), "symlink named →café");
    assert_eilseq(symlink("€uro", m.path("to-euro")), "symlink to €uro");
    assert_eilseq(
        fs::rename(m.path("café"), m.path("café€")),
        "rename to café€",
    );
    assert_eilseq(
        fs::hard_link(m.path("café"), m.path("日本.txt")),
        "link to 日本.txt",
    );
    // Not UTF-8 locally: it would list as another name.
    assert_eilseq(
        fs::write(join(&m.path(""), b"caf\xe9-raw"), "x"),
        "create a non-UTF-8 name",
    );
    assert_eq!(names(&w), before, "the server's directory changed");
    assert_eq!(fs::read_to_string(m.path("café")).unwrap(), "coffee");
}

#[test]
fn utf8_server_names_outside_latin1_stay_usable_raw() {
    let s = Sshd::start();
    let w = s.remote("w");
    fs::create_dir(&w).unwrap();
    let jp = "日本.txt".as_bytes();
    fs::write(join(&w, jp), "nihon").unwrap();
    fs::write(w.join("café"), "coffee").unwrap();
    // Not UTF-8 at all: a legacy name.
    fs::write(join(&w, b"legacy\xff"), "old").unwrap();
    fs::create_dir(w.join("月")).unwrap();
    fs::write(w.join("月/ü"), "moon").unwrap();
    let m = Mount::new(&s, "w", &["from_code=UTF-8,to_code=ISO-8859-1"]);

    // café converts (to Latin-1 bytes); the others are listed as the server has them.
    assert_eq!(
        names(&m.path("")),
        set(&[b"caf\xe9", jp, b"legacy\xff", "月".as_bytes()])
    );
    assert_eq!(
        fs::read_to_string(join(&m.path(""), b"caf\xe9")).unwrap(),
        "coffee"
    );
    assert_eq!(fs::read_to_string(join(&m.path(""), jp)).unwrap(), "nihon");
    assert_eq!(
        fs::read_to_string(join(&m.path(""), b"legacy\xff")).unwrap(),
        "old"
    );
    // Below a raw directory name, names convert again.
    let moon = join(&m.path(""), "月".as_bytes());
    assert_eq!(names(&moon), set(&[b"\xfc"]));
    assert_eq!(fs::read_to_string(join(&moon, b"\xfc")).unwrap(), "moon");

    // A raw file can be written, renamed within its directory and into another one.
    fs::write(join(&m.path(""), jp), "nihon!").unwrap();
    assert_eq!(fs::read(join(&w, jp)).unwrap(), b"nihon!");
    fs::rename(join(&m.path(""), jp), join(&moon, jp)).unwrap();
    assert_eq!(fs::read(join(&w.join("月"), jp)).unwrap(), b"nihon!");
    assert!(!join(&w, jp).exists());
    assert_eq!(names(&moon), set(&[b"\xfc", jp]));

    // Latin-1 names made through the mount are UTF-8 on the server.
    fs::write(join(&m.path(""), b"r\xe9sum\xe9"), "cv").unwrap();
    assert_eq!(fs::read(w.join("résumé")).unwrap(), b"cv");
    fs::rename(
        join(&m.path(""), b"legacy\xff"),
        join(&m.path(""), b"\xe9t\xe9"),
    )
    .unwrap();
    assert_eq!(fs::read(w.join("été")).unwrap(), b"old");
}

/// Runs the binary in background mode to its exit.
fn run(s: &Sshd, extra: &[&str]) -> (Run, PathBuf) {
    let mnt = s.mountpoint();
    let mut cmd = s.command();
    cmd.args(s.mount_args("w", &mnt, extra));
    (run_to_exit(cmd, &s.dir, FAIL_DEADLINE), mnt)
}

#[test]
fn unusable_charsets_and_modules_fail_with_one_line() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    for (opt, words) in [
        (
            "from_code=UTF-16",
            &["from_code", "utf-16", "not supported"][..],
        ),
        ("to_code=bogus", &["to_code", "bogus", "character set"][..]),
        (
            "modules=bogus",
            &["modules", "bogus", "iconv", "subdir"][..],
        ),
        ("modules=iconv:zip", &["modules", "zip"][..]),
    ] {
        let (r, mnt) = run(&s, &[opt]);
        let line = failed_cleanly(&r, &mnt);
        for w in words {
            assert!(
                line.contains(w),
                "{opt}: the error does not mention {w:?}: {line}"
            );
        }
    }
}
