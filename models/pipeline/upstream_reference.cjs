// Runs upstream nsfwjs (its bundled MobileNetV2, on @tensorflow/tfjs's CPU backend)
// on every PNG of the fidelity set and writes the five class probabilities per image.
// Pixels reach nsfwjs as an int32 [h, w, 3] tensor of the PNG's RGB channels
// (alpha dropped, as tf.browser.fromPixels does), so upstream does its own
// normalisation and resize exactly as it does in a browser.
const fs = require("fs");
const path = require("path");
const tf = require("@tensorflow/tfjs");
const { PNG } = require("pngjs");
const nsfwjs = require("nsfwjs");

const CLASSES = ["Drawing", "Hentai", "Neutral", "Porn", "Sexy"];

function rgbTensor(file) {
  const png = PNG.sync.read(fs.readFileSync(file));
  const rgb = new Int32Array(png.width * png.height * 3);
  for (let i = 0; i < png.width * png.height; i++) {
    rgb[i * 3] = png.data[i * 4];
    rgb[i * 3 + 1] = png.data[i * 4 + 1];
    rgb[i * 3 + 2] = png.data[i * 4 + 2];
  }
  return tf.tensor3d(rgb, [png.height, png.width, 3], "int32");
}

async function main() {
  const [imageDir, outFile] = process.argv.slice(2);
  await tf.setBackend("cpu");
  const model = await nsfwjs.load("MobileNetV2");
  const files = fs.readdirSync(imageDir).filter((f) => f.endsWith(".png")).sort();
  const images = {};
  for (const file of files) {
    const input = rgbTensor(path.join(imageDir, file));
    const output = model.infer(input);
    const probabilities = Array.from(await output.data());
    input.dispose();
    output.dispose();
    images[file] = Object.fromEntries(CLASSES.map((c, i) => [c, probabilities[i]]));
    console.log(file, probabilities.map((p) => p.toFixed(4)).join(" "));
  }
  const versions = {
    nsfwjs: JSON.parse(fs.readFileSync(path.join(__dirname, "node_modules/nsfwjs/package.json"))).version,
    "@tensorflow/tfjs": tf.version.tfjs,
    backend: tf.getBackend(),
  };
  fs.writeFileSync(outFile, JSON.stringify({ generated_by: versions, classes: CLASSES, images }, null, 2) + "\n");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
