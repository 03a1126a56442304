//! What a server offers and how it must be spoken to: decided once at connect time from its
//! SSH version banner (when SSH carries the session), its SFTP version and its extensions,
//! and corrected while the mount runs when an offered extension turns out not to work.
//! Every server quirk lives here; the filesystem core never asks which server it talks to.

use std::sync::atomic::{AtomicBool, Ordering};

use super::error::RemoteError;
use super::protocol::*;

/// The OpenSSH extensions sftpfs uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ext {
    PosixRename,
    Statvfs,
    Fstatvfs,
    Hardlink,
    Fsync,
    Lsetstat,
    Limits,
    ExpandPath,
    CopyData,
    SpaceAvailable,
    /// The draft's `check-file-name`/`check-file-handle` (ProFTPD): a file's hash.
    CheckFile,
    /// The draft's `md5-hash`/`md5-hash-handle`.
    Md5Hash,
}

const ALL: [Ext; 12] = [
    Ext::PosixRename,
    Ext::Statvfs,
    Ext::Fstatvfs,
    Ext::Hardlink,
    Ext::Fsync,
    Ext::Lsetstat,
    Ext::Limits,
    Ext::ExpandPath,
    Ext::CopyData,
    Ext::SpaceAvailable,
    Ext::CheckFile,
    Ext::Md5Hash,
];

impl Ext {
    pub fn name(self) -> &'static str {
        match self {
            Ext::PosixRename => "posix-rename@openssh.com",
            Ext::Statvfs => "statvfs@openssh.com",
            Ext::Fstatvfs => "fstatvfs@openssh.com",
            Ext::Hardlink => "hardlink@openssh.com",
            Ext::Fsync => "fsync@openssh.com",
            Ext::Lsetstat => "lsetstat@openssh.com",
            Ext::Limits => "limits@openssh.com",
            Ext::ExpandPath => "expand-path@openssh.com",
            Ext::CopyData => "copy-data",
            Ext::SpaceAvailable => "space-available",
            Ext::CheckFile => "check-file",
            Ext::Md5Hash => "md5-hash",
        }
    }

    /// What a user notices without it; for the mount's log line.
    fn without(self) -> &'static str {
        match self {
            Ext::PosixRename => "rename over a name moves the old file aside first (not atomic)",
            Ext::Statvfs => "df shows made-up sizes",
            Ext::Hardlink => "no hard links",
            Ext::Fsync => "fsync cannot reach the server's disk",
            Ext::Limits => "32 KiB requests",
            Ext::CopyData => "copies inside the mount go through this machine",
            // Only asked for without statvfs@openssh.com, whose absence the line names.
            Ext::Fstatvfs | Ext::Lsetstat | Ext::ExpandPath | Ext::SpaceAvailable => "",
            // Hashes have their own line (`remote/hash/`): other means may stand in.
            Ext::CheckFile | Ext::Md5Hash => "",
        }
    }
}

/// The order of SSH_FXP_SYMLINK's two paths. OpenSSH's server reads the target first, the
/// reverse of the draft; servers follow one or the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymlinkOrder {
    /// OpenSSH's: target, then link.
    TargetFirst,
    /// The draft's: link, then target.
    LinkFirst,
}

#[derive(Debug)]
pub struct Profile {
    /// The server's SSH identification (`SSH-2.0-OpenSSH_9.2p1 ...`), when known.
    pub banner: Option<String>,
    pub version: u32,
    pub symlink_order: SymlinkOrder,
    offered: [bool; ALL.len()],
    /// Offered but seen not to work: used no more on this mount.
    broken: [AtomicBool; ALL.len()],
    /// A mode or time change was refused (servers over object stores, read-only attribute
    /// policies): later ones are asked for at once, so that their answer reaches the call.
    setstat_refused: AtomicBool,
    /// LSTAT of a link made here answered the target's attributes (ProFTPD's LSTAT follows).
    lstat_follows: AtomicBool,
    /// Whether opening a file for writing empties it (0 unknown, 1 no, 2 yes).
    write_open_truncates: std::sync::atomic::AtomicU8,
    /// OpenSSH's own sftp-server (its extensions): none of the quirks probed for.
    openssh_sftp_server: bool,
    /// READLINK answers the link's resolved absolute path, not its target (ProFTPD).
    readlink_resolves: bool,
    /// Each open file is read as one stream: a READ elsewhere than where the last one ended
    /// reopens it (rclone's VFS without its cache), so a file gets no second read handle.
    reads_as_stream: bool,
}

