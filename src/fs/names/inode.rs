//! Inode numbers ↔ remote paths, with the kernel's lookup counts.
//!
//! SFTP has no inode numbers, so a node's number is derived from its path below the mount
//! root (a stable hash, probed on collision): the same file gets the same number after a
//! remount, and `readdir` can report numbers without allocating nodes. A node keeps its number
//! when renamed for as long as the kernel remembers it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const ROOT_INO: u64 = 1;

/// Path of a node relative to the mount root, without a leading slash; empty for the root.
pub type RelPath = Vec<u8>;

#[derive(Debug)]
pub struct Node {
    /// Every name this node is known by (several after a hard link). The first is used for
    /// remote requests. Empty once all names are unlinked.
    pub paths: Vec<RelPath>,
    /// Lookups the kernel holds on this node.
    pub lookups: u64,
    /// Open file handles on this node; an unlinked node lives while any is open.
    pub open: u32,
    /// Link count learned from the server's long names or our own `link`.
    pub nlink: Option<u32>,
    /// (size, mtime) when the kernel last cached the file's pages: unchanged at the next
    /// open, the pages may stay.
    pub version: Option<(Option<u64>, Option<u32>)>,
    /// File type bits (`S_IFMT`) last seen, 0 when unknown.
    pub kind: u32,
    /// The size local writes and truncates give the file while the server may not have
    /// caught up (write-behind): shown instead of the server's until it has.
    pub local_size: Option<u64>,
    /// Its link count went doubtful (see `forget_unknown_links`): the next stat learns it
    /// from a listing, as LSTAT does not carry one.
    pub relist: bool,
    /// Links and removals of it on their way to the server: listings answered meanwhile may
    /// already count them, and the local update that follows counts them again.
    pub changing: u32,
}

impl Node {
    pub fn path(&self) -> Option<&RelPath> {
        self.paths.first()
    }
}

/// See [`InodeTable::begin_change`].
pub struct ChangeGuard {
    table: Arc<Mutex<InodeTable>>,
    ino: Option<u64>,
}

impl Drop for ChangeGuard {
    fn drop(&mut self) {
        if let Some(ino) = self.ino {
            if let Some(n) = self.table.lock().unwrap().nodes.get_mut(&ino) {
                n.changing = n.changing.saturating_sub(1);
            }
        }
    }
}

/// See [`InodeTable::begin_attr_change`].
pub struct AttrChangeGuard {
    table: Arc<Mutex<InodeTable>>,
    ino: u64,
}

impl Drop for AttrChangeGuard {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap();
        if let Some(c) = t.changes.get_mut(&self.ino) {
            c.done += 1;
            c.last = std::time::Instant::now();
        }
    }
}

/// Where a node's changes stood: (begun, done).
pub type AttrMark = Option<(u64, u64)>;

/// The changes this mount began and finished on a file (every queued write and attribute
/// change until answered, a truncating open, a setattr), on any connection: attributes read
/// while one was on its way may predate it. See [`InodeTable::begin_attr_change`].
#[derive(Debug)]
struct ChangeCount {
    begun: u64,
    done: u64,
    last: std::time::Instant,
}

/// Counts of changes are kept apart from the nodes, which the kernel may forget (and a name
/// make again under the same number) while a change is on its way. One with nothing on its
/// way is dropped once it has been idle this long, far longer than any request can wait for
/// its answer, so that no mark taken before it still awaits an answer.
const CHANGES_IDLE: std::time::Duration = std::time::Duration::from_secs(600);
/// Counts kept before idle ones are looked for.
const CHANGES_KEPT: usize = 4096;

#[derive(Debug, Default)]
pub struct InodeTable {
    nodes: HashMap<u64, Node>,
    by_path: HashMap<RelPath, u64>,
    changes: HashMap<u64, ChangeCount>,
    /// How many counts trigger a look for idle ones.
    prune_changes_at: usize,
    /// Counts looked at by those looks, all told.
    prune_scanned: u64,
}

