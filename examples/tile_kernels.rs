//! An experiment for the 1×1 convolutions' kernel in Wasm, not used by the service: the
//! shipped 16×4 f32 tile (`src/classifier/wasm_gemm.rs`: `f32x4.mul` + `f32x4.add` per
//! multiply-add) against the same tile over 16-bit integers, `i32x4.dot_i16x8_s` + `i32x4.add`
//! per two multiply-adds (Cranelift lowers the dot product to one `pmaddwd` on x86-64).
//!
//! Every pointwise convolution of MobileNetV2 at the model's input size runs through both,
//! alternated, each with what it costs around the tile loop: packing the NHWC activations
//! into panels (for the integer tile, each pixel quantized to 14 bits with its own scale:
//! its largest magnitude is 8191), and the epilogue (bias, ReLU6; for the integer tile,
//! the row's and the pixel's scales first). The weights stay exact: upstream's are uint8
//! with a zero point, so `q − zero point` fits i16, and the batch norm folds into a per-row
//! scale. 14 bits keep the i32 sums exact: 960 × 8191 × 255 < 2³¹.
//!
//!     viceroy run -C fastly.toml target/wasm32-wasip1/release/examples/tile_kernels.wasm -- tile_kernels 15
//!
//! Prints per layer and in all the median milliseconds of each, and the integer tile's
//! largest error relative to the layer's largest output (random activations and weights).

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("tile_kernels measures Wasm SIMD kernels: build it for wasm32-wasip1 and run it under Viceroy");
}

