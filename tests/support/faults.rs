//! Signals for fault injection: [`Frozen`] (SIGSTOPped server processes), and killing them.

use std::time::Duration;

use super::process::{descendants, is_live, parent_of};
use super::wait_until;

/// Processes SIGSTOPped by [`Sshd::freeze`]; SIGCONT on drop (also when a test fails).
pub struct Frozen {
    pub(super) pids: Vec<i32>,
}

impl Frozen {
    /// SIGSTOPs `pids` (any processes the test found serving it).
    pub fn stop(pids: Vec<i32>) -> Frozen {
        for &p in &pids {
            signal(p, libc::SIGSTOP);
        }
        Frozen { pids }
    }

    /// Lets them run again now.
    pub fn thaw(self) {}
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for &p in self.pids.iter().rev() {
            signal(p, libc::SIGCONT);
        }
    }
}

pub(super) fn signal(pid: i32, sig: i32) {
    if pid > 0 {
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// SIGSTOPs `root`, then its descendants, until no new one appears, and returns them (deepest
/// first, as [`descendants`] lists them). A stopped process can neither accept nor fork, and
/// none dies meanwhile, so none is re-parented out of sight: a kill that follows misses none.
pub(super) fn freeze_tree(root: i32) -> Vec<i32> {
    let mut stopped = vec![root];
    stop_all(&[root]);
    loop {
        let found = descendants(root);
        let new: Vec<i32> = found
            .iter()
            .copied()
            .filter(|p| !stopped.contains(p))
            .collect();
        if new.is_empty() {
            return found;
        }
        stop_all(&new);
        stopped.extend(new);
    }
}

/// SIGSTOPs `pids` and waits until each is stopped (or gone): a fork in progress finishes
/// before the signal takes effect.
fn stop_all(pids: &[i32]) {
    for &p in pids {
        signal(p, libc::SIGSTOP);
    }
    let stopped = wait_until(Duration::from_secs(10), || {
        pids.iter()
            .all(|&p| !is_live(p) || state_of(p).is_some_and(|s| s == 'T'))
    });
    assert!(stopped, "processes {pids:?} did not stop on SIGSTOP");
}

/// The state letter of `/proc/PID/stat` (`R`, `S`, `T` for stopped, `Z`...).
fn state_of(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// SIGKILLs `pids` (deepest first, as [`descendants`] lists them) and waits until they are
/// gone; reaps those that were re-parented to this process (a subreaper).
pub(super) fn kill_and_reap(pids: &[i32]) {
    for &p in pids {
        signal(p, libc::SIGCONT);
        signal(p, libc::SIGKILL);
    }
    let me = std::process::id() as i32;
    let gone = wait_until(Duration::from_secs(10), || {
        pids.iter().all(|&p| {
            if parent_of(p) == Some(me) {
                let mut st = 0;
                unsafe { libc::waitpid(p, &mut st, libc::WNOHANG) };
            }
            !is_live(p)
        })
    });
    assert!(gone, "processes {pids:?} did not die after SIGKILL");
}
