// The point cloud view: one THREE.Points whose buffers are the decoder's typed-array views, so a
// 2-million-point cloud costs no per-point JavaScript; colouring and point size are shader
// uniforms, so switching them re-uploads nothing.
import * as THREE from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';

const vertexShader = /* glsl */ `
  uniform float uSize;
  uniform float uAngularSize;
  uniform float uProjScale;
  uniform float uByCategory;
  uniform vec3 uPalette[6];
  attribute vec3 rgb;
  attribute float segment;
  varying vec3 vColor;

  void main() {
    // transformed: the position a patch may move (listen mode's audio-react.js displaces it).
    #include <begin_vertex>
    vec4 mvPosition = modelViewMatrix * vec4(transformed, 1.0);
    gl_Position = projectionMatrix * mvPosition;
    // A point stands for one source pixel: its footprint grows with its distance from the capture
    // camera (the origin), so the cloud is hole-free from there and scales sensibly elsewhere.
    // In world space: a quantised GLB's positions are levels that its node's matrix scales.
    float worldSize = length((modelMatrix * vec4(position, 1.0)).xyz) * uAngularSize;
    gl_PointSize = clamp(uSize * worldSize * uProjScale / max(-mvPosition.z, 1e-4), 1.0, 64.0);
    int category = int(clamp(segment, 0.0, 5.0) + 0.5);
    vColor = mix(rgb, uPalette[category], uByCategory);
  }
`;

// The colours are the image's sRGB bytes (and an sRGB palette): written out as they are.
const fragmentShader = /* glsl */ `
  varying vec3 vColor;
  void main() {
    gl_FragColor = vec4(vColor, 1.0);
  }
`;

// The API says "panorama"; pointcloud-lib's own convention for the projection is "equirect".
const PANORAMA_MODES = new Set(['panorama', 'equirect']);
// Points uploaded per frame while a cloud loads (about 4 MB of vertex data).
const SLICE_POINTS = 1 << 18;
const PANORAMA_FOV = { min: 20, max: 110, start: 75 };
// A photo's view when its cloud carries no pinhole camera (pointcloud-lib's DEFAULT_FOV_DEG).
const DEFAULT_FOV = 60;

