// Decode every buffer a Python test lists, with pcld.js, and print what came out as JSON.
// usage: node decode_cases.mjs <path of pcld.js> <manifest.json>
//   manifest: [{name, file, offset?}], offset > 0 hands the decoder a Uint8Array that starts
//   that many bytes into its ArrayBuffer (the unaligned path).
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [decoderPath, manifestPath] = process.argv.slice(2);
const { decodePointCloud } = await import(pathToFileURL(decoderPath).href);

const base64 = (array) =>
  Buffer.from(array.buffer, array.byteOffset, array.byteLength).toString("base64");

const results = {};
for (const { name, file, offset } of JSON.parse(readFileSync(manifestPath, "utf8"))) {
  const bytes = readFileSync(file);
  let input;
  if (offset) {
    const shifted = new Uint8Array(new ArrayBuffer(bytes.length + offset), offset);
    shifted.set(bytes);
    input = shifted;
  } else {
    // An ArrayBuffer of its own, as fetch() gives one (Node Buffers share a pool).
    input = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
  }
  try {
    const cloud = decodePointCloud(input);
    const buffer = input instanceof ArrayBuffer ? input : input.buffer;
    results[name] = {
      header: cloud.header,
      count: cloud.count,
      positions: base64(cloud.positions),
      colors: base64(cloud.colors),
      segments: base64(cloud.segments),
      types: [cloud.positions, cloud.colors, cloud.segments].map((a) => a.constructor.name),
      views: [cloud.positions, cloud.colors, cloud.segments].map((a) => a.buffer === buffer),
    };
  } catch (error) {
    results[name] = { error: error.message, type: error.constructor.name };
  }
}
process.stdout.write(JSON.stringify(results));
