//! The entries of one cached listing: in the order the server listed them, each name held
//! once, found through an index that holds only positions. A listing of 100 000 names costs
//! about a third less than a map of owned names, and is shared, not copied, by the open
//! directory handles that list it (copied on the first change while one is open).

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::Entry;

#[derive(Clone, Default)]
pub struct Entries {
    items: Vec<(Box<[u8]>, Entry)>,
    /// Positions in `items`, by name.
    index: HashTable<u32>,
    hasher: std::hash::RandomState,
}

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(n, e)| (String::from_utf8_lossy(n), e)))
            .finish()
    }
}

impl Entries {
    pub fn with_capacity(n: usize) -> Entries {
        Entries {
            items: Vec::with_capacity(n),
            index: HashTable::with_capacity(n),
            hasher: Default::default(),
        }
    }

    fn position(&self, name: &[u8]) -> Option<usize> {
        let items = &self.items;
        self.index
            .find(self.hasher.hash_one(name), |&i| {
                *items[i as usize].0 == *name
            })
            .map(|&i| i as usize)
    }

    pub fn get(&self, name: &[u8]) -> Option<&Entry> {
        self.position(name).map(|i| &self.items[i].1)
    }

    pub fn get_mut(&mut self, name: &[u8]) -> Option<&mut Entry> {
        self.position(name).map(|i| &mut self.items[i].1)
    }

    pub fn contains(&self, name: &[u8]) -> bool {
        self.position(name).is_some()
    }

    /// Puts `entry` under `name`, in place of the one there (at the end if none).
    pub fn insert(&mut self, name: &[u8], entry: Entry) {
        if let Some(i) = self.position(name) {
            self.items[i].1 = entry;
            return;
        }
        let i = self.items.len() as u32;
        self.items.push((Box::from(name), entry));
        let (items, hasher) = (&self.items, &self.hasher);
        self.index.insert_unique(hasher.hash_one(name), i, |&j| {
            hasher.hash_one(&*items[j as usize].0)
        });
    }

    /// Takes `name` out; the last entry takes its place in the order.
    pub fn remove(&mut self, name: &[u8]) -> Option<Entry> {
        let h = self.hasher.hash_one(name);
        let items = &self.items;
        let i = match self.index.find_entry(h, |&i| *items[i as usize].0 == *name) {
            Ok(e) => e.remove().0 as usize,
            Err(_) => return None,
        };
        let last = self.items.len() - 1;
        if i != last {
            let h = self.hasher.hash_one(&*self.items[last].0);
            if let Some(p) = self.index.find_mut(h, |&j| j as usize == last) {
                *p = i as u32;
            }
        }
        Some(self.items.swap_remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The entry at `position` of the order.
    pub fn at(&self, position: usize) -> Option<(&[u8], &Entry)> {
        self.items.get(position).map(|(n, e)| (&**n, e))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.items.iter().map(|(n, e)| (&**n, e))
    }

    pub fn names(&self) -> impl Iterator<Item = &[u8]> {
        self.items.iter().map(|(n, _)| &**n)
    }

    pub fn values(&self) -> impl Iterator<Item = &Entry> {
        self.items.iter().map(|(_, e)| e)
    }

    /// Heap held, as malloc sizes it (see `chunk`).
    pub fn heap_bytes(&self, chunk: impl Fn(usize) -> usize) -> usize {
        let items = self.items.capacity() * std::mem::size_of::<(Box<[u8]>, Entry)>();
        let index = (self.index.capacity() * 8 / 7).next_power_of_two() * (4 + 1);
        chunk(items) + chunk(index) + self.names().map(|n| chunk(n.len())).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(size: u64) -> Entry {
        Entry {
            attrs: crate::remote::Attrs {
                size: Some(size),
                ..Default::default()
            },
            nlink: None,
            stale: false,
            server: true,
        }
    }

    #[test]
    fn found_by_name_after_inserts_and_removals() {
        let mut es = Entries::with_capacity(4);
        for i in 0..1000u64 {
            es.insert(format!("n{i}").as_bytes(), e(i));
        }
        es.insert(b"n5", e(55));
        assert_eq!(es.len(), 1000);
        for i in (0..1000u64).step_by(3) {
            assert!(es.remove(format!("n{i}").as_bytes()).is_some());
        }
        assert!(es.remove(b"n0").is_none());
        for i in 0..1000u64 {
            let want = (i % 3 != 0).then_some(if i == 5 { 55 } else { i });
            assert_eq!(
                es.get(format!("n{i}").as_bytes())
                    .and_then(|e| e.attrs.size),
                want
            );
        }
        assert_eq!(es.iter().count(), es.len());
        assert!((0..es.len()).all(|i| es.at(i).is_some()));
    }
}
