// Audio-reactive point clouds: one dependency-free ES module beside pcld.js. It turns sound into
// one "drive" per audio category and moves each category's points with it in a three.js shader.
//
//   const react = new AudioReact(audioContext, header.categories); // an AnalyserNode inside
//   source.connect(react.input);                                     // any Web Audio source
//   applyAudioReact(material, react, header);                        // three.js material patch
//   each frame: react.sample(); renderer.render(scene, camera);
//
// The mapping (frequencies in Hz; powers from the analyser's spectrum, mean over the band's bins):
//
//   BASS_SUBJECT   20-150 energy                (kick drums, bass lines: people and animals)
//   BEAT_GROUND    onsets of the 20-150 band    (rises of its energy, held 150 ms: the ground)
//   MID_ORGANIC    250-1000 energy              (voices, lower instruments: plants)
//   MID_STRUCTURE  1000-4000 energy             (upper mids: buildings, vehicles, furniture)
//   HIGH_SKY       4000-16000 energy            (hats, cymbals, air: sky and lights)
//   LOW_AMBIENT    the slow overall level       (20-16000 energy averaged over 0.5 s: walls)
//
// Each drive is the band's value over its own running idle level (an average over the last
// 4 s), so silence and a steady sound read 1, and a kick that triples the bass energy reads 3,
// whatever the source's loudness. A small power floor (-60 dB) keeps silence from turning noise
// into huge ratios. In the shader a drive d moves its points by a = clamp(log2(d) / 3, 0, 1)
// (8x over idle is full): size x (1 + 1.5 a), brightness x (1 + 0.8 a), and a displacement
// outward from the category's centroid (header.descriptors) of 12 % x a of the point's distance
// from it: the category swells about its centre. A category without a centroid swells about
// the capture camera (the origin), i.e. its points move along their view rays.

export const AUDIO_BANDS = Object.freeze({
  bass: [20, 150],
  lowMid: [250, 1000],
  highMid: [1000, 4000],
  high: [4000, 16000],
  all: [20, 16000],
});
// Which measure drives which category (names as in the PCLD header's `categories`).
export const CATEGORY_MEASURE = Object.freeze({
  BASS_SUBJECT: 'bass',
  BEAT_GROUND: 'onset',
  MID_ORGANIC: 'lowMid',
  MID_STRUCTURE: 'highMid',
  HIGH_SKY: 'high',
  LOW_AMBIENT: 'level',
});
export const IDLE_SECONDS = 4;
export const ONSET_HOLD_SECONDS = 0.15;
export const LEVEL_SECONDS = 0.5;
export const POWER_FLOOR = 1e-6;
export const FULL_DRIVE = 8;
export const EXPANSION = 0.12;
const MAX_CATEGORIES = 6;

/**
 * The analysis alone, with no Web Audio in it: feed it spectra (dB per bin, as
 * AnalyserNode.getFloatFrequencyData gives them) with their times; get the drives back.
 */
export class DriveTracker {
  constructor(sampleRate, fftSize, categories) {
    this.binHz = sampleRate / fftSize;
    this.categories = categories;
    this.measures = categories.map((name) => CATEGORY_MEASURE[name] ?? 'level');
    this.drives = new Float32Array(categories.length).fill(1);
    this.values = {};
    this.idle = null;
    this.lastTime = null;
    this.previousBass = 0;
    this.onset = 0;
    this.level = null;
  }

  /** Mean power (linear) of the bins whose centre lies in [lo, hi). */
  bandPower(spectrumDb, [lo, hi]) {
    const first = Math.max(1, Math.ceil(lo / this.binHz));
    const last = Math.min(spectrumDb.length - 1, Math.ceil(hi / this.binHz) - 1);
    let sum = 0;
    for (let i = first; i <= last; i += 1) {
      const db = spectrumDb[i];
      if (db > -200) sum += 10 ** (db / 10);
    }
    return last >= first ? sum / (last - first + 1) : 0;
  }

