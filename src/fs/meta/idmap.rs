//! Owner translation between the server's uids/gids and local ones, as sshfs's `idmap=`:
//!
//! - `none`: ids pass unchanged.
//! - `user`: the remote user's uid and gid (those of the remote home directory, as sshfs
//!   learns them) show as the mounting user's, and a `chown` to the mounting user's ids sends
//!   the remote user's. Other ids pass unchanged.
//! - `file`: `uidfile=` / `gidfile=` list `name:remote_id` lines (or passwd/group lines); each
//!   name is looked up in the local user/group database, which gives the local id. Ids without
//!   a mapping follow `nomap=`: `ignore` passes them unchanged; `error` refuses a `chown` to
//!   them (`EPERM`) and shows a remote owner without a mapping as the overflow id 65534
//!   (`nobody`/`nogroup`), never as an unrelated local user. (sshfs fails the `stat` itself
//!   with `EPERM` there, which makes whole directories unlistable.) A kind of id (uid or gid)
//!   without a file passes unchanged.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::config::NoMap;

/// The id shown for a remote owner that has no local mapping under `nomap=error`: the kernel's
/// overflow uid/gid, `nobody` and `nogroup` on Debian.
pub const OVERFLOW_ID: u32 = 65534;

/// One direction-pair of id translation (uids, or gids).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IdTable {
    to_local: HashMap<u32, u32>,
    to_remote: HashMap<u32, u32>,
}

impl IdTable {
    /// From (name, remote id) pairs; `local` finds a name's local id. A name that is not known
    /// locally maps nothing (as in sshfs), and is returned in the second list.
    pub fn from_names(
        entries: &[(String, u32)],
        local: impl Fn(&str) -> Option<u32>,
    ) -> (IdTable, Vec<String>) {
        let mut table = IdTable::default();
        let mut unknown = Vec::new();
        for (name, remote) in entries {
            match local(name) {
                Some(l) => {
                    table.to_local.insert(*remote, l);
                    table.to_remote.insert(l, *remote);
                }
                None => unknown.push(name.clone()),
            }
        }
        (table, unknown)
    }

    pub fn is_empty(&self) -> bool {
        self.to_local.is_empty()
    }
}

/// How owners are translated; cheap to clone.
#[derive(Debug, Clone, Default)]
pub enum IdMap {
    /// `idmap=none`.
    #[default]
    None,
    /// `idmap=user`: (remote uid, remote gid) ↔ (local uid, local gid).
    User {
        remote: (u32, u32),
        local: (u32, u32),
    },
    /// `idmap=file`; `None` for a kind of id without a file.
    File {
        uids: Option<Arc<IdTable>>,
        gids: Option<Arc<IdTable>>,
        nomap: NoMap,
    },
}

impl IdMap {
    /// The local uid and gid to show for a remote owner.
    pub fn to_local(&self, uid: u32, gid: u32) -> (u32, u32) {
        match self {
            IdMap::None => (uid, gid),
            IdMap::User { remote, local } => (
                if uid == remote.0 { local.0 } else { uid },
                if gid == remote.1 { local.1 } else { gid },
            ),
            IdMap::File { uids, gids, nomap } => {
                let map = |t: &Option<Arc<IdTable>>, id: u32| match t {
                    None => id,
                    Some(t) => match (t.to_local.get(&id), nomap) {
                        (Some(&l), _) => l,
                        (None, NoMap::Ignore) => id,
                        (None, NoMap::Error) => OVERFLOW_ID,
                    },
                };
                (map(uids, uid), map(gids, gid))
            }
        }
    }