#[cfg(target_arch = "wasm32")]
fn main() {
    wasm::main()
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use std::arch::wasm32::*;
    use std::time::Instant;

    /// Output channels (M), input channels (K), pixels (N) of every 1×1 convolution of
    /// MobileNetV2 (width 1.0) at a 224×224 input, in order.
    const LAYERS: [(usize, usize, usize); 34] = [
        (16, 32, 12544),
        (96, 16, 12544),
        (24, 96, 3136),
        (144, 24, 3136),
        (24, 144, 3136),
        (144, 24, 3136),
        (32, 144, 784),
        (192, 32, 784),
        (32, 192, 784),
        (192, 32, 784),
        (32, 192, 784),
        (192, 32, 784),
        (64, 192, 196),
        (384, 64, 196),
        (64, 384, 196),
        (384, 64, 196),
        (64, 384, 196),
        (384, 64, 196),
        (64, 384, 196),
        (384, 64, 196),
        (96, 384, 196),
        (576, 96, 196),
        (96, 576, 196),
        (576, 96, 196),
        (96, 576, 196),
        (576, 96, 196),
        (160, 576, 49),
        (960, 160, 49),
        (160, 960, 49),
        (960, 160, 49),
        (160, 960, 49),
        (960, 160, 49),
        (320, 960, 49),
        (1280, 320, 49),
    ];
    const MR: usize = 16;
    const NR: usize = 4;
    /// The largest quantized activation: 14 bits, signed.
    const QMAX: f32 = 8191.0;

    type Tile = [[v128; 4]; NR];

    #[inline(always)]
    fn broadcast(v: v128, c: usize) -> v128 {
        match c {
            0 => i32x4_shuffle::<0, 0, 0, 0>(v, v),
            1 => i32x4_shuffle::<1, 1, 1, 1>(v, v),
            2 => i32x4_shuffle::<2, 2, 2, 2>(v, v),
            _ => i32x4_shuffle::<3, 3, 3, 3>(v, v),
        }
    }

    /// One step of either tile: `acc[c][i] = add(acc[c][i], madd(A[i], B[c]))`.
    #[inline(always)]
    unsafe fn step(
        acc: &mut Tile,
        a: *const v128,
        b: *const v128,
        madd: impl Fn(v128, v128) -> v128,
        add: impl Fn(v128, v128) -> v128,
    ) {
        let column = [
            v128_load(a),
            v128_load(a.add(1)),
            v128_load(a.add(2)),
            v128_load(a.add(3)),
        ];
        let row = v128_load(b);
        for (c, accs) in acc.iter_mut().enumerate() {
            let s = broadcast(row, c);
            for (v, a) in accs.iter_mut().zip(column) {
                *v = add(*v, madd(a, s));
            }
        }
    }

    /// `steps` steps of A `[step][16]` and B `[step][4]` (f32 lanes, or i16 pairs), unrolled
    /// by two as the shipped kernel is.
    #[inline(always)]
    unsafe fn steps(
        acc: &mut Tile,
        a: *const v128,
        b: *const v128,
        steps: usize,
        madd: impl Fn(v128, v128) -> v128 + Copy,
        add: impl Fn(v128, v128) -> v128 + Copy,
    ) {
        let mut s = 0;
        while s + 2 <= steps {
            step(acc, a.add(s * 4), b.add(s), madd, add);
            step(acc, a.add((s + 1) * 4), b.add(s + 1), madd, add);
            s += 2;
        }
        if s < steps {
            step(acc, a.add(s * 4), b.add(s), madd, add);
        }
    }

    /// A 4×4 block of 32-bit lanes, transposed.
    #[inline(always)]
    fn transpose([c0, c1, c2, c3]: [v128; 4]) -> [v128; 4] {
        let low01 = i32x4_shuffle::<0, 4, 1, 5>(c0, c1);
        let low23 = i32x4_shuffle::<0, 4, 1, 5>(c2, c3);
        let high01 = i32x4_shuffle::<2, 6, 3, 7>(c0, c1);
        let high23 = i32x4_shuffle::<2, 6, 3, 7>(c2, c3);
        [
            i32x4_shuffle::<0, 1, 4, 5>(low01, low23),
            i32x4_shuffle::<2, 3, 6, 7>(low01, low23),
            i32x4_shuffle::<0, 1, 4, 5>(high01, high23),
            i32x4_shuffle::<2, 3, 6, 7>(high01, high23),
        ]
    }

    #[inline(always)]
    fn relu6(v: v128) -> v128 {
        f32x4_pmin(f32x4_pmax(v, f32x4_splat(0.0)), f32x4_splat(6.0))
    }

    #[inline(never)]
    unsafe fn tile_f32(a: *const v128, b: *const v128, k: usize, bias: *const v128) -> Tile {
        let mut acc: Tile = [[f32x4_splat(0.0); 4]; NR];
        steps(
            &mut acc,
            a,
            b,
            k,
            |x, y| f32x4_mul(x, y),
            |x, y| f32x4_add(x, y),
        );
        for column in acc.iter_mut() {
            for (i, v) in column.iter_mut().enumerate() {
                *v = relu6(f32x4_add(*v, v128_load(bias.add(i))));
            }
        }
        acc
    }

    #[inline(never)]
    unsafe fn tile_i16(
        a: *const v128,
        b: *const v128,
        pairs: usize,
        bias: *const v128,
        row_scale: *const v128,
        pixel_scale: &[f32],
    ) -> Tile {
        let mut acc: Tile = [[i32x4_splat(0); 4]; NR];
        steps(
            &mut acc,
            a,
            b,
            pairs,
            |x, y| i32x4_dot_i16x8(x, y),
            |x, y| i32x4_add(x, y),
        );
        for (column, &scale) in acc.iter_mut().zip(pixel_scale) {
            let scale = f32x4_splat(scale);
            for (i, v) in column.iter_mut().enumerate() {
                let rows = f32x4_mul(v128_load(row_scale.add(i)), scale);
                let sum = f32x4_mul(f32x4_convert_i32x4(*v), rows);
                *v = relu6(f32x4_add(sum, v128_load(bias.add(i))));
            }
        }
        acc
    }

    unsafe fn store(tile: &Tile, out: &mut [f32], m: usize, rows: usize, first_pixel: usize) {
        for (c, column) in tile.iter().enumerate() {
            let pixel = first_pixel + c;
            if pixel * m >= out.len() {
                break;
            }
            let mut lanes = [0f32; MR];
            for (i, v) in column.iter().enumerate() {
                v128_store(lanes.as_mut_ptr().add(4 * i) as *mut v128, *v);
            }
            let to = (m - rows).min(MR);
            out[pixel * m + rows..][..to].copy_from_slice(&lanes[..to]);
        }
    }

    /// A tiny deterministic generator, so both kernels see the same data every run.
    struct Noise(u32);
    impl Noise {
        fn next(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 17;
            self.0 ^= self.0 << 5;
            (self.0 >> 8) as f32 / (1 << 24) as f32
        }
    }

    struct Layer {
        m: usize,
        k: usize,
        n: usize,
        /// NHWC activations, `[n][k]`.
        input: Vec<f32>,
        /// Integer weights `[m][k]` (`q − zero point`) and each row's scale.
        weights: Vec<i16>,
        row_scale: Vec<f32>,
        bias: Vec<f32>,
        a_f32: Vec<v128>,
        a_i16: Vec<v128>,
    }

    impl Layer {
        fn new((m, k, n): (usize, usize, usize), noise: &mut Noise) -> Layer {
            assert!(k % 8 == 0, "every layer's K is a multiple of 8");
            // Activations for whole panels of 4 pixels, the padding zero.
            let mut input: Vec<f32> = (0..n * k).map(|_| noise.next() * 6.0 - 1.0).collect();
            input.resize(n.next_multiple_of(NR) * k, 0.0);
            let weights: Vec<i16> = (0..m * k)
                .map(|_| (noise.next() * 255.0) as i16 - 128)
                .collect();
            let row_scale: Vec<f32> = (0..m.next_multiple_of(MR))
                .map(|_| 0.001 + noise.next() * 0.01)
                .collect();
            let bias: Vec<f32> = (0..m.next_multiple_of(MR))
                .map(|_| noise.next() - 0.5)
                .collect();
            let tiles = m.div_ceil(MR);
            let weight = |row: usize, kk: usize| -> i16 {
                if row < m && kk < k {
                    weights[row * k + kk]
                } else {
                    0
                }
            };
            // A panels: `[tile][step][16 rows]`, f32 as dequantized, i16 as (k, k+1) pairs.
            let mut a_f32 = Vec::with_capacity(tiles * k * 4);
            let mut a_i16 = Vec::with_capacity(tiles * k.div_ceil(2) * 4);
            for t in 0..tiles {
                for kk in 0..k {
                    for i in 0..4 {
                        let r = t * MR + 4 * i;
                        a_f32.push(f32x4(
                            weight(r, kk) as f32 * row_scale[r],
                            weight(r + 1, kk) as f32 * row_scale[r + 1],
                            weight(r + 2, kk) as f32 * row_scale[r + 2],
                            weight(r + 3, kk) as f32 * row_scale[r + 3],
                        ));
                    }
                }
                for pair in 0..k.div_ceil(2) {
                    for i in 0..4 {
                        let r = t * MR + 4 * i;
                        let (k0, k1) = (2 * pair, 2 * pair + 1);
                        a_i16.push(i16x8(
                            weight(r, k0),
                            weight(r, k1),
                            weight(r + 1, k0),
                            weight(r + 1, k1),
                            weight(r + 2, k0),
                            weight(r + 2, k1),
                            weight(r + 3, k0),
                            weight(r + 3, k1),
                        ));
                    }
                }
            }
            Layer {
                m,
                k,
                n,
                input,
                weights,
                row_scale,
                bias,
                a_f32,
                a_i16,
            }
        }

        /// Packs B as tract would (`[panel][k][4 pixels]`, 4×4 transposes) and runs every
        /// tile.
        fn run_f32(&self, out: &mut [f32]) -> f64 {
            let packing = Instant::now();
            let (m, k) = (self.m, self.k);
            let panels = self.n.div_ceil(NR);
            let mut b = vec![f32x4_splat(0.0); panels * k];
            for (p, panel) in b.chunks_exact_mut(k).enumerate() {
                let rows = &self.input[p * NR * k..][..NR * k];
                for (j, four) in panel.chunks_exact_mut(4).enumerate() {
                    let columns = std::array::from_fn(|c| unsafe {
                        v128_load(rows[c * k + 4 * j..].as_ptr() as *const v128)
                    });
                    four.copy_from_slice(&transpose(columns));
                }
            }
            let packed_ms = packing.elapsed().as_secs_f64() * 1e3;
            for t in 0..m.div_ceil(MR) {
                for p in 0..panels {
                    unsafe {
                        let tile = tile_f32(
                            self.a_f32.as_ptr().add(t * k * 4),
                            b.as_ptr().add(p * k),
                            k,
                            self.bias.as_ptr().add(t * MR) as *const v128,
                        );
                        store(&tile, out, m, t * MR, p * NR);
                    }
                }
            }
            packed_ms
        }

        /// Quantizes each pixel to 14 bits with its own scale, packs B as (k, k+1) pairs
        /// `[panel][pair][4 pixels]` (4×4 transposes of pairs), and runs every tile.
        fn run_i16(&self, out: &mut [f32]) -> f64 {
            let packing = Instant::now();
            let (m, k) = (self.m, self.k);
            let pairs = k / 2;
            let panels = self.n.div_ceil(NR);
            let mut quantized = vec![i16x8_splat(0); panels * NR * k / 8];
            let mut pixel_scale = vec![0f32; panels * NR];
            for (pixel, (row, into)) in self
                .input
                .chunks_exact(k)
                .zip(quantized.chunks_exact_mut(k / 8))
                .enumerate()
            {
                let vectors = |i: usize| unsafe { v128_load(row[4 * i..].as_ptr() as *const v128) };
                let mut largest = f32x4_splat(0.0);
                for i in 0..k / 4 {
                    largest = f32x4_pmax(largest, f32x4_abs(vectors(i)));
                }
                let lanes = [
                    f32x4_extract_lane::<0>(largest),
                    f32x4_extract_lane::<1>(largest),
                    f32x4_extract_lane::<2>(largest),
                    f32x4_extract_lane::<3>(largest),
                ];
                let largest = lanes.into_iter().fold(0f32, f32::max);
                let scale = if largest > 0.0 { largest / QMAX } else { 1.0 };
                pixel_scale[pixel] = scale;
                let inverse = f32x4_splat(1.0 / scale);
                let level = |v: v128| i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(v, inverse)));
                for (i, q) in into.iter_mut().enumerate() {
                    *q = i16x8_narrow_i32x4(level(vectors(2 * i)), level(vectors(2 * i + 1)));
                }
            }
            let mut b = vec![i16x8_splat(0); panels * pairs];
            let per_pixel = k / 8;
            for (p, panel) in b.chunks_exact_mut(pairs).enumerate() {
                let rows = &quantized[p * NR * per_pixel..][..NR * per_pixel];
                // A vector of a pixel holds 4 pairs: transposed, a pair of 4 pixels each.
                for (j, four) in panel.chunks_exact_mut(4).enumerate() {
                    let columns = std::array::from_fn(|c| rows[c * per_pixel + j]);
                    four.copy_from_slice(&transpose(columns));
                }
            }
            let packed_ms = packing.elapsed().as_secs_f64() * 1e3;
            for t in 0..m.div_ceil(MR) {
                for p in 0..panels {
                    unsafe {
                        let tile = tile_i16(
                            self.a_i16.as_ptr().add(t * pairs * 4),
                            b.as_ptr().add(p * pairs),
                            pairs,
                            self.bias.as_ptr().add(t * MR) as *const v128,
                            self.row_scale.as_ptr().add(t * MR) as *const v128,
                            &pixel_scale[p * NR..][..NR],
                        );
                        store(&tile, out, m, t * MR, p * NR);
                    }
                }
            }
            packed_ms
        }

        /// The exact layer in f64, for the error of both.
        fn reference(&self) -> Vec<f32> {
            let (m, k, n) = (self.m, self.k, self.n);
            let mut out = vec![0f32; n * m];
            for pixel in 0..n {
                for row in 0..m {
                    let sum: f64 = (0..k)
                        .map(|kk| {
                            f64::from(self.weights[row * k + kk])
                                * f64::from(self.input[pixel * k + kk])
                        })
                        .sum();
                    let value = sum * f64::from(self.row_scale[row]) + f64::from(self.bias[row]);
                    out[pixel * m + row] = value.clamp(0.0, 6.0) as f32;
                }
            }
            out
        }
    }

    fn median(mut ms: Vec<f64>) -> f64 {
        ms.sort_by(f64::total_cmp);
        ms[ms.len() / 2]
    }

    fn worst_error(got: &[f32], exact: &[f32]) -> f32 {
        let top = exact
            .iter()
            .fold(0f32, |a, v| a.max(v.abs()))
            .max(f32::MIN_POSITIVE);
        got.iter()
            .zip(exact)
            .fold(0f32, |a, (g, e)| a.max((g - e).abs()))
            / top
    }

    pub fn main() {
        let runs: usize = std::env::args()
            .filter(|a| a != "tile_kernels")
            .nth(1)
            .and_then(|a| a.parse().ok())
            .unwrap_or(15)
            .max(1);
        let mut noise = Noise(0x9e37_79b9);
        let (mut all_f32, mut all_i16, mut best) = (0.0, 0.0, 0.0);
        let mut packs = (0.0, 0.0);
        let (mut err_f32, mut err_i16) = (0f32, 0f32);
        for &shape in &LAYERS {
            let layer = Layer::new(shape, &mut noise);
            let (m, k, n) = shape;
            let mut out = vec![0f32; n * m];
            let (mut f32_ms, mut i16_ms) = (Vec::new(), Vec::new());
            let (mut f32_pack, mut i16_pack) = (Vec::new(), Vec::new());
            let exact = layer.reference();
            for _ in 0..runs {
                let t = Instant::now();
                f32_pack.push(layer.run_f32(&mut out));
                f32_ms.push(t.elapsed().as_secs_f64() * 1e3);
                err_f32 = err_f32.max(worst_error(&out, &exact));
                let t = Instant::now();
                i16_pack.push(layer.run_i16(&mut out));
                i16_ms.push(t.elapsed().as_secs_f64() * 1e3);
                err_i16 = err_i16.max(worst_error(&out, &exact));
            }
            let (f, i) = (median(f32_ms), median(i16_ms));
            let (fp, ip) = (median(f32_pack), median(i16_pack));
            packs.0 += fp;
            packs.1 += ip;
            all_f32 += f;
            all_i16 += i;
            best += f.min(i);
            println!(
                "M {m:5} K {k:4} N {n:6}: f32 {f:7.3} ms (packing {fp:.3}), i16 {i:7.3} ms \
                 (quantizing and packing {ip:.3}), {:.2}x",
                f / i
            );
        }
        println!(
            "all 34 layers: f32 {all_f32:.2} ms, i16 {all_i16:.2} ms, {:.2}x; the faster of \
             the two per layer {best:.2} ms, {:.2}x; largest error relative to the layer's \
             largest output: f32 {err_f32:.1e}, i16 {err_i16:.1e}",
            all_f32 / all_i16,
            all_f32 / best
        );
        let (tiles_f32, tiles_i16) = (all_f32 - packs.0, all_i16 - packs.1);
        println!(
            "of which packing: f32 {:.2} ms, i16 {:.2} ms; the tiles alone: f32 {tiles_f32:.2} \
             ms, i16 {tiles_i16:.2} ms, {:.2}x",
            packs.0,
            packs.1,
            tiles_f32 / tiles_i16
        );
    }
}
