"""Significance tests per unit, with false-discovery-rate control across units.

* :func:`test_against_chance` - one-sample test of accuracies vs chance (0.5) across a sample
  axis (seeds, folds, runs or participants);
* :func:`paired_test` - paired test between two models across a sample axis
  (:func:`scipy.stats.ttest_rel`, or the Wilcoxon signed-rank test);
* :func:`block_permutation_test` - one model vs chance by permuting blocks of 10 TRs of the
  predictions relative to the targets;
* :func:`fdr_correction` - Benjamini-Hochberg (default) or Benjamini-Yekutieli q-values via
  :func:`scipy.stats.false_discovery_control`, ignoring (and keeping) NaN p-values;
* :func:`sign_flip_test` - sign-flip permutation test of per-sample effects against 0 (exact
  when all ``2**n`` flips fit in the permutation budget). It serves two designs:
  participants as samples (random effects, :func:`group_test`) and contiguous blocks of
  held-out TRs as samples (:func:`block_sign_flip_test`, which keeps temporal autocorrelation
  inside every block);
* :func:`group_test` - random-effects test across participants of per-participant effects
  (one-sample t-test or sign-flip), with FDR across units;
* :func:`smallest_p` / :func:`smallest_q` - the smallest p-value a test can reach and the
  smallest q-value that implies over ``m`` units (an empty map must say when the FDR level is
  out of reach).

Every test returns a :class:`TestResult`. Units whose samples are all identical between the
two models (identical models), or that hold NaN, get a NaN p-value: they are never counted as
tested nor significant, and no warnings are emitted for them.

Note: the 2019 reference code defaulted to the Benjamini-Yekutieli procedure; Benjamini-
Hochberg is the standard choice for (positively dependent) neighbouring units and is the
default here; ``fdr="by"`` remains available.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from typing import Any, Callable

import numpy as np

FDR_METHODS = ("bh", "by", "none")
TESTS = ("ttest", "wilcoxon")
#: Random-effects tests across participants.
GROUP_TESTS = ("ttest", "sign-flip", "ttest-by-run")
#: All ``2**n`` sign flips are enumerated when ``2**n`` is at most this (exact p-values).
EXACT_FLIPS_MAX = 1 << 16
#: Permutations evaluated per matrix product (memory: chunk x n_units floats).
_PERM_CHUNK = 512
ALTERNATIVES = ("two-sided", "greater", "less")


@dataclasses.dataclass(frozen=True)
class TestResult:
    """Outcome of a per-unit test.

    Attributes
    ----------
    statistic : float array (n_units,)
        t statistic, Wilcoxon statistic or the observed score (permutation test).
    p : float array (n_units,)
        Raw p-values (NaN where the test is undefined).
    q : float array (n_units,)
        FDR-adjusted p-values (NaN where ``p`` is NaN).
    test : str
        Name of the test, e.g. ``"ttest_rel"``.
    fdr : str
        ``"bh"``, ``"by"`` or ``"none"``.
    alpha : float
        Level the ``significant`` mask uses.
    significant : bool array (n_units,)
        ``q <= alpha`` (never True where ``q`` is NaN).
    effect : float array (n_units,)
        Mean difference (paired), mean minus chance (one-sample) or observed minus mean null
        (permutation).
    n_samples : int
        Size of the sample axis (permutations for the permutation test).
    alternative : str
    """

    __test__ = False  # not a pytest test class

    statistic: np.ndarray
    p: np.ndarray
    q: np.ndarray
    test: str
    fdr: str
    alpha: float
    significant: np.ndarray
    effect: np.ndarray
    n_samples: int
    alternative: str = "two-sided"
    n_permutations: int | None = None
    exact: bool = False

    @property
    def n_tested(self) -> int:
        """Units with a finite p-value."""
        return int(np.isfinite(self.p).sum())

    @property
    def n_significant(self) -> int:
        return int(self.significant.sum())

    def counts(self) -> dict[str, int]:
        """Units tested / significant, split by the sign of the effect."""
        sig = self.significant
        return {
            "n_units": int(self.p.size),
            "n_tested": self.n_tested,
            "n_significant": self.n_significant,
            "n_significant_positive": int((sig & (self.effect > 0)).sum()),
            "n_significant_negative": int((sig & (self.effect < 0)).sum()),
        }

    def summary(self) -> dict[str, Any]:
        """JSON-able description (no per-unit arrays)."""
        out = {"test": self.test, "fdr": self.fdr, "alpha": self.alpha, "alternative": self.alternative,
               "n_samples": self.n_samples, **self.counts(), **self.reachability()}
        if self.n_permutations is not None:
            out["n_permutations"] = int(self.n_permutations)
            out["exact"] = bool(self.exact)
        return out

    def reachability(self) -> dict[str, Any]:
        """What the test could reach: smallest p and q obtained, smallest achievable p and q.

        ``min_achievable_q`` is the q of a unit at the smallest achievable p when it is the only
        discovery; when it exceeds ``alpha`` no single unit can pass, and an empty map says so.
        """
        ok = np.isfinite(self.p)
        p_floor = smallest_p(self.test, self.n_samples, self.n_permutations, self.alternative)
        q_floor = smallest_q(p_floor, int(ok.sum()), self.fdr) if ok.any() else float("nan")
        return {
            "min_p": float(np.min(self.p[ok])) if ok.any() else None,
            "min_q": float(np.nanmin(self.q)) if np.isfinite(self.q).any() else None,
            "min_achievable_p": float(p_floor),
            "min_achievable_q": None if not np.isfinite(q_floor) else float(q_floor),
            "alpha_reachable": bool(np.isfinite(q_floor) and q_floor <= self.alpha),
            "min_discoveries_needed": min_discoveries(p_floor, int(ok.sum()), self.alpha, self.fdr),
        }


# --------------------------------------------------------------------------------------
# FDR
# --------------------------------------------------------------------------------------


def check_fdr(method: str) -> str:
    if method not in FDR_METHODS:
        raise ValueError(f"fdr: unknown method {method!r}; choose one of {FDR_METHODS}")
    return method


def fdr_correction(p: np.ndarray, method: str = "bh") -> np.ndarray:
    """FDR-adjusted p-values (q-values) over all entries of ``p``.

    Parameters
    ----------
    p : float array
        Raw p-values; NaN entries are left out of the correction and stay NaN.
    method : {"bh", "by", "none"}
        Benjamini-Hochberg (valid under independence and positive dependence),
        Benjamini-Yekutieli (any dependence, more conservative) or no correction.

    Returns
    -------
    q : float array, same shape as ``p``
        Equal to :func:`scipy.stats.false_discovery_control` applied to the finite entries.
    """
    check_fdr(method)
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if not ok.any():
        return q
    if method == "none":
        q[ok] = p[ok]
        return q
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("fdr_correction: p-values must lie in [0, 1]")
    from scipy.stats import false_discovery_control

    q[ok] = false_discovery_control(p[ok], method=method)
    return q


def significant_mask(q: np.ndarray, alpha: float) -> np.ndarray:
    """``q <= alpha`` with NaN counted as not significant."""
    q = np.asarray(q, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(q) & (q <= alpha)


# --------------------------------------------------------------------------------------
# parametric / rank tests across a sample axis
# --------------------------------------------------------------------------------------


def test_against_chance(
    scores: np.ndarray,
    *,
    chance: float = 0.5,
    axis: int = 0,
    method: str = "ttest",
    alternative: str = "greater",
    alpha: float = 0.01,
    fdr: str = "bh",
) -> TestResult:
    """One-sample test of per-unit scores against chance across a sample axis.

    Parameters
    ----------
    scores : float array
        E.g. 20-vs-20 accuracies of shape (n_seeds * n_runs, n_units).
    chance : float
        Value under the null (0.5 for 20-vs-20 accuracy, 0 for a correlation).
    axis : int
        The sample axis.
    method : {"ttest", "wilcoxon"}
        :func:`scipy.stats.ttest_1samp`, or the Wilcoxon signed-rank test of
        ``scores - chance`` (see :func:`wilcoxon_signed_rank`).
    alternative : {"greater", "two-sided", "less"}
        Default ``"greater"``: is the model above chance?
    alpha : float
        FDR level.
    fdr : {"bh", "by", "none"}
    """
    _check_test_args(method, alternative, fdr, alpha)
    x = np.moveaxis(np.asarray(scores, dtype=np.float64), axis, 0)
    d = x - chance
    stat, p = _paired_core(d, method, alternative)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        effect = np.mean(d, axis=0) if d.shape[0] else np.full(d.shape[1:], np.nan)
    name = "ttest_1samp" if method == "ttest" else "wilcoxon"
    return _result(stat, p, name, fdr, alpha, effect, d.shape[0], alternative)


test_against_chance.__test__ = False  # type: ignore[attr-defined]  # a library function, not a pytest test


def paired_test(
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    *,
    axis: int = 0,
    method: str = "ttest",
    alternative: str = "two-sided",
    alpha: float = 0.01,
    fdr: str = "bh",
) -> TestResult:
    """Paired test between two models per unit across a sample axis (seeds x runs, folds).

    Parameters
    ----------
    scores_a, scores_b : float arrays of the same shape
        Scores of model A and model B for the same samples (same draws, same runs).
    axis : int
        The sample axis.
    method : {"ttest", "wilcoxon"}
        :func:`scipy.stats.ttest_rel` or the Wilcoxon signed-rank test of ``a - b``.
    alternative : {"two-sided", "greater", "less"}
        ``"greater"`` tests A > B.
    alpha, fdr
        FDR level and method.

    Returns
    -------
    TestResult
        ``effect`` is the mean of ``a - b``. Units where ``a - b`` is 0 in every sample
        (e.g. identical models) or NaN anywhere get ``p = NaN`` and are not significant.
    """
    _check_test_args(method, alternative, fdr, alpha)
    a = np.moveaxis(np.asarray(scores_a, dtype=np.float64), axis, 0)
    b = np.moveaxis(np.asarray(scores_b, dtype=np.float64), axis, 0)
    if a.shape != b.shape:
        raise ValueError(f"paired_test: shapes differ ({a.shape} vs {b.shape})")
    d = a - b
    stat, p = _paired_core(d, method, alternative, a=a, b=b)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        effect = np.mean(d, axis=0) if d.shape[0] else np.full(d.shape[1:], np.nan)
    name = "ttest_rel" if method == "ttest" else "wilcoxon"
    return _result(stat, p, name, fdr, alpha, effect, d.shape[0], alternative)


def _paired_core(
    d: np.ndarray, method: str, alternative: str, a: np.ndarray | None = None, b: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Statistic and p-value of a test of ``d`` (samples on axis 0) against 0.

    With ``a`` and ``b`` (``d = a - b``) the t-test is :func:`scipy.stats.ttest_rel`.
    """
    n = d.shape[0]
    shape = d.shape[1:]
    stat = np.full(shape, np.nan)
    p = np.full(shape, np.nan)
    with np.errstate(invalid="ignore"):
        valid = np.all(np.isfinite(d), axis=0) & np.any(d != 0, axis=0)
    if n < 2 or not valid.any():
        return stat, p
    dv = d[:, valid]
    if method == "ttest":
        from scipy.stats import ttest_1samp, ttest_rel

        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if a is not None and b is not None:
                res = ttest_rel(a[:, valid], b[:, valid], axis=0, alternative=alternative)
            else:
                res = ttest_1samp(dv, 0.0, axis=0, alternative=alternative)
        stat[valid], p[valid] = res.statistic, res.pvalue
    else:
        stat[valid], p[valid] = wilcoxon_signed_rank(dv, alternative=alternative)
    return stat, p


