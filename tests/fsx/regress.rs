//! Single cases found by the fsx test, kept as plain regression tests.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;

use crate::support::*;

/// Found by the fsx test (seed 0x5eed0001, operation 19): bytes written through one
/// descriptor and not yet flushed must be seen by a read through a second descriptor opened
/// afterwards (POSIX: a read after a write returns the new data, whatever the descriptor).
#[test]
fn a_second_descriptor_sees_unflushed_writes_of_the_first() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", &[]);
    for round in 0..20 {
        let name = format!("f{round}");
        let data = random_bytes(61530 + round * 1000, round as u64);
        let w = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(m.path(&name))
            .unwrap();
        w.write_all_at(&data, 0).unwrap();
        let got = fs::read(m.path(&name)).unwrap();
        assert_eq!(
            got.len(),
            data.len(),
            "round {round}: a new descriptor read {} bytes of the {} written (not yet closed)",
            got.len(),
            data.len()
        );
        assert!(got == data, "round {round}: wrong bytes");
        let size = fs::metadata(m.path(&name)).unwrap().len();
        assert_eq!(size, data.len() as u64, "round {round}: stat size");
        drop(w);
    }
}

/// Found by the fsx test: `stat` right after a write that grew the file (not yet flushed)
/// must report the new size; a stale size from the server would also cut later reads short.
#[test]
fn stat_after_an_unflushed_write_reports_the_new_size() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", &[]);
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(m.path("grow"))
            .unwrap()
    };
    let mut f = open();
    let mut size = 0u64;
    for round in 0..300u64 {
        if round % 2 == 1 {
            // Closed and opened again: the open fetches the server's attributes.
            drop(f);
            f = open();
        }
        let data = random_bytes(10000 + (round as usize * 997) % 50000, round);
        f.write_all_at(&data, size).unwrap();
        size += data.len() as u64;
        let by_path = fs::metadata(m.path("grow")).unwrap().len();
        let by_fd = f.metadata().unwrap().len();
        assert_eq!(by_path, size, "round {round}: stat by path after a write");
        assert_eq!(by_fd, size, "round {round}: fstat after a write");
    }
    f.sync_all().unwrap();
    assert_eq!(fs::metadata(m.remote("grow")).unwrap().len(), size);
}
