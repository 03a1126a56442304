//! Inode numbers ↔ remote paths, with the kernel's lookup counts.
//!
//! SFTP has no inode numbers, so a node's number is derived from its path below the mount
//! root (a stable hash, probed on collision): the same file gets the same number after a
//! remount, and `readdir` can report numbers without allocating nodes. A node keeps its number
//! when renamed for as long as the kernel remembers it.
//!
//! A node holds its name and its parent's number, not a whole path: a path is built by
//! walking up the parents, a name found by (parent, name) from the root down, and renaming a
//! directory moves nothing below it. A parent stays in the table while a name below it does
//! (made with no lookup of its own when a deeper path is named first).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use hashbrown::HashTable;

pub const ROOT_INO: u64 = 1;

/// Path of a node relative to the mount root, without a leading slash; empty for the root.
pub type RelPath = Vec<u8>;

/// One name of a node: its directory's number and its name there.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    parent: u64,
    name: Box<[u8]>,
}

/// A file's size and mtime, as far as known, in 16 bytes (a pair of options takes 32 in
/// every node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    size: u64,
    mtime: u32,
    known: VersionKnown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VersionKnown {
    Neither,
    Size,
    Mtime,
    Both,
}

impl Version {
    pub fn of(a: &crate::remote::Attrs) -> Version {
        let mtime = a.atime_mtime.map(|t| t.1);
        Version {
            size: a.size.unwrap_or(0),
            mtime: mtime.unwrap_or(0),
            known: match (a.size.is_some(), mtime.is_some()) {
                (false, false) => VersionKnown::Neither,
                (true, false) => VersionKnown::Size,
                (false, true) => VersionKnown::Mtime,
                (true, true) => VersionKnown::Both,
            },
        }
    }
}

/// Paths deeper than this are taken as a loop in the table (a bug), not walked further.
const MAX_DEPTH: usize = 4096;

#[derive(Debug)]
pub struct Node {
    /// The name used for remote requests; `None` once every name is unlinked.
    first: Option<Link>,
    /// Its other names (hard links), rarely any: one pointer in every node, not a `Vec`'s
    /// three words.
    #[allow(clippy::box_collection)]
    more: Option<Box<Vec<Link>>>,
    /// Names in the table whose parent this node is: it stays while any does.
    children: u32,
    /// Lookups the kernel holds on this node.
    pub lookups: u64,
    /// Open file handles on this node; an unlinked node lives while any is open.
    pub open: u32,
    /// Link count learned from the server's long names or our own `link`.
    pub nlink: Option<u32>,
    /// (size, mtime) when the kernel last cached the file's pages: unchanged at the next
    /// open, the pages may stay.
    pub version: Option<Version>,
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
    fn new(first: Option<Link>) -> Node {
        Node {
            first,
            more: None,
            children: 0,
            lookups: 0,
            open: 0,
            nlink: None,
            version: None,
            kind: 0,
            local_size: None,
            relist: false,
            changing: 0,
        }
    }

    fn links(&self) -> impl Iterator<Item = &Link> {
        self.first
            .iter()
            .chain(self.more.iter().flat_map(|m| m.iter()))
    }

    fn link_count(&self) -> usize {
        self.first.is_some() as usize + self.more.as_ref().map_or(0, |m| m.len())
    }

