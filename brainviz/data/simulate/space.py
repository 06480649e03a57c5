"""Cortical space: planted language regions, listening networks and smooth random fields.

Step 4-5 of the generative model (``docs/simulation.md``): regions are MNI centres and radii
mapped onto fsaverage5 (:func:`brainviz.surface.vertices_near`), with right homologues; each
region carries both components (readable and brain-specific) with its own driver profiles and
readable share, modulated by smooth random fields on the mesh.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import numpy as np

from brainviz.data.simulate.config import N_VERTICES

@dataclasses.dataclass(frozen=True)
class RegionSpec:
    """A planted language region: centre, radius and driver profiles of both components.

    ``profile`` weights the brain-specific drivers, ``readable`` the readable ones, and
    ``readable_offset`` shifts the region's readable share from ``config.readable_share``.
    """

    name: str
    mni: tuple[float, float, float]
    radius: float
    profile: dict[str, float]
    readable: dict[str, float]
    readable_offset: float = 0.0


LANGUAGE_REGIONS: tuple[RegionSpec, ...] = (
    RegionSpec("IFG", (-50.0, 22.0, 8.0), 14.0,
               {"rare_words": 1.0, "mid_frequency": 0.6, "syntactic_depth": 0.3, "subject_object": 0.3},
               {"sem_abstract": 1.0, "log_frequency": 0.6, "sem_social": 0.4, "word_length": 0.3}, -0.1),
    RegionSpec("MFG", (-42.0, 18.0, 42.0), 12.0,
               {"mid_frequency": 1.0, "rare_words": 0.5, "syntactic_depth": 0.3},
               {"sem_abstract": 1.0, "sem_action": 0.4}, -0.1),
    RegionSpec("ATL", (-50.0, 10.0, -28.0), 13.0,
               {"rare_words": 1.0, "mid_frequency": 0.5, "semantic_coherence": 0.3},
               {"sem_social": 1.0, "sem_concrete": 0.5, "sem_abstract": 0.4}, 0.0),
    RegionSpec("STS_MTG", (-56.0, -38.0, 0.0), 14.0,
               {"rare_words": 1.0, "mid_frequency": 0.8, "longest_word": 0.3, "repetition": 0.3},
               {"log_frequency": 0.8, "word_length": 0.6, "sem_action": 0.6, "sem_social": 0.5, "word_rate": 0.8}, 0.1),
    RegionSpec("AG", (-45.0, -65.0, 30.0), 13.0,
               {"mid_frequency": 1.0, "rare_words": 0.6, "semantic_coherence": 0.3},
               {"sem_concrete": 1.0, "sem_action": 0.7, "sem_social": 0.3}, 0.1),
)
RIGHT_RADIUS_SCALE = 0.75


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """A planted listening network: its blobs and the driver of its time course.

    ``role`` is ``"coupled"`` (the driver is a quantity the packaged MiniLM's attention
    query-key products were measured to carry in both stories, so some AN should couple with
    the network; the sign of the coupling depends on the AN, as query-key products have no
    fixed sign) or ``"control"`` (a stimulus-locked but non-linguistic time
    course -- a random loudness envelope of a background soundtrack, identical for every
    listener -- that no AN should couple with). ``control_tau`` is the time constant (s) of
    a control's envelope.
    """

    name: str
    driver: str
    blobs: tuple[tuple[tuple[float, float, float], float, float], ...]  # (mni, radius, weight)
    role: str = "coupled"
    control_tau: float = 0.0


NETWORK_SPECS: tuple[NetworkSpec, ...] = (
    NetworkSpec("auditory", "word_rate", (((-52.0, -22.0, 8.0), 14.0, 1.0), ((54.0, -18.0, 8.0), 14.0, 0.9))),
    NetworkSpec("sentence", "sentence_end", (((-35.0, -50.0, 45.0), 12.0, 1.0), ((38.0, -48.0, 45.0), 12.0, 0.8))),
    NetworkSpec("social", "propn_share", (((-50.0, -58.0, 22.0), 12.0, 1.0), ((52.0, -55.0, 22.0), 12.0, 0.8),
                                          ((-6.0, -60.0, 40.0), 12.0, 0.8), ((-6.0, 50.0, 20.0), 12.0, 0.7))),
    NetworkSpec("dialogue", "dialogue_share", (((-5.0, 45.0, -10.0), 12.0, 1.0), ((-38.0, 20.0, -32.0), 10.0, 0.8),
                                               ((40.0, 20.0, -32.0), 10.0, 0.6))),
    NetworkSpec("lexical", "log_frequency", (((-44.0, -58.0, -14.0), 10.0, 1.0), ((44.0, -58.0, -14.0), 8.0, 0.5))),
    NetworkSpec("control_slow", "soundtrack_slow", (((-26.0, -40.0, -12.0), 12.0, 1.0), ((28.0, -40.0, -12.0), 12.0, 0.8),
                                                    ((-10.0, -55.0, 10.0), 10.0, 0.7)), role="control", control_tau=6.0),
    NetworkSpec("control_fast", "soundtrack_fast", (((-45.0, -70.0, 0.0), 12.0, 1.0), ((46.0, -68.0, 0.0), 12.0, 0.8),
                                                    ((-30.0, -5.0, 55.0), 10.0, 0.6)), role="control", control_tau=1.0),
)


@functools.lru_cache(maxsize=1)
def _smoother():
    """Row-normalised (self + neighbours) averaging operator on both fsaverage5 hemispheres."""
    import scipy.sparse as sp

    from brainviz.surface import HEMIS, N_PER_HEMI, fsaverage5_mesh

    blocks = []
    for hemi in HEMIS:
        faces = np.asarray(fsaverage5_mesh("pial", hemi)[1], dtype=np.int64)
        i = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 1], faces[:, 2], faces[:, 0]])
        j = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0], faces[:, 0], faces[:, 1], faces[:, 2]])
        adj = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(N_PER_HEMI, N_PER_HEMI)).tocsr()
        adj.data[:] = 1.0
        adj = adj + sp.identity(N_PER_HEMI, format="csr")
        deg = np.asarray(adj.sum(axis=1)).ravel()
        blocks.append(sp.diags(1.0 / deg) @ adj)
    return sp.block_diag(blocks, format="csr")


def _smooth_fields(rng: np.random.Generator, n: int, n_iter: int) -> np.ndarray:
    """``n`` smooth random fields on the mesh (n x 20484), each with unit s.d."""
    x = rng.standard_normal((N_VERTICES, n))
    s = _smoother()
    for _ in range(n_iter):
        x = s @ x
    x -= x.mean(axis=0)
    x /= x.std(axis=0)
    return np.ascontiguousarray(x.T)


def _blob(mni: Sequence[float], radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertices within ``radius`` of ``mni`` and their falloff ``exp(-1.5 (d / radius)^2)``."""
    from brainviz.surface import pial_coordinates, vertices_near

    idx = vertices_near(mni, radius)
    d = np.linalg.norm(pial_coordinates()[idx].astype(float) - np.asarray(mni, dtype=float), axis=1)
    return idx, np.exp(-1.5 * (d / radius) ** 2)


