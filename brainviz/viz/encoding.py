"""Figures of an ``encode`` result: layer profiles, baseline vs LM vs unique variance, ceilings, maps.

Every builder takes the outputs of :func:`brainviz.evaluation.encode.EncodeResult.to_frame`
and ``summary()`` (or the ``.csv`` + ``.summary.json`` that ``python -m brainviz encode``
writes, read with :func:`read_encode_outputs`), so the app, notebooks and exports draw the
same numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from brainviz.viz._common import add_simulated_badge

MODEL_COLUMNS = {
    "mean_r_trend": "time-in-run trend",
    "mean_r_word_rate": "word rate",
    "mean_r_baseline": "low-level (4 bands)",
    "mean_r": "LM (selected layer)",
    "mean_r_joint": "LM + low-level",
}
MODEL_COLORS = ("#adb5bd", "#74c0fc", "#1c7ed6", "#e8590c", "#862e9c")
MAP_VALUES = {
    "r": "LM r",
    "r_baseline": "low-level r",
    "r_word_rate": "word-rate r",
    "unique_lm": "unique LM R²",
    "r_norm": "ceiling-normalised LM r",
    "layer": "best layer",
}


def read_encode_outputs(table: str | Path):
    """``(frame, summary)`` from an ``encode`` table (.csv/.tsv/.parquet) and its ``.summary.json``."""
    import pandas as pd

    table = Path(table)
    js = table.with_name(table.stem + ".summary.json")
    if not table.is_file():
        raise FileNotFoundError(f"{table}: no such encode table")
    if not js.is_file():
        raise FileNotFoundError(f"{js}: the summary written beside the table is missing")
    if table.suffix.lower() in (".parquet", ".pq"):
        frame = pd.read_parquet(table)
    else:
        frame = pd.read_csv(table, sep="\t" if table.suffix.lower() == ".tsv" else ",", keep_default_na=False,
                            na_values=[""])
    frame["unit"] = frame["unit"].astype(str)
    return frame, json.loads(js.read_text())


def group_table(summary: dict[str, Any]):
    """One row per unit: group means, tests (t, p, q), baselines, unique variance, ceiling, layers."""
    import pandas as pd

    rows = []
    for unit, e in summary["units"].items():
        sel = e.get("selected_layers") or {}
        row = {"unit": unit, "mean_r": e.get("mean_r"), "p": (e.get("r") or {}).get("p"),
               "q": (e.get("r") or {}).get("q"), "significant": (e.get("r") or {}).get("significant"),
               "mean_r_word_rate": e.get("mean_r_word_rate"), "mean_r_baseline": e.get("mean_r_baseline"),
               "mean_r_trend": e.get("mean_r_trend"), "mean_r_joint": e.get("mean_r_joint"),
               "mean_unique_lm": e.get("mean_unique_lm"), "q_unique_lm": (e.get("unique_lm") or {}).get("q"),
               "lm_adds_beyond_lowlevel": e.get("lm_adds_beyond_lowlevel"), "ceiling": e.get("ceiling"),
               "r_norm": e.get("r_norm"),
               "most_selected_layer": int(max(sel, key=lambda k: sel[k])) if sel else None}
        rows.append(row)
    return pd.DataFrame(rows)


def _units(summary: dict[str, Any], units: Sequence[str] | None, limit: int = 12) -> list[str]:
    names = list(summary["units"])
    if units:
        missing = [u for u in units if u not in summary["units"]]
        if missing:
            raise ValueError(f"unknown unit(s) {missing}; the result has {names[:10]}{'...' if len(names) > 10 else ''}")
        return list(units)
    if len(names) <= limit:
        return names
    best = sorted(names, key=lambda u: -(summary["units"][u].get("mean_r") or -np.inf))
    return best[:limit]


def layer_profile(
    summary: dict[str, Any],
    units: Sequence[str] | None = None,
    *,
    normalised: bool = False,
    simulated: bool | None = None,
    height: int = 420,
):
    """Held-out r by layer (mean ± SE across participants), one line per unit.

    ``normalised`` divides by each unit's noise ceiling. With many units (vertices), the 12
    with the highest mean r are drawn unless ``units`` is given.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    for unit in _units(summary, units):
        e = summary["units"][unit]
        prof = e["layer_profile"]
        y = np.array([np.nan if v is None else v for v in prof["mean_r"]], dtype=float)
        se = np.array([np.nan if v is None else v for v in prof["se_r"]], dtype=float)
        c = e.get("ceiling")
        if normalised:
            if not c or c <= 0:
                continue
            y, se = y / c, se / c
        fig.add_trace(go.Scatter(x=prof["layers"], y=np.round(y, 4), name=str(unit), mode="lines+markers",
                                 error_y=dict(type="data", array=np.round(se, 4), visible=True),
                                 hovertemplate=f"{unit}<br>layer %{{x}}<br>r %{{y:.3f}}<extra></extra>"))
    fig.add_hline(y=0, line=dict(color="black", width=1, dash="dot"))
    fig.update_layout(
        title="Layer profile: held-out r by layer (mean ± SE across participants)"
        + (" / noise ceiling" if normalised else ""),
        xaxis_title="hidden state (0 = embeddings)", yaxis_title="r / ceiling" if normalised else "held-out r",
        height=height, margin=dict(l=50, r=20, t=60, b=40), xaxis=dict(dtick=1),
    )
    return add_simulated_badge(fig, bool(summary.get("simulated") if simulated is None else simulated))


