"""Puts the benchmark's measurements side by side: bench/results.json and bench/results.md
(bench/results-avx2.* for a run with BENCH_CPU=avx2, so that it sits beside the host's own)."""

import json
import os
import sys
from pathlib import Path

out, wasm_size, runs = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
results = "bench/results-avx2" if os.environ.get("BENCH_CPU") == "avx2" else "bench/results"
native = json.loads((out / "stages-native.json").read_text())
wasm = json.loads((out / "stages-wasm.json").read_text())
requests = json.loads((out / "requests.json").read_text())
nsfwjs = json.loads((out / "nsfwjs.json").read_text())

host = (out / "host.txt").read_text().strip() if (out / "host.txt").exists() else "unknown host"
md = [f"Host: {host}.", "",
      f"Medians (p90) in ms over {runs} runs, one machine, one run of `make bench`.", ""]
md += ["### Stages: native vs Wasm (simd128, Viceroy)", ""]
md += ["JPEG decode is the sampled decoder (libjpeg-turbo's pixels where the model reads); "
       "(DCT-scaled) is jpeg-decoder's reduced decode it replaced, (full decode) image-rs at full size.", ""]
md += ["| input | bytes | decode | (DCT-scaled) | (full decode) | preprocess | inference | rewrite | classify total | Wasm/native inference | peak heap MB |",
       "|---|---|---|---|---|---|---|---|---|---|---|"]
def cell(stage):
    return f"{stage['median']:.1f} ({stage['p90']:.1f})"
for name, n in native["inputs"].items():
    w = wasm["inputs"].get(name, n)
    total_w = w["decode"]["median"] + w["preprocess"]["median"] + w["inference"]["median"]
    total_n = n["decode"]["median"] + n["preprocess"]["median"] + n["inference"]["median"]
    ratio = w["inference"]["median"] / n["inference"]["median"]
    for label, r in ((("wasm", w),) if name in wasm["inputs"] else ()) + (("native", n),):
        total = total_w if label == "wasm" else total_n
        scaled = cell(r["decode_dct_scaled"]) if "decode_dct_scaled" in r else "–"
        md.append(f"| {name} ({label}) | {r['bytes']} | {cell(r['decode'])} | {scaled} | {cell(r['decode_full'])} | {cell(r['preprocess'])} | "
                  f"{cell(r['inference'])} | {cell(r['rewrite'])} | {total:.1f} | "
                  f"{ratio:.2f} | {r['peak_heap_mb']:.1f} |")
drawn = [(name, side, r) for name in native["inputs"]
         for side, r in (("wasm", wasm["inputs"].get(name)), ("native", native["inputs"][name]))
         if r and "frames_drawn" in r]
if drawn:
    md += ["", "An animated GIF's frames: all read and drawn (`media::gif`) against image-rs's "
           "reader of the same frames, alternated; and the whole step as the service runs it "
           "(read, compared, the judged ones chosen).", "",
           "| input | drawn (`media::gif`) | drawn (image-rs) | image-rs/ours | whole step |",
           "|---|---|---|---|---|"]
    for name, side, r in drawn:
        ratio = r["frames_drawn_image_rs"]["median"] / r["frames_drawn"]["median"]
        md.append(f"| {name} ({side}) | {cell(r['frames_drawn'])} | {cell(r['frames_drawn_image_rs'])} | "
                  f"{ratio:.2f} | {cell(r['frames_judged'])} |")
md += ["", f"Model load + optimise (what the Wizer snapshot saves per request): native "
       f"{native['model_load_ms']:.0f} ms, Wasm {wasm['model_load_ms']:.0f} ms; model heap "
       f"{wasm['model_heap_mb']:.1f} MB. Snapshotted module `bin/main.wasm`: {wasm_size / 1e6:.1f} MB.",
       "", f"This host's pace in Wasm (`budget::Pace`, 1.0 on the Zen 5 the CPU costs were measured on; "
       f"instances scale their estimates by it): {wasm.get('pace', float('nan')):.2f}.", ""]

