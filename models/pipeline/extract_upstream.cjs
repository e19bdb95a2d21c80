// Recovers the tfjs layers model that nsfwjs ships inside browserify bundles:
// writes build/model.json (Keras topology + weights manifest, untouched) and
// build/weights.bin (the raw uint8-quantized weight bytes, untouched).
// The bundles are plain UMD modules, so requiring them yields the original objects.
const fs = require("fs");
const path = require("path");

const bundleDir = path.join(__dirname, "node_modules/nsfwjs/dist/models/mobilenet_v2");
const modelJson = require(path.join(bundleDir, "model.min.js"));
const shardBase64 = require(path.join(bundleDir, "group1-shard1of1.min.js"));

const manifest = modelJson.weightsManifest;
if (manifest.length !== 1 || manifest[0].paths.length !== 1) {
  throw new Error("expected a single weight group with one shard");
}
const weights = Buffer.from(shardBase64, "base64");
const expectedBytes = manifest[0].weights.reduce((sum, w) => {
  if (!w.quantization || w.quantization.dtype !== "uint8") {
    throw new Error(`weight ${w.name} is not uint8-quantized`);
  }
  return sum + w.shape.reduce((a, b) => a * b, 1);
}, 0);
if (weights.length !== expectedBytes) {
  throw new Error(`shard has ${weights.length} bytes, manifest wants ${expectedBytes}`);
}

const out = path.join(__dirname, "build");
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, "model.json"), JSON.stringify(modelJson));
fs.writeFileSync(path.join(out, "weights.bin"), weights);
console.log(`extracted ${manifest[0].weights.length} uint8 tensors, ${weights.length} bytes`);
