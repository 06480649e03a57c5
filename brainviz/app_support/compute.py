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
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

Progress = Callable[[float, str], None]


def model_stamp(path: str) -> tuple:
    """(path, card mtime, (file, size, mtime) of every prediction file): changes when a model is rewritten."""
    from pathlib import Path

    root = Path(path)
    card = root / "card.json"
    files = sorted(root.rglob("*.npz")) if root.is_dir() else []
    return (str(path), card.stat().st_mtime if card.is_file() else 0.0,
            tuple((str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime) for f in files))


def _merged_key(model_a: str, model_b: str, participants: Sequence[str], config, dataset: str | None) -> str:
    from brainviz._io import content_hash

    # "group-test-2": pooled fits are tested per held-out run since issue 12 (older entries are stale)
    return content_hash("compare-merged", "group-test-2", repr((model_stamp(model_a), model_stamp(model_b),
                                                                tuple(participants), config.key(), dataset)))


def cached_comparison(model_a: str, model_b: str, participants: Sequence[str], config, *,
                      dataset: str | None = None):
    """The merged comparison (every test already run) stored by :func:`compare_with_progress`
    for exactly these models (same files), participants and settings; None when there is none.

    A shared link opened after a server restart then shows its maps without rerunning the
    permutation tests."""
    import numpy as np

    from brainviz.cache import Cache
    from brainviz.evaluation.compare import ComparisonResult

    key = _merged_key(model_a, model_b, participants, config, dataset)
    cache = Cache()
    if not cache.has("compare-merged", key, ".npz"):
        return None
    try:
        with np.load(cache.path("compare-merged", key, ".npz"), allow_pickle=False) as npz:
            result = ComparisonResult.from_arrays({k: npz[k] for k in npz.files}, config)
    except (OSError, ValueError, KeyError):  # unreadable entry: compute again
        return None
    result.meta["from_cache"] = True
    return result


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
    """:class:`~brainviz.evaluation.compare.ComparisonResult` of A vs B over ``participants``.

    The merged result is also stored on disk (see :func:`cached_comparison`)."""
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
    try:
        from brainviz.cache import Cache

        Cache().arrays("compare-merged", _merged_key(model_a, model_b, participants, config, dataset), merged.to_arrays)
    except OSError:  # a read-only cache: the caller still has the result
        pass
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


ATTENTION_CACHE = "attention"


def attention_cache_file(source: str, windows: Sequence[Sequence[str]]) -> Path:
    """``<cache>/attention/<hash>.npy`` of a model's read-outs on these windows; the hash covers
    the source and, for a checkpoint, its ``card.json`` time (a retrained checkpoint is new)."""
    from brainviz import paths
    from brainviz._io import content_hash

    stamp = 0.0
    card = Path(source) / "card.json"
    if source != "pretrained" and card.is_file():
        stamp = card.stat().st_mtime
    key = content_hash("cls-attention-v1", str(source), stamp, [list(map(str, w)) for w in windows])
    return paths.cache_dir() / ATTENTION_CACHE / f"{key}.npy"


def cached_attention_readouts(source: str, windows: Sequence[Sequence[str]], encoder_pair=None) -> tuple[np.ndarray, bool]:
    """:func:`attention_readouts` read from / written to the on-disk cache (shared by sessions
    and server restarts); returns ``(read-outs, from_cache)``."""
    from brainviz._io import write_npy

    f = attention_cache_file(source, windows)
    if f.is_file():
        try:
            return np.load(f, allow_pickle=False), True
        except (OSError, ValueError):
            pass  # a damaged cache file: recompute
    att = attention_readouts(source, windows, encoder_pair=encoder_pair)
    f.parent.mkdir(parents=True, exist_ok=True)
    write_npy(f, np.asarray(att, dtype=np.float32))
    return att, False


