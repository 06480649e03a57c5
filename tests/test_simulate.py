"""Tests of the simulated default experiment (small preset; about a minute on 2 CPU cores)."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from brainviz.config import ConfigError
from brainviz.data import DatasetError, fmri_examples, load_dataset, meg_examples
from brainviz.data.preprocess import standardize_within_runs
from brainviz.data import simulate as sim
from brainviz.data.simulate import SimulationConfig, load_ground_truth, simulate

SMALL = SimulationConfig(preset="small")
SUMMARY_KEYS = {
    "name", "simulated", "modality", "participants", "meg_participants", "n_fmri_participants",
    "n_meg_participants", "n_runs", "tr", "space", "n_units", "n_words", "stories",
}


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="session")
def small(tmp_path_factory) -> dict[str, Path]:
    fractions: list[float] = []
    out = simulate(tmp_path_factory.mktemp("sim") / "small", SMALL, progress=lambda f, m: fractions.append(f))
    out["_fractions"] = fractions  # type: ignore[assignment]
    return out


@pytest.fixture(scope="session")
def reading(small):
    return load_dataset(small["reading"])


@pytest.fixture(scope="session")
def listening(small):
    return load_dataset(small["listening"])


# -- config ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"preset": "huge"}, "preset"),
        ({"seed": -1}, "seed"),
        ({"seed": True}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"peak_r2": 0.0}, "peak_r2"),
        ({"peak_r2": 1.2}, "peak_r2"),
        ({"readable_share": 1.5}, "readable_share"),
        ({"readable_share": "half"}, "readable_share"),
        ({"n_networks": 0}, "n_networks"),
        ({"n_networks": 99}, "n_networks"),
        ({"noise_tau": -1.0}, "noise_tau"),
        ({"structured_noise": 1.0}, "structured_noise"),
        ({"recency_tau": "x"}, "recency_tau"),
    ],
)
def test_config_validation_names_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        SimulationConfig(**changes)


def test_config_round_trip():
    cfg = SimulationConfig(preset="small", seed=3)
    assert SimulationConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert cfg.key() != SimulationConfig(preset="small", seed=4).key()


# -- structure ------------------------------------------------------------------------


def test_small_reading_summary(reading):
    s = reading.summary()
    assert set(s) == SUMMARY_KEYS
    assert s["simulated"] is True and s["modality"] == "reading" and s["name"] == "simulated-reading"
    assert s["participants"] == ["sub-01", "sub-02", "sub-03"]
    assert s["meg_participants"] == ["sub-01", "sub-02", "sub-04"]
    assert len(set(s["participants"]) & set(s["meg_participants"])) == 2
    assert s["n_runs"] == 4 and reading.runs == ["run-1", "run-2", "run-3", "run-4"]
    assert s["tr"] == 2.0 and s["space"] == "fsaverage5" and s["n_units"] == 20484
    assert s["stories"] == ["reading"]
    meg = reading.meg_of("sub-01")
    assert meg.data.shape == (len(reading.stimulus), 306, 20) and meg.data.dtype == np.float32
    assert meg.bin_width == pytest.approx(0.025)
    assert meg.sensors[:4] == ["MEG0111", "MEG0112", "MEG0113", "MEG0121"] and len(set(meg.sensors)) == 306
    assert reading.meta.licence == "CC0-1.0" and "brainviz simulator" in reading.meta.source


def test_small_listening_summary(listening):
    s = listening.summary()
    assert set(s) == SUMMARY_KEYS
    assert s["modality"] == "listening" and s["simulated"] is True
    assert s["stories"] == ["listening_1", "listening_2"] and listening.runs == s["stories"]
    assert s["tr"] == 1.5 and s["space"] == "fsaverage5" and s["n_units"] == 20484
    assert s["n_fmri_participants"] == 4 and s["n_meg_participants"] == 0


def test_stimulus_columns_and_timing(reading, listening):
    for ds in (reading, listening):
        for col in ("onset", "duration", "word", "run", "story", "pos", "is_content", "length", "log_freq"):
            assert col in ds.stimulus.columns
    stim = reading.stimulus
    for _, g in stim.groupby("run"):
        assert np.allclose(np.diff(g["onset"]), 0.5) and np.allclose(g["duration"], 0.5)
    assert stim["word"].iloc[:4].tolist() == ["The", "Lens", "of", "Harrowgate"]  # title first
    stim = listening.stimulus
    for _, g in stim.groupby("run"):
        o, d = g["onset"].to_numpy(), g["duration"].to_numpy()
        assert np.all(o[1:] >= o[:-1] + d[:-1])  # words do not overlap
        rate = len(o) / (o[-1] + d[-1] - o[0])
        assert 2.2 < rate < 3.0


def test_runs_keep_enough_trs(reading, listening):
    for ds in (reading, listening):
        for pid in ds.participants[:1]:
            rec = ds.fmri_of(pid)
            assert all(r.n_trs > 35 for r in rec.runs)
            ex = _examples(ds, pid)
            counts = {r: int((ex.runs == r).sum()) for r in ds.runs}
            assert min(counts.values()) >= 25, counts
    assert len(meg_examples(reading, "sub-04").word_rows) > 100


def test_progress_reports(small):
    fr = small["_fractions"]
    assert fr[0] == 0.0 and fr[-1] == 1.0
    assert all(0.0 <= f <= 1.0 for f in fr) and all(b >= a for a, b in zip(fr, fr[1:]))


# -- ground truth ---------------------------------------------------------------------


def test_ground_truth_files(reading, listening):
    for ds, extra in ((reading, ("meg_patterns", "meg_kernels", "meg_word_drivers")),
                      (listening, ("network_maps", "network_timecourses"))):
        gt = load_ground_truth(ds)
        assert gt["simulated"] is True
        assert ds.ground_truth_dir() is not None
        mask, labels = gt["planted_mask"], gt["region_labels"]
        assert mask.shape == (20484,) and mask.dtype == bool
        assert labels.shape == (20484,) and np.issubdtype(labels.dtype, np.integer)
        assert np.all(mask[labels > 0]) and 0.005 < mask.mean() < 0.25
        rec = ds.fmri_of(ds.participants[0])
        names = gt["driver_names"]
        assert gt["drivers"].shape == (rec.data.shape[0], len(names)) and gt["drivers"].dtype == np.float32
        assert gt["neural_drivers"].shape == gt["drivers"].shape
        assert gt["tr_runs"] == rec.run_labels.astype(str).tolist()
        w = gt["spatial_weights"]
        assert w.shape == (len(names), 20484) and not np.any(w[:, ~mask])
        # both components are planted, in the language regions, and the ground truth says where
        comps = gt["components"]
        assert set(comps["readable"]) | set(comps["specific"]) | set(comps["network"]) == set(names)
        assert len(comps["readable"]) + len(comps["specific"]) + len(comps["network"]) == len(names)
        assert len(comps["readable"]) >= 6 and len(comps["specific"]) >= 6
        assert [d["component"] for d in gt["driver_specs"]] == [
            next(k for k in ("readable", "specific", "network") if n in comps[k]) for n in names]
        for kind in ("readable", "specific"):
            rows = [names.index(n) for n in comps[kind]]
            assert np.array_equal(gt[f"{kind}_mask"], np.any(w[rows] != 0, axis=0))
            assert gt[f"{kind}_mask"].sum() > 100 and np.all(mask[gt[f"{kind}_mask"]])
            assert gt[f"{kind}_r2"].shape == (20484,) and np.all(gt[f"{kind}_r2"][~gt[f"{kind}_mask"]] == 0)
            assert np.all(gt[f"{kind}_mask"][labels > 0])
        regions = {r["name"]: r for r in gt["regions"]}
        assert {"L_IFG", "L_STS_MTG", "L_ATL", "L_AG", "L_MFG", "R_IFG"} <= set(regions)
        for r in gt["regions"]:
            assert len(r["mni"]) == 3 and r["n_vertices"] == int((labels == r["label"]).sum()) or r["n_vertices"] > 0
        left = sum(r["n_vertices"] for r in gt["regions"] if r["hemisphere"] == "left")
        right = sum(r["n_vertices"] for r in gt["regions"] if r["hemisphere"] == "right")
        assert left > right
        assert len(gt["word_features"]) == len(ds.stimulus)
        for key in extra:
            assert key in gt
    gt = load_ground_truth(listening)
    k = len(gt["networks"])
    assert k == 7 and gt["network_maps"].shape == (k, 20484)
    assert gt["network_timecourses"].shape == (gt["drivers"].shape[0], k)
    assert len({n["driver"] for n in gt["networks"]}) == k  # one distinct driver each
    assert np.all(gt["planted_mask"][np.any(gt["network_maps"] != 0, axis=0)])
    roles = [n["role"] for n in gt["networks"]]
    assert roles == ["coupled"] * 5 + ["control"] * 2
    names = gt["driver_names"]
    for j, net in enumerate(gt["networks"]):
        if net["role"] == "coupled":  # a coupled network follows its (word-derived) driver column exactly
            np.testing.assert_allclose(gt["network_timecourses"][:, j], gt["drivers"][:, names.index(net["driver"])],
                                       rtol=1e-5, atol=1e-6)
        else:  # a control follows no driver: it is not in the driver table
            assert net["driver"] not in names and net["control_tau_s"] > 0


def test_neural_drivers_match_the_loaded_word_windows(reading, listening):
    """The window-level drivers are exactly functions of the words preprocessing will see."""
    for ds in (reading, listening):
        gt = load_ground_truth(ds)
        rec = ds.fmri_of(ds.participants[0])
        arrays = sim._word_arrays(gt["word_features"])
        assert np.array_equal(gt["word_features"]["word"].astype(str), ds.stimulus["word"].astype(str))
        stim_runs = ds.stimulus["run"].astype(str).to_numpy()
        onsets = ds.stimulus["onset"].to_numpy(dtype=float)
        tr_runs, times = rec.run_labels.astype(str), rec.times
        cfg = gt["config"]
        for run in ds.runs:
            rows, trs = stim_runs == run, tr_runs == run
            got = sim.neural_drivers(times[trs], onsets[rows], {k: v[rows] for k, v in arrays.items()},
                                     gt["driver_names"], cfg["window"], cfg["recency_tau"], gt["orthogonalization"])
            np.testing.assert_allclose(got, gt["neural_drivers"][trs], rtol=1e-5, atol=1e-5)


def test_load_ground_truth_errors(tmp_path, reading):
    with pytest.raises(DatasetError, match="ground truth"):
        load_ground_truth(tmp_path)
    copy = load_dataset(reading.path)
    copy.path = None
    with pytest.raises(DatasetError, match="not saved"):
        load_ground_truth(copy)
    # the ground_truth folder itself is accepted too
    assert load_ground_truth(reading.path / "ground_truth")["experiment"] == "reading"


# -- statistics: null vertices carry nothing, planted ones carry the drivers -----------------


_EXAMPLES: dict = {}


def _examples(ds, pid):
    key = (str(ds.path), pid)
    if key not in _EXAMPLES:
        _EXAMPLES[key] = fmri_examples(ds, pid)
    return _EXAMPLES[key]


def _prepared(ds, pid):
    gt = load_ground_truth(ds)
    ex = _examples(ds, pid)
    pred = gt["drivers"] @ gt["spatial_weights"]
    if "network_maps" in gt:
        pred = pred + gt["network_timecourses"] @ gt["network_maps"]
    x = standardize_within_runs(gt["drivers"][ex.tr_index], ex.runs).astype(float)
    return gt, ex, x, pred


@pytest.mark.parametrize("experiment", ["reading", "listening"])
def test_null_vertices_unrelated_to_drivers(experiment, reading, listening):
    ds = reading if experiment == "reading" else listening
    for pid in ds.participants:
        gt, ex, x, _ = _prepared(ds, pid)
        null = ~gt["planted_mask"]
        y = ex.data[:, null].astype(float)
        # time-reversed drivers keep their autocorrelation but cannot relate to the data
        xr = np.concatenate([x[ex.runs == r][::-1] for r in dict.fromkeys(ex.runs)])

        def r2(design):
            q, _ = np.linalg.qr(design)
            return ((q.T @ y) ** 2).sum(0) / (y ** 2).sum(0)  # y is centred within run

        ratio = r2(x).mean() / r2(xr).mean()
        assert 0.85 < ratio < 1.15, ratio


@pytest.mark.parametrize("experiment", ["reading", "listening"])
def test_planted_vertices_follow_the_drivers(experiment, reading, listening):
    ds = reading if experiment == "reading" else listening
    rng = np.random.default_rng(0)
    for pid in ds.participants:
        gt, ex, _, pred = _prepared(ds, pid)
        mask = gt["planted_mask"]
        p = standardize_within_runs(pred[ex.tr_index][:, mask], ex.runs)
        corr = (p * ex.data[:, mask]).mean(0)
        null_cols = rng.choice(np.flatnonzero(~mask), mask.sum(), replace=False)
        null_corr = (p * ex.data[:, null_cols]).mean(0)  # same predictors, unrelated vertices
        assert abs(null_corr.mean()) < 0.02
        threshold = np.percentile(np.abs(null_corr), 99)
        assert np.median(corr) > 0.08
        assert (corr > threshold).mean() > 0.03  # chance: 0.005
        assert np.mean(corr) > np.mean(null_corr) + 10 * null_corr.std() / np.sqrt(mask.sum())


def test_measured_snr_is_realistic(reading, listening):
    """Per-TR r^2 of a few percent to ~0.1 for each component, inter-participant correlation < 0.5.

    Simulator 3.0 raised the reading regions' peak r^2 from 0.25 to 0.4 (so that brain-tuning has
    something detectable with 18 readers; docs/tuning.md): the planted median is ~0.14-0.17 in
    reading (listening, still 0.25, stays below 0.15), while the inter-participant correlation
    stays within real language cortex's (best vertices ~0.3-0.4)."""
    for ds, top in ((reading, 0.2), (listening, 0.15)):
        m = load_ground_truth(ds)["measured"]
        assert 0.02 < m["signal_r2_planted"]["median"] < top
        assert m["signal_r2_planted"]["share_below_0.1"] > (0.3 if top > 0.15 else 0.4)
        for comp in ("readable", "specific"):
            c = m["signal_r2_by_component"][comp]
            assert 0.01 < c["median"] < 0.1 and c["p90"] < 0.3, (comp, c)
        isc = m["inter_participant_correlation"]
        assert 0.03 < isc["language_regions"]["median"] < 0.2 and isc["language_regions"]["max"] < 0.6
        assert abs(isc["null"]["median"]) < 0.02


