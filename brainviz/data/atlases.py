"""Cortical atlases on fsaverage5, ROI selection for tuning and ROI summaries for evaluation.

Every atlas is reduced to one integer label per fsaverage5 vertex (20,484 = 10,242 left, then
10,242 right; 0 = unlabelled / medial wall) plus a name per label: :class:`Atlas`.

Sources (none is needed by the app; all are user-supplied files or downloads)
-----------------------------------------------------------------------------
* Glasser et al. 2016 HCP-MMP1 (360 areas): FreeSurfer ``.annot`` pair (``lh.HCP-MMP1.annot``,
  ``rh.HCP-MMP1.annot``) on any icosahedral fsaverage mesh, or a per-vertex label vector on
  fsaverage5 (the ENIGMA toolbox ``glasser_360_fsa5.csv``) with the parcel-name list
  (``funcLabels_ctx_glasser_360.csv``). Names are ``L_44``, ``R_STSdp``, ...
* Schaefer et al. 2018 (100-1000 parcels, 7 or 17 networks): label vector + names (ENIGMA
  ``schaefer_400_fsa5.csv`` + ``funcLabels_ctx_schaefer_400.csv``) or ``.annot`` pair.
* Language parcels (Fedorenko lab; Wolna et al. 2025 symmetrical parcels): ``lh_/rh_
  langParcels_symmetrical.mgh`` on fsaverage (163,842 vertices per hemisphere). fsaverage5 is the
  first 10,242 vertices of fsaverage (icosahedral nesting). The right-hemisphere file stores
  ``left label + 18`` (labels 19-29) although the label table numbers the right parcels 14-26:
  the offset is detected from the data, and names follow the left-hemisphere table.
* Destrieux (nilearn's ``fetch_atlas_surf_destrieux``): only once downloaded (``python -m
  brainviz fetch atlas destrieux``); nilearn 0.14 ships no surface atlas offline (its bundled
  fsaverage5 data are meshes and curvature/sulcal/thickness/area maps only).
* The planted regions of a simulated dataset (ground truth): :func:`simulated_atlas`.

Icosahedral nesting: the first ``10 * 4**k + 2`` vertices of any finer fsaverage mesh are the
vertices of the order-``k`` mesh, so fsaverage6 (40,962) and fsaverage (163,842) reduce to
fsaverage5 by taking the first 10,242 vertices of each hemisphere (:func:`to_fsaverage5`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from brainviz.data.dataset import N_VERTICES_FSAVERAGE5, DatasetError, Space
from brainviz.surface import N_PER_HEMI  # 10,242 (the geometry lives in brainviz.surface)

HEMI_PREFIX = {"left": "L_", "right": "R_"}
#: Vertex counts of icosahedral fsaverage meshes that contain fsaverage5 (orders 5-8).
ICOSAHEDRAL_SIZES = {10 * 4**k + 2: f"ico{k}" for k in range(5, 9)}
FSAVERAGE_NAMES = {10242: "fsaverage5", 40962: "fsaverage6", 163842: "fsaverage"}

# The multi-participant speech brain-tuning paper's late-language Glasser areas (both hemispheres).
LATE_LANGUAGE = (
    "A5", "44", "45", "IFJa", "IFSp", "PGi", "PGp", "PGs", "TPOJ1", "TPOJ2", "TPOJ3",
    "STGa", "STSda", "STSdp", "STSva", "TA2",
)
# Early auditory cortex (Glasser core + belt), a common low-level control set.
EARLY_AUDITORY = ("A1", "LBelt", "MBelt", "PBelt", "RI")

# Left-hemisphere label table of the symmetrical language parcels (cortical parcels 1-11).
LANGUAGE_PARCEL_NAMES = {
    1: "IFGorb", 2: "IFG", 3: "MFG_PrecG", 4: "AntTemp", 5: "TempPole", 6: "PostTemp",
    7: "BTLA", 8: "SupPrecuneus", 9: "MedFrontal", 10: "MedAntSFG", 11: "MedSFG",
}


@dataclasses.dataclass(frozen=True)
class RoiSet:
    """A named list of parcels (without hemisphere prefix) of one atlas family."""

    name: str
    atlas: str
    parcels: tuple[str, ...]
    description: str = ""
    citation: str = ""

    def names(self, hemispheres: Sequence[str] = ("left", "right")) -> list[str]:
        """Full parcel names, e.g. ``['L_44', ..., 'R_44', ...]``."""
        out = []
        for hemi in hemispheres:
            if hemi not in HEMI_PREFIX:
                raise ValueError(f"unknown hemisphere {hemi!r}; expected 'left' or 'right'")
            out += [HEMI_PREFIX[hemi] + p for p in self.parcels]
        return out


ROI_SETS: dict[str, RoiSet] = {
    "late-language": RoiSet(
        "late-language", "glasser", LATE_LANGUAGE,
        "late language areas (Glasser HCP-MMP1) used for multi-participant brain-tuning of speech models",
        "Brain-tuning improves generalizability and efficiency of brain alignment in speech models (multi-brain-tuning)",
    ),
    "early-auditory": RoiSet(
        "early-auditory", "glasser", EARLY_AUDITORY, "primary and belt auditory cortex (Glasser HCP-MMP1)",
    ),
    "language-parcels": RoiSet(
        "language-parcels", "language", tuple(LANGUAGE_PARCEL_NAMES.values()),
        "all cortical parcels of the symmetrical language network (Fedorenko lab)",
    ),
}


# --------------------------------------------------------------------------------------
# Atlas
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Atlas:
    """One label per fsaverage5 vertex and a name per label.

    Attributes
    ----------
    name : str
    labels : int array (20484,)
        0 = unlabelled (medial wall or outside every parcel).
    names : dict label -> parcel name
    source, citation : str
    """

    name: str
    labels: np.ndarray
    names: dict[int, str]
    source: str = ""
    citation: str = ""

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        if labels.shape != (N_VERTICES_FSAVERAGE5,):
            raise DatasetError(f"atlas labels must have shape ({N_VERTICES_FSAVERAGE5},), got {labels.shape}", field="labels")
        if not np.issubdtype(labels.dtype, np.integer):
            if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
                raise DatasetError("atlas labels must be integers", field="labels")
        self.labels = labels.astype(np.int32)
        self.labels.setflags(write=False)
        self.names = {int(k): str(v) for k, v in self.names.items() if int(k) != 0}
        missing = sorted(set(np.unique(self.labels)) - set(self.names) - {0})
        if missing:
            raise DatasetError(f"labels {missing[:10]} have no name", field="names")
        dup = [n for n, c in pd.Series(list(self.names.values())).value_counts().items() if c > 1]
        if dup:
            raise DatasetError(f"duplicate parcel names {dup[:5]}", field="names")

    # -- lookups --------------------------------------------------------------------
    @property
    def regions(self) -> list[str]:
        """Parcel names in label order (labels that occur on fsaverage5 only)."""
        present = set(np.unique(self.labels).tolist())
        return [self.names[k] for k in sorted(self.names) if k in present]

    def label_of(self, name: str) -> int:
        for k, v in self.names.items():
            if v == name:
                return k
        raise KeyError(name)

    def resolve(self, names: str | Iterable[str]) -> list[str]:
        """Expand names and shell-style patterns (``'L_STS*'``) into parcel names.

        Raises :class:`DatasetError` naming every entry that matches nothing.
        """
        if isinstance(names, str):
            names = [names]
        known = self.regions
        out: list[str] = []
        unknown = []
        for entry in names:
            hits = [n for n in known if fnmatch.fnmatchcase(n, entry)] if any(c in entry for c in "*?[") else (
                [entry] if entry in known else []
            )
            if not hits:
                unknown.append(entry)
            out += [h for h in hits if h not in out]
        if unknown:
            raise DatasetError(
                f"no parcel named {unknown} in atlas {self.name!r} (e.g. {known[:6]}, ... {len(known)} parcels)",
                field="names",
            )
        return out

    def mask(self, names: str | Iterable[str]) -> np.ndarray:
        """Boolean (20484,) mask of the vertices in the named parcels (patterns allowed)."""
        wanted = {self.label_of(n) for n in self.resolve(names)}
        return np.isin(self.labels, sorted(wanted))

    def hemisphere_of(self, name: str) -> str | None:
        """'left' / 'right' from the vertices of a parcel (None when it has none)."""
        idx = np.flatnonzero(self.labels == self.label_of(name))
        if idx.size == 0:
            return None
        left = np.count_nonzero(idx < N_PER_HEMI)
        return "left" if left >= idx.size - left else "right"

    def roi_summary(self, values: Any, **kwargs: Any) -> pd.DataFrame:
        """Per-parcel summary of a vertex map (see :func:`roi_table`)."""
        return roi_table(values, self, **kwargs)

    # -- persistence ------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``labels`` + names as one ``.npz`` (atomic)."""
        from brainviz._io import atomic_path

        path = Path(path)
        meta = {"name": self.name, "names": {str(k): v for k, v in self.names.items()},
                "source": self.source, "citation": self.citation}
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, labels=self.labels, meta=np.array(json.dumps(meta)))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Atlas":
        path = Path(path)
        if not path.is_file():
            raise DatasetError("atlas file not found", file=path)
        try:
            with np.load(path, allow_pickle=False) as z:
                labels = z["labels"]
                meta = json.loads(str(z["meta"]))
        except (KeyError, ValueError, OSError) as exc:
            raise DatasetError(f"not a brainviz atlas .npz ({exc})", file=path) from None
        return cls(meta["name"], labels, {int(k): v for k, v in meta["names"].items()},
                   meta.get("source", ""), meta.get("citation", ""))