# --------------------------------------------------------------------------------------
# Wilcoxon signed-rank, vectorised over units
# --------------------------------------------------------------------------------------

#: Up to this many samples the p-value is exact: all 2**n sign flips are enumerated.
WILCOXON_EXACT_FLIPS = 13
#: Work elements per chunk of the sign-flip enumeration.
_FLIP_CHUNK = 1 << 22


def wilcoxon_signed_rank(d: np.ndarray, alternative: str = "two-sided") -> tuple[np.ndarray, np.ndarray]:
    """Wilcoxon signed-rank test of ``d`` (samples on axis 0) against 0, per column.

    Zeros are dropped (``zero_method="wilcox"``) and tied ranks averaged, as in
    :func:`scipy.stats.wilcoxon`, whose slow per-column fallback (ties or zeros anywhere)
    this vectorised version avoids. p-values: up to :data:`WILCOXON_EXACT_FLIPS` samples, the
    exact sign-flip (permutation) distribution, which equals the exact Wilcoxon distribution
    without ties; more samples: the exact distribution for columns without ties or zeros
    (n <= 50), the normal approximation with tie correction otherwise (no continuity
    correction).

    Returns
    -------
    statistic, p : float arrays (n_columns,)
        ``min(W+, W-)`` for two-sided tests, ``W+`` otherwise (scipy's convention). Columns
        without any non-zero value get NaN.
    """
    from scipy.stats import norm, rankdata

    d = np.asarray(d, dtype=np.float64)
    d2 = d.reshape(d.shape[0], -1)
    n, n_cols = d2.shape
    absd = np.where(d2 == 0, np.nan, np.abs(d2))
    ranks = rankdata(absd, axis=0, nan_policy="omit")  # NaN (zeros) stay NaN
    ranks = np.nan_to_num(ranks, nan=0.0)
    pos = d2 > 0
    neg = d2 < 0
    w_plus = (ranks * pos).sum(axis=0)
    w_minus = (ranks * neg).sum(axis=0)
    count = (pos | neg).sum(axis=0)
    p = np.full(n_cols, np.nan)

    if n <= WILCOXON_EXACT_FLIPS:
        signs = np.array(list(itertools.product((0.0, 1.0), repeat=n)))  # (2**n, n)
        chunk = max(1, _FLIP_CHUNK // len(signs))
        eps = 1e-9 * np.maximum(1.0, np.abs(w_plus))
        for c0 in range(0, n_cols, chunk):
            c1 = min(c0 + chunk, n_cols)
            null = signs @ ranks[:, c0:c1]  # W+ under every sign flip
            ge = (null >= w_plus[c0:c1] - eps[c0:c1]).mean(axis=0)
            le = (null <= w_plus[c0:c1] + eps[c0:c1]).mean(axis=0)
            p[c0:c1] = _combine(ge, le, alternative)
    else:
        sr = np.sort(ranks, axis=0)
        has_ties = np.any((sr[1:] == sr[:-1]) & (sr[1:] > 0), axis=0)
        exact = (~has_ties) & (count == n) & (n <= 50)
        if exact.any():
            cnt = _signed_rank_counts(n)
            total = cnt.sum()
            cdf = np.cumsum(cnt) / total  # P(W+ <= w)
            sf = 1.0 - np.concatenate([[0.0], cdf[:-1]])  # P(W+ >= w)
            w = np.rint(w_plus[exact]).astype(int)
            p[exact] = _combine(sf[w], cdf[w], alternative)
        approx = ~exact & (count > 0)
        if approx.any():
            c = count[approx].astype(float)
            mean = c * (c + 1) / 4
            tie_term = np.zeros(approx.sum())
            r = ranks[:, approx]
            for col in range(r.shape[1]):
                _, t = np.unique(r[:, col][r[:, col] > 0], return_counts=True)
                tie_term[col] = np.sum(t**3 - t)
            se = np.sqrt((c * (c + 1) * (2 * c + 1) - tie_term / 2) / 24)
            with np.errstate(divide="ignore", invalid="ignore"):
                z = (w_plus[approx] - mean) / se
            p[approx] = _combine(norm.sf(z), norm.cdf(z), alternative)
    p[count == 0] = np.nan
    stat = np.minimum(w_plus, w_minus) if alternative == "two-sided" else w_plus
    stat = np.where(count == 0, np.nan, stat)
    return stat.reshape(d.shape[1:]), p.reshape(d.shape[1:])


def _combine(p_greater: np.ndarray, p_less: np.ndarray, alternative: str) -> np.ndarray:
    if alternative == "greater":
        return p_greater
    if alternative == "less":
        return p_less
    return np.clip(2 * np.minimum(p_greater, p_less), 0, 1)


def _signed_rank_counts(n: int) -> np.ndarray:
    """Number of subsets of {1..n} with each sum 0..n(n+1)/2 (exact null of W+)."""
    cnt = np.zeros(n * (n + 1) // 2 + 1)
    cnt[0] = 1
    for i in range(1, n + 1):
        cnt[i:] = cnt[i:] + cnt[:-i].copy()
    return cnt


# --------------------------------------------------------------------------------------
# block permutation test (one model vs chance)
# --------------------------------------------------------------------------------------


def block_permutation(n_rows: int, block_size: int, rng: np.random.Generator, runs: np.ndarray | None = None) -> np.ndarray:
    """A row order that shuffles consecutive blocks of ``block_size`` rows.

    Blocks never straddle runs when ``runs`` is given; blocks are permuted within their run.
    The returned array ``perm`` reorders predictions as ``predictions[perm]``.
    """
    if runs is None:
        groups = [np.arange(n_rows)]
    else:
        runs = np.asarray(runs).astype(str)
        groups = [np.flatnonzero(runs == r) for r in dict.fromkeys(runs.tolist())]
    perm = np.empty(n_rows, dtype=np.int64)
    for rows in groups:
        blocks = [rows[i : i + block_size] for i in range(0, len(rows), block_size)]
        order = rng.permutation(len(blocks))
        perm[rows] = np.concatenate([blocks[i] for i in order])
    return perm


def block_permutation_test(
    predictions: np.ndarray,
    targets: np.ndarray,
    *,
    statistic: str | Callable[[np.ndarray, np.ndarray], np.ndarray] = "twenty_vs_twenty",
    block_size: int = 10,
    n_permutations: int = 1000,
    runs: np.ndarray | None = None,
    rng: Any = None,
    alpha: float = 0.01,
    fdr: str = "bh",
    k: int = 20,
    n_samples: int = 1000,
    indices: tuple[np.ndarray, np.ndarray] | None = None,
    backend: str = "numba",
    batch: int = 8,
) -> TestResult:
    """Test one model against chance by permuting blocks of predictions relative to targets.

    The rows of ``predictions`` are cut into consecutive blocks of ``block_size`` TRs (10 by
    default, longer than the haemodynamic autocorrelation), the blocks are shuffled and the
    statistic is recomputed, ``n_permutations`` times. One-sided p-value per unit:
    ``(1 + #{null >= observed}) / (1 + n_permutations)``.

    Parameters
    ----------
    predictions, targets : float arrays (n_rows, n_units)
    statistic : "twenty_vs_twenty", "pearson" or callable(predictions, targets) -> (n_units,)
        For 20-vs-20 the same draws are used for the observed value and every permutation.
    block_size, n_permutations : int
    runs : array (n_rows,), optional
        Keep blocks within runs and permute them within their run.
    rng : int or Generator
        Seeds the draws (if ``indices`` is not given) and the permutations.
    alpha, fdr
        FDR level and method.
    k, n_samples, indices, backend
        Passed to :func:`~brainviz.evaluation.twenty_vs_twenty`.
    batch : int
        Permutations evaluated per kernel call (they share targets and draws).
    """
    from brainviz.evaluation.encoding import pearson_r
    from brainviz.evaluation.twenty import as_generator, draw_indices, twenty_vs_twenty

    check_fdr(fdr)
    pred = np.asarray(predictions)
    targ = np.asarray(targets)
    if pred.shape != targ.shape or pred.ndim != 2:
        raise ValueError(f"block_permutation_test: predictions {pred.shape} and targets {targ.shape} must be equal 2-D shapes")
    if block_size < 1 or n_permutations < 1:
        raise ValueError("block_size and n_permutations must be >= 1")
    gen = as_generator(rng)
    if statistic == "twenty_vs_twenty":
        idx = indices if indices is not None else draw_indices(len(targ), k=k, n_samples=n_samples, rng=gen)

        def stat_fn(p: np.ndarray) -> np.ndarray:
            return twenty_vs_twenty(p, targ, indices=idx, backend=backend)

        name = "block_permutation[twenty_vs_twenty]"
    elif statistic == "pearson":

        def stat_fn(p: np.ndarray) -> np.ndarray:
            return pearson_r(p, targ, axis=-2)

        name = "block_permutation[pearson]"
    elif callable(statistic):

        def stat_fn(p: np.ndarray) -> np.ndarray:
            if p.ndim == 2:
                return np.asarray(statistic(p, targ), dtype=np.float64)
            return np.stack([np.asarray(statistic(x, targ), dtype=np.float64) for x in p])

        name = f"block_permutation[{getattr(statistic, '__name__', 'custom')}]"
    else:
        raise ValueError(f"statistic: unknown {statistic!r}; use 'twenty_vs_twenty', 'pearson' or a callable")

    observed = stat_fn(pred)
    n_ge = np.zeros(observed.shape, dtype=np.int64)
    null_sum = np.zeros(observed.shape)
    done = 0
    while done < n_permutations:
        nb = min(batch, n_permutations - done)
        perms = [block_permutation(len(pred), block_size, gen, runs) for _ in range(nb)]
        null = stat_fn(np.stack([pred[perm] for perm in perms]))
        with np.errstate(invalid="ignore"):
            n_ge += (null >= observed).sum(axis=0)
        null_sum += null.sum(axis=0)
        done += nb
    p = (1.0 + n_ge) / (1.0 + n_permutations)
    p[~np.isfinite(observed)] = np.nan
    effect = observed - null_sum / n_permutations
    return _result(observed, p, name, fdr, alpha, effect, n_permutations, "greater")


# --------------------------------------------------------------------------------------
# sign-flip permutation tests: participants or blocks of TRs as samples
# --------------------------------------------------------------------------------------


def sign_flip_test(
    samples: np.ndarray,
    *,
    n_permutations: int = 10000,
    alternative: str = "two-sided",
    rng: Any = None,
    alpha: float = 0.05,
    fdr: str = "bh",
    statistic: str = "mean",
    name: str = "sign-flip",
) -> TestResult:
    """Sign-flip permutation test of per-sample effects against 0, per unit.

    Under the null hypothesis every sample's effect is symmetric about 0 and samples are
    independent, so flipping the sign of any subset of samples leaves the distribution of the
    statistic unchanged. Samples are participants (random effects) or contiguous blocks of
    held-out TRs (autocorrelation kept inside each block). The same sign vectors are used for
    every unit, which keeps the dependence between units for the FDR step.

    Parameters
    ----------
    samples : float array (n_samples, n_units)
        Effect of every sample (e.g. a participant's accuracy difference A - B, or the sum over
        one block of TRs of a per-TR contribution to a correlation difference).
    n_permutations : int
        Monte-Carlo sign vectors when ``2**n_samples`` exceeds it (or :data:`EXACT_FLIPS_MAX`);
        otherwise all ``2**n_samples`` vectors are enumerated and the p-value is exact.
    alternative : {"two-sided", "greater", "less"}
    rng : int or Generator
        Seeds the Monte-Carlo sign vectors.
    alpha, fdr
        FDR level and method.
    statistic : {"mean", "t"}
        Mean effect, or the one-sample t statistic (studentised; more robust when samples
        differ in variance).
    name : str
        Test name stored in the result.

    Returns
    -------
    TestResult
        ``effect`` is the mean over samples; ``n_samples`` the number of samples. Monte-Carlo
        p-values are ``(1 + #{|null| >= |obs|}) / (1 + n_permutations)`` (never 0); exact ones
        ``#{|null| >= |obs|} / 2**n`` (the identity flip included). Units with NaN in any
        sample or all-zero effects get NaN.
    """
    _check_test_args("ttest", alternative, fdr, alpha)
    if statistic not in ("mean", "t"):
        raise ValueError(f"statistic: unknown {statistic!r}; use 'mean' or 't'")
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n, n_units = x.shape[0], int(np.prod(x.shape[1:]))
    x = x.reshape(n, n_units)
    with np.errstate(invalid="ignore"):
        valid = np.all(np.isfinite(x), axis=0) & np.any(x != 0, axis=0)
    p = np.full(n_units, np.nan)
    obs_all = np.full(n_units, np.nan)
    effect = np.full(n_units, np.nan)
    if n >= 1 and valid.any():
        xv = x[:, valid]
        effect[valid] = xv.mean(axis=0)
        exact = n <= 60 and (1 << n) <= min(max(int(n_permutations), 1), EXACT_FLIPS_MAX)
        stat_fn = _mean_stat if statistic == "mean" else _t_stat
        obs = stat_fn(np.ones((1, n)), xv)[0]
        obs_all[valid] = obs
        eps = 1e-12 * np.maximum(1.0, np.abs(obs))
        count_ge = np.zeros(obs.shape)
        count_le = np.zeros(obs.shape)
        count_abs = np.zeros(obs.shape)
        if exact:
            total = 1 << n
            gen_chunks = _all_sign_chunks(n)
        else:
            total = int(n_permutations)
            gen = _as_rng(rng)
            gen_chunks = (gen.choice(np.array([-1.0, 1.0]), size=(min(_PERM_CHUNK, total - c0), n))
                          for c0 in range(0, total, _PERM_CHUNK))
        for signs in gen_chunks:
            null = stat_fn(signs, xv)
            count_ge += (null >= obs - eps).sum(axis=0)
            count_le += (null <= obs + eps).sum(axis=0)
            count_abs += (np.abs(null) >= np.abs(obs) - eps).sum(axis=0)
        if exact:
            pg, pl, pa = count_ge / total, count_le / total, count_abs / total
        else:
            pg, pl, pa = ((1 + c) / (1 + total) for c in (count_ge, count_le, count_abs))
        p[valid] = {"greater": pg, "less": pl, "two-sided": pa}[alternative]
        n_perm_used = total
    else:
        exact, n_perm_used = False, int(n_permutations)
    res = _result(obs_all, p, name, fdr, alpha, effect, n, alternative)
    return dataclasses.replace(res, n_permutations=n_perm_used, exact=bool(exact))


def _mean_stat(signs: np.ndarray, x: np.ndarray) -> np.ndarray:
    return signs @ x / x.shape[0]


def _t_stat(signs: np.ndarray, x: np.ndarray) -> np.ndarray:
    n = x.shape[0]
    m = signs @ x / n
    ss = (x * x).sum(axis=0)  # sign flips leave the sum of squares unchanged
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (ss - n * m * m) / max(n - 1, 1)
        return m / np.sqrt(np.maximum(var, 0) / n)


def _all_sign_chunks(n: int):
    """Every sign vector of length n, in chunks (rows of +-1)."""
    total = 1 << n
    bits = np.arange(n, dtype=np.int64)
    for c0 in range(0, total, _PERM_CHUNK):
        codes = np.arange(c0, min(c0 + _PERM_CHUNK, total), dtype=np.int64)
        yield np.where((codes[:, None] >> bits) & 1, -1.0, 1.0)


def _as_rng(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(0 if rng is None else rng)


def block_sign_flip_test(block_effects: np.ndarray, **kwargs: Any) -> TestResult:
    """:func:`sign_flip_test` with contiguous blocks of held-out TRs as the samples.

    ``block_effects`` (n_blocks, n_units) holds, per block, the sum over its TRs of a per-TR
    contribution to the statistic (e.g. ``z_y * (z_a - z_b) / n`` for a correlation
    difference): swapping models A and B inside a block flips the sign of that block's
    contribution exactly, so the test asks whether A predicts the held-out data better than B
    while keeping the temporal autocorrelation inside each block (blocks of about 20 s are
    longer than the haemodynamic response).
    """
    kwargs.setdefault("name", "block-sign-flip")
    return sign_flip_test(block_effects, **kwargs)


def group_test(
    effects: np.ndarray,
    *,
    method: str = "ttest",
    alternative: str = "two-sided",
    alpha: float = 0.05,
    fdr: str = "bh",
    n_permutations: int = 10000,
    rng: Any = None,
) -> TestResult:
    """Random-effects test across participants, per unit.

    Parameters
    ----------
    effects : float array (n_participants, n_units)
        One effect per participant and unit, e.g. the accuracy difference A - B averaged over
        seeds and held-out runs, or a score minus chance. Seeds must already be averaged:
        seeds share the held-out data, so they are not independent samples.
    method : {"ttest", "sign-flip"}
        One-sample t-test of the effects against 0, or a sign-flip permutation test (exact
        when ``2**n_participants`` flips fit in ``n_permutations``).
    alternative, alpha, fdr, n_permutations, rng
        As in :func:`sign_flip_test`.

    Returns
    -------
    TestResult
        ``test`` is ``"group:ttest"`` or ``"group:sign-flip"``, ``n_samples`` the number of
        participants, ``effect`` the mean effect across participants.
    """
    if method == "ttest-by-run":
        raise ValueError("group test 'ttest-by-run' needs effects per held-out run: use group_test_by_run")
    if method not in GROUP_TESTS:
        raise ValueError(f"group test: unknown method {method!r}; choose one of {GROUP_TESTS}")
    x = np.asarray(effects, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"group_test: effects must be (n_participants, n_units), got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"group_test: needs at least 2 participants, got {x.shape[0]}; "
                         "use a participant-level test instead")
    if method == "ttest":
        stat, p = _paired_core(x, "ttest", alternative)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            effect = np.mean(x, axis=0)
        res = _result(stat, p, "group:ttest", fdr, alpha, effect, x.shape[0], alternative)
        return res
    return sign_flip_test(x, n_permutations=n_permutations, alternative=alternative, rng=rng, alpha=alpha,
                          fdr=fdr, statistic="t", name="group:sign-flip")


def cauchy_combination(p: np.ndarray, axis: int = 0) -> np.ndarray:
    """Combine p-values that may depend on each other (Cauchy combination test, Liu & Xie 2020,
    equal weights): ``T = mean(tan((0.5 - p) pi))``, ``p = 1/2 - arctan(T) / pi``.

    Valid (asymptotically, for small p) whatever the correlation between the combined tests;
    NaN p-values are left out, all-NaN gives NaN. p-values are clipped to [1e-300, 0.99]: near
    1 the tangent diverges and one p of ~1 would cancel any evidence in the others (the clip
    changes the combined p only where a test had p > 0.99; tests/test_evaluation_pooled.py checks
    that uniform p-values stay uniform).
    """
    x = np.clip(np.asarray(p, dtype=np.float64), 1e-300, 0.99)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t = np.nanmean(np.tan((0.5 - x) * np.pi), axis=axis)
    return np.clip(0.5 - np.arctan(t) / np.pi, 0.0, 1.0)


def group_test_by_run(
    effects: np.ndarray,
    *,
    alternative: str = "two-sided",
    alpha: float = 0.05,
    fdr: str = "bh",
) -> TestResult:
    """Random-effects test across participants within each held-out run, combined over runs.

    When every participant's predictions come from models fitted on *several participants'*
    data (a shared head, a group fit, leave-one-participant-out), a participant's held-out run
    ``k`` is training data of the other folds' models, so participants' run-averaged scores
    are no longer independent and a t-test across participants is anti-conservative (measured
    on the simulated default: 11 % of null vertices at p < 0.05; docs/evaluation.md). Within
    one held-out run the model is fixed and the participants' scores are independent, so each
    run gets its own t-test across participants; the per-run p-values, which depend on each
    other, are combined with :func:`cauchy_combination`.

    Parameters
    ----------
    effects : float array (n_participants, n_runs, n_units)
        One effect per participant, held-out run and unit (seeds already averaged).

    Returns
    -------
    TestResult
        ``test`` ``"group:ttest-by-run"``, ``statistic`` the mean of the per-run t values,
        ``effect`` the mean effect over participants and runs, ``n_samples`` the number of
        participants. With one run it is the plain t-test of that run (``"group:ttest"``).
    """
    x = np.asarray(effects, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"group_test_by_run: effects must be (n_participants, n_runs, n_units), got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"group_test_by_run: needs at least 2 participants, got {x.shape[0]}")
    if x.shape[1] < 2:
        return group_test(x[:, 0], method="ttest", alternative=alternative, alpha=alpha, fdr=fdr)
    stats_, ps = zip(*(_paired_core(x[:, k], "ttest", alternative) for k in range(x.shape[1])))
    p = cauchy_combination(np.stack(ps), axis=0)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        stat = np.nanmean(np.stack(stats_), axis=0)
        effect = np.nanmean(x, axis=(0, 1))
    return _result(stat, p, "group:ttest-by-run", fdr, alpha, effect, x.shape[0], alternative)


def smallest_p(test: str, n_samples: int, n_permutations: int | None = None, alternative: str = "two-sided") -> float:
    """Smallest p-value a test can return.

    Permutation tests cannot go below ``1 / (number of permutations)`` (exact sign flips:
    ``2 / 2**n`` two-sided); parametric tests have no such floor (returns 0).
    """
    if "sign-flip" in test or "permutation" in test:
        n_perm = int(n_permutations or 0)
        if n_samples <= 60 and (1 << n_samples) <= min(max(n_perm, 1), EXACT_FLIPS_MAX):
            return (2.0 if alternative == "two-sided" else 1.0) / float(1 << n_samples)
        return 1.0 / (1.0 + n_perm)
    return 0.0


def min_discoveries(p_min: float, n_units: int, alpha: float, fdr: str = "bh") -> int | None:
    """How many units must reach ``p_min`` together before any of them passes the FDR level
    (``None`` when even all ``n_units`` together cannot)."""
    m = max(int(n_units), 1)
    if fdr == "none":
        return 1 if p_min <= alpha else None
    c = float(np.sum(1.0 / np.arange(1, m + 1))) if fdr == "by" else 1.0
    if p_min <= 0:
        return 1
    k = int(np.ceil(p_min * m * c / alpha - 1e-12))
    return max(k, 1) if k <= m else None


def smallest_q(p_min: float, n_units: int, fdr: str = "bh", n_discoveries: int = 1) -> float:
    """Smallest q-value reachable over ``n_units`` tests when at most ``n_discoveries`` units
    reach ``p_min``.

    BH gives ``p_min * m / n_discoveries`` (BY multiplies by the harmonic sum ``sum 1/i``).
    With ``n_discoveries = 1`` this is the q of a single best unit: if it exceeds the FDR level,
    one unit alone can never be declared significant.
    """
    m = max(int(n_units), 1)
    k = min(max(int(n_discoveries), 1), m)
    if fdr == "none":
        return float(p_min)
    q = p_min * m / k
    if fdr == "by":
        q *= float(np.sum(1.0 / np.arange(1, m + 1)))
    return float(min(q, 1.0))


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _check_test_args(method: str, alternative: str, fdr: str, alpha: float) -> None:
    if method not in TESTS:
        raise ValueError(f"test: unknown method {method!r}; choose one of {TESTS}")
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative: unknown {alternative!r}; choose one of {ALTERNATIVES}")
    check_fdr(fdr)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


def _result(stat, p, name, fdr, alpha, effect, n, alternative) -> TestResult:
    p = np.asarray(p, dtype=np.float64)
    q = fdr_correction(p, fdr)
    return TestResult(
        statistic=np.asarray(stat, dtype=np.float64), p=p, q=q, test=name, fdr=fdr, alpha=float(alpha),
        significant=significant_mask(q, alpha), effect=np.asarray(effect, dtype=np.float64),
        n_samples=int(n), alternative=alternative,
    )
