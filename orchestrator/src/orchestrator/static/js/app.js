// Wires the page: the job form and its progress, the gallery, the viewer and its controls.
// Generations open through the URL hash (#g=<id>), so a view can be linked and reloaded.
import { decodePointCloudAsync } from 'pcld';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';

import * as api from './api.js';
import { PointCloudViewer, webglAvailable } from './viewer.js';

const KEY_STORAGE = 'scene-server.openai-api-key';
const GALLERY_PAGE = 12;
const STAGE_LABELS = {
  imagegen: 'generating the image',
  depth: 'estimating depth',
  segment: 'finding audio categories',
  pointcloud: 'building the point cloud',
  storage: 'storing the generation',
};

const $ = (id) => document.getElementById(id);
const ui = {
  form: $('job-form'),
  prompt: $('prompt'),
  image: $('image'),
  clearImage: $('clear-image'),
  vibe: $('vibe'),
  quality: $('quality'),
  quickLook: $('quick-look'),
  edges: $('edges'),
  apiKey: $('api-key'),
  submit: $('submit'),
  cancel: $('cancel'),
  progress: $('progress'),
  progressBar: $('progress-bar'),
  progressStage: $('progress-stage'),
  progressPercent: $('progress-percent'),
  message: $('message'),
  gallery: $('gallery'),
  galleryPrev: $('gallery-prev'),
  galleryNext: $('gallery-next'),
  galleryPage: $('gallery-page'),
  refreshGallery: $('refresh-gallery'),
  viewer: $('viewer'),
  sceneTitle: $('scene-title'),
  pointSize: $('point-size'),
  legend: $('legend'),
  stats: $('stats'),
  downloadPly: $('download-ply'),
  downloadBin: $('download-bin'),
  downloadGlb: $('download-glb'),
  downloadSplat: $('download-splat'),
  downloadGaussianPly: $('download-gsply'),
  sources: document.querySelectorAll('input[name="source"]'),
  sourceMesh: $('source-mesh-label'),
  listenSource: $('listen-source'),
  listenFile: $('listen-file'),
  listenMeter: $('listen-meter'),
};

const state = {
  // The jobs of the latest Generate: [draft, requested] with quick look, else [requested].
  run: null,
  // What the server offers beyond points (GET /limits `formats`): meshes, SPZ.
  offers: { mesh: false, spz: false },
  galleryOffset: 0,
  openGeneration: null,
  loadToken: 0,
};

let viewer = null;

// ---- messages -------------------------------------------------------------------------------

function showMessage(text, kind = 'error') {
  ui.message.textContent = text;
  ui.message.className = `message ${kind}`;
  ui.message.hidden = false;
}

function clearMessage() {
  ui.message.hidden = true;
  ui.message.textContent = '';
}

function reportError(context, err) {
  const text = err instanceof Error ? err.message : String(err);
  showMessage(`${context}: ${text}`);
  console.warn(context, err);
}

// Nothing may fail silently: anything uncaught still reaches the person, in words.
window.addEventListener('error', (event) => reportError('Unexpected error', event.error ?? event.message));
window.addEventListener('unhandledrejection', (event) => reportError('Unexpected error', event.reason));

// ---- the form and its job ------------------------------------------------------------------

function selectedMode() {
  return ui.form.querySelector('input[name="mode"]:checked').value;
}

function setBusy(busy) {
  ui.submit.disabled = busy;
  ui.cancel.hidden = !busy;
  ui.cancel.disabled = false;
}

function progressLabel(job) {
  if (job.status === 'queued') {
    return job.queue_position != null ? `queued (position ${job.queue_position})` : 'queued';
  }
  if (job.status === 'running') return STAGE_LABELS[job.stage] ?? job.stage ?? 'starting';
  return job.status;
}

/** The bar and label follow the current job; a quick look's draft says so in the label, and
 * its completion is not the end (the requested quality follows). */
function showProgress(job, { draft = false } = {}) {
  ui.progress.hidden = false;
  if (draft && job.status === 'completed') return;
  const progress = Math.max(0, Math.min(1, Number(job.progress) || 0));
  ui.progressBar.value = job.status === 'completed' ? 1 : progress;
  ui.progressPercent.textContent = `${Math.round(ui.progressBar.value * 100)}%`;
  ui.progressStage.textContent = draft ? `quick look: ${progressLabel(job)}` : progressLabel(job);
  ui.progress.dataset.status = job.status;
}

