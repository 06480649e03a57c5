"""Thin adapters between the pages and the library (no science here: only looping for progress
reports, merging per-participant results and reshaping results for figures).

- :func:`compare_with_progress` runs :func:`brainviz.evaluation.compare_models` one participant at
  a time (draws and block effects are per participant) to report progress, then reruns the
  tests on the merged accuracies (the group test needs every participant), which equals one
  call with every participant.
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

    if not participants:
        raise ValueError("choose at least one participant")
    from brainviz.evaluation.compare import PARTICIPANT_TESTS, comparison_from_accuracies

    # one participant per call (progress); the group test is run once on the merged result
    per_participant = config.replace(level="participant",
                                     test=config.test if config.test in PARTICIPANT_TESTS else "auto")
    parts = []
    n = len(participants)
    for i, pid in enumerate(participants):
        if progress:
            progress(i / n, f"participant {pid}: 20-vs-20 on paired draws, paired test, FDR ({i + 1}/{n})")
        parts.append(compare_models(model_a, model_b, per_participant, participants=[pid], dataset=dataset))
    if progress:
        progress(1.0, "comparison ready")
    first = parts[0]
    meta = dict(first.meta)
    meta["from_cache"] = all(p.meta.get("from_cache") for p in parts)
    if names:
        meta["models"] = {"a": names[0], "b": names[1]}
    for key in ("n_rows",):
        meta[key] = {k: v for r in parts for k, v in (r.meta.get(key) or {}).items()}
    merged = comparison_from_accuracies(
        {k: v for r in parts for k, v in r.acc_a.items()}, {k: v for r in parts for k, v in r.acc_b.items()},
        {k: v for r in parts for k, v in r.runs.items()}, config, meta,
        {k: v for r in parts for k, v in r.blocks.items()})
    return merged


def comparison_participants(model_a: str, model_b: str) -> list[str]:
    """Participants both models have held-out predictions for."""
    from brainviz.evaluation.io import scan_heldout

    a, b = scan_heldout(model_a), scan_heldout(model_b)
    return [p for p in a["participants"] if p in set(b["participants"])]


@dataclasses.dataclass
class CompareMaps:
    """Everything the Compare page draws, per participant and for the group, as plain arrays.

    *Significant* always means ``q <= alpha`` of the named test (``test``, ``level``,
    ``alpha``, ``fdr`` of the comparison); what the maps *show* is a separate display
    threshold on q (``show_q``) and never changes what is called significant.
    """

    participants: list[str]
    acc_a: dict[str, np.ndarray]
    acc_b: dict[str, np.ndarray]
    q: dict[str, np.ndarray]
    p: dict[str, np.ndarray]
    t: dict[str, np.ndarray]
    names: tuple[str, str]
    summary: dict[str, Any]
    sig: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    group: dict[str, np.ndarray] | None = None  # q, p, t, effect, significant over units

    @property
    def n_units(self) -> int:
        return int(next(iter(self.acc_a.values())).size) if self.acc_a else 0

    @property
    def level(self) -> str:
        return self.summary.get("level", "participant")

    @property
    def alpha(self) -> float:
        return float(self.summary.get("alpha", 0.05))

    def describe(self) -> str:
        """One line naming the test, level, FDR, alpha and sample sizes (for captions/exports)."""
        s = self.summary
        sizes = s.get("sample_sizes", {})
        seeds = sorted({tuple(v) if isinstance(v, list) else (v,) for v in (sizes.get("n_seeds") or {}).values()})
        runs = sorted(set((sizes.get("n_runs") or {}).values()))
        return (f"{s.get('test')} ({s.get('level')} level), {str(s.get('fdr')).upper()} FDR, significant = "
                f"q ≤ {s.get('alpha')}; {sizes.get('n_participants')} participant(s), held-out runs "
                f"{'/'.join(map(str, runs))}, seeds {'/'.join('×'.join(map(str, x)) for x in seeds)} (averaged)")

    def diff(self, participant: str) -> np.ndarray:
        return self.acc_a[participant] - self.acc_b[participant]

    def significant(self, participant: str | None) -> np.ndarray:
        """The test's own decision (q <= alpha): the group test for ``None``."""
        if participant is None:
            if self.group is None:
                raise ValueError("no group-level test (one participant): choose a participant")
            return self.group["significant"]
        return self.sig[participant]

    def qvalues(self, participant: str | None) -> np.ndarray:
        return self.group["q"] if participant is None and self.group is not None else self.q[participant]

    def map(self, which: str, participant: str | None, show_q: float):
        """``(values, shown)`` for ``which`` in {diff, acc_a, acc_b}; ``participant=None`` =
        mean over participants with the group test's q (display threshold ``show_q``)."""
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
        if participant is None and self.group is None:
            participant = self.participants[0]
        q = self.qvalues(participant)
        shown = np.isfinite(q) & (q < show_q)
        return values, shown

    def frame(self, participant: str | None, show_q: float, vertices: np.ndarray | None = None):
        """Per-unit table: ``significant`` from the test, ``shown`` from the display threshold."""
        import pandas as pd

        idx = np.arange(self.n_units) if vertices is None else np.asarray(vertices, dtype=np.int64)
        if participant is None and self.group is not None:
            g = self.group
            d = np.stack([self.diff(p) for p in self.participants])
            with np.errstate(invalid="ignore"):
                return pd.DataFrame({
                    "unit": idx, "acc_a": np.nanmean([self.acc_a[p] for p in self.participants], axis=0)[idx],
                    "acc_b": np.nanmean([self.acc_b[p] for p in self.participants], axis=0)[idx],
                    "diff": np.nanmean(d, axis=0)[idx], "t": g["t"][idx], "p": g["p"][idx], "q": g["q"][idx],
                    "significant": g["significant"][idx], "shown": np.isfinite(g["q"][idx]) & (g["q"][idx] < show_q),
                    "test": self.summary.get("test"), "level": "group", "alpha": self.alpha,
                })
        frames = []
        for pid in (self.participants if participant is None else [participant]):
            a, b = self.acc_a[pid][idx], self.acc_b[pid][idx]
            q = self.q[pid][idx]
            frames.append(pd.DataFrame({
                "participant": pid, "unit": idx, "acc_a": a, "acc_b": b, "diff": a - b,
                "t": self.t[pid][idx], "p": self.p[pid][idx], "q": q, "significant": self.sig[pid][idx],
                "shown": np.isfinite(q) & (q < show_q), "test": self.summary.get("participant_test"),
                "level": "participant", "alpha": self.alpha,
            }))
        return pd.concat(frames, ignore_index=True)


