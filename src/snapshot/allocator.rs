//! The allocator itself (see the module doc of `snapshot`): phases, arena, heap.

use super::tables::{Bitset, PageMap, Table, WASM_PAGE};
use dlmalloc::Dlmalloc;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicU8, Ordering};

/// Where allocations go.
/// Before pre-initialisation, and in the record run: the system allocator (wasi-libc).
const SYSTEM: u8 = 0;
/// The record run's load: system allocator, with a name header on every block.
const RECORD: u8 = 1;
/// The replay run's load: plan survivors to the arena, the rest to the heap.
const REPLAY: u8 = 2;
/// After a clean replay, and so in every request: the (fresh) heap.
const HEAP: u8 = 3;

static PHASE: AtomicU8 = AtomicU8::new(SYSTEM);

/// Record-run blocks carry their name in a header this large (and this aligned).
const HEADER: usize = 16;
/// The record run tracks allocations in memory below this address.
const TRACKED_MEMORY: usize = 256 << 20;
/// Capacity of the name tables (distinct allocation shapes; survivors).
const TABLE_SLOTS: usize = 1 << 17;
/// Blocks up to this size are kept in the arena when within `NEARBY` allocations of a
/// survivor of their shape (see [`State::is_survivor`]).
const NEARBY_MAX_SIZE: usize = 256;
const NEARBY: u64 = 24;
const OCCURRENCE_SHIFT: u32 = 38;
const OCCURRENCE_MASK: u64 = (1 << 25) - 1;

/// What the replay did, for the build log.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub survivors: usize,
    pub arena_bytes: usize,
    pub arena_used: usize,
    pub arena_allocations: usize,
    /// Arena blocks freed during the replay: garbage that took a survivor's name.
    pub arena_freed: usize,
    /// Heap blocks alive after the load: survivors that lost their name. With any, the
    /// heap cannot be recycled and the snapshot stays sparse.
    pub stragglers: usize,
    pub recycled_bytes: usize,
}

/// Pages of linear memory that belong to the heap, grown with `memory.grow` (so that the
/// system allocator's own top stays low), or handed back after the replay.
struct Pages;

unsafe impl dlmalloc::Allocator for Pages {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        unsafe {
            let pages = pages();
            if let Some((start, len)) = pages.recycled.take() {
                if len >= size {
                    return (start as *mut u8, len, 0);
                }
                pages.recycled = Some((start, len));
            }
            grow(size.div_ceil(WASM_PAGE))
        }
    }

    fn remap(&self, _: *mut u8, _: usize, _: usize, _: bool) -> *mut u8 {
        ptr::null_mut()
    }

    fn free_part(&self, _: *mut u8, _: usize, _: usize) -> bool {
        false
    }

    fn free(&self, _: *mut u8, _: usize) -> bool {
        false
    }

    fn can_release_part(&self, _: u32) -> bool {
        false
    }

    fn allocates_zeros(&self) -> bool {
        true
    }

    fn page_size(&self) -> usize {
        WASM_PAGE
    }
}

unsafe fn grow(count: usize) -> (*mut u8, usize, u32) {
    let previous = core::arch::wasm32::memory_grow(0, count);
    if previous == usize::MAX {
        return (ptr::null_mut(), 0, 0);
    }
    let map = &mut pages().map;
    for page in previous..previous + count {
        map.insert(page);
    }
    ((previous * WASM_PAGE) as *mut u8, count * WASM_PAGE, 0)
}

/// What [`Pages`] owns; apart from [`State`], which holds the heap that calls it.
struct PagesState {
    map: PageMap,
    /// Zeroed heap pages waiting to be handed to the fresh heap.
    recycled: Option<(usize, usize)>,
}

struct State {
    heap: Dlmalloc<Pages>,
    heap_live: isize,
    /// How many allocations of each shape this run has made.
    seen: Table,
    /// Record run: by address / HEADER, which blocks carry a header.
    headed: Bitset,
    recorded_bytes: isize,
    /// Names of the blocks the record run kept.
    survivors: Table,
    arena: usize,
    arena_size: usize,
    arena_next: usize,
    stats: Stats,
}