def model_scores(
    summary: dict[str, Any],
    units: Sequence[str] | None = None,
    *,
    normalised: bool = False,
    simulated: bool | None = None,
    height: int = 420,
):
    """Grouped bars per unit: trend, word rate, low-level, LM and LM + low-level mean r (across
    participants), with the noise ceiling as a marker (or every bar divided by it)."""
    import plotly.graph_objects as go

    names = _units(summary, units)
    fig = go.Figure()
    ceil = np.array([summary["units"][u].get("ceiling") or np.nan for u in names], dtype=float)
    for (key, label), color in zip(MODEL_COLUMNS.items(), MODEL_COLORS):
        y = np.array([np.nan if summary["units"][u].get(key) is None else summary["units"][u][key] for u in names],
                     dtype=float)
        if normalised:
            with np.errstate(divide="ignore", invalid="ignore"):
                y = np.where(ceil > 0, y / ceil, np.nan)
        fig.add_trace(go.Bar(x=names, y=np.round(y, 4), name=label, marker_color=color))
    if not normalised:
        fig.add_trace(go.Scatter(x=names, y=np.round(ceil, 4), mode="markers", name="noise ceiling",
                                 marker=dict(symbol="line-ew", size=28, line=dict(width=3, color="black"))))
    fig.update_layout(barmode="group", height=height, margin=dict(l=50, r=20, t=60, b=40),
                      title="Baselines vs language model" + (" (ceiling-normalised)" if normalised else ""),
                      yaxis_title="r / ceiling" if normalised else "mean held-out r")
    return add_simulated_badge(fig, bool(summary.get("simulated") if simulated is None else simulated))


def unique_variance(summary: dict[str, Any], units: Sequence[str] | None = None, *, simulated: bool | None = None,
                    height: int = 360):
    """Bars of the LM's unique variance (R² of LM + low-level minus R² of low-level), starred
    where the group test passes FDR."""
    import plotly.graph_objects as go

    names = _units(summary, units)
    y = np.array([summary["units"][u].get("mean_unique_lm") or np.nan for u in names], dtype=float)
    sig = [bool((summary["units"][u].get("unique_lm") or {}).get("significant")) for u in names]
    fig = go.Figure(go.Bar(x=names, y=np.round(y, 5), marker_color=["#2b8a3e" if s else "#adb5bd" for s in sig],
                           text=["*" if s else "" for s in sig], textposition="outside",
                           hovertemplate="%{x}<br>unique LM R² %{y:.4f}<extra></extra>"))
    fig.add_hline(y=0, line=dict(color="black", width=1))
    fig.update_layout(title="Unique LM variance beyond the low-level bands (* q ≤ α across participants)",
                      yaxis_title="ΔR²", height=height, margin=dict(l=50, r=20, t=60, b=40))
    return add_simulated_badge(fig, bool(summary.get("simulated") if simulated is None else simulated))


def unit_values(frame, column: str, *, n_units: int | None = None) -> np.ndarray:
    """Per-unit value of ``column`` over the ``best`` rows: mean across participants, or for
    ``layer`` the layer selected most often. Array (n_units,) indexed by ``unit_index``."""
    best = frame[frame["selection"] == "best"] if "selection" in frame else frame
    n = int(n_units if n_units is not None else best["unit_index"].max() + 1)
    out = np.full(n, np.nan)
    if column == "layer":  # most often selected layer per unit (ties: the lowest), vectorised
        u = best["unit_index"].to_numpy(dtype=np.int64)
        lay = best["layer"].to_numpy(dtype=np.int64)
        if u.size:
            lo = int(lay.min())
            counts = np.zeros((n, int(lay.max()) - lo + 1), dtype=np.int64)
            np.add.at(counts, (u, lay - lo), 1)
            has = counts.sum(axis=1) > 0
            out[has] = np.argmax(counts[has], axis=1) + lo
        return out
    mean = best.groupby("unit_index")[column].mean()
    out[mean.index.to_numpy()] = mean.to_numpy(dtype=float)
    return out


