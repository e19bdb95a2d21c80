// Upstream nsfwjs (its bundled MobileNetV2) on @tensorflow/tfjs-backend-wasm (SIMD, one
// thread) in Node, on the benchmark's JPEG inputs: inference alone, and end to end
// (JPEG decode with jpeg-js + nsfwjs preprocessing + inference).
//     node run.cjs RUNS INPUT_DIR   → one JSON object, milliseconds (median, p90, min)
const fs = require("fs");
const path = require("path");
const tf = require("@tensorflow/tfjs");
const wasm = require("@tensorflow/tfjs-backend-wasm");
const jpeg = require("jpeg-js");
const nsfwjs = require("nsfwjs");

function summary(ms) {
  ms.sort((a, b) => a - b);
  const at = (q) => ms[Math.round((ms.length - 1) * q)];
  return { median: at(0.5), p90: at(0.9), min: ms[0] };
}

async function main() {
  const [runs, dir] = [Number(process.argv[2] || 15), process.argv[3]];
  wasm.setWasmPaths(path.join(__dirname, "node_modules/@tensorflow/tfjs-backend-wasm/dist/"));
  wasm.setThreadsCount(1);
  await tf.setBackend("wasm");
  const model = await nsfwjs.load("MobileNetV2");
  const report = { backend: tf.getBackend(), inputs: {} };
  for (const name of ["jpeg_320x240.jpg", "jpeg_1024x768.jpg", "jpeg_4000x3000.jpg"]) {
    const bytes = fs.readFileSync(path.join(dir, name));
    const decodeToTensor = () => {
      const image = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, maxMemoryUsageInMB: 1024 });
      return tf.tensor3d(image.data, [image.height, image.width, 3], "int32");
    };
    const pre = decodeToTensor();
    const inference = [], endToEnd = [];
    for (let i = 0; i < runs; i++) {
      let start = performance.now();
      let out = model.infer(pre);
      await out.data();
      inference.push(performance.now() - start);
      out.dispose();
      start = performance.now();
      const input = decodeToTensor();
      out = model.infer(input);
      await out.data();
      endToEnd.push(performance.now() - start);
      out.dispose();
      input.dispose();
    }
    pre.dispose();
    report.inputs[name] = { inference: summary(inference), end_to_end: summary(endToEnd) };
  }
  console.log(JSON.stringify(report));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