  /** One analysis frame; returns the drives, one per category in the header's order. */
  push(spectrumDb, time) {
    const dt = this.lastTime == null ? 1 / 60 : Math.min(Math.max(time - this.lastTime, 0), 0.25);
    this.lastTime = time;
    const power = {};
    for (const [name, band] of Object.entries(AUDIO_BANDS)) {
      power[name] = this.bandPower(spectrumDb, band);
    }
    // Onsets: rises of the low band's energy from one frame to the next, held for a moment so
    // a frame-rate render sees them.
    const rise = Math.max(0, power.bass - this.previousBass);
    this.previousBass = power.bass;
    this.onset = Math.max(rise, this.onset * Math.exp(-dt / ONSET_HOLD_SECONDS));
    const levelStep = 1 - Math.exp(-dt / LEVEL_SECONDS);
    this.level = this.level == null ? power.all : this.level + (power.all - this.level) * levelStep;
    const values = { ...power, onset: this.onset, level: this.level };

    if (this.idle == null) this.idle = { ...values };
    const idleStep = 1 - Math.exp(-dt / IDLE_SECONDS);
    this.measures.forEach((measure, i) => {
      this.drives[i] = (values[measure] + POWER_FLOOR) / (this.idle[measure] + POWER_FLOOR);
    });
    for (const name of Object.keys(values)) {
      this.idle[name] += (values[name] - this.idle[name]) * idleStep;
    }
    this.values = values;
    return this.drives;
  }
}

/**
 * A Web Audio analyser (`input`: connect a source to it) and the tracker. `sample()` reads the
 * analyser once and returns the drives: call it once a frame (or at an OfflineAudioContext's
 * suspensions, which is how the tests feed it a signal of known score).
 */
export class AudioReact {
  constructor(context, categories, { fftSize = 2048 } = {}) {
    this.context = context;
    this.analyser = context.createAnalyser();
    this.analyser.fftSize = fftSize;
    // The tracker does its own smoothing, with known time constants.
    this.analyser.smoothingTimeConstant = 0;
    this.input = this.analyser;
    this.spectrum = new Float32Array(this.analyser.frequencyBinCount);
    this.tracker = new DriveTracker(context.sampleRate, fftSize, categories);
    this.uniforms = audioReactUniforms();
  }

  sample(time = this.context.currentTime) {
    this.analyser.getFloatFrequencyData(this.spectrum);
    const drives = this.tracker.push(this.spectrum, time);
    this.uniforms.uAudioDrive.value.set(drives.subarray(0, MAX_CATEGORIES));
    return drives;
  }
}

/** The shader's uniforms; `applyAudioReact` fills the centroids from a header. */
export function audioReactUniforms() {
  return {
    uAudioDrive: { value: new Float32Array(MAX_CATEGORIES).fill(1) },
    uAudioCentroid: { value: new Float32Array(3 * MAX_CATEGORIES) },
    uAudioExpansion: { value: EXPANSION },
    uAudioMix: { value: 1 },
  };
}

/** The categories' centroids from a PCLD header's descriptors (FORMAT.md) into `uniforms`
 * (the origin, the capture camera, for a category without one). */
export function describeCategories(uniforms, header) {
  const described = header?.descriptors?.categories ?? [];
  for (let i = 0; i < MAX_CATEGORIES; i += 1) {
    uniforms.uAudioCentroid.value.set(described[i]?.centroid ?? [0, 0, 0], 3 * i);
  }
  return uniforms;
}

// GLSL for any three.js material whose vertex shader has `#include <begin_vertex>` (every
// built-in one, PointsMaterial included; a ShaderMaterial can use it too) and a float
// per-point category attribute (`segment`, as the viewer names it).
export const AUDIO_REACT_VERTEX = /* glsl */ `
uniform float uAudioDrive[${MAX_CATEGORIES}];
uniform vec3 uAudioCentroid[${MAX_CATEGORIES}];
uniform float uAudioExpansion;
uniform float uAudioMix;
varying float vAudioBright;
int audioCategory() { return int(clamp(segment, 0.0, ${MAX_CATEGORIES - 1}.0) + 0.5); }
float audioAmount() {
  float drive = max(uAudioDrive[audioCategory()], 1.0);
  return uAudioMix * clamp(log2(drive) / log2(${FULL_DRIVE}.0), 0.0, 1.0);
}
vec3 audioDisplace(vec3 p) {
  // Outward from the category's centroid, in proportion to the distance from it: the category
  // swells without tearing a hole at its centre. About the origin it is along the view ray.
  vec3 centre = uAudioCentroid[audioCategory()];
  return p + (p - centre) * (uAudioExpansion * audioAmount());
}
`;

/**
 * Patch a three.js material (PointsMaterial, or a ShaderMaterial written with
 * `#include <begin_vertex>` and `gl_PointSize`) so that its points follow `react`'s drives;
 * centroids from `header`. Returns the uniforms (shared with `react`).
 */
