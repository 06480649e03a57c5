"""Software rasterizer for static brain figures: fsaverage5 views as pixel -> vertex look-ups.

A view (mesh, hemisphere, camera) is projected orthographically once and rasterized with a
z-buffer in numpy: every foreground pixel stores the three vertices of the triangle it sees,
its barycentric weights and a Lambert shading factor. Drawing a map is then a gather
(``weights @ colours[vertices]``), a few milliseconds for four views, so a montage of any map
costs almost nothing once the look-up exists. Look-ups are cached in memory and in
``<cache>/meshes/raster-v1-*.npz`` (built in about a second on first use).

Cameras (orthographic, the viewer looking along ``d`` with ``up`` up; screen right = d x up):
lateral of the left hemisphere looks along +x (anterior on the left), medial along -x, and the
right hemisphere mirrors that; dorsal looks down (-z, anterior up), ventral up; anterior and
posterior along -y / +y. The ``flat`` view draws nilearn's flat mesh as it is (x right, y up).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from brainviz import surface

VIEWS = ("lateral", "medial", "dorsal", "ventral", "anterior", "posterior")
_VERSION = 1


def camera_vectors(view: str, hemi: str) -> tuple[np.ndarray, np.ndarray]:
    """``(d, up)``: viewing direction (eye -> brain) and screen-up of a named view."""
    side = -1.0 if hemi == "left" else 1.0  # lateral eye on this side of x
    table = {
        "lateral": ((-side, 0.0, 0.0), (0.0, 0.0, 1.0)),
        "medial": ((side, 0.0, 0.0), (0.0, 0.0, 1.0)),
        "dorsal": ((0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
        "ventral": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
        "anterior": ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
        "posterior": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    }
    if view not in table:
        raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
    d, up = table[view]
    return np.asarray(d), np.asarray(up)


@dataclasses.dataclass(frozen=True)
class ViewRaster:
    """Pixel look-up of one view: foreground pixels and what they see.

    Attributes
    ----------
    height, width : int
        Image size in pixels.
    pixels : int32 (n,)
        Row-major indices of the foreground pixels.
    verts : int32 (n, 3)
        Hemisphere-local vertex indices (0..10241) of the triangle seen at each pixel.
    weights : float32 (n, 3)
        Barycentric weights of the pixel centre in that triangle.
    shade : float32 (n,)
        Lighting factor in (0, 1].
    origin : (u0, v1) float
        Screen coordinates (mm) of the top-left corner; ``px_per_mm`` the scale.
    """

    height: int
    width: int
    pixels: np.ndarray
    verts: np.ndarray
    weights: np.ndarray
    shade: np.ndarray
    origin: tuple[float, float]
    px_per_mm: float

    @property
    def nearest(self) -> np.ndarray:
        """Hemisphere-local vertex nearest to each foreground pixel (largest weight)."""
        return self.verts[np.arange(self.verts.shape[0]), np.argmax(self.weights, axis=1)]

    def to_pixel(self, u, v) -> tuple[np.ndarray, np.ndarray]:
        """Screen mm -> (column, row) pixel coordinates."""
        return ((np.asarray(u) - self.origin[0]) * self.px_per_mm,
                (self.origin[1] - np.asarray(v)) * self.px_per_mm)


def _screen(kind: str, hemi: str, view: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Screen coordinates ``(uv (n, 2), depth (n,), faces)``; smaller depth = nearer the eye."""
    coords, faces = surface.mesh(kind, hemi)
    c = coords.astype(np.float64)
    if kind == "flat":
        return c[:, :2].copy(), np.zeros(c.shape[0]), faces
    d, up = camera_vectors(view, hemi)
    right = np.cross(d, up)
    return np.c_[c @ right, c @ up], c @ d, faces


