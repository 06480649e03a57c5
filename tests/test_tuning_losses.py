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


def test_cosine_l2_hand_computed_zero_when_perfect_and_finite_gradient():
    from brainviz.tuning.losses import LOSSES

    assert "cosine-l2" in LOSSES
    pred = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[1.0, 1.0], [0.0, 1.0], [3.0, 4.0]])
    # row 0: cos = 1/sqrt(2), squared errors (0, 1) -> mean 0.5 (Huber would give 0.21)
    # row 1: cos = 1, squared errors (0, 1) -> 0.5; row 2: perfect prediction -> 0
    expected = [1 - 1 / math.sqrt(2) + 0.5, 0.5, 0.0]
    loss_fn = get_loss("cosine-l2")
    np.testing.assert_allclose(loss_fn(pred, target).numpy(), expected, atol=1e-6)
    # large errors stay quadratic (no Huber branch): error 3 on one of 2 units -> 4.5
    np.testing.assert_allclose(loss_fn(torch.tensor([[4.0, 1.0]]), torch.tensor([[1.0, 1.0]])).numpy(),
                               [1 - 5 / (math.sqrt(17) * math.sqrt(2)) + 4.5], atol=1e-6)
    # gradient: finite, and analytic for the MSE part at a point where cos = 1 (pred = 2 * target)
    p = torch.tensor([[2.0, 4.0]], requires_grad=True)
    loss_fn(p, torch.tensor([[1.0, 2.0]])).sum().backward()
    assert torch.isfinite(p.grad).all()
    np.testing.assert_allclose(p.grad.numpy(), [[1.0, 2.0]], atol=1e-5)  # d/dp mean((p - t)^2) = (p - t); d cos = 0
    # a zero prediction (heads start at zero) still has a finite gradient
    z = torch.zeros(2, 3, requires_grad=True)
    loss_fn(z, torch.randn(2, 3, generator=torch.Generator().manual_seed(0))).sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


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
