"""Perspective-correct panorama depth: the panorama as pinhole views, merged back on the sphere.

A depth model assumes a pinhole camera; an equirectangular image bends straight lines and
stretches the poles, so the depth a model returns for it does not describe the sphere. Here (as
in MoGe's panorama mode and 360MonoDepth) the panorama is resampled into square perspective
views, each predicted as the pinhole view it is, each view's planar depth turned into distance
along the ray, the views aligned to each other (one scale and shift per view in disparity, one
least-squares solve over every overlap, anchored to a mean scale of 1) and blended back onto the
equirectangular grid in inverse distance with weights that fall smoothly to zero at each view's
border. Directions come from the sphere, so the seam and the poles need no special case.

Conventions are pointcloud-lib's: longitude 0 at the centre column, looking down -Z, +X to the
right, +Y up; pixel (u, v) of a W x H panorama has its centre at longitude
((u + 0.5) / W - 0.5) 2 pi and latitude (0.5 - (v + 0.5) / H) pi. A view's camera looks down its
own -Z with +X right and +Y up; its rotation maps camera directions to world directions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np


class PanoramaMode(StrEnum):
    # Pinhole views on the sphere, aligned and merged (this module).
    PERSPECTIVE = "perspective"
    # The equirectangular image itself, in wrapping tiles (the pipeline's tiling).
    EQUIRECT = "equirect"


class ViewLayout(StrEnum):
    # Six cube faces widened by a margin on every side.
    CUBE = "cube"
    # Twelve views towards the vertices of an icosahedron (MoGe's layout).
    ICOSAHEDRON = "icosahedron"


# Fields of view (degrees, each view's side to side). Cube faces need 90; the margin gives every
# direction two views with some weight, so the alignment has overlaps and the blend no seams.
CUBE_FOV_DEG = 110.0
# Icosahedron vertices are 63.4 degrees apart; 90 degrees is MoGe's choice.
ICOSAHEDRON_FOV_DEG = 90.0
MIN_VIEW_PX = 32
# Directions per view sampled for the alignment (a grid over the panorama, thinned).
ALIGN_GRID = (96, 192)
# Disparity floor relative to the merged map's median: views may extrapolate to <= 0 at their
# far borders, which has no distance.
MIN_RELATIVE_DISPARITY = 1e-4


@dataclass(frozen=True)
class View:
    # 3x3: camera direction -> world direction.
    rotation: np.ndarray
    fov_deg: float
    side: int

    @property
    def focal_px(self) -> float:
        return 0.5 * self.side / math.tan(math.radians(self.fov_deg) / 2.0)


def view_layout(layout: ViewLayout, side: int) -> list[View]:
    if layout is ViewLayout.CUBE:
        axes = [(0, 0, -1), (1, 0, 0), (0, 0, 1), (-1, 0, 0), (0, 1, 0), (0, -1, 0)]
        fov = CUBE_FOV_DEG
    else:
        phi = (1.0 + math.sqrt(5.0)) / 2.0
        axes = [(0, s1, s2 * phi) for s1 in (-1, 1) for s2 in (-1, 1)]
        axes += [(s1, s2 * phi, 0) for s1 in (-1, 1) for s2 in (-1, 1)]
        axes += [(s2 * phi, 0, s1) for s1 in (-1, 1) for s2 in (-1, 1)]
        fov = ICOSAHEDRON_FOV_DEG
    return [View(_look_rotation(np.asarray(axis, np.float64)), fov, side) for axis in axes]


def _look_rotation(forward: np.ndarray) -> np.ndarray:
    """Rotation whose camera -Z points along ``forward``, camera +Y as close to world +Y as the
    direction allows (world -Z for the straight-up view, +Z for straight down)."""
    forward = forward / np.linalg.norm(forward)
    up = np.array([0.0, 1.0, 0.0])
    if abs(forward @ up) > 0.999:
        up = np.array([0.0, 0.0, -1.0 if forward[1] > 0 else 1.0])
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    true_up = np.cross(right, forward)
    return np.stack([right, true_up, -forward], axis=1)


def sphere_directions(height: int, width: int) -> np.ndarray:
    """Unit ray direction of every panorama pixel, [H, W, 3]."""
    lon = ((np.arange(width) + 0.5) / width - 0.5) * 2.0 * math.pi
    lat = (0.5 - (np.arange(height) + 0.5) / height) * math.pi
    cos_lat = np.cos(lat)[:, None]
    return np.stack(np.broadcast_arrays(cos_lat * np.sin(lon)[None, :],
                                        np.sin(lat)[:, None] + 0 * lon[None, :],
                                        -cos_lat * np.cos(lon)[None, :]), axis=-1)


def view_rays(view: View) -> np.ndarray:
    """Camera-frame rays of a view's pixels, [S, S, 3], with z = -1 (not unit length)."""
    centre = (view.side - 1) / 2.0
    coords = (np.arange(view.side) - centre) / view.focal_px
    x = np.broadcast_to(coords[None, :], (view.side, view.side))
    y = np.broadcast_to(-coords[:, None], (view.side, view.side))
    return np.stack([x, y, -np.ones_like(x)], axis=-1)


