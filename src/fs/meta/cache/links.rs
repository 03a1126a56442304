//! The symlink-target cache.

use tokio::time::Instant;

use super::{MetaCache, Timed};

impl MetaCache {
    pub fn link(&self, path: &[u8]) -> Option<Vec<u8>> {
        if !self.opts.enabled {
            return None;
        }
        let mut c = self.links.lock().unwrap();
        let found = match c.get(path) {
            Some(t) if t.until > Instant::now() => Some(t.value.clone()),
            _ => None,
        };
        self.link_count.note(found)
    }

    pub fn put_link(&self, path: &[u8], target: &[u8]) {
        if self.opts.enabled {
            self.links.lock().unwrap().put(
                path.to_vec(),
                Timed {
                    value: target.to_vec(),
                    until: Instant::now() + self.opts.link_ttl,
                },
            );
            self.clean_if_due();
        }
    }
}
