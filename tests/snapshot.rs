//! The pre-initialised module's memory image stays what makes a fresh instance cheap
//! (see `src/snapshot/`): dense enough for wasmtime to map it copy-on-write, small,
//! and within Compute's 128 MB heap. Reads `bin/main.wasm`, which `make test` builds.

use wasmparser::{DataKind, Operator, Parser, Payload};

const MB: u64 = 1_000_000;

struct MemoryImage {
    minimum_bytes: u64,
    data_bytes: u64,
    first: u64,
    end: u64,
}

fn memory_image(wasm: &[u8]) -> MemoryImage {
    let mut image = MemoryImage {
        minimum_bytes: 0,
        data_bytes: 0,
        first: u64::MAX,
        end: 0,
    };
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.expect("bin/main.wasm parses") {
            Payload::MemorySection(memories) => {
                let memory = memories.into_iter().next().expect("one memory").unwrap();
                image.minimum_bytes = memory.initial * 65536;
            }
            Payload::DataSection(segments) => {
                for segment in segments {
                    let segment = segment.unwrap();
                    let DataKind::Active { offset_expr, .. } = segment.kind else {
                        continue;
                    };
                    if segment.data.is_empty() {
                        continue;
                    }
                    let mut ops = offset_expr.get_operators_reader();
                    let Operator::I32Const { value } = ops.read().unwrap() else {
                        panic!("data segment with a non-constant offset");
                    };
                    let start = value as u32 as u64;
                    let len = segment.data.len() as u64;
                    image.data_bytes += len;
                    image.first = image.first.min(start);
                    image.end = image.end.max(start + len);
                }
            }
            _ => {}
        }
    }
    image
}

#[test]
fn the_snapshot_is_dense_small_and_fits_computes_heap() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/bin/main.wasm");
    let wasm = std::fs::read(path).expect("bin/main.wasm: run `make test`, it builds it first");
    let image = memory_image(&wasm);
    let range = image.end - image.first;
    eprintln!(
        "bin/main.wasm: {:.1} MB; data {:.1} MB over {:.1}..{:.1} MB; memory minimum {:.1} MB",
        wasm.len() as f64 / MB as f64,
        image.data_bytes as f64 / MB as f64,
        image.first as f64 / MB as f64,
        image.end as f64 / MB as f64,
        image.minimum_bytes as f64 / MB as f64,
    );
    // wasmtime builds a copy-on-write image only when the initialised range is less than
    // twice the data in it; otherwise every instance copies the segments (~35 ms).
    assert!(
        range < 2 * image.data_bytes,
        "sparse snapshot: {range} bytes of range for {} bytes of data",
        image.data_bytes
    );
    // The model's state is ~11 MB, the program's static data ~3.5 MB.
    assert!(
        image.data_bytes < 20 * MB,
        "snapshot data grew to {} bytes",
        image.data_bytes
    );
    assert!(
        image.minimum_bytes <= 128 << 20,
        "memory minimum beyond Compute's 128 MB heap"
    );
}