# --------------------------------------------------------------------------------------
# ROI selection and summaries
# --------------------------------------------------------------------------------------


def roi_set_names(roi_set: str | RoiSet | Iterable[str], hemispheres: Sequence[str] = ("left", "right")) -> list[str]:
    """Parcel names of a named ROI set (``'late-language'``) or a list of names / patterns."""
    if isinstance(roi_set, RoiSet):
        return roi_set.names(hemispheres)
    if isinstance(roi_set, str):
        if roi_set in ROI_SETS:
            return ROI_SETS[roi_set].names(hemispheres)
        return [roi_set]
    return list(roi_set)


def roi_mask(atlas: Atlas, roi_set: str | RoiSet | Iterable[str], hemispheres: Sequence[str] = ("left", "right")) -> np.ndarray:
    """Boolean (20484,) vertex mask of an ROI set (for ``brainviz train --roi-mask``).

    ``roi_set`` is a key of :data:`ROI_SETS` (e.g. ``'late-language'`` on a Glasser atlas), a
    parcel name or pattern, or a list of them.
    """
    names = roi_set_names(roi_set, hemispheres)
    try:
        mask = atlas.mask(names)
    except DatasetError as exc:
        family = ROI_SETS[roi_set].atlas if isinstance(roi_set, str) and roi_set in ROI_SETS else None
        hint = f" (ROI set {roi_set!r} needs a {family} atlas)" if family else ""
        raise DatasetError(f"{exc}{hint}", field="roi_set") from None
    if not mask.any():
        raise DatasetError(f"ROI set {roi_set!r} selects no vertex of atlas {atlas.name!r}", field="roi_set")
    return mask


