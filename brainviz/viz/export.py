"""Exports of maps and figures: CSV, GIfTI (nibabel), HTML, and PNG/SVG when kaleido works.

Simulated data stays marked in every export: CSV tables get a ``simulated`` column and a
``# SIMULATED DATA`` first line, GIfTI files carry ``simulated=true`` metadata, figures keep
their badge, and file names start with ``SIMULATED_``.

Static images (PNG/SVG) are rendered server-side by kaleido, which drives a Chrome/Chromium
browser; when kaleido or a browser is missing, :func:`figure_image` returns None and the app
offers the interactive HTML instead (its camera button saves a PNG/SVG client-side, offline).
"""

from __future__ import annotations

import functools
import io
import zipfile
from typing import Any

import numpy as np

from brainviz.viz._common import SIMULATED_TEXT

N_PER_HEMI = 10242
HEMI_TAGS = {"left": "lh", "right": "rh"}


def filename(stem: str, ext: str, simulated: bool = False) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip("_") or "export"
    return f"{'SIMULATED_' if simulated else ''}{safe}.{ext.lstrip('.')}"


def table_csv(frame, simulated: bool = False) -> bytes:
    """CSV bytes of a DataFrame; simulated tables get a comment line and a ``simulated`` column."""
    df = frame.copy()
    if simulated:
        df["simulated"] = True
    text = df.to_csv(index=False, float_format="%.6g", lineterminator="\n")
    if simulated:
        text = f"# {SIMULATED_TEXT}: values come from the brainviz simulation, not from recordings\n" + text
    return text.encode()


def map_csv(values: dict[str, Any] | Any, simulated: bool = False) -> bytes:
    """CSV with one row per vertex (``vertex, hemisphere``, then one column per map)."""
    import pandas as pd

    maps = values if isinstance(values, dict) else {"value": values}
    n = 2 * N_PER_HEMI
    df = pd.DataFrame({"vertex": np.arange(n), "hemisphere": np.where(np.arange(n) < N_PER_HEMI, "left", "right")})
    for name, v in maps.items():
        v = np.asarray(v, dtype=np.float64)
        if v.shape != (n,):
            raise ValueError(f"map {name!r} must have shape ({n},), got {v.shape}")
        df[str(name)] = v
    return table_csv(df, simulated)


def map_gifti(values, hemi: str, *, name: str = "map", simulated: bool = False,
              meta: dict[str, Any] | None = None) -> bytes:
    """A ``.func.gii`` (one hemisphere, float32) as bytes, with brainviz metadata."""
    import nibabel as nib

    v = np.asarray(values, dtype=np.float32)
    if v.shape == (2 * N_PER_HEMI,):
        v = v[:N_PER_HEMI] if hemi == "left" else v[N_PER_HEMI:]
    if v.shape != (N_PER_HEMI,):
        raise ValueError(f"values must have {N_PER_HEMI} (one hemisphere) or {2 * N_PER_HEMI} entries")
    md = {"AnatomicalStructurePrimary": "CortexLeft" if hemi == "left" else "CortexRight",
          "Name": name, "space": "fsaverage5", "simulated": "true" if simulated else "false",
          "generator": "brainviz"}
    md.update({str(k): str(v_) for k, v_ in (meta or {}).items()})
    if simulated:
        md["Description"] = SIMULATED_TEXT
    darray = nib.gifti.GiftiDataArray(v, intent="NIFTI_INTENT_NONE", datatype="NIFTI_TYPE_FLOAT32",
                                      meta=nib.gifti.GiftiMetaData(md))
    img = nib.gifti.GiftiImage(darrays=[darray], meta=nib.gifti.GiftiMetaData(md))
    return img.to_bytes()


def maps_gifti_zip(values, *, name: str = "map", simulated: bool = False, meta: dict[str, Any] | None = None) -> bytes:
    """Zip with ``lh.<name>.func.gii`` and ``rh.<name>.func.gii`` of a 20,484-vertex map."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for hemi, tag in HEMI_TAGS.items():
            fname = filename(f"{tag}.{name}", "func.gii", simulated)
            zf.writestr(fname, map_gifti(values, hemi, name=name, simulated=simulated, meta=meta))
        if simulated:
            zf.writestr("SIMULATED_README.txt", f"{SIMULATED_TEXT}: these maps come from the brainviz simulation.\n")
    return buf.getvalue()


def figure_html(fig, *, offline: bool = True) -> bytes:
    """Stand-alone interactive HTML of a figure (plotly.js inlined when ``offline``)."""
    config = {"toImageButtonOptions": {"format": "svg"}, "displaylogo": False}
    return fig.to_html(include_plotlyjs=True if offline else "cdn", full_html=True, config=config).encode()


@functools.lru_cache(maxsize=1)
def image_export_available() -> tuple[bool, str]:
    """Whether :func:`figure_image` can work here, and why not."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False, "kaleido is not installed (pip install kaleido; it also needs Chrome/Chromium)"
    import shutil

    if not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome", "chrome")):
        return False, "kaleido needs a Chrome/Chromium browser (e.g. apt-get install chromium)"
    return True, ""


def figure_image(fig, fmt: str = "png", *, scale: float = 2.0, width: int | None = None,
                 height: int | None = None) -> bytes | None:
    """PNG/SVG bytes of a figure via kaleido, or None when that cannot work offline here."""
    if fmt not in ("png", "svg"):
        raise ValueError(f"fmt must be 'png' or 'svg', got {fmt!r}")
    ok, _ = image_export_available()
    if not ok:
        return None
    try:
        return fig.to_image(format=fmt, scale=scale, width=width, height=height)
    except Exception:  # kaleido could not start its browser: fall back to HTML
        return None
