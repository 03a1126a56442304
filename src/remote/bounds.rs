//! What a server decides and the client bounds: how much of a reply the client holds and how
//! long it waits. A server past a bound gets an error (EIO for the caller), never a larger
//! allocation or a longer wait. The README's table "What a server can make sftpfs hold"
//! lists them; keep the two in step.

use std::time::Duration;

/// Largest reply packet: OpenSSH's are at most 256 KiB (`limits@openssh.com`); anything far
/// beyond is a broken or hostile server. Bounds every single reply (extended replies, DATA,
/// the entries of one NAME reply). Past it the connection is dropped.
pub const MAX_PACKET: usize = 1024 * 1024;

/// A handle is at most 256 bytes (draft-ietf-secsh-filexfer-02, section 3). Past it the
/// connection is dropped.
pub const MAX_HANDLE: usize = 256;

/// Bytes of a server's own text (a status message, a name in an error) kept for messages
/// and the log; the rest is cut, with a mark saying so.
pub const MAX_SERVER_TEXT: usize = 256;

/// How much of one directory listing is held before the listing is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListingBound {
    pub entries: usize,
    /// Bytes of the names, all together.
    pub name_bytes: usize,
    /// From the OPENDIR to the last READDIR's reply.
    pub time: Duration,
}

impl ListingBound {
    /// A listing somebody needs (`ls`, `opendir`, a lookup that must know): a directory of a
    /// million entries lists (held in roughly 150 MiB while it is read), more is refused.
    pub fn asked(timeout: Duration) -> ListingBound {
        ListingBound {
            entries: 1_000_000,
            name_bytes: 64 << 20,
            time: timeout * 10,
        }
    }

    /// A listing fetched ahead, that nobody asked for yet (the subdirectories of a directory
    /// in use, a lookup's speculative listing): small, so that sixteen at once stay in a few
    /// MiB; past it the prefetch gives up and the listing is read when it is asked for.
    pub fn ahead(timeout: Duration) -> ListingBound {
        ListingBound {
            entries: 10_000,
            name_bytes: 1 << 20,
            time: timeout,
        }
    }
}

/// How long a connection suspected dead (a request outlived its deadline) has to show a sign
/// of life after it is probed, and how long a reconnect is waited for while the server is
/// known to be silent: a tenth of the request deadline, within 2 to 10 seconds. A request
/// caught by the silence waits at most three of them (its member's probe, which may start
/// only when another member is found silent, then one reconnect).
pub fn probe_wait(timeout: Duration) -> Duration {
    (timeout / 10).clamp(Duration::from_secs(2), Duration::from_secs(10))
}

/// A server's text (status message, name) for a message or the log: lossy UTF-8, control
/// characters escaped (no line breaks or terminal escapes in the log), at most
/// [`MAX_SERVER_TEXT`] bytes of it, with a mark when it was cut.
pub fn server_text(b: &[u8]) -> String {
    let kept = &b[..b.len().min(MAX_SERVER_TEXT)];
    let mut s = String::with_capacity(kept.len() + 32);
    for c in String::from_utf8_lossy(kept).chars() {
        if c.is_control() {
            s.extend(c.escape_default());
        } else {
            s.push(c);
        }
    }
    if kept.len() < b.len() {
        s.push_str(&format!("… [cut: {} bytes in all]", b.len()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_text_is_cut_and_escaped() {
        assert_eq!(server_text(b"No such file"), "No such file");
        assert_eq!(server_text(b"a\nb\x1b[31m\xff"), "a\\nb\\u{1b}[31m\u{fffd}");
        let long = server_text(&vec![b'x'; 1_000_000]);
        assert!(long.len() < MAX_SERVER_TEXT + 40, "{}", long.len());
        assert!(long.ends_with("[cut: 1000000 bytes in all]"), "{long}");
    }

    #[test]
    fn probe_wait_scales_with_the_deadline_within_limits() {
        let s = Duration::from_secs;
        assert_eq!(probe_wait(s(30)), s(3));
        assert_eq!(probe_wait(s(1)), s(2));
        assert_eq!(probe_wait(s(600)), s(10));
    }
}