/// The allocator runs on Compute's single thread; the cells are never shared across
/// threads.
struct Shared<T>(UnsafeCell<T>);
unsafe impl<T> Sync for Shared<T> {}

static PAGES: Shared<PagesState> = Shared(UnsafeCell::new(PagesState {
    map: PageMap::new(),
    recycled: None,
}));

static STATE: Shared<State> = Shared(UnsafeCell::new(State {
    heap: Dlmalloc::new_with_allocator(Pages),
    heap_live: 0,
    seen: Table::empty(),
    headed: Bitset::empty(),
    recorded_bytes: 0,
    survivors: Table::empty(),
    arena: 0,
    arena_size: 0,
    arena_next: 0,
    stats: Stats {
        survivors: 0,
        arena_bytes: 0,
        arena_used: 0,
        arena_allocations: 0,
        arena_freed: 0,
        stragglers: 0,
        recycled_bytes: 0,
    },
}));

#[allow(clippy::mut_from_ref)]
unsafe fn state() -> &'static mut State {
    &mut *STATE.0.get()
}

#[allow(clippy::mut_from_ref)]
unsafe fn pages() -> &'static mut PagesState {
    &mut *PAGES.0.get()
}

fn in_heap(block: *mut u8) -> bool {
    unsafe { pages().map.contains(block as usize) }
}

/// Bookkeeping memory: from the heap in the replay (so it is recycled with it), from the
/// system allocator in the record run (whose instance is thrown away).
unsafe fn bookkeeping(layout: Layout) -> *mut u8 {
    let state = state();
    if PHASE.load(Ordering::Relaxed) == REPLAY {
        state.heap_live += 1;
        state.heap.calloc(layout.size(), layout.align())
    } else {
        System.alloc_zeroed(layout)
    }
}

unsafe fn release_bookkeeping(memory: *mut u8, layout: Layout) {
    if memory.is_null() {
        return;
    }
    ptr::write_bytes(memory, 0, layout.size());
    let state = state();
    if in_heap(memory) {
        state.heap_live -= 1;
        state.heap.free(memory, layout.size(), layout.align());
    } else {
        System.dealloc(memory, layout);
    }
}

fn table_layout() -> Layout {
    Layout::array::<(u64, u32)>(TABLE_SLOTS).expect("table layout")
}

unsafe fn new_table() -> Table {
    Table::over(bookkeeping(table_layout()) as *mut (u64, u32), TABLE_SLOTS)
}

unsafe fn release_table(table: &mut Table) {
    release_bookkeeping(table.memory() as *mut u8, table_layout());
    *table = Table::empty();
}

unsafe fn new_bitset(bits: usize) -> Bitset {
    let layout = Layout::from_size_align(Bitset::bytes_for(bits), 8).expect("bitset layout");
    Bitset::over(bookkeeping(layout) as *mut u64, bits)
}

fn kept_bytes(layout: Layout) -> isize {
    layout.size().next_multiple_of(layout.align()) as isize
}

impl State {
    fn in_arena(&self, block: *mut u8) -> bool {
        (self.arena..self.arena + self.arena_size).contains(&(block as usize))
    }

    /// The allocation's name in this run: size, alignment, and how many came before it.
    unsafe fn name(&mut self, layout: Layout) -> Option<u64> {
        let shape = layout.size() as u64 | (layout.align().trailing_zeros() as u64) << 32;
        let seen = self.seen.entry(shape | 1 << 63)?;
        let occurrence = *seen as u64 & OCCURRENCE_MASK;
        *seen += 1;
        Some(shape | occurrence << OCCURRENCE_SHIFT | 1 << 63)
    }