def save_roi_mask(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write a boolean (20484,) mask as ``.npy`` (atomic); the file ``train --roi-mask`` reads."""
    from brainviz._io import write_npy

    mask = np.asarray(mask)
    if mask.shape != (N_VERTICES_FSAVERAGE5,) or mask.dtype != bool:
        raise DatasetError(f"an ROI mask is a boolean array of shape ({N_VERTICES_FSAVERAGE5},), got {mask.dtype} {mask.shape}", field="mask")
    path = Path(path)
    write_npy(path, mask)
    return path


def load_roi_mask(path: str | os.PathLike) -> np.ndarray:
    """Read and check an ROI mask written by :func:`save_roi_mask` (or any bool/0-1 vector)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError("ROI mask file not found", file=path)
    try:
        mask = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DatasetError(f"unreadable .npy ({exc})", file=path) from None
    if mask.shape != (N_VERTICES_FSAVERAGE5,):
        raise DatasetError(f"must have shape ({N_VERTICES_FSAVERAGE5},) (fsaverage5), got {mask.shape}", file=path, field="shape")
    if mask.dtype != bool:
        if not np.all(np.isin(mask, (0, 1))):
            raise DatasetError("must be boolean (or 0/1)", file=path, field="dtype")
        mask = mask.astype(bool)
    if not mask.any():
        raise DatasetError("selects no vertex", file=path)
    return mask


def roi_table(
    values: Any,
    atlas: Atlas,
    rois: Iterable[str] | str | None = None,
    threshold: float | None = None,
) -> pd.DataFrame:
    """Summaries of vertex maps per parcel.

    Parameters
    ----------
    values : array (20484,) or (n_maps, 20484), or dict name -> (20484,) array, or a
        DataFrame with 20484 rows (one column per map)
    atlas : Atlas
    rois : parcel names / patterns / ROI-set key, optional (default: every parcel)
    threshold : float, optional
        Also report the fraction of finite vertices above it (``frac_above``).

    Returns
    -------
    DataFrame, one row per (map, parcel): ``map, roi, hemisphere, n_vertices, n_valid, mean,
    median, std, min, max`` (+ ``frac_above``). NaN vertices are ignored (``n_valid``).
    """
    maps = _as_maps(values)
    names = atlas.regions if rois is None else atlas.resolve(roi_set_names(rois))
    rows = []
    for map_name, vec in maps.items():
        for roi in names:
            lab = atlas.label_of(roi)
            sel = vec[atlas.labels == lab]
            finite = sel[np.isfinite(sel)]
            row = {
                "map": map_name, "roi": roi, "hemisphere": atlas.hemisphere_of(roi),
                "n_vertices": int(sel.size), "n_valid": int(finite.size),
                "mean": float(finite.mean()) if finite.size else np.nan,
                "median": float(np.median(finite)) if finite.size else np.nan,
                "std": float(finite.std()) if finite.size else np.nan,
                "min": float(finite.min()) if finite.size else np.nan,
                "max": float(finite.max()) if finite.size else np.nan,
            }
            if threshold is not None:
                row["frac_above"] = float((finite > threshold).mean()) if finite.size else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def _as_maps(values: Any) -> dict[str, np.ndarray]:
    if isinstance(values, pd.DataFrame):
        maps = {str(c): values[c].to_numpy(dtype=float) for c in values.columns}
    elif isinstance(values, Mapping):
        maps = {str(k): np.asarray(v, dtype=float) for k, v in values.items()}
    else:
        arr = np.asarray(values, dtype=float)
        if arr.ndim == 1:
            maps = {"value": arr}
        elif arr.ndim == 2:
            maps = {str(i): arr[i] for i in range(arr.shape[0])}
        else:
            raise DatasetError(f"values must be 1-D or 2-D, got shape {arr.shape}", field="values")
    for k, v in maps.items():
        if v.shape != (N_VERTICES_FSAVERAGE5,):
            raise DatasetError(f"map {k!r} has shape {v.shape}; expected ({N_VERTICES_FSAVERAGE5},) fsaverage5 vertices", field="values")
    return maps


# --------------------------------------------------------------------------------------
# Icosahedral nesting
# --------------------------------------------------------------------------------------


def to_fsaverage5(data: Any, axis: int = -1, *, file: Any = None, field: str | None = None) -> np.ndarray:
    """Keep the first 10,242 vertices of one hemisphere of any finer fsaverage mesh.

    ``data`` has the hemisphere's vertices along ``axis`` (10,242, 40,962, 163,842 or 655,362).
    """
    arr = np.asarray(data) if not isinstance(data, np.memmap) else data
    n = arr.shape[axis]
    if n not in ICOSAHEDRAL_SIZES:
        raise DatasetError(
            f"{n} vertices is not an fsaverage hemisphere (expected one of {sorted(ICOSAHEDRAL_SIZES)})",
            file=file, field=field,
        )
    return np.take(arr, np.arange(N_PER_HEMI), axis=axis)


# --------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------


def read_name_list(path: str | os.PathLike) -> list[str]:
    """Parcel names from a file: one comma-separated line (ENIGMA), one name per line, or a
    TSV/CSV with ``index``/``name`` columns (a ``name``/``label`` column is used)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError("parcel-name list not found", file=path)
    text = path.read_text(encoding="utf-8-sig").strip()
    if not text:
        raise DatasetError("empty parcel-name list", file=path)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) == 1 and "," in lines[0]:
        return [n.strip() for n in lines[0].split(",")]
    sep = "\t" if "\t" in lines[0] else ("," if "," in lines[0] else None)
    if sep is not None:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
        for col in ("name", "label", "Name", "Label", "roi", "ROI"):
            if col in df.columns:
                return [s.strip() for s in df[col]]
        raise DatasetError(f"no 'name' column (columns: {list(df.columns)})", file=path, field="name")
    return [ln.strip() for ln in lines]


def _read_label_vector(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DatasetError("label vector not found", file=path)
    try:
        if path.suffix == ".npy":
            vec = np.load(path, allow_pickle=False)
        else:
            vec = np.loadtxt(path, delimiter="," if path.suffix == ".csv" and "," in path.open().readline() else None)
    except (ValueError, OSError) as exc:
        raise DatasetError(f"unreadable label vector ({exc})", file=path) from None
    vec = np.asarray(vec).ravel()
    if vec.shape != (N_VERTICES_FSAVERAGE5,):
        raise DatasetError(
            f"has {vec.size} values; a fsaverage5 label vector has {N_VERTICES_FSAVERAGE5} (left 10,242 then right)",
            file=path, field="labels",
        )
    if not np.all(np.isfinite(vec)) or np.any(vec != np.round(vec)) or vec.min() < 0:
        raise DatasetError("labels must be non-negative integers", file=path, field="labels")
    return vec.astype(np.int32)


def load_label_vector(
    labels: str | os.PathLike,
    names: str | os.PathLike | Sequence[str],
    name: str = "atlas",
    *,
    fix_hemispheres: bool = True,
    source: str = "",
    citation: str = "",
) -> Atlas:
    """Atlas from a per-vertex fsaverage5 label vector (CSV/TXT/NPY, 20,484 integers; label
    ``k`` is named ``names[k-1]``).

    With ``fix_hemispheres`` (default), vertices whose parcel name says the other hemisphere
    (``L_``/``LH`` on the right or vice versa) are set to 0: the ENIGMA Glasser vector has 17
    right-hemisphere vertices labelled ``L_p24``, a projection artefact.
    """
    path = Path(labels)
    vec = _read_label_vector(path)
    name_list = read_name_list(names) if isinstance(names, (str, os.PathLike)) else list(names)
    if vec.max() > len(name_list):
        raise DatasetError(
            f"labels go up to {vec.max()} but only {len(name_list)} parcel names were given",
            file=path, field="names",
        )
    table = {i + 1: n for i, n in enumerate(name_list)}
    if fix_hemispheres:
        vec = _clear_wrong_hemisphere(vec, table)
    return Atlas(name, vec, table, source=source or str(path), citation=citation)


def _name_hemisphere(name: str) -> str | None:
    if re.match(r"^(L_|lh[._]|LH_)", name) or "_LH_" in name:
        return "left"
    if re.match(r"^(R_|rh[._]|RH_)", name) or "_RH_" in name:
        return "right"
    return None


def _clear_wrong_hemisphere(vec: np.ndarray, table: Mapping[int, str]) -> np.ndarray:
    vec = vec.copy()
    hemi_of = {k: _name_hemisphere(v) for k, v in table.items()}
    for sl, hemi in ((slice(0, N_PER_HEMI), "left"), (slice(N_PER_HEMI, None), "right")):
        part = vec[sl]
        wrong = np.array([hemi_of.get(int(k)) not in (None, hemi) for k in part]) if part.size else np.zeros(0, bool)
        part[wrong] = 0
        vec[sl] = part
    return vec


def load_annot(
    lh: str | os.PathLike,
    rh: str | os.PathLike,
    name: str = "atlas",
    *,
    strip_suffix: str = "_ROI",
    hemi_prefix: bool = False,
    source: str = "",
    citation: str = "",
) -> Atlas:
    """Atlas from a FreeSurfer ``.annot`` pair on any icosahedral fsaverage mesh.

    Unknown / medial-wall entries (``???``, ``Unknown``, ``Medial_Wall``, label -1) become 0.
    ``strip_suffix`` removes e.g. ``_ROI`` (HCP-MMP1: ``L_V1_ROI`` -> ``L_V1``); with
    ``hemi_prefix`` names without a hemisphere get ``L_``/``R_``.
    """
    import nibabel.freesurfer as fs

    out = np.zeros(N_VERTICES_FSAVERAGE5, dtype=np.int32)
    table: dict[int, str] = {}
    by_name: dict[str, int] = {}
    for hemi, path in (("left", Path(lh)), ("right", Path(rh))):
        if not path.is_file():
            raise DatasetError(f"{hemi}-hemisphere annotation not found", file=path)
        try:
            labels, _ctab, names = fs.read_annot(str(path))
        except Exception as exc:  # nibabel raises ValueError/struct.error on corrupt files
            raise DatasetError(f"unreadable FreeSurfer annotation ({exc})", file=path) from None
        labels = to_fsaverage5(labels, file=path, field="vertices")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        hemi_vals = np.zeros(N_PER_HEMI, dtype=np.int32)
        for idx in np.unique(labels):
            if idx < 0 or idx >= len(names):
                continue
            raw = names[idx]
            if raw.strip("?") == "" or raw.lower() in ("unknown", "medial_wall", "medialwall", "corpuscallosum"):
                continue
            nm = raw[: -len(strip_suffix)] if strip_suffix and raw.endswith(strip_suffix) else raw
            if hemi_prefix and _name_hemisphere(nm) is None:
                nm = HEMI_PREFIX[hemi] + nm
            if nm not in by_name:
                by_name[nm] = len(by_name) + 1
                table[by_name[nm]] = nm
            hemi_vals[labels == idx] = by_name[nm]
        out[slice(0, N_PER_HEMI) if hemi == "left" else slice(N_PER_HEMI, None)] = hemi_vals
    return Atlas(name, out, table, source=source or f"{lh} + {rh}", citation=citation)


GLASSER_CITATION = "Glasser MF et al. (2016) A multi-modal parcellation of human cerebral cortex. Nature 536:171-178."
SCHAEFER_CITATION = (
    "Schaefer A et al. (2018) Local-global parcellation of the human cerebral cortex from intrinsic "
    "functional connectivity MRI. Cerebral Cortex 28:3095-3114."
)
LANGUAGE_CITATION = (
    "Fedorenko E, Hsieh P-J, Nieto-Castanon A, Whitfield-Gabrieli S, Kanwisher N (2010) J Neurophysiol 104:1177-1194; "
    "symmetrical extended language parcels: Wolna A, Wright A, et al. (2025) bioRxiv 10.1101/2025.04.02.646835."
)
DESTRIEUX_CITATION = "Destrieux C, Fischl B, Dale A, Halgren E (2010) NeuroImage 53:1-15."


def _find(root: Path, patterns: Sequence[str]) -> Path | None:
    for pat in patterns:
        hits = sorted(root.glob(pat))
        if hits:
            return hits[0]
    return None


def load_glasser(path: str | os.PathLike, names: str | os.PathLike | Sequence[str] | None = None) -> Atlas:
    """Glasser HCP-MMP1 atlas from a folder or file.

    ``path`` may be an ENIGMA-style folder (``**/glasser_360_fsa5.csv`` and
    ``**/funcLabels_ctx_glasser_360.csv``), a folder with ``lh.HCP-MMP1.annot`` /
    ``rh.HCP-MMP1.annot``, a label-vector file (then ``names`` is required unless the name list
    sits beside it), or an ``lh.*.annot`` file (its ``rh.`` twin is used).
    """
    return _load_family(path, names, "glasser", GLASSER_CITATION,
                        vector=["glasser_360_fsa5.csv", "**/glasser_360_fsa5.csv", "*glasser*fsa5*.csv", "*glasser*.npy"],
                        name_files=["funcLabels_ctx_glasser_360.csv", "**/funcLabels_ctx_glasser_360.csv", "*glasser*names*", "*glasser*labels*.txt"],
                        annot=["lh.HCP-MMP1.annot", "**/lh.HCP-MMP1.annot", "lh.*MMP*.annot", "**/lh.*MMP*.annot"])


def load_schaefer(path: str | os.PathLike, n_parcels: int = 400, names: str | os.PathLike | Sequence[str] | None = None) -> Atlas:
    """Schaefer 2018 parcellation (``n_parcels``) from a folder (ENIGMA layout or ``.annot``
    pair ``lh.Schaefer2018_{n}Parcels_*.annot``) or a label-vector file + names."""
    n = int(n_parcels)
    return _load_family(path, names, f"schaefer-{n}", SCHAEFER_CITATION,
                        vector=[f"schaefer_{n}_fsa5.csv", f"**/schaefer_{n}_fsa5.csv", f"*schaefer*{n}*.csv"],
                        name_files=[f"funcLabels_ctx_schaefer_{n}.csv", f"**/funcLabels_ctx_schaefer_{n}.csv", f"*schaefer*{n}*names*"],
                        annot=[f"lh.Schaefer2018_{n}Parcels_*.annot", f"**/lh.Schaefer2018_{n}Parcels_*.annot"])


def _load_family(path, names, name, citation, *, vector, name_files, annot) -> Atlas:
    root = Path(path)
    if not root.exists():
        raise DatasetError(f"{name} atlas not found (download with: python -m brainviz fetch atlas {name.split('-')[0]} --dest DIR)", file=root)
    if root.is_file():
        if root.name.endswith(".annot"):
            rh = root.with_name(re.sub(r"^lh\.", "rh.", root.name))
            return load_annot(root, rh, name, citation=citation)
        if names is None:
            found = _find(root.parent, name_files)
            if found is None:
                raise DatasetError(f"parcel names needed for the label vector (none of {name_files} beside it)", file=root, field="names")
            names = found
        return load_label_vector(root, names, name, citation=citation)
    annot_file = _find(root, annot)
    vec_file = _find(root, vector)
    if vec_file is not None:
        nm = names if names is not None else _find(root, name_files)
        if nm is None:
            raise DatasetError(f"parcel-name list missing (looked for {name_files})", file=root, field="names")
        return load_label_vector(vec_file, nm, name, citation=citation)
    if annot_file is not None:
        rh = annot_file.with_name(re.sub(r"^lh\.", "rh.", annot_file.name))
        return load_annot(annot_file, rh, name, citation=citation)
    raise DatasetError(f"no {name} files found (looked for {vector + annot})", file=root)


def load_language_parcels(
    path: str | os.PathLike,
    rh: str | os.PathLike | None = None,
    *,
    names: Mapping[int, str] | None = None,
) -> Atlas:
    """Symmetrical language parcels from the fsaverage ``.mgh`` pair.

    ``path`` is a folder containing ``lh_langParcels_symmetrical.mgh`` and
    ``rh_langParcels_symmetrical.mgh`` (searched recursively), or the left file (then ``rh`` or
    the ``rh_`` twin). The right-hemisphere values are ``left label + offset``; the offset (18 in
    the release, although its label table says 13) is detected from the data.
    Parcel names are ``L_IFG``, ``R_PostTemp``, ... (:data:`LANGUAGE_PARCEL_NAMES`).
    """
    root = Path(path)
    if root.is_dir():
        lh_file = _find(root, ["lh_langParcels_symmetrical.mgh", "**/lh_langParcels_symmetrical.mgh", "**/lh*lang*.mgh"])
        if lh_file is None:
            raise DatasetError("no lh_langParcels_symmetrical.mgh found", file=root)
    else:
        lh_file = root
    rh_file = Path(rh) if rh is not None else lh_file.with_name(re.sub(r"^lh", "rh", lh_file.name))
    table = dict(names or LANGUAGE_PARCEL_NAMES)
    vals = {}
    for hemi, f in (("left", lh_file), ("right", rh_file)):
        vals[hemi] = _read_mgh_labels(f)
    left_labels = set(np.unique(vals["left"]).tolist()) - {0}
    right_labels = set(np.unique(vals["right"]).tolist()) - {0}
    unknown_left = sorted(left_labels - set(table))
    if unknown_left:
        raise DatasetError(f"left labels {unknown_left} not in the label table {sorted(table)}", file=lh_file, field="labels")
    offset = None
    for cand in (18, 13, 0):  # release data, release label table, same numbering
        if right_labels and {v - cand for v in right_labels} <= set(table):
            offset = cand
            break
    if offset is None:
        raise DatasetError(
            f"right-hemisphere labels {sorted(right_labels)} do not map onto the left table by an offset of 18, 13 or 0",
            file=rh_file, field="labels",
        )
    labels = np.zeros(N_VERTICES_FSAVERAGE5, dtype=np.int32)
    out_names: dict[int, str] = {}
    n_left = max(table)
    for k, nm in table.items():
        out_names[k] = f"L_{nm}"
        out_names[n_left + k] = f"R_{nm}"
    labels[:N_PER_HEMI] = vals["left"]
    right = vals["right"].copy()
    right[right > 0] = right[right > 0] - offset + n_left
    labels[N_PER_HEMI:] = right
    return Atlas("language", labels, out_names, source=f"{lh_file} + {rh_file} (rh offset {offset})", citation=LANGUAGE_CITATION)


def _read_mgh_labels(path: Path) -> np.ndarray:
    import nibabel as nib

    if not path.is_file():
        raise DatasetError("parcel file not found", file=path)
    try:
        data = np.asarray(nib.load(str(path)).dataobj).reshape(-1)
    except Exception as exc:
        raise DatasetError(f"unreadable surface file ({exc})", file=path) from None
    data = to_fsaverage5(data, file=path, field="vertices")
    if not np.all(np.isfinite(data)) or np.any(data != np.round(data)) or data.min() < 0:
        raise DatasetError("labels must be non-negative integers", file=path, field="labels")
    return data.astype(np.int32)


def load_destrieux(data_dir: str | os.PathLike | None = None) -> Atlas:
    """Destrieux 2009 surface atlas via nilearn (requires a prior download: ``python -m brainviz
    fetch atlas destrieux``; works offline afterwards from nilearn's cache or ``data_dir``)."""
    from nilearn.datasets import fetch_atlas_surf_destrieux

    try:
        d = fetch_atlas_surf_destrieux(data_dir=str(data_dir) if data_dir else None, verbose=0)
    except Exception as exc:  # network errors surface as many types in nilearn
        raise DatasetError(f"Destrieux atlas not available offline ({exc}); run: python -m brainviz fetch atlas destrieux --dest DIR",
                           file=data_dir) from None
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in d["labels"]]
    labels = np.zeros(N_VERTICES_FSAVERAGE5, dtype=np.int32)
    table = {}
    for hemi, key in (("left", "map_left"), ("right", "map_right")):
        m = to_fsaverage5(np.asarray(d[key]))
        vals = np.zeros(N_PER_HEMI, dtype=np.int32)
        for idx in np.unique(m):
            if idx <= 0 or idx >= len(names) or names[idx] in ("Medial_wall", "Unknown"):
                continue
            k = len(table) + 1
            table[k] = HEMI_PREFIX[hemi] + names[idx]
            vals[m == idx] = k
        labels[slice(0, N_PER_HEMI) if hemi == "left" else slice(N_PER_HEMI, None)] = vals
    return Atlas("destrieux", labels, table, source="nilearn fetch_atlas_surf_destrieux", citation=DESTRIEUX_CITATION)


def simulated_atlas(dataset: Any, include_networks: bool = False) -> Atlas:
    """Atlas of the regions planted in a simulated dataset (its ground truth) - needs no file
    outside the dataset, so the app always has an atlas.

    ``dataset`` is a :class:`~brainviz.data.dataset.Dataset` or a dataset folder. Reads
    ``ground_truth/region_labels.npy`` (int, 20,484, 0 = none) and the region names of
    ``ground_truth/ground_truth.json`` (``regions: [{label, name, ...}]``). With
    ``include_networks`` the planted listening networks (``network_maps.npy``, non-zero
    vertices outside the language regions) are added under their JSON names.
    Raises :class:`DatasetError` when the dataset has no ground truth (real data).
    """
    from brainviz.data.dataset import Dataset, load_dataset

    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, check_values=False)
    gt = ds.ground_truth_dir()
    if gt is None:
        raise DatasetError("the dataset has no ground_truth/ folder (only simulated datasets saved to disk have planted regions)",
                           file=ds.path, field="ground_truth")
    f = gt / "region_labels.npy"
    if not f.is_file():
        raise DatasetError("planted region labels missing", file=f)
    vec = np.load(f, allow_pickle=False)
    if vec.shape != (N_VERTICES_FSAVERAGE5,):
        raise DatasetError(f"must have shape ({N_VERTICES_FSAVERAGE5},), got {vec.shape}", file=f)
    vec = vec.astype(np.int32)
    meta: dict[str, Any] = {}
    mf = gt / "ground_truth.json"
    if mf.is_file():
        try:
            meta = json.loads(mf.read_text())
        except (OSError, json.JSONDecodeError):
            meta = {}
    names = {int(r["label"]): str(r["name"]) for r in meta.get("regions", []) if isinstance(r, dict) and "label" in r and "name" in r}
    for k in set(np.unique(vec).tolist()) - {0} - set(names):
        names[k] = f"region_{k}"
    nf = gt / "network_maps.npy"
    if include_networks and nf.is_file():
        maps = np.load(nf, allow_pickle=False)
        nets = meta.get("networks", [])
        base = max(names, default=0)
        for i in range(maps.shape[0]):
            k = base + i + 1
            nm = str(nets[i].get("name")) if i < len(nets) and isinstance(nets[i], dict) and nets[i].get("name") else f"network_{i + 1}"
            names[k] = nm if nm not in names.values() else f"network_{i + 1}"
            vec[(maps[i] != 0) & (vec == 0)] = k
    return Atlas("simulated", vec, names, source=str(f), citation="brainviz simulation (planted regions, ground truth)")


