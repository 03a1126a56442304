//! sftpfs against SFTP servers other than OpenSSH's (issue 11): ProFTPD's mod_sftp (with its
//! SFTP extensions, and without the OpenSSH-style ones), `rclone serve sftp`, AsyncSSH,
//! gesftpserver behind sshd, and Dropbear running OpenSSH's `sftp-server`; OpenSSH's
//! `internal-sftp` as the reference.
//!
//! For each server: the ordinary user operations through a real mount (defaults plus
//! `no_contain_symlinks`), each checked on the server's side of the directory, then a check
//! that nothing appeared outside the mounted directory. Every operation runs on every server
//! and its outcome is recorded; then each outcome is compared with what is expected: success,
//! except for the (server, operation) pairs in [`KNOWN_FAILURES`], which must still fail with
//! the symptom written there. When one of them starts to pass (someone fixed it), the test
//! says so: move it out of the table.
//!
//! `SFTPFS_MATRIX=FILE` records the outcomes (`binary<TAB>server<TAB>operation<TAB>outcome`
//! lines appended to FILE) and asserts nothing: with `SFTPFS_TEST_BIN=/usr/bin/sshfs` it
//! measures sshfs on the same servers. `SFTPFS_TEST_SERVER_DEBUG=1` makes the servers log at
//! their debug level.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use support::*;

/// (server, operation, symptom): what fails today, and how (a substring of the failure as this
/// test reports it). Each must still fail that way; one that passes must move out of here.
/// A symptom that starts with [`RACY`] is allowed to pass now and then (the server's timing);
/// it is only checked when it fails. The comments say what the server refused or misread.
const KNOWN_FAILURES: &[(&str, &str, &str)] = &[
    // No hardlink extension: EPERM, the errno of a filesystem without hard links (right).
    ("proftpd-noext", "ln", "Operation not permitted"),
    // rclone without its VFS cache empties any file opened for writing: sftpfs finds that
    // out on a scratch file and refuses to append to or write into a non-empty file
    // (EOPNOTSUPP) instead of losing its data (sshfs loses it: the file is emptied).
    ("rclone", "append", "Operation not supported"),
    ("rclone", "truncate", "Operation not supported"),
    // rclone answers SETSTAT of the mode with OK and ignores it.
    ("rclone", "chmod", "server: mode 644, expected 600"),
    ("rclone", "cp_p", "has mode 644"),
    ("rclone", "tar_x", "bin/run has mode 644, expected 755"),
    // rclone offers hard links but cannot make them: EPERM (right).
    ("rclone", "ln", "Operation not permitted"),
    // rclone has no symlinks (EOPNOTSUPP: right).
    ("rclone", "ln_s", "Operation not supported"),
    // rclone has no fsync extension and writes the end of a file only at CLOSE.
    ("rclone", "fsync", "~server: after fsync (before close) f"),
];

/// Marks a [`KNOWN_FAILURES`] symptom that may also pass.
const RACY: char = '~';

/// How long one operation (with its checks) may take before it counts as hung.
const OP_DEADLINE: Duration = Duration::from_secs(90);
/// How long a command run by an operation may take.
const CMD_DEADLINE: Duration = Duration::from_secs(60);
/// rclone makes a file appear on disk a little after CLOSE is answered: server-side checks
/// of what a closed file holds look again for this long.
const SETTLE: Duration = Duration::from_secs(2);

/// The directories of one operation: `m` through the mount, `s` the same directory on the
/// server's disk, `local` scratch space outside both.
struct Dirs {
    m: PathBuf,
    s: PathBuf,
    local: PathBuf,
}

type Outcome = Result<(), String>;

struct Op {
    name: &'static str,
    /// Prepares `s` (already created, empty) on the server's disk, before the mount.
    setup: fn(&Path),
    run: fn(&Dirs) -> Outcome,
}

