#!/usr/bin/env bash
# `make bench`: every benchmark, each printing ratios against a baseline measured in the same run.
# Reports also land in bench-results/ (gitignored). Timings are never asserted in tests.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=.venv/bin/python

# Bench-only dependencies: Open3D (the pointcloud-lib baseline) needs Debian's libusb.
if ! $py -c "import open3d" 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! ldconfig -p | grep -q libusb-1.0; then
    apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1 || \
      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1; }
  fi
  $py -m pip install -q -c scripts/requirements/constraints.txt -r scripts/requirements/bench.txt \
    || echo "WARNING: open3d-cpu could not be installed; the Open3D comparison will be skipped"
fi

# The glTF (gltfpack, meshoptimizer) and Draco (draco3d) baselines of bench_grid.py: npm
# packages pinned by pointcloud-lib/bench/js/package-lock.json, and DracoPy (bench.txt).
if ! $py -c "import DracoPy" 2>/dev/null; then
  $py -m pip install -q -c scripts/requirements/constraints.txt DracoPy \
    || echo "WARNING: DracoPy could not be installed; the Draco comparison will be skipped"
fi
if command -v npm >/dev/null; then
  (cd pointcloud-lib/bench/js && npm ci --no-audit --no-fund --silent) \
    || echo "WARNING: npm ci failed in pointcloud-lib/bench/js; the glTF and Draco baselines may be skipped"
else
  echo "WARNING: npm is missing; bench_grid.py runs without the glTF and Draco baselines"
fi

mkdir -p bench-results
benches=(pointcloud-lib/bench/*.py depth-service/bench/*.py segment-service/bench/*.py \
         imagegen-service/bench/*.py orchestrator/bench/*.py scripts/bench_e2e.py scripts/bench_listing.py)
failed=0
for bench in "${benches[@]}"; do
  [ -f "$bench" ] || continue
  # pointcloud-lib/bench/bench_pack.py -> pointcloud-lib-bench_pack; scripts/x.py -> scripts-x
  case $bench in
    */bench/*) name=${bench%%/*}-$(basename "$bench" .py) ;;
    *) name=$(dirname "$bench" | tr / -)-$(basename "$bench" .py) ;;
  esac
  echo "=================== $bench"
  if ! PYTHONUNBUFFERED=1 $py "$bench" 2>&1 | tee "bench-results/$name.txt"; then
    echo "BENCH FAILED: $bench"; failed=1
  fi
done
# The time to a scene through the real services, per profile and quality (full-size random-weight
# models, built once into .cache/full-size). BENCH_SCENE_ARGS=--profiles=all adds the quality
# profile (DepthPro takes minutes a pass on a CPU); --quick for the 5-minute check.
echo "=================== scripts/bench_scene.py ${BENCH_SCENE_ARGS:-}"
if ! PYTHONUNBUFFERED=1 $py scripts/bench_scene.py --json bench-results/scripts-bench_scene.json \
    ${BENCH_SCENE_ARGS:-} 2>&1 | tee bench-results/scripts-bench_scene.txt; then
  echo "BENCH FAILED: scripts/bench_scene.py"; failed=1
fi
exit $failed
