//! The table a benchmark run as an ignored test writes (`bench/scale`, `bench/journal`).

use std::fs;
use std::io::Write as _;

/// Prints `text` and appends it to `SFTPFS_BENCH_TABLE`.
pub fn report(text: &str) {
    println!("{text}");
    if let Some(p) = std::env::var_os("SFTPFS_BENCH_TABLE").filter(|p| !p.is_empty()) {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap();
        writeln!(f, "{text}").unwrap();
    }
}
