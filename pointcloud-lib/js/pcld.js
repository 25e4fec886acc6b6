// PCLD decoder for browsers: one dependency-free ES module (spec: pointcloud-lib/FORMAT.md).
//
// decodePointCloud(buffer) -> {header, count, positions, colors, segments}   (version 1)
// await decodePointCloudAsync(buffer) -> the same, for version 1 and version 2 (the grid
//   variant: a JPEG and a PNG that the browser's own image decoders read, so it is async;
//   uses WebCodecs' ImageDecoder where present (secure contexts), else createImageBitmap and
//   OffscreenCanvas: a browser or a worker, not node).
//   positions: Float32Array (3 per point), colors: Uint8Array (3 per point), segments: Uint8Array
//   (1 per point, an index into header.categories; header.palette holds its colour).
// The arrays are views of the input buffer, ready for THREE.BufferAttribute; quantised positions
// are dequantised in one loop into a new Float32Array. Malformed input throws an Error whose
// message matches the Python decoder's (pointcloud.codec.decode): keep the two in step.

export const FORMAT_VERSION = 1;
export const GRID_VERSION = 2;
export const MAGIC = "PCLD";
const PREFIX_SIZE = 12;
const ITEM_SIZE = { float32: 4, uint16: 2, uint8: 1 };
// [name, accepted types, components], in block order.
const ATTRIBUTES = [
  ["position", ["float32", "uint16"], 3],
  ["color", ["uint8"], 3],
  ["segment", ["uint8"], 1],
];

/**
 * Decode a PCLD v1 buffer (synchronously; version 2 needs decodePointCloudAsync).
 * @param {ArrayBuffer | ArrayBufferView} input the bytes, e.g. `await response.arrayBuffer()`
 */
export function decodePointCloud(input) {
  const prefix = readPrefix(input);
  if (prefix.version === GRID_VERSION) {
    throw new Error("version 2 is the grid variant: decode it with decodePointCloudAsync");
  }
  return decodePoints(prefix);
}

/**
 * Decode a PCLD buffer of either version; resolves to what decodePointCloud returns.
 * @param {ArrayBuffer | ArrayBufferView} input
 */
export async function decodePointCloudAsync(input) {
  const prefix = readPrefix(input);
  if (prefix.version === GRID_VERSION) return decodeGrid(prefix);
  return decodePoints(prefix);
}

function readPrefix(input) {
  let buffer;
  let base;
  let size;
  if (input instanceof ArrayBuffer) {
    [buffer, base, size] = [input, 0, input.byteLength];
  } else if (ArrayBuffer.isView(input)) {
    [buffer, base, size] = [input.buffer, input.byteOffset, input.byteLength];
  } else {
    throw new Error("buffer must be an ArrayBuffer or a typed array");
  }
  const bytes = new Uint8Array(buffer, base, size);
  const data = new DataView(buffer, base, size);

  if (size < PREFIX_SIZE) {
    throw new Error(`truncated buffer: ${size} bytes, shorter than the 12-byte prefix`);
  }
  const magic = bytes.subarray(0, 4);
  if (String.fromCharCode(...magic) !== MAGIC) {
    throw new Error(`bad magic ${hex(magic)}: expected 50434c44 ('PCLD')`);
  }
  const version = data.getUint32(4, true);
  if (version !== FORMAT_VERSION && version !== GRID_VERSION) {
    throw new Error(`unknown version ${version}: this decoder reads versions 1 and 2`);
  }
  const headerLength = data.getUint32(8, true);
  if (headerLength % 4) {
    throw new Error(`header length ${headerLength} is not a multiple of 4`);
  }
  const bodyStart = PREFIX_SIZE + headerLength;
  if (bodyStart > size) {
    throw new Error(
      `truncated buffer: header length ${headerLength} runs past the end of the ${size}-byte buffer`,
    );
  }
  const header = parseHeader(bytes.subarray(PREFIX_SIZE, bodyStart));
  return { buffer, base, size, bytes, version, header, bodyStart };
}