def window_attention(encoder_pair, words: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Tokens and every layer's attention ``(layers, heads, tokens, tokens)`` of one window
    (rows: queries, columns: keys), tokenised as for the [CLS] read-outs."""
    import torch

    from brainviz.models.brain_model import DEFAULT_MAX_LENGTH, tokenize_windows

    encoder, tokenizer = encoder_pair
    tok = tokenize_windows(tokenizer, [list(words)], DEFAULT_MAX_LENGTH)
    dev = next(encoder.parameters()).device
    with torch.no_grad():
        att = encoder(**tok.batch([0], dev), output_attentions=True).attentions
    tokens = tokenizer.convert_ids_to_tokens(tok.input_ids[0])
    return list(tokens), torch.stack([a[0] for a in att]).float().cpu().numpy()


# --------------------------------------------------------------------------------------
# checkpoint card: held-out r where it means something
# --------------------------------------------------------------------------------------

TOP_FRACTION = 0.05


def _columnwise_r(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pearson r of each column (NaN where a column is constant)."""
    p = pred - pred.mean(axis=0)
    t = target - target.mean(axis=0)
    den = np.sqrt((p * p).sum(axis=0) * (t * t).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (p * t).sum(axis=0) / den, np.nan)


def heldout_r_by_run(path: str, dataset: str | None = None,
                     participants: Sequence[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Per-unit held-out Pearson r of a checkpoint: ``{participant: {run: r (n_units,)}}``
    (predictions averaged over seeds; each run's rows were predicted by the fit that held it out)."""
    from brainviz.evaluation import io

    scan = io.scan_heldout(path)
    pids = io.select_participants(scan, participants)
    out: dict[str, dict[str, np.ndarray]] = {}
    for pid in pids:  # one participant at a time: a whole-cortex recording is ~60 MB per participant
        held = io.load_heldout(scan["path"], [pid])
        data, t_index = io.load_targets(scan, [pid], dataset=dataset)[pid]
        rows = io.align_rows(t_index, held["tr_index"][pid], f"participant {pid!r}")
        target = io.target_columns(np.asarray(data)[rows], held["units"].get(pid), f"participant {pid!r}")
        pred = np.asarray(held["predictions"][pid], dtype=np.float32).mean(axis=0)
        runs = np.asarray(held["runs"][pid]).astype(str)
        out[pid] = {run: _columnwise_r(pred[runs == run].astype(np.float64), target[runs == run].astype(np.float64))
                    for run in dict.fromkeys(runs)}
        del held, data, pred, target
    return out


def headline_metrics(r_by_run: dict[str, dict[str, np.ndarray]], roi_mask: np.ndarray | None = None,
                     roi_label: str | None = None, top_fraction: float = TOP_FRACTION) -> dict[str, Any]:
    """Summaries of per-unit held-out r that a reader can interpret.

    - ``all``: mean r over every unit (mostly noise on a whole cortex: near 0 whatever the model);
    - ``top``: *cross-run selection*: for each held-out run, the top ``top_fraction`` of units by
      mean r on the **other** runs, evaluated on this run (selection and evaluation use disjoint
      data, so the value is not inflated by the choice); mean over runs and participants;
    - ``roi`` (when ``roi_mask`` is given, e.g. the planted language regions of simulated data):
      mean r inside the mask and outside it.
    """
    all_r, top_r, n_top, inside, outside = [], [], [], [], []
    for runs in r_by_run.values():
        names = list(runs)
        stack = np.stack([runs[n] for n in names])  # runs x units
        with np.errstate(invalid="ignore"):
            all_r.append(float(np.nanmean(stack)))
            if len(names) >= 2:
                for i in range(len(names)):
                    other = np.nanmean(np.delete(stack, i, axis=0), axis=0)
                    finite = np.isfinite(other)
                    k = max(1, int(round(top_fraction * finite.sum())))
                    order = np.argsort(np.where(finite, other, -np.inf))[::-1][:k]
                    top_r.append(float(np.nanmean(stack[i, order])))
                    n_top.append(k)
            if roi_mask is not None and roi_mask.shape[0] == stack.shape[1] and roi_mask.any():
                inside.append(float(np.nanmean(stack[:, roi_mask])))
                outside.append(float(np.nanmean(stack[:, ~roi_mask])))
    n_units = int(next(iter(next(iter(r_by_run.values())).values())).size) if r_by_run else 0
    out: dict[str, Any] = {
        "n_units": n_units, "n_participants": len(r_by_run),
        "all": float(np.mean(all_r)) if all_r else None,
        "top": float(np.mean(top_r)) if top_r else None, "top_n_units": int(np.mean(n_top)) if n_top else 0,
        "top_fraction": top_fraction,
    }
    if inside:
        out["roi"] = {"label": roi_label or "ROI", "inside": float(np.mean(inside)), "outside": float(np.mean(outside)),
                      "n_units": int(roi_mask.sum())}
    return out
