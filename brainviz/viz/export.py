"""Exports of maps and figures: CSV, GIfTI (nibabel), zip bundles with a README, interactive
HTML, static PNG/SVG/PDF of plotly figures (kaleido + the system Chromium) and of the
static montages (:mod:`brainviz.viz.montage`: Pillow / matplotlib, no browser).

Simulated data stays marked in every export: CSV tables get a ``simulated`` column (no comment
line, so a plain ``pandas.read_csv`` reads them), GIfTI files carry ``simulated=true``
metadata, every zip has a ``README.txt`` that says so, figures keep their badge, and file
names start with ``SIMULATED_``.

Static images of plotly figures are rendered by kaleido (>= 1), which drives a Chrome/Chromium
it finds on the system (Debian's ``/usr/bin/chromium``; ``BROWSER_PATH`` points it elsewhere).
One headless browser is started on the first export and kept for the next ones (seconds for
the first image, well under a second after). When kaleido or a browser is missing,
:func:`figure_image` returns None and the app offers the interactive HTML instead.
"""

from __future__ import annotations

import datetime as _dt
import functools
import io
import os
import shutil
import threading
import warnings
import zipfile
from typing import Any, Mapping

import numpy as np

from brainviz.surface import N_PER_HEMI, N_VERTICES
from brainviz.viz._common import SIMULATED_TEXT

HEMI_TAGS = {"left": "lh", "right": "rh"}
IMAGE_FORMATS = ("png", "svg", "pdf")
MIME = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf", "csv": "text/csv",
        "zip": "application/zip", "html": "text/html"}
_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def filename(stem: str, ext: str, simulated: bool = False) -> str:
    """A safe file name, ``SIMULATED_`` first for simulated data."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip("_") or "export"
    return f"{'SIMULATED_' if simulated else ''}{safe}.{ext.lstrip('.')}"


def table_csv(frame, simulated: bool = False) -> bytes:
    """CSV bytes of a DataFrame that a plain ``pandas.read_csv`` reads back.

    Simulated tables get a ``simulated`` column (True on every row); there is no comment line.
    """
    df = frame.copy()
    if simulated:
        df["simulated"] = True
    return df.to_csv(index=False, float_format="%.6g", lineterminator="\n").encode()


def map_csv(values: dict[str, Any] | Any, simulated: bool = False) -> bytes:
    """CSV with one row per vertex (``vertex, hemisphere``, then one column per map)."""
    import pandas as pd

    maps = values if isinstance(values, dict) else {"value": values}
    n = N_VERTICES
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
    if v.shape == (N_VERTICES,):
        v = v[:N_PER_HEMI] if hemi == "left" else v[N_PER_HEMI:]
    if v.shape != (N_PER_HEMI,):
        raise ValueError(f"values must have {N_PER_HEMI} (one hemisphere) or {N_VERTICES} entries")
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


def readme_text(files: Mapping[str, str], *, title: str = "brainviz export", meta: Mapping[str, Any] | None = None,
                simulated: bool = False) -> str:
    """The ``README.txt`` of a zip export: what each file is, the analysis settings, simulated or not.

    ``files`` maps file names to one-line descriptions; ``meta`` holds e.g. ``test``,
    ``level``, ``alpha``, ``fdr``, ``participants``, ``models``.
    """
    lines = [title, "=" * len(title), ""]
    if simulated:
        lines += [f"{SIMULATED_TEXT}: every value in this archive comes from the brainviz simulation",
                  "(a simulated experiment with known ground truth), not from recordings.", ""]
    else:
        lines += ["Data: not simulated.", ""]
    if meta:
        lines += ["Settings", "--------"]
        lines += [f"{k}: {v}" for k, v in meta.items()]
        lines.append("")
    lines += ["Files", "-----"]
    lines += [f"{name}: {what}" for name, what in files.items()]
    lines += ["", f"simulated: {'true' if simulated else 'false'}",
              f"written by brainviz on {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC", ""]
    return "\n".join(lines)


def zip_bundle(files: Mapping[str, tuple[bytes, str]], *, title: str = "brainviz export",
               meta: Mapping[str, Any] | None = None, simulated: bool = False) -> bytes:
    """Zip of ``{name: (bytes, description)}`` plus a ``README.txt`` describing every file."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("README.txt", readme_text({n: d for n, (_, d) in files.items()}, title=title, meta=meta,
                                              simulated=simulated))
        for name, (data, _) in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def maps_gifti_zip(values, *, name: str = "map", simulated: bool = False, meta: dict[str, Any] | None = None,
                   description: str | None = None) -> bytes:
    """Zip with ``lh.<name>.func.gii``, ``rh.<name>.func.gii`` and a ``README.txt``."""
    files = {}
    for hemi, tag in HEMI_TAGS.items():
        fname = filename(f"{tag}.{name}", "func.gii", simulated)
        what = (description or name) + f", {hemi} hemisphere, fsaverage5 ({N_PER_HEMI} vertices, float32 GIfTI)"
        files[fname] = (map_gifti(values, hemi, name=name, simulated=simulated, meta=meta), what)
    return zip_bundle(files, title=f"brainviz map export: {name}", meta=meta, simulated=simulated)


