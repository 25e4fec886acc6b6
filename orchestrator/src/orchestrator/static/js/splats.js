// The "splats" view: the generation's Gaussians (scene.spz where the server offers it, else
// scene.splat) drawn by Spark, the vendored three.js splat renderer, in the point viewer's own
// scene and camera. Loaded on demand: Spark is 2.7 MB, most visits never ask for it.
import { SparkRenderer, SplatMesh } from 'spark';

/**
 * Show `url` in `viewer` in place of its points; resolves with the splat count once Spark has
 * decoded the file. The viewer keeps drawing frames while the splats are shown, since Spark
 * sorts them in a worker and needs a frame after each sort.
 */
export async function showSplats(viewer, url, fileType) {
  if (!viewer.spark) {
    viewer.spark = new SparkRenderer({ renderer: viewer.renderer });
    viewer.scene.add(viewer.spark);
  }
  const mesh = new SplatMesh({ url, fileType });
  await mesh.initialized;
  viewer.showObject(mesh);
  const count = mesh.packedSplats?.numSplats ?? mesh.packedSplats?.getNumSplats?.()
    ?? mesh.extSplats?.numSplats ?? 0;
  return count;
}