#: Neutral value and colour bar title (with units) of each map value.
MAP_SCALES = {
    "r": (0.0, "held-out Pearson r (chance 0)"),
    "r_baseline": (0.0, "low-level baseline r (chance 0)"),
    "r_word_rate": (0.0, "word-rate r (chance 0)"),
    "unique_lm": (0.0, "unique LM variance ΔR² (none 0)"),
    "r_norm": (0.0, "LM r / noise ceiling"),
    "layer": (None, "best layer (hidden state; 0 = embeddings)"),
}


def encoding_map_values(frame, summary: dict[str, Any], column: str = "r") -> tuple[np.ndarray, float, str, str]:
    """``(values (20484,), centre, colour-bar title, colour map)`` of an fsaverage5 encode result."""
    if column not in MAP_VALUES:
        raise ValueError(f"column: expected one of {list(MAP_VALUES)}, got {column!r}")
    if summary.get("space") != "fsaverage5":
        raise ValueError("encoding maps on the cortex need an fsaverage5 result")
    from brainviz.surface import N_VERTICES

    values = unit_values(frame, column, n_units=N_VERTICES)
    center, cbar = MAP_SCALES[column]
    if center is None:  # layers: sequential colours over the layer range
        fin = values[np.isfinite(values)]
        center = float((fin.min() + fin.max()) / 2) if fin.size else 0.0
        return values, center, cbar, "viridis"
    return values, center, cbar, "RdBu_r"


def encoding_montage(frame, summary: dict[str, Any], column: str = "r", *, threshold: float | None = None,
                     vmax: float | None = None, hemi: str = "both", scale: float = 1.0, fmt: str = "png") -> bytes | None:
    """PNG (or, ``fmt="jpeg"``, the on-screen JPEG) bytes of the four-view static montage of an
    fsaverage5 encode result (None otherwise)."""
    if summary.get("space") != "fsaverage5":
        return None
    from brainviz.viz.montage import montage_jpeg, montage_png

    if fmt not in ("png", "jpeg"):
        raise ValueError(f"fmt must be 'png' or 'jpeg', got {fmt!r}")

    values, center, cbar, cmap = encoding_map_values(frame, summary, column)
    if column == "layer" and vmax is None:
        fin = values[np.isfinite(values)]
        vmax = max(float(fin.max() - center), 0.5) if fin.size else 1.0
    title = f"{MAP_VALUES[column]} ({summary.get('model')}, {summary.get('n_participants')} participants, "\
            f"{summary.get('cv')})"
    draw = montage_jpeg if fmt == "jpeg" else montage_png
    return draw(values, threshold=threshold, vmax=vmax, center=center, cmap=cmap, hemi=hemi, title=title,
                colorbar_title=cbar, simulated=bool(summary.get("simulated")), scale=scale)


def encoding_map(frame, summary: dict[str, Any], column: str = "r", *, hemi: str = "left", view: str = "lateral",
                 threshold: float | None = None, height: int = 480):
    """A map of one per-unit column (:data:`MAP_VALUES`): a cortical surface for fsaverage5,
    a bar chart per unit otherwise (ROIs, voxels)."""
    import plotly.graph_objects as go

    if column not in MAP_VALUES:
        raise ValueError(f"column: expected one of {list(MAP_VALUES)}, got {column!r}")
    sim = bool(summary.get("simulated"))
    label = MAP_VALUES[column]
    if summary.get("space") == "fsaverage5":
        from brainviz.viz.cortex import cortical_map

        values, center, cbar, _ = encoding_map_values(frame, summary, column)
        layered = column == "layer"
        return cortical_map(values, threshold=threshold, hemi=hemi, view=view, symmetric=not layered,
                            center=center, colorscale="Viridis" if layered else "RdBu_r", title=label,
                            colorbar_title=cbar, simulated=sim, height=height)
    values = unit_values(frame, column)
    names = frame.drop_duplicates("unit_index").sort_values("unit_index")["unit"].astype(str).tolist()
    fig = go.Figure(go.Bar(x=names, y=np.round(values, 4), marker_color="#1c7ed6"))
    fig.update_layout(title=f"{label} per unit (mean across participants)" if column != "layer" else
                      "best layer per unit (most often selected across participants)",
                      yaxis_title=label, height=height, margin=dict(l=50, r=20, t=60, b=40))
    return add_simulated_badge(fig, sim)