    /// The server's uid and gid for the ids a local `chown` asks for (`None` leaves one
    /// unchanged); `EPERM` for an id without a mapping under `nomap=error`.
    pub fn to_remote(
        &self,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<(Option<u32>, Option<u32>), i32> {
        match self {
            IdMap::None => Ok((uid, gid)),
            IdMap::User { remote, local } => Ok((
                uid.map(|u| if u == local.0 { remote.0 } else { u }),
                gid.map(|g| if g == local.1 { remote.1 } else { g }),
            )),
            IdMap::File { uids, gids, nomap } => {
                let map = |t: &Option<Arc<IdTable>>, id: Option<u32>| -> Result<_, i32> {
                    let (Some(t), Some(id)) = (t, id) else {
                        return Ok(id);
                    };
                    match (t.to_remote.get(&id), nomap) {
                        (Some(&r), _) => Ok(Some(r)),
                        (None, NoMap::Ignore) => Ok(Some(id)),
                        (None, NoMap::Error) => Err(libc::EPERM),
                    }
                };
                Ok((map(uids, uid)?, map(gids, gid)?))
            }
        }
    }
}

/// `idmap=user` for the remote user whose uid/gid are `remote` (the owner of the remote home
/// directory) and the user running sftpfs (real uid and gid, as sshfs).
pub fn for_user(remote: Option<(u32, u32)>) -> Result<IdMap, String> {
    let remote = remote.ok_or(
        "-o idmap=user: the server does not say who owns the remote home directory, so the \
         remote user's ids are unknown",
    )?;
    let local = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    Ok(IdMap::User { remote, local })
}

/// `idmap=file` from `uidfile=` / `gidfile=` (at least one), names resolved in the local user
/// and group database. Names unknown here are skipped with a warning, as sshfs does.
pub fn from_files(
    uidfile: Option<&Path>,
    gidfile: Option<&Path>,
    nomap: NoMap,
) -> Result<IdMap, String> {
    use nix::unistd::{Group, User};
    fn load(
        file: Option<&Path>,
        kind: &str,
        local: impl Fn(&str) -> Option<u32>,
    ) -> Result<Option<Arc<IdTable>>, String> {
        let Some(file) = file else { return Ok(None) };
        let (table, unknown) = IdTable::from_names(&read_id_file(file)?, local);
        if !unknown.is_empty() {
            tracing::warn!(
                "{}: no local {kind} named {}; those ids stay unmapped",
                file.display(),
                unknown.join(", ")
            );
        }
        Ok(Some(Arc::new(table)))
    }
    let uids = load(uidfile, "user", |n| {
        User::from_name(n).ok().flatten().map(|u| u.uid.as_raw())
    })?;
    let gids = load(gidfile, "group", |n| {
        Group::from_name(n).ok().flatten().map(|g| g.gid.as_raw())
    })?;
    Ok(IdMap::File { uids, gids, nomap })
}

/// The (name, remote id) pairs of a `uidfile=`/`gidfile=`: `name:id` lines, or lines of
/// passwd/group format (`name:x:id:...`); blank lines and `#` comments are skipped. Errors
/// name the file and line.
pub fn parse_id_file(text: &str, file: &Path) -> Result<Vec<(String, u32)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(':').collect();
        let (name, id) = match fields.len() {
            2 => (fields[0], fields[1]),
            3.. => (fields[0], fields[2]),
            _ => {
                return Err(format!(
                    "{}:{}: expected name:id, got '{line}'",
                    file.display(),
                    n + 1
                ))
            }
        };
        let id: u32 = id
            .trim()
            .parse()
            .map_err(|_| format!("{}:{}: invalid id '{id}'", file.display(), n + 1))?;
        if name.is_empty() {
            return Err(format!("{}:{}: empty name", file.display(), n + 1));
        }
        out.push((name.to_string(), id));
    }
    Ok(out)
}

