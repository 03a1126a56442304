//! A small C project for `make` on a mount ([`c_project`]), and what a `make` run compiled
//! ([`make`], [`compiled`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::trees::tarball;

/// A small C project, archived beside it (`parent/proj.tar`): `src/fNN.c`, `main.c` and a
/// Makefile that builds each object from its source and links them into `prog`, which exits
/// 0. The project's directory is removed once archived.
pub fn c_project(parent: &Path, files: usize) -> PathBuf {
    let root = parent.join("proj");
    fs::create_dir_all(root.join("src")).unwrap();
    let mut main = String::new();
    let mut objs = Vec::new();
    for i in 0..files {
        fs::write(
            root.join(format!("src/f{i:02}.c")),
            format!("int f{i:02}(int x) {{ return x + {i}; }}\n"),
        )
        .unwrap();
        main.push_str(&format!("int f{i:02}(int);\n"));
        objs.push(format!("src/f{i:02}.o"));
    }
    let calls: String = (0..files).map(|i| format!(" + f{i:02}(1)")).collect();
    main.push_str(&format!(
        "int main(void) {{ return 0{calls} > 0 ? 0 : 1; }}\n"
    ));
    fs::write(root.join("main.c"), main).unwrap();
    fs::write(
        root.join("Makefile"),
        format!(
            "OBJS = main.o {}\nprog: $(OBJS)\n\tcc -o $@ $(OBJS)\n%.o: %.c\n\tcc -c -o $@ $<\n",
            objs.join(" ")
        ),
    )
    .unwrap();
    let tar = tarball(parent, "proj");
    fs::remove_dir_all(&root).unwrap();
    tar
}

/// `make ARGS -C dir`, which must succeed; its stdout.
#[track_caller]
pub fn make(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("make")
        .args(args)
        .arg("-C")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The objects a `make` run of a [`c_project`] compiled, by its output.
pub fn compiled(out: &str) -> Vec<String> {
    (out.lines())
        .filter_map(|l| l.strip_prefix("cc -c -o "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

/// Whether a `make` run of a [`c_project`] linked the program.
pub fn linked(out: &str) -> bool {
    out.lines().any(|l| l.starts_with("cc -o prog "))
}

/// Waits until the clock is in a later whole second than `t`: SFTP keeps times in whole
/// seconds, and `make` rebuilds only what is strictly newer than its target.
pub fn wait_for_a_later_second(t: std::time::SystemTime) {
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let later = super::wait_until(std::time::Duration::from_secs(3), || {
        secs(std::time::SystemTime::now()) > secs(t)
    });
    assert!(later, "the clock did not pass {t:?}");
}