function decodePoints({ buffer, base, size, header, bodyStart }) {
  const count = checkHeaderFields(header);
  const blocks = checkAttributes(header.attributes, count, size - bodyStart);
  const at = (name) => base + bodyStart + blocks[name].offset;

  let positions;
  const position = blocks.position;
  if (position.type === "uint16") {
    const [lo, step] = checkQuantization(position);
    positions = dequantize(view(Uint16Array, buffer, at("position"), count * 3), lo, step);
  } else {
    positions = view(Float32Array, buffer, at("position"), count * 3);
  }
  const colors = new Uint8Array(buffer, at("color"), count * 3);
  const segments = new Uint8Array(buffer, at("segment"), count);
  const categories = header.categories.length;
  let highest = 0;
  for (let i = 0; i < count; i++) if (segments[i] > highest) highest = segments[i];
  if (count && highest >= categories) {
    throw new Error(`segment value ${highest} is out of range for ${categories} categories`);
  }
  return { header, count, positions, colors, segments };
}

// A typed-array view when the offset is aligned for it, else a copy (typed arrays cannot be
// unaligned). Buffers from fetch() start at offset 0, where the format guarantees alignment.
function view(Type, buffer, byteOffset, length) {
  if (byteOffset % Type.BYTES_PER_ELEMENT === 0) return new Type(buffer, byteOffset, length);
  return new Type(buffer.slice(byteOffset, byteOffset + length * Type.BYTES_PER_ELEMENT));
}