/// Reads a `uidfile=`/`gidfile=`. As sshfs, refuses a file that another user could have
/// written: it must belong to the mounting user (or root) and not be group/world-writable.
pub fn read_id_file(file: &Path) -> Result<Vec<(String, u32)>, String> {
    use std::os::unix::fs::MetadataExt;
    let shown = file.display();
    let meta = std::fs::metadata(file).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let me = nix::unistd::getuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "{shown} is owned by uid {}, not by you (uid {me}) or root; refusing to use it",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{shown} is writable by other users; refusing to use it (chmod go-w {shown})"
        ));
    }
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {shown}: {e}"))?;
    parse_id_file(&text, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, u32)], local: &[(&str, u32)]) -> Arc<IdTable> {
        let entries: Vec<(String, u32)> = pairs.iter().map(|(n, i)| (n.to_string(), *i)).collect();
        let local: HashMap<String, u32> = local.iter().map(|(n, i)| (n.to_string(), *i)).collect();
        let (t, _) = IdTable::from_names(&entries, |n| local.get(n).copied());
        Arc::new(t)
    }

    #[test]
    fn none_passes_ids() {
        assert_eq!(IdMap::None.to_local(5, 6), (5, 6));
        assert_eq!(IdMap::None.to_remote(Some(5), None), Ok((Some(5), None)));
    }

    #[test]
    fn user_maps_the_remote_user_both_ways() {
        let m = IdMap::User {
            remote: (1000, 100),
            local: (0, 0),
        };
        assert_eq!(m.to_local(1000, 100), (0, 0));
        assert_eq!(m.to_local(1001, 100), (1001, 0));
        assert_eq!(m.to_local(33, 33), (33, 33));
        assert_eq!(m.to_remote(Some(0), Some(0)), Ok((Some(1000), Some(100))));
        assert_eq!(m.to_remote(Some(7), None), Ok((Some(7), None)));
    }

    #[test]
    fn file_maps_by_name() {
        // remote alice=1500, bob=1501, carol=1502 (no local carol); local alice=1000, bob=1001
        let uids = table(
            &[("alice", 1500), ("bob", 1501), ("carol", 1502)],
            &[("alice", 1000), ("bob", 1001)],
        );
        let gids = table(&[("staff", 50)], &[("staff", 20)]);
        let m = IdMap::File {
            uids: Some(uids.clone()),
            gids: Some(gids.clone()),
            nomap: NoMap::Error,
        };
        assert_eq!(m.to_local(1500, 50), (1000, 20));
        assert_eq!(m.to_local(1501, 51), (1001, OVERFLOW_ID));
        assert_eq!(m.to_local(1502, 50), (OVERFLOW_ID, 20));
        assert_eq!(
            m.to_remote(Some(1001), Some(20)),
            Ok((Some(1501), Some(50)))
        );
        assert_eq!(m.to_remote(Some(1002), None), Err(libc::EPERM));
        assert_eq!(m.to_remote(None, Some(21)), Err(libc::EPERM));
        assert_eq!(m.to_remote(None, None), Ok((None, None)));

        let m = IdMap::File {
            uids: Some(uids),
            gids: None,
            nomap: NoMap::Ignore,
        };
        assert_eq!(m.to_local(1502, 77), (1502, 77));
        assert_eq!(m.to_remote(Some(1002), Some(9)), Ok((Some(1002), Some(9))));
        assert_eq!(m.to_remote(Some(1000), None), Ok((Some(1500), None)));
    }

    #[test]
    fn unknown_local_names_are_reported() {
        let entries = vec![("alice".to_string(), 1), ("zed".to_string(), 2)];
        let (t, unknown) = IdTable::from_names(&entries, |n| (n == "alice").then_some(10));
        assert_eq!(unknown, ["zed"]);
        assert!(!t.is_empty());
    }

    #[test]
    fn id_file_formats() {
        let f = Path::new("/etc/uids");
        let text =
            "# remote users\nalice:1500\n\n  bob:1501  \nwww-data:x:33:33:www:/var/www:/bin/sh\n";
        assert_eq!(
            parse_id_file(text, f).unwrap(),
            [
                ("alice".to_string(), 1500),
                ("bob".to_string(), 1501),
                ("www-data".to_string(), 33)
            ]
        );
        assert_eq!(
            parse_id_file("alice\n", f).unwrap_err(),
            "/etc/uids:1: expected name:id, got 'alice'"
        );
        assert_eq!(
            parse_id_file("ok:1\nalice:x1\n", f).unwrap_err(),
            "/etc/uids:2: invalid id 'x1'"
        );
        assert!(parse_id_file(":5\n", f).unwrap_err().contains("empty name"));
    }

    #[test]
    fn id_file_must_not_be_writable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("sftpfs-idmap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("uids");
        std::fs::write(&f, "alice:1\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_id_file(&f).unwrap(), [("alice".to_string(), 1)]);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(read_id_file(&f)
            .unwrap_err()
            .contains("writable by other users"));
        assert!(read_id_file(&dir.join("missing"))
            .unwrap_err()
            .starts_with("cannot read"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