/// FNV-1a, 64 bit: stable across builds and platforms, unlike std's hasher.
fn path_hash(path: &[u8], salt: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for &b in path {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

pub fn join(parent: &[u8], name: &[u8]) -> RelPath {
    if parent.is_empty() {
        name.to_vec()
    } else {
        let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
        p.extend_from_slice(parent);
        p.push(b'/');
        p.extend_from_slice(name);
        p
    }
}

/// Whether `path` is `top` or below it ("" is the top of everything).
pub fn within(path: &[u8], top: &[u8]) -> bool {
    top.is_empty()
        || path
            .strip_prefix(top)
            .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
}

/// The parent directory of a relative path ("" for top-level names).
pub fn parent_of(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[..i],
        None => &[],
    }
}

impl InodeTable {
    pub fn new() -> Self {
        let mut t = InodeTable::default();
        t.nodes.insert(
            ROOT_INO,
            Node {
                paths: vec![Vec::new()],
                lookups: 1,
                open: 0,
                nlink: None,
                version: None,
                kind: libc::S_IFDIR,
                local_size: None,
                relist: false,
                changing: 0,
            },
        );
        t.by_path.insert(Vec::new(), ROOT_INO);
        t
    }

    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Node> {
        self.nodes.get_mut(&ino)
    }

    /// The path used for remote requests on `ino`, if it still has a name.
    pub fn path(&self, ino: u64) -> Option<RelPath> {
        self.nodes.get(&ino).and_then(|n| n.path().cloned())
    }

    /// The number `path` has or would get, without creating a node.
    pub fn ino_for(&self, path: &[u8]) -> u64 {
        if let Some(&ino) = self.by_path.get(path) {
            return ino;
        }
        let mut salt = 0;
        loop {
            let h = path_hash(path, salt);
            if h > ROOT_INO && !self.nodes.contains_key(&h) {
                return h;
            }
            salt += 1;
        }
    }

    /// Records that the kernel was handed an entry for `path`; returns its number.
    pub fn lookup(&mut self, path: &[u8]) -> u64 {
        let ino = self.ino_for(path);
        let node = self.nodes.entry(ino).or_insert_with(|| Node {
            paths: vec![path.to_vec()],
            lookups: 0,
            open: 0,
            nlink: None,
            version: None,
            kind: 0,
            local_size: None,
            relist: false,
            changing: 0,
        });
        node.lookups += 1;
        self.by_path.insert(path.to_vec(), ino);
        ino
    }

    /// The kernel dropped `n` references; the node goes when nothing refers to it.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            if node.lookups == 0 && node.open == 0 {
                self.remove(ino);
            }
        }
    }

    fn remove(&mut self, ino: u64) {
        if let Some(node) = self.nodes.remove(&ino) {
            for p in node.paths {
                if self.by_path.get(&p) == Some(&ino) {
                    self.by_path.remove(&p);
                }
            }
        }
    }

    pub fn open(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.open += 1;
        }
    }

    pub fn release(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.open = n.open.saturating_sub(1);
            if n.open == 0 && n.lookups == 0 && ino != ROOT_INO {
                self.remove(ino);
            }
        }
    }

    /// `path` was removed on the server. Its node keeps working through open handles, with
    /// a link count of 0 once its last name is gone, as on a local disk.
    pub fn unlink(&mut self, path: &[u8]) {
        if let Some(ino) = self.by_path.remove(path) {
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.paths.retain(|p| p != path);
                n.nlink = match n.nlink {
                    Some(l) => Some(l.saturating_sub(1)),
                    None if n.paths.is_empty() => Some(0),
                    None => None,
                };
            }
        }
    }

    /// Every name of the file at `path` known here (itself first), and whether the file
    /// has more links than that: hard links made on the server are not known by name.
    pub fn names(&self, path: &[u8]) -> (Vec<RelPath>, bool) {
        let node = self.by_path.get(path).and_then(|i| self.nodes.get(i));
        let Some(n) = node.filter(|n| n.paths.len() > 1 || n.nlink.is_some_and(|l| l > 1)) else {
            return (vec![path.to_vec()], false);
        };
        let mut all = vec![path.to_vec()];
        all.extend(n.paths.iter().filter(|p| p.as_slice() != path).cloned());
        let more = n.nlink.is_some_and(|l| l as usize > all.len());
        (all, more)
    }

    /// A file with links not known by name changed: link counts learned from listings may
    /// now be wrong for any file with several links, so those are forgotten. Counts of
    /// files whose every name is known here stay.
    pub fn forget_unknown_links(&mut self) {
        for n in self.nodes.values_mut() {
            if n.nlink.is_some_and(|l| l as usize > n.paths.len().max(1)) {
                n.nlink = None;
                n.relist = true;
            }
        }
    }

    /// A change of `ino` outside one handle's queue is on its way until the guard goes.
    pub fn begin_attr_change(table: &Arc<Mutex<InodeTable>>, ino: u64) -> AttrChangeGuard {
        let mut t = table.lock().unwrap();
        if t.changes.len() >= t.prune_changes_at {
            t.prune_scanned += t.changes.len() as u64;
            t.changes
                .retain(|_, c| c.begun != c.done || c.last.elapsed() < CHANGES_IDLE);
            // Looked at again once it doubled: pruning stays linear in the changes made.
            t.prune_changes_at = (t.changes.len() * 2).max(CHANGES_KEPT);
        }
        let c = t.changes.entry(ino).or_insert(ChangeCount {
            begun: 0,
            done: 0,
            last: std::time::Instant::now(),
        });
        c.begun += 1;
        c.last = std::time::Instant::now();
        AttrChangeGuard {
            table: table.clone(),
            ino,
        }
    }

    pub fn attr_mark(&self, ino: u64) -> AttrMark {
        Some(self.changes.get(&ino).map_or((0, 0), |c| (c.begun, c.done)))
    }

    /// Whether a change of `ino` (a queued write, a time set) is on its way to the server:
    /// what the server says of the file meanwhile may be from before it.
    pub fn change_on_its_way(&self, ino: u64) -> bool {
        self.changes.get(&ino).is_some_and(|c| c.begun != c.done)
    }

    /// No change of `ino` was on its way at `mark`, nor began since: attributes read in
    /// between are current.
    pub fn quiet_since(&self, ino: u64, mark: AttrMark) -> bool {
        mark.is_some_and(|(begun, done)| begun == done) && self.attr_mark(ino) == mark
    }

    /// Whether attributes read by a request asked at `mark` are the file's now. A plain
    /// question (`by_change` false) needs `quiet_since`: a change on its way on another
    /// connection may land after it was answered. The answer of a change (its own guard on
    /// its way, the file's earlier writes drained or queued before it on one handle) is
    /// current if no other change began since and only it is still on its way.
    pub fn answer_current(&self, ino: u64, mark: AttrMark, by_change: bool) -> bool {
        if !by_change {
            return self.quiet_since(ino, mark);
        }
        match (mark, self.attr_mark(ino)) {
            (Some((begun, _)), Some((now_begun, now_done))) => {
                now_begun == begun && now_done + 1 == now_begun
            }
            _ => false,
        }
    }

    /// Listings stop teaching the link count of the file at `path` until the returned
    /// guard goes, after the change's local update (see `Node::changing`).
    pub fn begin_change(table: &Arc<Mutex<InodeTable>>, path: &[u8]) -> ChangeGuard {
        let mut t = table.lock().unwrap();
        let ino = t.by_path.get(path).copied();
        if let Some(n) = ino.and_then(|i| t.nodes.get_mut(&i)) {
            n.changing += 1;
        }
        ChangeGuard {
            table: table.clone(),
            ino,
        }
    }

    /// Whether a listing may set this node's link count.
    pub fn learns_links(&self, ino: u64) -> bool {
        self.nodes.get(&ino).is_some_and(|n| n.changing == 0)
    }

    /// A new name for an existing node (hard link).
    pub fn link(&mut self, ino: u64, path: &[u8]) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.paths.push(path.to_vec());
            n.nlink = Some(n.nlink.unwrap_or(1) + 1);
            self.by_path.insert(path.to_vec(), ino);
        }
    }

    /// `from` was renamed to `to` on the server: whatever was at `to` loses that name, and the
    /// moved node and everything below it keep their numbers under the new paths.
    pub fn rename(&mut self, from: &[u8], to: &[u8]) {
        if from == to {
            return;
        }
        self.unlink(to);
        let mut prefix = from.to_vec();
        prefix.push(b'/');
        let moved: Vec<(RelPath, u64)> = self
            .by_path
            .iter()
            .filter(|(p, _)| p.as_slice() == from || p.starts_with(&prefix))
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        for (old, ino) in moved {
            let new = [to, &old[from.len()..]].concat();
            self.by_path.remove(&old);
            self.by_path.insert(new.clone(), ino);
            if let Some(n) = self.nodes.get_mut(&ino) {
                for p in n.paths.iter_mut() {
                    if *p == old {
                        *p = new.clone();
                    }
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Every name the kernel may hold at or below `path` ("" for all): (parent's number,
    /// name, number). The root has no parent and is not among them.
    pub fn names_under(&self, path: &[u8]) -> Vec<(u64, Vec<u8>, u64)> {
        self.by_path
            .iter()
            .filter(|(p, _)| !p.is_empty() && within(p, path))
            .filter_map(|(p, &ino)| {
                let parent = *self.by_path.get(parent_of(p))?;
                Some((parent, crate::fs::meta::cache::name_of(p).to_vec(), ino))
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_and_follow_renames() {
        let mut t = InodeTable::new();
        let a = t.lookup(b"dir/a");
        let d = t.lookup(b"dir");
        assert_eq!(t.lookup(b"dir/a"), a);
        // A fresh table (a remount) gives the same numbers.
        assert_eq!(InodeTable::new().ino_for(b"dir/a"), a);
        t.rename(b"dir", b"moved");
        assert_eq!(t.path(a).unwrap(), b"moved/a");
        assert_eq!(t.path(d).unwrap(), b"moved");
        assert_eq!(t.ino_for(b"moved/a"), a);
        // A new file at the old path must not take the moved node's number.
        let n = t.lookup(b"dir/a");
        assert_ne!(n, a);
        // Prefix matching is by component, not by string.
        let x = t.lookup(b"movedx");
        t.rename(b"moved", b"m2");
        assert_eq!(t.path(x).unwrap(), b"movedx");
    }

    #[test]
    fn rename_over_detaches_the_target() {
        let mut t = InodeTable::new();
        let a = t.lookup(b"a");
        let b = t.lookup(b"b");
        t.rename(b"a", b"b");
        assert_eq!(t.ino_for(b"b"), a);
        assert!(t.path(b).is_none());
    }

    #[test]
    fn forget_removes_and_open_keeps_alive() {
        let mut t = InodeTable::new();
        let a = t.lookup(b"a");
        t.lookup(b"a");
        t.forget(a, 1);
        assert!(t.get(a).is_some());
        t.open(a);
        t.unlink(b"a");
        t.forget(a, 1);
        assert!(t.get(a).is_some(), "open handle keeps the node");
        t.release(a);
        assert!(t.get(a).is_none());
        assert_eq!(t.len(), 1);
        t.forget(ROOT_INO, 100);
        assert!(t.get(ROOT_INO).is_some());
    }

    #[test]
    fn an_answer_is_current_only_if_no_change_was_on_its_way_or_began_since() {
        let t = Arc::new(Mutex::new(InodeTable::new()));
        let ino = t.lock().unwrap().lookup(b"f");
        let asked = t.lock().unwrap().attr_mark(ino);
        assert!(t.lock().unwrap().quiet_since(ino, asked));
        // A write begins and is answered while the question travels.
        drop(InodeTable::begin_attr_change(&t, ino));
        assert!(!t.lock().unwrap().quiet_since(ino, asked));
        // A write on its way when asked, answered before the answer came.
        let w = InodeTable::begin_attr_change(&t, ino);
        let asked = t.lock().unwrap().attr_mark(ino);
        drop(w);
        assert!(!t.lock().unwrap().quiet_since(ino, asked));
        // A change's own answer: current while it alone is on its way.
        let own = InodeTable::begin_attr_change(&t, ino);
        let asked = t.lock().unwrap().attr_mark(ino);
        assert!(t.lock().unwrap().answer_current(ino, asked, true));
        let other = InodeTable::begin_attr_change(&t, ino);
        assert!(!t.lock().unwrap().answer_current(ino, asked, true));
        drop((own, other));
        // The node forgotten and made again: the count of its changes goes on.
        let w = InodeTable::begin_attr_change(&t, ino);
        t.lock().unwrap().forget(ino, 1);
        let ino2 = t.lock().unwrap().lookup(b"f");
        assert_eq!(ino, ino2);
        let asked = t.lock().unwrap().attr_mark(ino);
        assert!(
            !t.lock().unwrap().quiet_since(ino, asked),
            "a change still on its way"
        );
        drop(w);
        let asked = t.lock().unwrap().attr_mark(ino);
        assert!(t.lock().unwrap().quiet_since(ino, asked));
    }

    /// Counts of a million files changed once each: looking for idle ones must stay linear
    /// (a look at every change would be a million million steps).
    #[test]
    fn change_counts_of_many_files_are_pruned_in_linear_work() {
        let t = Arc::new(Mutex::new(InodeTable::new()));
        let n = 1_000_000u64;
        for ino in 2..n + 2 {
            drop(InodeTable::begin_attr_change(&t, ino));
        }
        let scanned = t.lock().unwrap().prune_scanned;
        assert!(
            scanned <= 2 * n,
            "{scanned} counts looked at for {n} changes"
        );
    }

    #[test]
    fn hard_links_share_a_node() {
        let mut t = InodeTable::new();
        let a = t.lookup(b"a");
        t.link(a, b"b");
        assert_eq!(t.ino_for(b"b"), a);
        assert_eq!(t.get(a).unwrap().nlink, Some(2));
        assert_eq!(t.names(b"b"), (vec![b"b".to_vec(), b"a".to_vec()], false));
        t.unlink(b"a");
        assert_eq!(t.path(a).unwrap(), b"b");
        assert_eq!(t.get(a).unwrap().nlink, Some(1));
        assert_eq!(t.names(b"b"), (vec![b"b".to_vec()], false));
        t.unlink(b"b");
        assert_eq!(t.get(a).unwrap().nlink, Some(0), "the last name went");
    }

    #[test]
    fn links_made_on_the_server_are_unknown_names() {
        let mut t = InodeTable::new();
        let p = t.lookup(b"p");
        t.get_mut(p).unwrap().nlink = Some(2);
        assert_eq!(t.names(b"p"), (vec![b"p".to_vec()], true));
        assert_eq!(t.names(b"unknown"), (vec![b"unknown".to_vec()], false));
        let q = t.lookup(b"q");
        t.link(q, b"q2");
        t.forget_unknown_links();
        assert_eq!(t.get(p).unwrap().nlink, None);
        assert!(t.get(p).unwrap().relist);
        assert_eq!(t.get(q).unwrap().nlink, Some(2), "every name known: kept");
        let o = t.lookup(b"o");
        t.unlink(b"o");
        assert_eq!(t.get(o).unwrap().nlink, Some(0));
    }

    #[test]
    fn path_helpers() {
        assert_eq!(join(b"", b"a"), b"a");
        assert_eq!(join(b"a", b"b"), b"a/b");
        assert_eq!(parent_of(b"a/b/c"), b"a/b");
        assert_eq!(parent_of(b"a"), b"");
    }
}
