//! [`TempDir`]: a temp dir removed on drop, after detaching any mount left under it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::mountinfo::{detach, mounts_under};
use super::unique;

/// A directory under `std::env::temp_dir()`, removed on drop (after detaching any mount
/// still left under it, so that a failed test can never make the removal recurse into a mount).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let base = fs::canonicalize(std::env::temp_dir()).expect("temp dir");
        let path = base.join(unique(&format!("sftpfs-test-{tag}")));
        fs::create_dir(&path).expect("create temp dir");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir { path }
    }

    /// A temp dir under `base` (another filesystem, such as /dev/shm).
    pub fn in_dir(base: &str, tag: &str) -> TempDir {
        let path = Path::new(base).join(unique(&format!("sftpfs-test-{tag}")));
        fs::create_dir(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        for m in mounts_under(&self.path) {
            eprintln!("harness: detaching leftover mount {}", m.display());
            detach(&m);
        }
        if mounts_under(&self.path).is_empty() {
            let _ = fs::remove_dir_all(&self.path);
        } else {
            eprintln!(
                "harness: leaving {} behind: still mounted",
                self.path.display()
            );
        }
    }
}
