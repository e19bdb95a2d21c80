//! The Compute module's global allocator, which makes the pre-initialised (Wizer)
//! snapshot small and dense so that a fresh instance starts in well under a millisecond.
//! Independent of Fastly: it knows Wizer and Wasm memory, nothing of requests.
//!
//! Wizer stores every non-zero byte of linear memory. Loading the model allocates and
//! frees ~300 MB to keep ~11 MB; with an ordinary allocator the keepers end up scattered
//! among freed blocks, and the allocator's own bookkeeping is left all over ~100 MB of
//! heap. That is doubly expensive: the snapshot is large, and wasmtime maps a module's
//! memory copy-on-write only when its initialised range is less than twice the data in
//! it, so a sparse one is copied segment by segment into every instance.
//!
//! So the build pre-initialises twice (`scripts/build.sh`), with identical code paths:
//! 1. **record**: every allocation is named by its size, alignment and how many of that
//!    shape came before it; the names of the blocks still alive when the load returns
//!    (the model, and the lazy statics it filled) are written to a plan;
//! 2. **replay**: a fresh instance reserves an *arena* at the bottom of its heap and
//!    bump-allocates every allocation named in the plan into it. Everything else goes to
//!    a separate *heap* (dlmalloc over pages of its own), zeroed when freed. When the
//!    load returns the heap is empty: its pages are zeroed whole — bookkeeping included —
//!    and a fresh heap starts over them, so the snapshot holds the arena and nothing
//!    above it, and requests get all that memory back.
//!
//! Names rather than sequence numbers because tract iterates hash maps, whose seeds differ
//! between runs, so allocations can come in a different order. A replayed allocation that
//! does not match its recorded twin is only misplaced, never wrong: an arena block freed
//! later is simply not reused, and a survivor left in the heap keeps the heap (the
//! snapshot is then larger, and the build log says so).
//!
//! [`tables`] holds the fixed-memory books the allocator keeps (pure, unit-tested on the
//! host); the allocator itself exists only in the wasm32 build.

// On the host only the tests use the tables.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod tables;

#[cfg(target_arch = "wasm32")]
mod allocator;

#[cfg(target_arch = "wasm32")]
pub use allocator::{record, replay, SnapshotAllocator, Stats};