def render_view(panorama: np.ndarray, view: View) -> np.ndarray:
    """The pinhole view's pixels, bilinearly sampled from the panorama (wrapping in longitude)."""
    rays = view_rays(view) @ view.rotation.T
    height, width = panorama.shape[:2]
    norm = np.linalg.norm(rays, axis=-1)
    lon = np.arctan2(rays[..., 0], -rays[..., 2])
    lat = np.arcsin(np.clip(rays[..., 1] / norm, -1.0, 1.0))
    u = (lon / (2.0 * math.pi) + 0.5) * width - 0.5
    v = (0.5 - lat / math.pi) * height - 0.5
    sampled = _bilinear(panorama.astype(np.float32), u, v, wrap=True)
    if panorama.dtype == np.uint8:
        return np.clip(np.rint(sampled), 0, 255).astype(np.uint8)
    return sampled


def _bilinear(image: np.ndarray, u: np.ndarray, v: np.ndarray, *, wrap: bool) -> np.ndarray:
    """Bilinear samples of an [H, W(, C)] image at fractional pixel centres (u right, v down);
    rows clamp at the border, columns wrap when ``wrap`` (else clamp)."""
    height, width = image.shape[:2]
    v = np.clip(v, 0.0, height - 1.0)
    if not wrap:
        u = np.clip(u, 0.0, width - 1.0)
    u0, v0 = np.floor(u), np.floor(v)
    fu, fv = u - u0, v - v0
    u0 = u0.astype(np.int64)
    v0 = v0.astype(np.int64)
    v1 = np.minimum(v0 + 1, height - 1)
    if wrap:
        u1 = (u0 + 1) % width
        u0 = u0 % width
    else:
        u1 = np.minimum(u0 + 1, width - 1)
    if image.ndim == 3:
        fu, fv = fu[..., None], fv[..., None]
    top = image[v0, u0] * (1 - fu) + image[v0, u1] * fu
    bottom = image[v1, u0] * (1 - fu) + image[v1, u1] * fu
    return (top * (1 - fv) + bottom * fv).astype(np.float32)


@dataclass(frozen=True)
class _Footprint:
    """Where one view sees a set of world directions: pixel coordinates, the blend weight
    (0 outside the view) and the cosine between each ray and the optical axis."""

    col: np.ndarray
    row: np.ndarray
    weight: np.ndarray
    cos_axis: np.ndarray


def _footprint(view: View, directions: np.ndarray) -> _Footprint:
    cam = directions @ view.rotation  # world -> camera: R^T d, for row vectors d R
    ahead = -cam[..., 2]
    safe = np.where(ahead > 1e-6, ahead, 1.0)
    x, y = cam[..., 0] / safe, cam[..., 1] / safe
    half = math.tan(math.radians(view.fov_deg) / 2.0)
    # Raised cosine of the larger normalised image coordinate: 1 at the centre, 0 at the border.
    r = np.maximum(np.abs(x), np.abs(y)) / half
    weight = np.where((ahead > 1e-6) & (r < 1.0), np.cos(0.5 * math.pi * np.minimum(r, 1.0)) ** 2,
                      0.0)
    centre = (view.side - 1) / 2.0
    norm = np.linalg.norm(directions, axis=-1)
    return _Footprint(col=x * view.focal_px + centre, row=centre - y * view.focal_px,
                      weight=weight, cos_axis=ahead / norm)


