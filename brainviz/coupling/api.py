"""The AN-BN coupling job: :class:`CouplingConfig`, :func:`run_coupling`, :class:`CouplingResult`.

``run_coupling(dataset, story, model, config)`` runs Liu et al. (2023) end to end:

1. BNs from the fMRI of all participants and all stories (:mod:`brainviz.coupling.networks`),
   cached per (dataset content, method, networks, preset, seed), so the second story reuses them;
2. AN time courses of the story (:mod:`brainviz.coupling.neurons`) and, with ``pos``, the POS
   tags of every AN (:mod:`brainviz.coupling.pos`), cached per (dataset, story, model, settings);
3. the coupling with permutation tests (:mod:`brainviz.coupling.couple`).

The whole result is cached in ``data_cache/coupling/`` keyed by dataset content + model +
config, so the app and the CLI share it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from brainviz._io import json_default
from brainviz.config import ConfigError, JobConfig
from brainviz.coupling import couple as _couple
from brainviz.coupling import networks as _networks
from brainviz.coupling import pos as _pos
from brainviz.coupling.neurons import AttentionShape, CouplingError, an_index, an_number
from brainviz.data.dataset import Dataset

RESULT_VERSION = 3  # 2: exact circular null (p >= 1/T), test names, reachability; 3: progress while loading
Progress = Callable[[float, str], None]


@dataclasses.dataclass(frozen=True)
class CouplingConfig(JobConfig):
    """Options of the AN-BN coupling job.

    Defaults: spatial ICA on participant-averaged data (``bn="ica"``, ``group="average"``),
    which recovers planted networks at or near the oracle ceiling on the simulation
    (``docs/coupling.md``); the paper's VS-DBN on all participants' TRs is
    ``bn="vsdbn", group="concat"``.

    Attributes
    ----------
    bn : 'vsdbn' or 'ica'
        How BNs (functional networks) are extracted (default 'ica').
    n_networks : int, optional
        Number of BNs (VS-DBN third-layer units / ICA components); default from the preset
        (paper 128, quick 32).
    preset : 'quick' or 'paper'
        VS-DBN / ICA training settings (see :mod:`brainviz.coupling.networks`).
    group : 'concat' or 'average'
        Train the networks on the TRs of all participants (paper) or on the participant
        average of each story (default).
    permutations : int
        Null draws for the p-values (0: no test).
    null : 'circular' or 'phase'
        Null model keeping autocorrelation (see :mod:`brainviz.coupling.couple`).
    selection : 'max' or 'pair'
        Null of the maximum over partners (accounts for picking the best BN/AN; default) or
        of the chosen pair only (per-pair test, anti-conservative).
    alpha : float
        FDR level for the ``significant`` column.
    r_threshold : float
        r below which an AN counts as weakly coupled (per-layer fraction) and at or above which
        it anchors its best BN (most-anchored BN).
    top_k : int
        Query-key pairs per segment used to tag an AN with POS categories.
    max_tokens : int
        Segment length limit (special tokens included).
    hrf_oversampling : int
        Temporal oversampling of the HRF convolution (1: TR resolution).
    include_special : bool
        Count [CLS]/[SEP] in the TRs of their segment's first/last word.
    trim : bool
        Use only the TRs from each story's first word to its last (paper: volumes before the
        story's onset and after its end are discarded), for BNs and ANs alike.
    pos : bool
        Compute POS tags (needs spaCy).
    shuffle_words : bool
        Null control: shuffle the story's words before computing ANs.
    seed : int
        Seed of the BN training, permutations and word shuffling.
    cross_null : 'phase' or 'circular'
        Null of the cross-story test (:func:`cross_story_coupling`): phase-randomised
        (default; every draw distinct, so the p-value floor falls with more draws) or
        circularly shifted BN time courses (floor 1 / T).
    cross_permutations : int
        Null draws of the cross-story test; 0 (default) chooses enough for the FDR level to be
        reachable over the BNs (:func:`brainviz.coupling.couple.permutations_for_fdr`).
    """

    bn: str = "ica"
    n_networks: int | None = None
    preset: str = "quick"
    group: str = "average"
    permutations: int = 5000
    null: str = "circular"
    selection: str = "max"
    alpha: float = 0.05
    r_threshold: float = 0.25
    top_k: int = 500
    max_tokens: int = 512
    hrf_oversampling: int = 16
    include_special: bool = False
    trim: bool = True
    pos: bool = True
    shuffle_words: bool = False
    seed: int = 0
    cross_null: str = "phase"
    cross_permutations: int = 0

    def validate(self) -> None:
        if self.bn not in _networks.METHODS:
            raise ConfigError(f"CouplingConfig.bn must be one of {_networks.METHODS}, got {self.bn!r}")
        if self.group not in _networks.GROUPINGS:
            raise ConfigError(f"CouplingConfig.group must be one of {_networks.GROUPINGS}, got {self.group!r}")
        if self.preset not in _networks.PRESETS:
            raise ConfigError(f"CouplingConfig.preset must be one of {_networks.PRESETS}, got {self.preset!r}")
        if self.n_networks is not None and (not isinstance(self.n_networks, int) or self.n_networks < 1):
            raise ConfigError(f"CouplingConfig.n_networks must be a positive integer, got {self.n_networks!r}")
        if not isinstance(self.permutations, int) or self.permutations < 0:
            raise ConfigError(f"CouplingConfig.permutations must be an integer >= 0, got {self.permutations!r}")
        if self.null not in _couple.NULLS:
            raise ConfigError(f"CouplingConfig.null must be one of {_couple.NULLS}, got {self.null!r}")
        if self.selection not in _couple.SELECTIONS:
            raise ConfigError(f"CouplingConfig.selection must be one of {_couple.SELECTIONS}, got {self.selection!r}")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"CouplingConfig.alpha must be in (0, 1), got {self.alpha}")
        if not -1 <= self.r_threshold <= 1:
            raise ConfigError(f"CouplingConfig.r_threshold must be in [-1, 1], got {self.r_threshold}")
        if self.top_k < 1:
            raise ConfigError(f"CouplingConfig.top_k must be >= 1, got {self.top_k}")
        if self.max_tokens < 8:
            raise ConfigError(f"CouplingConfig.max_tokens must be >= 8, got {self.max_tokens}")
        if self.hrf_oversampling < 1:
            raise ConfigError(f"CouplingConfig.hrf_oversampling must be >= 1, got {self.hrf_oversampling}")
        if self.cross_null not in _couple.NULLS:
            raise ConfigError(f"CouplingConfig.cross_null must be one of {_couple.NULLS}, got {self.cross_null!r}")
        if not isinstance(self.cross_permutations, int) or self.cross_permutations < 0:
            raise ConfigError(f"CouplingConfig.cross_permutations must be an integer >= 0, got {self.cross_permutations!r}")

    def cross_draws(self, n_bns: int) -> int:
        """Null draws of the cross-story test for ``n_bns`` tests (see ``cross_permutations``)."""
        return int(self.cross_permutations or _couple.permutations_for_fdr(n_bns, self.alpha))

    @property
    def networks(self) -> int:
        """The number of BNs actually used."""
        return int(self.n_networks or _networks.default_n_networks(self.bn, self.preset))


# --------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------


def an_name(layer: int, head: int, dim: int) -> str:
    """Paper-style name, 0-based: ``L{layer}H{head}D{dim}``."""
    return f"L{int(layer)}H{int(head)}D{int(dim)}"


@dataclasses.dataclass
class CouplingResult:
    """Everything the AN-BN page and the CLI need for one (dataset, story, model, config).

    Indices are 0-based: ``an = (layer * n_heads + head) * head_dim + dim``; BN ``k`` is row ``k``
    of :attr:`maps`.
    """

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    # -- basic facts --------------------------------------------------------------------
    @property
    def story(self) -> str:
        return self.meta["story"]

    @property
    def simulated(self) -> bool:
        return bool(self.meta["simulated"])

    @property
    def config(self) -> CouplingConfig:
        return CouplingConfig.from_dict(self.meta["config"])

    @property
    def shape(self) -> AttentionShape:
        s = self.meta["shape"]
        return AttentionShape(s["n_layers"], s["n_heads"], s["head_dim"])

    @property
    def n_ans(self) -> int:
        return self.shape.n_ans

    @property
    def n_bns(self) -> int:
        return int(self.arrays["maps"].shape[0])

    @property
    def r(self) -> np.ndarray:
        """Pearson r of every AN (rows) with every BN (columns)."""
        return self.arrays["r"]

    @property
    def maps(self) -> np.ndarray:
        """BN spatial maps (n_bns x n_units)."""
        return self.arrays["maps"]

    @property
    def times(self) -> np.ndarray:
        """Acquisition time (s) of every TR of the story (on its run's clock)."""
        return self.arrays["times"]

    # -- tables -------------------------------------------------------------------------
    def pairs(self):
        """One row per AN: its best BN (Eq. 1) with r, permutation p, BH q, and POS tag."""
        import pandas as pd

        a = self.arrays
        idx = an_index(self.shape)
        df = pd.DataFrame({
            "an": np.arange(self.n_ans),
            "layer": idx["layer"], "head": idx["head"], "dim": idx["dim"],
            "name": [an_name(*t) for t in zip(idx["layer"], idx["head"], idx["dim"])],
            "bn": a["an_best_bn"].astype(np.int64),
            "r": a["an_r"].astype(np.float64),
            "p": a["an_p"], "q": a["an_q"],
        })
        df["significant"] = df["q"] <= self.meta["config"]["alpha"]
        df["test"] = self.test_names()["an_best_bn"]
        if "pos_counts" in a:
            df["tag"] = [_pos.PAIR_LABELS[t] for t in _pos.an_tags(a["pos_counts"])]
        df["simulated"] = self.simulated
        return df

    def bn_pairs(self):
        """One row per BN: its best AN (Eq. 2) with r, p, q and how many ANs it anchors."""
        import pandas as pd

        a = self.arrays
        idx = an_index(self.shape)
        best = a["bn_best_an"].astype(np.int64)
        df = pd.DataFrame({
            "bn": np.arange(self.n_bns),
            "an": best,
            "layer": idx["layer"][best], "head": idx["head"][best], "dim": idx["dim"][best],
            "name": [an_name(idx["layer"][i], idx["head"][i], idx["dim"][i]) for i in best],
            "r": a["bn_r"].astype(np.float64), "p": a["bn_p"], "q": a["bn_q"],
        })
        df["significant"] = df["q"] <= self.meta["config"]["alpha"]
        df["test"] = self.test_names()["bn_best_an"]
        df["n_anchored"] = self.anchor_counts()
        return df

    def test_names(self) -> dict[str, str]:
        """The test behind each reported p-value (one documented test per number)."""
        cfg = self.meta["config"]
        n_perm = self.meta.get("n_permutations_used", cfg["permutations"])
        null = ("circular-shift null (all lags, exact)" if cfg["null"] == "circular" and
                n_perm >= self.n_trs - 1 else f"{cfg['null']} null ({n_perm} draws)")
        sel = {"max": "null of the maximum over partners", "pair": "per-pair null (ignores the selection)"}
        return {
            "an_best_bn": f"Eq. 1: AN's best BN, {sel[cfg['selection']]} over BNs, {null}, BH over ANs",
            "bn_best_an": f"Eq. 2: BN's best AN, {sel[cfg['selection']]} over ANs, {null}, BH over BNs",
        }

    @property
    def n_trs(self) -> int:
        return int(self.arrays["times"].shape[0])

    def reachability(self) -> dict[str, dict[str, Any]]:
        """Whether each table's FDR level is reachable (see :func:`brainviz.coupling.couple.reachability`)."""
        cfg = self.meta["config"]
        n_perm = int(self.meta.get("n_permutations_used", cfg["permutations"]))
        return {
            "an_best_bn": _couple.reachability(self.n_ans, self.n_trs, n_perm, cfg["alpha"], cfg["null"]),
            "bn_best_an": _couple.reachability(self.n_bns, self.n_trs, n_perm, cfg["alpha"], cfg["null"]),
        }

    def anchor_counts(self) -> np.ndarray:
        """ANs anchored by each BN: best BN with r >= r_threshold."""
        return _couple.anchor_counts(self.pairs(), self.n_bns, self.meta["config"]["r_threshold"])

    def layer_summary(self):
        """Per layer: mean/std/max best r, fraction below r_threshold, fraction significant, best pair,
        and the number of BNs whose best AN (Eq. 2) lies in the layer."""
        cfg = self.meta["config"]
        return _couple.layer_summary(self.pairs(), cfg["r_threshold"], cfg["alpha"], self.bn_pairs())

    def best_pair_per_layer(self):
        """The AN-BN pair with the largest r in each layer."""
        p = self.pairs()
        return p.loc[p.groupby("layer")["r"].idxmax()].reset_index(drop=True)

    def most_anchored_bn(self) -> dict[str, Any]:
        """The BN anchored by the most ANs (r >= r_threshold) and the counts of all BNs."""
        counts = self.anchor_counts()
        k = int(np.argmax(counts))
        return {"bn": k, "n_anchored": int(counts[k]), "counts": counts.tolist(),
                "r_threshold": self.meta["config"]["r_threshold"]}

    # -- per-neuron data ----------------------------------------------------------------
    def _an(self, an: int | tuple[int, int, int]) -> int:
        if isinstance(an, (tuple, list)):
            return an_number(self.shape, *an)
        an = int(an)
        if not 0 <= an < self.n_ans:
            raise CouplingError(f"AN {an} out of range [0, {self.n_ans})")
        return an

    def _bn(self, bn: int) -> int:
        bn = int(bn)
        if not 0 <= bn < self.n_bns:
            raise CouplingError(f"BN {bn} out of range [0, {self.n_bns})")
        return bn

    def bn_map(self, bn: int) -> np.ndarray:
        """Spatial map of one BN (n_units,), e.g. 20,484 fsaverage5 vertices."""
        return self.maps[self._bn(bn)]

    def an_timecourse(self, an: int | tuple[int, int, int], convolved: bool = True) -> np.ndarray:
        """Time course of one AN (index or (layer, head, dim)); raw activations with ``convolved=False``."""
        key = "an_timecourses" if convolved else "an_activations"
        return self.arrays[key][:, self._an(an)]

    def an_timecourses(self, convolved: bool = True) -> np.ndarray:
        return self.arrays["an_timecourses" if convolved else "an_activations"]

    def bn_timecourse(self, bn: int) -> np.ndarray:
        """Participant-averaged time course of one BN in this story."""
        return self.arrays["bn_timecourses"][:, self._bn(bn)]

    def bn_timecourses(self) -> np.ndarray:
        return self.arrays["bn_timecourses"]

    def _need_pos(self) -> None:
        if "pos_counts" not in self.arrays:
            raise CouplingError("POS tags were not computed (CouplingConfig.pos=False)")

    def an_pos_distribution(self, an: int | tuple[int, int, int]):
        """17 x 17 counts (query category x key category) of one AN's top query-key pairs."""
        self._need_pos()
        return _pos.pos_table(self.arrays["pos_counts"][self._an(an)])

    def tag_distribution(self):
        """How many ANs carry each ``QUERY→KEY`` tag in this story."""
        self._need_pos()
        return _pos.tag_distribution(self.arrays["pos_counts"])

    def text_heatmap(self, an: int | tuple[int, int, int]) -> dict[str, Any]:
        """Tokens with their query/key magnitudes over one AN's top pairs, and the pairs themselves.

        Computed from the stored queries/keys (kept at float16 precision).
        """
        self._need_pos()
        i = self._an(an)
        a = self.arrays
        bounds = [tuple(int(x) for x in b) for b in a["segment_bounds"]]
        tp = _pos.top_pairs(a["q"][:, [i]].astype(np.float32), a["k"][:, [i]].astype(np.float32), bounds,
                            int(self.meta["config"]["top_k"]))
        out = _pos.text_heatmap([str(t) for t in a["tokens"]], a["token_word"], a["token_tr"], a["token_segment"],
                                a["token_category"], tp.query[0], tp.key[0], tp.value[0])
        out["an"] = i
        out["words"] = [str(w) for w in a["words"]]
        return out

    # -- output -------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """JSON-able summary: settings, per-layer summary, best pairs, BN-wise pairs, tags."""
        p = self.pairs()
        out = {
            "dataset": self.meta["dataset"],
            "story": self.story,
            "model": self.meta["model"],
            "simulated": self.simulated,
            "config": self.meta["config"],
            "shape": self.meta["shape"],
            "n_ans": self.n_ans,
            "n_bns": self.n_bns,
            "n_trs": int(self.arrays["times"].shape[0]),
            "segments": self.meta.get("segments"),
            "networks": self.meta.get("networks"),
            "n_significant_ans": int(p["significant"].sum()),
            "frac_significant_ans": float(p["significant"].mean()),
            "tests": self.test_names(),
            "reachability": self.reachability(),
            "mean_best_r": float(p["r"].mean()),
            "layers": _records(self.layer_summary()),
            "best_pair_per_layer": _records(self.best_pair_per_layer().drop(columns=["simulated"])),
            "bn_pairs": _records(self.bn_pairs()),
            "most_anchored_bn": self.most_anchored_bn(),
        }
        if "pos_counts" in self.arrays:
            out["tag_distribution"] = {k: int(v) for k, v in self.tag_distribution().items()}
        return out

    def save(self, out: str | os.PathLike) -> dict[str, Path]:
        """Write the pairs table (``.csv`` or ``.parquet`` by extension), ``<stem>.summary.json``
        and ``<stem>.maps.npy`` (BN maps, n_bns x n_units) beside it; return the paths."""
        from brainviz._io import atomic_path, write_json, write_npy

        out = Path(out)
        ext = out.suffix.lower()
        if ext not in (".csv", ".parquet"):
            raise CouplingError(f"{out}: output must end in .csv or .parquet")
        df = self.pairs()
        with atomic_path(out) as tmp:
            if ext == ".csv":
                df.to_csv(tmp, index=False)
            else:
                df.to_parquet(tmp, index=False)
        stem = out.with_suffix("")
        summary = stem.parent / f"{stem.name}.summary.json"
        maps = stem.parent / f"{stem.name}.maps.npy"
        write_json(summary, self.summary())
        write_npy(maps, self.maps.astype(np.float32))
        return {"pairs": out, "summary": summary, "maps": maps}

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {**self.arrays, "meta": np.array(json.dumps(self.meta, sort_keys=True, default=json_default))}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "CouplingResult":
        arrays = dict(arrays)
        meta = json.loads(str(arrays.pop("meta")))
        return cls(meta, arrays)




def _records(df) -> list[dict[str, Any]]:
    out = []
    for rec in df.to_dict(orient="records"):
        clean = {}
        for k, v in rec.items():
            if isinstance(v, np.generic):
                v = v.item()
            if isinstance(v, float) and not np.isfinite(v):
                v = None
            clean[str(k)] = v
        out.append(clean)
    return out


# --------------------------------------------------------------------------------------
# Cache keys
# --------------------------------------------------------------------------------------


def dataset_key(dataset: Dataset, cache=None) -> str:
    """Content hash of a dataset: stimulus table, TRs, runs and every fMRI array's bytes."""
    from brainviz._io import content_hash
    from brainviz.cache import cached_file_hash

    parts: list[Any] = [dataset.stimulus.to_csv(index=False).encode()]
    for pid in sorted(dataset.fmri):
        rec = dataset.fmri[pid]
        fname = getattr(rec.data, "filename", None)
        if fname and Path(fname).is_file():
            data_hash = cached_file_hash(fname, cache)
        else:
            data_hash = content_hash(np.ascontiguousarray(rec.data))
        parts.append([pid, rec.tr, [[r.name, r.n_trs, r.start] for r in rec.runs], rec.space.kind, data_hash])
    return content_hash("dataset", parts)


def model_key(model: str | os.PathLike, cache=None) -> str:
    """Content hash of a model: the bytes of every file of its folder (or the hub id)."""
    from brainviz._io import content_hash
    from brainviz.cache import cached_file_hash
    from brainviz.models.encoder import resolve_model

    where = resolve_model(model)
    folder = Path(where)
    if not folder.is_dir():
        return content_hash("hub", where)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    return content_hash("model", [[str(p.relative_to(folder)), cached_file_hash(p, cache)] for p in files])


# --------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------


def _stage(progress: Progress | None, lo: float, hi: float) -> Progress | None:
    if progress is None:
        return None
    return lambda f, msg: progress(lo + (hi - lo) * max(0.0, min(1.0, f)), msg)


def compute_networks(dataset: Dataset, config: CouplingConfig, progress: Progress | None = None,
                     cache=None, device: str | None = None) -> _networks.BrainNetworks:
    """BNs of the dataset for this config, from the cache when there."""
    from brainviz._io import content_hash

    def compute() -> dict[str, np.ndarray]:
        bn = _networks.fit_networks(dataset, config.bn, config.networks, config.preset, config.seed, device, progress,
                                    config.trim, config.group)
        return bn.to_arrays()

    if cache is None:
        return _networks.BrainNetworks.from_arrays(compute())
    key = content_hash("coupling-networks", RESULT_VERSION, dataset_key(dataset, cache), config.bn, config.networks,
                       config.preset, config.seed, config.trim, config.group)
    return _networks.BrainNetworks.from_arrays(cache.arrays("coupling-networks", key, compute))


def compute_neurons(dataset: Dataset, story: str, model: str | os.PathLike, config: CouplingConfig,
                    progress: Progress | None = None, cache=None, device: str | None = None) -> dict[str, np.ndarray]:
    """AN time courses (+ POS data) of one story as arrays, from the cache when there."""
    from brainviz._io import content_hash
    from brainviz.coupling.neurons import compute_an_timecourses, story_grid

    story_grid(dataset, story, config.trim)  # clear errors before loading a model

    def compute() -> dict[str, np.ndarray]:
        from brainviz.models.encoder import load_encoder

        if progress:
            progress(0.0, f"loading model {model}")
        enc, tok = load_encoder(model, device=device or "cpu")
        if progress:
            progress(0.1, "queries and keys")
        an = compute_an_timecourses(
            dataset, story, enc, tok, max_tokens=config.max_tokens, hrf_oversampling=config.hrf_oversampling,
            include_special=config.include_special,
            shuffle_seed=(config.seed if config.shuffle_words else None), keep_qk=config.pos, trim=config.trim,
        )
        tr_ = an.transcript
        out = {
            "an_activations": an.activations,
            "an_timecourses": an.timecourses,
            "times": tr_.grid.times(),
            "tokens_per_tr": an.tokens_per_tr,
            "shape": np.array([an.shape.n_layers, an.shape.n_heads, an.shape.head_dim]),
            "tokens": np.array(tr_.tokens, dtype=str),
            "words": np.array(tr_.words, dtype=str),
            "token_word": tr_.word_index,
            "token_tr": tr_.token_tr,
            "token_segment": tr_.segment,
            "segment_bounds": np.array(tr_.segment_bounds, dtype=np.int64).reshape(-1, 2),
        }
        if config.pos:
            if progress:
                progress(0.5, "part-of-speech tags")
            cats = _pos.token_categories(tr_)
            tp = _pos.top_pairs(an.q, an.k, tr_.segment_bounds, config.top_k)
            out["token_category"] = cats
            out["pos_counts"] = _pos.category_counts(tp, cats)
            out["q"] = an.q.astype(np.float16)
            out["k"] = an.k.astype(np.float16)
        if progress:
            progress(1.0, "ANs done")
        return out

    if cache is None:
        return compute()
    key = content_hash("coupling-neurons", RESULT_VERSION, dataset_key(dataset, cache), story, model_key(model, cache),
                       config.max_tokens, config.hrf_oversampling, config.include_special, config.shuffle_words,
                       config.seed if config.shuffle_words else None, config.pos, config.top_k, config.trim)
    return cache.arrays("coupling-neurons", key, compute)


_NOT_IN_RESULT = ("cross_null", "cross_permutations")  # settings of the cross-story test only


def result_key(dataset: Dataset, story: str, model: str | os.PathLike, config: CouplingConfig, cache=None) -> str:
    """Cache key of one :func:`run_coupling` result."""
    from brainviz._io import content_hash

    cfg = {k: v for k, v in config.to_dict().items() if k not in _NOT_IN_RESULT}
    return content_hash("coupling", RESULT_VERSION, dataset_key(dataset, cache), story, model_key(model, cache), cfg)


def run_coupling(
    dataset: Dataset | str | os.PathLike,
    story: str,
    model: str | os.PathLike = "pretrained",
    config: CouplingConfig | None = None,
    progress: Progress | None = None,
    *,
    cache: Any = True,
    device: str | None = None,
    cached_only: bool = False,
) -> CouplingResult | None:
    """Couple the ANs of ``model`` with the BNs of ``dataset`` on ``story``.

    Parameters
    ----------
    dataset : Dataset or path of a dataset folder
    story : str
        A story of the dataset (for listening data also its run label).
    model : str or path
        ``"pretrained"``, a checkpoint or a Hugging Face folder (see :func:`brainviz.models.load_encoder`).
    config : CouplingConfig
    progress : callable(fraction, message), optional
    cache : True (``data_cache/``), a :class:`brainviz.cache.Cache`, or False (no caching)
    device : torch device for the model and the VS-DBN (default: CUDA when available)
    cached_only : bool
        Return the cached result, or ``None`` when it is not cached (nothing is computed; the
        app uses this to restore a view from its URL).

    Raises
    ------
    CouplingError
        Story not in the dataset, words without timings, a model without attention queries/keys.
    """
    from brainviz.cache import Cache
    from brainviz.coupling.neurons import story_grid, story_words
    from brainviz.data.dataset import load_dataset

    config = config or CouplingConfig()
    if not isinstance(dataset, Dataset):
        dataset = load_dataset(dataset)
    grid = story_grid(dataset, story, config.trim)
    story_words(dataset, story, grid)  # words without timings fail here, before any training
    cache_obj = Cache() if cache is True else (cache or None)
    model_name = str(model)

    def compute() -> dict[str, np.ndarray]:
        bns = compute_networks(dataset, config, _stage(progress, 0.0, 0.5), cache_obj, device)
        if story not in bns.timecourses:
            raise CouplingError(f"story {story!r}: no participant has fMRI for it")
        ans = compute_neurons(dataset, story, model, config, _stage(progress, 0.5, 0.85), cache_obj, device)
        stats = _couple.couple(ans["an_timecourses"], bns.timecourses[story], config.permutations, config.null,
                               config.seed, progress=_stage(progress, 0.85, 1.0), selection=config.selection)
        shape = [int(x) for x in ans["shape"]]
        meta = {
            "version": RESULT_VERSION,
            "dataset": dataset.name,
            "dataset_path": str(dataset.path) if dataset.path else None,
            "story": story,
            "model": model_name,
            "simulated": bool(dataset.simulated),
            "config": config.to_dict(),
            "n_permutations_used": int(stats.n_permutations),
            "shape": {"n_layers": shape[0], "n_heads": shape[1], "head_dim": shape[2]},
            "tr": grid.tr,
            "runs": grid.runs,
            "segments": [int(b - a) for a, b in ans["segment_bounds"]],
            "networks": {"method": bns.method, **{k: v for k, v in bns.info.items() if k != "errors"},
                         "final_errors": [e[-1] for e in bns.info.get("errors", []) if e]},
        }
        arrays = {k: v for k, v in ans.items() if k != "shape"}
        arrays.update({
            "maps": bns.maps, "bn_timecourses": bns.timecourses[story],
            "r": stats.r, "an_best_bn": stats.an_best_bn, "an_r": stats.an_r, "an_p": stats.an_p, "an_q": stats.an_q,
            "bn_best_an": stats.bn_best_an, "bn_r": stats.bn_r, "bn_p": stats.bn_p, "bn_q": stats.bn_q,
        })
        return CouplingResult(meta, arrays).to_arrays()

    if cache_obj is None:
        if cached_only:
            return None
        result = CouplingResult.from_arrays(compute())
    else:
        key = result_key(dataset, story, model, config, cache_obj)
        if cached_only and not cache_obj.has("coupling", key, ".npz"):
            return None
        result = CouplingResult.from_arrays(cache_obj.arrays("coupling", key, compute))
    if progress:
        progress(1.0, "done")
    return result


def cross_story_coupling(
    dataset: Dataset | str | os.PathLike,
    select_stories: str | list[str],
    test_stories: str | list[str],
    model: str | os.PathLike = "pretrained",
    config: CouplingConfig | None = None,
    progress: Progress | None = None,
    *,
    cache: Any = True,
    device: str | None = None,
    cached_only: bool = False,
):
    """Cross-validated AN-BN pairs: one test per BN (see :func:`brainviz.coupling.couple.cross_story_pairs`).

    For every BN its best AN (largest ``|r|``) is chosen on ``select_stories`` and tested on
    ``test_stories`` (each a story or a list; several stories are concatenated after z-scoring
    each one's time courses), one-sided in the selected direction, with the null of
    ``config.cross_null`` (phase randomisation by default: the BN time courses' power spectra
    are kept) and ``config.cross_draws(n_bns)`` draws, so the FDR level is reachable; BH over
    BNs. The BNs are the same in every story (networks are trained on all stories' fMRI), so
    the pairs carry over. Each story's time courses come from :func:`run_coupling` (cached).
    With ``config.shuffle_words`` the ANs of every story come from shuffled words (null control).

    Returns
    -------
    DataFrame with ``bn, an, name, layer, head, dim, r_select, r_test, ci_low, ci_high,
    null_sd, p, q, significant, r_word_rate, direction, test, select, test_on, n_trs_test,
    shuffled_words, simulated`` (``r_word_rate``: r of the BN's test time course with the
    HRF-convolved tokens per TR, i.e. how much speech rate drives it) and,
    in ``.attrs``, the test and the reachability of the FDR level; ``None`` with
    ``cached_only`` when a story's result is not cached.
    """
    import pandas as pd

    from brainviz.coupling.couple import cross_story_pairs, zscore_columns
    from brainviz.coupling.neurons import convolve_hrf

    config = config or CouplingConfig()
    sel = [select_stories] if isinstance(select_stories, str) else list(select_stories)
    tst = [test_stories] if isinstance(test_stories, str) else list(test_stories)
    if not sel or not tst:
        raise CouplingError("cross-story pairing needs at least one selection story and one test story")
    if set(sel) & set(tst):
        raise CouplingError(f"selection and test stories overlap ({sorted(set(sel) & set(tst))}): select on one story, "
                            "test on another")
    if not isinstance(dataset, Dataset):
        from brainviz.data.dataset import load_dataset

        dataset = load_dataset(dataset)
    results = {}
    stories = sel + tst
    for i, story in enumerate(stories):
        results[story] = run_coupling(dataset, story, model, config, _stage(progress, i / len(stories),
                                      (i + 1) / len(stories)), cache=cache, device=device, cached_only=cached_only)
        if results[story] is None:
            return None

    def stack(names: list[str], what: str) -> np.ndarray:
        parts = [results[n].an_timecourses() if what == "an" else results[n].bn_timecourses() for n in names]
        return np.concatenate([zscore_columns(x) for x in parts], axis=0)

    n_bns = results[sel[0]].n_bns
    # how much of each BN's test time course the speech rate explains: r with the HRF-convolved
    # number of tokens per TR (word rate survives word shuffling, which keeps the timings)
    rate = np.concatenate([zscore_columns(convolve_hrf(results[n].arrays["tokens_per_tr"].astype(np.float64)[:, None],
                                                       float(results[n].meta["tr"]), 16)) for n in tst], axis=0)
    r_rate = (zscore_columns(stack(tst, "bn")).T.astype(np.float64) @ rate.astype(np.float64))[:, 0]
    cs = cross_story_pairs(stack(sel, "an"), stack(sel, "bn"), stack(tst, "an"), stack(tst, "bn"),
                           n_permutations=config.cross_draws(n_bns), seed=config.seed, null=config.cross_null)
    first = results[sel[0]]
    idx = an_index(first.shape)
    df = pd.DataFrame({
        "bn": cs.bn, "an": cs.an, "name": [an_name(idx["layer"][i], idx["head"][i], idx["dim"][i]) for i in cs.an],
        "layer": idx["layer"][cs.an], "head": idx["head"][cs.an], "dim": idx["dim"][cs.an],
        "r_select": cs.r_select, "r_test": cs.r_test, "ci_low": cs.ci_low, "ci_high": cs.ci_high,
        "null_sd": cs.null_sd, "p": cs.p, "q": cs.q, "significant": cs.q <= config.alpha, "r_word_rate": r_rate,
        "direction": np.where(cs.r_select >= 0, "+", "-"), "test": cs.test,
        "select": "+".join(sel), "test_on": "+".join(tst), "n_trs_test": cs.n_trs_test,
        "shuffled_words": bool(config.shuffle_words), "simulated": bool(dataset.simulated),
    })
    df.attrs["reachability"] = _couple.reachability(len(cs.bn), cs.n_trs_test, cs.n_permutations, config.alpha,
                                                    config.cross_null)
    df.attrs["test"] = cs.test
    return df


def validated_pairs(
    dataset: Dataset | str | os.PathLike,
    model: str | os.PathLike = "pretrained",
    config: CouplingConfig | None = None,
    progress: Progress | None = None,
    *,
    stories: list[str] | None = None,
    cache: Any = True,
    device: str | None = None,
    cached_only: bool = False,
):
    """Cross-story validated pairs of every story: each story is the test story once, its pairs
    selected on all the other stories (:func:`cross_story_coupling`).

    Returns one DataFrame (rows of every test story; ``test_on`` names it), sorted by test story,
    then significant pairs first, then q; ``None`` with ``cached_only`` when something is not
    cached. A dataset with a single story raises :class:`CouplingError`.
    """
    import pandas as pd

    config = config or CouplingConfig()
    if not isinstance(dataset, Dataset):
        from brainviz.data.dataset import load_dataset

        dataset = load_dataset(dataset)
    stories = list(stories or dataset.stories)
    if len(stories) < 2:
        raise CouplingError(f"dataset {dataset.name!r} has {len(stories)} story: validated pairs need two "
                            "(select on one, test on another)")
    parts = []
    for i, story in enumerate(stories):
        others = [s for s in stories if s != story]
        df = cross_story_coupling(dataset, others, story, model, config,
                                  _stage(progress, i / len(stories), (i + 1) / len(stories)), cache=cache,
                                  device=device, cached_only=cached_only)
        if df is None:
            return None
        parts.append(df)
    out = pd.concat(parts, ignore_index=True)
    out["_order"] = out["test_on"].map({s: i for i, s in enumerate(stories)})
    out = out.sort_values(["_order", "significant", "q"], ascending=[True, False, True]).drop(columns="_order")
    out = out.reset_index(drop=True)
    out.attrs.update(parts[0].attrs)
    return out
