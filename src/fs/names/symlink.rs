//! What a symlink's target looks like through the mount, by sshfs 3.7.6's rules (after
//! CVE-2026-47187), then those of libfuse's subdir module:
//! - `transform_symlinks` rewrites an absolute target below the mount's remote directory as
//!   a relative one (sshfs's component-wise algorithm, quirks included: a target equal to the
//!   directory itself, or running through the link's own path, stays absolute);
//! - `contain_symlinks` (the default) then refuses, lexically, every absolute target and every
//!   target with a `..` component, so that a hostile server cannot point local programs at
//!   local files;
//! - with `subdir=`, `rellinks` rewrites what is left absolute below the subdirectory.
//!
//! One difference from sshfs: the remote directory is always the absolute path it resolves
//! to, so a relative `host:dir` (or `host:`) transforms too, where sshfs transforms nothing.

#[derive(Debug, Clone, Default)]
pub struct SymlinkPolicy {
    pub contain: bool,
    pub transform: bool,
    /// Let the server follow symlinks: they show as what they point to.
    pub follow: bool,
    /// libfuse's subdir module: the mounted subdirectory of the remote directory (relative,
    /// no leading or trailing `/`; empty without `subdir=`), and its `rellinks`.
    pub subdir: Vec<u8>,
    pub rellinks: bool,
}

impl SymlinkPolicy {
    pub fn sshfs_default() -> Self {
        SymlinkPolicy {
            contain: true,
            ..SymlinkPolicy::default()
        }
    }

    /// The target to show for the link at `link` (relative to the mount) whose target on the
    /// server is `target`; `base` is the remote directory's absolute path (without the
    /// subdirectory). `None`: refused (EPERM).
    pub fn show(&self, base: &[u8], link: &[u8], target: &[u8]) -> Option<Vec<u8>> {
        // sshfs sees the link at /SUBDIR/LINK below its base path.
        let mut sshfs_path = vec![b'/'];
        sshfs_path.extend_from_slice(&join(&self.subdir, link));
        let mut t = target.to_vec();
        if self.transform {
            if let Some(shorter) = transform(base, &sshfs_path, &t) {
                t = shorter;
            }
        }
        if self.contain && !contained(&t) {
            return None;
        }
        if self.rellinks && !self.subdir.is_empty() {
            let sub = join(base, &self.subdir);
            if let Some(shorter) = relative_below(&sub, &join(&sub, link), &t) {
                t = shorter;
            }
        }
        Some(t)
    }
}

fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut p = a.to_vec();
    if !b.is_empty() {
        if !p.is_empty() && !p.ends_with(b"/") {
            p.push(b'/');
        }
        p.extend_from_slice(b);
    }
    p
}

/// sshfs's containment check: no absolute target, no `..` component.
fn contained(target: &[u8]) -> bool {
    !target.starts_with(b"/") && !target.split(|&b| b == b'/').any(|c| c == b"..")
}

/// sshfs's `transform_symlink`: `link` is the link's path below `base` (with a leading
/// `/`). Only absolute targets below `base` (whole components) change.
fn transform(base: &[u8], link: &[u8], target: &[u8]) -> Option<Vec<u8>> {
    if !target.starts_with(b"/") || !base.starts_with(b"/") {
        return None;
    }
    let (l, b) = strip_common(target, base);
    if !b.is_empty() {
        return None;
    }
    let (l, rest) = strip_common(l, link);
    dotted(l, rest)
}

/// libfuse subdir module's `transform_symlink` (`rellinks`): `sub` is the subdirectory's
/// absolute path, `link` the link's. The common prefix of target and link must cover it.
fn relative_below(sub: &[u8], link: &[u8], target: &[u8]) -> Option<Vec<u8>> {
    if !target.starts_with(b"/") || !sub.starts_with(b"/") {
        return None;
    }
    let (l, rest) = strip_common(target, link);
    let stripped = target.len() - l.len();
    // libfuse's base ends with '/', which its length counts.
    let base_len = sub.len() + usize::from(!sub.ends_with(b"/"));
    if stripped < base_len {
        return None;
    }
    dotted(l, rest)
}

/// `../` once per directory of `rest` (the link's path below the common part), then `l`.
fn dotted(l: &[u8], rest: &[u8]) -> Option<Vec<u8>> {
    let dotdots = count_components(rest).checked_sub(1)?;
    let mut out = b"../".repeat(dotdots);
    if !l.is_empty() {
        out.extend_from_slice(l);
    } else if dotdots == 0 {
        out.push(b'.');
    }
    Some(out)
}

fn count_components(p: &[u8]) -> usize {
    p.split(|&b| b == b'/').filter(|c| !c.is_empty()).count()
}