def align_views(views: list[View], disparities: list[np.ndarray],
                grid: tuple[int, int] = ALIGN_GRID) -> list[tuple[float, float]]:
    """Per-view (scale, shift) that turn each view's disparity into one common inverse distance.

    A view's planar inverse depth is 1/z = 1/(d cos) for a ray at angle acos(cos) from its axis,
    so inverse distance is cos (s_k p_k + t_k). For a direction seen by views k and l both must
    agree: cos_k (s_k p_k + t_k) - cos_l (s_l p_l + t_l) = 0, weighted by both views' blend
    weights. Every such equation over a grid of directions, plus sum(s_k) = K (the anchor: one
    global scale, the views' own on average), is one linear least-squares problem. The cosines
    differ between views, which is also what makes the shifts determinable.
    """
    directions = sphere_directions(*grid)
    count = len(views)
    samples = []
    for view, disparity in zip(views, disparities, strict=True):
        foot = _footprint(view, directions)
        scale_to_map = disparity.shape[0] / view.side  # the model's output may be smaller
        value = _bilinear(disparity.astype(np.float32), (foot.col + 0.5) * scale_to_map - 0.5,
                          (foot.row + 0.5) * scale_to_map - 0.5, wrap=False)
        samples.append((foot.weight, foot.cos_axis, value))
    rows: list[np.ndarray] = []
    for k in range(count):
        for m in range(k + 1, count):
            wk, ck, pk = samples[k]
            wm, cm, pm = samples[m]
            both = (wk > 0) & (wm > 0) & np.isfinite(pk) & np.isfinite(pm)
            if not both.any():
                continue
            w = np.sqrt(wk[both] * wm[both])
            block = np.zeros((int(both.sum()), 2 * count))
            block[:, 2 * k] = w * ck[both] * pk[both]
            block[:, 2 * k + 1] = w * ck[both]
            block[:, 2 * m] = -w * cm[both] * pm[both]
            block[:, 2 * m + 1] = -w * cm[both]
            rows.append(block)
    if not rows:
        return [(1.0, 0.0)] * count
    system = np.concatenate(rows)
    # Columns on a common footing: disparities of metric models are ~0.01-10, of relative ones
    # 0-1000; the solve should weigh each view's overlap, not its units.
    norms = np.linalg.norm(system, axis=0)
    norms[norms == 0] = 1.0
    system = system / norms
    anchor = np.zeros(2 * count)
    anchor[0::2] = 1.0 / norms[0::2]
    # Heavily weighted: the anchor fixes the scale, the overlaps everything else.
    weight = 1e3 * math.sqrt(system.shape[0])
    design = np.vstack([system, weight * anchor[None, :]])
    target = np.zeros(design.shape[0])
    target[-1] = weight * count
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    solution = solution / norms
    return [(float(solution[2 * k]), float(solution[2 * k + 1])) for k in range(count)]


def merge_views(views: list[View], disparities: list[np.ndarray],
                fits: list[tuple[float, float]], height: int, width: int) -> np.ndarray:
    """Inverse distance on the equirectangular grid: each view's aligned disparity turned into
    inverse distance, blended with its weights (row blocks bound the temporaries)."""
    total = np.zeros((height, width), np.float64)
    weights = np.zeros((height, width), np.float64)
    directions = sphere_directions(height, width)
    for view, disparity, (scale, shift) in zip(views, disparities, fits, strict=True):
        foot = _footprint(view, directions)
        seen = foot.weight > 0
        scale_to_map = disparity.shape[0] / view.side
        aligned = scale * disparity.astype(np.float64) + shift
        value = _bilinear(aligned.astype(np.float32),
                          (foot.col[seen] + 0.5) * scale_to_map - 0.5,
                          (foot.row[seen] + 0.5) * scale_to_map - 0.5, wrap=False)
        total[seen] += foot.weight[seen] * foot.cos_axis[seen] * value
        weights[seen] += foot.weight[seen]
    inverse = total / np.maximum(weights, 1e-12)
    floor = MIN_RELATIVE_DISPARITY * max(float(np.median(inverse)), 1e-12)
    return np.maximum(inverse, floor).astype(np.float32)


def upsample_wrapped(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an equirectangular map to (height, width), wrapping across the seam."""
    small_h, small_w = values.shape
    if (small_h, small_w) == (height, width):
        return values
    u = (np.arange(width) + 0.5) * (small_w / width) - 0.5
    v = (np.arange(height) + 0.5) * (small_h / height) - 0.5
    uu, vv = np.meshgrid(u, v)
    return _bilinear(values, uu, vv, wrap=True)


def view_side(native_side: int, width: int, fov_deg: float) -> int:
    """A view's side: the panorama's own angular resolution at the view's centre, at most the
    model's native input (it would downsample anything larger) and at least MIN_VIEW_PX."""
    matched = 2.0 * (width / (2.0 * math.pi)) * math.tan(math.radians(fov_deg) / 2.0)
    return int(max(MIN_VIEW_PX, min(native_side, round(matched))))


def merge_to_equirect(views: list[View], disparities: list[np.ndarray], height: int,
                      width: int) -> np.ndarray:
    """The views' disparities aligned to each other and merged into one inverse-distance map
    of the panorama's size (height x width)."""
    fits = align_views(views, disparities)
    # The views hold about side x side samples each: merging on a grid finer than twice that
    # per 90 degrees adds nothing but time; the result is upsampled bilinearly.
    merge_height = min(height, 2 * views[0].side)
    merged = merge_views(views, disparities, fits, merge_height, 2 * merge_height)
    return upsample_wrapped(merged, height, width)


def views_for(layout: ViewLayout, native_side: int, width: int) -> list[View]:
    """The perspective views of a panorama ``width`` wide for a model of this native side."""
    fov = CUBE_FOV_DEG if layout is ViewLayout.CUBE else ICOSAHEDRON_FOV_DEG
    return view_layout(layout, view_side(native_side, width, fov))
