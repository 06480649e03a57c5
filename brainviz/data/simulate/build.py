"""Orchestration: build the reading and listening experiments and save them with their ground truth.

Each experiment is written into a temporary folder beside its target and renamed when
complete (:func:`brainviz._io.atomic_dir`), so a dataset folder is either complete with its
``ground_truth/`` or absent.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from brainviz.config import ConfigError
from brainviz.data.simulate._util import _ordered_map, _Progress, _r, _rng
from brainviz.data.simulate.config import (
    EXPERIMENTS, GROUND_TRUTH_DIR, GROUND_TRUTH_JSON, LEAD_IN_TRS, LISTENING_TR, MEG_BIN_WIDTH, MEG_BINS,
    N_READING_RUNS, PRESETS, READING_TR, SIMULATOR_VERSION, TAIL_TRS, GRID_DT, TRIM_END, TRIM_START, ProgressFn,
    SimulationConfig,
)
from brainviz.data.simulate.drivers import (
    NETWORK, READABLE, SEMANTIC_DIMS, SPECIFIC, _build_drivers, _network_timecourses, driver_specs,
)
from brainviz.data.simulate.fmri import _responsiveness, _simulate_fmri
from brainviz.data.simulate.lexicon import (
    CATEGORIES, LENGTH_MEAN, LENGTH_SD, LOG_FREQ_MEAN, LOG_FREQ_SD, RARITY_THRESHOLD, RARITY_WIDTH,
    _linguistic_stimulus, category_coverage, load_lexicon,
)
from brainviz.data.simulate.meg import (
    MEG_COMPONENTS, _gamma_kernel, _meg_participant, _meg_patterns, _meg_word_drivers, meg_sensor_names,
)
from brainviz.data.simulate.space import NETWORK_SPECS, _language_weights, _network_maps, _regions, _smooth_fields
from brainviz.data.simulate.stimulus import (
    _detrend_kept, _kept_mask, _listening_stimulus, _reading_stimulus, _run_of_tr,
)


def _participant_ids(n_fmri: int, n_meg: int, n_shared: int) -> tuple[list[str], list[str]]:
    fmri = [f"sub-{i + 1:02d}" for i in range(n_fmri)]
    meg = fmri[:n_shared] + [f"sub-{n_fmri + i + 1:02d}" for i in range(n_meg - n_shared)]
    return fmri, meg


def _plant(experiment: str, stim, wf, layouts, tr: float, config: SimulationConfig,
           network_drivers: Sequence[str] = ()) -> dict[str, Any]:
    """Drivers of both components (+ network drivers), regions and their shared spatial weights."""
    specs = driver_specs(experiment, network_drivers)
    names = [sp[0] for sp in specs]
    comps = [sp[1] for sp in specs]
    drivers, neural, scales, orth = _build_drivers(stim, wf, layouts, tr, names, comps, config)
    regions = _regions(config, experiment)
    cov = np.cov(_detrend_kept(drivers, _run_of_tr(layouts), _kept_mask(layouts)).T)
    shared = _smooth_fields(_rng(config.seed, experiment, "shared-weights"), len(names), 6)
    share_field = _smooth_fields(_rng(config.seed, experiment, "readable-share"), 1, 6)[0]
    weights, labels, comp_r2 = _language_weights(regions, names, comps, cov, shared, share_field, config.readable_share)
    return {"specs": specs, "names": names, "components": comps, "drivers": drivers, "neural": neural,
            "scales": scales, "orth": orth, "regions": regions, "weights": weights, "labels": labels, "comp_r2": comp_r2}


def _ground_truth_arrays(plant: dict[str, Any], planted: np.ndarray) -> dict[str, np.ndarray]:
    comp = np.asarray(plant["components"])
    w = plant["weights"]
    return {
        "planted_mask": planted,
        "region_labels": plant["labels"],
        "drivers": plant["drivers"].astype(np.float32),
        "neural_drivers": plant["neural"].astype(np.float32),
        "spatial_weights": w.astype(np.float32),
        "readable_mask": np.any(w[comp == READABLE] != 0, axis=0),
        "specific_mask": np.any(w[comp == SPECIFIC] != 0, axis=0),
        "readable_r2": plant["comp_r2"]["readable"].astype(np.float32),
        "specific_r2": plant["comp_r2"]["specific"].astype(np.float32),
    }


def _common_ground_truth(experiment: str, config: SimulationConfig, plant: dict[str, Any], wf, layouts, tr: float,
                         titles) -> dict[str, Any]:
    names, specs, drivers, regions = plant["names"], plant["specs"], plant["drivers"], plant["regions"]
    corr = np.corrcoef(drivers[_kept_mask(layouts)].T)
    orth = plant["orth"]
    return {
        "simulated": True,
        "simulator_version": SIMULATOR_VERSION,
        "experiment": experiment,
        "config": config.to_dict(),
        "titles": titles,
        "tr": tr,
        "runs": [{"name": lay.name, "n_trs": lay.n_trs, "kept_trs": [TRIM_START, lay.n_trs - TRIM_END]} for lay in layouts],
        "tr_runs": [lay.name for lay in layouts for _ in range(lay.n_trs)],
        "driver_specs": [{"name": n, "component": c, "kind": k, "description": d, "bold_scale": _r(sc)}
                         for (n, c, k, d), sc in zip(specs, plant["scales"])],
        "driver_names": list(names),
        "components": {
            READABLE: [n for n, c in zip(names, plant["components"]) if c == READABLE],
            SPECIFIC: [n for n, c in zip(names, plant["components"]) if c == SPECIFIC],
            NETWORK: [n for n, c in zip(names, plant["components"]) if c == NETWORK],
            "note": ("readable: linear in word-level semantic / lexical features (pretrained token features encode "
                     "them); specific: nonlinear functions of the window's words, orthogonal to a linear lexical basis "
                     "(readable drivers + counts of words, content words and each category) "
                     "over the kept TRs. Component signal = drivers[:, component] @ spatial_weights[component]; "
                     "readable_mask / specific_mask / readable_r2 / specific_r2 locate them. network (listening): raw "
                     "category presences that the planted networks follow (not in the language regions)"),
        },
        "semantic_dimensions": SEMANTIC_DIMS,
        "orthogonalization": {
            "basis": orth["basis"], "specific": orth["specific"],
            "coefficients": [[float(v) for v in row] for row in orth["coefficients"]],
            "nonlinear_share": {n: _r(v) for n, v in zip(orth["specific"], orth["nonlinear_share"])},
            "note": ("specific drivers = raw nonlinear drivers - basis @ coefficients (least squares over the kept, "
                     "per-run detrended BOLD-level drivers, before scaling); basis = the readable drivers + "
                     "recency-weighted counts of words (sum_words), content words and each category (sum_<category>); "
                     "applied to the neural drivers too (convolution is linear). nonlinear_share = variance share "
                     "of each raw specific driver left after the projection"),
        },
        "driver_correlations_kept_trs": [[_r(v) for v in row] for row in corr],
        "regions": [
            {"label": reg["label"], "name": reg["name"], "hemisphere": reg["hemisphere"],
             "mni": [float(v) for v in reg["mni"]], "radius_mm": _r(reg["radius"]), "peak_r2": _r(reg["peak_r2"]),
             "n_vertices": int(reg["idx"].size), "drivers": {k: float(v) for k, v in reg["profile"].items()},
             "readable_drivers": {k: float(v) for k, v in reg["readable"].items() if k in names},
             "readable_offset": reg["readable_offset"]}
            for reg in regions
        ],
        "categories": list(CATEGORIES),
        "lexicon_version": load_lexicon()["version"],
        "category_coverage": category_coverage(wf),
        "generative": {
            "window_s": config.window,
            "recency": f"exp(-(t - onset) / {config.recency_tau})",
            "neural_grid_s": GRID_DT,
            "hrf": "nilearn spm_hrf (time_length 32 s), causal convolution, sampled at TR onsets",
            "driver_scaling": "each BOLD driver divided by its s.d. over kept TRs (20 / 15 TR trim, per-run linear detrend)",
            "region_falloff": "target r^2 = peak_r2 * exp(-1.5 (d / radius)^2)",
            "components": ("per vertex, readable share s = readable_share + 4 s0 (1 - s0) "
                           "(region offset + 0.15 smooth field), in [0.05, 0.95]; "
                           "readable r^2 = s * target, specific r^2 = (1 - s) * target"),
            "shared_weight_modulation": "profile * (1 + 0.4 * smooth field)",
            "participant_modulation": "region gain lognormal(0, 0.25) x responsiveness lognormal(0, 0.15) x (1 + 0.3 smooth field)",
            "noise": {
                "ar1_coefficient": _r(math.exp(-tr / config.noise_tau) if config.noise_tau > 0 else 0.0),
                "structured_share": config.structured_noise,
                "structured_components": 16,
                "variance_per_vertex": 1.0,
                "drift": "per-run offset N(0, 0.5) and linear ramp N(0, 0.3) per vertex",
            },
            "rarity": f"content x sigmoid((-log_freq - {RARITY_THRESHOLD}) / {RARITY_WIDTH})",
            "length_z": f"(length - {LENGTH_MEAN}) / {LENGTH_SD}",
            "log_freq_z": f"(log_freq - {LOG_FREQ_MEAN}) / {LOG_FREQ_SD}",
            "lead_in_trs": LEAD_IN_TRS[experiment],
            "tail_trs": TAIL_TRS,
            "trimmed_by_preprocessing": [TRIM_START, TRIM_END],
        },
    }


def _save_experiment(target: Path, dataset, gt_json: dict, arrays: dict[str, np.ndarray], word_table, overwrite: bool) -> Path:
    """Save dataset + ground truth into a temp folder beside ``target``, then rename (atomic)."""
    from brainviz._io import json_default, atomic_dir

    with atomic_dir(target, overwrite=overwrite) as tmp:
        dataset.save(tmp, overwrite=True)
        gt = tmp / GROUND_TRUTH_DIR
        gt.mkdir()
        for name, arr in sorted(arrays.items()):
            np.save(gt / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
        word_table.to_csv(gt / "word_features.tsv", sep="\t", index=False, float_format="%.10g", lineterminator="\n")
        gt_json = dict(gt_json)
        gt_json["files"] = sorted([f"{n}.npy" for n in arrays] + ["word_features.tsv", GROUND_TRUTH_JSON])
        (gt / GROUND_TRUTH_JSON).write_text(json.dumps(gt_json, indent=2, sort_keys=True, default=json_default) + "\n")
    dataset.path = target
    return target


def _build_reading(target: Path, config: SimulationConfig, progress: _Progress, overwrite: bool, weight: dict) -> Path:
    from brainviz.data.dataset import Dataset, DatasetMeta, MEGRecording

    preset = PRESETS[config.preset]
    stim, layouts, titles = _reading_stimulus(preset["reading_words"], READING_TR)
    stim, wf = _linguistic_stimulus(stim)
    progress.step(weight["prep"], "reading: words annotated")
    plant = _plant("reading", stim, wf, layouts, READING_TR, config)
    fmri_ids, meg_ids = _participant_ids(preset["reading_fmri"], preset["reading_meg"], preset["reading_shared"])
    recordings, pinfo, measured, planted = _simulate_fmri(
        "reading", fmri_ids, layouts, READING_TR, plant["drivers"], plant["names"], plant["components"],
        plant["regions"], plant["weights"], None, None, [], config, progress, weight["fmri"],
    )
    # MEG
    patterns, positions = _meg_patterns()
    meg_drivers = _meg_word_drivers(wf)
    onsets = stim["onset"].to_numpy(dtype=float)
    run_codes = stim["run"].astype(str).to_numpy()
    t = (np.arange(MEG_BINS) + 0.5) * MEG_BIN_WIDTH
    kernels = np.stack([_gamma_kernel(t, peak, shape) for _, _, peak, shape, _ in MEG_COMPONENTS])
    sensors = meg_sensor_names()
    megs, meg_info = {}, {}

    def one_meg(pid: str):
        resp = _responsiveness(config.seed, "reading", pid)
        data, info = _meg_participant(_rng(config.seed, "reading", "meg", pid), meg_drivers, onsets, run_codes,
                                      patterns, resp, config)
        return data, {**info, "responsiveness": _r(resp)}

    for pid, (data, info) in zip(meg_ids, _ordered_map(one_meg, meg_ids)):
        megs[pid] = MEGRecording(pid, data, MEG_BIN_WIDTH, sensors, np.arange(len(stim)))
        meg_info[pid] = info
        progress.step(weight["meg"], f"reading: MEG {pid}")
    meta = DatasetMeta(
        name="simulated-reading", simulated=True, modality="reading",
        source=f"brainviz simulator v{SIMULATOR_VERSION} (preset {config.preset}, seed {config.seed})",
        licence="CC0-1.0",
        citation=("Simulated with brainviz, modelled on Wehbe et al. (2014) PLoS ONE 9(11):e112575 and "
                  "Schwartz, Toneva & Wehbe (2019) NeurIPS 'Inducing brain-relevant bias in natural language processing models'."),
        description=(f"Simulated RSVP reading of '{titles['reading']}' (0.5 s per word, {N_READING_RUNS} runs, TR {READING_TR} s): "
                     f"{len(fmri_ids)} fMRI participants on fsaverage5, {len(meg_ids)} MEG participants (306 sensors, "
                     f"{MEG_BINS} x {int(MEG_BIN_WIDTH * 1000)} ms bins per word), {len(set(fmri_ids) & set(meg_ids))} in both. "
                     "Planted effects and drivers are in ground_truth/."),
    )
    dataset = Dataset(meta, stim, recordings, megs)
    gt = _common_ground_truth("reading", config, plant, wf, layouts, READING_TR, titles)
    gt.update({
        "modality": "reading",
        "participants": pinfo,
        "networks": [],
        "measured": measured,
        "meg": {
            "participants": meg_info,
            "shared_with_fmri": sorted(set(fmri_ids) & set(meg_ids)),
            "bin_width_s": MEG_BIN_WIDTH,
            "n_bins": MEG_BINS,
            "epoch": "bins cover 0-500 ms after word onset; bin b is centred at (b + 0.5) * 25 ms",
            "components": [{"name": n, "driver": d, "peak_latency_s": p, "gamma_shape": s, "relative_amplitude": a}
                           for n, d, p, s, a in MEG_COMPONENTS],
            "sensor_layout": "synthetic helmet (Fibonacci points on a unit sphere); names follow Elekta Neuromag "
                             "(...1 magnetometer, ...2 / ...3 planar gradiometers)",
            "noise": "24 smooth sensor components (AR(1) over bins, rho 0.8, 60% of variance) + white sensor noise (40%) + linear drift over words",
            "snr": config.meg_snr,
        },
    })
    arrays = {
        **_ground_truth_arrays(plant, planted),
        "meg_patterns": patterns.astype(np.float32),
        "meg_kernels": kernels.astype(np.float32),
        "meg_word_drivers": meg_drivers.astype(np.float32),
        "meg_sensor_positions": positions.astype(np.float32),
    }
    out = _save_experiment(target, dataset, gt, arrays, wf, overwrite)
    progress.step(weight["save"], "reading: saved")
    return out


def _build_listening(target: Path, config: SimulationConfig, progress: _Progress, overwrite: bool, weight: dict) -> Path:
    from brainviz.data.dataset import Dataset, DatasetMeta

    preset = PRESETS[config.preset]
    stim, layouts, titles = _listening_stimulus(preset["listening_words"], LISTENING_TR, config.seed)
    stim, wf = _linguistic_stimulus(stim)
    progress.step(weight["prep"], "listening: words annotated")
    net_specs = NETWORK_SPECS[: config.n_networks]
    plant = _plant("listening", stim, wf, layouts, LISTENING_TR, config,
                   [s.driver for s in net_specs if s.role != "control"])
    names, drivers, neural = plant["names"], plant["drivers"], plant["neural"]
    kept = _kept_mask(layouts)
    net_maps, net_sizes = _network_maps(net_specs, config.network_r2)
    net_tc, net_neural = _network_timecourses(net_specs, names, drivers, neural, layouts, LISTENING_TR, config)
    pids = [f"sub-{i + 1:02d}" for i in range(preset["listening_fmri"])]
    recordings, pinfo, measured, planted = _simulate_fmri(
        "listening", pids, layouts, LISTENING_TR, drivers, names, plant["components"], plant["regions"],
        plant["weights"], net_tc, net_maps, [s.name for s in net_specs], config, progress, weight["fmri"],
    )
    words_per_s = []
    for lay in layouts:
        o = stim["onset"].to_numpy()[lay.rows]
        d = stim["duration"].to_numpy()[lay.rows]
        words_per_s.append(_r(len(o) / (o[-1] + d[-1] - o[0])))
    meta = DatasetMeta(
        name="simulated-listening", simulated=True, modality="listening",
        source=f"brainviz simulator v{SIMULATOR_VERSION} (preset {config.preset}, seed {config.seed})",
        licence="CC0-1.0",
        citation=("Simulated with brainviz, modelled on the Narratives collection: Nastase et al. (2021) "
                  "'The Narratives fMRI dataset for evaluating models of naturalistic language comprehension', Scientific Data 8:250."),
        description=(f"Simulated listening to two spoken stories ('{titles['listening_1']}', '{titles['listening_2']}'), "
                     f"one run each, TR {LISTENING_TR} s, {len(pids)} participants on fsaverage5 who heard both. "
                     f"Planted language regions and {len(net_specs)} functional networks are in ground_truth/."),
    )
    dataset = Dataset(meta, stim, recordings, {})
    from brainviz.data.simulate.audio import attach_simulated_audio  # issue 15: the stories' audio

    audio_info = attach_simulated_audio(dataset, config)
    gt = _common_ground_truth("listening", config, plant, wf, layouts, LISTENING_TR, titles)
    tc_corr = np.corrcoef(net_tc[kept].T) if len(net_specs) > 1 else np.ones((1, 1))
    gt.update({
        "modality": "listening",
        "participants": pinfo,
        "speech_rate_words_per_s": dict(zip([lay.name for lay in layouts], words_per_s)),
        "networks": [
            {"index": k, "name": s.name, "driver": s.driver, "n_vertices": n,
             "peak_r2": _r(config.network_r2), "role": s.role,
             "expected_coupling": (f"ANs that carry {s.driver} (measured in both stories before planting, "
                                   "see docs/simulation.md; either sign)") if s.role == "coupled"
             else "none: a non-linguistic control (random soundtrack envelope, the same for every listener)",
             "control_tau_s": s.control_tau if s.role == "control" else None,
             "blobs": [{"mni": [float(v) for v in mni], "radius_mm": float(rad), "weight": float(w)} for mni, rad, w in s.blobs]}
            for k, (s, n) in enumerate(zip(net_specs, net_sizes))
        ],
        "network_timecourse_correlations": [[_r(v) for v in row] for row in np.atleast_2d(tc_corr)],
        "measured": measured,
        "audio": audio_info,
        "speech_timing": "duration (0.09 + 0.15 * syllables) s x lognormal(0, 0.12); gaps 0.03 s, 0.18 s after , ; : -, "
                         "0.40 s after . ! ?, 0.75 s at paragraph ends (x lognormal(0, 0.25))",
    })
    arrays = {
        **_ground_truth_arrays(plant, planted),
        "network_maps": net_maps.astype(np.float32),
        "network_timecourses": net_tc.astype(np.float32),
        "network_neural_timecourses": net_neural.astype(np.float32),
    }
    out = _save_experiment(target, dataset, gt, arrays, wf, overwrite)
    progress.step(weight["save"], "listening: saved")
    return out


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def _weights(config: SimulationConfig, experiments: Sequence[str]) -> tuple[dict[str, dict[str, float]], float]:
    p = PRESETS[config.preset]
    full = p["reading_words"] is None
    w = {
        "reading": {"prep": 4.0, "fmri": 1.0 if full else 0.3, "meg": 1.2 if full else 0.2, "save": 6.0 if full else 1.0},
        "listening": {"prep": 3.0, "fmri": 0.7 if full else 0.3, "save": 6.0 if full else 1.0, "meg": 0.0},
    }
    total = 0.0
    for e in experiments:
        n_fmri = p["reading_fmri"] if e == "reading" else p["listening_fmri"]
        n_meg = p["reading_meg"] if e == "reading" else 0
        total += w[e]["prep"] + n_fmri * w[e]["fmri"] + n_meg * w[e]["meg"] + w[e]["save"]
    return w, total


def _run(out_dir: Path, config: SimulationConfig, experiments: Sequence[str], progress: ProgressFn | None, overwrite: bool) -> dict[str, Path]:
    targets = {e: out_dir / e for e in experiments}
    if not overwrite:
        for e, path in targets.items():
            if path.exists():
                raise FileExistsError(f"{path}: already exists (choose another output folder or pass overwrite=True / --overwrite)")
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir}: exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    weights, total = _weights(config, experiments)
    prog = _Progress(progress, total)
    prog.report("starting")
    try:
        out = {}
        for e in experiments:
            build = _build_reading if e == "reading" else _build_listening
            out[e] = build(targets[e], config, prog, overwrite, weights[e])
        prog.done = prog.total
        prog.report("done")
        return out
    finally:
        prog.close()


def simulate(
    out_dir: str | os.PathLike,
    config: SimulationConfig | None = None,
    progress: ProgressFn | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write the simulated ``reading`` and ``listening`` datasets into ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Parent folder; the datasets become ``out_dir/reading`` and ``out_dir/listening``.
    config : SimulationConfig, optional
        Preset, seed and generative knobs (default: the default preset with seed 0).
    progress : callable, optional
        ``progress(fraction, message)`` called as the work advances. Without it a tqdm bar is
        shown when stderr is a terminal.
    overwrite : bool
        Replace existing dataset folders (each only once its replacement is complete).

    Returns
    -------
    dict
        ``{"reading": Path, "listening": Path}``.

    Raises
    ------
    FileExistsError
        A target folder exists and ``overwrite`` is false (checked before any work).
    """
    config = config if config is not None else SimulationConfig()
    if not isinstance(config, SimulationConfig):
        raise ConfigError(f"config must be a SimulationConfig, got {type(config).__name__}")
    return _run(Path(out_dir), config, EXPERIMENTS, progress, overwrite)