def test_meg_tracks_word_features(reading):
    gt = load_ground_truth(reading)
    wf = gt["word_features"]
    names = [c["name"] for c in gt["meg"]["components"]]
    for pid in ("sub-01", "sub-04"):  # one in both modalities, one MEG-only
        ex = meg_examples(reading, pid)
        for col, comp, sign in (("z_length", "word_length", 1.0), ("log_freq", "log_freq", -1.0)):
            c = names.index(comp)
            pattern = gt["meg_patterns"][c].astype(float)
            b = int(gt["meg_kernels"][c].argmax())
            y = ex.data[:, :, b] @ pattern  # spatial filter = the planted sensor pattern
            y = (y - y.mean()) / y.std()
            f = wf[col].to_numpy()[ex.word_rows]
            f = (f - f.mean()) / f.std()
            corr = float(f @ y) / len(f)
            assert sign * corr > 4 / np.sqrt(len(f)), (pid, comp, corr)


# -- determinism, seeds, atomicity, CLI -------------------------------------------------


@pytest.mark.slow
def test_byte_identical_via_cli(small, tmp_path, capsys):
    from brainviz.cli import main

    out = tmp_path / "again"
    assert main(["simulate", "--out", str(out), "--preset", "small", "--seed", "0"]) == 0
    assert "reading:" in capsys.readouterr().out
    for name in ("reading", "listening"):
        assert _digest(out / name) == _digest(small[name])


