// PCLD v1 decoder for browsers: one dependency-free ES module (spec: pointcloud-lib/FORMAT.md).
//
// decodePointCloud(buffer) -> {header, count, positions, colors, segments}
//   positions: Float32Array (3 per point), colors: Uint8Array (3 per point), segments: Uint8Array
//   (1 per point, an index into header.categories; header.palette holds its colour).
// The arrays are views of the input buffer, ready for THREE.BufferAttribute; quantised positions
// are dequantised in one loop into a new Float32Array. Malformed input throws an Error whose
// message matches the Python decoder's (pointcloud.codec.decode): keep the two in step.

export const FORMAT_VERSION = 1;
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
 * Decode a PCLD v1 buffer.
 * @param {ArrayBuffer | ArrayBufferView} input the bytes, e.g. `await response.arrayBuffer()`
 */
export function decodePointCloud(input) {
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
  if (version !== FORMAT_VERSION) {
    throw new Error(`unknown version ${version}: this decoder reads version ${FORMAT_VERSION}`);
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

function checkHeaderFields(header) {
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
  if (!Array.isArray(field(header, "attributes"))) {
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
