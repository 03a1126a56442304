//! Signals for fault injection: [`Frozen`] (SIGSTOPped server processes), and killing them.

use std::time::Duration;

use super::process::{is_live, parent_of};
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