@functools.lru_cache(maxsize=8)
def extent(kind: str, view: str) -> tuple[float, float]:
    """Largest (width, height) in mm of a view over both hemispheres (a common panel size)."""
    w = h = 0.0
    for hemi in surface.HEMIS:
        uv, _, faces = _screen(kind, hemi, view)
        used = uv[np.unique(faces)]
        span = used.max(axis=0) - used.min(axis=0)
        w, h = max(w, float(span[0])), max(h, float(span[1]))
    return w, h


def _rasterize(xy: np.ndarray, depth: np.ndarray, faces: np.ndarray, height: int, width: int):
    """Z-buffered triangle rasterization: ``(pixels, face index, barycentric weights)``."""
    tri = xy[faces]                                     # (m, 3, 2) pixel coordinates
    lo = np.ceil(tri.min(axis=1) - 0.5).astype(np.int64)
    hi = np.floor(tri.max(axis=1) - 0.5).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [width - 1, height - 1])
    bw = hi[:, 0] - lo[:, 0] + 1
    bh = hi[:, 1] - lo[:, 1] + 1
    counts = np.where((bw > 0) & (bh > 0), bw * bh, 0)
    fidx = np.repeat(np.arange(faces.shape[0]), counts)
    starts = np.cumsum(counts) - counts
    local = np.arange(int(counts.sum())) - np.repeat(starts, counts)
    bwr = bw[fidx]
    px = lo[fidx, 0] + local % bwr
    py = lo[fidx, 1] + local // bwr
    a, b, c = tri[fidx, 0], tri[fidx, 1], tri[fidx, 2]
    v0, v1 = b - a, c - a
    v2x, v2y = px + 0.5 - a[:, 0], py + 0.5 - a[:, 1]
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    ok = np.abs(den) > 1e-12
    den = np.where(ok, den, 1.0)
    w1 = (v2x * v1[:, 1] - v1[:, 0] * v2y) / den
    w2 = (v0[:, 0] * v2y - v2x * v0[:, 1]) / den
    w0 = 1.0 - w1 - w2
    eps = -1e-7
    inside = ok & (w0 >= eps) & (w1 >= eps) & (w2 >= eps)
    fidx, px, py, w = fidx[inside], px[inside], py[inside], np.c_[w0, w1, w2][inside]
    f = faces[fidx]
    z = (w * depth[f]).sum(axis=1)
    pix = py * width + px
    order = np.lexsort((z, pix))
    pix, keep = np.unique(pix[order], return_index=True)
    sel = order[keep]
    return pix, fidx[sel], np.clip(w[sel], 0.0, 1.0)


def _build(kind: str, hemi: str, view: str, px_per_mm: float) -> ViewRaster:
    uv, depth, faces = _screen(kind, hemi, view)
    if kind == "flat":
        used = np.unique(faces)
        u0, v1 = float(uv[used, 0].min()), float(uv[used, 1].max())
        w_mm = float(uv[used, 0].max()) - u0
        h_mm = v1 - float(uv[used, 1].min())
    else:
        w_mm, h_mm = extent(kind, view)
        used = np.unique(faces)
        mid = (uv[used].max(axis=0) + uv[used].min(axis=0)) / 2
        u0, v1 = float(mid[0] - w_mm / 2), float(mid[1] + h_mm / 2)
    pad = 2
    width = int(np.ceil(w_mm * px_per_mm)) + 2 * pad
    height = int(np.ceil(h_mm * px_per_mm)) + 2 * pad
    u0 -= pad / px_per_mm
    v1 += pad / px_per_mm
    xy = np.c_[(uv[:, 0] - u0) * px_per_mm, (v1 - uv[:, 1]) * px_per_mm]
    pix, fidx, w = _rasterize(xy, depth, faces, height, width)
    verts = faces[fidx].astype(np.int32)
    if kind == "flat":
        shade = np.ones(pix.size, dtype=np.float32)
    else:
        d, _ = camera_vectors(view, hemi)
        n = (w[:, :, None] * surface.vertex_normals(kind, hemi)[verts]).sum(axis=1)
        n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
        lam = np.clip(-(n @ d), 0.0, 1.0)
        shade = (0.5 + 0.5 * lam ** 0.7).astype(np.float32)
    return ViewRaster(height, width, pix.astype(np.int32), verts, w.astype(np.float32), shade,
                      (u0, v1), float(px_per_mm))


