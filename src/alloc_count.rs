//! Tests only: the heap held by the current thread, counted as malloc sizes its chunks, so
//! that a test can say how many bytes a structure costs per entry (`held()` before and
//! after). Per thread: tests running beside it in the same binary do not disturb it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
}

/// glibc's chunk for a request: the size plus an 8-byte header, in 16-byte steps, 32 at least.
fn chunk(size: usize) -> isize {
    ((size + 8 + 15) & !15).max(32) as isize
}

fn add(n: isize) {
    let _ = HELD.try_with(|h| h.set(h.get() + n));
}

pub struct Counting;

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(chunk(layout.size()));
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(chunk(layout.size()));
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-chunk(layout.size()));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(chunk(new_size) - chunk(layout.size()));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Bytes of heap the current thread allocated and has not freed.
pub fn held() -> isize {
    HELD.with(|h| h.get())
}