const TERMINAL_STATUSES = new Set(['completed', 'failed', 'cancelled']);

function jobError(job) {
  const error = job.error;
  if (!error) return `the job ended ${job.status}`;
  if (typeof error === 'string') return error;
  return error.message ?? api.describeDetail(error.detail ?? error);
}

/** Cancel what is left of an earlier Generate (its requested quality, after its quick look):
 * a new request supersedes it. */
async function supersede(run) {
  if (!run) return;
  run.superseded = true;
  await Promise.all(run.jobs.filter((job) => !job.done).map((job) => api.cancelJob(job.id)
    .catch((err) => console.warn('could not cancel superseded job', job.id, err))));
}

async function onSubmit(event) {
  event.preventDefault();
  clearMessage();
  const image = ui.image.files[0] ?? null;
  const prompt = ui.prompt.value.trim();
  if (!image && !prompt) {
    showMessage('Write a prompt or choose a photo first.');
    ui.prompt.focus();
    return;
  }
  const quality = ui.quality.value;
  const request = {
    prompt,
    image,
    vibe: ui.vibe.value.trim(),
    mode: selectedMode(),
    apiKey: image ? '' : ui.apiKey.value.trim(),
    quality,
    edges: ui.edges.checked ? 'drop' : 'keep',
  };
  // Quick look: a draft first (seconds), shown as soon as it is ready, then the requested
  // quality, which replaces it. One after the other: on a CPU the two would share the cores and
  // the draft, the first picture, would come later.
  const quickLook = ui.quickLook.checked && quality !== 'draft';
  await supersede(state.run);
  const run = { jobs: [], superseded: false };
  state.run = run;
  setBusy(true);
  delete ui.progress.dataset.draftJobId;
  showProgress({ status: 'queued', progress: 0 });
  try {
    let draftShown = null;
    if (quickLook) {
      const draft = await follow(run, { ...request, quality: 'draft' }, { draft: true });
      if (run.superseded) return;
      ui.progress.dataset.draftJobId = draft.job.id;
      if (draft.final.status === 'cancelled') {
        showMessage('The job was cancelled.', 'info');
        ui.progress.dataset.status = 'cancelled';
        return;
      }
      if (draft.final.status === 'completed') {
        draftShown = draft.final.id ?? draft.job.id;
        location.hash = `g=${encodeURIComponent(draftShown)}`;
        // From here a new Generate may start; it cancels the requested quality below.
        ui.submit.disabled = false;
      } else {
        // The quick look is a bonus: the requested quality still comes, or says what failed.
        console.warn('the quick look failed:', jobError(draft.final));
      }
    }
    const { job, final } = await follow(run, request);
    if (run.superseded) return;
    if (final.status === 'completed') {
      refreshGallery();
      // Replace the quick look, unless the person has since opened something else.
      const showing = currentHashId();
      if (!showing || showing === draftShown || !draftShown) {
        location.hash = `g=${encodeURIComponent(final.id ?? job.id)}`;
      }
    } else if (final.status === 'cancelled') {
      showMessage('The job was cancelled.', 'info');
    } else {
      showMessage(`The generation failed: ${jobError(final)}`);
      refreshGallery();
    }
  } catch (err) {
    if (run.superseded) return;
    ui.progress.dataset.status = 'error';
    reportError('Could not generate', err);
  } finally {
    if (state.run === run) {
      for (const job of run.jobs) job.done = true;
      state.run = null;
      setBusy(false);
    }
  }
}

/** Submit one job of a run and follow it to its end: {job, final}. */
async function follow(run, request, { draft = false } = {}) {
  const job = await api.submitJob(request);
  run.jobs.push(job);
  if (run.superseded) {
    // Superseded while this one was being submitted: nothing will follow or show it.
    api.cancelJob(job.id).catch((err) => console.warn('could not cancel', job.id, err));
    return { job, final: { status: 'cancelled' } };
  }
  ui.progress.dataset.jobId = job.id;
  const final = await api.followJob(job, (_name, update) => {
    if (!run.superseded) showProgress(update, { draft });
  });
  job.done = true;
  return { job, final };
}

