//! errno helpers: [`errno`], [`assert_errno`], [`errno_name`].

use std::io;

/// The errno of an `io::Result`, panicking on success.
pub fn errno<T: std::fmt::Debug>(r: io::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("error without errno: {e}")),
    }
}

/// Asserts `r` failed with `expected` (an errno such as `libc::EEXIST`).
#[track_caller]
pub fn assert_errno<T: std::fmt::Debug>(r: io::Result<T>, expected: i32, what: &str) {
    match r {
        Ok(v) => panic!("{what}: expected {}, got Ok({v:?})", errno_name(expected)),
        Err(e) => assert_eq!(
            e.raw_os_error(),
            Some(expected),
            "{what}: expected {}, got {e}",
            errno_name(expected)
        ),
    }
}

pub fn errno_name(e: i32) -> String {
    format!("{} ({e})", io::Error::from_raw_os_error(e))
}