def _regions(config, experiment: str = "reading") -> list[dict[str, Any]]:
    """Left regions then right homologues, with vertices, falloff and target peak r^2."""
    out = []
    left_peak = config.region_peak_r2(experiment)
    for spec in LANGUAGE_REGIONS:
        for hemi in ("left", "right"):
            x, y, z = spec.mni
            mni = (x, y, z) if hemi == "left" else (-x, y, z)
            radius = spec.radius if hemi == "left" else spec.radius * RIGHT_RADIUS_SCALE
            peak = left_peak if hemi == "left" else left_peak * config.right_r2_scale
            idx, fall = _blob(mni, radius)
            out.append({"name": f"{'L' if hemi == 'left' else 'R'}_{spec.name}", "hemisphere": hemi, "mni": mni,
                        "radius": radius, "peak_r2": peak, "profile": spec.profile, "readable": spec.readable,
                        "readable_offset": spec.readable_offset, "idx": idx, "falloff": fall})
    out.sort(key=lambda r: (r["hemisphere"] != "left", [s.name for s in LANGUAGE_REGIONS].index(r["name"][2:])))
    for k, reg in enumerate(out):
        reg["label"] = k + 1
    return out


def _amp(r2: np.ndarray | float) -> np.ndarray:
    r2 = np.asarray(r2, dtype=float)
    return np.sqrt(r2 / (1.0 - r2))