def comparison_maps(result, names: tuple[str, str]) -> CompareMaps:
    """Reduce a ComparisonResult to per-unit arrays (float32) and its JSON summary."""
    acc_a, acc_b, q, p, t, sig = {}, {}, {}, {}, {}, {}
    for pid in result.participants:
        a, b = result.mean_accuracy(pid)
        acc_a[pid], acc_b[pid] = a.astype(np.float32), b.astype(np.float32)
        res = result.tests[pid]
        q[pid] = np.asarray(res.q, dtype=np.float32)
        p[pid] = np.asarray(res.p, dtype=np.float32)
        t[pid] = np.asarray(res.statistic, dtype=np.float32)
        sig[pid] = np.asarray(res.significant, dtype=bool)
    group = None
    if result.group is not None:
        g = result.group
        group = {"q": np.asarray(g.q, dtype=np.float32), "p": np.asarray(g.p, dtype=np.float32),
                 "t": np.asarray(g.statistic, dtype=np.float32), "effect": np.asarray(g.effect, dtype=np.float32),
                 "significant": np.asarray(g.significant, dtype=bool)}
    return CompareMaps(list(result.participants), acc_a, acc_b, q, p, t, names, result.summary(), sig, group)


def roi_table(result, atlas, participant: str | None):
    """Per-ROI tests with ROI names (group level across participants when ``participant`` is
    None, else that participant's blocks), as :func:`brainviz.evaluation.compare.roi_tests`."""
    from brainviz.evaluation.compare import roi_tests

    table = roi_tests(result, atlas.labels, dict(atlas.names), participant=participant)
    return table.rename(columns={"a": "acc_a", "b": "acc_b"})


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