export class PointCloudViewer {
  /** @param {HTMLElement} container */
  constructor(container) {
    this.container = container;
    this.renderer = new THREE.WebGLRenderer({ antialias: false, powerPreference: 'high-performance' });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio, 2));
    this.renderer.setClearColor(0x0b0d12, 1);
    container.appendChild(this.renderer.domElement);

    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(60, 1, 0.01, 1000);
    this.controls = new OrbitControls(this.camera, this.renderer.domElement);
    this.controls.addEventListener('change', () => this.requestRender());

    this.material = new THREE.ShaderMaterial({
      vertexShader,
      fragmentShader,
      uniforms: {
        uSize: { value: 1 },
        uAngularSize: { value: 0.002 },
        uProjScale: { value: 1 },
        uByCategory: { value: 0 },
        uPalette: { value: Array.from({ length: 6 }, () => new THREE.Color(0.5, 0.5, 0.5)) },
      },
    });
    this.points = null;
    this.header = null;
    this.panorama = false;
    this._frameQueued = false;
    this._pixel = new Uint8Array(4);
    this._showToken = 0;
    this._continuous = false;  // something on screen moves by itself (Spark's splats)
    this._audio = null;  // listen mode: {react, audio}

    this.renderer.domElement.addEventListener('wheel', (event) => this._panoramaZoom(event), {
      passive: false,
    });
    new ResizeObserver(() => this._resize()).observe(container);
    this._resize();
  }

  /**
   * Show a decoded cloud (see pcld.js; its header's `palette` colours the categories). Resolves
   * true once every point is on the GPU, false when another cloud replaced this one first.
   */
  async show(cloud) {
    this._removePoints();
    const token = ++this._showToken;
    const { header, count, positions, colors, segments } = cloud;
    // three.js would otherwise walk every point to compute bounds; the header already has them.
    const box = boundsBox(header.bounds, positions, count);
    const sphere = box.getBoundingSphere(new THREE.Sphere());
    this.points = new THREE.Group();
    this.scene.add(this.points);
    this.header = header;
    this.panorama = PANORAMA_MODES.has(header.mode);
    this._setPalette(header.palette);
    this.material.uniforms.uAngularSize.value = pixelAngle(this.panorama, count, header.camera);
    this._frame(box);
    this._describeForAudio();

    // One slice a frame: uploading 30 MB at once blocks the page for as long as the GPU takes
    // to accept it (seconds on a software renderer); slices keep it responsive and show the
    // cloud filling in. Each slice's arrays are views of the decoded ones: nothing is copied.
    for (let first = 0; first < count; first += SLICE_POINTS) {
      const last = Math.min(count, first + SLICE_POINTS);
      const geometry = new THREE.BufferGeometry();
      geometry.setAttribute('position',
        new THREE.BufferAttribute(positions.subarray(first * 3, last * 3), 3));
      geometry.setAttribute('rgb',
        new THREE.BufferAttribute(colors.subarray(first * 3, last * 3), 3, true));
      // Non-normalised bytes reach the shader as floats 0..5: no conversion pass on the CPU.
      geometry.setAttribute('segment',
        new THREE.BufferAttribute(segments.subarray(first, last), 1, false));
      geometry.boundingBox = box;
      geometry.boundingSphere = sphere;
      const slice = new THREE.Points(geometry, this.material);
      slice.frustumCulled = false;
      this.points.add(slice);
      this.requestRender();
      await nextFrame();
      if (token !== this._showToken) return false;
    }
    return true;
  }

  /**
   * Show a glTF point cloud as GLTFLoader made it (scene.glb: POINTS with COLOR_0, `_SEGMENT`
   * and the categories, palette and mode in the scene's extras), drawn with the same shader as
   * a PCLD cloud, so colouring and point size work alike. A triangle mesh (scene.glb with
   * `?geometry=mesh`) takes the same shader: its vertices are the points. Returns the number of
   * points (vertices).
   */
  showGltf(gltf) {
    this._removePoints();
    const root = gltf.scene;
    const header = root.userData;
    let count = 0;
    root.traverse((object) => {
      if (!object.isPoints && !object.isMesh) return;
      const { geometry } = object;
      const vertices = geometry.getAttribute('position').count;
      // The shader's names: colour bytes (normalised) and the category (`_SEGMENT`, which
      // GLTFLoader keeps as `_segment`); grey and category 0 where a file has none.
      geometry.setAttribute('rgb', geometry.getAttribute('color')
        ?? new THREE.BufferAttribute(new Uint8Array(3 * vertices).fill(160), 3, true));
      geometry.setAttribute('segment', geometry.getAttribute('_segment')
        ?? new THREE.BufferAttribute(new Uint8Array(vertices), 1, false));
      object.material = this.material;
      object.frustumCulled = false;
      count += geometry.getAttribute('position').count;
    });
    root.updateMatrixWorld(true);
    // From the accessors' min/max (GLTFLoader's bounding boxes) through the node transforms: no
    // walk over the points.
    const box = new THREE.Box3().setFromObject(root);
    this.points = root;
    this.scene.add(root);
    this.header = { ...header, bounds: { min: box.min.toArray(), max: box.max.toArray() } };
    this.panorama = PANORAMA_MODES.has(header.mode);
    this._setPalette(header.palette);
    this.material.uniforms.uAngularSize.value = pixelAngle(this.panorama, count, header.camera);
    this._frame(box);
    this._describeForAudio();
    this.requestRender();
    return count;
  }

  /**
   * Draw one frame now and resolve, with its time in ms, once the GPU has finished it (for a new
   * cloud that includes uploading its buffers). A WebGL2 fence is polled, so the page stays
   * responsive while a slow GPU (or a software one) works.
   */
  async renderNow() {
    await nextFrame();
    const started = performance.now();
    this.controls.update();
    this.renderer.render(this.scene, this.camera);
    const gl = this.renderer.getContext();
    if (typeof WebGL2RenderingContext === 'undefined' || !(gl instanceof WebGL2RenderingContext)) {
      this._finish();
      return performance.now() - started;
    }
    const fence = gl.fenceSync(gl.SYNC_GPU_COMMANDS_COMPLETE, 0);
    gl.flush();
    while (gl.getSyncParameter(fence, gl.SYNC_STATUS) !== gl.SIGNALED) {
      await new Promise((resolve) => setTimeout(resolve, 4));
    }
    gl.deleteSync(fence);
    return performance.now() - started;
  }

  /** Reading one pixel back waits for every queued draw: the only portable GPU fence in WebGL1/2. */
  _finish() {
    const gl = this.renderer.getContext();
    gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, this._pixel);
  }

  /**
   * Show another three.js object (Spark's SplatMesh) in place of the points, under the same
   * camera; frames are drawn continuously while it is shown (Spark sorts in a worker and needs
   * a frame after each sort).
   */
  showObject(object) {
    const header = this.header;
    this._removePoints();
    this.header = header;
    this.points = object;
    this.scene.add(object);
    this._continuous = true;
    this._updateLoop();
  }

  /**
   * Listen mode: `react` (audio-react.js's AudioReact, or anything with its `uniforms` and a
   * `sample()`) drives the points through `audio` (the audio-react.js module), which patches
   * the shader once; every frame samples the sound and draws.
   */
  startListening(react, audio) {
    this._audio = { react, audio };
    audio.applyAudioReact(this.material, react, this.header);
    react.uniforms.uAudioMix.value = 1;
    this._updateLoop();
  }

  stopListening() {
    if (!this._audio) return;
    this._audio.react.uniforms.uAudioMix.value = 0;
    this._audio = null;
    this._updateLoop();
    this.requestRender();
  }

  get listening() {
    return Boolean(this._audio);
  }

  /** Listen mode's AudioReact (its `tracker.drives`: one per category), or null. */
  get audioReact() {
    return this._audio?.react ?? null;
  }

  /** One loop while anything moves by itself (splats, listen mode); none otherwise. */
  _updateLoop() {
    if (!this._continuous && !this._audio) {
      this.renderer.setAnimationLoop(null);
      return;
    }
    this.renderer.setAnimationLoop(() => {
      this._audio?.react.sample();
      this.controls.update();
      this.renderer.render(this.scene, this.camera);
    });
  }

  clear() {
    this._removePoints();
    this.container.dataset.state = 'empty';
    this.requestRender();
  }

  _removePoints() {
    this._showToken += 1;
    if (this.points) {
      this.scene.remove(this.points);
      // Frees the GPU copies; the typed arrays go with the decoded buffer.
      this.points.traverse((object) => object.geometry?.dispose());
      if (this._continuous) this.points.dispose?.();
      this.points = null;
    }
    if (this._continuous) {
      this._continuous = false;
      this._updateLoop();
    }
    this.header = null;
  }

  _describeForAudio() {
    if (this._audio) this._audio.audio.describeCategories(this._audio.react.uniforms, this.header);
  }

  setColouring(mode) {
    this.material.uniforms.uByCategory.value = mode === 'category' ? 1 : 0;
    this.requestRender();
  }

  setPointSize(scale) {
    this.material.uniforms.uSize.value = scale;
    this.requestRender();
  }

  _setPalette(palette) {
    this.material.uniforms.uPalette.value.forEach((colour, i) => {
      const [r, g, b] = palette[i];
      colour.setRGB(r / 255, g / 255, b / 255, THREE.NoColorSpace);
    });
  }

  /** Render on demand (orbit, resize, a setting): a still cloud costs no GPU time. */
  requestRender() {
    if (this._frameQueued) return;
    this._frameQueued = true;
    requestAnimationFrame(() => {
      this._frameQueued = false;
      this.controls.update();
      this.renderer.render(this.scene, this.camera);
    });
  }

  /**
   * Render `frames` frames back to back, each forced to finish (a 1-pixel read waits for the GPU),
   * and return their times in milliseconds: {mean, max, frames}. For diagnostics and the tests.
   */
  async measureFrames(frames = 10) {
    const times = [];
    for (let i = 0; i < frames; i += 1) {
      await nextFrame();
      // Turn a little each frame so no frame can be skipped as unchanged.
      this.camera.rotateY(0.002);
      const start = performance.now();
      this.renderer.render(this.scene, this.camera);
      this._finish();
      times.push(performance.now() - start);
    }
    this.camera.rotateY(-0.002 * frames);
    this.requestRender();
    const mean = times.reduce((a, b) => a + b, 0) / times.length;
    return { mean, max: Math.max(...times), frames };
  }

  _frame(box) {
    const camera = this.camera;
    const size = box.getSize(new THREE.Vector3()).length() || 1;
    const centre = box.getCenter(new THREE.Vector3());
    if (this.panorama) {
      // Inside the sphere, where the panorama was seen from: orbiting turns the head in place.
      camera.fov = PANORAMA_FOV.start;
      camera.near = size * 1e-4;
      camera.far = size * 4;
      camera.position.set(0, 0, size * 1e-5);
      this.controls.target.set(0, 0, 0);
      this.controls.enableZoom = false;
      this.controls.enablePan = false;
      // Dragging then feels like grabbing the scene rather than moving the camera.
      this.controls.rotateSpeed = -0.35;
    } else {
      // From the capture camera (the origin, looking straight down -Z) with the field of view
      // the depth model estimated, the cloud looks like the photo; orbiting then turns about the
      // middle of the scene's depth.
      camera.fov = estimatedFov(this.header?.camera) ?? DEFAULT_FOV;
      camera.near = Math.max(size * 1e-4, 1e-3);
      camera.far = (centre.length() + size) * 4;
      camera.position.set(0, 0, 0);
      this.controls.target.set(0, 0, Math.min(centre.z, -size * 1e-3));
      this.controls.enableZoom = true;
      this.controls.enablePan = true;
      this.controls.rotateSpeed = 1;
    }
    camera.updateProjectionMatrix();
    this.controls.update();
    this._updateProjScale();
  }

  _panoramaZoom(event) {
    if (!this.panorama || !this.points) return;
    event.preventDefault();
    const fov = this.camera.fov * Math.exp(event.deltaY * 0.001);
    this.camera.fov = THREE.MathUtils.clamp(fov, PANORAMA_FOV.min, PANORAMA_FOV.max);
    this.camera.updateProjectionMatrix();
    this._updateProjScale();
    this.requestRender();
  }

  _resize() {
    const { clientWidth: width, clientHeight: height } = this.container;
    if (!width || !height) return;
    this.renderer.setSize(width, height);
    this.camera.aspect = width / height;
    this.camera.updateProjectionMatrix();
    this._updateProjScale();
    this.requestRender();
  }

  _updateProjScale() {
    const heightPx = this.renderer.domElement.height;
    const halfFov = THREE.MathUtils.degToRad(this.camera.fov) / 2;
    this.material.uniforms.uProjScale.value = heightPx / (2 * Math.tan(halfFov));
  }
}

