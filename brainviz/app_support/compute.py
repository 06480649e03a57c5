"""Thin adapters between the pages and the library (no science here: only looping for progress
reports, merging per-participant results and reshaping results for figures).

- :func:`compare_with_progress` runs :func:`brainviz.evaluation.compare_models` one participant at
  a time (the draws, the paired test and the FDR are all within participant, so the merged
  result equals one call with every participant) to report progress, then merges.
- :func:`group_map` / :func:`participant_map` turn a comparison into vertex maps.
- :func:`roi_table` wraps :func:`brainviz.evaluation.roi_summary` for one or all participants.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

Progress = Callable[[float, str], None]


def compare_with_progress(
    model_a: str,
    model_b: str,
    participants: Sequence[str],
    config,
    *,
    dataset: str | None = None,
    progress: Progress | None = None,
    names: tuple[str, str] | None = None,
):
    """:class:`~brainviz.evaluation.compare.ComparisonResult` of A vs B over ``participants``."""
    from brainviz.evaluation import compare_models
    from brainviz.evaluation.compare import ComparisonResult

    if not participants:
        raise ValueError("choose at least one participant")
    parts = []
    n = len(participants)
    for i, pid in enumerate(participants):
        if progress:
            progress(i / n, f"participant {pid}: 20-vs-20 on paired draws, paired test, FDR ({i + 1}/{n})")
        parts.append(compare_models(model_a, model_b, config, participants=[pid], dataset=dataset))
    if progress:
        progress(1.0, "comparison ready")
    first = parts[0]
    meta = dict(first.meta)
    meta["from_cache"] = all(p.meta.get("from_cache") for p in parts)
    if names:
        meta["models"] = {"a": names[0], "b": names[1]}
    return ComparisonResult(
        config=first.config,
        participants=[p for r in parts for p in r.participants],
        acc_a={k: v for r in parts for k, v in r.acc_a.items()},
        acc_b={k: v for r in parts for k, v in r.acc_b.items()},
        runs={k: v for r in parts for k, v in r.runs.items()},
        tests={k: v for r in parts for k, v in r.tests.items()},
        meta=meta,
    )


def comparison_participants(model_a: str, model_b: str) -> list[str]:
    """Participants both models have held-out predictions for."""
    from brainviz.evaluation.io import scan_heldout

    a, b = scan_heldout(model_a), scan_heldout(model_b)
    return [p for p in a["participants"] if p in set(b["participants"])]


@dataclasses.dataclass
class CompareMaps:
    """Everything the Compare page draws, per participant, as plain arrays."""

    participants: list[str]
    acc_a: dict[str, np.ndarray]
    acc_b: dict[str, np.ndarray]
    q: dict[str, np.ndarray]
    p: dict[str, np.ndarray]
    t: dict[str, np.ndarray]
    names: tuple[str, str]
    summary: dict[str, Any]

    @property
    def n_units(self) -> int:
        return int(next(iter(self.acc_a.values())).size) if self.acc_a else 0

    def diff(self, participant: str) -> np.ndarray:
        return self.acc_a[participant] - self.acc_b[participant]

    def significant(self, participant: str, alpha: float) -> np.ndarray:
        q = self.q[participant]
        return np.isfinite(q) & (q < alpha)

    def map(self, which: str, participant: str | None, alpha: float, min_count: int = 1):
        """``(values, mask)`` for ``which`` in {diff, acc_a, acc_b}; ``participant=None`` = mean
        over participants with the mask 'significant in at least ``min_count`` participants'."""
        pids = self.participants if participant is None else [participant]
        if which == "diff":
            stack = np.stack([self.diff(p) for p in pids])
        elif which == "acc_a":
            stack = np.stack([self.acc_a[p] for p in pids])
        elif which == "acc_b":
            stack = np.stack([self.acc_b[p] for p in pids])
        else:
            raise ValueError(which)
        with np.errstate(invalid="ignore"):
            values = np.nanmean(stack, axis=0) if len(pids) > 1 else stack[0]
        count = np.sum([self.significant(p, alpha) for p in pids], axis=0)
        mask = count >= (min_count if participant is None else 1)
        return values, mask

    def frame(self, participant: str | None, alpha: float, vertices: np.ndarray | None = None):
        import pandas as pd

        pids = self.participants if participant is None else [participant]
        frames = []
        for pid in pids:
            idx = np.arange(self.n_units) if vertices is None else np.asarray(vertices, dtype=np.int64)
            a, b = self.acc_a[pid][idx], self.acc_b[pid][idx]
            frames.append(pd.DataFrame({
                "participant": pid, "unit": idx, "acc_a": a, "acc_b": b, "diff": a - b,
                "t": self.t[pid][idx], "p": self.p[pid][idx], "q": self.q[pid][idx],
                "significant": self.significant(pid, alpha)[idx],
            }))
        return pd.concat(frames, ignore_index=True)


def comparison_maps(result, names: tuple[str, str]) -> CompareMaps:
    """Reduce a ComparisonResult to per-unit arrays (float32) and its JSON summary."""
    acc_a, acc_b, q, p, t = {}, {}, {}, {}, {}
    for pid in result.participants:
        a, b = result.mean_accuracy(pid)
        acc_a[pid], acc_b[pid] = a.astype(np.float32), b.astype(np.float32)
        res = result.tests[pid]
        q[pid] = np.asarray(res.q, dtype=np.float32)
        p[pid] = np.asarray(res.p, dtype=np.float32)
        t[pid] = np.asarray(res.statistic, dtype=np.float32)
    return CompareMaps(list(result.participants), acc_a, acc_b, q, p, t, names, result.summary())


def roi_table(maps: CompareMaps, atlas, participant: str | None, alpha: float):
    """Per-ROI means of A, B and A − B (mean ± SE over participants when ``participant`` is None)."""
    from brainviz.evaluation import roi_summary

    pids = maps.participants if participant is None else [participant]
    names = {k: v for k, v in atlas.names.items()}
    frames = [roi_summary(maps.acc_a[p], maps.acc_b[p], atlas.labels, names, maps.significant(p, alpha)) for p in pids]
    if len(frames) == 1:
        df = frames[0].copy()
        df["se"] = np.nan
        return df
    import pandas as pd

    allp = pd.concat([f.assign(participant=p) for f, p in zip(frames, pids)])
    g = allp.groupby(["roi", "label"], sort=False)
    out = g[["acc_a", "acc_b", "diff"]].mean()
    out["se"] = g["diff"].std(ddof=1) / np.sqrt(g["diff"].count())
    out[["n_units"]] = g[["n_units"]].first()
    out[["n_sig_up", "n_sig_down"]] = g[["n_sig_up", "n_sig_down"]].sum()
    return out.reset_index()


# --------------------------------------------------------------------------------------
# attention
# --------------------------------------------------------------------------------------


def example_windows(ds, examples, start: int, count: int) -> tuple[list[list[str]], np.ndarray]:
    """Word lists of ``count`` example windows from ``start`` (and their example indices)."""
    words = ds.stimulus["word"].astype(str).to_numpy()
    stop = min(len(examples.windows), start + count)
    idx = np.arange(start, stop)
    return [list(words[examples.windows[i]]) for i in idx], idx


def attention_readouts(source: str, windows: Sequence[Sequence[str]], encoder_pair=None) -> np.ndarray:
    """[CLS] read-outs ``(seeds, examples, layers, heads, 2)`` of a model: every seed's encoder
    for a checkpoint, the (cached) encoder otherwise."""
    from pathlib import Path

    from brainviz.models.attention import checkpoint_cls_attention, cls_attention

    if source != "pretrained" and (Path(source) / "card.json").is_file():
        from brainviz.models.store import load_checkpoint

        # verify=False: prediction-only folders (no heads) still have an encoder to read
        return checkpoint_cls_attention(load_checkpoint(source, verify=False), windows)
    pair = encoder_pair
    return cls_attention(pair if pair is not None else source, windows)[None]
