"""Where SAM2's point prompts go: SAM's uniform grid, or a few per region of the semantic map.

On CPU the mask decoder costs ~100 ms per prompt (segment-service/bench), so a 32 x 32 grid is
1,024 decoder passes, most of them landing in the same few large regions (sky, wall, floor) and
returning the same mask again and again. The semantic strategy spends the prompts where the regions
are: every connected region of the semantic class map gets prompts at its most interior points
(maxima of the distance transform), more for larger regions (the square root of the grid points
that would have landed in it, since a large region holds several objects of its class but far fewer
than its grid points), plus a few just inside its boundary, where objects the semantic model folded
into a neighbouring class sit. Small regions that fall between grid points get a prompt too.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

# The class map is analysed at this longer side (nearest-neighbour subsampling): region shapes
# survive, and labelling plus distance transforms stay at a few milliseconds.
WORK_SIDE_PX = 256
# Regions smaller than this fraction of one grid cell get no prompt: semantic-map speckle (the
# uniform grid itself rarely hits a region that small) ...
MIN_REGION_CELLS = 0.25
# ... unless they cover this fraction of the crop (a 32 x 32 px object at 1 MP): coarse grids
# still get a prompt on each small object.
MIN_REGION_FRACTION = 0.001
# Boundary prompts per region, as a fraction of its interior prompts (regions of 4+ cells).
BOUNDARY_SHARE = 0.5
# Boundary prompts sit this far inside the region from a boundary with another class, as a
# fraction of the crop's longer side (10-20 px at 1024): on the region, off the edge where the
# semantic model's boundary is uncertain.
BOUNDARY_BAND = (0.01, 0.02)


def build_point_grid(points_per_side: int) -> torch.Tensor:
    """[n*n, 2] (x, y) points at the centres of an n x n grid over [0, 1]^2 (SAM's grid)."""
    offset = 1.0 / (2 * points_per_side)
    side = torch.linspace(offset, 1 - offset, points_per_side)
    ys, xs = torch.meshgrid(side, side, indexing="ij")
    return torch.stack([xs, ys], dim=-1).reshape(-1, 2)


def _spread_points(score: np.ndarray, count: int, chosen: list[tuple[int, int]],
                   min_score: float) -> list[tuple[int, int]]:
    """Greedy farthest-point picks: each pick maximises min(score, distance to earlier picks).

    With the distance transform as ``score`` the first pick is the most interior point and the
    next ones spread over the region instead of clustering at its centre.
    """
    score = score.astype(np.float32, copy=True)
    ys, xs = np.indices(score.shape, dtype=np.float32)
    for y, x in chosen:
        np.minimum(score, np.hypot(ys - y, xs - x), out=score)
    picks: list[tuple[int, int]] = []
    for _ in range(count):
        flat = int(np.argmax(score))
        y, x = divmod(flat, score.shape[1])
        if score[y, x] < min_score:
            break
        picks.append((y, x))
        np.minimum(score, np.hypot(ys - y, xs - x), out=score)
    return picks


def _allocation(cells: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """(interior, boundary) prompts per region from its size in grid cells, within ``budget``."""
    root = np.sqrt(cells)
    interior = np.maximum(1, np.round(root)).astype(np.int64)
    boundary = np.where(cells >= 4, np.round(root * BOUNDARY_SHARE), 0).astype(np.int64)
    total = int(interior.sum() + boundary.sum())
    if total > budget:
        # Over budget (a very fragmented map): scale down, every region keeping one prompt while
        # they last, the largest regions first.
        factor = budget / total
        interior = np.maximum(1, np.floor(interior * factor)).astype(np.int64)
        boundary = np.floor(boundary * factor).astype(np.int64)
        order = np.argsort(-cells, kind="stable")
        running = np.cumsum((interior + boundary)[order])
        dropped = order[running > budget]
        interior[dropped] = 0
        boundary[dropped] = 0
    return interior, boundary


def semantic_prompts(class_map: np.ndarray, points_per_side: int) -> torch.Tensor:
    """[N, 2] (x, y) prompts in [0, 1] for the crop whose class map is ``class_map`` [H, W].

    ``points_per_side`` sets the density as for the grid (a region gets about the square root of
    the grid points that would land in it); N never exceeds ``points_per_side ** 2``.
    """
    height, width = class_map.shape
    stride = max(1, math.ceil(max(height, width) / WORK_SIDE_PX))
    work = class_map[stride // 2::stride, stride // 2::stride]
    work_cells = work.size / points_per_side**2  # work pixels per grid cell
    min_size = min(MIN_REGION_CELLS * work_cells, MIN_REGION_FRACTION * work.size)

    regions: list[tuple[np.ndarray, tuple[slice, slice]]] = []
    sizes: list[int] = []
    for value in np.unique(work):
        labels, _ = ndimage.label(work == value)
        for index, box in enumerate(ndimage.find_objects(labels), start=1):
            region = labels[box] == index
            size = int(np.count_nonzero(region))
            if size >= min_size:
                regions.append((region, box))
                sizes.append(size)
    if not regions:
        return torch.zeros((0, 2), dtype=torch.float32)
    # Distance to the nearest pixel of another class; the image border is no class boundary.
    edges = np.zeros(work.shape, dtype=bool)
    edges[:, 1:] |= work[:, 1:] != work[:, :-1]
    edges[:, :-1] |= work[:, 1:] != work[:, :-1]
    edges[1:] |= work[1:] != work[:-1]
    edges[:-1] |= work[1:] != work[:-1]
    to_edge = ndimage.distance_transform_edt(~edges) if edges.any() else None
    low, high = (f * max(work.shape) for f in BOUNDARY_BAND)
    interior, boundary = _allocation(np.asarray(sizes) / work_cells, points_per_side**2)

    points: list[tuple[float, float]] = []
    for (region, box), n_inner, n_edge in zip(regions, interior, boundary, strict=True):
        if n_inner + n_edge == 0:
            continue
        # A frame of background around the box: the image border counts as a region edge too.
        depth = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
        inner = _spread_points(depth, int(n_inner), [], min_score=0.5)
        edge: list[tuple[int, int]] = []
        if to_edge is not None and n_edge:
            near = to_edge[box]
            band = np.where(region & (near >= low) & (near <= high), 1e6, 0.0)
            edge = _spread_points(band, int(n_edge), inner, min_score=1.0)
        for y, x in inner + edge:
            # Work pixel -> the centre of the crop pixel it was sampled from, normalised.
            row = (box[0].start + y) * stride + stride // 2
            col = (box[1].start + x) * stride + stride // 2
            points.append(((col + 0.5) / width, (row + 0.5) / height))
    return torch.tensor(points, dtype=torch.float32).reshape(-1, 2)
