"""Biological neurons: RBM training, VS-DBN and ICA outputs, planted-network recovery."""

from __future__ import annotations

import numpy as np
import pytest

from brainviz.coupling import networks
from brainviz.coupling._synthetic import synthetic_dataset
from brainviz.coupling.neurons import CouplingError


@pytest.fixture(scope="module")
def planted():
    return synthetic_dataset(n_participants=3, n_units=400, n_networks=4, words_per_story=300, noise=1.5, seed=2)


def _recovery(maps, truth):
    c = np.corrcoef(np.vstack([truth, maps]))[: len(truth), len(truth):]
    return np.abs(c).max(axis=1)


def test_rbm_reconstruction_error_decreases():
    rng = np.random.default_rng(0)
    basis = rng.standard_normal((5, 60))
    x = networks.zscore_units((rng.standard_normal((400, 5)) @ basis + 0.3 * rng.standard_normal((400, 60))).astype(np.float32))
    rbm = networks.GaussianBernoulliRBM(60, 16, lr=0.01, l1=0.0001, batch_size=20, epochs=8, seed=0, device="cpu")
    before = rbm.reconstruction_error(x)
    rbm.fit(x)
    after = rbm.reconstruction_error(x)
    assert after < 0.8 * before
    assert rbm.errors[-1] < rbm.errors[0]
    assert rbm.hidden_probabilities(x).shape == (400, 16)


def test_group_data_zscored_and_trimmed(planted):
    ds, _ = planted
    gd = networks.group_data(ds)
    assert len(gd.blocks) == 3 * 2
    x = gd.data[gd.rows("sub-01", "listening_1")]
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(0), 1, atol=1e-3)
    full = networks.group_data(ds, trim=False)
    assert full.data.shape[0] > gd.data.shape[0]


def test_ica_recovers_planted_networks(planted):
    ds, truth = planted
    bn = networks.fit_networks(ds, "ica", n_networks=6, preset="quick", seed=0)
    assert bn.maps.shape == (6, 400)
    for s in ("listening_1", "listening_2"):
        assert bn.timecourses[s].shape[1] == 6
    assert _recovery(bn.maps, truth["maps"]).min() > 0.9
    # the arrays round-trip (cache format)
    back = networks.BrainNetworks.from_arrays(bn.to_arrays())
    np.testing.assert_array_equal(back.maps, bn.maps)
    assert back.info["group"] == "concat" and back.method == "ica"


def test_vsdbn_outputs_and_partial_recovery(planted):
    ds, truth = planted
    gd = networks.group_data(ds)
    bn = networks.vsdbn_networks(gd, 6, "quick", seed=0, device="cpu", hidden=(32, 16, 8), epochs=10, min_updates=200)
    assert bn.maps.shape == (6, 400)
    assert bn.info["hidden"] == [32, 16, 6]
    for errs in bn.info["errors"]:
        assert errs[-1] < errs[0]
    grid_t = networks.group_data(ds).n_trs["listening_1"]
    assert bn.timecourses["listening_1"].shape == (grid_t, 6)
    assert _recovery(bn.maps, truth["maps"]).mean() > 0.4


def test_bad_method_and_too_many_networks(planted):
    ds, _ = planted
    with pytest.raises(CouplingError, match="unknown BN method"):
        networks.fit_networks(ds, "pca")
    with pytest.raises(CouplingError, match="networks but the data have only"):
        networks.fit_networks(ds, "ica", n_networks=10_000)
