"""Coupling ANs and BNs by the synchrony of their time courses (Liu et al. 2023, Eqs. 1-2).

``delta`` is Pearson's r between an AN time course and a BN time course. For each AN its best
BN is ``argmax_k r(AN, BN_k)`` (Eq. 1, signed r as in the paper) and for each BN its best AN is
``argmax_i r(BN, AN_i)`` (Eq. 2).

Significance
------------
The test statistic of an AN is its best r, i.e. the maximum over all BNs, so the null
distribution is that of the maximum too (the selection over BNs is accounted for). Null
time courses keep the autocorrelation of the data:

- ``circular`` (default): all BN time courses are shifted together by the same circular lag
  (1 .. T-1 TRs). Autocorrelation and the BN-to-BN correlations are kept exactly; only the
  alignment with the stimulus is broken. There are only ``T - 1`` distinct lags: when
  ``n_permutations >= T - 1`` every lag is used once and the p-value is exact,
  ``(1 + #{lags with null >= observed}) / T`` (never below ``1 / T``); with fewer
  permutations, random lags are drawn and the statistics are computed once per distinct lag,
  weighted by how often it was drawn.
- ``phase``: phase randomisation; the Fourier phases of all BN time courses are replaced by
  the same random phases (power spectra and cross-spectra kept), every draw distinct.

``selection="pair"`` instead compares each best pair's r with the null r of *that same pair*
(no maximum in the null): it ignores that the best BN was picked among all BNs, so it is
anti-conservative, but it is what a per-pair permutation test reports (likely what the
paper's "permutation test with 5000 randomizations" of the best PCC did).

``p = (1 + #{null >= observed}) / (1 + n_permutations)``; ``q`` are Benjamini-Hochberg
adjusted p-values (``scipy.stats.false_discovery_control``) over ANs (Eq. 1) or BNs (Eq. 2).
:func:`reachability` says whether the FDR level can be reached at all with that many tests and
permutations (an empty table must say when it cannot).

Cross-story pairing (:func:`cross_story_pairs`)
-----------------------------------------------
Picking the best of 2,304 ANs and testing it on the same data needs the max-statistic null
above; the cleaner design selects on one story and tests on another: for every BN, its best AN
(largest ``|r|``: couplings may be negative) is chosen on the selection story(ies) and only that
pair is tested on the test story(ies), one-sided in the direction found at selection, with the
circular-shift null. One test per BN, BH over BNs.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from brainviz.coupling.neurons import CouplingError

NULLS = ("circular", "phase")
SELECTIONS = ("max", "pair")


def zscore_columns(x: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit norm (constant columns become 0), float32."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    norm = np.sqrt((x * x).sum(axis=0, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(norm > 1e-12 * max(1.0, float(norm.max(initial=0.0))), x / norm, 0.0)
    return out.astype(np.float32)


def pearson_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between every column of ``a`` (T x N) and of ``b`` (T x K): (N x K)."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise CouplingError(f"time courses must be (T x N) and (T x K) with the same T, got {a.shape} and {b.shape}")
    return (zscore_columns(a).T.astype(np.float64) @ zscore_columns(b).astype(np.float64)).astype(np.float32)


@dataclasses.dataclass
class CouplingStats:
    """Eq. 1 and Eq. 2 with permutation p-values and FDR q-values.

    Attributes
    ----------
    r : float32 (n_ans, n_bns)
        Pearson r of every AN with every BN.
    an_best_bn, an_r, an_p, an_q : (n_ans,)
        Each AN's best BN (Eq. 1), its r, permutation p and BH q.
    bn_best_an, bn_r, bn_p, bn_q : (n_bns,)
        Each BN's best AN (Eq. 2), its r, p and q.
    n_permutations, null : the test used.
    """

    r: np.ndarray
    an_best_bn: np.ndarray
    an_r: np.ndarray
    an_p: np.ndarray
    an_q: np.ndarray
    bn_best_an: np.ndarray
    bn_r: np.ndarray
    bn_p: np.ndarray
    bn_q: np.ndarray
    n_permutations: int
    null: str
    selection: str = "max"


def _shift_block(bz: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """(T x K*S): BN matrix circularly shifted by each lag (shift s: row t -> row t + s)."""
    t = bz.shape[0]
    idx = (np.arange(t)[:, None] - shifts[None, :]) % t  # (T, S)
    return bz[idx].reshape(t, -1)


def _phase_block(bf: np.ndarray, t: int, rng: np.random.Generator, n: int) -> np.ndarray:
    """(T x K*n) phase-randomised surrogates of the BN matrix (rfft ``bf``), same phases for all BNs."""
    n_freq = bf.shape[0]
    phases = rng.uniform(0, 2 * np.pi, size=(n_freq, n))
    phases[0] = 0.0
    if t % 2 == 0:
        phases[-1] = 0.0  # Nyquist stays real
    rot = np.exp(1j * phases)  # (F, n)
    spec = bf[:, None, :] * rot[:, :, None]  # (F, n, K)
    sur = np.fft.irfft(spec, n=t, axis=0)  # (T, n, K)
    return sur.reshape(t, -1).astype(np.float32)


def couple(
    an_tc: np.ndarray,
    bn_tc: np.ndarray,
    n_permutations: int = 5000,
    null: str = "circular",
    seed: int = 0,
    chunk_columns: int = 16384,
    progress: Callable[[float, str], None] | None = None,
    selection: str = "max",
) -> CouplingStats:
    """Correlate ANs with BNs, pick best partners (Eqs. 1-2), test them by permutation.

    Parameters
    ----------
    an_tc : (T x n_ans) AN time courses.
    bn_tc : (T x n_bns) BN time courses of the same story.
    n_permutations : number of null draws (0: no test, p = q = NaN).
    null : 'circular' or 'phase' (see module docstring).
    chunk_columns : BN columns (BNs x draws) per matrix product; bounds memory to about
        ``n_ans x chunk_columns`` floats.
    selection : 'max' (null of the maximum over partners; default) or 'pair' (null of the
        chosen pair only), see the module docstring.
    """
    if null not in NULLS:
        raise CouplingError(f"unknown null {null!r}; expected one of {NULLS}")
    if selection not in SELECTIONS:
        raise CouplingError(f"unknown selection {selection!r}; expected one of {SELECTIONS}")
    an_tc = np.asarray(an_tc)
    bn_tc = np.asarray(bn_tc)
    if an_tc.ndim != 2 or bn_tc.ndim != 2 or an_tc.shape[0] != bn_tc.shape[0]:
        raise CouplingError(f"AN time courses {an_tc.shape} and BN time courses {bn_tc.shape} must share their TRs (axis 0)")
    t, n_ans = an_tc.shape
    k = bn_tc.shape[1]
    if t < 3:
        raise CouplingError(f"need at least 3 TRs to correlate, got {t}")
    az = zscore_columns(an_tc)
    bz = zscore_columns(bn_tc)
    r = az.T @ bz  # (N, K)
    an_best = np.argmax(r, axis=1)
    an_r = r[np.arange(n_ans), an_best]
    bn_best = np.argmax(r, axis=0)
    bn_r = r[bn_best, np.arange(k)]
    an_exceed = np.zeros(n_ans)
    bn_exceed = np.zeros(k)
    rng = np.random.default_rng(seed)
    n_perm = int(n_permutations)
    if n_perm > 0:
        if null == "circular":
            if n_perm >= t - 1:  # every lag once: exact
                lags, weights = np.arange(1, t), np.ones(t - 1, dtype=np.int64)
            else:
                draws = rng.integers(1, t, size=n_perm)
                lags, weights = np.unique(draws, return_counts=True)
            jobs = [(lags[i:i + max(1, chunk_columns // k)], weights[i:i + max(1, chunk_columns // k)])
                    for i in range(0, len(lags), max(1, chunk_columns // k))]
        else:
            bf = np.fft.rfft(bz.astype(np.float64), axis=0)
            step = max(1, chunk_columns // k)
            jobs = [(n, None) for n in [min(step, n_perm - i) for i in range(0, n_perm, step)]]
        done = 0
        for lag_or_n, w in jobs:
            if null == "circular":
                block = _shift_block(bz, lag_or_n)
                n_s = len(lag_or_n)
                weights_s = w.astype(np.float64)
            else:
                n_s = int(lag_or_n)
                block = _phase_block(bf, t, rng, n_s)
                block = zscore_columns(block)
                weights_s = np.ones(n_s)
            rs = (az.T @ block).reshape(n_ans, n_s, k)
            if selection == "max":
                an_null = rs.max(axis=2)  # (N, S)
                bn_null = rs.max(axis=0)  # (S, K)
            else:
                an_null = rs[np.arange(n_ans), :, an_best]  # (N, S)
                bn_null = rs[bn_best, :, np.arange(k)].T  # (S, K)
            an_exceed += (an_null >= an_r[:, None] - 1e-6).astype(np.float64) @ weights_s
            bn_exceed += weights_s @ (bn_null >= bn_r[None, :] - 1e-6).astype(np.float64)
            done += int(weights_s.sum())
            if progress:
                progress(done / n_perm, f"permutations {done}/{n_perm}")
        n_eff = n_perm if not (null == "circular" and n_perm >= t - 1) else t - 1
        an_p = (1.0 + an_exceed) / (1.0 + n_eff)
        bn_p = (1.0 + bn_exceed) / (1.0 + n_eff)
        n_perm = n_eff
        an_q = fdr(an_p)
        bn_q = fdr(bn_p)
    else:
        an_p = an_q = np.full(n_ans, np.nan)
        bn_p = bn_q = np.full(k, np.nan)
    return CouplingStats(
        r=r.astype(np.float32), an_best_bn=an_best.astype(np.int64), an_r=an_r.astype(np.float32),
        an_p=an_p, an_q=an_q, bn_best_an=bn_best.astype(np.int64), bn_r=bn_r.astype(np.float32),
        bn_p=bn_p, bn_q=bn_q, n_permutations=n_perm, null=null, selection=selection,
    )


def smallest_p(n_trs: int, n_permutations: int, null: str = "circular") -> float:
    """Smallest p-value of a coupling test (circular: ``1 / T`` once all lags are used)."""
    if n_permutations <= 0:
        return float("nan")
    if null == "circular" and n_permutations >= n_trs - 1:
        return 1.0 / n_trs
    return 1.0 / (1.0 + n_permutations)


def reachability(n_tests: int, n_trs: int, n_permutations: int, alpha: float, null: str = "circular") -> dict:
    """Whether BH at ``alpha`` over ``n_tests`` can be reached with this null.

    Returns the smallest achievable p, the q of a single unit at that p, how many tests must
    reach it together before any passes, and a message when a single test cannot pass.
    """
    from brainviz.evaluation.stats import min_discoveries, smallest_q

    p_min = smallest_p(n_trs, n_permutations, null)
    if not np.isfinite(p_min):
        return {"min_achievable_p": None, "min_achievable_q": None, "min_discoveries_needed": None,
                "message": "no permutation test was run (permutations = 0)"}
    q1 = smallest_q(p_min, n_tests, "bh")
    need = min_discoveries(p_min, n_tests, alpha, "bh")
    msg = None
    if q1 > alpha:
        floor = ("1/T with T = %d TRs (circular shifts)" % n_trs) if (null == "circular" and n_permutations >= n_trs - 1) \
            else f"1/(1 + {n_permutations} permutations)"
        msg = (f"with {n_tests} tests the smallest p ({p_min:.2g} = {floor}) gives q = {q1:.2g} for a single test: "
               + (f"at least {need} tests must reach it together to pass q <= {alpha:g}" if need else
                  f"no test can pass q <= {alpha:g}")
               + ("; more TRs (longer or concatenated stories) or fewer tests (cross-story pairing: one per BN) help"
                  if null == "circular" else "; raise the permutation count"))
    return {"min_achievable_p": float(p_min), "min_achievable_q": float(q1), "min_discoveries_needed": need,
            "message": msg}


@dataclasses.dataclass
class CrossStoryPairs:
    """One test per BN: its best AN picked on the selection data, tested on the test data.

    Attributes
    ----------
    bn, an : int (n_bns,)
        BN index and its AN chosen on the selection data (largest |r|).
    r_select, r_test : float (n_bns,)
        r of the pair on the selection and on the test data (``r_test`` is the effect size).
    p, q : float (n_bns,)
        One-sided permutation p-value on the test data in the direction of ``r_select``
        (phase-randomised or circularly shifted BN time courses); BH q over BNs.
    ci_low, ci_high : float (n_bns,)
        95 % interval of ``r_test``: percentile interval of a circular block bootstrap of the
        test TRs (blocks of ``block`` TRs keep the autocorrelation).
    null_sd : float (n_bns,)
        s.d. of the null r (how large a chance coupling is on these time courses).
    n_trs_select, n_trs_test, n_permutations : int
    null : str
    """

    bn: np.ndarray
    an: np.ndarray
    r_select: np.ndarray
    r_test: np.ndarray
    p: np.ndarray
    q: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_trs_select: int
    n_trs_test: int
    n_permutations: int
    null: str = "phase"
    null_sd: np.ndarray | None = None
    test: str = ""

    def __post_init__(self) -> None:
        if not self.test:
            what = {"phase": "phase-randomised BN time courses (power spectrum kept)",
                    "circular": "circularly shifted BN time courses"}[self.null]
            self.test = (f"cross-story: best AN per BN (largest |r|) selected on other stories, tested once on the "
                         f"test story, one-sided in the selected direction; null: {what}, {self.n_permutations} draws; "
                         "BH over BNs")


def permutations_for_fdr(n_tests: int, alpha: float = 0.05, floor: int = 1000) -> int:
    """Permutations that make BH at ``alpha`` over ``n_tests`` reachable with margin.

    A single test at the smallest p ``1 / (1 + n)`` gets ``q = n_tests / (1 + n)``; this asks
    for ``q <= alpha / 10`` (rounded up to a multiple of 1,000, at least ``floor``).
    """
    need = int(np.ceil(10.0 * max(int(n_tests), 1) / float(alpha)))
    return int(max(floor, int(np.ceil(need / 1000.0)) * 1000))


def _phase_surrogates(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, T, K) phase-randomised surrogates of the columns of ``x`` (each column its own phases)."""
    t = x.shape[0]
    f = np.fft.rfft(x, axis=0)  # (F, K)
    phases = rng.uniform(0.0, 2.0 * np.pi, size=(n, f.shape[0], f.shape[1]))
    phases[:, 0] = 0.0
    if t % 2 == 0:
        phases[:, -1] = 0.0
    return np.fft.irfft(f[None] * np.exp(1j * phases), n=t, axis=1)