const OPS: &[Op] = &[
    Op {
        name: "ls",
        setup: setup_ls,
        run: op_ls,
    },
    Op {
        name: "cat",
        setup: setup_cat,
        run: op_cat,
    },
    Op {
        name: "cp_in",
        setup: nothing,
        run: op_cp_in,
    },
    Op {
        name: "cp_out",
        setup: setup_big_f,
        run: op_cp_out,
    },
    Op {
        name: "cp_within",
        setup: setup_big_f,
        run: op_cp_within,
    },
    Op {
        name: "cp_p",
        setup: nothing,
        run: op_cp_p,
    },
    Op {
        name: "mkdir_rmdir",
        setup: nothing,
        run: op_mkdir_rmdir,
    },
    Op {
        name: "mv_over",
        setup: setup_mv_over,
        run: op_mv_over,
    },
    Op {
        name: "sed_i",
        setup: setup_sed,
        run: op_sed_i,
    },
    Op {
        name: "append",
        setup: setup_append,
        run: op_append,
    },
    Op {
        name: "ln_s",
        setup: setup_target,
        run: op_ln_s,
    },
    Op {
        name: "ln",
        setup: setup_target,
        run: op_ln,
    },
    Op {
        name: "chmod",
        setup: setup_target,
        run: op_chmod,
    },
    Op {
        name: "truncate",
        setup: setup_truncate,
        run: op_truncate,
    },
    Op {
        name: "touch_d",
        setup: setup_target,
        run: op_touch_d,
    },
    Op {
        name: "df",
        setup: nothing,
        run: op_df,
    },
    Op {
        name: "fsync",
        setup: nothing,
        run: op_fsync,
    },
    Op {
        name: "git",
        setup: nothing,
        run: op_git,
    },
    Op {
        name: "tar_x",
        setup: nothing,
        run: op_tar_x,
    },
    Op {
        name: "rm_rf",
        setup: setup_tree,
        run: op_rm_rf,
    },
    Op {
        name: "rename_dir",
        setup: setup_tree,
        run: op_rename_dir,
    },
];

/// The check that follows all the operations (not a user operation).
const NOTHING_OUTSIDE: &str = "nothing_outside";

// ---- helpers -------------------------------------------------------------------------------