// float32 multiply then add (Math.fround after each), exactly as numpy does it in float32: both
// decoders give bit-identical positions.
function dequantize(steps, lo, step) {
  const out = new Float32Array(steps.length);
  const [lx, ly, lz] = lo.map(Math.fround);
  const [sx, sy, sz] = step.map(Math.fround);
  for (let i = 0; i < steps.length; i += 3) {
    out[i] = Math.fround(steps[i] * sx) + lx;
    out[i + 1] = Math.fround(steps[i + 1] * sy) + ly;
    out[i + 2] = Math.fround(steps[i + 2] * sz) + lz;
  }
  return out;
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function parseHeader(raw) {
  let header;
  try {
    // fatal: invalid UTF-8 is an error; ignoreBOM keeps a BOM so that JSON.parse rejects it,
    // as Python's json does.
    const text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(raw);
    header = JSON.parse(text);
  } catch (error) {
    throw new Error(`invalid JSON header: ${error.message}`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw new Error("invalid JSON header: not an object");
  }
  return header;
}

const isCount = (v) => typeof v === "number" && Number.isInteger(v) && v >= 0;
const isVector = (v) =>
  Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === "number" && isFinite(x));
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function field(header, name) {
  if (!Object.prototype.hasOwnProperty.call(header, name)) {
    throw new Error(`header field '${name}' is missing`);
  }
  return header[name];
}

function checkHeaderFields(header, attributes = true) {
  const count = field(header, "count");
  if (!isCount(count)) throw new Error("header field 'count' must be a non-negative integer");
  for (const name of ["mode", "id"]) {
    if (typeof field(header, name) !== "string") {
      throw new Error(`header field '${name}' must be a string`);
    }
  }
  const bounds = field(header, "bounds");
  if (!(isObject(bounds) && isVector(bounds.min) && isVector(bounds.max))) {
    throw new Error(
      'header field \'bounds\' must be {"min": [x, y, z], "max": [x, y, z]} of finite numbers',
    );
  }
  const categories = field(header, "categories");
  if (!(Array.isArray(categories) && categories.length && categories.every((c) => typeof c === "string"))) {
    throw new Error("header field 'categories' must be a non-empty list of names");
  }
  const palette = field(header, "palette");
  const isColour = (rgb) => Array.isArray(rgb) && rgb.length === 3 && rgb.every((c) => isCount(c) && c <= 255);
  if (!(Array.isArray(palette) && palette.length === categories.length && palette.every(isColour))) {
    throw new Error("header field 'palette' must hold one [r, g, b] (0..255) per category");
  }
  if (attributes && !Array.isArray(field(header, "attributes"))) {
    throw new Error("header field 'attributes' must be a list");
  }
  return count;
}

function checkAttributes(entries, count, bodySize) {
  const expected = Object.fromEntries(ATTRIBUTES.map(([name, types, components]) => [name, [types, components]]));
  const found = {};
  entries.forEach((entry, index) => {
    if (
      !(
        isObject(entry) &&
        typeof entry.name === "string" &&
        typeof entry.type === "string" &&
        ["components", "offset", "length"].every((key) => isCount(entry[key]))
      )
    ) {
      throw new Error(
        `attribute entry ${index} must be an object with name, type, ` +
          "and non-negative integer components, offset and length",
      );
    }
    const { name, type, offset, length } = entry;
    if (!Object.prototype.hasOwnProperty.call(expected, name)) {
      throw new Error(`unknown attribute '${name}'`);
    }
    if (Object.prototype.hasOwnProperty.call(found, name)) {
      throw new Error(`attribute '${name}' appears twice`);
    }
    const [types, components] = expected[name];
    if (!types.includes(type) || entry.components !== components) {
      throw new Error(
        `attribute '${name}' must be ${types.join(" or ")} x${components}, got ${type} x${entry.components}`,
      );
    }
    const needed = count * components * ITEM_SIZE[type];
    if (length !== needed) {
      throw new Error(
        `counts disagree: attribute '${name}' holds ${length} bytes, count ${count} needs ${needed}`,
      );
    }
    if (offset % ITEM_SIZE[type]) {
      throw new Error(`attribute '${name}' offset ${offset} is not a multiple of ${ITEM_SIZE[type]}`);
    }
    if (offset + length > bodySize) {
      throw new Error(
        `truncated buffer: attribute '${name}' ends ${offset + length} bytes after the header, ` +
          `the buffer holds ${bodySize}`,
      );
    }
    found[name] = entry;
  });
  for (const [name] of ATTRIBUTES) {
    if (!(name in found)) throw new Error(`attribute '${name}' is missing`);
  }
  const ordered = Object.values(found).sort((a, b) => a.offset - b.offset);
  for (let i = 0; i + 1 < ordered.length; i++) {
    if (ordered[i].offset + ordered[i].length > ordered[i + 1].offset) {
      throw new Error(`attributes '${ordered[i].name}' and '${ordered[i + 1].name}' overlap`);
    }
  }
  const end = Math.max(...ordered.map((e) => e.offset + e.length));
  if (bodySize > end) throw new Error(`${bodySize - end} trailing bytes after the last attribute`);
  return found;
}

function checkQuantization(position) {
  const q = position.quantization;
  if (!(isObject(q) && isVector(q.min) && isVector(q.step) && q.step.every((s) => s >= 0))) {
    throw new Error(
      'attribute \'position\' (uint16) needs quantization {"min": [x, y, z], "step": [x, y, z]} ' +
        "of finite numbers, steps >= 0",
    );
  }
  return [q.min, q.step];
}

// --- version 2: the grid variant -------------------------------------------------------------

const DEPTH_ENCODING = "log-uint16";
const DEPTH_LEVELS = 65534;
const IMAGES = [
  ["color", ["jpeg", "webp", "png"]],
  ["geometry", ["png", "webp"]],
];
const MIME = { jpeg: "image/jpeg", png: "image/png", webp: "image/webp" };
const SIGNATURES = {
  jpeg: [0xff, 0xd8, 0xff],
  png: [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a],
  webp: [0x52, 0x49, 0x46, 0x46], // "RIFF", then 4 bytes of length and "WEBP"
};

async function decodeGrid({ bytes, header, bodyStart }) {
  const count = checkHeaderFields(header, false);
  const camera = field(header, "camera");
  checkCamera(camera);
  const { width, height, stride } = camera;
  const gridW = Math.ceil(width / stride);
  const gridH = Math.ceil(height / stride);
  const grid = field(header, "grid");
  const positive = (v) => isCount(v) && v > 0;
  if (!(isObject(grid) && positive(grid.width) && positive(grid.height))) {
    throw new Error('header field \'grid\' must be {"width": w, "height": h} of positive integers');
  }
  if (grid.width !== gridW || grid.height !== gridH) {
    throw new Error(
      `grid ${grid.width}x${grid.height} does not match the camera: ` +
        `${width}x${height} at stride ${stride} samples ${gridW}x${gridH}`,
    );
  }
  const [near, far] = checkDepth(field(header, "depth"));
  const body = bytes.subarray(bodyStart);
  const images = checkImages(field(header, "images"), body.length);
  // Both images decode concurrently; faults are reported colour first, as Python does.
  const decoding = IMAGES.map(([name]) => decodeImage(name, images[name], body, gridW, gridH));
  const settled = await Promise.allSettled(decoding);
  for (const result of settled) if (result.status === "rejected") throw result.reason;
  const [rgba, geometry] = settled.map((r) => r.value);

  // One pass over the pixels writes every attribute; the mask (codes > 0) is checked against
  // the header's count as it goes (arrays sized by the count, so an excess stops the pass).
  const table = depthTable(near, far);
  const positions = new Float32Array(3 * count);
  const colors = new Uint8Array(3 * count);
  const segments = new Uint8Array(count);
  const project = camera.model === "pinhole" ? backProjectPinhole : backProjectSphere;
  const found = project(camera, gridW, gridH, table, geometry, rgba, positions, colors, segments);
  if (found !== count) {
    throw new Error(`counts disagree: header count ${count}, the depth image holds ${found} points`);
  }
  const categories = header.categories.length;
  let highest = 0;
  for (let i = 0; i < count; i++) if (segments[i] > highest) highest = segments[i];
  if (count && highest >= categories) {
    throw new Error(`segment value ${highest} is out of range for ${categories} categories`);
  }
  return { header, count, positions, colors, segments };
}

// float32 depth for each code, as pointcloud.grid.depth_table computes it (float64, then float32).
function depthTable(near, far) {
  const step = Math.log(far / near) / DEPTH_LEVELS;
  const table = new Float32Array(DEPTH_LEVELS + 2);
  table[0] = NaN;
  for (let k = 0; k <= DEPTH_LEVELS; k++) table[k + 1] = near * Math.exp(k * step);
  return table;
}

// The float32 expressions of pointcloud.projection (_PinholeRays.write / _SphereRays.write), with
// the per-column and per-row factors built in float64 and rounded to float32 as there. Each
// returns the number of pixels with a point; past `count` it only counts (the caller refuses).
// Pixels are read as one little-endian uint32 each (R in the low byte: every platform a browser
// runs on is little-endian), one load instead of three.
function backProjectPinhole(camera, gridW, gridH, table, geometry, rgba, out, colors, segments) {
  const { fx, fy, cx, cy, stride } = camera;
  const count = segments.length;
  const xPerCol = new Float32Array(gridW);
  for (let c = 0; c < gridW; c++) xPerCol[c] = (c * stride - cx) / fx;
  let n = 0;
  for (let r = 0, i = 0; r < gridH; r++) {
    const yFactor = Math.fround((cy - r * stride) / fy);
    for (let c = 0; c < gridW; c++, i++) {
      const g = geometry[i];
      const code = ((g & 0xff) << 8) | ((g >>> 8) & 0xff);
      if (code === 0) continue;
      if (n < count) {
        const z = table[code];
        const k = 3 * n;
        out[k] = z * xPerCol[c];
        out[k + 1] = z * yFactor;
        out[k + 2] = -z;
        const p = rgba[i];
        colors[k] = p;
        colors[k + 1] = p >>> 8;
        colors[k + 2] = p >>> 16;
        segments[n] = g >>> 16;
      }
      n++;
    }
  }
  return n;
}

function backProjectSphere(camera, gridW, gridH, table, geometry, rgba, out, colors, segments) {
  const { width, height, stride } = camera;
  const count = segments.length;
  const sinLon = new Float32Array(gridW);
  const negCosLon = new Float32Array(gridW);
  for (let c = 0; c < gridW; c++) {
    const longitude = ((c * stride + 0.5) / width - 0.5) * (2.0 * Math.PI);
    sinLon[c] = Math.sin(longitude);
    negCosLon[c] = -Math.cos(longitude);
  }
  let n = 0;
  for (let r = 0, i = 0; r < gridH; r++) {
    const latitude = (0.5 - (r * stride + 0.5) / height) * Math.PI;
    const cosLat = Math.fround(Math.cos(latitude));
    const sinLat = Math.fround(Math.sin(latitude));
    for (let c = 0; c < gridW; c++, i++) {
      const g = geometry[i];
      const code = ((g & 0xff) << 8) | ((g >>> 8) & 0xff);
      if (code === 0) continue;
      if (n < count) {
        const radius = table[code];
        const horizontal = Math.fround(radius * cosLat);
        const k = 3 * n;
        out[k] = horizontal * sinLon[c];
        out[k + 1] = radius * sinLat;
        out[k + 2] = horizontal * negCosLon[c];
        const p = rgba[i];
        colors[k] = p;
        colors[k + 1] = p >>> 8;
        colors[k + 2] = p >>> 16;
        segments[n] = g >>> 16;
      }
      n++;
    }
  }
  return n;
}

function checkCamera(camera) {
  const positive = (v) => isCount(v) && v > 0;
  const finite = (v) => typeof v === "number" && isFinite(v);
  const ok =
    isObject(camera) &&
    (camera.model === "pinhole" || camera.model === "equirectangular") &&
    ["width", "height", "stride"].every((k) => positive(camera[k])) &&
    (camera.model !== "pinhole" ||
      (["fx", "fy", "cx", "cy"].every((k) => finite(camera[k])) && camera.fx > 0 && camera.fy > 0));
  if (!ok) {
    throw new Error(
      "header field 'camera' must be a pinhole {model, width, height, fx, fy, cx, cy, stride} " +
        "or an equirectangular {model, width, height, stride} camera",
    );
  }
}

function checkDepth(depth) {
  if (!(isObject(depth) && typeof depth.encoding === "string")) {
    throw new Error("header field 'depth' must be an object with an encoding");
  }
  if (depth.encoding !== DEPTH_ENCODING) {
    throw new Error(`unknown depth encoding '${depth.encoding}': this decoder reads '${DEPTH_ENCODING}'`);
  }
  const { near, far } = depth;
  const finite = (v) => typeof v === "number" && isFinite(v);
  if (!(finite(near) && finite(far) && near > 0 && near <= far)) {
    throw new Error("header field 'depth' needs finite near and far, 0 < near <= far");
  }
  return [near, far];
}

function checkImages(entries, bodySize) {
  if (!Array.isArray(entries)) throw new Error("header field 'images' must be a list");
  const expected = Object.fromEntries(IMAGES);
  const found = {};
  entries.forEach((entry, index) => {
    if (
      !(
        isObject(entry) &&
        typeof entry.name === "string" &&
        typeof entry.codec === "string" &&
        ["offset", "length"].every((key) => isCount(entry[key]))
      )
    ) {
      throw new Error(
        `image entry ${index} must be an object with name, codec, and ` +
          "non-negative integer offset and length",
      );
    }
    const { name, codec } = entry;
    if (!Object.prototype.hasOwnProperty.call(expected, name)) throw new Error(`unknown image '${name}'`);
    if (Object.prototype.hasOwnProperty.call(found, name)) throw new Error(`image '${name}' appears twice`);
    if (!expected[name].includes(codec)) {
      throw new Error(`image '${name}' must be ${expected[name].join(" or ")}, got ${codec}`);
    }
    const end = entry.offset + entry.length;
    if (end > bodySize) {
      throw new Error(
        `truncated buffer: image '${name}' ends ${end} bytes after the header, the buffer holds ${bodySize}`,
      );
    }
    found[name] = entry;
  });
  for (const [name] of IMAGES) {
    if (!(name in found)) throw new Error(`image '${name}' is missing`);
  }
  const [first, second] = Object.values(found).sort((a, b) => a.offset - b.offset);
  if (first.offset + first.length > second.offset) {
    throw new Error(`images '${first.name}' and '${second.name}' overlap`);
  }
  const end = second.offset + second.length;
  if (bodySize > end) throw new Error(`${bodySize - end} trailing bytes after the last image`);
  return found;
}

// The image's pixels as one little-endian uint32 RGBA word each (Uint32Array, R in the low
// byte), decoded by the browser without colour management (so that the geometry image's bytes
// come back exactly). WebCodecs' ImageDecoder where the page has it (secure contexts: https,
// localhost): it hands the decoded frame straight to copyTo, which converts to RGBA once; about
// half the renderer CPU time of the fallback, createImageBitmap -> canvas -> getImageData,
// which copies the pixels twice more (measured, FORMAT.md).
async function decodeImage(name, entry, body, width, height) {
  const { codec } = entry;
  const data = body.subarray(entry.offset, entry.offset + entry.length);
  const signature = SIGNATURES[codec];
  const webpTag = String.fromCharCode(...data.subarray(8, 12));
  if (
    data.length < signature.length ||
    signature.some((b, i) => data[i] !== b) ||
    (codec === "webp" && webpTag !== "WEBP")
  ) {
    throw new Error(`image '${name}' is not a ${codec} file`);
  }
  const rgba =
    typeof ImageDecoder === "function"
      ? await decodeWithImageDecoder(name, codec, data, width, height)
      : await decodeWithCanvas(name, codec, data, width, height);
  return new Uint32Array(rgba.buffer, rgba.byteOffset, width * height);
}

const SUBSAMPLED = new Set(["I420", "I420A", "I422", "I422A", "NV12"]);
const undecodable = (name, codec) => new Error(`image '${name}' could not be decoded as ${codec}`);
const wrongSize = (name, w, h, width, height) =>
  new Error(`image '${name}' is ${w}x${h}, the grid is ${width}x${height}`);

async function decodeWithImageDecoder(name, codec, data, width, height) {
  let decoder;
  let frame;
  try {
    decoder = new ImageDecoder({
      data,
      type: MIME[codec],
      colorSpaceConversion: "none",
      premultiplyAlpha: "none",
    });
    frame = (await decoder.decode()).image;
  } catch {
    decoder?.close();
    throw undecodable(name, codec);
  }
  try {
    const [w, h] = [frame.displayWidth, frame.displayHeight];
    if (w !== width || h !== height) throw wrongSize(name, w, h, width, height);
    // Subsampled chroma (lossy WebP, a 4:2:0 JPEG): copyTo would upsample it more crudely than
    // the image decoders do (up to 12 levels off Pillow, measured), so let those decode it.
    if (SUBSAMPLED.has(frame.format)) return decodeWithCanvas(name, codec, data, width, height);
    const pixels = new Uint8Array(4 * width * height);
    try {
      await frame.copyTo(pixels, { format: "RGBA", colorSpace: "srgb" });
    } catch {
      // A browser whose copyTo cannot convert this frame's layout to RGBA: draw it instead.
      return pixelsOfCanvas(frame, width, height);
    }
    return pixels;
  } finally {
    frame.close();
    decoder.close();
  }
}

async function decodeWithCanvas(name, codec, data, width, height) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(new Blob([data], { type: MIME[codec] }), {
      colorSpaceConversion: "none",
      premultiplyAlpha: "none",
    });
  } catch {
    throw undecodable(name, codec);
  }
  try {
    if (bitmap.width !== width || bitmap.height !== height) {
      throw wrongSize(name, bitmap.width, bitmap.height, width, height);
    }
    return pixelsOfCanvas(bitmap, width, height);
  } finally {
    bitmap.close();
  }
}

function pixelsOfCanvas(image, width, height) {
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(image, 0, 0);
  return context.getImageData(0, 0, width, height).data;
}