export function applyAudioReact(material, react, header, { attribute = 'segment' } = {}) {
  const uniforms = react?.uniforms ?? audioReactUniforms();
  describeCategories(uniforms, header);
  material.onBeforeCompile = (shader) => {
    Object.assign(shader.uniforms, uniforms);
    let vertex = shader.vertexShader;
    const declares = new RegExp(`attribute\\s+float\\s+${attribute}\\s*;`).test(vertex);
    const chunk = (declares ? '' : `attribute float ${attribute};\n`)
      + AUDIO_REACT_VERTEX.replaceAll('segment', attribute);
    vertex = vertex.replace(/void\s+main\s*\(\s*\)/, `${chunk}\nvoid main()`);
    vertex = vertex.replace('#include <begin_vertex>',
      '#include <begin_vertex>\n  transformed = audioDisplace(transformed);');
    vertex = insertBeforeLastBrace(vertex, `
  gl_PointSize *= 1.0 + 1.5 * audioAmount();
  vAudioBright = 1.0 + 0.8 * audioAmount();
`);
    shader.vertexShader = vertex;
    let fragment = shader.fragmentShader.replace(/void\s+main\s*\(\s*\)/,
      'varying float vAudioBright;\nvoid main()');
    fragment = insertBeforeLastBrace(fragment, '  gl_FragColor.rgb *= vAudioBright;\n');
    shader.fragmentShader = fragment;
  };
  // A program of its own: the patched shader is not the material's plain one.
  material.customProgramCacheKey = () => `audio-react:${attribute}`;
  material.needsUpdate = true;
  return uniforms;
}

function insertBeforeLastBrace(source, text) {
  const end = source.lastIndexOf('}');
  return `${source.slice(0, end)}${text}${source.slice(end)}`;
}

/**
 * A short built-in beat (no audio file): kick on every beat, a hat between, a snare-like burst
 * on 2 and 4, at `bpm`, for `bars` bars of 4/4, into `destination`, from `when` (seconds of the
 * context's clock). Returns its length in seconds.
 */
export function scheduleBeat(context, destination, { when = context.currentTime, bpm = 110,
  bars = 8 } = {}) {
  const beat = 60 / bpm;
  const noise = noiseBuffer(context, 0.25);
  for (let i = 0; i < bars * 4; i += 1) {
    const t = when + i * beat;
    kick(context, destination, t);
    hat(context, destination, noise, t + beat / 2);
    if (i % 2 === 1) hat(context, destination, noise, t, { cutoff: 1800, gain: 0.35, length: 0.18 });
  }
  return bars * 4 * beat;
}

/** A 60 Hz kick: a sine falling from 120 to 50 Hz under a fast-attack, 0.35 s envelope. */
export function kick(context, destination, when, { gain = 0.9 } = {}) {
  const oscillator = context.createOscillator();
  const envelope = context.createGain();
  oscillator.frequency.setValueAtTime(120, when);
  oscillator.frequency.exponentialRampToValueAtTime(50, when + 0.12);
  envelope.gain.setValueAtTime(0, when);
  envelope.gain.linearRampToValueAtTime(gain, when + 0.004);
  envelope.gain.exponentialRampToValueAtTime(0.001, when + 0.35);
  oscillator.connect(envelope).connect(destination);
  oscillator.start(when);
  oscillator.stop(when + 0.4);
}

function hat(context, destination, buffer, when, { cutoff = 7000, gain = 0.25, length = 0.05 } = {}) {
  const source = context.createBufferSource();
  source.buffer = buffer;
  const filter = context.createBiquadFilter();
  filter.type = 'highpass';
  filter.frequency.value = cutoff;
  const envelope = context.createGain();
  envelope.gain.setValueAtTime(gain, when);
  envelope.gain.exponentialRampToValueAtTime(0.001, when + length);
  source.connect(filter).connect(envelope).connect(destination);
  source.start(when);
  source.stop(when + length + 0.01);
}

/** White noise, `seconds` long, from a fixed seed (the same beat every time). */
export function noiseBuffer(context, seconds) {
  const buffer = context.createBuffer(1, Math.ceil(seconds * context.sampleRate), context.sampleRate);
  const data = buffer.getChannelData(0);
  let seed = 22222;
  for (let i = 0; i < data.length; i += 1) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    data[i] = (seed / 1073741824) - 1;
  }
  return buffer;
}
