//! The allocator's books: fixed-size tables over memory the caller provides, since the
//! allocator cannot allocate through itself while it keeps them. Pure, so unit-tested on
//! the host.

/// Bytes per Wasm page.
pub const WASM_PAGE: usize = 64 << 10;
/// Pages in the 4 GiB address space of a 32-bit memory.
const PAGES: usize = 1 << 16;

/// A set of small integers (addresses scaled down), one bit each, over caller memory.
pub struct Bitset {
    words: *mut u64,
    bits: usize,
}

impl Bitset {
    /// An empty set that covers nothing (every `set` is ignored).
    pub const fn empty() -> Bitset {
        Bitset {
            words: std::ptr::null_mut(),
            bits: 0,
        }
    }

    /// Bytes of zeroed memory [`Bitset::over`] needs for `bits` bits.
    pub fn bytes_for(bits: usize) -> usize {
        bits.div_ceil(64) * 8
    }

    /// A set of `bits` bits over `words`, which must be [`Bitset::bytes_for`] zeroed
    /// bytes aligned for u64, or null (the set then covers nothing).
    ///
    /// # Safety
    /// `words` is null or valid for reads and writes of that many bytes while the set lives.
    pub unsafe fn over(words: *mut u64, bits: usize) -> Bitset {
        Bitset {
            bits: if words.is_null() { 0 } else { bits },
            words,
        }
    }

    pub fn covers(&self, bit: usize) -> bool {
        bit < self.bits
    }

    pub fn get(&self, bit: usize) -> bool {
        // SAFETY: `covers` bounds the word index within the memory `over` was given.
        self.covers(bit) && unsafe { *self.words.add(bit / 64) } & (1 << (bit % 64)) != 0
    }

    /// Sets or clears `bit`; bits beyond the set's size are ignored.
    pub fn set(&mut self, bit: usize, value: bool) {
        if self.covers(bit) {
            // SAFETY: as in `get`.
            let word = unsafe { &mut *self.words.add(bit / 64) };
            if value {
                *word |= 1 << (bit % 64);
            } else {
                *word &= !(1 << (bit % 64));
            }
        }
    }

    /// The set bits, in order.
    pub fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.bits.div_ceil(64)).flat_map(move |w| {
            // SAFETY: `w` is below the number of words the memory holds.
            let word = unsafe { *self.words.add(w) };
            (0..64)
                .filter(move |b| word & (1 << b) != 0)
                .map(move |b| w * 64 + b)
        })
    }
}

/// A fixed-capacity map from non-zero u64 keys to counters, by open addressing with
/// linear probing, over caller memory. Keys are never removed.
pub struct Table {
    slots: *mut (u64, u32),
    capacity: usize,
}

impl Table {
    /// A table with no memory: it contains nothing and refuses every entry.
    pub const fn empty() -> Table {
        Table {
            slots: std::ptr::null_mut(),
            capacity: 0,
        }
    }

    /// A table of `capacity` slots over `slots`, which must be that many zeroed slots, or
    /// null (an empty table).
    ///
    /// # Safety
    /// `slots` is null or valid for reads and writes of `capacity` slots while the table
    /// lives.
    pub unsafe fn over(slots: *mut (u64, u32), capacity: usize) -> Table {
        Table {
            capacity: if slots.is_null() { 0 } else { capacity },
            slots,
        }
    }

    /// The memory the table was given, to hand back when it is done.
    pub fn memory(&self) -> *mut (u64, u32) {
        self.slots
    }

    fn first_slot(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize % self.capacity
    }

    /// Slot indices in probe order for `key`.
    fn probe(&self, key: u64) -> impl Iterator<Item = usize> {
        let (first, capacity) = (self.first_slot(key), self.capacity);
        (0..capacity).map(move |step| (first + step) % capacity)
    }

    /// The counter for `key` (which must not be 0, the empty-slot mark), created at 0;
    /// None when the table has no memory or is full.
    pub fn entry(&mut self, key: u64) -> Option<&mut u32> {
        debug_assert_ne!(key, 0, "0 marks an empty slot");
        if self.capacity == 0 {
            return None;
        }
        for slot in self.probe(key) {
            // SAFETY: `probe` yields indices below the capacity `over` was given.
            let entry = unsafe { &mut *self.slots.add(slot) };
            if entry.0 == key || entry.0 == 0 {
                entry.0 = key;
                return Some(&mut entry.1);
            }
        }
        None
    }

    pub fn contains(&self, key: u64) -> bool {
        if self.capacity == 0 {
            return false;
        }
        for slot in self.probe(key) {
            // SAFETY: as in `entry`.
            let entry = unsafe { &*self.slots.add(slot) };
            if entry.0 == key {
                return true;
            }
            if entry.0 == 0 {
                return false;
            }
        }
        false
    }
}

/// Which Wasm pages belong to the heap: one bit per page of the address space.
pub struct PageMap([u64; PAGES / 64]);

impl PageMap {
    pub const fn new() -> PageMap {
        PageMap([0; PAGES / 64])
    }