function currentHashId() {
  const match = /^#g=(.+)$/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

async function onCancel() {
  const run = state.run;
  if (!run) return;
  ui.cancel.disabled = true;
  try {
    await Promise.all(run.jobs.filter((job) => !job.done).map((job) => api.cancelJob(job.id)));
  } catch (err) {
    ui.cancel.disabled = false;
    reportError('Could not cancel', err);
  }
}

// ---- gallery -------------------------------------------------------------------------------

function formatDate(value) {
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleString();
}

function galleryItem(meta) {
  const item = document.createElement('li');
  item.className = `gallery-item status-${meta.status ?? 'completed'}`;
  item.dataset.id = meta.id;
  const openable = (meta.status ?? 'completed') === 'completed';
  const link = document.createElement(openable ? 'a' : 'div');
  if (openable) link.href = `#g=${encodeURIComponent(meta.id)}`;
  link.className = 'gallery-link';

  const thumb = document.createElement('img');
  thumb.alt = '';
  // Only a completed generation is sure to have its image (a failed one stores no assets).
  if (openable) {
    thumb.loading = 'lazy';
    thumb.src = api.assetUrl(meta.id, 'image.png');
  } else {
    thumb.classList.add('missing');
  }

  const text = document.createElement('div');
  text.className = 'gallery-text';
  const title = document.createElement('span');
  title.className = 'gallery-prompt';
  title.textContent = meta.prompt || (meta.source === 'upload' ? 'uploaded photo' : '(no prompt)');
  const details = document.createElement('span');
  details.className = 'gallery-details';
  const bits = [formatDate(meta.created_at), meta.mode];
  if (meta.quality && meta.quality !== 'standard') bits.push(meta.quality);
  if (meta.point_count != null) bits.push(`${Number(meta.point_count).toLocaleString()} pts`);
  if (!openable) bits.push(meta.status);
  details.textContent = bits.filter(Boolean).join(' · ');
  if (!openable && meta.error) details.title = jobError(meta);
  text.append(title, details);
  link.append(thumb, text);
  item.append(link);
  return item;
}

async function refreshGallery() {
  try {
    const page = await api.listGenerations({ limit: GALLERY_PAGE, offset: state.galleryOffset });
    const items = page.items ?? [];
    ui.gallery.replaceChildren(...items.map(galleryItem));
    if (items.length === 0) {
      const empty = document.createElement('li');
      empty.className = 'gallery-empty';
      empty.textContent = 'Nothing stored yet.';
      ui.gallery.append(empty);
    }
    const total = page.total ?? items.length;
    ui.galleryPrev.disabled = state.galleryOffset === 0;
    ui.galleryNext.disabled = state.galleryOffset + items.length >= total;
    const first = total ? state.galleryOffset + 1 : 0;
    ui.galleryPage.textContent = `${first}–${state.galleryOffset + items.length} of ${total}`;
    markOpenInGallery();
  } catch (err) {
    reportError('Could not list the stored generations', err);
  }
}

function markOpenInGallery() {
  for (const item of ui.gallery.querySelectorAll('.gallery-item')) {
    item.classList.toggle('open', item.dataset.id === state.openGeneration);
  }
}

// ---- opening a generation ------------------------------------------------------------------

/** Six names and the server's palette (pointcloud.CATEGORY_PALETTE, sent in every header). */
function showLegend(header) {
  ui.legend.replaceChildren(...header.categories.map((name, i) => {
    const entry = document.createElement('li');
    const swatch = document.createElement('span');
    swatch.className = 'swatch';
    swatch.style.background = `rgb(${header.palette[i].join(',')})`;
    const label = document.createElement('span');
    label.className = 'legend-name';
    // BASS_SUBJECT reads better as "bass subject"; the exact name stays in the tooltip.
    label.textContent = name.toLowerCase().replaceAll('_', ' ');
    entry.title = name;
    entry.append(swatch, label);
    const described = header.descriptors?.categories?.[i];
    if (described) describeInLegend(entry, described);
    return entry;
  }));
  ui.legend.hidden = false;
}

/** A category's audio descriptors (pointcloud-lib/FORMAT.md): its share of the points and its
 * mean distance in the legend; extent, distance range and top labels in the tooltip. */
function describeInLegend(entry, d) {
  const stats = document.createElement('span');
  stats.className = 'legend-stats';
  const share = `${(100 * d.share).toFixed(d.share < 0.1 ? 1 : 0)}%`;
  stats.textContent = d.count ? `${share} · ${d.distance.mean.toFixed(1)} m` : '—';
  entry.append(stats);
  if (!d.count) return;
  const labels = d.labels.map((l) => `${l.label} ${(100 * l.share).toFixed(0)}%`).join(', ');
  entry.title = [
    `${d.name}: ${d.count.toLocaleString()} points (${share})`,
    `distance ${d.distance.min.toFixed(2)}–${d.distance.max.toFixed(2)} m, `
      + `mean ${d.distance.mean.toFixed(2)} m`,
    `centre (${d.centroid.map((v) => v.toFixed(2)).join(', ')}) m`,
    labels && `labels: ${labels}`,
  ].filter(Boolean).join('\n');
}

const DOWNLOADS = [['downloadPly', 'pointcloud.ply'], ['downloadBin', 'pointcloud.bin'],
  ['downloadGlb', 'scene.glb'], ['downloadSplat', 'scene.splat'],
  ['downloadGaussianPly', 'gaussians.ply']];

/** The PCLD / GLB choice: usable once a generation is open; opening one shows its PCLD. */
function setSource(id, source) {
  for (const choice of ui.sources) {
    choice.disabled = !id;
    choice.checked = choice.value === source;
  }
}

function setDownloads(id) {
  for (const [link, asset] of DOWNLOADS.map(([key, name]) => [ui[key], name])) {
    if (id) {
      link.href = api.assetUrl(id, asset);
      link.download = `${id}-${asset}`;
      link.classList.remove('disabled');
      link.removeAttribute('aria-disabled');
    } else {
      link.removeAttribute('href');
      link.classList.add('disabled');
      link.setAttribute('aria-disabled', 'true');
    }
  }
}

async function openGeneration(id) {
  const token = ++state.loadToken;
  const stale = () => token !== state.loadToken;
  ui.viewer.dataset.state = 'loading';
  ui.sceneTitle.textContent = 'Loading…';
  try {
    const fetchStarted = performance.now();
    const [meta, buffer] = await Promise.all([
      api.getGeneration(id),
      // The grid variant (PCLD version 2): about 1 byte a point instead of 16; the PCLD and
      // PLY downloads stay version 1 and PLY.
      api.fetchPointCloud(`${api.assetUrl(id, 'pointcloud.bin')}?format=grid`),
    ]);
    if (stale()) return;
    const fetchMs = performance.now() - fetchStarted;
    const started = performance.now();
    // The browser's image decoders, then one typed-array back-projection loop (pcld.js).
    const cloud = await decodePointCloudAsync(buffer);
    if (stale()) return;
    const decodeMs = performance.now() - started;

    if (!viewer) throw new Error('WebGL is unavailable in this browser');
    viewer.setColouring(document.querySelector('input[name="colour"]:checked').value);
    viewer.setPointSize(Number(ui.pointSize.value));
    showLegend(cloud.header);
    const uploadStarted = performance.now();
    if (!(await viewer.show(cloud)) || stale()) return;
    const uploadMs = performance.now() - uploadStarted;
    setDownloads(id);
    setSource(id, 'pcld');
    state.openGeneration = id;
    markOpenInGallery();

    const title = meta.prompt || (meta.source === 'upload' ? 'Uploaded photo' : id);
    ui.sceneTitle.textContent = meta.vibe ? `${title} — ${meta.vibe}` : title;
    ui.sceneTitle.title = `${id} · ${cloud.header.mode}`;
    const megabytes = (buffer.byteLength / 1e6).toFixed(1);
    ui.stats.textContent = `${cloud.count.toLocaleString()} points · ${cloud.header.mode}`
      + ` · ${megabytes} MB · decoded in ${decodeMs.toFixed(1)} ms`;
    // Timings for the console and the browser test: the upload, in slices over several frames,
    // then one whole frame drawn to the end.
    const firstFrameMs = await viewer.renderNow();
    if (stale()) return;
    Object.assign(ui.viewer.dataset, {
      generationId: id,
      source: 'pcld',
      pointCount: String(cloud.count),
      mode: cloud.header.mode,
      fetchMs: fetchMs.toFixed(1),
      decodeMs: decodeMs.toFixed(2),
      uploadMs: uploadMs.toFixed(1),
      firstFrameMs: firstFrameMs.toFixed(1),
    });
    ui.viewer.dataset.state = 'loaded';
  } catch (err) {
    if (stale()) return;
    ui.viewer.dataset.state = 'error';
    ui.sceneTitle.textContent = 'Could not open the generation';
    reportError(`Could not open generation ${id}`, err);
  }
}

/** The open generation's scene.glb through three.js's GLTFLoader (what a web engine would do),
 * in place of its PCLD cloud: the same view, legend (from the GLB's extras) and controls. */
async function openGlb(id, { geometry = 'points' } = {}) {
  const token = ++state.loadToken;
  const stale = () => token !== state.loadToken;
  ui.viewer.dataset.state = 'loading';
  try {
    if (!viewer) throw new Error('WebGL is unavailable in this browser');
    const started = performance.now();
    const query = geometry === 'mesh' ? '?geometry=mesh' : '';
    const gltf = await new GLTFLoader().loadAsync(`${api.assetUrl(id, 'scene.glb')}${query}`);
    if (stale()) return;
    const loadMs = performance.now() - started;
    const header = gltf.scene.userData;
    showLegend(header);
    const count = viewer.showGltf(gltf);
    const quantized = (gltf.parser.json.extensionsUsed || []).includes('KHR_mesh_quantization');
    ui.stats.textContent = `${count.toLocaleString()} points · ${header.mode} · scene.glb`
      + `${quantized ? ' (KHR_mesh_quantization)' : ''} · GLTFLoader in ${loadMs.toFixed(0)} ms`;
    await viewer.renderNow();
    if (stale()) return;
    Object.assign(ui.viewer.dataset, {
      generationId: id, source: geometry === 'mesh' ? 'mesh' : 'glb', pointCount: String(count),
      mode: header.mode,
    });
    ui.viewer.dataset.state = 'loaded';
  } catch (err) {
    if (stale()) return;
    ui.viewer.dataset.state = 'error';
    reportError(`Could not open the GLB of generation ${id}`, err);
  }
}

/** The open generation's Gaussian splats through Spark (js/splats.js, loaded on demand):
 * scene.spz where the server lists it, else scene.splat; same camera as the points. */
async function openSplats(id) {
  const token = ++state.loadToken;
  const stale = () => token !== state.loadToken;
  ui.viewer.dataset.state = 'loading';
  try {
    if (!viewer) throw new Error('WebGL is unavailable in this browser');
    const started = performance.now();
    const { showSplats } = await import('./splats.js');
    const asset = state.offers.spz ? 'scene.spz' : 'scene.splat';
    const count = await showSplats(viewer, api.assetUrl(id, asset), asset.split('.').pop());
    if (stale()) return;
    ui.stats.textContent = `${count.toLocaleString()} Gaussian splats · ${asset} · Spark in `
      + `${(performance.now() - started).toFixed(0)} ms`;
    await viewer.renderNow();
    if (stale()) return;
    Object.assign(ui.viewer.dataset, {
      generationId: id, source: 'splats', splatAsset: asset, pointCount: String(count),
    });
    ui.viewer.dataset.state = 'loaded';
  } catch (err) {
    if (stale()) return;
    ui.viewer.dataset.state = 'error';
    reportError(`Could not open the splats of generation ${id}`, err);
  }
}

function onSourceChange(source) {
  const id = state.openGeneration;
  if (!id) return;
  if (source === 'glb') openGlb(id);
  else if (source === 'mesh') openGlb(id, { geometry: 'mesh' });
  else if (source === 'splats') openSplats(id);
  else openGeneration(id);
}

/** What the server offers beyond points, from `GET /limits`'s `formats` (a list of
 * {name, geometry}); a server without the list offers points, GLB and .splat only. */
async function loadOffers() {
  try {
    const limits = await api.getLimits();
    const formats = Array.isArray(limits.formats) ? limits.formats : [];
    const named = (name) => formats.find((f) => f?.name === name);
    state.offers = {
      mesh: Boolean(named('scene.glb')?.geometry?.includes('mesh')),
      spz: Boolean(named('scene.spz')),
    };
  } catch (err) {
    console.warn('could not read the server\'s formats', err);
  }
  ui.sourceMesh.hidden = !state.offers.mesh;
}

// ---- listen mode ---------------------------------------------------------------------------

const listening = { context: null, stop: null, meter: 0 };

/** Play the chosen sound into the scene: audio-react.js (served beside pcld.js) analyses it and
 * drives the points. The microphone is asked for only when chosen. */
async function onListenChange() {
  stopListening();
  const choice = ui.listenSource.value;
  ui.listenFile.hidden = choice !== 'file';
  if (choice === 'off') return;
  if (choice === 'file') {
    if (!ui.listenFile.files[0]) return;  // started by the file input's change
  }
  try {
    if (!viewer?.header) throw new Error('open a scene first');
    const audio = await import('audio-react');
    const context = new AudioContext();
    await context.resume();
    const react = new audio.AudioReact(context, viewer.header.categories);
    const stops = [];
    if (choice === 'beat') {
      const out = context.createGain();
      out.connect(react.input);
      out.connect(context.destination);
      // Eight bars at a time, topped up before they run out.
      let next = context.currentTime + 0.05;
      next += audio.scheduleBeat(context, out, { when: next });
      const timer = setInterval(() => {
        if (next - context.currentTime < 2) next += audio.scheduleBeat(context, out, { when: next });
      }, 500);
      stops.push(() => clearInterval(timer));
    } else if (choice === 'file') {
      const buffer = await context.decodeAudioData(await ui.listenFile.files[0].arrayBuffer());
      const source = context.createBufferSource();
      source.buffer = buffer;
      source.loop = true;
      source.connect(react.input);
      source.connect(context.destination);
      source.start();
    } else if (choice === 'mic') {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      // Into the analyser only: playing the microphone back would feed back.
      context.createMediaStreamSource(stream).connect(react.input);
      stops.push(() => stream.getTracks().forEach((track) => track.stop()));
    }
    listening.context = context;
    listening.stop = () => {
      stops.forEach((stop) => stop());
      context.close();
    };
    viewer.startListening(react, audio);
    ui.viewer.dataset.listening = choice;
    listening.meter = setInterval(() => {
      const names = viewer.header?.categories ?? [];
      ui.listenMeter.textContent = names.map((name, i) => `${name.split('_')[0].toLowerCase()} `
        + `${react.tracker.drives[i].toFixed(1)}`).join(' · ');
    }, 250);
  } catch (err) {
    ui.listenSource.value = 'off';
    reportError('Could not listen', err);
  }
}

function stopListening() {
  clearInterval(listening.meter);
  listening.stop?.();
  listening.stop = null;
  listening.context = null;
  viewer?.stopListening();
  ui.listenMeter.textContent = '';
  delete ui.viewer.dataset.listening;
}

function onHashChange() {
  const match = /^#g=(.+)$/.exec(location.hash);
  if (match) openGeneration(decodeURIComponent(match[1]));
}

// ---- start ---------------------------------------------------------------------------------

function bindControls() {
  ui.apiKey.value = localStorage.getItem(KEY_STORAGE) ?? '';
  ui.apiKey.addEventListener('input', () => {
    const key = ui.apiKey.value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  });
  ui.image.addEventListener('change', () => {
    const hasImage = ui.image.files.length > 0;
    ui.clearImage.hidden = !hasImage;
    ui.prompt.disabled = hasImage;
  });
  ui.clearImage.addEventListener('click', () => {
    ui.image.value = '';
    ui.image.dispatchEvent(new Event('change'));
  });
  ui.form.addEventListener('submit', onSubmit);
  ui.cancel.addEventListener('click', onCancel);
  ui.refreshGallery.addEventListener('click', refreshGallery);
  ui.galleryPrev.addEventListener('click', () => {
    state.galleryOffset = Math.max(0, state.galleryOffset - GALLERY_PAGE);
    refreshGallery();
  });
  ui.galleryNext.addEventListener('click', () => {
    state.galleryOffset += GALLERY_PAGE;
    refreshGallery();
  });
  for (const choice of document.querySelectorAll('input[name="colour"]')) {
    choice.addEventListener('change', () => viewer?.setColouring(choice.value));
  }
  ui.pointSize.addEventListener('input', () => viewer?.setPointSize(Number(ui.pointSize.value)));
  for (const choice of ui.sources) {
    choice.addEventListener('change', () => onSourceChange(choice.value));
  }
  window.addEventListener('hashchange', onHashChange);
  ui.listenSource.addEventListener('change', onListenChange);
  ui.listenFile.addEventListener('change', onListenChange);
}

function start() {
  if (webglAvailable()) {
    viewer = new PointCloudViewer(ui.viewer);
    // A handle for the console (and the browser test): frame timing, the loaded header.
    window.sceneViewer = viewer;
  } else {
    // Jobs and downloads still work; only the 3D view is missing.
    showMessage('This browser cannot show the point cloud: WebGL is unavailable or disabled.');
    ui.viewer.dataset.state = 'error';
  }
  bindControls();
  setDownloads(null);
  setSource(null, 'pcld');
  refreshGallery();
  loadOffers();
  onHashChange();
  document.body.dataset.ready = 'true';
}

start();
