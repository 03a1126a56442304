//! Trees of small files for the many-small-files tests: made, tarred, compared.

use std::fs;
use std::path::{Path, PathBuf};

use super::process::sh;
use super::random_bytes;

/// `n` files of 1–20 KiB (`fNNN.txt`) under `root`, spread over `dirs` subdirectories
/// (`dNN`; 0: all in `root`).
pub fn small_files(root: &Path, dirs: usize, n: usize) {
    fs::create_dir_all(root).unwrap();
    for i in 0..n {
        let d = if dirs == 0 {
            root.to_path_buf()
        } else {
            root.join(format!("d{:02}", i % dirs))
        };
        fs::create_dir_all(&d).unwrap();
        let len = 1024 + (i * 7919) % (19 * 1024);
        fs::write(d.join(format!("f{i:03}.txt")), random_bytes(len, i as u64)).unwrap();
    }
}

/// A tarball of `parent/name`, made beside it (`parent/name.tar`), with `name` at its top.
pub fn tarball(parent: &Path, name: &str) -> PathBuf {
    let tar = parent.join(format!("{name}.tar"));
    sh(parent, "tar", &["-cf", tar.to_str().unwrap(), name]);
    tar
}

/// Panics unless the trees at `a` and `b` hold the same names and bytes (`diff -r`).
pub fn same_tree(a: &Path, b: &Path) {
    sh(
        Path::new("/"),
        "diff",
        &["-r", a.to_str().unwrap(), b.to_str().unwrap()],
    );
}