def block_bootstrap_r(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, block: int = 10, seed: int = 0,
                      level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of the column-wise Pearson r of ``a`` and ``b`` (T x K) by circular block bootstrap."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    t = a.shape[0]
    block = int(max(1, min(block, t)))
    n_blocks = int(np.ceil(t / block))
    rng = np.random.default_rng(seed)
    rs = np.empty((n_boot, a.shape[1]))
    for i in range(n_boot):
        starts = rng.integers(0, t, size=n_blocks)
        idx = ((starts[:, None] + np.arange(block)[None, :]) % t).ravel()[:t]
        rs[i] = _colwise_r(a[idx], b[idx])
    lo = np.quantile(rs, (1.0 - level) / 2.0, axis=0)
    hi = np.quantile(rs, 1.0 - (1.0 - level) / 2.0, axis=0)
    return lo, hi


def _colwise_r(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(0)
    b = b - b.mean(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    return np.where(den > 0, (a * b).sum(0) / np.where(den > 0, den, 1.0), 0.0)


def cross_story_pairs(
    an_select: np.ndarray,
    bn_select: np.ndarray,
    an_test: np.ndarray,
    bn_test: np.ndarray,
    *,
    n_permutations: int = 5000,
    seed: int = 0,
    signed: bool = True,
    null: str = "phase",
    n_boot: int = 2000,
    block: int = 10,
    chunk: int = 500,
) -> CrossStoryPairs:
    """Cross-validated AN-BN pairing (see the module docstring).

    Parameters
    ----------
    an_select, bn_select : (T1 x n_ans), (T1 x n_bns) time courses used to pick the pairs.
    an_test, bn_test : (T2 x n_ans), (T2 x n_bns) independent time courses to test them on.
    n_permutations : null draws on the test data. ``phase``: phase-randomised BN time courses
        (every draw distinct, so the smallest p is ``1 / (1 + n)``; see
        :func:`permutations_for_fdr`). ``circular``: circular shifts (all ``T2 - 1`` lags when
        at least that many; the smallest p is then ``1 / T2``).
    signed : pick by ``|r|`` and test in the selected direction (True), or only positive couplings.
    null : 'phase' (default) or 'circular'; both keep the autocorrelation of the BN time courses.
    n_boot, block : circular block bootstrap of the test TRs for the 95 % interval of ``r_test``.
    """
    if null not in NULLS:
        raise CouplingError(f"unknown null {null!r}; expected one of {NULLS}")
    for a, b, what in ((an_select, bn_select, "selection"), (an_test, bn_test, "test")):
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
            raise CouplingError(f"{what} time courses must share their TRs: {a.shape} vs {b.shape}")
    if an_select.shape[1] != an_test.shape[1] or bn_select.shape[1] != bn_test.shape[1]:
        raise CouplingError("selection and test data must have the same ANs and BNs")
    r_sel = pearson_matrix(an_select, bn_select).astype(np.float64)  # (N, K)
    score = np.abs(r_sel) if signed else r_sel
    best = np.argmax(score, axis=0)
    k = bn_select.shape[1]
    sign = np.where(r_sel[best, np.arange(k)] >= 0, 1.0, -1.0) if signed else np.ones(k)
    az = zscore_columns(np.asarray(an_test)[:, best]).astype(np.float64)  # (T2, K): chosen ANs
    bz = zscore_columns(np.asarray(bn_test)).astype(np.float64)
    t = az.shape[0]
    r_test = (az * bz).sum(axis=0)
    rng = np.random.default_rng(seed)
    n_perm = int(max(1, n_permutations))
    if null == "circular":
        lags = np.arange(1, t) if n_perm >= t - 1 else rng.integers(1, t, size=n_perm)
        nulls = np.stack([(az * np.roll(bz, int(lag), axis=0)).sum(axis=0) for lag in lags])  # (S, K)
    else:
        parts = []
        for a in range(0, n_perm, chunk):
            sur = _phase_surrogates(bz, min(chunk, n_perm - a), rng)  # (n, T, K)
            sur -= sur.mean(axis=1, keepdims=True)
            norm = np.sqrt((sur * sur).sum(axis=1))
            parts.append((sur * az[None]).sum(axis=1) / np.where(norm > 0, norm, 1.0))
        nulls = np.concatenate(parts)
    exceed = (sign * nulls >= sign * r_test - 1e-9).sum(axis=0)
    p = (1.0 + exceed) / (1.0 + len(nulls))
    lo, hi = block_bootstrap_r(az, bz, n_boot=n_boot, block=block, seed=seed + 1) if n_boot > 0 else (
        np.full(k, np.nan), np.full(k, np.nan))
    return CrossStoryPairs(
        bn=np.arange(k), an=best.astype(np.int64), r_select=r_sel[best, np.arange(k)], r_test=r_test, p=p, q=fdr(p),
        ci_low=lo, ci_high=hi, n_trs_select=int(an_select.shape[0]), n_trs_test=t,
        n_permutations=int(len(nulls)), null=null, null_sd=nulls.std(axis=0))


def fdr(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (``scipy.stats.false_discovery_control``)."""
    from scipy.stats import false_discovery_control

    p = np.asarray(p, dtype=np.float64)
    if p.size == 0:
        return p
    return false_discovery_control(np.clip(p, 0.0, 1.0), method="bh")


# --------------------------------------------------------------------------------------
# Summaries (pure functions of the pairs tables)
# --------------------------------------------------------------------------------------


def layer_summary(pairs, r_threshold: float = 0.25, alpha: float = 0.05, bn_pairs=None):
    """Per layer: number of ANs, mean/std/max best r, fraction below ``r_threshold``,
    fraction significant (q < alpha), and (with ``bn_pairs``) how many BNs anchor an AN of it."""
    import pandas as pd

    rows = []
    for layer, g in pairs.groupby("layer", sort=True):
        best = g.loc[g["r"].idxmax()]
        row = {
            "layer": int(layer),
            "n_ans": int(len(g)),
            "mean_r": float(g["r"].mean()),
            "std_r": float(g["r"].std(ddof=0)),
            "max_r": float(g["r"].max()),
            "frac_below_threshold": float((g["r"] < r_threshold).mean()),
            "n_significant": int((g["q"] < alpha).sum()) if g["q"].notna().any() else 0,
            "frac_significant": float((g["q"] < alpha).mean()) if g["q"].notna().any() else float("nan"),
            "best_an": int(best["an"]),
            "best_head": int(best["head"]),
            "best_dim": int(best["dim"]),
            "best_bn": int(best["bn"]),
            "best_r": float(best["r"]),
        }
        if bn_pairs is not None:
            row["n_anchored_by_bns"] = int((bn_pairs["layer"] == layer).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def anchor_counts(pairs, n_bns: int, r_threshold: float = 0.25) -> np.ndarray:
    """For each BN, how many ANs have it as best BN with r >= ``r_threshold``."""
    sel = pairs["r"].to_numpy() >= r_threshold
    return np.bincount(pairs["bn"].to_numpy()[sel].astype(np.int64), minlength=n_bns)