    unsafe fn record_alloc(&mut self, layout: Layout) -> *mut u8 {
        let pad = layout.align().max(HEADER);
        let outer = Layout::from_size_align_unchecked(layout.size() + pad, pad);
        let base = System.alloc(outer);
        if base.is_null() {
            return base;
        }
        let block = base.add(pad);
        let slot = block as usize / HEADER;
        let Some(name) = self.name(layout).filter(|_| self.headed.covers(slot)) else {
            System.dealloc(base, outer);
            return System.alloc(layout);
        };
        (block as *mut u64).sub(1).write(name);
        self.headed.set(slot, true);
        self.recorded_bytes += kept_bytes(layout);
        block
    }

    /// Frees `block` if it carries a record header; says whether it did.
    unsafe fn record_dealloc(&mut self, block: *mut u8, layout: Layout) -> bool {
        let slot = block as usize / HEADER;
        if !self.headed.get(slot) {
            return false;
        }
        self.headed.set(slot, false);
        self.recorded_bytes -= kept_bytes(layout);
        let pad = layout.align().max(HEADER);
        System.dealloc(
            block.sub(pad),
            Layout::from_size_align_unchecked(layout.size() + pad, pad),
        );
        true
    }

    /// Whether the replay keeps the allocation `name` in the arena. Small blocks of one
    /// shape can swap places between runs (hash-map order), so a small block near a
    /// recorded survivor of its shape is kept too: a few KB of zeroed arena is cheaper
    /// than a survivor stranded in the heap.
    unsafe fn is_survivor(&self, name: u64, size: usize) -> bool {
        if size > NEARBY_MAX_SIZE {
            return self.survivors.contains(name);
        }
        let occurrence = name >> OCCURRENCE_SHIFT & OCCURRENCE_MASK;
        let shape = name & !(OCCURRENCE_MASK << OCCURRENCE_SHIFT);
        let first = occurrence.saturating_sub(NEARBY);
        let last = (occurrence + NEARBY).min(OCCURRENCE_MASK);
        (first..=last).any(|nearby| self.survivors.contains(shape | nearby << OCCURRENCE_SHIFT))
    }

    unsafe fn replay_alloc(&mut self, layout: Layout) -> *mut u8 {
        if let Some(name) = self.name(layout) {
            if self.is_survivor(name, layout.size()) {
                let start = (self.arena + self.arena_next).next_multiple_of(layout.align());
                let end = start + layout.size();
                if end <= self.arena + self.arena_size {
                    self.arena_next = end - self.arena;
                    self.stats.arena_allocations += 1;
                    return start as *mut u8;
                }
            }
        }
        self.heap_alloc(layout)
    }

    unsafe fn heap_alloc(&mut self, layout: Layout) -> *mut u8 {
        let block = self.heap.malloc(layout.size(), layout.align());
        if !block.is_null() {
            self.heap_live += 1;
        }
        block
    }
}

/// The global allocator of the Compute module (see the module doc).
pub struct SnapshotAllocator;

