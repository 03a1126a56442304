//! Directory listings: read whole at opendir (one READDIR stream), served by offset.

use fuser::{FileAttr, FileType};

use super::attr::file_type;
use super::handle::DirListing;
use super::inode::{join, parent_of, ROOT_INO};
use super::{FsError, FsResult};
use crate::remote::Attrs;

/// One entry handed to the kernel. `offset` is where the listing continues after it.
pub struct DirItem<'a> {
    pub ino: u64,
    pub offset: u64,
    pub kind: FileType,
    pub name: &'a [u8],
    /// Attributes from READDIR, for readdirplus.
    pub attr: FileAttr,
}

impl super::Filesystem {
    pub async fn opendir(&self, ino: u64) -> FsResult<u64> {
        let path = self.path_of(ino)?;
        let mut entries = self.sftp.read_dir_all(&self.remote(&path)).await?;
        entries.retain(|e| e.name != b"." && e.name != b".." && !e.name.contains(&b'/'));
        {
            let mut t = self.inodes.lock().unwrap();
            for e in &entries {
                let child = t.ino_for(&join(&path, &e.name));
                if let (Some(n), Some(l)) = (t.get_mut(child), e.nlink()) {
                    n.nlink = Some(l);
                }
            }
        }
        Ok(self.dirs.insert(DirListing { ino, entries }))
    }

    /// Feeds entries from `offset` to `sink` until it returns false (the kernel's buffer is
    /// full). With `plus`, each entry accepted counts as a lookup, as the kernel takes one.
    pub fn readdir(
        &self,
        fh: u64,
        offset: u64,
        plus: bool,
        mut sink: impl FnMut(DirItem) -> bool,
    ) -> FsResult<()> {
        let d = self.dirs.get(fh).ok_or(FsError::new(libc::EBADF))?;
        let mut t = self.inodes.lock().unwrap();
        let path = t.path(d.ino).unwrap_or_default();
        let dir_attrs = Attrs {
            permissions: Some(libc::S_IFDIR | 0o755),
            ..Attrs::default()
        };
        for i in offset as usize..d.entries.len() + 2 {
            let accepted = match i {
                0 | 1 => {
                    let ino = if i == 0 {
                        d.ino
                    } else if d.ino == ROOT_INO {
                        ROOT_INO
                    } else {
                        t.ino_for(parent_of(&path))
                    };
                    sink(DirItem {
                        ino,
                        offset: i as u64 + 1,
                        kind: FileType::Directory,
                        name: if i == 0 { b"." } else { b".." },
                        attr: self.policy.file_attr(ino, &dir_attrs, None),
                    })
                }
                _ => {
                    let e = &d.entries[i - 2];
                    let child = join(&path, &e.name);
                    let ino = t.ino_for(&child);
                    let mode = e.attrs.permissions.unwrap_or(libc::S_IFREG);
                    let nlink = e.nlink().or_else(|| t.get(ino).and_then(|n| n.nlink));
                    let ok = sink(DirItem {
                        ino,
                        offset: i as u64 + 1,
                        kind: file_type(mode),
                        name: &e.name,
                        attr: self.policy.file_attr(ino, &e.attrs, nlink),
                    });
                    if ok && plus {
                        t.lookup(&child);
                    }
                    ok
                }
            };
            if !accepted {
                break;
            }
        }
        Ok(())
    }

    pub fn releasedir(&self, fh: u64) {
        self.dirs.remove(fh);
    }
}
