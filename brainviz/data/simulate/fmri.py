"""fMRI participants: planted signal of both components + noise, and the measured SNR.

Step 6 of the generative model (``docs/simulation.md``): every region and network gets a
participant gain ``lognormal(0, 0.25)`` x a participant responsiveness ``lognormal(0, 0.15)``,
and every driver weight a participant-specific smooth modulation; the data are that signal
plus the noise of :mod:`brainviz.data.simulate.noise`. The measured properties (per-TR signal
r^2 of each component, inter-participant correlation, cross-validated variance explained,
noise autocorrelation) are computed on the kept, per-run detrended TRs the analyses see.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from brainviz.data.simulate._util import _ordered_map, _r, _r2_stats, _rng
from brainviz.data.simulate.config import N_CV_PARTICIPANTS, N_VERTICES
from brainviz.data.simulate.drivers import READABLE, SPECIFIC
from brainviz.data.simulate.noise import _fmri_noise, _noise_maps
from brainviz.data.simulate.space import _smooth_fields, _smoother
from brainviz.data.simulate.stimulus import _detrend_kept, _kept_mask, _run_of_tr


def _participant_modulation(rng: np.random.Generator, n_fields: int, spread: float) -> np.ndarray:
    return 1.0 + spread * _smooth_fields(rng, n_fields, 6)


def _responsiveness(seed: int, experiment: str, pid: str) -> float:
    return float(np.exp(_rng(seed, experiment, "person", pid).normal(0.0, 0.15)))


def _cv_r2(x: np.ndarray, y: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Leave-one-run-out R^2 of ridge predictions (alpha = n_train) of every column of ``y``."""
    sse = np.zeros(y.shape[1])
    sst = np.zeros(y.shape[1])
    for k in np.unique(runs):
        test = runs == k
        xt = x[~test]
        beta = np.linalg.solve(xt.T @ xt + len(xt) * np.eye(x.shape[1]), xt.T @ y[~test])
        sse += ((y[test] - x[test] @ beta) ** 2).sum(0)
        sst += ((y[test] - y[test].mean(0)) ** 2).sum(0)
    return 1.0 - sse / np.where(sst > 0, sst, 1.0)