fn skip_slashes(p: &[u8]) -> &[u8] {
    let n = p.iter().take_while(|&&b| b == b'/').count();
    &p[n..]
}

/// sshfs's `strip_common`: drops the leading components `s` and `t` share. A last component
/// that ends both strings together is kept (so a path is never stripped to nothing against
/// itself), as in sshfs.
fn strip_common<'a, 'b>(mut s: &'a [u8], mut t: &'b [u8]) -> (&'a [u8], &'b [u8]) {
    loop {
        s = skip_slashes(s);
        t = skip_slashes(t);
        let n = s
            .iter()
            .zip(t)
            .take_while(|(a, b)| a == b && **a != b'/')
            .count();
        let (cs, ct) = (s.get(n), t.get(n));
        let next = matches!(
            (cs, ct),
            (Some(b'/'), Some(b'/')) | (None, Some(b'/')) | (Some(b'/'), None)
        );
        if !next {
            return (s, t);
        }
        s = &s[n.min(s.len())..];
        t = &t[n.min(t.len())..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(contain: bool, transform: bool) -> SymlinkPolicy {
        SymlinkPolicy {
            contain,
            transform,
            ..SymlinkPolicy::default()
        }
    }

    fn show(p: &SymlinkPolicy, link: &str, target: &str) -> Option<String> {
        p.show(b"/B", link.as_bytes(), target.as_bytes())
            .map(|t| String::from_utf8(t).unwrap())
    }

    #[test]
    fn containment_is_lexical() {
        let p = SymlinkPolicy::sshfs_default();
        for ok in [
            "sub/target",
            "./sub/target",
            "...",
            "..foo",
            ".",
            "",
            "a/b/c",
        ] {
            assert_eq!(show(&p, "d/l", ok).as_deref(), Some(ok), "{ok}");
        }
        for refused in [
            "/etc/passwd",
            "..",
            "../x",
            "a/..",
            "sub/../../etc/passwd",
            "a//..//b",
            "/B/x",
        ] {
            assert_eq!(show(&p, "d/l", refused), None, "{refused}");
        }
        let open = policy(false, false);
        assert_eq!(show(&open, "l", "/etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(show(&open, "l", "../../x").unwrap(), "../../x");
    }

    #[test]
    fn transformation_as_sshfs() {
        let t = policy(false, true);
        let cases = [
            ("inbase", "/B/other/file", "other/file"),
            ("sub/sibling", "/B/other/file", "../other/file"),
            ("a/b/l", "/B/x/y", "../../x/y"),
            ("a/l", "/B/a/z", "z"),
            ("a/b", "/B/a", "."),
            ("a/l", "/B", "/B"),
            ("l", "/B", "/B"),
            ("d/l", "/B/d/l/x", "/B/d/l/x"),
            ("x", "/B/x", "x"),
            ("l", "/Bother/x", "/Bother/x"),
            ("l", "/etc/x", "/etc/x"),
            ("l", "//B//x", "x"),
            ("l", "rel/x", "rel/x"),
        ];
        for (link, target, want) in cases {
            assert_eq!(show(&t, link, target).unwrap(), want, "{link} -> {target}");
        }
        // Then containment: a transformed target with `..` is refused too.
        let both = policy(true, true);
        assert_eq!(
            show(&both, "inbase", "/B/other/file").unwrap(),
            "other/file"
        );
        assert_eq!(show(&both, "sub/sibling", "/B/other/file"), None);
        assert_eq!(show(&both, "l", "/B"), None);
    }

    #[test]
    fn rellinks_below_the_subdirectory() {
        let p = SymlinkPolicy {
            subdir: b"S".to_vec(),
            rellinks: true,
            ..policy(false, false)
        };
        assert_eq!(show(&p, "d/l", "/B/S/x/y").unwrap(), "../x/y");
        assert_eq!(show(&p, "l", "/B/S/x").unwrap(), "x");
        assert_eq!(show(&p, "l", "/B/other").unwrap(), "/B/other");
        assert_eq!(show(&p, "l", "/B/Sx/y").unwrap(), "/B/Sx/y");
        let off = SymlinkPolicy {
            rellinks: false,
            ..p.clone()
        };
        assert_eq!(show(&off, "d/l", "/B/S/x/y").unwrap(), "/B/S/x/y");
        // sshfs's own transform sees the link below the subdirectory.
        let t = SymlinkPolicy {
            subdir: b"S".to_vec(),
            ..policy(false, true)
        };
        assert_eq!(show(&t, "l", "/B/S/x").unwrap(), "x");
        assert_eq!(show(&t, "l", "/B/o").unwrap(), "../o");
    }
}