    pub fn insert(&mut self, page: usize) {
        if page < PAGES {
            self.0[page / 64] |= 1 << (page % 64);
        }
    }

    fn has_page(&self, page: usize) -> bool {
        page < PAGES && self.0[page / 64] & (1 << (page % 64)) != 0
    }

    pub fn contains(&self, address: usize) -> bool {
        self.has_page(address / WASM_PAGE)
    }

    /// The pages as one byte range `(start, len)`, if there are any and they are contiguous.
    pub fn single_range(&self) -> Option<(usize, usize)> {
        let mut pages = (0..PAGES).filter(|&page| self.has_page(page));
        let first = pages.next()?;
        let mut last = first;
        for page in pages {
            if page != last + 1 {
                return None;
            }
            last = page;
        }
        Some((first * WASM_PAGE, (last + 1 - first) * WASM_PAGE))
    }
}

impl Default for PageMap {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(slots: &mut Vec<(u64, u32)>) -> Table {
        unsafe { Table::over(slots.as_mut_ptr(), slots.len()) }
    }

    #[test]
    fn table_counts_per_key_and_finds_only_what_it_holds() {
        let mut memory = vec![(0, 0); 64];
        let mut t = table(&mut memory);
        assert!(!t.contains(7));
        *t.entry(7).unwrap() += 1;
        *t.entry(7).unwrap() += 1;
        *t.entry(1 << 63 | 9).unwrap() = 5;
        assert_eq!(*t.entry(7).unwrap(), 2);
        assert_eq!(*t.entry(1 << 63 | 9).unwrap(), 5);
        assert!(t.contains(7) && t.contains(1 << 63 | 9));
        assert!(!t.contains(8));
        // A lookup creates the key.
        assert_eq!(*t.entry(8).unwrap(), 0);
        assert!(t.contains(8));
    }

    #[test]
    fn table_probes_past_collisions_and_wraps_around() {
        let mut memory = vec![(0, 0); 8];
        let mut t = table(&mut memory);
        // Keys that all start at the last slot, so probing must wrap to slot 0.
        let last = (1..u64::MAX)
            .filter(|&k| t.first_slot(k) == 7)
            .take(3)
            .collect::<Vec<_>>();
        for (i, &key) in last.iter().enumerate() {
            *t.entry(key).unwrap() = i as u32 + 1;
        }
        for (i, &key) in last.iter().enumerate() {
            assert!(t.contains(key));
            assert_eq!(*t.entry(key).unwrap(), i as u32 + 1);
        }
        assert_eq!(memory[7].0, last[0]);
        assert_eq!(memory[0].0, last[1]);
        assert_eq!(memory[1].0, last[2]);
    }

    #[test]
    fn a_full_table_refuses_new_keys_but_keeps_old_ones() {
        let mut memory = vec![(0, 0); 4];
        let mut t = table(&mut memory);
        for key in 1..=4 {
            assert!(t.entry(key).is_some());
        }
        assert!(t.entry(5).is_none());
        assert!(!t.contains(5));
        assert!((1..=4).all(|key| t.contains(key)));
    }

    #[test]
    fn a_table_without_memory_is_empty() {
        let mut t = unsafe { Table::over(std::ptr::null_mut(), 1 << 10) };
        assert!(t.entry(3).is_none());
        assert!(!t.contains(3));
        assert!(Table::empty().memory().is_null());
    }

    #[test]
    fn bitset_sets_clears_and_lists_in_order() {
        let mut words = vec![0u64; Bitset::bytes_for(130) / 8];
        assert_eq!(words.len(), 3);
        let mut bits = unsafe { Bitset::over(words.as_mut_ptr(), 130) };
        for bit in [129, 0, 64, 63, 5] {
            bits.set(bit, true);
        }
        bits.set(5, false);
        bits.set(130, true); // beyond the set: ignored
        assert!(bits.get(0) && bits.get(63) && bits.get(64) && bits.get(129));
        assert!(!bits.get(5) && !bits.get(130) && !bits.covers(130));
        assert_eq!(bits.ones().collect::<Vec<_>>(), [0, 63, 64, 129]);
        let mut none = Bitset::empty();
        none.set(1, true);
        assert!(!none.get(1));
        assert_eq!(none.ones().count(), 0);
    }

    #[test]
    fn page_map_knows_its_pages_and_whether_they_are_one_range() {
        let mut map = PageMap::new();
        assert_eq!(map.single_range(), None);
        for page in 10..14 {
            map.insert(page);
        }
        assert!(map.contains(10 * WASM_PAGE));
        assert!(map.contains(14 * WASM_PAGE - 1));
        assert!(!map.contains(14 * WASM_PAGE));
        assert!(!map.contains(usize::MAX));
        assert_eq!(map.single_range(), Some((10 * WASM_PAGE, 4 * WASM_PAGE)));
        map.insert(20);
        assert_eq!(map.single_range(), None);
        map.insert(PAGES); // beyond the address space: ignored
    }
}
