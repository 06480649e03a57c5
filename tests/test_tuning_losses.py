"""Losses, multi-task weights and the learning-rate schedule against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from brainviz.tuning.losses import combine, get_loss, task_weights
from brainviz.tuning.train import lr_multiplier


def test_mse_hand_computed():
    pred = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    # row 0: (0 + 4 + 9) / 3; row 1: 3 / 3
    np.testing.assert_allclose(get_loss("mse")(pred, target).numpy(), [13 / 3, 1.0], rtol=1e-6)


def test_correlation_hand_computed():
    pred = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 4.0]])
    target = torch.tensor([[2.0, 4.0, 6.0], [3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    # r = 1, r = -1, r(pred3, target3): pred centred (-4/3, -1/3, 5/3), target (-1, 0, 1)
    r3 = (4 / 3 + 5 / 3) / (math.sqrt(16 / 9 + 1 / 9 + 25 / 9) * math.sqrt(2))
    np.testing.assert_allclose(get_loss("correlation")(pred, target).numpy(), [0.0, 2.0, 1 - r3], atol=1e-6)


def test_cosine_huber_hand_computed():
    pred = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    target = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    # row 0: cos = 1/sqrt(2); errors (0, 1): huber(1) = 0.6 * (1 - 0.3) = 0.42, huber(0) = 0 -> mean 0.21
    # row 1: cos = 1; errors (0, 1) -> mean huber 0.21
    expected = [1 - 1 / math.sqrt(2) + 0.21, 0.21]
    np.testing.assert_allclose(get_loss("cosine-huber")(pred, target).numpy(), expected, atol=1e-6)
    # small error: quadratic branch 0.5 * e^2
    small = get_loss("cosine-huber")(torch.tensor([[1.0, 1.5]]), torch.tensor([[1.0, 1.0]]))
    cos = (1 + 1.5) / (math.sqrt(1 + 2.25) * math.sqrt(2))
    np.testing.assert_allclose(small.numpy(), [1 - cos + 0.5 * 0.25 / 2], atol=1e-6)


def test_unknown_loss():
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("l1")


def test_task_weights_inverse_to_examples():
    w = task_weights({"fmri:P1": 100, "meg:M1": 400}, n_sequences=100)
    assert w["fmri:P1"] == pytest.approx(0.5) and w["meg:M1"] == pytest.approx(0.125)
    assert w["fmri:P1"] * 100 == pytest.approx(w["meg:M1"] * 400)  # equal total weight per target
    assert task_weights({"fmri:P1": 50}, n_sequences=50) == {"fmri:P1": 1.0}
    total = combine({"a": torch.tensor([1.0, 3.0]), "b": torch.tensor([2.0])}, {"a": 1.0, "b": 0.5}, batch_size=2)
    assert total.item() == pytest.approx((4 + 1) / 2)


def test_schedule_warmup_then_linear_decay():
    total = 100
    lr = [lr_multiplier(s, total, 0.1) for s in range(total + 1)]
    assert lr[0] == 0.0
    np.testing.assert_allclose(lr[:11], np.arange(11) / 10)  # linear warm-up over the first 10 %
    assert max(lr) == 1.0 and int(np.argmax(lr)) == 10
    np.testing.assert_allclose(lr[10:], (total - np.arange(10, total + 1)) / 90)  # linear decay
    assert lr[-1] == 0.0
    assert lr_multiplier(0, 3, 0.1) == 1.0  # too few steps for a warm-up: start at full rate
