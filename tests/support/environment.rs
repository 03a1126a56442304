//! The check that the integration tests can run here (root, FUSE, OpenSSH, the binary).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;

use super::{binary, SSHD};

/// Fails loudly when the tests cannot run here: they need root, `/dev/fuse`, OpenSSH's sshd
/// and fuse3's `fusermount3`. Never skip silently.
pub fn require_environment() {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    let checked = CHECK.get_or_init(|| {
        let mut missing = Vec::new();
        if unsafe { libc::geteuid() } != 0 {
            missing.push("root (the tests mount FUSE filesystems and run sshd)".to_string());
        }
        for (path, what) in [
            ("/dev/fuse", "/dev/fuse (FUSE kernel support)"),
            (SSHD, "/usr/sbin/sshd (Debian package openssh-server)"),
            (
                "/usr/bin/ssh-keygen",
                "ssh-keygen (Debian package openssh-client)",
            ),
            ("/usr/bin/fusermount3", "fusermount3 (Debian package fuse3)"),
        ] {
            if !Path::new(path).exists() {
                missing.push(what.to_string());
            }
        }
        let bin = binary();
        if !bin.exists() {
            missing.push(format!("the binary under test {}", bin.display()));
        }
        if !missing.is_empty() {
            return Err(format!(
                "\n\nsftpfs integration tests cannot run here; missing: {}.\n\
                 Run them as root on a machine with FUSE and OpenSSH (see .ci/run).\n",
                missing.join(", ")
            ));
        }
        // Orphans (the daemon left by a background mount) are re-parented to this process,
        // so that its exit status can be collected with waitpid.
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
        if !Path::new("/run/sshd").exists() {
            // sshd's privilege separation directory.
            let _ = fs::create_dir_all("/run/sshd");
            let _ = fs::set_permissions("/run/sshd", fs::Permissions::from_mode(0o755));
        }
        Ok(())
    });
    if let Err(why) = checked {
        panic!("{why}");
    }
}
