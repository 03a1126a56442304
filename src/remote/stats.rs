//! Counters of the SFTP sessions, for `sftpfs status`: kept with relaxed atomics on the hot
//! paths, read as a snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Requests and SFTP bytes of one kind of work (background revalidation), counted by the
/// sessions for requests sent from within [`Tally::count`].
#[derive(Default, Debug)]
pub struct Tally {
    requests: AtomicU64,
    bytes_out: AtomicU64,
    bytes_in: AtomicU64,
}

tokio::task_local! {
    static TALLY: std::sync::Arc<Tally>;
}

impl Tally {
    /// Runs `f`, counting in `tally` every request it sends and every reply it gets.
    pub async fn count<F: std::future::Future>(tally: std::sync::Arc<Tally>, f: F) -> F::Output {
        TALLY.scope(tally, f).await
    }

    /// The tally of the task sending a request now, if it counts one.
    pub(super) fn current() -> Option<std::sync::Arc<Tally>> {
        TALLY.try_with(std::sync::Arc::clone).ok()
    }

    pub(super) fn sent(&self, bytes: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(super) fn received(&self, bytes: usize) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// (requests, bytes out, bytes in) so far.
    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
            self.bytes_in.load(Ordering::Relaxed),
        )
    }
}

/// One session's counters, updated by its reader and writer tasks.
#[derive(Default)]
pub struct Counters {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    requests: AtomicU64,
    /// Requests sent while none was in flight: the round trips a caller waited for one
    /// after another (requests sent together, or while others travel, share one).
    round_trips: AtomicU64,
    /// Requests by SFTP packet type (`SSH_FXP_*`, 1-20 and EXTENDED as 0).
    by_type: [AtomicU64; 21],
    /// Smoothed round trip of small requests (not READ or WRITE, whose replies wait for
    /// data), in microseconds; 0 before the first.
    rtt_us: AtomicU64,
}

impl Counters {
    pub fn sent(&self, bytes: usize) {
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A request of packet type `kind` was queued; `idle`: none was in flight before it.
    pub fn queued(&self, kind: u8, idle: bool) {
        let i = if (kind as usize) < 21 {
            kind as usize
        } else {
            0
        };
        self.by_type[i].fetch_add(1, Ordering::Relaxed);
        if idle {
            self.round_trips.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn received(&self, bytes: usize) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    /// A small request's reply came after `took`: TCP's smoothing (1/8 of the new sample).
    pub fn round_trip(&self, took: Duration) {
        let sample = (took.as_micros() as u64).max(1);
        let old = self.rtt_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.rtt_us.store(new, Ordering::Relaxed);
    }

    pub fn snapshot(&self, in_flight: usize) -> ConnStats {
        let rtt = self.rtt_us.load(Ordering::Relaxed);
        ConnStats {
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            round_trips: self.round_trips.load(Ordering::Relaxed),
            by_type: std::array::from_fn(|i| self.by_type[i].load(Ordering::Relaxed)),
            in_flight,
            rtt: (rtt > 0).then(|| Duration::from_micros(rtt)),
        }
    }
}

/// A session's counters at one moment.
#[derive(Debug, Clone, Default)]
pub struct ConnStats {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub requests: u64,
    pub round_trips: u64,
    pub by_type: [u64; 21],
    pub in_flight: usize,
    pub rtt: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// A live session.
    Up,
    /// Being connected or reconnected.
    Connecting,
    /// Not connected yet: extra members connect on first use.
    Idle,
    /// Its connection was lost; the next request reconnects it.
    Down,
    /// The server refused it a connection: its work goes to the first member.
    Disabled,
}

impl MemberState {
    pub fn name(self) -> &'static str {
        match self {
            MemberState::Up => "up",
            MemberState::Connecting => "connecting",
            MemberState::Idle => "idle",
            MemberState::Down => "down",
            MemberState::Disabled => "disabled",
        }
    }
}

impl ConnStats {
    /// The sum of two sessions' counts (a member's earlier sessions and its current one).
    pub fn plus(&self, o: &ConnStats) -> ConnStats {
        ConnStats {
            bytes_in: self.bytes_in + o.bytes_in,
            bytes_out: self.bytes_out + o.bytes_out,
            requests: self.requests + o.requests,
            round_trips: self.round_trips + o.round_trips,
            by_type: std::array::from_fn(|i| self.by_type[i] + o.by_type[i]),
            in_flight: self.in_flight + o.in_flight,
            rtt: o.rtt.or(self.rtt),
        }
    }

    /// Requests by the name of their type, those sent at least once.
    pub fn requests_by_type(&self) -> Vec<(&'static str, u64)> {
        const NAMES: [&str; 21] = [
            "extended", "init", "version", "open", "close", "read", "write", "lstat", "fstat",
            "setstat", "fsetstat", "opendir", "readdir", "remove", "mkdir", "rmdir", "realpath",
            "stat", "rename", "readlink", "symlink",
        ];
        NAMES
            .iter()
            .zip(self.by_type)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (*k, n))
            .collect()
    }
}

/// One pool member at one moment.
#[derive(Debug, Clone)]
pub struct MemberStatus {
    pub slot: usize,
    pub state: MemberState,
    /// The counters of its current session (they start again with each reconnect).
    pub current: Option<ConnStats>,
    /// Counters of its sessions before the current one, summed: bytes since mount are both.
    pub earlier: ConnStats,
    pub reconnects: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_are_smoothed_and_counts_add_up() {
        let c = Counters::default();
        assert_eq!(c.snapshot(0).rtt, None);
        c.round_trip(Duration::from_micros(800));
        assert_eq!(c.snapshot(0).rtt, Some(Duration::from_micros(800)));
        c.round_trip(Duration::from_micros(1600));
        assert_eq!(c.snapshot(0).rtt, Some(Duration::from_micros(900)));
        c.sent(100);
        c.sent(50);
        c.received(30);
        let s = c.snapshot(2);
        assert_eq!(
            (s.bytes_out, s.requests, s.bytes_in, s.in_flight),
            (150, 2, 30, 2)
        );
    }
}
