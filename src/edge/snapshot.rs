//! Keeps the pre-initialised (Wizer) snapshot small.
//!
//! Wizer stores every non-zero byte of linear memory in the snapshot. Loading the model
//! allocates and frees ~300 MB to keep 11 MB (the parsed protobuf, f64 dequantization
//! intermediates, graphs between optimisation passes), and freed memory keeps its old
//! bytes. So while the snapshot is prepared, freed blocks are zeroed. Small blocks are
//! also kept out of the allocator's free lists: the allocator writes its bookkeeping into
//! freed blocks, and for ~430k small frees that residue alone was 60 MB of snapshot.
//! (Measured: 104 MB snapshot without this, 54 MB with it; the leak is ~23 MB of address
//! space, zero-filled, which the snapshot does not store.) After preparation the
//! allocator is exactly the system one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

static PREPARING: AtomicBool = AtomicBool::new(false);

/// Freed blocks up to this size are zeroed and not returned while preparing.
const SMALL_BLOCK: usize = 1024;

pub struct ZeroFreedWhilePreparing;

unsafe impl GlobalAlloc for ZeroFreedWhilePreparing {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if PREPARING.load(Ordering::Relaxed) {
            ptr.write_bytes(0, layout.size());
            if layout.size() <= SMALL_BLOCK {
                return;
            }
        }
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !PREPARING.load(Ordering::Relaxed) {
            return System.realloc(ptr, layout, new_size);
        }
        // Move by hand so the old block goes through `dealloc` and is zeroed.
        let new = System.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
        if !new.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}

/// Runs `prepare` with freed memory zeroed, for a snapshot that holds only live data.
pub fn prepare(prepare: impl FnOnce()) {
    PREPARING.store(true, Ordering::Relaxed);
    prepare();
    PREPARING.store(false, Ordering::Relaxed);
}