/// Whether a server's `supported2` (or the like) says it switched `name` off: it lists
/// what it offers, and `name` is not among them. Without such a list, nothing is known.
fn extensions_off(hello: &[(Vec<u8>, Vec<u8>)], name: &str) -> bool {
    hello
        .iter()
        .find(|(k, _)| k == b"supported2")
        .is_some_and(|(_, v)| !v.windows(name.len()).any(|w| w == name.as_bytes()))
}

fn index(e: Ext) -> usize {
    ALL.iter().position(|&x| x == e).unwrap()
}

impl Profile {
    pub fn decide(banner: Option<&str>, version: u32, hello: &[(Vec<u8>, Vec<u8>)]) -> Profile {
        let value = |n: &str| {
            hello
                .iter()
                .find(|(k, _)| k == n.as_bytes())
                .map(|(_, v)| v.as_slice())
        };
        tracing::debug!(
            "the server offers: {}",
            hello
                .iter()
                .map(|(k, v)| format!(
                    "{}={}",
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(v).escape_default()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut offered = ALL.map(|e| value(e.name()).is_some());
        // ProFTPD answers space-available in every SFTP version, but lists it only from v5;
        // check-file too (on by default; in `supported2`, sent from v5).
        if banner.is_some_and(|b| b.contains("mod_sftp")) {
            offered[index(Ext::SpaceAvailable)] = true;
            offered[index(Ext::CheckFile)] |= !extensions_off(hello, "check-file");
        }
        // Servers list the draft's extensions under the names of their requests too.
        offered[index(Ext::CheckFile)] |=
            value("check-file-name").is_some() || value("check-file-handle").is_some();
        offered[index(Ext::Md5Hash)] |=
            value("md5-hash").is_some() || value("md5-hash-handle").is_some();
        let symlink_order = match value("symlink-order@rjk.greenend.org.uk") {
            // gesftpserver says which order it reads.
            Some(b"linkpath-targetpath") => SymlinkOrder::LinkFirst,
            Some(b"targetpath-linkpath") => SymlinkOrder::TargetFirst,
            // AsyncSSH reads OpenSSH's order only from OpenSSH and paramiko clients (it
            // offers OpenSSH's extensions too).
            _ if banner.is_some_and(|b| b.contains("AsyncSSH")) => SymlinkOrder::LinkFirst,
            // OpenSSH's sftp-server wherever it runs (Dropbear runs it too), and everyone who
            // copied it (Go's pkg/sftp, ProFTPD, most appliances).
            _ => SymlinkOrder::TargetFirst,
        };
        Profile {
            banner: banner.map(str::to_string),
            version,
            symlink_order,
            offered,
            broken: Default::default(),
            setstat_refused: AtomicBool::new(false),
            // ProFTPD's LSTAT follows links; others are found out at the first link made.
            lstat_follows: AtomicBool::new(banner.is_some_and(|b| b.contains("mod_sftp"))),
            write_open_truncates: std::sync::atomic::AtomicU8::new(0),
            openssh_sftp_server: value(Ext::Limits.name()).is_some()
                && value(Ext::PosixRename.name()).is_some(),
            readlink_resolves: banner.is_some_and(|b| b.contains("mod_sftp")),
            reads_as_stream: banner.is_some_and(|b| b.starts_with("SSH-2.0-rclone")),
        }
    }

    /// Whether `other` describes the same server (after a reconnect it may not).
    pub fn same_server(&self, other: &Profile) -> bool {
        self.banner == other.banner
            && self.version == other.version
            && self.offered == other.offered
            && self.symlink_order == other.symlink_order
    }

    /// Whether `e` may be used: offered, and not seen failing.
    pub fn has(&self, e: Ext) -> bool {
        let i = index(e);
        self.offered[i] && !self.broken[i].load(Ordering::Relaxed)
    }

    /// `err` came back from an offered extension `e`. If it says the extension does not work
    /// here (the server refuses the request itself), `e` is used no more on this mount, the
    /// log says so once, and the caller falls back as if it had never been offered.
    pub fn refused(&self, e: Ext, err: &RemoteError) -> bool {
        let refuses = match err {
            RemoteError::Status { code, .. } => match e {
                // Its answer is about the request, never about a file: any error means the
                // extension does not work (rclone offers it and answers failures).
                Ext::Statvfs | Ext::Fstatvfs | Ext::Limits | Ext::SpaceAvailable => true,
                // Errors about the files are real; these say the request itself is refused.
                _ => *code == SSH_FX_OP_UNSUPPORTED || *code == SSH_FX_BAD_MESSAGE,
            },
            _ => false,
        };
        if refuses && !self.broken[index(e)].swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the server offers {} but refuses it ({err}); doing without it: {}",
                e.name(),
                e.without()
            );
        }
        refuses
    }

    /// A mode or time change sent behind a file's writes came back refused.
    pub fn note_setstat_refused(&self) {
        if !self.setstat_refused.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the server refuses mode or time changes; they are no longer queued behind \
                 writes, so that the call asking for one gets the error"
            );
        }
    }

    /// A link just made read back as what it points to.
    pub fn note_lstat_follows(&self) {
        if !self.lstat_follows.swap(true, Ordering::Relaxed) {
            tracing::info!(
                "the server's LSTAT follows symlinks: names are stat'ed from their \
                 directory's listing, which shows links as links"
            );
        }
    }

    pub fn readlink_resolves(&self) -> bool {
        self.readlink_resolves
    }

    pub fn is_openssh_sftp_server(&self) -> bool {
        self.openssh_sftp_server
    }

    /// Whether opening a file for writing without truncation empties it, once known.
    pub fn write_open_truncates(&self) -> Option<bool> {
        match self.write_open_truncates.load(Ordering::Relaxed) {
            1 => Some(false),
            2 => Some(true),
            _ => None,
        }
    }

    pub fn note_write_open_truncates(&self, yes: bool) {
        let was = self
            .write_open_truncates
            .swap(if yes { 2 } else { 1 }, Ordering::Relaxed);
        if yes && was != 2 {
            tracing::warn!(
                "the server empties a file opened for writing (rclone serve sftp without \
                 --vfs-cache-mode writes?): appending to or writing into an existing file is \
                 refused (EOPNOTSUPP) so that its data is not lost; replacing it whole works"
            );
        }
    }

    pub fn reads_as_stream(&self) -> bool {
        self.reads_as_stream
    }

    pub fn lstat_follows(&self) -> bool {
        self.lstat_follows.load(Ordering::Relaxed)
    }

    pub fn setstat_refused(&self) -> bool {
        self.setstat_refused.load(Ordering::Relaxed)
    }

    /// One line for the log at mount: who the server is and what is degraded on it.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "server {}, SFTP version {}",
            self.banner.as_deref().unwrap_or("(no SSH banner)"),
            self.version
        );
        let missing: Vec<String> = ALL
            .iter()
            .filter(|&&e| !self.has(e) && !e.without().is_empty())
            .map(|&e| match e {
                Ext::Statvfs if self.has(Ext::SpaceAvailable) => format!(
                    "no {} (df shows the sizes space-available gives, made-up inode counts)",
                    e.name()
                ),
                _ => format!("no {} ({})", e.name(), e.without()),
            })
            .collect();
        if missing.is_empty() {
            s.push_str("; every extension sftpfs uses is there");
        } else {
            s.push_str("; ");
            s.push_str(&missing.join("; "));
        }
        if self.readlink_resolves {
            s.push_str(
                "; READLINK answers absolute paths: those inside the mount are shown relative",
            );
        }
        if self.reads_as_stream {
            s.push_str("; a file is read through one handle (the server reads files as streams)");
        }
        if self.symlink_order == SymlinkOrder::LinkFirst {
            s.push_str("; symlinks sent in the draft's order (link, then target)");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(names: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        names
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn proftpd_gets_space_available_without_listing_it() {
        let p = Profile::decide(Some("SSH-2.0-mod_sftp"), 3, &hello(&[("versions", "3")]));
        assert!(p.has(Ext::SpaceAvailable));
        assert!(p
            .describe()
            .contains("no statvfs@openssh.com (df shows the sizes space-available gives"));
        let p = Profile::decide(Some("SSH-2.0-OpenSSH_9.2p1"), 3, &[]);
        assert!(!p.has(Ext::SpaceAvailable));
        assert!(p.describe().contains("df shows made-up sizes"));
        let p = Profile::decide(None, 6, &hello(&[("space-available", "")]));
        assert!(p.has(Ext::SpaceAvailable), "offered");
    }

    #[test]
    fn only_rclone_reads_files_as_streams() {
        let p = Profile::decide(Some("SSH-2.0-rclone/v1.60.1"), 3, &[]);
        assert!(p.reads_as_stream());
        assert!(p.describe().contains("read through one handle"));
        let p = Profile::decide(Some("SSH-2.0-OpenSSH_9.2p1"), 3, &[]);
        assert!(!p.reads_as_stream());
    }

    #[test]
    fn symlink_order_by_server() {
        let openssh = hello(&[
            ("posix-rename@openssh.com", "1"),
            ("limits@openssh.com", "1"),
        ]);
        let p = Profile::decide(Some("SSH-2.0-OpenSSH_9.2p1"), 3, &openssh);
        assert_eq!(p.symlink_order, SymlinkOrder::TargetFirst);
        let p = Profile::decide(Some("SSH-2.0-dropbear_2022.83"), 3, &openssh);
        assert_eq!(p.symlink_order, SymlinkOrder::TargetFirst);
        let ges = hello(&[("symlink-order@rjk.greenend.org.uk", "linkpath-targetpath")]);
        let p = Profile::decide(Some("SSH-2.0-OpenSSH_9.2p1"), 3, &ges);
        assert_eq!(
            p.symlink_order,
            SymlinkOrder::LinkFirst,
            "the extension wins"
        );
        let p = Profile::decide(Some("SSH-2.0-AsyncSSH_2.24.1"), 3, &openssh);
        assert_eq!(
            p.symlink_order,
            SymlinkOrder::LinkFirst,
            "AsyncSSH offers OpenSSH's too"
        );
        let p = Profile::decide(
            Some("SSH-2.0-Go"),
            3,
            &hello(&[("statvfs@openssh.com", "2")]),
        );
        assert_eq!(p.symlink_order, SymlinkOrder::TargetFirst);
        assert_eq!(
            Profile::decide(None, 3, &[]).symlink_order,
            SymlinkOrder::TargetFirst
        );
    }

    #[test]
    fn a_refusing_extension_is_dropped_once() {
        let p = Profile::decide(
            None,
            3,
            &hello(&[("statvfs@openssh.com", "2"), ("hardlink@openssh.com", "1")]),
        );
        assert!(p.has(Ext::Statvfs) && p.has(Ext::Hardlink) && !p.has(Ext::Fsync));
        let failure = RemoteError::Status {
            code: SSH_FX_FAILURE,
            message: String::new(),
        };
        // A failure of a hard link may be about the files: the extension stays.
        assert!(!p.refused(Ext::Hardlink, &failure));
        assert!(p.has(Ext::Hardlink));
        let unsupported = RemoteError::Status {
            code: SSH_FX_OP_UNSUPPORTED,
            message: String::new(),
        };
        assert!(p.refused(Ext::Hardlink, &unsupported));
        assert!(!p.has(Ext::Hardlink));
        // statvfs answers about the filesystem: any error means it does not work.
        assert!(p.refused(Ext::Statvfs, &failure));
        assert!(!p.has(Ext::Statvfs));
        assert!(!p.refused(Ext::Statvfs, &RemoteError::ConnectionLost));
        assert!(p
            .describe()
            .contains("no statvfs@openssh.com (df shows made-up sizes)"));
    }
}
