//! Names as fresh as sshfs keeps them (issue 20): a name the server has is never answered
//! absent from a cache, whatever the mount listed or read ahead just before; a name the server
//! removed goes within the attribute time; `-o negative_timeout=` (NFS's `lookupcache=all`)
//! believes absence from listings for who asks.

mod support;

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Made on the server right after the mount listed the directory (`ls`), or right after it
/// read the directory's files ahead (`cat d/*`): opened at once, no waiting for a
/// revalidation (sshfs's own test suite does this: `tst_open_read`).
#[test]
fn a_file_made_on_the_server_right_after_a_listing_opens_at_once() {
    let s = Sshd::start();
    small_files(&s.remote("w/d"), 0, 40);
    let m = Mount::new(&s, "w", &[]);
    for round in 0..5 {
        assert!(names(&m.path("d")).len() >= 40);
        let name = format!("d/listed{round}");
        fs::write(s.remote(&format!("w/{name}")), format!("made {round}")).unwrap();
        assert_eq!(
            fs::read_to_string(m.path(&name)).unwrap_or_else(|e| panic!("{name}: {e}")),
            format!("made {round}")
        );

        // Read ahead across files: the run lists the directory and fetches what follows.
        sh(&m.path("d"), "sh", &["-c", "cat ./* > /dev/null"]);
        let name = format!("d/ahead{round}");
        fs::write(s.remote(&format!("w/{name}")), format!("ahead {round}")).unwrap();
        assert_eq!(
            sh(&m.path("d"), "cat", &[&name[2..]]),
            format!("ahead {round}"),
            "{name}"
        );
    }
}

/// Two actors: the server makes files one after another while the mount lists the directory
/// and reads its files in a loop; each file is opened through the mount the moment it exists.
#[test]
fn files_made_on_the_server_while_the_mount_lists_and_reads_open_at_once() {
    let s = Sshd::start();
    small_files(&s.remote("w/d"), 0, 20);
    let m = Mount::new(&s, "w", &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let busy = {
        let (stop, dir) = (stop.clone(), m.path("d"));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let _ = std::process::Command::new("sh")
                    .args(["-c", "ls -l >/dev/null; cat ./* >/dev/null 2>&1"])
                    .current_dir(&dir)
                    .status();
            }
        })
    };
    let mut failures = Vec::new();
    for i in 0..60 {
        let name = format!("d/new{i:02}");
        fs::write(s.remote(&format!("w/{name}")), &name).unwrap();
        match fs::read_to_string(m.path(&name)) {
            Ok(got) if got == name => {}
            other => failures.push(format!("{name}: {other:?}")),
        }
    }
    stop.store(true, Ordering::SeqCst);
    busy.join().unwrap();
    assert!(failures.is_empty(), "not opened at once: {failures:?}");
}

/// Removed on the server right after the mount listed it: gone, by name and from `ls`,
/// within the attribute time (here 2 s, and no revalidation to help).
#[test]
fn a_file_removed_on_the_server_after_a_listing_goes_within_the_attribute_time() {
    let s = Sshd::start();
    small_files(&s.remote("w/d"), 0, 5);
    let m = Mount::new(&s, "w", &["dcache_timeout=2", "revalidate=0"]);
    let gone = m.path("d/f002.txt");
    assert!(names(&m.path("d")).contains(&"f002.txt".to_string()));
    assert!(fs::metadata(&gone).is_ok());
    fs::remove_file(s.remote("w/d/f002.txt")).unwrap();
    let t = Instant::now();
    // The attribute time, the kernel's entry time (1 s) and slack for a loaded machine.
    let deadline = Duration::from_secs(2 + 1 + 5);
    assert!(
        wait_until(deadline, || fs::metadata(&gone).is_err()
            && !names(&m.path("d")).contains(&"f002.txt".to_string())),
        "still there after {:?}",
        t.elapsed()
    );
}