def figure_html(fig, *, offline: bool = True) -> bytes:
    """Stand-alone interactive HTML of a figure (plotly.js inlined when ``offline``)."""
    config = {"toImageButtonOptions": {"format": "svg"}, "displaylogo": False}
    return fig.to_html(include_plotlyjs=True if offline else "cdn", full_html=True, config=config).encode()


def find_browser() -> str | None:
    """Path of the Chrome/Chromium kaleido will use (``BROWSER_PATH`` first), or None."""
    env = os.environ.get("BROWSER_PATH")
    if env and os.path.isfile(env):
        return env
    for b in _BROWSERS:
        path = shutil.which(b)
        if path:
            return path
    return None


@functools.lru_cache(maxsize=1)
def image_export_available() -> tuple[bool, str]:
    """Whether :func:`figure_image` can work here, and why not."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False, "kaleido is not installed (pip install kaleido; it also needs Chrome/Chromium)"
    if find_browser() is None:
        return False, "kaleido needs a Chrome/Chromium browser (e.g. apt-get install chromium)"
    return True, ""


_server_lock = threading.Lock()
_server_started = False


def _ensure_server() -> None:
    """Start kaleido's shared headless browser once per process (stopped at exit)."""
    global _server_started
    with _server_lock:
        if _server_started:
            return
        import atexit

        import kaleido

        browser = find_browser()
        if browser and not os.environ.get("BROWSER_PATH"):
            os.environ["BROWSER_PATH"] = browser  # choreographer's way to a system browser
        kaleido.start_sync_server(silence_warnings=True)
        atexit.register(_stop_server)
        _server_started = True


def _stop_server() -> None:
    global _server_started
    with _server_lock:
        if not _server_started:
            return
        try:
            import kaleido

            kaleido.stop_sync_server(silence_warnings=True)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
        _server_started = False


def figure_image(fig, fmt: str = "png", *, scale: float = 2.0, width: int | None = None,
                 height: int | None = None, keep_browser: bool = True) -> bytes | None:
    """PNG/SVG/PDF bytes of a plotly figure via kaleido, or None when that cannot work here.

    ``keep_browser`` reuses one headless browser across calls (the first call starts it).
    """
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"fmt must be one of {IMAGE_FORMATS}, got {fmt!r}")
    ok, _ = image_export_available()
    if not ok:
        return None
    try:
        if keep_browser:
            _ensure_server()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "kopts ignored when using a server"
            return fig.to_image(format=fmt, scale=scale, width=width, height=height)
    except Exception:  # kaleido could not start its browser: fall back to HTML
        return None


def montage_export(values, fmt: str = "png", **kwargs) -> bytes:
    """Static montage bytes (PNG via Pillow; SVG/PDF via matplotlib); see :func:`brainviz.viz.montage.montage_png`."""
    from brainviz.viz.montage import montage_image

    return montage_image(values, fmt, **kwargs)


def download_label(what: str, fmt: str) -> str:
    """Button label that names the format actually downloaded, e.g. ``Montage (PDF)``."""
    return f"{what} ({fmt.upper()})"