@pytest.mark.slow
def test_different_seed_gives_different_data(small, tmp_path):
    out = sim._run(tmp_path, SimulationConfig(preset="small", seed=1), ["listening"], None, False)
    a, b = load_dataset(small["listening"]), load_dataset(out["listening"])
    assert not np.array_equal(a.fmri["sub-01"].data, b.fmri["sub-01"].data)
    assert not np.array_equal(a.stimulus["onset"], b.stimulus["onset"])  # speech timing jitter
    assert a.stimulus["word"].tolist() == b.stimulus["word"].tolist()


def test_cli_rejects_bad_input(tmp_path, small, capsys):
    from brainviz.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--out", str(tmp_path), "--seed", "-2"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["simulate", "--out", str(tmp_path), "--preset", "huge"])
    existing = small["reading"].parent
    assert main(["simulate", "--out", str(existing), "--preset", "small"]) == 2
    assert "already exists" in capsys.readouterr().err
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["simulate", "--out", str(a_file), "--preset", "small"]) == 2


@pytest.mark.slow
def test_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    real_save = np.save
    calls = []

    def failing_save(*args, **kwargs):  # fail half-way through writing the first dataset
        calls.append(1)
        if len(calls) == 5:
            raise OSError("disk full (simulated)")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="simulated"):
        simulate(tmp_path / "out", SMALL)
    assert len(calls) == 5
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.slow
def test_ensure_default_dataset_builds_missing_once(tmp_path, monkeypatch, small):
    import shutil

    monkeypatch.setenv("BRAINVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sim, "DEFAULT_CONFIG", SMALL)
    from brainviz import paths

    root = paths.default_dataset_dir()
    root.mkdir(parents=True)
    shutil.copytree(small["reading"], root / "reading")  # only listening is missing
    calls: list[list[str]] = []
    real_run = sim._run

    def counting_run(out_dir, config, experiments, progress, overwrite):
        calls.append(list(experiments))
        return real_run(out_dir, config, experiments, progress, overwrite)

    monkeypatch.setattr(sim, "_run", counting_run)
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(sim.ensure_default_dataset())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [["listening"]]
    assert len(results) == 2 and results[0] == results[1] == {"reading": root / "reading", "listening": root / "listening"}
    assert _digest(root / "listening") == _digest(small["listening"])
    assert sim.ensure_default_dataset() == results[0] and calls == [["listening"]]