#: Atlas names understood by :func:`load_atlas` (and ``fetch atlas``).
ATLAS_NAMES = ("glasser", "schaefer-100", "schaefer-200", "schaefer-300", "schaefer-400", "language", "destrieux", "simulated")


def load_atlas(name_or_path: str | os.PathLike, root: str | os.PathLike | None = None) -> Atlas:
    """Load an atlas by name from ``root`` (the ``--dest`` of ``fetch atlas``), or from a path.

    Names: ``glasser``, ``schaefer-N``, ``language``, ``destrieux``; a ``.npz`` path is read with
    :meth:`Atlas.load`; other paths are tried as Glasser/Schaefer/language sources.
    """
    key = str(name_or_path)
    if key == "simulated":
        if root is None:
            raise DatasetError("the simulated atlas needs root= (a simulated dataset folder)", field="atlas")
        return simulated_atlas(root)
    if key in ATLAS_NAMES or key.startswith("schaefer-"):
        base = Path(root) if root is not None else None
        if key == "destrieux":
            return load_destrieux(base / "destrieux" if base else None)
        if base is None:
            raise DatasetError(
                f"atlas {key!r} comes from user-supplied files: pass root= (the folder given to "
                f"'python -m brainviz fetch atlas {key} --dest DIR')", field="atlas",
            )
        folder = base / key if (base / key).is_dir() else base
        if key == "glasser":
            return load_glasser(folder)
        if key == "language":
            return load_language_parcels(folder)
        return load_schaefer(folder, int(key.split("-")[1]))
    path = Path(key)
    if path.suffix == ".npz":
        return Atlas.load(path)
    if path.is_dir() or path.is_file():
        low = path.name.lower()
        if "lang" in low:
            return load_language_parcels(path)
        if "schaefer" in low:
            m = re.search(r"(\d{3,4})", low)
            return load_schaefer(path, int(m.group(1)) if m else 400)
        return load_glasser(path)
    raise DatasetError(f"unknown atlas {key!r}; expected one of {ATLAS_NAMES} or a file/folder", file=path)