fn io<T>(what: &str, r: std::io::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

/// Runs `program args` in `cwd` (C locale, UTC) with a deadline; its stdout, or an error
/// naming the command, its exit status and its stderr.
fn cmd(cwd: &Path, program: &str, args: &[&str]) -> Result<String, String> {
    let mut c = Command::new(program);
    c.args(args)
        .current_dir(cwd)
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .env("HOME", std::env::temp_dir())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(std::process::Stdio::null());
    // Its output goes to files outside the directories the operations look at.
    let run = run_to_exit(c, &std::env::temp_dir(), CMD_DEADLINE);
    let shown = format!("`{program} {}`", args.join(" "));
    match run.status {
        None => Err(format!("{shown}: still running after {CMD_DEADLINE:?}")),
        Some(s) if s.success() => Ok(run.stdout),
        Some(s) => Err(format!(
            "{shown}: {s}: {}",
            run.stderr.trim_end().replace('\n', " / ")
        )),
    }
}

fn sh_c(cwd: &Path, script: &str) -> Result<String, String> {
    cmd(cwd, "sh", &["-c", script])
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Outcome {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

/// Retries `f` for up to [`SETTLE`] until it succeeds; its last error otherwise.
fn settled(mut f: impl FnMut() -> Outcome) -> Outcome {
    let end = std::time::Instant::now() + SETTLE;
    loop {
        let r = f();
        if r.is_ok() || std::time::Instant::now() >= end {
            return r;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The server's `path` holds exactly `want` (after rclone's settling time).
fn server_has(path: &Path, want: &[u8]) -> Outcome {
    settled(|| {
        let got = fs::read(path).map_err(|e| format!("server: read {}: {e}", path.display()))?;
        check(got == want, || {
            format!(
                "server: {} holds {} bytes{}, expected {}{}",
                path.display(),
                got.len(),
                preview(&got),
                want.len(),
                preview(want)
            )
        })
    })
}

fn preview(b: &[u8]) -> String {
    if b.len() <= 40 {
        format!(" {:?}", String::from_utf8_lossy(b))
    } else {
        String::new()
    }
}

fn server_gone(path: &Path) -> Outcome {
    settled(|| {
        check(fs::symlink_metadata(path).is_err(), || {
            format!("server: {} still exists", path.display())
        })
    })
}

fn server_is_dir(path: &Path) -> Outcome {
    check(fs::metadata(path).is_ok_and(|m| m.is_dir()), || {
        format!("server: {} is not a directory", path.display())
    })
}

fn nothing(_: &Path) {}

fn put(path: &Path, data: &[u8]) {
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(path, data).unwrap();
}

// ---- the operations ------------------------------------------------------------------------

fn setup_ls(s: &Path) {
    put(&s.join("a"), b"abc");
    put(&s.join("b"), b"");
    put(&s.join("sub/c"), b"c");
}

fn op_ls(d: &Dirs) -> Outcome {
    let out = cmd(&d.local, "ls", &["-la", s(&d.m)])?;
    for name in ["a", "b", "sub"] {
        check(
            out.lines().any(|l| l.ends_with(&format!(" {name}"))),
            || format!("`ls -la` shows no {name}: {out}"),
        )?;
    }
    let sub = cmd(&d.local, "ls", &[s(&d.m.join("sub"))])?;
    check(sub.trim() == "c", || format!("`ls sub` shows {sub:?}"))?;
    let len = io("stat a", fs::metadata(d.m.join("a")))?.len();
    check(len == 3, || format!("stat a: size {len}, expected 3"))
}

fn setup_cat(s: &Path) {
    // Larger than one request of any server (OpenSSH allows 255 KiB).
    put(&s.join("big"), &random_bytes(700_001, 1));
}

fn op_cat(d: &Dirs) -> Outcome {
    let out = d.local.join("cat.out");
    sh_c(
        &d.local,
        &format!("cat '{}' > '{}'", s(&d.m.join("big")), s(&out)),
    )?;
    let got = io("read the copy", fs::read(&out))?;
    check(got == random_bytes(700_001, 1), || {
        format!("cat gave {} bytes, not the file's 700001", got.len())
    })
}

fn op_cp_in(d: &Dirs) -> Outcome {
    let data = random_bytes(1_000_003, 2);
    let src = d.local.join("src");
    fs::write(&src, &data).unwrap();
    cmd(&d.local, "cp", &[s(&src), s(&d.m.join("f"))])?;
    server_has(&d.s.join("f"), &data)
}

fn setup_big_f(s: &Path) {
    put(&s.join("f"), &random_bytes(700_001, 3));
}

fn op_cp_out(d: &Dirs) -> Outcome {
    let dst = d.local.join("f");
    cmd(&d.local, "cp", &[s(&d.m.join("f")), s(&dst)])?;
    let got = io("read the copy", fs::read(&dst))?;
    check(got == random_bytes(700_001, 3), || {
        format!("the copy has {} bytes, not the file's 700001", got.len())
    })
}

fn op_cp_within(d: &Dirs) -> Outcome {
    cmd(&d.local, "cp", &[s(&d.m.join("f")), s(&d.m.join("g"))])?;
    server_has(&d.s.join("g"), &random_bytes(700_001, 3))
}

fn op_cp_p(d: &Dirs) -> Outcome {
    let src = d.local.join("src");
    fs::write(&src, b"preserved\n").unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o640)).unwrap();
    cmd(
        &d.local,
        "touch",
        &["-d", "2001-02-03 04:05:06 UTC", s(&src)],
    )?;
    cmd(&d.local, "cp", &["-p", s(&src), s(&d.m.join("f"))])?;
    let f = d.s.join("f");
    server_has(&f, b"preserved\n")?;
    settled(|| {
        let m = io("server: stat f", fs::metadata(&f))?;
        check(
            m.mode() & 0o7777 == 0o640 && m.mtime() == 981_173_106,
            || {
                format!(
                    "server: f has mode {:o} and mtime {}, expected 640 and 981173106",
                    m.mode() & 0o7777,
                    m.mtime()
                )
            },
        )
    })
}

fn op_mkdir_rmdir(d: &Dirs) -> Outcome {
    cmd(&d.local, "mkdir", &["-p", s(&d.m.join("x/y"))])?;
    server_is_dir(&d.s.join("x/y"))?;
    cmd(&d.local, "rmdir", &[s(&d.m.join("x/y")), s(&d.m.join("x"))])?;
    server_gone(&d.s.join("x"))
}

fn setup_mv_over(s: &Path) {
    put(&s.join("a"), b"new\n");
    put(&s.join("b"), b"old\n");
}

fn op_mv_over(d: &Dirs) -> Outcome {
    cmd(
        &d.local,
        "mv",
        &["-f", s(&d.m.join("a")), s(&d.m.join("b"))],
    )?;
    server_has(&d.s.join("b"), b"new\n")?;
    server_gone(&d.s.join("a"))
}

fn setup_sed(s: &Path) {
    put(&s.join("f"), b"hello foo\nsecond line\n");
}

fn op_sed_i(d: &Dirs) -> Outcome {
    cmd(&d.local, "sed", &["-i", "s/foo/bar/", s(&d.m.join("f"))])?;
    server_has(&d.s.join("f"), b"hello bar\nsecond line\n")
}

fn setup_append(s: &Path) {
    put(&s.join("f"), b"one\n");
}

fn op_append(d: &Dirs) -> Outcome {
    sh_c(&d.local, &format!("echo two >> '{}'", s(&d.m.join("f"))))?;
    server_has(&d.s.join("f"), b"one\ntwo\n")
}

fn setup_target(s: &Path) {
    put(&s.join("target.txt"), b"T\n");
    fs::set_permissions(s.join("target.txt"), fs::Permissions::from_mode(0o644)).unwrap();
}

fn op_ln_s(d: &Dirs) -> Outcome {
    cmd(&d.m, "ln", &["-s", "target.txt", "link"])?;
    let link = d.s.join("link");
    let on_server = io("server: readlink link", fs::read_link(&link))?;
    check(on_server == Path::new("target.txt"), || {
        format!("server: link points to {on_server:?}, expected \"target.txt\"")
    })?;
    let lm = io("lstat link", fs::symlink_metadata(d.m.join("link")))?;
    check(lm.file_type().is_symlink(), || {
        format!("lstat link: not a symlink but {:?}", lm.file_type())
    })?;
    let through = io("readlink link", fs::read_link(d.m.join("link")))?;
    check(through == Path::new("target.txt"), || {
        format!("readlink link through the mount gives {through:?}")
    })?;
    let got = io("read through link", fs::read(d.m.join("link")))?;
    check(got == b"T\n", || format!("the link reads {got:?}"))
}

fn op_ln(d: &Dirs) -> Outcome {
    cmd(&d.m, "ln", &["target.txt", "hard"])?;
    let (a, b) = (
        io(
            "server: stat target.txt",
            fs::metadata(d.s.join("target.txt")),
        )?,
        io("server: stat hard", fs::metadata(d.s.join("hard")))?,
    );
    check(a.ino() == b.ino(), || {
        "server: hard is not the same inode as target.txt".to_string()
    })?;
    let got = io("read hard", fs::read(d.m.join("hard")))?;
    check(got == b"T\n", || format!("hard reads {got:?}"))
}

fn op_chmod(d: &Dirs) -> Outcome {
    cmd(&d.local, "chmod", &["600", s(&d.m.join("target.txt"))])?;
    settled(|| {
        let mode = io("server: stat", fs::metadata(d.s.join("target.txt")))?.mode() & 0o7777;
        check(mode == 0o600, || {
            format!("server: mode {mode:o}, expected 600")
        })
    })?;
    let seen = io("stat", fs::metadata(d.m.join("target.txt")))?.mode() & 0o7777;
    check(seen == 0o600, || {
        format!("mount: mode {seen:o}, expected 600")
    })
}

fn setup_truncate(s: &Path) {
    put(&s.join("f"), &random_bytes(5000, 4));
}

fn op_truncate(d: &Dirs) -> Outcome {
    let data = random_bytes(5000, 4);
    cmd(&d.local, "truncate", &["-s", "1000", s(&d.m.join("f"))])?;
    server_has(&d.s.join("f"), &data[..1000])?;
    cmd(&d.local, "truncate", &["-s", "3000", s(&d.m.join("f"))])?;
    let mut want = data[..1000].to_vec();
    want.resize(3000, 0);
    server_has(&d.s.join("f"), &want)
}

fn op_touch_d(d: &Dirs) -> Outcome {
    cmd(
        &d.local,
        "touch",
        &["-d", "2001-02-03 04:05:06 UTC", s(&d.m.join("target.txt"))],
    )?;
    // `touch` opens the file for writing first: its content must stay.
    server_has(&d.s.join("target.txt"), b"T\n")?;
    settled(|| {
        let mtime = io("server: stat", fs::metadata(d.s.join("target.txt")))?.mtime();
        check(mtime == 981_173_106, || {
            format!("server: mtime {mtime}, expected 981173106")
        })
    })?;
    cmd(&d.local, "touch", &[s(&d.m.join("new"))])?;
    settled(|| {
        check(d.s.join("new").exists(), || {
            "server: `touch new` made no file".to_string()
        })
    })
}

fn op_df(d: &Dirs) -> Outcome {
    let out = cmd(&d.local, "df", &["-P", s(&d.m)])?;
    check(out.lines().count() == 2, || format!("`df -P`: {out}"))?;
    let st = cmd(&d.local, "stat", &["-f", "-c", "%b %a %S", s(&d.m)])?;
    let v: Vec<u64> = st
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    check(v.len() == 3 && v[0] > 0 && v[1] > 0 && v[2] > 0, || {
        format!("statfs: blocks, available, block size = {}", st.trim())
    })
}

fn op_fsync(d: &Dirs) -> Outcome {
    let data = random_bytes(300_007, 5);
    let mut f = io("create f", fs::File::create(d.m.join("f")))?;
    io("write f", f.write_all(&data))?;
    io("fsync f", f.sync_all())?;
    // After fsync, and before close, the server's file holds the data.
    let got = fs::read(d.s.join("f"))
        .map_err(|e| format!("server: after fsync (before close) f cannot be read: {e}"))?;
    check(got == data, || {
        format!(
            "server: after fsync (before close) f holds {} of {} bytes",
            got.len(),
            data.len()
        )
    })?;
    drop(f);
    server_has(&d.s.join("f"), &data)
}

fn op_git(d: &Dirs) -> Outcome {
    let repo = d.m.join("repo");
    io("mkdir repo", fs::create_dir(&repo))?;
    let git = |args: &[&str]| {
        let mut all = vec![
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.invalid",
            "-c",
            "safe.directory=*",
            "-c",
            "init.defaultBranch=main",
        ];
        all.extend_from_slice(args);
        cmd(&repo, "git", &all)
    };
    git(&["init", "-q"])?;
    io(
        "write README",
        fs::write(repo.join("README"), b"a repository on a mount\n"),
    )?;
    io("mkdir src", fs::create_dir(repo.join("src")))?;
    io(
        "write src/main.c",
        fs::write(repo.join("src/main.c"), b"int main(void) { return 0; }\n"),
    )?;
    git(&["add", "."])?;
    git(&["commit", "-q", "-m", "first"])?;
    let st = git(&["status", "--porcelain"])?;
    check(st.trim().is_empty(), || {
        format!("`git status` after the commit: {st}")
    })?;
    let srv = d.s.join("repo");
    let log = cmd(
        &d.local,
        "git",
        &["-c", "safe.directory=*", "-C", s(&srv), "log", "--oneline"],
    )
    .map_err(|e| format!("server: {e}"))?;
    check(log.lines().count() == 1 && log.contains("first"), || {
        format!("server: `git log` shows {log:?}")
    })?;
    let st = cmd(
        &d.local,
        "git",
        &[
            "-c",
            "safe.directory=*",
            "-C",
            s(&srv),
            "status",
            "--porcelain",
        ],
    )
    .map_err(|e| format!("server: {e}"))?;
    check(st.trim().is_empty(), || {
        format!("server: `git status`: {st}")
    })
}

fn op_tar_x(d: &Dirs) -> Outcome {
    // A tree made locally, archived, extracted through the mount.
    let src = d.local.join("src");
    let files: &[(&str, usize, u32)] = &[
        ("README", 100, 0o644),
        ("bin/run", 2000, 0o755),
        ("lib/a.dat", 300_000, 0o600),
        ("lib/deep/b.dat", 0, 0o644),
    ];
    for (i, (name, len, mode)) in files.iter().enumerate() {
        let p = src.join(name);
        put(&p, &random_bytes(*len, 10 + i as u64));
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
    }
    cmd(
        &d.local,
        "touch",
        &[
            "-d",
            "2001-02-03 04:05:06 UTC",
            s(&src.join("README")),
            s(&src.join("lib/a.dat")),
        ],
    )?;
    let tarball = d.local.join("t.tar");
    cmd(&d.local, "tar", &["cf", s(&tarball), "-C", s(&src), "."])?;
    cmd(&d.local, "tar", &["xf", s(&tarball), "-C", s(&d.m)])?;
    for (i, (name, len, mode)) in files.iter().enumerate() {
        let p = d.s.join(name);
        server_has(&p, &random_bytes(*len, 10 + i as u64))?;
        let want = fs::metadata(src.join(name)).unwrap().mtime();
        settled(|| {
            let m = io(&format!("server: stat {name}"), fs::metadata(&p))?;
            check(m.mode() & 0o7777 == *mode, || {
                format!(
                    "server: {name} has mode {:o}, expected {mode:o}",
                    m.mode() & 0o7777
                )
            })?;
            check(m.mtime() == want, || {
                format!("server: {name} has mtime {}, expected {want}", m.mtime())
            })
        })?;
    }
    Ok(())
}

fn setup_tree(s: &Path) {
    for (name, data) in [
        ("d1/a", &b"a"[..]),
        ("d1/b", b"bb"),
        ("d1/sub/c", b"ccc"),
        ("d1/sub/deeper/d", b"dddd"),
        ("d1/sub2/e", b""),
    ] {
        put(&s.join(name), data);
    }
}

fn op_rm_rf(d: &Dirs) -> Outcome {
    cmd(&d.local, "rm", &["-rf", s(&d.m.join("d1"))])?;
    server_gone(&d.s.join("d1"))?;
    let left = cmd(&d.local, "ls", &["-A", s(&d.m)])?;
    check(left.trim().is_empty(), || {
        format!("`ls` after `rm -rf` still shows {left:?}")
    })
}

fn op_rename_dir(d: &Dirs) -> Outcome {
    cmd(&d.local, "mv", &[s(&d.m.join("d1")), s(&d.m.join("d2"))])?;
    server_gone(&d.s.join("d1"))?;
    server_has(&d.s.join("d2/sub/deeper/d"), b"dddd")?;
    server_has(&d.s.join("d2/a"), b"a")?;
    let through = io("read d2/sub/c", fs::read(d.m.join("d2/sub/c")))?;
    check(through == b"ccc", || format!("d2/sub/c reads {through:?}"))
}

// ---- running them --------------------------------------------------------------------------

/// Every path under `dir` (relative), without descending into `skip` (relative paths) or into
/// other filesystems (the mountpoints).
fn tree(dir: &Path, skip: &[PathBuf]) -> BTreeSet<PathBuf> {
    fn walk(base: &Path, rel: &Path, dev: u64, skip: &[PathBuf], out: &mut BTreeSet<PathBuf>) {
        let Ok(rd) = fs::read_dir(base.join(rel)) else {
            return;
        };
        for e in rd.flatten() {
            let r = rel.join(e.file_name());
            if skip.contains(&r) {
                continue;
            }
            let Ok(m) = fs::symlink_metadata(base.join(&r)) else {
                continue;
            };
            out.insert(r.clone());
            if m.is_dir() && m.dev() == dev {
                walk(base, &r, dev, skip, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    let dev = fs::metadata(dir).unwrap().dev();
    walk(dir, Path::new(""), dev, skip, &mut out);
    out
}

/// Paths under the server's temp dir that are no business of the test's own: the mounted
/// directory, scratch space, mountpoints, the binary's logs, the server's logs and run files.
fn outside(dir: &Path) -> BTreeSet<PathBuf> {
    tree(dir, &[PathBuf::from("home/w"), PathBuf::from("local")])
        .into_iter()
        .filter(|p| {
            let top = p.components().next().unwrap().as_os_str().to_string_lossy();
            !(top.starts_with("mnt-")
                || top.starts_with("sftpfs-")
                || top.starts_with("run-")
                || top.ends_with(".log")
                || top.starts_with("proftpd."))
        })
        .collect()
}

/// Names a stray write of this test could take in the real file tree (a SYMLINK read in the
/// other order creates its link at the target's name, relative to the server's directory).
const STRAY_NAMES: &[&str] = &["target.txt", "link", "hard"];

fn strays_on_host() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for dir in ["/", "/root", "/tmp"] {
        for n in STRAY_NAMES {
            let p = Path::new(dir).join(n);
            if fs::symlink_metadata(&p).is_ok() {
                v.push(p);
            }
        }
    }
    v
}

/// Runs every operation through one mount of `remote_dir` (`w`, server side `home`/w), and the
/// check that nothing appeared outside it. Returns the outcomes in [`OPS`] order, then
/// [`NOTHING_OUTSIDE`].
fn run_all<'a>(
    name: &str,
    home: &Path,
    mount: &dyn Fn() -> Result<Mount<'a>, String>,
    outside_now: &dyn Fn() -> BTreeSet<PathBuf>,
    local: &Path,
) -> Vec<(&'static str, Outcome)> {
    let w = home.join("w");
    fs::create_dir(&w).unwrap();
    for op in OPS {
        let d = w.join(op.name);
        fs::create_dir(&d).unwrap();
        (op.setup)(&d);
        fs::create_dir_all(local.join(op.name)).unwrap();
    }
    let before = outside_now();
    let strays_before = strays_on_host();
    let m = match mount() {
        Ok(m) => m,
        Err(e) => {
            let e = format!("mount failed: {}", e.lines().last().unwrap_or(""));
            return OPS
                .iter()
                .map(|op| (op.name, Err(e.clone())))
                .chain([(NOTHING_OUTSIDE, Ok(()))])
                .collect();
        }
    };
    let mut out = Vec::new();
    for op in OPS {
        let dirs = Dirs {
            m: m.path(op.name),
            s: w.join(op.name),
            local: local.join(op.name),
        };
        let (tx, rx) = mpsc::channel();
        let run = op.run;
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(|| run(&dirs))
                .unwrap_or_else(|_| Err("the operation panicked".to_string()));
            let _ = tx.send(r);
        });
        let r = rx
            .recv_timeout(OP_DEADLINE)
            .unwrap_or_else(|_| Err(format!("hung: no result after {OP_DEADLINE:?}")));
        eprintln!(
            "{name} {:<12} {}",
            op.name,
            match &r {
                Ok(()) => "ok".to_string(),
                Err(e) => e.clone(),
            }
        );
        out.push((op.name, r));
    }
    drop(m);
    let after = outside_now();
    let mut problems: Vec<String> = after
        .difference(&before)
        .map(|p| format!("appeared: {}", p.display()))
        .collect();
    problems.extend(
        before
            .difference(&after)
            .map(|p| format!("vanished: {}", p.display())),
    );
    problems.extend(
        strays_on_host()
            .into_iter()
            .filter(|p| !strays_before.contains(p))
            .map(|p| format!("appeared on the host: {}", p.display())),
    );
    let r = match problems.is_empty() {
        true => Ok(()),
        false => Err(format!(
            "outside the mounted directory: {}",
            problems.join(", ")
        )),
    };
    eprintln!("{name} {:<12} {r:?}", NOTHING_OUTSIDE);
    out.push((NOTHING_OUTSIDE, r));
    out
}

/// Compares the outcomes with [`KNOWN_FAILURES`] (or records them, with `SFTPFS_MATRIX`).
fn judge(server: &str, outcomes: &[(&'static str, Outcome)], logs: &dyn Fn() -> String) {
    if let Some(file) = std::env::var_os("SFTPFS_MATRIX").filter(|f| !f.is_empty()) {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .unwrap();
        let bin = binary();
        for (op, r) in outcomes {
            let shown = match r {
                Ok(()) => "ok".to_string(),
                Err(e) => e.replace(['\t', '\n'], " "),
            };
            writeln!(f, "{}\t{server}\t{op}\t{shown}", bin.display()).unwrap();
        }
        return;
    }
    let mut problems = Vec::new();
    for (op, r) in outcomes {
        let known = KNOWN_FAILURES
            .iter()
            .find(|(s, o, _)| *s == server && o == op)
            .map(|k| k.2);
        let racy = known.is_some_and(|k| k.starts_with(RACY));
        let known = known.map(|k| k.trim_start_matches(RACY));
        match (r, known) {
            (Ok(()), None) => {}
            (Ok(()), Some(_)) if racy => {}
            (Ok(()), Some(_)) => problems.push(format!(
                "{op}: passes now; move (\"{server}\", \"{op}\") out of KNOWN_FAILURES"
            )),
            (Err(e), None) => problems.push(format!("{op}: {e}")),
            (Err(e), Some(symptom)) if e.contains(symptom) => {}
            (Err(e), Some(symptom)) => problems.push(format!(
                "{op}: fails differently than KNOWN_FAILURES says ({symptom:?}): {e}"
            )),
        }
    }
    if !problems.is_empty() {
        panic!(
            "{server}: {} unexpected outcome(s):\n  {}\n{}",
            problems.len(),
            problems.join("\n  "),
            logs()
        );
    }
}

/// With `SFTPFS_MATRIX=FILE`: copies the logs (`*.log` in `dir` and one level down: the
/// binary's and the server's) to `FILE.logs/NAME/`.
fn keep_logs(name: &str, dir: &Path) {
    let Some(file) = std::env::var_os("SFTPFS_MATRIX").filter(|f| !f.is_empty()) else {
        return;
    };
    let mut to = PathBuf::from(file).into_os_string();
    to.push(".logs");
    let to = PathBuf::from(to).join(name);
    fs::create_dir_all(&to).unwrap();
    let mut logs = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() && !is_mounted(&p) {
            logs.extend(fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else {
            logs.push(p);
        }
    }
    for p in logs {
        if p.extension().is_some_and(|x| x == "log") && p.is_file() {
            fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

fn against(server: Server) {
    let outcomes = run_all(
        &server.name,
        &server.home,
        &|| server.try_mount("w", &["no_contain_symlinks"]),
        &|| outside(&server.dir),
        &server.local(""),
    );
    keep_logs(&server.name, &server.dir);
    judge(&server.name, &outcomes, &|| server.log_text());
}

#[test]
fn openssh_internal_sftp() {
    let sshd = Sshd::start();
    let local = sshd.local("");
    let outcomes = run_all(
        "openssh",
        &sshd.home(),
        &|| Mount::try_new(&sshd, "w", &["no_contain_symlinks"]),
        &|| outside(&sshd.dir),
        &local,
    );
    keep_logs("openssh", &sshd.dir);
    judge("openssh", &outcomes, &|| {
        fs::read_to_string(&sshd.log).unwrap_or_default()
    });
}

#[test]
fn proftpd() {
    against(Server::proftpd(true));
}

#[test]
fn proftpd_without_extensions() {
    against(Server::proftpd(false));
}

#[test]
fn rclone_serve_sftp() {
    against(Server::rclone());
}

#[test]
fn asyncssh() {
    against(Server::asyncssh());
}

#[test]
fn gesftpserver() {
    against(Server::gesftpserver());
}

#[test]
fn dropbear() {
    against(Server::dropbear());
}

/// The confinement the servers run in: only their temp dir is writable, `/root` is the
/// throwaway `home/`, and FUSE mounts made before are not there.
#[test]
fn servers_are_confined_to_their_temp_dir() {
    require_environment();
    let tmp = TempDir::new("confine");
    let dir = tmp.path();
    let home = dir.join("home");
    fs::create_dir(&home).unwrap();
    let outside = std::env::temp_dir().join(format!("sftpfs-confine-{}", std::process::id()));
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!(
            "touch {o} 2>/dev/null && echo wrote-outside; \
             touch /root/in-root && echo wrote-root; \
             touch {d}/in-dir && echo wrote-dir; \
             pwd",
            o = outside.display(),
            d = dir.display()
        ))
        .stdin(std::process::Stdio::null());
    confine(&mut c, dir, Some(&home));
    let out = c.output().expect("run a confined sh");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !outside.exists(),
        "a confined process wrote {}",
        outside.display()
    );
    assert!(!text.contains("wrote-outside"), "{text}");
    assert!(
        text.contains("wrote-root") && text.contains("wrote-dir"),
        "{text}"
    );
    assert!(
        home.join("in-root").exists(),
        "/root is not the throwaway home"
    );
    assert!(dir.join("in-dir").exists());
    assert_eq!(
        text.lines().last(),
        Some(s(&home)),
        "starts in the throwaway /root"
    );
}

/// Each entry of [`KNOWN_FAILURES`] names a server and an operation of this file, once.
#[test]
fn known_failures_name_real_cases() {
    let servers = [
        "openssh",
        "proftpd",
        "proftpd-noext",
        "rclone",
        "asyncssh",
        "gesftpserver",
        "dropbear",
    ];
    let mut seen = BTreeSet::new();
    for (server, op, symptom) in KNOWN_FAILURES {
        assert!(servers.contains(server), "unknown server {server}");
        assert!(
            *op == NOTHING_OUTSIDE || OPS.iter().any(|o| o.name == *op),
            "unknown operation {op}"
        );
        assert!(!symptom.trim_start_matches(RACY).is_empty());
        assert!(seen.insert((server, op)), "({server}, {op}) listed twice");
    }
}

/// `df` on ProFTPD without `statvfs@openssh.com`: the sizes of the server's filesystem, from
/// the draft's `space-available`, not sshfs's made-up 1000 GiB.
#[test]
fn df_without_statvfs_shows_the_size_space_available_gives() {
    let server = Server::proftpd(false);
    fs::create_dir(server.remote("w")).unwrap();
    let m = server.mount("w", &["debug"]);
    let blocks_bytes = |p: &Path| -> (u64, u64) {
        let out = Command::new("stat")
            .args(["-f", "-c", "%b %a %S"])
            .arg(p)
            .output()
            .unwrap();
        let v: Vec<u64> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        (v[0] * v[2], v[1] * v[2])
    };
    let (total, avail) = blocks_bytes(&m.path(""));
    let (real_total, real_avail) = blocks_bytes(&server.remote("w"));
    assert_ne!(total, 1000 << 30, "made-up sizes: {}", m.stderr());
    assert!(
        total.abs_diff(real_total) <= real_total / 100,
        "mount says {total} bytes in all, the server's filesystem has {real_total}"
    );
    assert!(
        avail.abs_diff(real_avail) <= real_total / 20,
        "mount says {avail} bytes available, the server's filesystem has {real_avail}"
    );
}
