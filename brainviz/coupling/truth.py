"""Planted ground truth of a simulated listening dataset, matched to the recovered BNs and pairs.

The simulator (:mod:`brainviz.data.simulate`) plants functional networks in the listening
experiment: *coupled* ones, whose time courses follow quantities that the packaged MiniLM's
attention query-key products carry in both stories (so some AN should couple with them),
and negative *controls* (random soundtrack envelopes that no AN should couple with). This
module answers, for a coupling configuration:

- :func:`planted_networks`: the planted maps, roles and time courses (on each story's TRs),
  or ``None`` when the dataset has none (real data, the reading experiment);
- :func:`network_ceiling`: the oracle spatial r of each planted map -- the maps obtained by
  regressing the participant-averaged data on the *true* time courses;
- :func:`planted_recovery`: per planted network and test story, the BN whose map matches it
  best, its spatial r against the ceiling, and its cross-story validated AN pair: *found*
  (coupled network, q <= alpha), *missed*, *false coupling* (control, q <= alpha) or *none*
  (control, correctly).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from brainviz.coupling.neurons import story_grid
from brainviz.data.dataset import Dataset


def planted_networks(dataset: Dataset, trim: bool = True) -> dict[str, Any] | None:
    """The planted networks of a simulated dataset, or ``None`` when it has none.

    Returns
    -------
    dict with ``names``, ``roles`` (``"coupled"`` / ``"control"``), ``drivers``, ``expected``
    (what should couple), ``maps`` (K x units) and ``timecourses`` ``{story: (T x K)}`` on the
    story's (trimmed) TRs, as :func:`brainviz.coupling.neurons.story_grid` defines them.
    """
    from brainviz.data.dataset import DatasetError
    from brainviz.data.simulate import load_ground_truth

    if not getattr(dataset, "simulated", False) or dataset.path is None:
        return None
    try:
        gt = load_ground_truth(dataset)
    except DatasetError:
        return None
    nets = gt.get("networks") or []
    if not nets or "network_maps" not in gt or "network_timecourses" not in gt:
        return None
    tcs = np.asarray(gt["network_timecourses"], dtype=np.float64)
    tr_runs = np.asarray(gt["tr_runs"]).astype(str)
    per_story = {}
    for story in dataset.stories:
        g = story_grid(dataset, story, trim)
        parts = []
        for run, first, n in zip(g.runs, g.first_trs, g.n_trs_per_run):
            rows = np.flatnonzero(tr_runs == run)
            parts.append(tcs[rows[first:first + n]])
        per_story[story] = np.concatenate(parts)
    return {
        "names": [n["name"] for n in nets],
        "roles": [n.get("role", "coupled") for n in nets],
        "drivers": [n["driver"] for n in nets],
        "expected": [n.get("expected_coupling", "") for n in nets],
        "maps": np.asarray(gt["network_maps"], dtype=np.float64),
        "timecourses": per_story,
    }


def match_networks(maps: np.ndarray, truth_maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each planted map, the recovered map with the largest spatial r: ``(index, r)``."""
    maps = np.asarray(maps, dtype=np.float64)
    truth_maps = np.asarray(truth_maps, dtype=np.float64)
    k = len(truth_maps)
    c = np.corrcoef(np.vstack([truth_maps, maps]))[:k, k:]
    c = np.nan_to_num(c)
    return c.argmax(axis=1), c.max(axis=1)


def network_ceiling(dataset: Dataset, truth: dict[str, Any] | None = None, trim: bool = True,
                    cache: Any = None) -> np.ndarray:
    """Oracle spatial r of every planted map (K,).

    The participant-averaged, z-scored data of each story (stories stacked) regressed on the
    true network time courses (each story's z-scored) give one map per network; its spatial r
    with the planted map is what a method that knew the time courses would reach.
    """
    from brainviz._io import content_hash
    from brainviz.coupling import networks as _networks
    from brainviz.coupling.couple import zscore_columns

    truth = truth or planted_networks(dataset, trim)
    if truth is None:
        return np.zeros(0)

    def compute() -> dict[str, np.ndarray]:
        gd = _networks.average_participants(_networks.group_data(dataset, trim=trim))
        x = np.concatenate([zscore_columns(truth["timecourses"][s]) for s in gd.stories])
        b = np.linalg.lstsq(x.astype(np.float64), gd.data.astype(np.float64), rcond=None)[0]
        r = np.array([np.corrcoef(b[j], truth["maps"][j])[0, 1] for j in range(len(b))])
        return {"ceiling": r}

    if cache is None:
        return compute()["ceiling"]
    from brainviz.coupling.api import dataset_key

    key = content_hash("coupling-ceiling", dataset_key(dataset, cache), trim)
    return cache.arrays("coupling-truth", key, compute)["ceiling"]