unsafe impl GlobalAlloc for SnapshotAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match PHASE.load(Ordering::Relaxed) {
            SYSTEM => System.alloc(layout),
            RECORD => state().record_alloc(layout),
            REPLAY => state().replay_alloc(layout),
            _ => state().heap_alloc(layout),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match PHASE.load(Ordering::Relaxed) {
            SYSTEM => System.alloc_zeroed(layout),
            HEAP => {
                let state = state();
                state.heap_live += 1;
                state.heap.calloc(layout.size(), layout.align())
            }
            // Arena blocks are never reused, so still zero; anything else is zeroed here.
            _ => {
                let block = self.alloc(layout);
                if !block.is_null() && !state().in_arena(block) {
                    ptr::write_bytes(block, 0, layout.size());
                }
                block
            }
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let phase = PHASE.load(Ordering::Relaxed);
        let state = state();
        if state.in_arena(block) {
            if phase == REPLAY {
                ptr::write_bytes(block, 0, layout.size());
                state.stats.arena_freed += 1;
            }
        } else if in_heap(block) {
            if phase == REPLAY {
                ptr::write_bytes(block, 0, layout.size());
            }
            state.heap_live -= 1;
            state.heap.free(block, layout.size(), layout.align());
        } else if !state.record_dealloc(block, layout) {
            System.dealloc(block, layout)
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let phase = PHASE.load(Ordering::Relaxed);
        let state = state();
        if phase == HEAP && in_heap(block) {
            return state
                .heap
                .realloc(block, layout.size(), layout.align(), new_size);
        }
        if phase == SYSTEM && !state.in_arena(block) && !in_heap(block) {
            return System.realloc(block, layout, new_size);
        }
        // By hand, so that the old block goes through `dealloc` (zeroed, named, or left in
        // the arena) and each allocator only ever frees its own blocks.
        let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
        if !new.is_null() {
            ptr::copy_nonoverlapping(block, new, layout.size().min(new_size));
            self.dealloc(block, layout);
        }
        new
    }
}

/// The record run: loads once with every allocation named, and returns the plan for
/// [`replay`]: the arena size, then the names of the blocks alive after the load.
pub fn record<T>(load: impl FnOnce() -> T) -> (T, Vec<u8>) {
    unsafe {
        state().headed = new_bitset(TRACKED_MEMORY / HEADER);
        state().seen = new_table();
        PHASE.store(RECORD, Ordering::Relaxed);
        let loaded = load();
        PHASE.store(SYSTEM, Ordering::Relaxed);
        let state = state();
        let mut plan = (state.recorded_bytes.max(0) as u64).to_le_bytes().to_vec();
        for slot in state.headed.ones() {
            let name = ((slot * HEADER) as *const u64).sub(1).read();
            plan.extend_from_slice(&name.to_le_bytes());
        }
        // Headed blocks are still recognised when freed; and this instance is not
        // snapshotted, so its headers never outlive the build.
        (loaded, plan)
    }
}

/// The replay run: loads once with the allocations named in `plan` (from [`record`])
/// packed into an arena at the bottom of the heap, then recycles the emptied heap.
pub fn replay<T>(mut plan: Vec<u8>, load: impl FnOnce() -> T) -> (T, Stats) {
    unsafe {
        let (size, names) = plan.split_at(8.min(plan.len()));
        let needed = u64::from_le_bytes(size.try_into().unwrap_or_default()) as usize;
        let arena_size = (needed + needed / 16 + (1 << 20)).next_multiple_of(WASM_PAGE);
        let arena = System.alloc_zeroed(Layout::from_size_align_unchecked(arena_size, 64));
        if !arena.is_null() {
            let state = state();
            state.arena = arena as usize;
            state.arena_size = arena_size;
            state.stats.arena_bytes = arena_size;
        }

        PHASE.store(REPLAY, Ordering::Relaxed);
        state().survivors = new_table();
        for name in names.chunks_exact(8) {
            let name = u64::from_le_bytes(name.try_into().unwrap_or_default());
            if let Some(count) = state().survivors.entry(name) {
                *count = 1;
                state().stats.survivors += 1;
            }
        }
        // The plan sits low in the system allocator's memory: leave no trace of it.
        plan.fill(0);
        PHASE.store(SYSTEM, Ordering::Relaxed);
        drop(plan);
        PHASE.store(REPLAY, Ordering::Relaxed);
        state().seen = new_table();
        let loaded = load();
        release_table(&mut state().seen);
        release_table(&mut state().survivors);

        let state = state();
        state.stats.arena_used = state.arena_next;
        state.stats.stragglers = state.heap_live.max(0) as usize;
        if state.heap_live == 0 {
            if let Some((start, len)) = pages().map.single_range() {
                // Everything in the heap is free: drop its bookkeeping and start afresh.
                ptr::write_bytes(start as *mut u8, 0, len);
                ptr::write(&mut state.heap, Dlmalloc::new_with_allocator(Pages));
                pages().recycled = Some((start, len));
                state.stats.recycled_bytes = len;
            }
        }
        PHASE.store(HEAP, Ordering::Relaxed);
        (loaded, state.stats)
    }
}
