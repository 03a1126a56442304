//! Where a mount's journal lives: `<journal_dir>/<id>/`, one directory per source (user,
//! host, port and absolute remote directory), private to its owner (0700; files 0600): it
//! holds file data. A `source` file names the source in clear; a running mount holds an
//! flock on `lock` (which says its pid), so that a second mount of the same source, or
//! `sftpfs replay`, cannot take a journal that is in use.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::Digest;

use super::log::segment_number;

/// The mount source a journal belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub user: String,
    pub host: String,
    pub port: u16,
    /// The absolute remote directory (the mount root, `subdir=` included).
    pub dir: Vec<u8>,
}

impl Source {
    /// A stable name for the source's directory: no characters a file name cannot take,
    /// and nothing to learn from it without the `source` file beside.
    pub fn id(&self) -> String {
        let mut h = sha2::Sha256::new();
        for part in [
            self.user.as_bytes(),
            self.host.as_bytes(),
            &self.port.to_be_bytes(),
            &self.dir,
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// `user@host:port:/dir`, as the `source` file and the messages say it.
    pub fn describe(&self) -> String {
        format!(
            "{}@{}:{}:{}",
            self.user,
            self.host,
            self.port,
            String::from_utf8_lossy(&self.dir)
        )
    }
}

/// A journal directory, locked for this process for as long as this lives.
pub struct JournalDir {
    pub path: PathBuf,
    pub source: Source,
    lock: File,
}

/// Makes `dir` (and its missing parents) private to its owner; an existing one is made so
/// if it is ours, refused if it is not.
fn private_dir(dir: &Path) -> Result<(), String> {
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| format!("cannot make {}: {e}", parent.display()))?;
        }
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot make {}: {e}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    use std::os::unix::fs::MetadataExt;
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(format!(
            "{} belongs to another user (uid {}): the journal holds file data and must be \
             yours alone; choose another with -o journal_dir=PATH",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make {} private: {e}", dir.display()))?;
    }
    Ok(())
}

impl JournalDir {
    /// The journal directory of `source` under `base`, made if missing, locked for this
    /// process. Refused while another process holds it (its pid named).
    pub fn open(base: &Path, source: &Source) -> Result<JournalDir, String> {
        private_dir(base)?;
        let path = base.join(source.id());
        private_dir(&path)?;
        let mut lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path.join("lock"))
            .map_err(|e| format!("cannot open {}: {e}", path.join("lock").display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&lock),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } != 0
        {
            let mut pid = String::new();
            let _ = lock.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(format!(
                "the journal of {} ({}) is in use by another sftpfs{}: unmount that one first \
                 (one mount per source may queue writes)",
                source.describe(),
                path.display(),
                if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                }
            ));
        }
        let _ = lock.set_len(0);
        let _ = lock.seek(std::io::SeekFrom::Start(0));
        let _ = writeln!(lock, "{}", std::process::id());
        let src = path.join("source");
        if !src.exists() {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&src)
                .map_err(|e| format!("cannot write {}: {e}", src.display()))?;
            writeln!(f, "{}", source.describe())
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", src.display()))?;
            File::open(&path)
                .and_then(|d| d.sync_all())
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(JournalDir {
            path,
            source: source.clone(),
            lock,
        })
    }

    /// Whether a journal of `source` is left under `base` (segments to replay).
    pub fn left_behind(base: &Path, source: &Source) -> bool {
        let path = base.join(source.id());
        std::fs::read_dir(path).is_ok_and(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_str().and_then(segment_number).is_some())
        })
    }

    /// The segments here, oldest first.
    pub fn segments(&self) -> Vec<u64> {
        let mut v: Vec<u64> = std::fs::read_dir(&self.path)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().to_str().and_then(segment_number))
            .collect();
        v.sort_unstable();
        v
    }

    /// A file that is not a segment of this format goes aside (`NAME.corrupt`), kept for
    /// whoever wants to look, out of replay's way.
    pub fn set_aside(&self, name: &str) -> PathBuf {
        let from = self.path.join(name);
        let to = self.path.join(format!("{name}.corrupt"));
        let _ = std::fs::rename(&from, &to);
        to
    }

    /// Nothing is left to send: the directory goes (at a clean unmount).
    pub fn remove(self) {
        let _ = std::fs::remove_file(self.path.join("source"));
        let _ = std::fs::remove_file(self.path.join("lock"));
        // Set-aside files stay, and with them the directory.
        let _ = std::fs::remove_dir(&self.path);
        drop(self.lock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "sftpfs-jdir-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ))
    }

    fn src(dir: &str) -> Source {
        Source {
            user: "u".into(),
            host: "h".into(),
            port: 22,
            dir: dir.as_bytes().to_vec(),
        }
    }

    #[test]
    fn each_source_has_its_own_private_directory_and_one_holder() {
        use std::os::unix::fs::MetadataExt;
        let base = tmp("a").join("state/sftpfs");
        assert_ne!(src("/a").id(), src("/b").id());
        assert_eq!(src("/a").id(), src("/a").id());
        let j = JournalDir::open(&base, &src("/a")).unwrap();
        assert_eq!(std::fs::metadata(&base).unwrap().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(&j.path).unwrap().mode() & 0o777, 0o700);
        let s = std::fs::read_to_string(j.path.join("source")).unwrap();
        assert_eq!(s, "u@h:22:/a\n");
        assert_eq!(
            std::fs::metadata(j.path.join("source")).unwrap().mode() & 0o777,
            0o600
        );
        let e = JournalDir::open(&base, &src("/a")).err().unwrap();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        // Another source is another journal.
        let other = JournalDir::open(&base, &src("/b")).unwrap();
        assert!(!JournalDir::left_behind(&base, &src("/a")));
        std::fs::write(j.path.join("00000001.seg"), b"x").unwrap();
        assert!(JournalDir::left_behind(&base, &src("/a")));
        assert_eq!(j.segments(), vec![1]);
        std::fs::remove_file(j.path.join("00000001.seg")).unwrap();
        j.remove();
        other.remove();
        assert!(JournalDir::open(&base, &src("/a")).is_ok());
        std::fs::remove_dir_all(
            tmp("a")
                .parent()
                .unwrap()
                .join(tmp("a").file_name().unwrap()),
        )
        .ok();
    }

    #[test]
    fn a_directory_open_to_others_is_made_private() {
        use std::os::unix::fs::MetadataExt;
        let base = tmp("b");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let j = JournalDir::open(&base, &src("/x")).unwrap();
        assert_eq!(std::fs::metadata(&base).unwrap().mode() & 0o777, 0o700);
        j.remove();
        std::fs::remove_dir_all(&base).unwrap();
    }
}