def planted_recovery(
    dataset: Dataset | str | os.PathLike,
    model: str | os.PathLike = "pretrained",
    config: Any = None,
    *,
    pairs: Any = None,
    cache: Any = True,
    cached_only: bool = False,
):
    """Per planted network and test story: matched BN, spatial r vs ceiling, validated pair, outcome.

    Parameters
    ----------
    pairs : DataFrame, optional
        :func:`brainviz.coupling.api.validated_pairs` of the same config (computed when omitted).

    Returns
    -------
    DataFrame (``network, role, driver, expected, bn, spatial_r, ceiling, ratio, tc_r, test_on,
    an, name, r_select, r_test, ci_low, ci_high, q, significant, outcome, simulated``), or
    ``None`` when the dataset has no planted networks (or, with ``cached_only``, when a result
    is not cached).
    """
    import pandas as pd

    from brainviz.cache import Cache
    from brainviz.coupling.api import CouplingConfig, compute_networks, validated_pairs
    from brainviz.data.dataset import load_dataset

    config = config or CouplingConfig()
    if not isinstance(dataset, Dataset):
        dataset = load_dataset(dataset)
    truth = planted_networks(dataset, config.trim)
    if truth is None:
        return None
    cache_obj = Cache() if cache is True else (cache or None)
    if pairs is None:
        pairs = validated_pairs(dataset, model, config, cache=cache, cached_only=cached_only)
        if pairs is None:
            return None
    bns = compute_networks(dataset, config, cache=cache_obj)
    idx, sr = match_networks(bns.maps, truth["maps"])
    ceiling = network_ceiling(dataset, truth, config.trim, cache_obj)
    rows = []
    for story in dict.fromkeys(pairs["test_on"]):
        sub = pairs[pairs["test_on"] == story].set_index("bn")
        tc = bns.timecourses.get(story)
        true_tc = truth["timecourses"].get(story)
        for j, name in enumerate(truth["names"]):
            b = int(idx[j])
            row = sub.loc[b]
            tc_r = float(np.corrcoef(tc[:, b], true_tc[:, j])[0, 1]) if tc is not None and true_tc is not None else np.nan
            coupled = truth["roles"][j] != "control"
            sig = bool(row["significant"])
            outcome = ("found" if sig else "missed") if coupled else ("false coupling" if sig else "none (correct)")
            rows.append({
                "network": name, "role": truth["roles"][j], "driver": truth["drivers"][j], "expected": truth["expected"][j],
                "bn": b, "spatial_r": float(sr[j]), "ceiling": float(ceiling[j]),
                "ratio": float(sr[j] / ceiling[j]) if ceiling[j] > 0 else np.nan, "tc_r": abs(tc_r),
                "test_on": story, "select": row["select"], "an": int(row["an"]), "name": row["name"],
                "r_select": float(row["r_select"]), "r_test": float(row["r_test"]), "ci_low": float(row["ci_low"]),
                "ci_high": float(row["ci_high"]), "q": float(row["q"]), "significant": sig, "outcome": outcome,
                "simulated": True,
            })
    return pd.DataFrame(rows)


def bn_roles(maps: np.ndarray, truth: dict[str, Any] | None) -> list[str]:
    """A label per BN: the planted network it matches best (spatial r >= 0.3), else ``""``."""
    maps = np.asarray(maps)
    out = [""] * len(maps)
    if truth is None:
        return out
    idx, sr = match_networks(maps, truth["maps"])
    for j, (b, r) in enumerate(zip(idx, sr)):
        if r >= 0.3:
            label = truth["names"][j] + (" (control)" if truth["roles"][j] == "control" else "")
            out[int(b)] = f"{out[int(b)]}, {label}" if out[int(b)] else label
    return out