# --------------------------------------------------------------------------------------
# Volume -> fsaverage5
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _fsaverage5_meshes(hemi: str):
    from brainviz.surface import nilearn_mesh

    return nilearn_mesh("pial", hemi), nilearn_mesh("white_matter", hemi)


class SurfaceProjector:
    """Linear map from a voxel grid (MNI mm via ``affine``) to the 20,484 fsaverage5 vertices.

    Equivalent to ``nilearn.surface.vol_to_surf(img, pial, inner_mesh=white,
    interpolation='linear', mask_img=mask)`` per hemisphere (samples between the white and pial
    surfaces, trilinear interpolation, samples outside the image or mask ignored) but built
    once as a sparse matrix so that thousands of TRs are projected cheaply. Vertices with no
    valid sample get NaN (``valid`` is False there).

    ``columns`` restricts the input to some voxels (flat C-order indices into ``shape``), e.g. the
    voxels of a :class:`~brainviz.data.dataset.Space`.
    """

    def __init__(self, affine: np.ndarray, shape: Sequence[int], mask: np.ndarray | None = None,
                 columns: np.ndarray | None = None, radius: float = 3.0):
        import scipy.sparse as sp

        self.affine = np.asarray(affine, dtype=float)
        self.shape = tuple(int(s) for s in shape)
        self.mask = None if mask is None else np.asarray(mask).astype(bool)
        self.columns = None if columns is None else np.asarray(columns)
        try:
            parts = [self._hemi_matrix(h, radius) for h in ("left", "right")]
        except (ImportError, AttributeError, TypeError):  # nilearn private API changed: use vol_to_surf
            parts = None
        if parts is not None:
            full = sp.vstack([m for m, _ in parts]).tocsr()
            if self.columns is not None:
                full = full[:, self.columns]
            self.matrix = full
            self.valid = np.concatenate([v for _, v in parts])
        else:
            self.matrix = None
            self.valid = None

    def _hemi_matrix(self, hemi: str, radius: float):
        import scipy.sparse as sp
        from nilearn.surface.surface import _sample_locations

        pial, white = _fsaverage5_meshes(hemi)
        locs = _sample_locations(pial, self.affine, radius=radius, kind="auto", n_points=None, inner_mesh=white, depth=None)
        n_vert, n_pts, _ = locs.shape
        flat = locs.reshape(-1, 3)
        shape = np.asarray(self.shape)
        kept = np.all(flat >= 0, axis=1) & np.all(flat < shape, axis=1)
        if self.mask is not None:
            idx = np.floor(flat[kept]).astype(int)
            kept_idx = np.flatnonzero(kept)
            kept[kept_idx] = self.mask[idx[:, 0], idx[:, 1], idx[:, 2]]
        n_kept = kept.reshape(n_vert, n_pts).sum(axis=1)
        rows_all = np.repeat(np.arange(n_vert), n_pts)
        pts = flat[kept]
        rows = rows_all[kept]
        upper = np.maximum(shape - 2, 0)
        i0 = np.clip(np.floor(pts), 0, upper).astype(int)
        frac = pts - i0
        frac[:, shape == 1] = 0.0
        data, cols, rr = [], [], []
        strides = np.array([self.shape[1] * self.shape[2], self.shape[2], 1])
        for corner in np.ndindex(2, 2, 2):
            c = np.asarray(corner)
            w = np.prod(np.where(c == 1, frac, 1.0 - frac), axis=1)
            idx = np.minimum(i0 + c, shape - 1)
            data.append(w / np.maximum(n_kept[rows], 1))
            cols.append(idx @ strides)
            rr.append(rows)
        mat = sp.csr_matrix((np.concatenate(data), (np.concatenate(rr), np.concatenate(cols))),
                            shape=(n_vert, int(np.prod(self.shape))))
        return mat, n_kept > 0

    def project(self, data: np.ndarray) -> np.ndarray:
        """``data`` (n_maps, n_columns) -> (n_maps, 20484) float32, NaN where no sample is valid."""
        data = np.asarray(data, dtype=np.float64)
        single = data.ndim == 1
        if single:
            data = data[None]
        if self.matrix is not None:
            out = np.asarray((self.matrix @ data.T).T, dtype=np.float32)
            out[:, ~self.valid] = np.nan
        else:
            out = self._project_slow(data)
        return out[0] if single else out

    def _project_slow(self, data: np.ndarray) -> np.ndarray:
        import nibabel as nib
        from nilearn.surface import vol_to_surf

        n = data.shape[0]
        vol = np.zeros((int(np.prod(self.shape)), n), dtype=np.float32)
        if self.columns is not None:
            vol[self.columns] = data.T
        else:
            vol[:] = data.T
        img = nib.Nifti1Image(vol.reshape(*self.shape, n), self.affine)
        mask_img = None if self.mask is None else nib.Nifti1Image(self.mask.astype(np.int8), self.affine)
        parts = []
        for hemi in ("left", "right"):
            pial, white = _fsaverage5_meshes(hemi)
            parts.append(vol_to_surf(img, pial, inner_mesh=white, mask_img=mask_img).T)
        return np.concatenate(parts, axis=1).astype(np.float32)


