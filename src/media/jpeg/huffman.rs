//! The entropy-coded segment of a JPEG scan: the bit reader (byte stuffing, markers,
//! restart intervals) and Huffman tables with a lookup for short codes.
//!
//! Damaged data never panics: a code that matches no table entry decodes as symbol 0,
//! and past a marker or the end of the data the reader supplies zero bits, as libjpeg
//! does (the caller has already checked that the file is complete).

/// Codes up to this many bits are decoded with one table lookup.
const LOOKUP_BITS: u32 = 11;
const LOOKUP_MASK: usize = (1 << LOOKUP_BITS) - 1;

/// One Huffman table (DHT), for DC or AC coefficients.
#[derive(Clone)]
pub(super) struct Table {
    /// Indexed by the next LOOKUP_BITS bits: `length << 8 | symbol`, 0 for longer codes.
    lookup: Box<[u16; 1 << LOOKUP_BITS]>,
    /// Largest code of each length (-1 when there is none), for codes the lookup misses.
    max_code: [i32; 18],
    /// Index into `values` of a length's first code, minus that code.
    offset: [i32; 17],
    values: Vec<u8>,
    /// For AC coefficients, indexed like `lookup`: a code and its extra bits that fit in
    /// LOOKUP_BITS together, decoded at once: `value << 8 | run << 4 | bits used`; 0 when
    /// they do not fit (or the symbol is an end of block or a run of zeros).
    coefficient: Box<[i32; 1 << LOOKUP_BITS]>,
}

impl Table {
    /// Builds a table from the DHT counts of codes per length (1 to 16) and the symbols.
    pub(super) fn new(counts: &[u8; 16], values: &[u8]) -> Result<Table, &'static str> {
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        if total > 256 || total != values.len() {
            return Err("Huffman table sizes do not add up");
        }
        let mut lookup = Box::new([0u16; 1 << LOOKUP_BITS]);
        let mut max_code = [-1i32; 18];
        let mut offset = [0i32; 17];
        let (mut code, mut index) = (0i32, 0usize);
        for length in 1..=16u32 {
            let count = i32::from(counts[length as usize - 1]);
            offset[length as usize] = index as i32 - code;
            for _ in 0..count {
                if code >= 1 << length {
                    return Err("Huffman table has too many codes");
                }
                if length <= LOOKUP_BITS {
                    let spare = LOOKUP_BITS - length;
                    let first = (code as usize) << spare;
                    let entry = (length as u16) << 8 | u16::from(values[index]);
                    lookup[first..first + (1 << spare)].fill(entry);
                }
                code += 1;
                index += 1;
            }
            if count > 0 {
                max_code[length as usize] = code - 1;
            }
            code <<= 1;
        }
        // Sentinel: the slow search always ends.
        max_code[17] = i32::MAX;
        let mut coefficient = Box::new([0i32; 1 << LOOKUP_BITS]);
        for (bits, (slot, &entry)) in coefficient.iter_mut().zip(lookup.iter()).enumerate() {
            *slot = short_coefficient(bits as i32, entry);
        }
        Ok(Table {
            lookup,
            max_code,
            offset,
            values: values.to_vec(),
            coefficient,
        })
    }
}

/// The `coefficient` entry for the lookup bits `bits` whose code is `entry`.
fn short_coefficient(bits: i32, entry: u16) -> i32 {
    let (length, symbol) = (u32::from(entry >> 8), entry as u8);
    let (run, size) = (i32::from(symbol >> 4), u32::from(symbol & 15));
    if length == 0 || size == 0 || length + size > LOOKUP_BITS {
        return 0;
    }
    let extra = (bits >> (LOOKUP_BITS - length - size)) & ((1 << size) - 1);
    (extend(extra, size) << 8) | (run << 4) | (length + size) as i32
}

/// JPEG's EXTEND: `size` bits as a signed value (the top bit clear means negative).
#[inline]
fn extend(bits: i32, size: u32) -> i32 {
    if bits < 1 << (size - 1) {
        bits - (1 << size) + 1
    } else {
        bits
    }
}

