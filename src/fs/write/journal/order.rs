//! Which queued operation waits for which: an operation waits for every earlier one still
//! unanswered that concerns the same name, a name above or below it (a rename: both of its
//! names), and, for the operations of one file, that file's OPEN (and its CLOSE for all of
//! them). Writes of one file do not wait for each other: they go on its handle in order.
//!
//! Kept as a graph built when an operation is queued (indexes by name and by file, so that
//! finding what it waits for costs the operations on its names, not the whole queue), with
//! the set of those that wait for nothing: the dispatcher takes from it in journal order.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::fs::names::inode::{parent_of, RelPath};

/// What the ordering knows of an operation.
#[derive(Debug, Clone)]
pub struct Node {
    /// The file of the asynchronous mode it belongs to.
    pub file: Option<u64>,
    /// It opens its file: the file's later operations wait for it.
    pub opens: bool,
    /// It closes its file: it waits for all of the file's earlier operations.
    pub closes: bool,
    /// Its names (two for a rename).
    pub paths: Vec<RelPath>,
}

#[derive(Default)]
pub struct Order {
    by_path: BTreeMap<RelPath, BTreeMap<u64, Option<u64>>>,
    by_file: HashMap<u64, BTreeMap<u64, bool>>,
    waits_for: HashMap<u64, usize>,
    dependents: HashMap<u64, Vec<u64>>,
    nodes: HashMap<u64, Node>,
    ready: BTreeSet<u64>,
}

impl Order {
    /// The unanswered operations `node` must wait for.
    pub fn blockers(&self, node: &Node) -> BTreeSet<u64> {
        let mut b = BTreeSet::new();
        if let Some(f) = node.file {
            for (&k, &opens) in self.by_file.get(&f).into_iter().flatten() {
                if opens || node.closes {
                    b.insert(k);
                }
            }
        }
        let mut add = |m: &BTreeMap<u64, Option<u64>>| {
            for (&k, &file) in m {
                // One file's operations are ordered by the file's rules alone.
                if node.file.is_none() || file != node.file {
                    b.insert(k);
                }
            }
        };
        for p in &node.paths {
            // The name itself and every directory above it.
            let mut a: &[u8] = p;
            loop {
                if let Some(m) = self.by_path.get(a) {
                    add(m);
                }
                if a.is_empty() {
                    break;
                }
                a = parent_of(a);
            }
            // Every name below it.
            if p.is_empty() {
                for (q, m) in self.by_path.range::<[u8], _>((
                    std::ops::Bound::Excluded(&b""[..]),
                    std::ops::Bound::Unbounded,
                )) {
                    debug_assert!(!q.is_empty());
                    add(m);
                }
            } else {
                let mut lo = p.clone();
                lo.push(b'/');
                let mut hi = p.clone();
                hi.push(b'/' + 1);
                for (_, m) in self.by_path.range(lo..hi) {
                    add(m);
                }
            }
        }
        b
    }

    /// Queues operation `key` (larger than every key queued before).
    pub fn insert(&mut self, key: u64, node: Node) {
        let blockers = self.blockers(&node);
        for &x in &blockers {
            self.dependents.entry(x).or_default().push(key);
        }
        if blockers.is_empty() {
            self.ready.insert(key);
        }
        self.waits_for.insert(key, blockers.len());
        for p in &node.paths {
            self.by_path
                .entry(p.clone())
                .or_default()
                .insert(key, node.file);
        }
        if let Some(f) = node.file {
            self.by_file.entry(f).or_default().insert(key, node.opens);
        }
        self.nodes.insert(key, node);
    }

    /// `key` was answered: what waited only for it may go.
    pub fn finish(&mut self, key: u64) {
        self.ready.remove(&key);
        self.waits_for.remove(&key);
        if let Some(node) = self.nodes.remove(&key) {
            for p in &node.paths {
                if let Some(m) = self.by_path.get_mut(p.as_slice()) {
                    m.remove(&key);
                    if m.is_empty() {
                        self.by_path.remove(p.as_slice());
                    }
                }
            }
            if let Some(f) = node.file {
                if let Some(m) = self.by_file.get_mut(&f) {
                    m.remove(&key);
                    if m.is_empty() {
                        self.by_file.remove(&f);
                    }
                }
            }
        }
        for d in self.dependents.remove(&key).unwrap_or_default() {
            if let Some(n) = self.waits_for.get_mut(&d) {
                *n -= 1;
                if *n == 0 {
                    self.ready.insert(d);
                }
            }
        }
    }