/**
 * Angle one source pixel spans, in radians, guessed from the point count alone (strides and
 * dropped points make the header's image size an unreliable guide): a 2:1 equirectangular image
 * of N pixels spans 2π / sqrt(2N) per pixel at its equator; a photo covers about one steradian.
 */
function pixelAngle(panorama, count, camera) {
  // The header's camera says it exactly: the sampling stride over the focal length (a
  // panorama: a full turn over its width in samples).
  if (camera?.model === 'pinhole' && camera.fy > 0) return (camera.stride || 1) / camera.fy;
  if (camera?.model === 'equirectangular' && camera.width > 0) {
    return (2 * Math.PI * (camera.stride || 1)) / camera.width;
  }
  const n = Math.max(count, 1);
  return panorama ? (2 * Math.PI) / Math.sqrt(2 * n) : Math.sqrt(1.0 / n);
}

/**
 * The vertical field of view, in degrees, of a PCLD header's pinhole camera (FORMAT.md: fy and
 * the source image's height, in pixels): 2 atan(height / 2 fy). Null for any other camera.
 */
export function estimatedFov(camera) {
  if (camera?.model !== 'pinhole' || !(camera.fy > 0) || !(camera.height > 0)) return null;
  return THREE.MathUtils.radToDeg(2 * Math.atan(camera.height / (2 * camera.fy)));
}

function nextFrame() {
  return new Promise((resolve) => requestAnimationFrame(resolve));
}

function boundsBox(bounds, positions, count) {
  if (bounds?.min?.length === 3 && bounds?.max?.length === 3) {
    return new THREE.Box3(new THREE.Vector3(...bounds.min), new THREE.Vector3(...bounds.max));
  }
  // No bounds in the header: one pass over the floats (no objects per point).
  const box = new THREE.Box3();
  if (count > 0) box.setFromArray(positions.subarray(0, count * 3));
  return box;
}

/** True when this browser can give us a WebGL context at all. */
export function webglAvailable() {
  try {
    const canvas = document.createElement('canvas');
    return Boolean(canvas.getContext('webgl2') || canvas.getContext('webgl'));
  } catch {
    return false;
  }
}
