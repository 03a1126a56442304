//! What a symlink's target looks like through the mount (sshfs 3.7.6 after CVE-2026-47187):
//! `transform_symlinks` rewrites absolute targets inside the mount as relative ones, and
//! `contain_symlinks` (the default) refuses targets that lead out of the mount, so that a
//! hostile server cannot point local programs at local files.

use super::inode::parent_of;

#[derive(Debug, Clone, Copy)]
pub struct SymlinkPolicy {
    pub contain: bool,
    pub transform: bool,
    /// Let the server follow symlinks: they show as what they point to.
    pub follow: bool,
}

impl Default for SymlinkPolicy {
    fn default() -> Self {
        SymlinkPolicy {
            contain: true,
            transform: false,
            follow: false,
        }
    }
}

impl SymlinkPolicy {
    /// The target to show for the link at `link` (relative to the mount root) whose target on
    /// the server is `target`; `root` is the mount root's absolute remote path. `None`: the
    /// target leads out of the mount and is refused.
    pub fn show(&self, root: &[u8], link: &[u8], target: &[u8]) -> Option<Vec<u8>> {
        let mut t = target.to_vec();
        if self.transform && t.starts_with(b"/") {
            if let Some(inside) = below(root, &t) {
                t = relative(parent_of(link), &inside);
            }
        }
        if self.contain && !stays_inside(parent_of(link), &t) {
            return None;
        }
        Some(t)
    }
}

/// `path` relative to `root` when it lies below it.
fn below(root: &[u8], path: &[u8]) -> Option<Vec<u8>> {
    let root = root.strip_suffix(b"/").unwrap_or(root);
    let rest = path.strip_prefix(root)?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    rest.strip_prefix(b"/").map(|r| r.to_vec())
}

/// A relative path from directory `from` to `to`, both relative to the mount root.
fn relative(from: &[u8], to: &[u8]) -> Vec<u8> {
    let f: Vec<&[u8]> = components(from).collect();
    let t: Vec<&[u8]> = components(to).collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&[u8]> = vec![b".."; f.len() - common];
    parts.extend(&t[common..]);
    if parts.is_empty() {
        return b".".to_vec();
    }
    parts.join(&b'/')
}

/// Whether a relative target, resolved from directory `dir`, stays below the mount root.
fn stays_inside(dir: &[u8], target: &[u8]) -> bool {
    if target.starts_with(b"/") {
        return false;
    }
    let mut depth = components(dir).count() as i64;
    for c in components(target) {
        match c {
            b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => depth += 1,
        }
    }
    true
}

fn components(p: &[u8]) -> impl Iterator<Item = &[u8]> {
    p.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment() {
        let p = SymlinkPolicy::default();
        assert_eq!(p.show(b"/srv", b"a/l", b"b").unwrap(), b"b");
        assert_eq!(p.show(b"/srv", b"a/l", b"../x").unwrap(), b"../x");
        assert!(p.show(b"/srv", b"a/l", b"../../x").is_none());
        assert!(p.show(b"/srv", b"l", b"/etc/passwd").is_none());
        assert!(
            p.show(b"/srv", b"l", b"/srv/x").is_none(),
            "absolute: refused unless transformed"
        );
        let open = SymlinkPolicy {
            contain: false,
            ..p
        };
        assert_eq!(
            open.show(b"/srv", b"l", b"/etc/passwd").unwrap(),
            b"/etc/passwd"
        );
    }

    #[test]
    fn transformation() {
        let p = SymlinkPolicy {
            transform: true,
            ..SymlinkPolicy::default()
        };
        assert_eq!(
            p.show(b"/srv", b"a/b/l", b"/srv/x/y").unwrap(),
            b"../../x/y"
        );
        assert_eq!(p.show(b"/srv/", b"a/l", b"/srv/a/z").unwrap(), b"z");
        assert_eq!(p.show(b"/srv", b"l", b"/srv").unwrap(), b".");
        assert!(p.show(b"/srv", b"l", b"/srvother/x").is_none());
        assert!(p.show(b"/srv", b"l", b"/etc/x").is_none());
    }
}