def _file(kind: str, hemi: str, view: str, px_per_mm: float):
    from brainviz import paths

    return paths.cache_dir() / "meshes" / f"raster-v{_VERSION}-{kind}-{hemi}-{view}-{px_per_mm:.4f}.npz"


@functools.lru_cache(maxsize=64)
def view_raster(kind: str, hemi: str, view: str, px_per_mm: float) -> ViewRaster:
    """The (cached) pixel look-up of one view at ``px_per_mm`` pixels per millimetre."""
    if kind not in surface.CACHED_KINDS:
        raise ValueError(f"unknown mesh {kind!r}; expected one of {surface.CACHED_KINDS}")
    if hemi not in surface.HEMIS:
        raise ValueError(f"unknown hemisphere {hemi!r}")
    if kind != "flat":
        camera_vectors(view, hemi)  # validates the view
    target = _file(kind, hemi, view, px_per_mm)
    if target.is_file():
        try:
            with np.load(target, allow_pickle=False) as z:
                return ViewRaster(int(z["height"]), int(z["width"]), z["pixels"], z["verts"], z["weights"],
                                  z["shade"], (float(z["origin"][0]), float(z["origin"][1])), float(z["px_per_mm"]))
        except (OSError, ValueError, KeyError):
            pass
    r = _build(kind, hemi, view, px_per_mm)
    try:
        from brainviz._io import atomic_path

        with atomic_path(target, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, height=r.height, width=r.width, pixels=r.pixels, verts=r.verts, weights=r.weights,
                         shade=r.shade, origin=np.asarray(r.origin), px_per_mm=r.px_per_mm)
    except OSError:  # read-only cache: memory only
        pass
    return r


def clear_memory_cache() -> None:
    view_raster.cache_clear()
    extent.cache_clear()


def render(r: ViewRaster, vertex_rgb: np.ndarray, *, background=(255, 255, 255), shade: bool = True,
           labels: np.ndarray | None = None, outline_rgb=(0, 0, 0)) -> np.ndarray:
    """uint8 image (height, width, 3) of per-vertex colours (10242, 3) in [0, 1] on one view.

    ``labels`` (10242,) ints draws the boundaries between different non-zero labels (and
    between a label and unlabelled cortex) as ``outline_rgb`` pixels.
    """
    img = np.empty((r.height * r.width, 3), dtype=np.float32)
    img[:] = np.asarray(background, dtype=np.float32) / 255.0
    col = np.einsum("nk,nkc->nc", r.weights, np.asarray(vertex_rgb, dtype=np.float32)[r.verts])
    if shade:
        col *= r.shade[:, None]
    img[r.pixels] = col
    out = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8).reshape(r.height, r.width, 3)
    if labels is not None:
        edge = label_edges(r, labels)
        out[edge] = np.asarray(outline_rgb, dtype=np.uint8)
    return out


def label_image(r: ViewRaster, labels: np.ndarray, fill: int = -1) -> np.ndarray:
    """(height, width) int image of the label of the nearest vertex; ``fill`` off the brain."""
    img = np.full(r.height * r.width, fill, dtype=np.int64)
    img[r.pixels] = np.asarray(labels)[r.nearest]
    return img.reshape(r.height, r.width)


def label_edges(r: ViewRaster, labels: np.ndarray) -> np.ndarray:
    """Boolean (height, width): pixels on a boundary of a non-zero label (one pixel wide)."""
    lab = label_image(r, labels)
    edge = np.zeros(lab.shape, dtype=bool)
    for a, b, ea in ((lab[:, 1:], lab[:, :-1], (slice(None), slice(1, None))),
                     (lab[1:, :], lab[:-1, :], (slice(1, None), slice(None)))):
        hit = (a != b) & (a >= 0) & (b >= 0) & ((a > 0) | (b > 0))
        edge[ea] |= hit
    return edge
