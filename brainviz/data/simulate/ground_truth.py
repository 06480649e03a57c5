"""Reading the planted ground truth written beside a simulated dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from brainviz.data.simulate.config import GROUND_TRUTH_DIR, GROUND_TRUTH_JSON, SIMULATOR_VERSION


def _complete(path: Path) -> bool:
    """A finished dataset made by this simulator version (older builds are rebuilt)."""
    meta = path / GROUND_TRUTH_DIR / GROUND_TRUTH_JSON
    if not ((path / "dataset.json").is_file() and meta.is_file()):
        return False
    try:
        return json.loads(meta.read_text()).get("simulator_version") == SIMULATOR_VERSION
    except (OSError, ValueError):
        return False


def load_ground_truth(dataset_or_path: Any) -> dict[str, Any]:
    """The planted ground truth of a simulated dataset.

    Parameters
    ----------
    dataset_or_path : Dataset or path
        A loaded :class:`~brainviz.data.dataset.Dataset`, its folder, or its ``ground_truth``
        folder.

    Returns
    -------
    dict
        The keys of ``ground_truth.json`` plus one entry per array file (``planted_mask``,
        ``region_labels``, ``drivers``, ``neural_drivers``, ``spatial_weights``, ``readable_mask``,
        ``specific_mask``, ``readable_r2``, ``specific_r2``, ...; listening:
        ``network_maps``, ``network_timecourses``; reading: ``meg_*``), ``word_features``
        (a DataFrame) and ``path``.

    Raises
    ------
    DatasetError
        When the dataset has no ground truth (real data, or a simulated dataset not on disk).
    """
    from brainviz.data.dataset import DatasetError

    path = getattr(dataset_or_path, "path", dataset_or_path)
    if path is None:
        raise DatasetError("this dataset is not saved on disk, so it has no ground_truth/ folder", field="ground_truth")
    path = Path(path)
    gt = path if (path / GROUND_TRUTH_JSON).is_file() else path / GROUND_TRUTH_DIR
    meta_file = gt / GROUND_TRUTH_JSON
    if not meta_file.is_file():
        raise DatasetError(
            "no ground truth here: only datasets made by the simulator (python -m brainviz simulate) have a "
            "ground_truth/ folder with ground_truth.json",
            file=meta_file, field="ground_truth",
        )
    try:
        out: dict[str, Any] = json.loads(meta_file.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"not valid JSON ({exc})", file=meta_file) from None
    for f in sorted(gt.glob("*.npy")):
        try:
            out[f.stem] = np.load(f, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DatasetError(f"unreadable .npy file ({exc})", file=f) from None
    table = gt / "word_features.tsv"
    if table.is_file():
        import pandas as pd

        out["word_features"] = pd.read_csv(table, sep="\t", keep_default_na=False, dtype={"word": str, "run": str})
    out["path"] = gt
    return out

