//! Test harness shared by the integration tests: a private OpenSSH `sshd` per test on
//! 127.0.0.1 and a random free port, and real FUSE mounts made by the `sftpfs` binary.
//!
//! - [`Sshd::start`] makes a temp dir with a throwaway host key, client key, `authorized_keys`
//!   and `known_hosts`, and starts `/usr/sbin/sshd -D -e` in its own private mount namespace,
//!   so that the server can never see (and re-enter) the FUSE mounts the tests make.
//!   The server's SFTP "home" is `DIR/home` (`internal-sftp -d`).
//! - [`Mount::new`] runs the binary in the foreground (`-f`) and waits for the mount to appear;
//!   [`Mount::background`] runs it without `-f` and checks the parent's exit status.
//! - [`run_to_exit`] runs the binary (or anything) with a deadline, for the bad-input cases.
//!
//! - [`c_project`], [`make`]: a small C project for `make` on a mount (`make.rs`).
//! - [`Server`]: SFTP servers of other implementations (ProFTPD, rclone, AsyncSSH,
//!   gesftpserver, Dropbear), one file each, confined to their temp dir (`servers.rs`).
//!
//! Everything is cleaned up by `Drop`, also when a test panics.
//!
//! `SFTPFS_TEST_BIN=/usr/bin/sshfs` runs the tests against another binary that takes the same
//! arguments (to check the harness itself); `SFTPFS_TEST_OPTS=a,b` adds `-o a,b` to every mount.
#![allow(dead_code)]

pub mod proxy;

mod asyncssh;
mod bench_table;
mod dropbear;
mod environment;
mod errors;
mod faults;
mod gesftpserver;
mod make;
mod mount;
mod mountinfo;
mod process;
mod proftpd;
mod rclone;
mod servers;
mod sshd;
mod tempdir;
mod trees;
mod tty;

// Everything public, re-exported so that `use support::*;` sees the same names as before the
// split; each test binary uses a subset, hence the `allow`.
#[allow(unused_imports)]
pub use self::{
    asyncssh::{venv_python, DEFAULT_VENV},
    bench_table::report,
    dropbear::DROPBEAR_SFTP_SERVER,
    environment::require_environment,
    errors::{assert_errno, errno, errno_name},
    faults::Frozen,
    gesftpserver::GESFTPSERVER,
    make::{c_project, compiled, linked, make, wait_for_a_later_second},
    mount::{wait_visible, Mount, Stop},
    mountinfo::{is_mounted, mount_at, mountinfo, MountInfo},
    process::{
        command_in, descendants, failed_cleanly, processes_with_arg, run_to_exit, sh, KillOnDrop,
        Run,
    },
    proftpd::PROFTPD_EXTENSIONS_OFF,
    servers::{confine, debug_logs, Server},
    sshd::{isolate_from_mounts, keygen, user_ids, Sshd},
    tempdir::TempDir,
    trees::{same_tree, small_files, tarball},
    tty::{members_up, sftpfs_sync, status_json, OnTty},
};

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a mount may take to appear.
pub const MOUNT_DEADLINE: Duration = Duration::from_secs(15);
/// How long a process may take to exit once asked to (unmount, signal, failure).
pub const EXIT_DEADLINE: Duration = Duration::from_secs(15);
/// How long a failing invocation may take to report its error.
pub const FAIL_DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(10);

const SSHD: &str = "/usr/sbin/sshd";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{tag}-{}-{n}-{nanos:x}", std::process::id())
}

/// The binary under test: `SFTPFS_TEST_BIN` if set, else the crate's `sftpfs`.
pub fn binary() -> PathBuf {
    match std::env::var_os("SFTPFS_TEST_BIN") {
        Some(b) if !b.is_empty() => PathBuf::from(b),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_sftpfs")),
    }
}

/// Polls `cond` every few milliseconds until it holds or `deadline` passes.
pub fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        sleep(POLL);
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), no dependency needed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    v.truncate(len);
    v
}

pub fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}