def _readable_share(base: float, offset: float, field: np.ndarray) -> np.ndarray:
    """Per-vertex readable share: ``base`` shifted by the region offset and a smooth field.

    Both shifts are scaled by ``4 base (1 - base)``, so a share of 0 or 1 stays exact; otherwise
    the share stays in [0.05, 0.95] (both components present at every region vertex).
    """
    room = 4.0 * base * (1.0 - base)
    return np.clip(base + room * (offset + 0.15 * field), min(base, 0.05), max(base, 0.95))


def _language_weights(regions, names, components, cov: np.ndarray, shared_field: np.ndarray,
                      share_field: np.ndarray, readable_share: float):
    """Shared spatial weights of both components.

    Returns
    -------
    weights : (drivers, vertices) shared weights; signal = drivers @ weights
    labels : (vertices,) int32 region label of the region with the largest target r^2, 0 = none
    r2 : dict ``{"readable": (vertices,), "specific": (vertices,)}`` target per-TR r^2 of each
        component for an average participant (they add up, as the components are
        uncorrelated over the kept TRs)
    """
    comp = np.asarray(components)
    weights = np.zeros((len(names), N_VERTICES))
    labels = np.zeros(N_VERTICES, dtype=np.int32)
    best = np.zeros(N_VERTICES)
    comp_r2 = {"readable": np.zeros(N_VERTICES), "specific": np.zeros(N_VERTICES)}
    for reg in regions:
        idx, fall = reg["idx"], reg["falloff"]
        if idx.size == 0:
            continue
        r2 = reg["peak_r2"] * fall
        total_var = _amp(r2) ** 2  # signal variance against unit-variance noise
        share = _readable_share(readable_share, reg["readable_offset"], share_field[idx])
        for kind, profile_dict, part in (("readable", reg["readable"], share), ("specific", reg["profile"], 1.0 - share)):
            profile = np.array([profile_dict.get(n, 0.0) if c == kind else 0.0 for n, c in zip(names, comp)])
            if not profile.any():
                continue
            w = profile[:, None] * (1.0 + 0.4 * shared_field[:, idx])  # drivers x n_idx
            sd = np.sqrt(np.einsum("iv,ij,jv->v", w, cov, w))
            target = np.sqrt(total_var * part)
            weights[:, idx] += w * (target / np.where(sd > 0, sd, 1.0))
            comp_r2[kind][idx] += part * r2
        better = r2 > best[idx]
        labels[idx[better]] = reg["label"]
        best[idx[better]] = r2[better]
    return weights, labels, comp_r2


def _network_maps(specs: Sequence[NetworkSpec], r2: float) -> tuple[np.ndarray, list[int]]:
    maps = np.zeros((len(specs), N_VERTICES))
    for k, spec in enumerate(specs):
        for mni, radius, weight in spec.blobs:
            idx, fall = _blob(mni, radius)
            maps[k, idx] = np.maximum(maps[k, idx], weight * fall)
    sizes = [int((m > 0).sum()) for m in maps]
    return maps * _amp(r2), sizes