def space_projector(space: Space) -> SurfaceProjector:
    """Projector for the voxels of a volume :class:`Space` (template must be MNI)."""
    if space.kind != "volume" or space.affine is None or space.coords is None or space.shape is None:
        raise DatasetError("only volume spaces (affine + grid + voxel coordinates) can be projected", field="space")
    if (space.template or "").upper() != "MNI":
        raise DatasetError(
            f"space template is {space.template!r}: only MNI volumes can be projected onto fsaverage5 "
            "(native-space data need a subject-specific registration first)", field="space.template",
        )
    coords = np.asarray(space.coords)
    import hashlib

    key = (np.asarray(space.affine, dtype=float).tobytes(), tuple(space.shape),
           hashlib.blake2b(np.ascontiguousarray(coords, dtype=np.int64).tobytes(), digest_size=16).hexdigest())
    if key in _SPACE_PROJECTORS:
        return _SPACE_PROJECTORS[key]
    mask = np.zeros(space.shape, dtype=bool)
    mask[coords[:, 0], coords[:, 1], coords[:, 2]] = True
    columns = np.ravel_multi_index(coords.T, space.shape)
    proj = SurfaceProjector(space.affine, space.shape, mask=mask, columns=columns)
    if len(_SPACE_PROJECTORS) >= 4:
        _SPACE_PROJECTORS.pop(next(iter(_SPACE_PROJECTORS)))
    _SPACE_PROJECTORS[key] = proj
    return proj


_SPACE_PROJECTORS: dict[tuple, SurfaceProjector] = {}


def volume_to_fsaverage5(values: Any, space: Space) -> np.ndarray:
    """Project maps over the voxels of an MNI volume space onto fsaverage5.

    Parameters
    ----------
    values : array (n_units,) or (n_maps, n_units)
        One value per voxel of ``space`` (in ``space.coords`` order).
    space : Space
        ``kind='volume'``, ``template='MNI'``.

    Returns
    -------
    float32 array (20484,) or (n_maps, 20484); NaN on vertices with no voxel of the space
    within their cortical ribbon samples. Uses nilearn's ``vol_to_surf`` sampling (white-to-pial
    depth samples, trilinear interpolation) on nilearn's bundled fsaverage5 meshes.
    """
    arr = np.asarray(values, dtype=np.float64)
    n_units = space.n_units
    if arr.shape[-1] != n_units:
        raise DatasetError(f"values have {arr.shape[-1]} units but the space has {n_units}", field="values")
    proj = space_projector(space)
    return proj.project(arr)
