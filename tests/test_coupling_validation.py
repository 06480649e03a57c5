"""Cross-story validated coupling: the phase-randomisation null, reachable FDR, effect sizes with
intervals, and the planted truth matched end to end on a small synthetic dataset with a
ground_truth/ folder (couplings planted through a tiny random BERT's own ANs, plus controls)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from brainviz.coupling import CouplingConfig, planted_recovery, validated_pairs
from brainviz.coupling._synthetic import synthetic_dataset
from brainviz.coupling.couple import block_bootstrap_r, cross_story_pairs, permutations_for_fdr
from brainviz.coupling.truth import bn_roles, match_networks, planted_networks


SEED = 0  # weights of the tiny random BERT


def _smooth(rng, t, k, width=3.0):
    from scipy.ndimage import gaussian_filter1d

    x = gaussian_filter1d(rng.standard_normal((t + 40, k)), width, axis=0)[20:-20]
    return (x - x.mean(0)) / x.std(0)


def test_phase_null_is_calibrated_for_autocorrelated_nulls():
    """Independent smooth time courses: about 5 % of one-sided tests pass p < 0.05 (a null that
    ignored the autocorrelation would pass far more)."""
    rng = np.random.default_rng(0)
    t, k, n_ans = 150, 120, 40
    a1, b1, a2, b2 = _smooth(rng, t, n_ans), _smooth(rng, t, k), _smooth(rng, t, n_ans), _smooth(rng, t, k)
    cs = cross_story_pairs(a1, b1, a2, b2, n_permutations=400, null="phase", n_boot=0)
    rate = float((cs.p < 0.05).mean())
    assert 0.0 <= rate <= 0.12, rate
    # naive iid test of the same r on the test story: the autocorrelation inflates it
    from scipy.stats import norm

    z = cs.r_test * np.sign(cs.r_select) * np.sqrt(t - 3)
    naive = float((norm.sf(z) < 0.05).mean())
    assert naive > rate
    assert cs.null == "phase" and cs.n_permutations == 400 and np.all(cs.null_sd > 1.0 / np.sqrt(t))


def test_permutations_make_fdr_reachable():
    for m, alpha in [(4, 0.05), (32, 0.05), (128, 0.01)]:
        n = permutations_for_fdr(m, alpha)
        assert n % 1000 == 0 and m / (1 + n) <= alpha / 10  # a single test at the floor passes BH
    rng = np.random.default_rng(1)
    t, k = 200, 32
    b1, b2 = _smooth(rng, t, k), _smooth(rng, t, k)
    a1, a2 = _smooth(rng, t, 50), _smooth(rng, t, 50)
    a1[:, 9], a2[:, 9] = b1[:, 5] + 0.5 * a1[:, 9], b2[:, 5] + 0.5 * a2[:, 9]  # one coupled BN of 32
    cs = cross_story_pairs(a1, b1, a2, b2, n_permutations=permutations_for_fdr(k), null="phase", n_boot=0)
    assert cs.an[5] == 9 and cs.q[5] <= 0.05 and cs.p[5] <= 1.0 / cs.n_permutations + 1e-12
    # with the circular null the floor is 1 / T: q of a lone discovery cannot go below k / T
    circ = cross_story_pairs(a1, b1, a2, b2, n_permutations=10_000, null="circular", n_boot=0)
    assert circ.n_permutations == t - 1 and circ.q[5] >= min(1.0, k / t) - 1e-9


def test_block_bootstrap_interval_brackets_r_and_shrinks_with_more_trs():
    rng = np.random.default_rng(2)
    widths = []
    for t in (120, 960):
        b = _smooth(rng, t, 1)
        a = b + 1.0 * _smooth(rng, t, 1)
        lo, hi = block_bootstrap_r(a, b, n_boot=500, block=10, seed=0)
        r = np.corrcoef(a[:, 0], b[:, 0])[0, 1]
        assert lo[0] < r < hi[0]
        widths.append(hi[0] - lo[0])
    assert widths[1] < widths[0]


def test_match_networks_and_roles():
    rng = np.random.default_rng(3)
    truth = rng.standard_normal((3, 500))
    maps = np.vstack([rng.standard_normal(500), truth[2] + 0.1 * rng.standard_normal(500), truth[0]])
    idx, r = match_networks(maps, truth)
    assert idx[0] == 2 and idx[2] == 1 and r[0] > 0.99
    roles = bn_roles(maps, {"maps": truth, "names": ["a", "b", "c"], "roles": ["coupled", "coupled", "control"]})
    assert roles[2] == "a" and roles[1] == "c (control)" and roles[0] == ""
    assert bn_roles(maps, None) == ["", "", ""]


# -- end to end on a synthetic dataset with a ground_truth/ folder --------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from brainviz.models.encoder import pretrained_path

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert-v")
    tok = AutoTokenizer.from_pretrained(str(pretrained_path()))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=128)
    import torch

    with torch.random.fork_rng(devices=[]):  # the same random weights whatever ran before
        torch.manual_seed(SEED)
        BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def planted(tiny_model, tmp_path_factory):
    """Networks 0-1 follow two ANs of the tiny model (coupled), networks 2-3 smooth noise (controls)."""
    from brainviz.coupling.neurons import compute_an_timecourses, story_grid
    from brainviz.data import load_dataset
    from brainviz.models.encoder import load_encoder

    kw = dict(n_participants=3, n_units=600, n_networks=4, words_per_story=330, noise=0.5, seed=5)
    base, _ = synthetic_dataset(**kw)
    model, tok = load_encoder(str(tiny_model))
    ans = {story: compute_an_timecourses(base, story, model, tok, max_tokens=128) for story in base.stories}
    # two ANs that vary most and are nearly uncorrelated in every story (ICA needs distinct sources);
    # chosen from the random model's ANs before any network is planted
    both = np.concatenate([ans[s].timecourses for s in base.stories])
    order = np.argsort(both.std(0))[::-1]
    first = int(order[0])
    second = next(int(j) for j in order[1:] if all(
        abs(np.corrcoef(ans[s].timecourses[:, first], ans[s].timecourses[:, j])[0, 1]) < 0.1 for s in base.stories))
    chosen = [first, second]
    drivers = {}
    for story in base.stories:
        an = ans[story]
        g = story_grid(base, story)
        full = np.zeros((base.fmri_of(base.participants[0]).runs[base.stories.index(story)].n_trs, 2))
        full[g.first_trs[0]:g.first_trs[0] + g.n_trs] = an.timecourses[:, chosen]
        full[: g.first_trs[0]] = full[g.first_trs[0]]
        drivers[story] = full
    ds, truth = synthetic_dataset(drivers=drivers, **kw)
    path = ds.save(tmp_path_factory.mktemp("planted") / "listening")
    gt = path / "ground_truth"
    gt.mkdir()
    roles = ["coupled", "coupled", "control", "control"]
    tr_runs = [s for s in ds.stories for _ in range(len(truth[s]))]
    (gt / "ground_truth.json").write_text(json.dumps({
        "simulated": True, "tr_runs": tr_runs,
        "networks": [{"index": k, "name": f"net{k}", "driver": f"d{k}", "role": r, "expected_coupling": r}
                     for k, r in enumerate(roles)]}))
    np.save(gt / "network_maps.npy", truth["maps"])
    np.save(gt / "network_timecourses.npy", np.concatenate([truth[s] for s in ds.stories]))
    loaded = load_dataset(path)
    loaded.test_chosen_ans = chosen
    return loaded


def test_planted_couplings_are_found_and_controls_are_not(planted, tiny_model):
    cfg = CouplingConfig(bn="ica", n_networks=4, permutations=0, pos=False, max_tokens=128)
    truth = planted_networks(planted)
    assert truth["roles"] == ["coupled", "coupled", "control", "control"]
    assert all(truth["timecourses"][s].shape[1] == 4 for s in planted.stories)
    pairs = validated_pairs(planted, str(tiny_model), cfg, cache=False)
    assert set(pairs["test_on"]) == set(planted.stories) and len(pairs) == 8
    assert {"r_test", "ci_low", "ci_high", "q", "r_word_rate", "direction"} <= set(pairs.columns)
    assert (pairs["ci_low"] <= pairs["r_test"]).all() and (pairs["r_test"] <= pairs["ci_high"]).all()
    rec = planted_recovery(planted, str(tiny_model), cfg, pairs=pairs, cache=False)
    assert len(rec) == 8 and (rec["spatial_r"] > 0.85).all() and (rec["ratio"] > 0.8).all()
    coupled = rec[rec["role"] == "coupled"]
    assert (coupled["outcome"] == "found").all(), coupled
    assert coupled["an"].isin(planted.test_chosen_ans).all()
    assert (rec.loc[rec["role"] == "control", "outcome"] == "none (correct)").all()
    # nothing cached with cache=False: a cached-only lookup finds nothing
    assert validated_pairs(planted, str(tiny_model), cfg, cache=False, cached_only=True) is None


def test_no_planted_truth_without_ground_truth(tiny_model, tmp_path):
    ds, _ = synthetic_dataset(n_participants=2, n_units=60, n_networks=2, words_per_story=60, seed=2)
    assert planted_networks(ds) is None  # not on disk
    saved = ds.save(tmp_path / "plain")
    from brainviz.data import load_dataset

    assert planted_networks(load_dataset(saved)) is None
    assert planted_recovery(load_dataset(saved), str(tiny_model), CouplingConfig(bn="ica", n_networks=2,
                                                                                 pos=False)) is None


def test_app_helpers_are_one_based_and_plot_outcomes():
    import pandas as pd

    from brainviz.viz import coupling as vcpl

    df = pd.DataFrame({"layer": [0, 5], "head": [0, 11], "dim": [0, 31], "name": ["L0H0D0", "L5H11D31"], "r": [0.1, 0.2]})
    out = vcpl.one_based(df)
    assert out["name"].tolist() == ["L1H1D1", "L6H12D32"] and out["layer"].tolist() == [1, 6]
    assert df["layer"].tolist() == [0, 5]  # the input is not changed
    an = (5 * 12 + 11) * 32 + 31  # last AN of MiniLM
    assert vcpl.an_label_of(an, 12, 32) == "L6H12D32" and vcpl.an_label_of(0, 12, 32) == "L1H1D1"
    rec = pd.DataFrame({"network": ["a", "b"], "role": ["coupled", "control"], "bn": [1, 2], "test_on": ["s1", "s1"],
                        "r_test": [0.5, 0.1], "ci_low": [0.3, -0.1], "ci_high": [0.7, 0.3], "q": [0.01, 0.8],
                        "an": [3, 4], "outcome": ["found", "none (correct)"]})
    fig = vcpl.planted_vs_recovered(rec, simulated=True)
    names = {t.name for t in fig.data}
    assert names == {"found · test s1", "none (correct) · test s1"}