def _corr2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared column-wise correlation of two centred arrays."""
    num = (a * b).sum(0)
    den = np.sqrt((a ** 2).sum(0) * (b ** 2).sum(0))
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0) ** 2


def _unit(x: np.ndarray) -> np.ndarray:
    """Columns scaled to unit norm (already centred)."""
    n = np.sqrt((x ** 2).sum(0))
    return x / np.where(n > 0, n, 1.0)


def _simulate_fmri(
    experiment: str, pids: Sequence[str], layouts, tr: float, drivers: np.ndarray, names: Sequence[str],
    components: Sequence[str], regions, weights: np.ndarray, net_tc: np.ndarray | None, net_maps: np.ndarray | None,
    net_names: Sequence[str], config, progress, step: float,
):
    """fMRI arrays of all participants + measured SNR."""
    from brainviz.data.dataset import FMRIRecording, Run, Space

    _smoother()  # build the cached mesh operator before the worker threads need it
    kept, run_of_tr = _kept_mask(layouts), _run_of_tr(layouts)
    comp = np.asarray(components)
    ridx, sidx = np.flatnonzero(comp == READABLE), np.flatnonzero(comp == SPECIFIC)
    planted = np.any(weights != 0, axis=0)
    if net_maps is not None:
        planted |= np.any(net_maps != 0, axis=0)
    pidx = np.flatnonzero(planted)
    null = np.flatnonzero(~planted)
    region_of = np.zeros(N_VERTICES, dtype=int)
    for reg in regions:  # gains apply per region (last wins on the rare overlaps)
        region_of[reg["idx"]] = reg["label"]
    xk = _detrend_kept(drivers, run_of_tr, kept)  # network time courses are driver columns
    run_k = run_of_tr[kept]
    space = Space("fsaverage5")
    runs = [Run(lay.name, lay.n_trs, 0.0) for lay in layouts]
    null_probe = null[:: max(1, len(null) // 2000)]
    region_in_planted = region_of[pidx]
    # smooth spatial topographies of the structured ("physiological") noise, shared by the
    # participants of an experiment; their time courses are participant-specific
    noise_maps = _noise_maps(_rng(config.seed, experiment, "noise-maps"), config)
    cv_participants = set(pids[:N_CV_PARTICIPANTS])

    def one(pid: str) -> dict[str, Any]:
        rng = _rng(config.seed, experiment, "fmri", pid)
        resp = _responsiveness(config.seed, experiment, pid)
        gains = {reg["label"]: float(np.exp(rng.normal(0.0, 0.25))) * resp for reg in regions}
        gain_v = np.zeros(N_VERTICES)
        for lab, g in gains.items():
            gain_v[region_of == lab] = g
        mod = _participant_modulation(rng, len(names), 0.3)
        w = weights[:, pidx] * gain_v[pidx] * mod[:, pidx]
        sig_read = drivers[:, ridx] @ w[ridx]
        sig_spec = drivers[:, sidx] @ w[sidx]
        signal = sig_read + sig_spec
        net_gain = None
        if net_maps is not None and net_tc is not None:
            net_gain = np.exp(rng.normal(0.0, 0.25, net_maps.shape[0])) * resp
            net_mod = _participant_modulation(rng, net_maps.shape[0], 0.25)
            signal += net_tc @ (net_maps[:, pidx] * net_gain[:, None] * net_mod[:, pidx])
        data = _fmri_noise(rng, layouts, tr, config, noise_maps)
        data[:, pidx] += signal.astype(np.float32)
        # measured SNR on the kept, per-run detrended TRs (what the analyses see)
        d_k = _detrend_kept(data[:, pidx], run_of_tr, kept)
        r2 = _corr2(_detrend_kept(signal, run_of_tr, kept), d_k)
        info = {
            "responsiveness": _r(resp),
            "region_gains": {reg["name"]: _r(gains[reg["label"]]) for reg in regions},
            "median_signal_r2": _r(np.median(r2)),
        }
        if net_gain is not None:
            info["network_gains"] = {n: _r(g) for n, g in zip(net_names, net_gain)}
        n_k = _detrend_kept(data[:, null_probe], run_of_tr, kept)
        out = {"recording": FMRIRecording(pid, data, tr, runs, space), "info": info, "r2": r2,
               "r2_readable": _corr2(_detrend_kept(sig_read, run_of_tr, kept), d_k),
               "r2_specific": _corr2(_detrend_kept(sig_spec, run_of_tr, kept), d_k),
               "unit_planted": _unit(d_k).astype(np.float32), "unit_null": _unit(n_k).astype(np.float32)}
        if pid in cv_participants:  # the costlier checks on the first participants only
            out["ve_planted"] = _cv_r2(xk, d_k, run_k)
            out["ve_null"] = _cv_r2(xk, n_k, run_k)
            out["ve_readable_planted"] = _cv_r2(xk[:, ridx], d_k, run_k)
            out["ar1"] = float(np.mean((n_k[1:] * n_k[:-1]).sum(0) / (n_k ** 2).sum(0)))
        return out

    recordings, info, results = {}, {}, []
    # inter-participant correlation: mean pairwise correlation per vertex from the running sum
    # S of unit-norm time courses, (|S|^2 - n) / (n (n - 1))
    sums = {"planted": np.zeros((int(kept.sum()), pidx.size)), "null": np.zeros((int(kept.sum()), null_probe.size))}
    for pid, res in zip(pids, _ordered_map(one, pids)):
        recordings[pid] = res.pop("recording")
        info[pid] = res["info"]
        sums["planted"] += res.pop("unit_planted")
        sums["null"] += res.pop("unit_null")
        results.append(res)
        progress.step(step, f"{experiment}: fMRI {pid}")
    n = len(pids)
    isc = {k: ((s ** 2).sum(0) - n) / (n * (n - 1)) if n > 1 else np.zeros(s.shape[1]) for k, s in sums.items()}
    r2_region = {reg["name"]: [res["r2"][region_in_planted == reg["label"]] for res in results] for reg in regions}
    if net_maps is not None:
        r2_region["networks_outside_language_regions"] = [res["r2"][region_in_planted == 0] for res in results]
    in_language = region_in_planted > 0

    def pooled(key: str, where: np.ndarray | None = None) -> dict[str, float]:
        vals = [res[key] if where is None else res[key][where] for res in results if key in res]
        return _r2_stats(np.concatenate(vals)) if vals else {}

    measured = {
        "signal_r2_planted": pooled("r2"),
        "signal_r2_by_region": {k: _r2_stats(np.concatenate(v)) for k, v in r2_region.items()},
        "signal_r2_by_component": {
            "note": ("squared correlation between each component's signal (participant gains included) and the "
                     "data over kept, detrended TRs, pooled over the language-region vertices and participants"),
            "readable": pooled("r2_readable", in_language),
            "specific": pooled("r2_specific", in_language),
        },
        "inter_participant_correlation": {
            "note": ("mean pairwise correlation between participants' time courses per vertex (kept, detrended "
                     "TRs); the share of a vertex's variance that is stimulus-driven and shared"),
            "n_participants": n,
            "planted": _r2_stats(isc["planted"]),
            "language_regions": _r2_stats(isc["planted"][in_language]),
            "null": _r2_stats(isc["null"]),
        },
        "variance_explained_by_drivers": {
            "note": ("leave-one-run-out cross-validated R^2 of a ridge fit (alpha = number of training TRs, "
                     "unit-variance regressors) of each vertex (kept TRs, detrended within run) on the drivers "
                     "(all, or the readable ones only)"),
            "participants": sorted(cv_participants),
            "null_vertices_probed": int(null_probe.size),
            "n_regressors": int(xk.shape[1]),
            "n_kept_trs": int(xk.shape[0]),
            "planted": pooled("ve_planted"),
            "planted_readable_drivers_only": pooled("ve_readable_planted"),
            "null": pooled("ve_null"),
        },
        "noise_lag1_autocorrelation": _r(np.mean([res["ar1"] for res in results if "ar1" in res])),
        "n_planted_vertices": int(pidx.size),
    }
    return recordings, info, measured, planted