    /// Operations that wait for nothing, in journal order, as long as `take` wants them
    /// (`Some(false)`: not this one, look further; `None`: no more now).
    pub fn take_ready(&mut self, mut take: impl FnMut(u64) -> Option<bool>) -> Vec<u64> {
        let mut out = Vec::new();
        for &k in &self.ready {
            match take(k) {
                Some(true) => out.push(k),
                Some(false) => {}
                None => break,
            }
        }
        for k in &out {
            self.ready.remove(k);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(file: Option<u64>, opens: bool, closes: bool, paths: &[&str]) -> Node {
        Node {
            file,
            opens,
            closes,
            paths: paths.iter().map(|p| p.as_bytes().to_vec()).collect(),
        }
    }

    fn ready(o: &mut Order) -> Vec<u64> {
        o.take_ready(|_| Some(true))
    }

    #[test]
    fn a_file_s_writes_wait_for_its_open_and_its_close_for_all_of_them() {
        let mut o = Order::default();
        o.insert(1, n(Some(9), true, false, &["d/f"]));
        o.insert(2, n(Some(9), false, false, &["d/f"]));
        o.insert(3, n(Some(9), false, false, &["d/f"]));
        o.insert(4, n(Some(9), false, true, &["d/f"]));
        assert_eq!(ready(&mut o), vec![1]);
        o.finish(1);
        assert_eq!(ready(&mut o), vec![2, 3]);
        o.finish(3);
        assert_eq!(ready(&mut o), Vec::<u64>::new());
        o.finish(2);
        assert_eq!(ready(&mut o), vec![4]);
        o.finish(4);
        assert_eq!(o.len(), 0);
    }

    #[test]
    fn names_above_below_and_both_names_of_a_rename_are_waited_for() {
        let mut o = Order::default();
        o.insert(1, n(None, false, false, &["a"])); // mkdir a
        o.insert(2, n(Some(1), true, false, &["a/f"])); // create a/f
        o.insert(3, n(None, false, false, &["b/g"])); // unrelated
        o.insert(4, n(None, false, false, &["a", "c"])); // rename a -> c
        o.insert(5, n(None, false, false, &["c/f"])); // chmod c/f
        o.insert(6, n(None, false, false, &[""])); // chmod of the root
        assert_eq!(ready(&mut o), vec![1, 3]);
        o.finish(1);
        assert_eq!(ready(&mut o), vec![2]);
        o.finish(3);
        assert!(ready(&mut o).is_empty());
        o.finish(2);
        assert_eq!(ready(&mut o), vec![4]);
        o.finish(4);
        assert_eq!(ready(&mut o), vec![5]);
        o.finish(5);
        assert_eq!(ready(&mut o), vec![6]);
    }

    #[test]
    fn a_name_that_only_starts_like_another_is_unrelated() {
        let mut o = Order::default();
        o.insert(1, n(None, false, false, &["ab"]));
        o.insert(2, n(None, false, false, &["a"]));
        o.insert(3, n(None, false, false, &["a/b"]));
        o.insert(4, n(None, false, false, &["a.b"]));
        assert_eq!(ready(&mut o), vec![1, 2, 4]);
        o.finish(2);
        assert_eq!(ready(&mut o), vec![3]);
    }

    #[test]
    fn the_same_rules_as_a_scan_of_the_whole_queue() {
        // Random operations: the graph must agree with the pairwise rule applied to every
        // earlier operation still queued.
        use crate::fs::names::inode::within;
        let names = ["", "a", "a/b", "a/b/c", "ab", "a/c", "d", "d/e"];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let mut o = Order::default();
        let mut live: BTreeMap<u64, Node> = BTreeMap::new();
        for key in 1..400u64 {
            let file = (rnd(3) == 0).then(|| rnd(3));
            let mut paths = vec![names[rnd(names.len() as u64) as usize].as_bytes().to_vec()];
            if file.is_none() && rnd(4) == 0 {
                paths.push(names[rnd(names.len() as u64) as usize].as_bytes().to_vec());
            }
            let node = Node {
                file,
                opens: file.is_some() && rnd(4) == 0,
                closes: file.is_some() && rnd(4) == 0,
                paths,
            };
            let want: BTreeSet<u64> = live
                .iter()
                .filter(|(_, e)| match (e.file, node.file) {
                    (Some(a), Some(b)) if a == b => e.opens || node.closes,
                    _ => e
                        .paths
                        .iter()
                        .any(|p| node.paths.iter().any(|q| within(p, q) || within(q, p))),
                })
                .map(|(k, _)| *k)
                .collect();
            assert_eq!(o.blockers(&node), want, "operation {key}: {node:?}");
            o.insert(key, node.clone());
            live.insert(key, node);
            if rnd(2) == 0 {
                let k = *live.keys().nth(rnd(live.len() as u64) as usize).unwrap();
                live.remove(&k);
                o.finish(k);
            }
        }
    }
}