operators = {side: json.loads((out / f"operators-{side}.json").read_text()) for side in ("native", "wasm")}
md += ["### Where inference goes: per operator, native vs Wasm", ""]
md += [f"Scores of the fixed input: native `{operators['native']['scores']}`, Wasm `{operators['wasm']['scores']}`.", ""]
md += ["| operator | nodes | native ms | Wasm ms | Wasm/native |", "|---|---|---|---|---|"]
by_kind = {}
for n in operators["native"]["nodes"]:
    kind = by_kind.setdefault(n["operator"], [0, 0.0, 0.0])
    kind[0] += 1
    kind[1] += n["median_ms"]
for w in operators["wasm"]["nodes"]:
    by_kind.setdefault(w["operator"], [0, 0.0, 0.0])[2] += w["median_ms"]
for kind, (count, n_ms, w_ms) in sorted(by_kind.items(), key=lambda kv: -kv[1][2]):
    if max(n_ms, w_ms) >= 0.05:
        ratio = f"{w_ms / n_ms:.2f}" if n_ms > 0 else "-"
        md.append(f"| {kind} | {count} | {n_ms:.2f} | {w_ms:.2f} | {ratio} |")
total_n = sum(v[1] for v in by_kind.values())
total_w = sum(v[2] for v in by_kind.values())
md += [f"| **total** | | {total_n:.2f} | {total_w:.2f} | {total_w / total_n:.2f} |", ""]
md += ["Node counts are native's; the two plans fuse slightly differently (native fuses more "
       "batch-norm into the matmuls).", ""]
md += ["Peak heap of one whole request (`moderate`, default policy) above the loaded model, native: "
       + ", ".join(f"{name} {r['request_peak_heap_mb']:.1f} MB ({r['verdict']})"
                   for name, r in native["inputs"].items()) + ".", ""]

md += ["### Whole requests through `viceroy serve` (fresh instance per request)", ""]
md += ["| scenario | request | classify (decode + inference) | decode (incl. preprocess) | inference | rewrite | cache lookup | instance CPU | largest instance CPU | instances |",
       "|---|---|---|---|---|---|---|---|---|---|"]
def stage(r, name):
    timing = r["server_timing"].get(name)
    return cell(timing) if timing else ""
for name, r in requests.items():
    md.append(f"| {name} | {cell(r['request'])} | {stage(r, 'classify')} | {stage(r, 'decode')} | "
              f"{stage(r, 'inference')} | {stage(r, 'rewrite')} | {stage(r, 'cache')} | {stage(r, 'cpu')} | {stage(r, 'largest_instance_cpu')} | {stage(r, 'instances')} |")
paces = sorted(r["server_timing"]["pace"]["median"] for r in requests.values() if "pace" in r["server_timing"])
if paces:
    md += ["", f"Pace the service's instances planned with (`pace` in `Server-Timing`; median over the "
           f"{len(paces)} scenarios that planned): {paces[len(paces) // 2]:.2f}, range {paces[0]:.2f}–{paces[-1]:.2f}; "
           f"the stages benchmark's, above: {wasm.get('pace', float('nan')):.2f}. Far apart, the instances plan "
           f"with the wrong costs."]
md += ["", "Stage columns are the service's own `Server-Timing`, each request a fresh instance; "
       "instance CPU is `elapsed_vcpu_ms()` at reply time (what Fastly's 50 ms limit counts), "
       "the largest instance the maximum of it and the siblings' (`x-moderation-sibling-cpu`)."]
base = requests["plain proxy: 100 KB HTML"]["request"]["median"]
filt = requests["filter: 100 KB HTML (non-image pass-through)"]["request"]["median"]
md += ["", f"Non-image pass-through overhead vs the plain proxy (median): {filt - base:+.2f} ms."]
large_plain = requests.get("plain proxy: 50 MB non-image")
large_filter = requests.get("filter: 50 MB non-image (pass-through)")
if large_plain and large_filter:
    md += [f"50 MB non-image: {large_filter['request']['median']:.1f} ms through the filter, "
           f"{large_plain['request']['median']:.1f} through the plain proxy (median)."]
plain_jpeg = requests["plain proxy: JPEG 1024x768"]["request"]["median"]
for name, r in requests.items():
    if "cache hit" in name and "1024x768" in name:
        md += [f"Cache hit overhead vs the plain proxy, JPEG 1024x768 (median): "
               f"{r['request']['median'] - plain_jpeg:+.2f} ms."]
md += [""]