/// A reader's state between two rows of MCUs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct BitsState {
    pub position: usize,
    pub buffer: u64,
    pub count: u32,
    pub at_marker: bool,
}

/// Reads the bits of an entropy-coded segment, most significant first.
pub(super) struct Bits<'a> {
    data: &'a [u8],
    /// Next byte to read.
    pub(super) position: usize,
    /// Buffered bits, aligned to the top.
    buffer: u64,
    count: u32,
    /// A marker (or the end of the data) was reached: only zero bits follow.
    at_marker: bool,
}

impl<'a> Bits<'a> {
    pub(super) fn new(data: &'a [u8], position: usize) -> Bits<'a> {
        Bits {
            data,
            position,
            buffer: 0,
            count: 0,
            at_marker: false,
        }
    }

    /// The reader's whole state, to continue elsewhere ([`Bits::resume`]).
    pub(super) fn state(&self) -> BitsState {
        BitsState {
            position: self.position,
            buffer: self.buffer,
            count: self.count,
            at_marker: self.at_marker,
        }
    }

    /// A reader continuing from `state` over the same data; None when the state cannot
    /// be one of this data's (a damaged hand-off).
    pub(super) fn resume(data: &'a [u8], state: BitsState) -> Option<Bits<'a>> {
        // At most 64 bits are ever buffered, and the bits below them are zero.
        let tail_clear = state.count >= 64 || state.buffer << state.count == 0;
        (state.position <= data.len() && state.count <= 64 && tail_clear).then_some(Bits {
            data,
            position: state.position,
            buffer: state.buffer,
            count: state.count,
            at_marker: state.at_marker,
        })
    }

    /// Tops the buffer up to at least 32 bits.
    #[inline]
    fn refill(&mut self) {
        // Fast path: eight bytes without a 0xFF among them go in at once.
        if !self.at_marker {
            if let Some(chunk) = self.data.get(self.position..self.position + 8) {
                let word = u64::from_be_bytes(chunk.try_into().unwrap_or([0xFF; 8]));
                let inverted = !word;
                let has_ff = inverted.wrapping_sub(0x0101_0101_0101_0101)
                    & !inverted
                    & 0x8080_8080_8080_8080;
                if has_ff == 0 {
                    let take = (63 - self.count) / 8;
                    self.buffer |= (word >> (64 - 8 * take)) << (64 - 8 * take - self.count);
                    self.position += take as usize;
                    self.count += 8 * take;
                    return;
                }
            }
        }
        while self.count <= 56 {
            let byte = self.next_byte();
            self.buffer |= u64::from(byte) << (56 - self.count);
            self.count += 8;
        }
    }

    fn next_byte(&mut self) -> u8 {
        if self.at_marker {
            return 0;
        }
        let Some(&byte) = self.data.get(self.position) else {
            self.at_marker = true;
            return 0;
        };
        if byte != 0xFF {
            self.position += 1;
            return byte;
        }
        match self.data.get(self.position + 1) {
            Some(0x00) => {
                self.position += 2;
                0xFF
            }
            // A marker (or fill bytes before one): stop in front of it.
            _ => {
                self.at_marker = true;
                0
            }
        }
    }

    #[inline]
    fn peek(&self, bits: u32) -> u32 {
        (self.buffer >> (64 - bits)) as u32
    }

    #[inline]
    fn consume(&mut self, bits: u32) {
        self.buffer <<= bits;
        self.count -= bits;
    }

    /// The next Huffman-coded symbol.
    #[inline]
    pub(super) fn symbol(&mut self, table: &Table) -> u8 {
        if self.count < 32 {
            self.refill();
        }
        let entry = table.lookup[self.peek(LOOKUP_BITS) as usize & LOOKUP_MASK];
        if entry != 0 {
            self.consume(u32::from(entry >> 8));
            return entry as u8;
        }
        let mut length = LOOKUP_BITS + 1;
        while length <= 16 && self.peek(length) as i32 > table.max_code[length as usize] {
            length += 1;
        }
        if length > 16 {
            // No code matches: damaged data, decoded as symbol 0 (as libjpeg does).
            self.consume(16);
            return 0;
        }
        let code = self.peek(length) as i32;
        self.consume(length);
        let index = table.offset[length as usize] + code;
        table
            .values
            .get(usize::try_from(index).unwrap_or(usize::MAX))
            .copied()
            .unwrap_or(0)
    }

    /// An AC coefficient whose code and extra bits are short enough to decode at once:
    /// (zeros skipped before it, its value).
    #[inline]
    pub(super) fn short_coefficient(&mut self, table: &Table) -> Option<(usize, i32)> {
        if self.count < 32 {
            self.refill();
        }
        let entry = table.coefficient[self.peek(LOOKUP_BITS) as usize & LOOKUP_MASK];
        if entry == 0 {
            return None;
        }
        self.consume((entry & 15) as u32);
        Some((((entry >> 4) & 15) as usize, entry >> 8))
    }

    /// The signed value of `size` extra bits (JPEG's EXTEND).
    #[inline]
    pub(super) fn value(&mut self, size: u8) -> i32 {
        let size = u32::from(size.min(16));
        if size == 0 {
            return 0;
        }
        if self.count < size {
            self.refill();
        }
        let bits = self.peek(size) as i32;
        self.consume(size);
        extend(bits, size)
    }

    /// `size` raw bits (up to 16) as an unsigned number: a progressive scan's correction
    /// bits and end-of-band run lengths.
    #[inline]
    pub(super) fn raw(&mut self, size: u32) -> u32 {
        let size = size.min(16);
        if size == 0 {
            return 0;
        }
        if self.count < size {
            self.refill();
        }
        let bits = self.peek(size);
        self.consume(size);
        bits
    }

    /// At a restart interval's end: drop the padding bits and step over the RSTn marker.
    pub(super) fn restart(&mut self) {
        self.buffer = 0;
        self.count = 0;
        self.at_marker = false;
        let mut at = self.position;
        while self.data.get(at) == Some(&0xFF) {
            at += 1;
        }
        if at > self.position && matches!(self.data.get(at), Some(0xD0..=0xD7)) {
            self.position = at + 1;
        } else {
            // No restart marker where one must be: damaged; read on as zero bits.
            self.at_marker = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_decode_through_the_lookup_and_the_slow_path() {
        // Lengths: two codes of 2 bits, one of 3, one of 12.
        let mut counts = [0u8; 16];
        counts[1] = 2;
        counts[2] = 1;
        counts[11] = 1;
        let table = Table::new(&counts, &[10, 11, 12, 13]).unwrap();
        // Codes: 00 -> 10, 01 -> 11, 100 -> 12, 101000000000 -> 13.
        // Bits: 01 100 101000000000 00 then a stuffed FF (11111111).
        let data = [
            0b0110_0101,
            0b0000_0000,
            0b0000_0000,
            0xFF,
            0x00,
            0xFF,
            0xD9,
        ];
        let mut bits = Bits::new(&data, 0);
        assert_eq!(bits.symbol(&table), 11);
        assert_eq!(bits.symbol(&table), 12);
        assert_eq!(bits.symbol(&table), 13);
        assert_eq!(bits.symbol(&table), 10);
        // Then five zero bits, and the stuffed 0xFF as an 8-bit value.
        assert_eq!(bits.value(5), -31);
        assert_eq!(bits.value(8), 255);
        // At the marker only zeros follow, and the reader stops in front of it.
        assert_eq!(bits.value(8), -255);
        assert_eq!(bits.position, 5);
    }

    #[test]
    fn bad_tables_are_refused() {
        let mut counts = [0u8; 16];
        counts[0] = 3; // three 1-bit codes cannot exist
        assert!(Table::new(&counts, &[1, 2, 3]).is_err());
        counts[0] = 1;
        assert!(Table::new(&counts, &[1, 2]).is_err());
    }
}