    /// Nothing holds it: no lookup, no open handle, no name below it.
    fn unheld(&self) -> bool {
        self.lookups == 0 && self.open == 0 && self.children == 0
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
    /// The table's [`InodeTable::change_seq`] when the latest of them began.
    begun_seq: u64,
    last: std::time::Instant,
    /// This mount's writes since the kernel's pages were last checked against the server.
    written: Written,
}

/// What this mount's writes of a file since an open last checked the kernel's pages against
/// the server (see [`InodeTable::pages_still_hold`]) leave its size at. The kernel copies
/// every write into its pages itself, so those writes never call for dropping them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Written {
    #[default]
    Nothing,
    Size(u64),
    /// A write whose resulting size is not known here.
    Unknown,
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
    /// Nodes by their first name, (parent, name): holds only the number, the name is the
    /// node's own.
    by_name: HashTable<u64>,
    /// Names besides the first (hard links), few.
    more_names: HashMap<(u64, Box<[u8]>), u64>,
    hasher: std::hash::RandomState,
    changes: HashMap<u64, ChangeCount>,
    /// How many counts trigger a look for idle ones.
    prune_changes_at: usize,
    /// Counts looked at by those looks, all told.
    prune_scanned: u64,
    /// Changes begun on any file, all told: a question asked at one count and answered at a
    /// higher one may predate a change that began and even landed meanwhile.
    change_seq: u64,
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
        let mut root = Node::new(None);
        root.lookups = 1;
        root.kind = libc::S_IFDIR;
        t.nodes.insert(ROOT_INO, root);
        t
    }

    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Node> {
        self.nodes.get_mut(&ino)
    }

    fn hash(&self, parent: u64, name: &[u8]) -> u64 {
        self.hasher.hash_one((parent, name))
    }

    /// The node named `name` in directory `parent`.
    fn child(&self, parent: u64, name: &[u8]) -> Option<u64> {
        let nodes = &self.nodes;
        let is = |ino: &u64| {
            nodes[ino]
                .first
                .as_ref()
                .is_some_and(|l| l.parent == parent && *l.name == *name)
        };
        if let Some(&ino) = self.by_name.find(self.hash(parent, name), is) {
            return Some(ino);
        }
        if self.more_names.is_empty() {
            return None;
        }
        self.more_names.get(&(parent, Box::from(name))).copied()
    }

    /// The node at `path`, walking down from the root.
    fn resolve(&self, path: &[u8]) -> Option<u64> {
        if path.is_empty() {
            return Some(ROOT_INO);
        }
        path.split(|&b| b == b'/')
            .try_fold(ROOT_INO, |dir, name| self.child(dir, name))
    }

    /// The path of one name of a node: its parents' names joined, from the root down.
    fn path_of_link(&self, link: &Link) -> Option<RelPath> {
        let mut names: Vec<&[u8]> = vec![&link.name];
        let mut at = link.parent;
        while at != ROOT_INO {
            if names.len() > MAX_DEPTH {
                return None;
            }
            let l = self.nodes.get(&at)?.first.as_ref()?;
            names.push(&l.name);
            at = l.parent;
        }
        let mut p = Vec::with_capacity(names.iter().map(|n| n.len() + 1).sum());
        for (i, n) in names.iter().rev().enumerate() {
            if i > 0 {
                p.push(b'/');
            }
            p.extend_from_slice(n);
        }
        Some(p)
    }

    /// The node at `path`, if the table has one.
    pub fn path_ino(&self, path: &[u8]) -> Option<u64> {
        self.resolve(path)
    }

    /// The path used for remote requests on `ino`, if it still has a name.
    pub fn path(&self, ino: u64) -> Option<RelPath> {
        if ino == ROOT_INO {
            return Some(Vec::new());
        }
        self.path_of_link(self.nodes.get(&ino)?.first.as_ref()?)
    }

    /// Every path `ino` is known by, the one used for remote requests first.
    pub fn paths(&self, ino: u64) -> Vec<RelPath> {
        if ino == ROOT_INO {
            return vec![Vec::new()];
        }
        self.nodes.get(&ino).map_or_else(Vec::new, |n| {
            n.links().filter_map(|l| self.path_of_link(l)).collect()
        })
    }

    /// The number `path` has or would get, without creating a node.
    pub fn ino_for(&self, path: &[u8]) -> u64 {
        if let Some(ino) = self.resolve(path) {
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

    /// `ino_for` of `path`, named `name` in directory `parent` (a node): found with one
    /// look-up instead of a walk from the root.
    pub fn ino_for_child(&self, parent: u64, name: &[u8], path: &[u8]) -> u64 {
        match self.child(parent, name) {
            Some(ino) => ino,
            None => self.ino_for(path),
        }
    }

    /// The node named `name` in directory `parent`, if the table has one.
    pub fn existing_child(&self, parent: u64, name: &[u8]) -> Option<u64> {
        self.child(parent, name)
    }

    /// `lookup` of `path`, named `name` in directory `parent`, a node whose path is
    /// `path`'s parent.
    pub fn lookup_child(&mut self, parent: u64, name: &[u8], path: &[u8]) -> u64 {
        let ino = match self.child(parent, name) {
            Some(ino) => ino,
            None if self.nodes.contains_key(&parent) => {
                let ino = self.ino_for(path);
                self.nodes.insert(ino, Node::new(None));
                self.add_link(ino, parent, name);
                ino
            }
            None => return self.lookup(path),
        };
        self.nodes.get_mut(&ino).unwrap().lookups += 1;
        ino
    }

    /// Whether a change of any file is on its way (see `change_on_its_way`).
    pub fn any_change_on_its_way(&self) -> bool {
        self.changes.values().any(|c| c.begun != c.done)
    }

    /// Where the count of changes begun stands: taken when a question goes out, for
    /// [`InodeTable::changed_since`] when its answer comes.
    pub fn change_seq(&self) -> u64 {
        self.change_seq
    }

    /// Whether what the server said of `ino` in answer to a question asked at `seq` may
    /// predate a change of this mount's: one is on its way, or one began after the question
    /// went out (it may have landed before the answer came, and then nothing is on its way).
    pub fn changed_since(&self, ino: u64, seq: u64) -> bool {
        self.changes
            .get(&ino)
            .is_some_and(|c| c.begun != c.done || c.begun_seq > seq)
    }

    /// The node at `path`, made (with no lookup) if there is none, and its directories too.
    fn make(&mut self, path: &[u8]) -> u64 {
        if let Some(ino) = self.resolve(path) {
            return ino;
        }
        let parent = self.make(parent_of(path));
        let ino = self.ino_for(path);
        self.nodes.insert(ino, Node::new(None));
        self.add_link(ino, parent, crate::fs::meta::cache::name_of(path));
        ino
    }

    /// Gives `ino` the name `name` in `parent` (after the ones it has).
    fn add_link(&mut self, ino: u64, parent: u64, name: &[u8]) {
        let link = Link {
            parent,
            name: Box::from(name),
        };
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children += 1;
        }
        let n = self.nodes.get_mut(&ino).expect("a node given a name");
        if n.first.is_none() {
            n.first = Some(link);
            let h = self.hash(parent, name);
            let (nodes, hasher) = (&self.nodes, &self.hasher);
            self.by_name
                .insert_unique(h, ino, |i| first_hash(hasher, nodes, *i));
        } else {
            n.more.get_or_insert_with(Default::default).push(link);
            self.more_names.insert((parent, Box::from(name)), ino);
        }
    }

    /// Takes the name `name` in `parent` from `ino`; its parent goes if nothing holds it.
    fn drop_link(&mut self, ino: u64, parent: u64, name: &[u8]) {
        let Some(n) = self.nodes.get_mut(&ino) else {
            return;
        };
        let is = |l: &Link| l.parent == parent && *l.name == *name;
        if n.first.as_ref().is_some_and(is) {
            n.first = None;
            let h = self.hash(parent, name);
            if let Ok(e) = self.by_name.find_entry(h, |&i| i == ino) {
                e.remove();
            }
            // The next name, if any, becomes the first.
            let n = self.nodes.get_mut(&ino).unwrap();
            if let Some(next) = n
                .more
                .as_mut()
                .filter(|m| !m.is_empty())
                .map(|m| m.remove(0))
            {
                if n.more.as_ref().is_some_and(|m| m.is_empty()) {
                    n.more = None;
                }
                self.more_names.remove(&(next.parent, next.name.clone()));
                let h = self.hash(next.parent, &next.name);
                self.nodes.get_mut(&ino).unwrap().first = Some(next);
                let (nodes, hasher) = (&self.nodes, &self.hasher);
                self.by_name
                    .insert_unique(h, ino, |i| first_hash(hasher, nodes, *i));
            }
        } else if let Some(m) = n.more.as_mut() {
            let Some(i) = m.iter().position(is) else {
                return;
            };
            m.remove(i);
            if m.is_empty() {
                n.more = None;
            }
            self.more_names.remove(&(parent, Box::from(name)));
        } else {
            return;
        }
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children = p.children.saturating_sub(1);
        }
        self.remove_if_unheld(parent);
    }

    /// Removes `ino` if nothing holds it (never the root), and so its parents.
    fn remove_if_unheld(&mut self, ino: u64) {
        if ino == ROOT_INO || !self.nodes.get(&ino).is_some_and(Node::unheld) {
            return;
        }
        let links: Vec<Link> = self.nodes[&ino].links().cloned().collect();
        for l in links {
            self.drop_link(ino, l.parent, &l.name);
        }
        self.nodes.remove(&ino);
        // The kernel's inode, and its pages, went with the last reference.
        self.pages_checked(ino);
    }

    /// Records that the kernel was handed an entry for `path`; returns its number.
    pub fn lookup(&mut self, path: &[u8]) -> u64 {
        let ino = self.make(path);
        self.nodes.get_mut(&ino).unwrap().lookups += 1;
        ino
    }

    /// The kernel dropped `n` references; the node goes when nothing refers to it.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            self.remove_if_unheld(ino);
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
            self.remove_if_unheld(ino);
        }
    }

    /// `path` was removed on the server. Its node keeps working through open handles, with
    /// a link count of 0 once its last name is gone, as on a local disk.
    pub fn unlink(&mut self, path: &[u8]) {
        if path.is_empty() {
            return;
        }
        let Some(ino) = self.resolve(path) else {
            return;
        };
        let parent = self.resolve(parent_of(path)).unwrap_or(ROOT_INO);
        self.drop_link(ino, parent, crate::fs::meta::cache::name_of(path));
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.nlink = match n.nlink {
                Some(l) => Some(l.saturating_sub(1)),
                None if n.first.is_none() => Some(0),
                None => None,
            };
        }
        self.remove_if_unheld(ino);
    }

    /// Every name of the file at `path` known here (itself first), and whether the file
    /// has more links than that: hard links made on the server are not known by name.
    pub fn names(&self, path: &[u8]) -> (Vec<RelPath>, bool) {
        let node = self.resolve(path).and_then(|i| self.nodes.get(&i));
        let Some(n) = node.filter(|n| n.link_count() > 1 || n.nlink.is_some_and(|l| l > 1)) else {
            return (vec![path.to_vec()], false);
        };
        let mut all = vec![path.to_vec()];
        all.extend(
            n.links()
                .filter_map(|l| self.path_of_link(l))
                .filter(|p| p.as_slice() != path),
        );
        let more = n.nlink.is_some_and(|l| l as usize > all.len());
        (all, more)
    }

    /// A file with links not known by name changed: link counts learned from listings may
    /// now be wrong for any file with several links, so those are forgotten. Counts of
    /// files whose every name is known here stay.
    pub fn forget_unknown_links(&mut self) {
        for n in self.nodes.values_mut() {
            if n.nlink.is_some_and(|l| l as usize > n.link_count().max(1)) {
                n.nlink = None;
                n.relist = true;
            }
        }
    }

    pub fn begin_attr_change(table: &Arc<Mutex<InodeTable>>, ino: u64) -> AttrChangeGuard {
        let mut t = table.lock().unwrap();
        if t.changes.len() >= t.prune_changes_at {
            t.prune_scanned += t.changes.len() as u64;
            t.changes
                .retain(|_, c| c.begun != c.done || c.last.elapsed() < CHANGES_IDLE);
            // Looked at again once it doubled: pruning stays linear in the changes made.
            t.prune_changes_at = (t.changes.len() * 2).max(CHANGES_KEPT);
        }
        t.change_seq += 1;
        let seq = t.change_seq;
        let c = t.changes.entry(ino).or_insert(ChangeCount {
            begun: 0,
            done: 0,
            begun_seq: 0,
            last: std::time::Instant::now(),
            written: Written::Nothing,
        });
        c.begun += 1;
        c.begun_seq = seq;
        c.last = std::time::Instant::now();
        AttrChangeGuard {
            table: table.clone(),
            ino,
        }
    }

    /// A write of `ino` by this mount (its change begun, see `begin_attr_change`) leaves the
    /// file `size` bytes long, when known.
    pub fn note_written(&mut self, ino: u64, size: Option<u64>) {
        if let Some(c) = self.changes.get_mut(&ino) {
            c.written = size.map_or(Written::Unknown, Written::Size);
        }
    }

    /// A write of `ino` failed or was lost: the kernel's pages hold what the server does
    /// not, and the next open must drop them.
    pub fn note_write_failed(&mut self, ino: u64) {
        let c = self.changes.entry(ino).or_insert(ChangeCount {
            begun: 0,
            done: 0,
            begun_seq: 0,
            last: std::time::Instant::now(),
            written: Written::Nothing,
        });
        c.written = Written::Unknown;
    }

    /// What this mount wrote to `ino` since its pages were last checked.
    pub fn written(&self, ino: u64) -> Written {
        self.changes
            .get(&ino)
            .map_or(Written::Nothing, |c| c.written)
    }

    /// An open found `size` on the server (asked at `mark`, when this mount's writes stood
    /// at `before`): whether that is the size the kernel's pages have, its writes since the
    /// last check being this mount's own. Writes placed while the question travelled may or
    /// may not be in its answer, so any size between the one before and the one now will
    /// do. Another program's change that leaves the file at exactly such a size is not
    /// seen: two writers of one file on two machines are not coherent anyway.
    ///
    /// Why it matters: an open that drops the pages can do so between a writer's copy of
    /// its data into them and its WRITE; a read that then reaches us first answers short,
    /// and the kernel keeps the zeros it filled the page's tail with (issue 19).
    pub fn pages_still_hold(&self, ino: u64, before: Written, size: Option<u64>) -> bool {
        let (Written::Size(from), Written::Size(to), Some(size)) =
            (before, self.written(ino), size)
        else {
            return false;
        };
        (from.min(to)..=from.max(to)).contains(&size)
    }

    /// An open checked the kernel's pages against the server's file with nothing of this
    /// mount's on its way: what was written before is in that check.
    pub fn pages_checked(&mut self, ino: u64) {
        if let Some(c) = self.changes.get_mut(&ino) {
            c.written = Written::Nothing;
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
        let ino = t.resolve(path);
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
        if path.is_empty() || !self.nodes.contains_key(&ino) {
            return;
        }
        // Whatever the table still had there lost the name on the server.
        if self.resolve(path).is_some_and(|old| old != ino) {
            self.unlink(path);
        }
        let parent = self.make(parent_of(path));
        self.add_link(ino, parent, crate::fs::meta::cache::name_of(path));
        let n = self.nodes.get_mut(&ino).unwrap();
        n.nlink = Some(n.nlink.unwrap_or(1) + 1);
    }

    /// `from` was renamed to `to` on the server: whatever was at `to` loses that name, and the
    /// moved node keeps its number under the new name, and everything below it theirs.
    pub fn rename(&mut self, from: &[u8], to: &[u8]) {
        if from == to || from.is_empty() || to.is_empty() {
            return;
        }
        self.unlink(to);
        let Some(ino) = self.resolve(from) else {
            return;
        };
        let old_parent = self.resolve(parent_of(from)).unwrap_or(ROOT_INO);
        // Held while it moves: dropping its old name must not take it away.
        self.nodes.get_mut(&ino).unwrap().open += 1;
        let new_parent = self.make(parent_of(to));
        self.drop_link(ino, old_parent, crate::fs::meta::cache::name_of(from));
        self.add_link(ino, new_parent, crate::fs::meta::cache::name_of(to));
        self.nodes.get_mut(&ino).unwrap().open -= 1;
    }

    /// Nodes in the table (the kernel's, and the directories above them).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Every name the kernel may hold at or below `path` ("" for all): (parent's number,
    /// name, number). The root has no parent and is not among them.
    pub fn names_under(&self, path: &[u8]) -> Vec<(u64, Vec<u8>, u64)> {
        let Some(top) = self.resolve(path) else {
            return Vec::new();
        };
        // Whether `ino` is `top` or below it; what was found is remembered.
        let mut below: HashMap<u64, bool> =
            HashMap::from([(top, true), (ROOT_INO, top == ROOT_INO)]);
        let mut out = Vec::new();
        for (&ino, n) in &self.nodes {
            for l in n.links() {
                if ino == top || self.is_below(l.parent, &mut below) {
                    out.push((l.parent, l.name.to_vec(), ino));
                }
            }
        }
        out
    }

    /// Whether directory `ino` is at or below the top `known` was seeded with.
    fn is_below(&self, ino: u64, known: &mut HashMap<u64, bool>) -> bool {
        let mut chain = Vec::new();
        let mut at = ino;
        let found = loop {
            if let Some(&b) = known.get(&at) {
                break b;
            }
            match self.nodes.get(&at).and_then(|n| n.first.as_ref()) {
                Some(l) if chain.len() <= MAX_DEPTH => {
                    chain.push(at);
                    at = l.parent;
                }
                _ => break false,
            }
        };
        for c in chain {
            known.insert(c, found);
        }
        found
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// The index's hash of node `ino`'s first name.
fn first_hash(hasher: &std::hash::RandomState, nodes: &HashMap<u64, Node>, ino: u64) -> u64 {
    let l = nodes[&ino]
        .first
        .as_ref()
        .expect("an indexed node has a name");
    hasher.hash_one((l.parent, &*l.name))
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

    #[test]
    fn pages_hold_while_only_this_mounts_writes_explain_the_servers_size() {
        let t = Arc::new(Mutex::new(InodeTable::new()));
        let ino = t.lock().unwrap().lookup(b"f");
        let before = t.lock().unwrap().written(ino);
        assert_eq!(before, Written::Nothing);
        assert!(!t.lock().unwrap().pages_still_hold(ino, before, Some(0)));
        // Two appends: an open asked after the first, answered after the second was placed.
        let w = InodeTable::begin_attr_change(&t, ino);
        t.lock().unwrap().note_written(ino, Some(100));
        drop(w);
        let before = t.lock().unwrap().written(ino);
        let w = InodeTable::begin_attr_change(&t, ino);
        t.lock().unwrap().note_written(ino, Some(150));
        let tb = t.lock().unwrap();
        assert!(
            tb.pages_still_hold(ino, before, Some(100)),
            "the second not landed"
        );
        assert!(tb.pages_still_hold(ino, before, Some(150)), "both landed");
        assert!(
            !tb.pages_still_hold(ino, before, Some(99)),
            "someone truncated it"
        );
        assert!(
            !tb.pages_still_hold(ino, before, Some(151)),
            "someone appended"
        );
        assert!(!tb.pages_still_hold(ino, before, None));
        drop(tb);
        drop(w);
        // A write of unknown outcome, or a check since, proves nothing.
        let w = InodeTable::begin_attr_change(&t, ino);
        t.lock().unwrap().note_written(ino, None);
        drop(w);
        assert!(!t
            .lock()
            .unwrap()
            .pages_still_hold(ino, Written::Size(150), Some(150)));
        t.lock().unwrap().pages_checked(ino);
        assert_eq!(t.lock().unwrap().written(ino), Written::Nothing);
        // The kernel's inode goes with its pages: what was written before is not kept.
        let w = InodeTable::begin_attr_change(&t, ino);
        t.lock().unwrap().note_written(ino, Some(10));
        drop(w);
        t.lock().unwrap().forget(ino, 1);
        assert_eq!(t.lock().unwrap().written(ino), Written::Nothing);
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
    fn a_directory_renamed_takes_its_tree_along() {
        let mut t = InodeTable::new();
        let f = t.lookup(b"a/b/f");
        let (a, b) = (t.ino_for(b"a"), t.ino_for(b"a/b"));
        assert_eq!(
            t.get(a).unwrap().lookups,
            0,
            "made for its child, not looked up"
        );
        t.lookup(b"a");
        t.rename(b"a/b", b"c");
        assert_eq!(t.path(f).unwrap(), b"c/f");
        assert_eq!(t.ino_for(b"c/f"), f);
        assert_eq!(t.ino_for(b"c"), b);
        assert_ne!(t.ino_for(b"a/b/f"), f);
        let mut under = t.names_under(b"c");
        under.sort();
        assert_eq!(
            under,
            vec![(ROOT_INO, b"c".to_vec(), b), (b, b"f".to_vec(), f)]
        );
        assert_eq!(t.names_under(b"a"), vec![(ROOT_INO, b"a".to_vec(), a)]);
        assert_eq!(t.names_under(b"").len(), 3);
        // Forgotten, the file takes the directory made for it along; `a` the kernel holds.
        t.forget(f, 1);
        assert!(t.get(b).is_none() && t.get(f).is_none());
        assert!(t.get(a).is_some());
        t.forget(a, 1);
        assert_eq!(t.len(), 1, "only the root left");
    }

    #[test]
    fn an_unlinked_directory_leaves_its_open_files_nameless() {
        let mut t = InodeTable::new();
        let d = t.lookup(b"d");
        let f = t.lookup(b"d/f");
        t.open(f);
        t.unlink(b"d/f");
        assert!(t.path(f).is_none());
        t.forget(f, 1);
        assert!(t.get(f).is_some(), "open");
        t.unlink(b"d");
        t.forget(d, 1);
        assert!(t.get(d).is_none());
        t.release(f);
        assert_eq!(t.len(), 1);
    }

    /// 200 000 names in one directory, looked up and forgotten: each step is a few hash
    /// look-ups (were anything linear in the directory's size, minutes), and a name the
    /// kernel holds costs at most 200 bytes (276 with a whole path per node and an index
    /// by path).
    #[test]
    fn names_of_a_big_directory_cost_little_and_go_when_forgotten() {
        let n = 200_000;
        let mut t = InodeTable::new();
        t.lookup(b"big");
        let names: Vec<Vec<u8>> = (0..n)
            .map(|i| format!("big/file{i:06}").into_bytes())
            .collect();
        let before = crate::alloc_count::held();
        let inos: Vec<u64> = names.iter().map(|p| t.lookup(p)).collect();
        let per_name = (crate::alloc_count::held() - before) / n as isize;
        assert!(per_name <= 200, "{per_name} bytes per name");
        for (p, &ino) in names.iter().zip(&inos) {
            assert_eq!(t.ino_for(p), ino);
            assert_eq!(&t.path(ino).unwrap(), p);
        }
        t.rename(b"big", b"moved");
        assert_eq!(t.path(inos[7]).unwrap(), b"moved/file000007");
        for &ino in &inos {
            t.forget(ino, 1);
        }
        assert_eq!(t.len(), 2, "the root and the directory the kernel holds");
    }

    #[test]
    fn a_node_stays_small() {
        // Its share of the 200 bytes a name may cost, the rest being the map's slack, the
        // name and the index.
        assert!(std::mem::size_of::<Node>() <= 104);
        let a = crate::remote::Attrs {
            size: Some(0),
            ..Default::default()
        };
        assert_ne!(Version::of(&a), Version::of(&Default::default()));
    }

    #[test]
    fn path_helpers() {
        assert_eq!(join(b"", b"a"), b"a");
        assert_eq!(join(b"a", b"b"), b"a/b");
        assert_eq!(parent_of(b"a/b/c"), b"a/b");
        assert_eq!(parent_of(b"a"), b"");
    }
}
