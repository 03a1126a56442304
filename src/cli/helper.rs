//! The binary as a mount(8) helper. fstab entries of type `sftpfs` make mount(8) run
//! `/sbin/mount.sftpfs SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS] [-t TYPE] [-N NS]`, where
//! `/sbin/mount.sftpfs` is a symlink to `sftpfs`. `-f` there means "fake" (check, do not
//! mount), not "foreground": the helper always goes to the background once mounted, as mount(8)
//! waits for it. (Entries of type `fuse.sftpfs` go through fuse3's `mount.fuse3` instead, which
//! runs `sftpfs SOURCE MOUNTPOINT -o OPTIONS`: the ordinary command line.)

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::CliError;

/// A `mount.sftpfs` command line.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct HelperArgs {
    pub source: OsString,
    pub mountpoint: OsString,
    /// The `-o` lists, in order.
    pub options: Vec<OsString>,
    /// `-f`: do everything but mount.
    pub fake: bool,
    /// `-s`: ignore options sftpfs does not know instead of failing.
    pub sloppy: bool,
}

/// Whether argv\[0\] names the helper: `mount.sftpfs`, or `mount.fuse.sftpfs` (the name
/// mount(8) tries first for `fuse.sftpfs` entries), in any directory.
pub(super) fn is_helper_name(argv0: &OsStr) -> bool {
    let name = Path::new(argv0).file_name().unwrap_or_default();
    name == "mount.sftpfs" || name == "mount.fuse.sftpfs"
}

/// Parses what follows argv\[0\].
pub(super) fn parse(args: &[OsString]) -> Result<HelperArgs, CliError> {
    let usage = |what: String| CliError::HelperUsage(what);
    let mut positionals = Vec::new();
    let mut options = Vec::new();
    let (mut fake, mut sloppy) = (false, false);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let b = arg.as_bytes();
        if b.len() < 2 || b[0] != b'-' {
            positionals.push(arg.clone());
            continue;
        }
        let mut rest = &b[1..];
        while let Some((&flag, tail)) = rest.split_first() {
            rest = tail;
            match flag {
                b'f' => fake = true,
                b's' => sloppy = true,
                // no /etc/mtab to write; verbosity is mount(8)'s
                b'n' | b'v' => {}
                b'o' | b't' | b'N' => {
                    let value = if rest.is_empty() {
                        it.next()
                            .cloned()
                            .ok_or_else(|| usage(format!("-{} needs a value", flag as char)))?
                    } else {
                        OsStr::from_bytes(rest).to_owned()
                    };
                    match flag {
                        b'o' => options.push(value),
                        b't' => check_type(&value)?,
                        _ => {
                            return Err(usage(
                                "mount -N (another mount namespace) is not supported".into(),
                            ))
                        }
                    }
                    break;
                }
                _ => {
                    return Err(usage(format!(
                        "unknown flag '-{}'",
                        String::from_utf8_lossy(&[flag])
                    )))
                }
            }
        }
    }
    let mut positionals = positionals.into_iter();
    let (Some(source), Some(mountpoint), None) =
        (positionals.next(), positionals.next(), positionals.next())
    else {
        return Err(usage("expected SOURCE and MOUNTPOINT".into()));
    };
    Ok(HelperArgs {
        source,
        mountpoint,
        options,
        fake,
        sloppy,
    })
}

fn check_type(t: &OsStr) -> Result<(), CliError> {
    match t.as_bytes() {
        b"sftpfs" | b"fuse.sftpfs" => Ok(()),
        _ => Err(CliError::HelperUsage(format!(
            "filesystem type '{}' is not sftpfs",
            t.to_string_lossy()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn helper_names() {
        assert!(is_helper_name(OsStr::new("/sbin/mount.sftpfs")));
        assert!(is_helper_name(OsStr::new("mount.sftpfs")));
        assert!(is_helper_name(OsStr::new("/usr/sbin/mount.fuse.sftpfs")));
        assert!(!is_helper_name(OsStr::new("/usr/bin/sftpfs")));
        assert!(!is_helper_name(OsStr::new("mount.sftpfs2")));
        assert!(!is_helper_name(OsStr::new("/sbin/mount.sftpfs/x")));
    }

    #[test]
    fn parses_what_mount_passes() {
        let h = parse(&os(&[
            "u@h:/srv",
            "/mnt",
            "-s",
            "-n",
            "-v",
            "-o",
            "ro,port=2",
        ]))
        .unwrap();
        assert_eq!(h.source, "u@h:/srv");
        assert_eq!(h.mountpoint, "/mnt");
        assert_eq!(h.options, os(&["ro,port=2"]));
        assert!(h.sloppy && !h.fake);

        let h = parse(&os(&["h:", "/m", "-fnv", "-oro", "-t", "fuse.sftpfs"])).unwrap();
        assert!(h.fake && !h.sloppy);
        assert_eq!(h.options, os(&["ro"]));

        let h = parse(&os(&["h:", "/m"])).unwrap();
        assert!(h.options.is_empty() && !h.fake);
    }

    #[test]
    fn refuses_what_mount_would_not_pass() {
        for args in [
            &["h:"][..],
            &["h:", "/m", "extra"],
            &["h:", "/m", "-o"],
            &["h:", "/m", "-x"],
            &["h:", "/m", "-t", "nfs"],
            &["h:", "/m", "-N", "/proc/1/ns/mnt"],
        ] {
            let e = parse(&os(args)).unwrap_err().to_string();
            assert!(e.contains("usage: mount.sftpfs"), "{args:?}: {e}");
        }
    }
}