pdq_rows = [json.loads(line) for line in (out / "pdq.jsonl").read_text().splitlines() if line.strip()]
md += ["### PDQ: hashing, and matching a 100,000-entry list", ""]
md += ["| target | hash 1024x768 | hash 4000x3000 | dihedral (8 hashes) 1024x768 | read packed list (4.4 MB) | match | match 8 dihedral hashes |",
       "|---|---|---|---|---|---|---|"]
for target in ("native", "wasm32"):
    rows = [r for r in pdq_rows if r["target"] == target]
    small = next(r for r in rows if r.get("size") == "1024x768")
    large = next(r for r in rows if r.get("size") == "4000x3000")
    lists = next(r for r in rows if "packed_bytes" in r)
    md.append(f"| {target} | {small['ms']:.2f} | {large['ms']:.2f} | {small['dihedral_ms']:.2f} | "
              f"{lists['parse_ms']:.2f} | {lists['match_ms']:.2f} | {lists['match_dihedral_ms']:.2f} |")
md += ["", "Medians in ms (`examples/pdq.rs bench`). The service hashes the image as decoded for "
       "judging (large JPEGs at a reduced size), so a 12 MP photo costs far less than the 4000x3000 row.", ""]

svg_rows = [json.loads(line) for line in (out / "svg_bounds.jsonl").read_text().splitlines() if line.strip()]
md += ["### SVG drawings at each drawing bound", ""]
md += ["| kind of work | largest accepted | native | wasm32 |", "|---|---|---|---|"]
for r in (r for r in svg_rows if r["target"] == "native"):
    w = next(w for w in svg_rows if w["target"] == "wasm32" and w["kind"] == r["kind"])
    md.append(f"| {r['kind']} | {r['largest_accepted']} | {r['median_ms']:.1f} | {w['median_ms']:.1f} |")
md += ["", "Medians in ms of one whole `svg::draw` (parse, bounds, drawing) of the largest drawing of "
       "each kind the bounds accept (`examples/svg_bounds.rs`); a drawing costlier than the bound "
       "at its own size is drawn smaller, down to 224 on its shorter side. A sibling that draws "
       "must fit it in Compute's 50 ms with its own start.", ""]

load = json.loads((out / "load.json").read_text())
md += ["### Load: mixed traffic through `viceroy serve` (tests/load.rs)", ""]
md += [f"{load['requests']} requests at concurrency {load['concurrency']} (60% pages, 30% images in 7 formats "
       f"passed/blocked/rewritten, 10% uploads): {load['seconds']:.1f} s, {load['throughput_rps']:.0f} requests/s, "
       f"p50 {load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms; {load['failures']} wrong answers (5xx or bytes); "
       f"Viceroy RSS {load['rss_warm_mb']:.0f} MB after warm-up, {load['rss_end_mb']:.0f} MB at the end. "
       "Images repeat, so most are verdict-cache hits, as on a real site.", ""]

md += ["### Against upstream nsfwjs on tfjs-backend-wasm (Node, 1 thread, SIMD)", ""]
md += ["| input | nsfwjs inference | ours inference (Wasm) | ratio | nsfwjs decode+classify | ours decode+classify (Wasm) | ratio |",
       "|---|---|---|---|---|---|---|"]
for name, r in nsfwjs["inputs"].items():
    key = name.rsplit(".", 1)[0]
    if key not in wasm["inputs"]:
        continue
    w = wasm["inputs"][key]
    ours_e2e = w["decode"]["median"] + w["preprocess"]["median"] + w["inference"]["median"]
    md.append(f"| {name} | {r['inference']['median']:.1f} | {w['inference']['median']:.1f} | "
              f"{r['inference']['median'] / w['inference']['median']:.2f}x | {r['end_to_end']['median']:.1f} | "
              f"{ours_e2e:.1f} | {r['end_to_end']['median'] / ours_e2e:.2f}x |")

Path(f"{results}.md").write_text("\n".join(md) + "\n")
Path(f"{results}.json").write_text(json.dumps(
    {"runs": int(runs), "wasm_size_bytes": wasm_size, "stages_native": native, "stages_wasm": wasm,
     "requests": requests, "nsfwjs_tfjs_wasm": nsfwjs, "pdq": pdq_rows, "svg_bounds": svg_rows, "load": load, "host": host}, indent=1) + "\n")
